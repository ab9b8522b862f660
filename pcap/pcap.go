// Package pcap captures the frames of a tapstack link to a pcapng file
// that Wireshark and tshark read, with what the stack knows about each
// frame written as a packet comment: why a segment was sent ("SYN-ACK
// retransmit #2"), what an inbound ACK did ("ACK: SND.UNA +2896, cwnd
// 14480"), why a segment was dropped ("dropped: accept queue full"), which
// state change it caused or carries ("CLOSE-WAIT → LAST-ACK (close)"),
// which listener decision it met ("SYN queued: SYN queue 1/1024, accept
// queue 0/3") and what the fault middleware did to it ("fault: dropped
// (loss 5%, seed 7, #312)"). Every frame gets a comment; ARP and ICMP are
// described with what the stack did with them, and a UDP datagram with
// what the stack's UDP events say became of it ("udp datagram 12 bytes
// delivered to 192.0.2.1:53", "no port: answered ICMP port unreachable
// (frame 7)", "receive buffer full: dropped"). [Vocabulary] lists every
// phrase.
//
// A [Writer] is link middleware: it wraps any Ethernet stack.LinkEndpoint
// (a TAP device, an end of tap.Pipe, a tap.Fault) and is given to the stack
// in its place. Its [Writer.Observer] is set as the stack's tcp.Options
// Observer, and [Writer.FaultObserver] as a tap.Fault's observer.
//
// Events are matched with frames by wire identity (direction, connection,
// SEQ, ACK, flags, length; the engine's answer to a frame the link refused
// by the number it gave the refusal too), never by order, so it does not
// matter whether the engine reports an event before its frame passes the
// link or after:
// frames wait in a bounded window (Options.Window, Options.MaxHeld) for
// late annotations, and annotations wait in a bounded table for late
// frames. A state change made by a user call or a timer is written on the
// frame that carries its effect (the SYN of a connect, the FIN of a close,
// the RST of an abort); one that no frame carries (a TIME-WAIT expiry) is
// written as a pcapng custom block at its time and told on the
// connection's next frame.
//
// Where pcapng has a standard option for a fact, it is written as well:
// the direction in epb_flags, epb_verdict (eBPF TC TC_ACT_SHOT) on frames
// the engine or a fault dropped, epb_packetid shared by a retransmission
// and the frame that first carried its data, epb_dropcount for frames the
// link dropped before this one. Wireshark filters such as
// frame.verdict.ebpf_tc == 2 or frame.packet_id == 12 work on them.
//
// Memory is bounded: the window, the pending annotations and the per
// connection wire state have limits, and a file can be limited in size,
// with rotation to further files.
package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/tap"
)

// Defaults for [Options].
const (
	DefaultName           = "tapstack"
	DefaultMaxAnnotations = 4096
	DefaultMaxHeld        = 4096
	DefaultWindow         = 50 * time.Millisecond
)

// Options configure a [Writer]. The zero value captures whole frames to one
// file without a size limit.
type Options struct {
	// Name and Description go in the pcapng interface description block
	// (Wireshark shows them in the capture's properties). Name defaults to
	// "tapstack".
	Name, Description string

	// SnapLen, if positive, truncates each captured frame to that many
	// bytes (the original length is still recorded).
	SnapLen int

	// MaxBytes, if positive, limits the size of a capture file. When the
	// next block would take a file past it, Next is asked for a new file;
	// without Next, capturing stops and further frames are only counted
	// (Stats.Skipped). The link is never disturbed.
	MaxBytes int64

	// Next opens capture file number n (1, 2, ...) when the current one
	// is full. The writer closes each file Next returned if it is an
	// io.Closer. [RotateFiles] numbers files after a path.
	Next func(n int) (io.Writer, error)

	// MaxAnnotations bounds the engine events waiting for their frame
	// (default 4096). Beyond it the oldest are dropped and counted
	// (Stats.Unmatched).
	MaxAnnotations int

	// Window is how long a frame waits for annotations reported after it
	// passed (default 50ms), and MaxHeld how many frames may wait at once
	// (default 4096); beyond it the oldest is written at once.
	Window  time.Duration
	MaxHeld int

	// LinkDrops, if set, returns the link's count of frames dropped
	// because a queue was full (tap.PipeEnd.Stats().DroppedQueueFull,
	// tap.Device.Stats().TxDropped). Each frame records the drops since
	// the previous one in epb_dropcount and its comment, less those
	// the capture marked on their own frames: an outbound frame the link
	// refused when the capture wrote it, or that a fault middleware
	// below reported (tap.FaultNotSent), says "not sent" itself
	// (Stats.Refused). The count never goes down, and counts those
	// refused frames too, as the two named do. With a fault middleware
	// between the capture and the link, pass the count through
	// tap.Fault.LinkDrops, so that a refusal of one of the middleware's
	// own later writes is not told before the middleware reports it.
	LinkDrops func() uint64

	// SuperFrames writes each TCP super-frame (a TAP device's offloads:
	// one segment of up to 64 KiB standing for several wire segments)
	// as it passed the link, in one block. By default a super-frame is
	// written as the wire segments it stands for, cut at its MSS with
	// their checksums filled in, so that the capture shows what a wire
	// would have carried (superframe.go).
	SuperFrames bool
}

