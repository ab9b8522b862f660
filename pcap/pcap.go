// Package pcap captures the frames of a tapstack link to a pcapng file
// that Wireshark and tshark read, with what the TCP engine knows about each
// frame written as a packet comment: why a segment was sent ("SYN-ACK
// retransmit"), why it was dropped ("dropped: accept queue full"), which
// state change it caused ("SYN-RECEIVED → ESTABLISHED").
//
// A [Writer] is link middleware: it wraps any Ethernet stack.LinkEndpoint
// (a TAP device, an end of tap.Pipe, a tap.Fault) and is given to the stack
// in its place. Its [Writer.Observer] is set as the stack's tcp.Options
// Observer; the writer matches each event to its frame by the connection
// and the segment's wire key (tcp.Event.Conn and tcp.Event.Key):
//
//   - outbound, the engine reports a send before the frame reaches the
//     link, so the annotation is waiting when the frame is written;
//   - inbound, the writer delivers the frame first (gVisor processes it
//     on the delivering goroutine, so every event it causes has been
//     reported when delivery returns), then writes it with its
//     annotations. Frames the stack sent while the inbound one was being
//     processed are held back and written after it, so the capture reads
//     in causal order.
//
// Memory is bounded: annotations that never meet their frame are evicted
// oldest first (and counted), and a file can be limited in size, with
// rotation to further files.
package pcap

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
)

// Defaults for [Options].
const (
	DefaultName           = "tapstack"
	DefaultMaxAnnotations = 4096
	DefaultMaxHeld        = 4096
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
	// (default 4096). Beyond it the oldest are evicted and counted.
	MaxAnnotations int

	// MaxHeld bounds the frames held back while an inbound frame is being
	// processed (default 4096). Beyond it frames are written at once, in
	// arrival order rather than causal order.
	MaxHeld int
}

// Stats count what a [Writer] did.
type Stats struct {
	Frames    uint64 // frames written to the capture
	Inbound   uint64 // of which inbound
	Outbound  uint64 // of which outbound
	Annotated uint64 // frames written with a comment
	Skipped   uint64 // frames not written: size limit reached, capture closed, or a write error
	Evicted   uint64 // annotations dropped before their frame was seen
	Pending   int    // annotations waiting for their frame now
	Files     int    // capture files written to
	Bytes     int64  // bytes written to the current file (before buffering)
}

// Writer is link middleware that writes every frame to a pcapng capture.
// It is safe for concurrent use.
type Writer struct {
	nested.Endpoint

	opts  Options
	notes *notes
	bufs  sync.Pool // of *[]byte: frame copies

	mu      sync.Mutex
	ng      *pcapgo.NgWriter // nil once the capture is stopped
	cur     io.Writer        // the file ng writes to
	closer  io.Closer        // cur, if the writer owns it
	bytes   int64            // written to cur
	file    int              // number of the current file (0: the first)
	err     error            // first write error
	stopped bool
	stats   Stats
	queue   []*slot // frames in arrival order waiting for an inbound one
	scratch []annotation
}

// slot is a frame waiting in the queue: an inbound one is reserved when it
// arrives and filled once the stack has processed it.
type slot struct {
	ready   bool
	ts      time.Time
	dir     pcapgo.NgEpbFlag
	data    []byte
	length  int
	comment string
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
	cw := &Writer{opts: opts, notes: newNotes(opts.MaxAnnotations)}
	if err := cw.open(w); err != nil {
		return nil, err
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

// open starts a pcapng section on w. w.mu is held or w is new.
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
	w.ng, w.cur, w.bytes = ng, out, cw.n
	w.stats.Files++
	return nil
}

// countWriter counts the bytes of the section header.
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
// each event for its frame and then calls next, if not nil.
func (w *Writer) Observer(next tcp.Observer) tcp.Observer {
	if next == nil {
		return w.notes.record
	}
	return func(ev tcp.Event) {
		w.notes.record(ev)
		next(ev)
	}
}

// Observe files ev for its frame. It is the observer without chaining.
func (w *Writer) Observe(ev tcp.Event) { w.notes.record(ev) }

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	st := w.stats
	st.Bytes = w.bytes
	w.mu.Unlock()
	st.Evicted = w.notes.evictions()
	st.Pending = w.notes.len()
	return st
}

