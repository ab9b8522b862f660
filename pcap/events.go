package pcap

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tapstack/tapstack/event"
)

// Engine events, machine-readable, in the capture itself: so that a saved
// capture is enough to redraw what the engine did (cwnd and ssthresh at
// each ACK, every state change and its cause, the listener's queues), and
// not only its comments.
//
// Each event is one pcapng custom option (pcapng 3.5.1, code 2988: UTF-8,
// may be copied) with tapstack's Private Enterprise Number (32473, see
// block.go) whose value is a JSON object, an [EventRecord]. The options
// travel in Interface Statistics Blocks (pcapng 4.6), a batch of events
// each, because an interface statistics block is not a frame: Wireshark
// does not list or number it, so frame numbers in comments ("retransmit
// #1 of frame 37") stay Wireshark's, and tshark shows the options as
// "Custom Option" of the interface's statistics. Batches are written when
// they fill (maxEventBatch bytes), when the writer's window timer runs,
// and before a file is closed or rotated, so each file carries the events
// of its time.
//
// This file holds every use of event.Event made for the record; the plot
// package reads EventRecords and never sees the engine's types.

const (
	// optCustomUTF8 is pcapng's custom option with a UTF-8 value that
	// may be copied to a new file (pcapng 3.5.1).
	optCustomUTF8 = 2988
	// blockISB is the Interface Statistics Block (pcapng 4.6).
	blockISB = 5
	// maxEventBatch bounds the options of one block: a batch is written
	// once it holds this many bytes, so the writer buffers no more.
	maxEventBatch = 32 << 10
	// maxEventLen bounds one event's JSON: a longer note is cut.
	maxEventLen = 4 << 10
	// eventVersion is the "v" of every record; readers skip what they
	// do not know.
	eventVersion = 1
)