// Stats count what a [Writer] did.
type Stats struct {
	Frames      uint64 // frames written to the capture
	Inbound     uint64 // of which inbound
	Outbound    uint64 // of which outbound
	Annotated   uint64 // frames written with a comment
	Dropped     uint64 // frames written with a drop verdict (engine or fault)
	Notes       uint64 // custom blocks: facts no frame carried
	Skipped     uint64 // frames not written: size limit reached, capture closed, or a write error
	Unmatched   uint64 // annotations that never met their frame: engine events, fault reports, recovery and path MTU notes, whether they waited in vain or found their table full
	Evicted     uint64 // the same as Unmatched (the name of earlier versions)
	Late        uint64 // annotations that came after their frame was written
	Unexplained uint64 // TCP frames written with no engine annotation ("no engine event")
	SuperFrames uint64 // TCP super-frames captured (each written as its wire segments unless Options.SuperFrames)
	Refused     uint64 // outbound frames the link below did not take (a full queue, or an error): marked dropped, "not sent", unless already written (out of the window); one copy of a frame a fault duplicated is "its copy not sent" or "…, its copy sent", not dropped
	Held        int    // frames waiting in the window now
	Pending     int    // annotations waiting for their frame now
	Files       int    // capture files written to
	Bytes       int64  // bytes written to the current file (before buffering)
}

// Writer is link middleware that writes every frame to a pcapng capture.
// It is safe for concurrent use.
type Writer struct {
	nested.Endpoint

	opts   Options
	bufs   sync.Pool // of *[]byte: frame copies
	seed   maphash.Seed
	faults atomic.Bool // a fault observer is attached: fingerprint frames
	joins  bool        // the device below joins the wire segments it reads (tap.JoinsSegments): its super-frames are GRO's, not TSO's

	mu        sync.Mutex
	ann       *annotator
	ng        *pcapgo.NgWriter // nil once the capture is stopped
	cw        *countWriter     // the file ng writes to
	bytes     int64            // written to cw, counting what pcapgo still buffers
	closer    io.Closer        // cw's file, if the writer owns it
	file      int              // number of the current file (0: the first)
	err       error            // first write error
	stopped   bool
	stats     Stats
	timer     *time.Timer // writes the window out when nothing else does
	armed     bool
	linkDrops uint64
	writing   atomic.Int32 // WritePackets calls between their write below and marking what it refused
	events    eventLog     // engine events not yet written (events.go)
}

var _ stack.LinkEndpoint = (*Writer)(nil)