// Err returns the first error writing the capture, if any. After an error
// the capture stops; the link goes on.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Flush writes buffered blocks to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ng != nil {
		w.setErr(w.ng.Flush())
	}
	return w.err
}

// CloseCapture writes what is held back, flushes the capture and closes
// the file if the Writer owns it. Frames keep flowing through the link;
// they are no longer captured. It is called by Close.
func (w *Writer) CloseCapture() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return w.err
	}
	for _, s := range w.queue {
		if s.ready {
			w.writeLocked(s.ts, s.data, s.length, s.dir, s.comment)
			w.putBuf(s.data)
		}
	}
	w.queue = nil
	w.finishLocked()
	w.stopped = true
	return w.err
}

// finishLocked flushes and closes the current file. w.mu is held.
func (w *Writer) finishLocked() {
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
func (w *Writer) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		w.captureOutbound(pkt)
	}
	return w.Endpoint.WritePackets(pkts)
}

func (w *Writer) captureOutbound(pkt *stack.PacketBuffer) {
	ts := time.Now()
	buf := w.copyFrame(pkt)
	var c string
	if conn, key, ok := parseFrame(buf, true); ok {
		w.mu.Lock()
		as := w.notes.forOutbound(w.scratch[:0], conn, key)
		c = comment(as)
		w.scratch = as[:0]
	} else {
		w.mu.Lock()
	}
	defer w.mu.Unlock()
	if len(w.queue) > 0 && len(w.queue) < w.opts.MaxHeld && !w.stopped {
		// An inbound frame is being processed: this frame is probably
		// its consequence, so it goes after it.
		w.queue = append(w.queue, &slot{ready: true, ts: ts, dir: pcapgo.NgEpbFlagDirectionOutbound, data: buf, length: len(buf), comment: c})
		return
	}
	w.writeLocked(ts, buf, len(buf), pcapgo.NgEpbFlagDirectionOutbound, c)
	w.putBuf(buf)
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: it reserves the
// frame's place in the capture, delivers it, and writes it with the
// annotations of the events its processing caused.
func (w *Writer) DeliverNetworkPacket(protocol tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	s := &slot{ts: time.Now(), dir: pcapgo.NgEpbFlagDirectionInbound}
	s.data = w.copyFrame(pkt)
	s.length = len(s.data)
	w.mu.Lock()
	queued := !w.stopped
	if queued {
		w.queue = append(w.queue, s)
	}
	w.mu.Unlock()

	w.Endpoint.DeliverNetworkPacket(protocol, pkt)

	if !queued {
		w.putBuf(s.data)
		w.mu.Lock()
		w.stats.Skipped++
		w.mu.Unlock()
		return
	}
	var as []annotation
	conn, key, isTCP := parseFrame(s.data, false)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		// CloseCapture ran while the stack processed the frame.
		w.stats.Skipped++
		w.putBuf(s.data)
		return
	}
	if isTCP {
		as = w.notes.forInbound(w.scratch[:0], conn, key)
		s.comment = comment(as)
		w.scratch = as[:0]
	}
	s.ready = true
	w.drainLocked()
}

// drainLocked writes the ready frames at the head of the queue. w.mu is
// held.
func (w *Writer) drainLocked() {
	i := 0
	for ; i < len(w.queue) && w.queue[i].ready; i++ {
		s := w.queue[i]
		w.writeLocked(s.ts, s.data, s.length, s.dir, s.comment)
		w.putBuf(s.data)
		w.queue[i] = nil
	}
	if i == len(w.queue) {
		w.queue = w.queue[:0]
		return
	}
	w.queue = append(w.queue[:0], w.queue[i:]...)
}

// blockSize is the size of an enhanced packet block with a flags option
// and one comment: 28 bytes of header, the padded data, the options (each
// a 4-byte header and padded value), end of options, and the trailer.
func blockSize(capLen int, comment string) int64 {
	pad := func(n int) int { return (n + 3) &^ 3 }
	n := 28 + pad(capLen) + 4 + 4 + 4 + 4 // flags option, end of options, trailer
	if comment != "" {
		n += 4 + pad(len(comment))
	}
	return int64(n)
}

