package pcap

import (
	"fmt"
	"strconv"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// What the wire itself says about a TCP frame, read in capture order the
// way Wireshark's TCP analysis reads it (epan/dissectors/packet-tcp.c,
// tcp_analyze_sequence_number): zero windows, window updates, keepalives,
// probes into a zero window, duplicate ACKs we send, and which frame first
// carried a retransmitted range. The engine's events say why; these say
// what, in the words tshark uses, so the two can be checked against each
// other.

// connWire is the wire state of one connection, per direction (0 inbound,
// 1 outbound).
type connWire struct {
	seen     [2]bool
	isn      [2]uint32
	isnSet   [2]bool
	ws       [2]int8 // window scale each side offered on its SYN, -1 if none
	synSeen  [2]bool
	lastWin  [2]uint32 // scaled
	lastAck  [2]uint32
	nextSeq  [2]uint32 // highest SEQ+LEN seen
	dupAcks  [2]int
	sent     [2][sentRing]sentSeg // recent segments that carried sequence space
	sentNext [2]int
	wroteKey [2]event.SegKey // the last frame written, to tell a late annotation
	wroteSet [2]bool
	// refusals numbers the outbound frames with data or a FIN the link
	// refused the sender since our last SYN or SYN-ACK (refusedFrame);
	// refusalsKnown: that SYN was seen, so the numbers are the engine's.
	refusals      uint16
	refusalsKnown bool
}

const sentRing = 64

type sentSeg struct {
	seq      uint32
	end      uint32
	packetID uint64
	frame    uint64
}

// connTable holds the wire state of the most recent maxConns connections.
type connTable struct {
	m     map[event.ConnID]*connWire
	order []event.ConnID
	next  int
}

func newConnTable(n int) *connTable {
	return &connTable{m: make(map[event.ConnID]*connWire, min(n, 256)), order: make([]event.ConnID, n)}
}

func (t *connTable) get(c event.ConnID) *connWire { return t.m[c] }

func (t *connTable) getOrAdd(c event.ConnID) *connWire {
	if w, ok := t.m[c]; ok {
		return w
	}
	if old := t.order[t.next]; old != (event.ConnID{}) {
		delete(t.m, old)
	}
	t.order[t.next] = c
	t.next = (t.next + 1) % len(t.order)
	w := &connWire{ws: [2]int8{-1, -1}}
	t.m[c] = w
	return w
}

// wireFacts reads TCP frame r against its connection's wire state, gives
// it a packet id (a retransmission gets the id of the frame that first
// carried its range, so filtering on frame.packet_id shows both) and notes
// what Wireshark's analysis would say.
func (a *annotator) wireFacts(r *record) {
	fi := &r.fi
	c := a.conns.getOrAdd(fi.conn)
	d, o := 0, 1
	if r.dir == dirOut {
		d, o = 1, 0
	}
	seq, ack := fi.key.Seq, fi.key.Ack
	syn, fin, rst := fi.has(header.TCPFlagSyn), fi.has(header.TCPFlagFin), fi.has(header.TCPFlagRst)
	hasAck := fi.has(header.TCPFlagAck)
	segLen := uint32(fi.key.Len)
	seqLen := segLen
	if syn {
		seqLen++
	}
	if fin {
		seqLen++
	}
	if syn {
		c.isn[d], c.isnSet[d] = seq, true
		c.synSeen[d] = true
		c.ws[d] = fi.ws
		if r.dir == dirOut {
			// Our SYN or SYN-ACK: the connection the engine numbers
			// its refusals for starts here (refusedFrame).
			c.refusals, c.refusalsKnown = 0, true
		}
	}
	win := uint32(fi.win)
	if !syn && c.synSeen[0] && c.synSeen[1] && c.ws[0] >= 0 && c.ws[1] >= 0 {
		win <<= uint(c.ws[d]) // RFC 7323 2.3: never on a SYN
	}

	// A range sent before: a retransmission, tied to its first frame.
	if seqLen > 0 && c.seen[d] && seqnum.Value(seq).LessThan(seqnum.Value(c.nextSeq[d])) {
		r.packetID, r.origFrame = c.origin(d, seq)
		keepalive := segLen <= 1 && seq+1 == c.nextSeq[d] && !syn && !fin && !rst
		if r.dir == dirIn && r.origFrame != 0 && !r.lost && !keepalive && !a.faultCopyOf(r) {
			// Wireshark reads a keepalive's shape before a
			// retransmission's, and so do we.
			r.wire = append(r.wire, "retransmission of frame "+strconv.FormatUint(r.origFrame, 10))
		}
	}
	fresh := r.packetID == 0
	if fresh {
		a.ids++
		r.packetID = a.ids
	}
	// Remember the range as the frames that carry it on the wire. A
	// super-frame written as its wire segments (superframe.go) is as
	// many frames, numbered from r.no: each gets a packet id and an
	// entry of its own, MSS by MSS from SEQ, so that a retransmission of
	// one wire segment's range names that segment, as Wireshark does, and
	// filtering on its packet id shows the two alone. Remembered as one
	// range with one id, every repeat inside it named the first wire
	// segment, and frame.packet_id matched all of them. The ring so
	// holds the last sentRing wire segments however they came.
	n := 1
	if r.segs > 1 && r.mss > 0 && !syn {
		n = r.segs
		r.segIDs = make([]uint64, n)
		r.segIDs[0] = r.packetID
	}
	for i := range n {
		start, end := seq, seq+seqLen
		id, isNew := r.packetID, fresh
		if n > 1 {
			off := uint32(i * r.mss)
			start = seq + off
			end = start + min(uint32(r.mss), segLen-off)
			if i == n-1 && fin {
				end++
			}
		}
		if i > 0 {
			// A later wire segment: a retransmission of its own
			// range, or new.
			id, isNew = 0, false
			if c.seen[d] && seqnum.Value(start).LessThan(seqnum.Value(c.nextSeq[d])) {
				id, _ = c.origin(d, start)
			}
			if id == 0 {
				a.ids++
				id, isNew = a.ids, true
			}
			r.segIDs[i] = id
		}
		if isNew && end != start {
			c.sent[d][c.sentNext[d]] = sentSeg{seq: start, end: end, packetID: id, frame: r.no + uint64(i)}
			c.sentNext[d] = (c.sentNext[d] + 1) % sentRing
		}
	}

	if c.seen[d] && !syn && !fin && !rst {
		expected := seq == c.nextSeq[d]
		switch {
		case segLen <= 1 && seq+1 == c.nextSeq[d]:
			// SEQ one below what is expected, at most one byte: a
			// keepalive to Wireshark. Our own zero window probe has
			// this shape too (Linux's tcp_xmit_probe_skb); the engine
			// names it, so only the peer's is named here.
			if r.dir == dirIn {
				r.wire = append(r.wire, "keepalive")
			}
		case segLen == 1 && expected && c.seen[o] && c.lastWin[o] == 0:
			if r.dir == dirIn {
				r.wire = append(r.wire, "zero window probe")
			}
		case segLen == 0 && expected && hasAck && ack == c.lastAck[d] && win != 0 && win != c.lastWin[d]:
			r.wire = append(r.wire, fmt.Sprintf("window update rwnd %d → %d", c.lastWin[d], win))
		case segLen == 0 && expected && hasAck && ack == c.lastAck[d] && win != 0 && win == c.lastWin[d]:
			c.dupAcks[d]++
			if r.dir == dirOut {
				// Inbound duplicates are the engine's to count (RFC
				// 5681 2); ours are counted as Wireshark counts them.
				r.wire = append(r.wire, "dup ACK #"+strconv.Itoa(c.dupAcks[d]))
			}
		}
	}
	if !syn && !rst && !fin && fi.win == 0 && c.seen[d] {
		r.wire = append(r.wire, "zero window")
	}
	if fi.nsack > 0 {
		r.wire = append(r.wire, a.sackText(c, o, fi))
	}
	if hasAck && ack != c.lastAck[d] {
		c.dupAcks[d] = 0
	}
	if !c.seen[d] || seqnum.Value(c.nextSeq[d]).LessThan(seqnum.Value(seq+seqLen)) {
		c.nextSeq[d] = seq + seqLen
	}
	c.seen[d] = true
	if hasAck {
		c.lastAck[d] = ack
	}
	c.lastWin[d] = win
}

// faultCopyOf reports whether inbound frame r, which repeats the range
// of frame r.origFrame, is one of the two copies a fault's Duplicate made
// of one frame: the peer sent it once, so neither copy is a retransmission,
// whichever came first (with Reorder too, the copy goes before the
// original). The copy says "fault: duplicated" instead.
func (a *annotator) faultCopyOf(r *record) bool {
	if r.faultCopy {
		return true
	}
	if r.fp == 0 {
		return false
	}
	for _, o := range a.live() {
		if o.no == r.origFrame {
			return o.faultCopy && o.fp == r.fp
		}
	}
	return false
}

// origin returns the packet id and frame number of the frame that first
// carried sequence number seq in direction d: the one that began there,
// or else (a repacketized range) the one that covered it; zeros if none
// is remembered.
func (c *connWire) origin(d int, seq uint32) (packetID, frame uint64) {
	for i := range c.sent[d] {
		s := c.sent[d][i]
		if s.frame != 0 && s.seq == seq {
			return s.packetID, s.frame
		}
	}
	for i := range c.sent[d] {
		s := c.sent[d][i]
		if s.frame != 0 && seqnum.Value(seq).InRange(seqnum.Value(s.seq), seqnum.Value(s.end)) {
			return s.packetID, s.frame
		}
	}
	return 0, 0
}

// sackText renders SACK blocks relative to the ISN of the side whose data
// they cover, as Wireshark shows sequence numbers: "SACK 1449-2897".
func (a *annotator) sackText(c *connWire, o int, fi *frameInfo) string {
	b := []byte("SACK")
	for i := range int(fi.nsack) {
		l, r := fi.sack[i][0], fi.sack[i][1]
		if c.isnSet[o] {
			l, r = l-c.isn[o], r-c.isn[o]
		}
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(l), 10)
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(r), 10)
	}
	return string(b)
}