// New returns inner wrapped in a capture to w. Give the result to the stack
// instead of inner, and set [Writer.Observer] as the stack's TCP observer
// so frames carry comments. Close (called by the stack when the NIC goes)
// flushes the capture; w itself is not closed.
func New(inner stack.LinkEndpoint, w io.Writer, opts Options) (*Writer, error) {
	if inner == nil {
		return nil, errors.New("pcap: nil link endpoint")
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.MaxAnnotations <= 0 {
		opts.MaxAnnotations = DefaultMaxAnnotations
	}
	if opts.MaxHeld <= 0 {
		opts.MaxHeld = DefaultMaxHeld
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	cw := &Writer{opts: opts, seed: maphash.MakeSeed(), joins: tap.JoinsSegments(inner)}
	cw.ann = newAnnotator(opts.Window, opts.MaxHeld, opts.MaxAnnotations)
	if err := cw.open(w); err != nil {
		return nil, err
	}
	if opts.LinkDrops != nil {
		cw.linkDrops = opts.LinkDrops()
	}
	cw.Endpoint.Init(inner, cw)
	return cw, nil
}

// Create is New writing to a new file at path, which the Writer closes.
// With opts.MaxBytes set and opts.Next nil, full files rotate to
// path-numbered files as [RotateFiles] names them.
func Create(path string, inner stack.LinkEndpoint, opts Options) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if opts.MaxBytes > 0 && opts.Next == nil {
		opts.Next = RotateFiles(path)
	}
	w, err := New(inner, f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.closer = f
	return w, nil
}

// RotateFiles returns an Options.Next that creates files named after path
// with the file number before the extension: capture.pcapng,
// capture-1.pcapng, capture-2.pcapng, ...
func RotateFiles(path string) func(n int) (io.Writer, error) {
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	return func(n int) (io.Writer, error) {
		return os.Create(fmt.Sprintf("%s-%d%s", base, n, ext))
	}
}

// open starts a pcapng section on out. w.mu is held or w is new.
func (w *Writer) open(out io.Writer) error {
	cw := &countWriter{w: out}
	ng, err := pcapgo.NewNgWriterInterface(cw, pcapgo.NgInterface{
		Name:                w.opts.Name,
		Description:         w.opts.Description,
		LinkType:            layers.LinkTypeEthernet,
		SnapLength:          uint32(max(w.opts.SnapLen, 0)),
		TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "tapstack"}})
	if err != nil {
		return fmt.Errorf("pcap: write header: %w", err)
	}
	if err := ng.Flush(); err != nil {
		return fmt.Errorf("pcap: write header: %w", err)
	}
	w.ng, w.cw, w.bytes = ng, cw, cw.n
	w.stats.Files++
	return nil
}

// countWriter counts the bytes written to a file.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Observer returns the observer to set as tcp.Options.Observer: it files
// each event for its frame and then calls next, if not nil. It does no
// I/O: frames are written by the link's goroutines and a timer.
func (w *Writer) Observer(next event.Observer) event.Observer {
	if next == nil {
		return w.observe
	}
	return func(ev event.Event) {
		w.observe(ev)
		next(ev)
	}
}

// observe files ev for its frame. Once the capture is stopped, ev is
// lost and counted (EventStats.Skipped): the stack closed the link
// before an engine goroutine delivered it.
func (w *Writer) observe(ev event.Event) {
	w.mu.Lock()
	if w.stopped {
		w.events.skipped++
	} else {
		now := time.Now()
		w.ann.event(now, &ev)
		w.recordEventLocked(now, &ev)
	}
	w.mu.Unlock()
}

// FaultObserver returns the observer to set as tap.FaultConfig.Observer
// of a tap.Fault below this Writer (between it and the wire): each fault
// is written as a comment on its frame, and an inbound frame the fault
// dropped is written too, with a drop verdict, though the stack never saw
// it. It then calls next, if not nil.
func (w *Writer) FaultObserver(next func(tap.FaultEvent)) func(tap.FaultEvent) {
	w.faults.Store(true)
	return func(ev tap.FaultEvent) {
		w.observeFault(&ev)
		if next != nil {
			next(ev)
		}
	}
}

func (w *Writer) observeFault(ev *tap.FaultEvent) {
	now := time.Now()
	fp := maphash.Bytes(w.seed, ev.Data)
	var lost *record
	if ev.Dir == tap.FaultInbound && (ev.Kind == tap.FaultLoss || ev.Kind == tap.FaultQueueFull || ev.Kind == tap.FaultBlackHole) {
		buf := w.getBuf()
		buf = append(buf, ev.Data...)
		lost = &record{ts: now, dir: dirIn, data: buf, length: len(buf), fi: parseFrame(buf, false), fp: fp}
		w.noteLostOffload(lost, ev.MSS)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		if lost != nil {
			w.putBuf(lost.data)
			w.stats.Skipped++
		}
		return
	}
	if lost != nil {
		w.noteLinkDropsLocked(lost)
	}
	marked := w.ann.fault(now, ev, fp, lost)
	if ev.Kind == tap.FaultNotSent {
		w.refusedLocked(1, marked)
	}
	w.flushLocked(now, false)
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.Bytes = w.bytes
	st.Unmatched = w.ann.stats.unmatched
	st.Evicted = st.Unmatched
	st.Late = w.ann.stats.late
	st.Unexplained = w.ann.stats.unexplained
	st.Held = len(w.ann.live())
	st.Pending = w.ann.waiting()
	return st
}

// Err returns the first error writing the capture, if any. After an error
// the capture stops; the link goes on.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Flush writes the frames whose window has passed, and buffered blocks,
// to the file. Frames still in their window stay there: annotations for
// them may still come. CloseCapture writes everything.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked(time.Now(), false)
	if w.ng != nil {
		w.setErr(w.ng.Flush())
	}
	return w.err
}