// writeLocked writes one frame. w.mu is held.
func (w *Writer) writeLocked(ts time.Time, data []byte, length int, dir pcapgo.NgEpbFlag, comment string) {
	if w.ng == nil {
		w.stats.Skipped++
		return
	}
	if w.opts.SnapLen > 0 && len(data) > w.opts.SnapLen {
		data = data[:w.opts.SnapLen]
	}
	if len(comment) > 0xfff0 {
		comment = comment[:0xfff0]
	}
	size := blockSize(len(data), comment)
	if w.opts.MaxBytes > 0 && w.bytes+size > w.opts.MaxBytes {
		if !w.rotateLocked() {
			w.stats.Skipped++
			return
		}
	}
	opts := pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: dir}}
	if comment != "" {
		opts.Comments = []string{comment}
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: length}
	if err := w.ng.WritePacketWithOptions(ci, data, opts); err != nil {
		w.setErr(err)
		w.ng = nil
		w.stats.Skipped++
		return
	}
	w.bytes += size
	w.stats.Frames++
	if dir == pcapgo.NgEpbFlagDirectionInbound {
		w.stats.Inbound++
	} else {
		w.stats.Outbound++
	}
	if comment != "" {
		w.stats.Annotated++
	}
}

// rotateLocked moves to the next file, if Options.Next allows. It reports
// whether there is room to write. w.mu is held.
func (w *Writer) rotateLocked() bool {
	if w.opts.Next == nil {
		w.finishLocked()
		return false
	}
	w.finishLocked()
	if w.err != nil {
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
	bp, _ := w.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 2048)
		bp = &b
	}
	b := (*bp)[:0]
	for _, v := range pkt.AsSlices() {
		b = append(b, v...)
	}
	return b
}

func (w *Writer) putBuf(b []byte) {
	if cap(b) > 1<<16 {
		return
	}
	b = b[:0]
	w.bufs.Put(&b)
}

// parseFrame finds the TCP segment in an Ethernet frame and returns its
// connection from the stack's viewpoint (outbound: Local is the source)
// and its wire key. Fragments and IPv6 extension headers are not followed.
func parseFrame(b []byte, outbound bool) (tcp.ConnID, tcp.SegKey, bool) {
	if len(b) < header.EthernetMinimumSize {
		return tcp.ConnID{}, tcp.SegKey{}, false
	}
	eth := header.Ethernet(b)
	ip := b[header.EthernetMinimumSize:]
	var src, dst netip.Addr
	var seg []byte
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		h := header.IPv4(ip)
		if len(ip) < header.IPv4MinimumSize || h.Protocol() != uint8(header.TCPProtocolNumber) {
			return tcp.ConnID{}, tcp.SegKey{}, false
		}
		hl, tl := int(h.HeaderLength()), int(h.TotalLength())
		if hl < header.IPv4MinimumSize || tl < hl || tl > len(ip) || h.More() || h.FragmentOffset() != 0 {
			return tcp.ConnID{}, tcp.SegKey{}, false
		}
		src = netip.AddrFrom4(h.SourceAddress().As4())
		dst = netip.AddrFrom4(h.DestinationAddress().As4())
		seg = ip[hl:tl]
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if len(ip) < header.IPv6MinimumSize || h.NextHeader() != uint8(header.TCPProtocolNumber) {
			return tcp.ConnID{}, tcp.SegKey{}, false
		}
		pl := int(h.PayloadLength())
		if header.IPv6MinimumSize+pl > len(ip) {
			return tcp.ConnID{}, tcp.SegKey{}, false
		}
		src = netip.AddrFrom16(h.SourceAddress().As16())
		dst = netip.AddrFrom16(h.DestinationAddress().As16())
		seg = ip[header.IPv6MinimumSize : header.IPv6MinimumSize+pl]
	default:
		return tcp.ConnID{}, tcp.SegKey{}, false
	}
	if len(seg) < header.TCPMinimumSize {
		return tcp.ConnID{}, tcp.SegKey{}, false
	}
	t := header.TCP(seg)
	off := int(t.DataOffset())
	if off < header.TCPMinimumSize || off > len(seg) {
		return tcp.ConnID{}, tcp.SegKey{}, false
	}
	key := tcp.SegKey{Seq: t.SequenceNumber(), Ack: t.AckNumber(), Flags: uint8(t.Flags()), Len: len(seg) - off}
	s := netip.AddrPortFrom(src, t.SourcePort())
	d := netip.AddrPortFrom(dst, t.DestinationPort())
	if outbound {
		return connOf(s, d), key, true
	}
	return connOf(d, s), key, true
}