// EventRecord is one engine event as the capture records it. The names
// are the engine's: State and Cause as event.State and event.Cause print
// them, Send a event.SendCause, Drop a event.DropReason. Which fields are set
// depends on Kind, as for event.Event.
type EventRecord struct {
	V    int    `json:"v"`
	Time int64  `json:"t"` // Unix nanoseconds, on the capture's clock (as frame times)
	Kind string `json:"k"` // state, send, drop, queue, rto, receive, ack, recovery, pmtu; udp deliver, udp no port, udp drop, udp send
	// Local and Remote are the connection from the capturing stack's
	// viewpoint; a listener has no Remote.
	Local  string `json:"l,omitempty"`
	Remote string `json:"r,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Cause  string `json:"cause,omitempty"`
	Send   string `json:"send,omitempty"`
	Drop   string `json:"drop,omitempty"`
	// The segment concerned, as on the wire (SegKey): matched with its
	// frame by direction, connection, SEQ, ACK, flags and length.
	Seq   uint32 `json:"seq,omitempty"`
	Ack   uint32 `json:"ack,omitempty"`
	Flags uint8  `json:"fl,omitempty"`
	Len   int    `json:"len,omitempty"`
	// A listener's queues after a decision (Kind queue).
	SynQueue       int    `json:"sq,omitempty"`
	SynQueueMax    int    `json:"sqmax,omitempty"`
	AcceptQueue    int    `json:"aq,omitempty"`
	AcceptQueueMax int    `json:"aqmax,omitempty"`
	Note           string `json:"note,omitempty"`
	RTO            int64  `json:"rto,omitempty"` // nanoseconds
	Attempt        int    `json:"n,omitempty"`
	Cwnd           uint32 `json:"cwnd,omitempty"`
	Ssthresh       uint32 `json:"ssth,omitempty"`
	Acked          uint32 `json:"acked,omitempty"`
	Sacked         uint32 `json:"sacked,omitempty"`
	DupAck         int    `json:"dup,omitempty"`
	// The engine's RTT estimate (RFC 6298) and bytes in flight (RFC
	// 6675's pipe) after an ack; SRTT zero means no sample yet.
	SRTT     int64  `json:"srtt,omitempty"`   // nanoseconds
	RTTVar   int64  `json:"rttvar,omitempty"` // nanoseconds
	InFlight uint32 `json:"inflight,omitempty"`
	// Text is the event in the words of packet comments (Describe), for
	// the kinds whose words are not on a frame's comment already: state,
	// queue, rto, recovery, pmtu.
	Text string `json:"text,omitempty"`
}

// Key reports the record's segment key and whether it has one.
func (r *EventRecord) Key() (seq, ack uint32, flags uint8, length int, ok bool) {
	return r.Seq, r.Ack, r.Flags, r.Len, r.Seq != 0 || r.Ack != 0 || r.Flags != 0 || r.Len != 0
}

var eventKinds = map[event.Kind]string{
	event.KindState:             "state",
	event.KindSend:              "send",
	event.KindDrop:              "drop",
	event.KindQueue:             "queue",
	event.KindRetransmitTimeout: "rto",
	event.KindReceive:           "receive",
	event.KindAck:               "ack",
	event.KindRecovery:          "recovery",
	event.KindPathMTU:           "pmtu",
	event.KindUDPDeliver:        "udp deliver",
	event.KindUDPNoPort:         "udp no port",
	event.KindUDPDrop:           "udp drop",
	event.KindUDPSend:           "udp send",
}

// eventLog is the batch of encoded event options not yet written.
type eventLog struct {
	buf      []byte    // options, each padded to 32 bits
	first    time.Time // time of the first event in buf
	recorded uint64    // events encoded
	blocks   uint64    // blocks written
	skipped  uint64    // events lost: the capture stopped, or no room in a size-limited file
	scratch  []byte
}

// EventStats count the machine-readable events a [Writer] recorded.
type EventStats struct {
	Recorded uint64 // events encoded into the capture
	Blocks   uint64 // interface statistics blocks written to carry them
	Skipped  uint64 // events lost: the capture had stopped, or a size-limited file had no room
}

// EventStats returns the event counters.
func (w *Writer) EventStats() EventStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return EventStats{Recorded: w.events.recorded, Blocks: w.events.blocks, Skipped: w.events.skipped}
}

// recordEventLocked encodes ev into the batch, and writes the batch when
// it is full. w.mu is held.
func (w *Writer) recordEventLocked(now time.Time, ev *event.Event) {
	l := &w.events
	j := appendEventJSON(l.scratch[:0], now, ev)
	l.scratch = j[:0]
	if len(l.buf) == 0 {
		l.first = now
	}
	l.buf = binary.LittleEndian.AppendUint16(l.buf, optCustomUTF8)
	l.buf = binary.LittleEndian.AppendUint16(l.buf, uint16(4+len(j)))
	l.buf = binary.LittleEndian.AppendUint32(l.buf, notePEN)
	l.buf = append(l.buf, j...)
	for len(l.buf)%4 != 0 {
		l.buf = append(l.buf, 0)
	}
	l.recorded++
	if len(l.buf) >= maxEventBatch {
		w.writeEventsLocked()
	}
}

// writeEventsLocked writes the batch as an interface statistics block.
// w.mu is held.
func (w *Writer) writeEventsLocked() {
	l := &w.events
	if len(l.buf) == 0 {
		return
	}
	n := countOptions(l.buf)
	defer func() { l.buf = l.buf[:0] }()
	if w.ng == nil {
		l.skipped += n
		return
	}
	total := 4 + 4 + 4 + 8 + len(l.buf) + 4 + 4 // type, length, interface, time, options, end of options, length
	if w.opts.MaxBytes > 0 && w.bytes+int64(total) > w.opts.MaxBytes {
		// A size-limited file keeps its room for frames; the events
		// of a full file are counted as lost rather than rotating
		// here (rotation itself writes the batch first).
		l.skipped += n
		return
	}
	b := make([]byte, 0, total)
	b = binary.LittleEndian.AppendUint32(b, blockISB)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	b = binary.LittleEndian.AppendUint32(b, 0) // interface 0: the Writer has one
	ts := uint64(l.first.UnixNano())           // if_tsresol 9: nanoseconds
	b = binary.LittleEndian.AppendUint32(b, uint32(ts>>32))
	b = binary.LittleEndian.AppendUint32(b, uint32(ts))
	b = append(b, l.buf...)
	b = binary.LittleEndian.AppendUint32(b, 0) // opt_endofopt
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	// The block goes after what pcapgo has buffered.
	if err := w.ng.Flush(); err != nil {
		w.setErr(err)
		w.ng = nil
		l.skipped += n
		return
	}
	if _, err := w.cw.Write(b); err != nil {
		w.setErr(err)
		w.ng = nil
		l.skipped += n
		return
	}
	w.bytes += int64(total)
	l.blocks++
}

func countOptions(b []byte) uint64 {
	var n uint64
	for len(b) >= 4 {
		l := int(binary.LittleEndian.Uint16(b[2:4]))
		b = b[min(len(b), 4+(l+3)&^3):]
		n++
	}
	return n
}

// appendEventJSON appends ev as an EventRecord's JSON, without reflection:
// it runs under the Writer's lock for every event.
func appendEventJSON(b []byte, now time.Time, ev *event.Event) []byte {
	kind, ok := eventKinds[ev.Kind]
	if !ok {
		kind = "kind" + strconv.Itoa(int(ev.Kind))
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, eventVersion, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, now.UnixNano(), 10)
	b = appendStr(b, "k", kind)
	if ev.Conn.Local.IsValid() {
		b = appendStr(b, "l", ev.Conn.Local.String())
	}
	if ev.Conn.Remote.IsValid() {
		b = appendStr(b, "r", ev.Conn.Remote.String())
	}
	switch ev.Kind {
	case event.KindState:
		b = appendStr(b, "from", ev.From.String())
		b = appendStr(b, "to", ev.To.String())
		if c := causeText(ev.Cause); c != "" {
			b = appendStr(b, "cause", c)
		} else {
			b = appendStr(b, "cause", ev.Cause.String())
		}
	case event.KindSend:
		b = appendStr(b, "send", ev.Send.String())
	case event.KindDrop, event.KindUDPDrop:
		b = appendStr(b, "drop", ev.Drop.String())
	case event.KindQueue:
		b = appendInt(b, "sq", int64(ev.Queue.SynQueueLen))
		b = appendInt(b, "sqmax", int64(ev.Queue.SynQueueLimit))
		b = appendInt(b, "aq", int64(ev.Queue.AcceptQueueLen))
		b = appendInt(b, "aqmax", int64(ev.Queue.AcceptQueueLimit))
	}
	if k := ev.Key; k != (event.SegKey{}) {
		b = appendInt(b, "seq", int64(k.Seq))
		b = appendInt(b, "ack", int64(k.Ack))
		b = appendInt(b, "fl", int64(k.Flags))
		b = appendInt(b, "len", int64(k.Len))
	}
	if ev.Note != "" {
		b = appendStr(b, "note", ev.Note)
	}
	if ev.RTO != 0 {
		b = appendInt(b, "rto", int64(ev.RTO))
	}
	if ev.Attempt != 0 {
		b = appendInt(b, "n", int64(ev.Attempt))
	}
	if ev.Cwnd != 0 || ev.Ssthresh != 0 {
		b = appendInt(b, "cwnd", int64(ev.Cwnd))
		b = appendInt(b, "ssth", int64(ev.Ssthresh))
	}
	if ev.Acked != 0 {
		b = appendInt(b, "acked", int64(ev.Acked))
	}
	if ev.Sacked != 0 {
		b = appendInt(b, "sacked", int64(ev.Sacked))
	}
	if ev.DupAck != 0 {
		b = appendInt(b, "dup", int64(ev.DupAck))
	}
	// The engine's RTT estimate and pipe at each ACK: the plot draws
	// them in place of its wire estimates.
	if ev.SRTT != 0 {
		b = appendInt(b, "srtt", int64(ev.SRTT))
		b = appendInt(b, "rttvar", int64(ev.RTTVar))
	}
	if ev.Kind == event.KindAck {
		b = appendInt(b, "inflight", int64(ev.InFlight))
	}
	switch ev.Kind {
	case event.KindSend, event.KindAck, event.KindReceive, event.KindDrop,
		event.KindUDPDeliver, event.KindUDPNoPort, event.KindUDPDrop, event.KindUDPSend:
		// The words are the frame's comment already: most events are
		// these, and the capture stays smaller without them twice.
	default:
		b = appendStr(b, "text", Describe(*ev))
	}
	b = append(b, '}')
	if len(b) > maxEventLen {
		// Only a note can be this long; keep the record valid JSON.
		b = appendEventJSON(b[:0], now, &event.Event{Kind: ev.Kind, Conn: ev.Conn, Note: "(note too long)"})
	}
	return b
}

func appendInt(b []byte, key string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendStr(b []byte, key, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendQuoted(b, v)
}

// appendQuoted appends s as a JSON string.
func appendQuoted(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// ReadEvents returns the engine events recorded in a pcapng stream written
// by a [Writer], in the order they were recorded. Blocks and options of
// others are skipped, and so are records of a newer version. Only
// little-endian sections are read, as the Writer writes them.
func ReadEvents(r io.Reader) ([]EventRecord, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var out []EventRecord
	var hdr [8]byte
	var body []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		typ := binary.LittleEndian.Uint32(hdr[0:4])
		total := binary.LittleEndian.Uint32(hdr[4:8])
		if total < 12 || total%4 != 0 || total > 1<<26 {
			return out, fmt.Errorf("pcap: bad block length %d", total)
		}
		if typ != blockISB {
			if _, err := br.Discard(int(total - 8)); err != nil {
				return out, err
			}
			continue
		}
		if cap(body) < int(total-8) {
			body = make([]byte, total-8)
		}
		body = body[:total-8]
		if _, err := io.ReadFull(br, body); err != nil {
			return out, err
		}
		if len(body) < 16 {
			continue
		}
		opts := body[12 : len(body)-4] // after interface and time; before the trailing length
		for len(opts) >= 4 {
			code := binary.LittleEndian.Uint16(opts[0:2])
			n := int(binary.LittleEndian.Uint16(opts[2:4]))
			if code == 0 || 4+n > len(opts) {
				break
			}
			v := opts[4 : 4+n]
			opts = opts[min(len(opts), 4+(n+3)&^3):]
			if code != optCustomUTF8 || len(v) < 4 || binary.LittleEndian.Uint32(v[0:4]) != notePEN {
				continue
			}
			var rec EventRecord
			if err := json.Unmarshal(v[4:], &rec); err != nil || rec.V != eventVersion {
				continue
			}
			out = append(out, rec)
		}
	}
}

// ConnOf returns the record's connection as two address-ports; Remote is
// invalid for a listener's events.
func (r *EventRecord) ConnOf() (local, remote netip.AddrPort) {
	local, _ = netip.ParseAddrPort(r.Local)
	remote, _ = netip.ParseAddrPort(r.Remote)
	return local, remote
}

// FrameNumbers returns Wireshark's number for each packet block of a
// little-endian pcapng stream, in order: tapstack's notes (custom blocks)
// are numbered as frames too, interface statistics blocks are not.
func FrameNumbers(b []byte) []int { return recordNumbers(b) }