// CloseCapture writes every frame still in the window, flushes the
// capture and closes the file if the Writer owns it. Frames keep flowing
// through the link; they are no longer captured. It is called by Close.
func (w *Writer) CloseCapture() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return w.err
	}
	w.flushLocked(time.Now(), true)
	w.finishLocked()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	return w.err
}

// finishLocked flushes and closes the current file. w.mu is held.
func (w *Writer) finishLocked() {
	w.writeEventsLocked()
	if w.ng != nil {
		w.setErr(w.ng.Flush())
		w.ng = nil
	}
	if w.closer != nil {
		w.setErr(w.closer.Close())
		w.closer = nil
	}
}

func (w *Writer) setErr(err error) {
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("pcap: %w", err)
	}
}

// Close implements stack.LinkEndpoint: it closes the capture, then the
// inner endpoint.
func (w *Writer) Close() {
	_ = w.CloseCapture()
	w.Endpoint.Close()
}

// WritePackets implements stack.LinkWriter: it captures each frame, then
// hands them all to the inner endpoint. The frames already carry their
// Ethernet header (the NIC asks the link to add it before writing).
//
// A frame the inner endpoint refuses (it wrote the first n of them: a
// full queue, as tap.Pipe's, which answers tcpip.ErrNoBufferSpace, or a
// link that is down) never reached the wire. Its own records say so, with
// a drop verdict (refused), rather than a later frame's drop count: the
// capture is where a user sees what the sender was told.
func (w *Writer) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	var recBuf [8]*record
	var startBuf [8]int
	recs, starts := recBuf[:0], startBuf[:0]
	for _, pkt := range pkts.AsSlice() {
		starts = append(starts, len(recs))
		recs = w.captureOutbound(pkt, recs)
	}
	w.writing.Add(1)
	n, err := w.Endpoint.WritePackets(pkts)
	if n < len(starts) {
		w.refused(recs, starts, max(n, 0), err)
	}
	w.writing.Add(-1)
	return n, err
}

// refused marks the records of the frames the inner endpoint did not
// take, from the from-th on (frame j's records start at starts[j]):
// dropped, with why. A record already written (out of the window) keeps
// what it said, and the drop is left to the link's count on a later frame
// (Options.LinkDrops). A frame whose record a fault middleware below has
// already marked dropped (tap.FaultNotSent, reported during the write; an
// outbound record is marked by nothing else before its write returns) was
// told and counted there.
func (w *Writer) refused(recs []*record, starts []int, from int, err tcpip.Error) {
	_, told := err.(*tcpip.ErrNoBufferSpace) // the sender hears of it, and numbers it (refusedFrame)
	full := told || err == nil
	why := "not sent: the link's queue was full"
	if !full {
		why = "not sent: the link refused it (" + err.String() + ")"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	live := w.ann.live()
	k, marked := 0, 0
	for j := from; j < len(starts); j++ {
		end := len(recs)
		if j+1 < len(starts) {
			end = starts[j+1]
		}
		frame := recs[starts[j]:end]
		if told {
			w.ann.refusedFrame(frame)
		}
		if slices.ContainsFunc(frame, func(r *record) bool { return r.dropped }) {
			continue
		}
		k++
		for _, r := range frame {
			if !slices.Contains(live, r) {
				continue
			}
			r.wire = append(r.wire, why)
			r.dropped = true
			marked++
		}
	}
	w.refusedLocked(k, full && marked > 0)
}

// refusedLocked counts k frames the link below refused. If their records
// say so (marked) and the link counted them (a full queue), they are
// taken out of its count (Options.LinkDrops), so that no later frame
// tells them again; otherwise a later frame tells them. w.mu is held.
func (w *Writer) refusedLocked(k int, marked bool) {
	w.stats.Refused += uint64(k)
	if marked && w.opts.LinkDrops != nil {
		w.linkDrops += uint64(k)
	}
}

// captureOutbound puts the records of one outbound frame in the window
// and appends them to added.
func (w *Writer) captureOutbound(pkt *stack.PacketBuffer, added []*record) []*record {
	now := time.Now()
	if added, ok := w.splitOutbound(now, pkt, added); ok {
		return added
	}
	buf := w.copyFrame(pkt)
	r := &record{ts: now, dir: dirOut, data: buf, length: len(buf), fi: parseFrame(buf, true)}
	if w.faults.Load() {
		r.fp = maphash.Bytes(w.seed, buf)
	}
	w.noteOffload(r, pkt)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		w.stats.Skipped++
		w.putBuf(buf)
		return added
	}
	w.noteLinkDropsLocked(r)
	w.ann.addFrame(now, r)
	w.flushLocked(now, false)
	return append(added, r)
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: it puts the
// frame in the window, delivers it, and starts its wait for late
// annotations once the stack has processed it.
func (w *Writer) DeliverNetworkPacket(protocol tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	now := time.Now()
	buf := w.copyFrame(pkt)
	r := &record{ts: now, dir: dirIn, data: buf, length: len(buf), fi: parseFrame(buf, false), delivering: true}
	if w.faults.Load() {
		r.fp = maphash.Bytes(w.seed, buf)
	}
	w.noteOffload(r, pkt)
	w.mu.Lock()
	queued := !w.stopped
	if queued {
		w.noteLinkDropsLocked(r)
		w.ann.addFrame(now, r)
	} else {
		w.stats.Skipped++
		w.putBuf(buf)
	}
	w.mu.Unlock()

	w.Endpoint.DeliverNetworkPacket(protocol, pkt)

	if !queued {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return // CloseCapture wrote it
	}
	now = time.Now()
	w.ann.delivered(now, r)
	w.flushLocked(now, false)
}

// noteLinkDropsLocked records on r the frames the link dropped since the
// previous frame. w.mu is held.
func (w *Writer) noteLinkDropsLocked(r *record) {
	if w.opts.LinkDrops == nil {
		return
	}
	n := w.opts.LinkDrops()
	if w.writing.Load() != 0 {
		// A write below may have just been refused, counted by the
		// link and not yet marked on its frame (refused): the count
		// waits for a frame captured with no write under way. The
		// count is read first, so a write that starts after the test
		// adds nothing to it.
		return
	}
	if n > w.linkDrops {
		r.dropCount = n - w.linkDrops
		r.wire = append(r.wire, fmt.Sprintf("link drops %d", r.dropCount))
		w.linkDrops = n
	}
	// A count below what the capture has told and explained is one read
	// while a fault middleware's write was under way (tap.Fault.LinkDrops);
	// the refusals it explained since stay explained.
}

// flushLocked writes what the window lets go, and arms the timer that
// writes the rest when no frame or event comes. w.mu is held.
func (w *Writer) flushLocked(now time.Time, all bool) {
	for _, r := range w.ann.take(now, all) {
		w.writeLocked(r)
	}
	if all || w.armed || len(w.ann.live()) == 0 {
		return
	}
	w.armed = true
	if w.timer == nil {
		w.timer = time.AfterFunc(w.opts.Window, w.tick)
	} else {
		w.timer.Reset(w.opts.Window)
	}
}

func (w *Writer) tick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if w.stopped {
		return
	}
	w.flushLocked(time.Now(), false)
	w.writeEventsLocked()
	if w.ng != nil {
		w.setErr(w.ng.Flush())
	}
}

// epbSize is the size of an enhanced packet block: 28 bytes of header, the
// padded data, the options (each a 4-byte header and padded value), end of
// options, and the trailer.
func epbSize(capLen int, comment string, dropped, dropCount bool) int64 {
	pad := func(n int) int { return (n + 3) &^ 3 }
	n := 28 + pad(capLen) + 8 + 12 + 4 + 4 // flags, packet id, end of options, trailer
	if comment != "" {
		n += 4 + pad(len(comment))
	}
	if dropped {
		n += 4 + pad(9)
	}
	if dropCount {
		n += 12
	}
	return int64(n)
}

// tcActShot is Linux's TC_ACT_SHOT (include/uapi/linux/pkt_cls.h), the
// eBPF TC verdict for a dropped packet.
const tcActShot = 2

// writeLocked writes one record: a frame as an enhanced packet block, a
// note as a custom block. w.mu is held.
func (w *Writer) writeLocked(r *record) {
	if r.isNote() {
		w.writeNoteLocked(r)
		return
	}
	defer w.putBuf(r.data)
	comment := w.ann.comment(r)
	if w.ng == nil {
		w.stats.Skipped += uint64(max(r.segs, 1))
		return
	}
	if r.segs > 0 {
		w.writeSuperLocked(r, comment)
		return
	}
	w.writeEPBLocked(r, r.data, r.length, comment, r.packetID)
}

// writeEPBLocked writes data, the first bytes of a frame of length bytes,
// as an enhanced packet block with r's direction, verdict and drop count
// and packet id id. w.mu is held.
func (w *Writer) writeEPBLocked(r *record, data []byte, length int, comment string, id uint64) {
	if w.opts.SnapLen > 0 && len(data) > w.opts.SnapLen {
		data = data[:w.opts.SnapLen]
	}
	if len(comment) > 0xfff0 {
		comment = comment[:0xfff0]
	}
	size := epbSize(len(data), comment, r.dropped, r.dropCount > 0)
	if w.opts.MaxBytes > 0 && w.bytes+size > w.opts.MaxBytes {
		if !w.rotateLocked() {
			w.stats.Skipped++
			return
		}
	}
	dir := pcapgo.NgEpbFlagDirectionInbound
	if r.dir == dirOut {
		dir = pcapgo.NgEpbFlagDirectionOutbound
	}
	opts := pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: dir}, PacketID: &id}
	if comment != "" {
		opts.Comments = []string{comment}
	}
	if r.dropped {
		var v [8]byte
		binary.LittleEndian.PutUint64(v[:], tcActShot)
		opts.Verdicts = []pcapgo.NgEpbVerdict{{Type: pcapgo.NgEpbVerdictTypeLinuxeBPFTC, Data: v[:]}}
	}
	if r.dropCount > 0 {
		dc := r.dropCount
		opts.DropCount = &dc
	}
	ci := gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(data), Length: length}
	if err := w.ng.WritePacketWithOptions(ci, data, opts); err != nil {
		w.setErr(err)
		w.ng = nil
		w.stats.Skipped++
		return
	}
	w.bytes += size
	w.stats.Frames++
	if r.dir == dirIn {
		w.stats.Inbound++
	} else {
		w.stats.Outbound++
	}
	if comment != "" {
		w.stats.Annotated++
	}
	if r.dropped {
		w.stats.Dropped++
	}
}

// writeNoteLocked writes a timeline note as a pcapng custom block. w.mu is
// held.
func (w *Writer) writeNoteLocked(r *record) {
	if w.ng == nil {
		return
	}
	b := noteBlock(r.ts, r.noteConn, r.note)
	if w.opts.MaxBytes > 0 && w.bytes+int64(len(b)) > w.opts.MaxBytes {
		if !w.rotateLocked() {
			return
		}
	}
	// The block goes after what pcapgo has buffered.
	if err := w.ng.Flush(); err != nil {
		w.setErr(err)
		w.ng = nil
		return
	}
	if _, err := w.cw.Write(b); err != nil {
		w.setErr(err)
		w.ng = nil
		return
	}
	w.bytes += int64(len(b))
	w.stats.Notes++
}

// rotateLocked moves to the next file, if Options.Next allows. It reports
// whether there is room to write. w.mu is held.
func (w *Writer) rotateLocked() bool {
	w.finishLocked()
	if w.opts.Next == nil || w.err != nil {
		return false
	}
	w.file++
	out, err := w.opts.Next(w.file)
	if err != nil {
		w.setErr(err)
		return false
	}
	if c, ok := out.(io.Closer); ok {
		w.closer = c
	}
	if err := w.open(out); err != nil {
		w.setErr(err)
		if w.closer != nil {
			w.closer.Close()
			w.closer = nil
		}
		return false
	}
	return true
}

// copyFrame copies pkt's bytes, link header included, into a recycled
// buffer; most frames fit an Ethernet MTU.
func (w *Writer) copyFrame(pkt *stack.PacketBuffer) []byte {
	b := w.getBuf()
	for _, v := range pkt.AsSlices() {
		b = append(b, v...)
	}
	return b
}

func (w *Writer) getBuf() []byte {
	bp, _ := w.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 2048)
		bp = &b
	}
	return (*bp)[:0]
}

func (w *Writer) putBuf(b []byte) {
	if b == nil || cap(b) > 1<<16 {
		return
	}
	b = b[:0]
	w.bufs.Put(&b)
}
