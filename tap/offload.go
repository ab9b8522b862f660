//go:build linux

package tap

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Offloads say which offloads a [Device] uses.
type Offloads struct {
	// VnetHdr: the device was opened with IFF_VNET_HDR, so every frame
	// carries a virtio-net header.
	VnetHdr bool
	// Checksum: the kernel may hand over frames whose TCP or UDP
	// checksum it left partial (TUN_F_CSUM); tapstack trusts them, as
	// a NIC driver trusts its NIC, since they never crossed a wire.
	Checksum bool
	// TSO4 and TSO6: the kernel may hand over TCP super-frames of up to
	// 64 KiB (TUN_F_TSO4, TUN_F_TSO6).
	TSO4, TSO6 bool
	// Coalesce: consecutive outbound segments of one flow are written as
	// one super-frame with a GSO header.
	Coalesce bool
	// GRO: inbound super-frames go to the stack whole, as one segment,
	// instead of as the wire segments they stand for. (Without offloads
	// the device joins wire segments by WithGRO; DeviceStats.RxJoins.)
	GRO bool
}

// String lists the offloads in use, as ethtool -k names them.
func (o Offloads) String() string {
	if !o.VnetHdr {
		return "none"
	}
	s := "vnet_hdr"
	for _, f := range []struct {
		on   bool
		name string
	}{{o.Checksum, "tx-checksumming"}, {o.TSO4, "tcp-segmentation-offload(4)"}, {o.TSO6, "tcp-segmentation-offload(6)"},
		{o.Coalesce, "coalesce"}, {o.GRO, "gro"}} {
		if f.on {
			s += " " + f.name
		}
	}
	return s
}

// WithOffloads turns the TAP offloads on or off (default on where the
// kernel allows). With them, the device is opened with IFF_VNET_HDR and
// TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6): the kernel may hand
// over TCP super-frames of up to 64 KiB with partial checksums, which go
// to the stack whole (see [WithGRO]), and the device writes consecutive
// segments of one flow as one super-frame (see [WithCoalescing]). The
// link offers gVisor's host GSO (stack.GSOEndpoint), so a gVisor TCP on
// it sends super-frames too. A capture (package pcap) shows every
// super-frame as the wire segments it stands for.
func WithOffloads(on bool) Option {
	return func(c *config) { c.offloads = on }
}

// WithGRO says how the device hands an inbound super-frame to the stack:
// whole, as one TCP segment of up to 64 KiB, as Linux's GRO hands its
// stack a coalesced packet (on, the default), or as the wire segments it
// stands for, cut as the kernel's tcp_gso_segment would have cut them
// (off). Whole, the stack does its per-segment work once per super-frame:
// kernel to tapstack over one connection took 1.0 CPU second per GiB
// whole against 7.7 split, 7 to 8 times the throughput; the engine's
// events and counters then describe super-segments, and it acknowledges
// them as it acknowledges segments. A capture (package pcap) writes the
// wire segments either way. Without offloads the kernel hands over wire
// segments, and with GRO on the read loop joins those of one flow that
// follow one another in a burst, by Linux's GRO rules (gro.go): kernel to
// tapstack without offloads took 1.8 CPU seconds per GiB joined against
// 5.5, 3.2 times the throughput.
func WithGRO(on bool) Option {
	return func(c *config) { c.gro = on }
}

// WithCoalescing turns outbound coalescing on or off (default on with
// offloads). With it, the device's writer goroutine sends consecutive
// segments of one flow queued for it ([WithTxQueue]) to the kernel as one
// super-frame in one write; without it, each frame in a write of its own.
func WithCoalescing(on bool) Option {
	return func(c *config) { c.coalesce = on }
}

// DefaultTxQueue is the outbound queue of a device, in frames: Linux's
// default txqueuelen.
const DefaultTxQueue = 1000

// WithTxQueue sets the length of the outbound queue of a device (default
// [DefaultTxQueue], at least 1). The stack's frames go to the queue, and
// a goroutine of the device writes them, as a NIC's transmit path takes
// them from the qdisc: the stack's goroutine never waits for the write,
// which over a TAP is the kernel's receive path, its TCP included. Without
// offloads the stack's goroutine once made every write itself: sending to
// the kernel took 3.1 Gbit/s, against 5.1 with the queue, and the kernel
// sending to us 2.4 against 2.9 (our ACKs are writes, in which the kernel
// sends its next segments). Once 256 frames wait (busyFrames), the
// device says so (stack.QueueingLink), and tapstack's TCP holds new data
// back until the writer has written some (OnOutboundRoom), as Linux's TCP
// small queues do until the NIC completes a transmission. A frame that
// finds the queue full is dropped and counted in DeviceStats.TxDropped,
// as a full NIC queue drops it, and the stack is told (its local
// congestion). As in Linux, the frame the idle device takes at once is
// not in the queue: a queue of one holds one frame besides the one being
// written.
func WithTxQueue(frames int) Option {
	return func(c *config) { c.txQueue = frames }
}

// DefaultRxQueue is the inbound queue of a device, in frames: up to 4
// MiB of super-frames read and not yet delivered with offloads, 96 KiB
// of frames without.
const DefaultRxQueue = 64

// WithRxQueue sets the length of the inbound queue of a device
// (default [DefaultRxQueue]): frames are read by the device's
// read loop and delivered to the stack by a goroutine of their own
// (rxqueue.go); when the queue is full the read loop waits, and the
// kernel's queue to the device holds the rest. 0 delivers each frame on
// the read loop, which then reads what the kernel queued without waiting
// and marks the burst's end when it finds no frame ready. Kernel to
// tapstack over GRO the queue took 11.1 to 14.3 Gbit/s; kernel to
// gVisor's TCP, which queues segments for goroutines of its own, 17.4 to
// 13.5 (8 alternating 1 GiB runs, medians).
func WithRxQueue(frames int) Option {
	return func(c *config) { c.rxQueue = frames }
}

// tunOffloads are the offloads we ask for: partial checksums and TCP
// segmentation for both IP versions, as virtio-net drivers ask for them.
const tunOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// setOffloads asks the kernel for the offloads on fd, opened with
// IFF_VNET_HDR.
func setOffloads(fd int) error {
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads); err != nil {
		return fmt.Errorf("ioctl TUNSETOFFLOAD: %w", err)
	}
	return nil
}

// vnetSupported reports whether the TUN driver behind fd offers
// IFF_VNET_HDR (TUNGETFEATURES, before TUNSETIFF).
func vnetSupported(fd int) bool {
	features, err := unix.IoctlGetUint32(fd, unix.TUNGETFEATURES)
	return err == nil && features&unix.IFF_VNET_HDR != 0
}

// GSOMaxSize implements stack.GSOEndpoint: the largest super-frame, IP
// header included, that the link takes.
func (l *fdLink) GSOMaxSize() uint32 {
	if l.offloads.Coalesce || l.offloads.TSO4 || l.offloads.TSO6 {
		return maxSuperFrame
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint. With offloads, the link
// writes a gVisor packet's GSO options as a virtio-net header, so the
// kernel segments, as gVisor's fdbased endpoint does on a socket.
func (l *fdLink) SupportedGSO() stack.SupportedGSO {
	if l.offloads.VnetHdr {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

var _ stack.GSOEndpoint = (*fdLink)(nil)

// deliverVnet delivers a frame read with its virtio-net header.
func (r *rxReader) deliverVnet(f rxFrame) {
	l := r.l
	h, err := decodeVnetHdr(f.head)
	prefix := f.head[min(len(f.head), vnetHdrLen):]
	frameLen := max(f.len()-vnetHdrLen, 0)
	if err == nil {
		err = checkVnetHdrPrefix(h, prefix, frameLen)
	}
	if err != nil {
		l.rxBadOffload.Add(1)
		l.rxDropped.Add(1)
		return
	}
	full := l.fullCsum.Load()
	partial := h.flags&vnetFlagNeedsCsum != 0
	// validated: the frame's checksums are vouched for, by the kernel
	// (partial: it offloaded the checksum to us; DATA_VALID: it checked)
	// or by us. Unless a middleware asked for full checksums, the stack
	// does not verify any (Capabilities), so a frame nobody vouched for
	// is verified here.
	validated := partial || h.flags&vnetFlagDataValid != 0
	if (!validated && (!full || h.gsoType != vnetGSONone)) || (partial && full) {
		// Checksum work reads the whole frame: gather it (a frame
		// whose TCP checksum the kernel did not leave partial is rare
		// with offloads, and full checksums are asked for by tests
		// that corrupt frames).
		f = r.flatten(f)
		prefix = f.head[vnetHdrLen:]
	}
	if !validated && !full {
		// A fragment's transport checksum is that of its datagram,
		// checked with the fragment that completes it (fragcheck.go):
		// gVisor marks the reassembled datagram validated too.
		switch l.frags.verify(prefix[:frameLen]) {
		case fragBadChecksum:
			l.rxBadChecksum.Add(1)
			l.rxDropped.Add(1)
			return
		case fragOverLimits:
			l.rxFragLimit.Add(1)
			l.rxDropped.Add(1)
			return
		}
		validated = true
	}
	if h.gsoType == vnetGSONone {
		if partial && full {
			completePartial(prefix, int(h.csumStart), int(h.csumOffset))
		}
		r.deliverFrame(&f, frameLen, validated, stack.GSO{})
		return
	}
	s, err := checkSuperPrefix(prefix, frameLen, int(h.gsoSize))
	if err != nil {
		l.rxBadOffload.Add(1)
		l.rxDropped.Add(1)
		return
	}
	if full && !validated && s.n > 1 && !ipFrameValid(prefix[:s.end]) {
		// Cut, each segment gets a checksum computed afresh
		// (deliverSplit), so a super-frame's bad bytes would reach
		// the stack as good ones. The kernel vouched for nothing (no
		// NEEDS_CSUM, no DATA_VALID): the super-frame is checked
		// whole before it is cut, and dropped whole if it fails, as
		// no segment can be told to be the one that carried them.
		l.rxBadChecksum.Add(1)
		l.rxDropped.Add(1)
		return
	}
	l.rxSuper.Add(1)
	l.rxSegments.Add(uint64(s.n))
	// With full checksums asked for (a middleware above corrupts
	// inbound frames), a super-frame goes up as its wire segments even
	// with GRO: a byte corrupted in it must cost the segment that
	// carried it, as on a wire, not the 44 of a super-frame.
	if s.n <= 1 || (l.offloads.GRO && !full) {
		if partial && full {
			fillTCPChecksum(prefix[:s.end], s.tcpLayout)
		}
		gso := stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: partial && !full,
			CsumOffset: header.TCPChecksumOffset, MSS: h.gsoSize, L3HdrLen: uint16(s.tcp - s.ip)}
		if s.v6 {
			gso.Type = stack.GSOTCPv6
		}
		r.deliverFrame(&f, s.end, validated, gso)
		return
	}
	r.deliverSplit(&f, &s, full)
}

// deliverFrame delivers the first size bytes of frame f, without its
// virtio-net header. gso, if set, describes the super-frame it is (for a
// capture above us).
func (r *rxReader) deliverFrame(f *rxFrame, size int, validated bool, gso stack.GSO) {
	l := r.l
	d := l.dispatcherNow()
	if d == nil || size < header.EthernetMinimumSize {
		l.rxDropped.Add(1)
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: f.packetBuffer(size)})
	// The NIC overwrites it from Capabilities; a capture above reads it
	// first, to know which checksums to fill in.
	pkt.RXChecksumValidated = validated
	pkt.GSOOptions = gso
	l.rxFrames.Add(1)
	l.rxBytes.Add(uint64(size))
	r.handOver(d, pkt, wireSegment{})
}

// deliverSplit delivers the wire segments super-frame s (in f) stands
// for, as the kernel's tcp_gso_segment would have cut them. They share
// the super-frame's payload (read into pooled storage, not copied); each
// gets its own headers. Their TCP checksums stay partial (the
// pseudo-header sum), as the kernel handed them over: filling them in
// would cost a pass over every byte received, to check data that never
// left the machine. A capture fills them in (FillChecksum); with full set
// (a middleware above may corrupt frames, and the stack verifies) they
// are filled in here.
func (r *rxReader) deliverSplit(f *rxFrame, s *superFrame, full bool) {
	l := r.l
	d := l.dispatcherNow()
	if d == nil {
		l.rxDropped.Add(uint64(s.n))
		return
	}
	prefix := f.head[vnetHdrLen:]
	payload := f.buffer(s.data, s.end)
	defer payload.Release()
	var g *splitFrame
	if full && s.n > 1 && l.offloads.GRO {
		// What the fault middleware above needs to join the segments
		// it leaves intact again (rejoin.go), as GRO would. Without
		// GRO the stack gets wire segments, joined or not.
		g = newSplitFrame(s, prefix)
	}
	for i := range s.n {
		off := i * s.mss
		size := min(s.mss, s.payload()-off)
		hv := buffer.NewViewSize(s.data)
		s.segmentHeaders(hv.AsSlice(), prefix, i, size)
		seg := payload.Clone()
		seg.TrimFront(int64(off))
		seg.Truncate(int64(size))
		if full {
			h := header.TCP(hv.AsSlice()[s.tcp:])
			src, dst := s.addrs(prefix)
			h.SetChecksum(0)
			sum := seg.Checksum(0)
			x := checksum.Combine(checksum.Checksum(h, pseudoSum(src, dst, s.data-s.tcp+size)), sum)
			h.SetChecksum(^x)
			if g != nil {
				g.sums[i] = sum
			}
		}
		buf := buffer.MakeWithView(hv)
		buf.Merge(&seg)
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buf})
		pkt.RXChecksumValidated = true
		l.rxFrames.Add(1)
		l.rxBytes.Add(uint64(s.data + size))
		r.handOver(d, pkt, wireSegment{g, i})
	}
}

// requireFullChecksums makes the device hand the stack complete checksums
// and leave their verification to the stack, at the cost of a pass over
// every byte received, and hand super-frames over as their wire segments
// whatever WithGRO says: tap.Fault asks for it when it corrupts inbound
// frames above the device, where the device cannot catch them, and a
// corrupted byte must cost one wire segment.
func (l *fdLink) requireFullChecksums() { l.fullCsum.Store(true) }

// checkOutboundChecksums makes the coalescer check each segment's TCP
// checksum before the segment joins a super-frame, at the cost of a pass
// over every byte written: tap.Fault asks for it when it corrupts
// outbound frames above the device. A super-frame's checksum is derived
// from its segments' (superHeader), so one corrupted segment would make
// the kernel drop the whole super-frame, up to 44 segments the stack
// sent intact; a wire with a corrupted segment loses that one.
func (l *fdLink) checkOutboundChecksums() { l.checkJoins.Store(true) }

func (l *fdLink) dispatcherNow() stack.NetworkDispatcher {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dispatcher
}

// txPath writes frames to the descriptor: with a virtio-net header when
// the device has one, coalesced into super-frames when asked. It keeps
// its scratch space between calls, so a write allocates nothing; only the
// device's writer goroutine uses it.
type txPath struct {
	l        *fdLink
	rc       syscall.RawConn // the queue's descriptor
	writes   *atomic.Uint64  // the queue's writes that succeeded (QueueStats)
	vnet     bool
	coalesce bool

	frames []txFrame
	runs   []txRun
	slices [][]byte
	iov    []unix.Iovec
	hdr    [vnetHdrLen + maxHeaders]byte

	// The current writev's result, for writeFn.
	wrote   int
	errno   unix.Errno
	writeFn func(uintptr) bool
}

func newTxPath(l *fdLink, q *devQueue, vnet, coalesce bool) *txPath {
	p := &txPath{l: l, rc: q.rc, writes: &q.writes, vnet: vnet, coalesce: coalesce}
	p.writeFn = p.writev // bound once: a method value made per write would allocate
	return p
}

// writev is the RawConn callback: one writev of p.iov.
func (p *txPath) writev(fd uintptr) bool {
	n, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&p.iov[0])), uintptr(len(p.iov)))
	p.wrote, p.errno = int(n), e
	return true // never wait: a TAP write does not block, and a full queue drops
}

// checksumOK reports whether TCP segment f's checksum is right: a pass
// over its bytes, in place.
func (p *txPath) checksumOK(f *txFrame) bool {
	src, dst := f.l.addrs(f.hdr[:])
	x := pseudoSum(src, dst, f.size-f.l.tcp)
	p.slices = appendFrameSlices(p.slices[:0], f.pkt, f.l.tcp, f.size)
	off := 0
	for _, b := range p.slices {
		x = checksum.Combine(x, shiftSum(checksum.Checksum(b, 0), off))
		off += len(b)
	}
	return x == 0xffff
}

// maxIov bounds the pieces of one writev (Linux's UIO_MAXIOV is 1024); a
// super-frame of 64 KiB at the smallest MSS gathered from many views
// could exceed it, and is then written as separate frames.
const maxIov = 1024

// writeBatch writes pkts, in order, and reports the first error that
// should reach the stack: the descriptor is closed, or the device failed.
func (p *txPath) writeBatch(pkts []*stack.PacketBuffer) tcpip.Error {
	p.frames = p.frames[:0]
	check := p.coalesce && p.l.checkJoins.Load()
	for _, pkt := range pkts {
		p.frames = append(p.frames, txFrame{})
		f := &p.frames[len(p.frames)-1]
		f.load(pkt)
		if check && f.tcp && !p.checksumOK(f) {
			f.tcp = false // written alone: the kernel drops it, and only it
			p.l.txBadChecksum.Add(1)
		}
	}
	p.runs = p.runs[:0]
	if p.coalesce {
		p.runs = planRuns(p.runs, p.frames)
	} else {
		for i := range p.frames {
			p.runs = append(p.runs, txRun{first: i, n: 1})
		}
	}
	for _, r := range p.runs {
		if err := p.writeRun(r); err != nil {
			return err
		}
	}
	return nil
}

// writeRun writes run r as one frame.
func (p *txPath) writeRun(r txRun) tcpip.Error {
	p.slices = p.slices[:0]
	if r.n == 1 {
		f := &p.frames[r.first]
		if p.vnet {
			h := frameHeader(f)
			h.encode(p.hdr[:])
			p.slices = append(p.slices, p.hdr[:vnetHdrLen])
		}
		p.slices = appendFrameSlices(p.slices, f.pkt, 0, f.size)
		err := p.write(1, f.size, false)
		if g := f.pkt.GSOOptions; err == nil && p.errno == 0 && g.MSS > 0 && f.l.payload() > int(g.MSS) {
			p.l.txGSO.Add(1)
			p.l.txGSOSegs.Add(uint64((f.l.payload() + int(g.MSS) - 1) / int(g.MSS)))
		}
		return err
	}
	hdr := superHeader(p.hdr[:], p.frames, r)
	p.slices = append(p.slices, hdr)
	size := 0
	for i := r.first; i < r.first+r.n; i++ {
		f := &p.frames[i]
		p.slices = appendFrameSlices(p.slices, f.pkt, f.l.data, f.size)
		size += f.size
	}
	if len(p.slices) > maxIov {
		return p.writeApart(r)
	}
	err := p.write(r.n, size, true)
	if err == nil && p.errno == unix.EINVAL {
		// The kernel refused the super-frame's header: it does not take
		// GSO from us after all. Send the segments as they are, and
		// coalesce no more.
		p.coalesce = false
		p.l.gsoRefused.Store(true)
		return p.writeApart(r)
	}
	return err
}

// writeApart writes the frames of run r one by one.
func (p *txPath) writeApart(r txRun) tcpip.Error {
	for i := r.first; i < r.first+r.n; i++ {
		if err := p.writeRun(txRun{first: i, n: 1}); err != nil {
			return err
		}
	}
	return nil
}

// write writes p.slices, which hold n of the stack's frames of size
// bytes in all (n > 1: as one super-frame), and counts the outcome.
func (p *txPath) write(n, size int, super bool) tcpip.Error {
	p.iov = p.iov[:0]
	for _, s := range p.slices {
		if len(s) == 0 {
			continue
		}
		v := unix.Iovec{Base: &s[0]}
		v.SetLen(len(s))
		p.iov = append(p.iov, v)
	}
	l := p.l
	p.errno = 0
	if err := p.rc.Write(p.writeFn); err != nil {
		return &tcpip.ErrClosedForSend{} // the descriptor is closed
	}
	switch e := p.errno; {
	case e == 0:
		p.writes.Add(1)
		l.txFrames.Add(uint64(n))
		l.txBytes.Add(uint64(size))
		if super {
			l.txSuper.Add(1)
			l.txCoalesced.Add(uint64(n))
		}
	case e == unix.EAGAIN || e == unix.ENOBUFS:
		l.txDropped.Add(uint64(n))
	case super && e == unix.EINVAL:
		// writeRun falls back to writing the frames apart.
	default:
		l.txErrors.Add(uint64(n))
		if deviceGone(e) {
			l.fail(fmt.Errorf("tap: write: %w", e))
		}
		return tcpip.TranslateErrno(e)
	}
	return nil
}

// txQueue is the outbound queue of a device and its writer
// goroutine, which drains everything queued at each wake-up, so that the
// frames the stack wrote while the previous write was in the kernel go out
// together.
type txQueue struct {
	path  *txPath
	limit int

	mu      sync.Mutex
	q       []*stack.PacketBuffer // owned references
	stopped bool
	// writing: the writer holds a batch it took and is writing it. While
	// it does not, the first frame queued is the device's, not the
	// queue's (enqueue).
	writing bool

	wake chan struct{} // capacity 1: a pending wake-up
	stop chan struct{}
	done sync.WaitGroup

	queued, finished atomic.Uint64 // for FlushOutbound and room
}

// busyFrames is how many frames waiting in the outbound queue of a device
// or a pipe's end make it busy (fdLink.OutboundRoom,
// PipeEnd.OutboundRoom): the stack's TCP then sends no new data until
// the writer has taken some (OnOutboundRoom), as Linux's TCP small
// queues keep a socket's bytes in the qdisc and the driver to about a
// millisecond's worth. Without
// offloads the writer takes a frame in 1 to 2 µs, so 256 are a few
// hundred µs of writing; with offloads the stack's frames are
// super-frames, and a window never fills that many. A queue shorter than
// this (WithTxQueue) is never busy: it overflows, as asked.
const busyFrames = 256

// room is how many more frames the queue takes before it is busy: at
// most 0 once it is. The frames counted are those queued and not yet
// written, the writer's batch in hand included.
func (t *txQueue) room() int { return busyFrames - int(t.queued.Load()-t.finished.Load()) }

func newTxQueue(p *txPath, limit int) *txQueue {
	t := &txQueue{path: p, limit: limit, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	t.done.Add(1)
	go t.run()
	return t
}

// enqueue queues pkts for the writer; frames beyond the limit are dropped
// and counted. It never blocks on the device. It returns how many it
// took, the first n: once the queue is full the rest of the batch is
// refused (stack.LinkWriter's count), so that a capture or fault
// middleware above can tell which frames never left, with
// tcpip.ErrNoBufferSpace, so that the sender learns it too (a qdisc's
// NET_XMIT_DROP).
//
// While the writer is idle, the first frame queued is the device's and
// the limit counts the frames after it: Linux hands a packet that finds
// the qdisc empty and the device idle straight to the driver
// (TCQ_F_CAN_BYPASS), so a txqueuelen of 1 holds one packet besides the
// one being sent. Counted against the limit, the frame the writer has
// not yet woken to take made a queue of one refuse the second segment
// of every two-segment window; the data waited for the peer's delayed
// ACK each time, and 8 MiB to the kernel took 30 s instead of 60-80 ms.
func (t *txQueue) enqueue(pkts []*stack.PacketBuffer) (int, tcpip.Error) {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return 0, &tcpip.ErrClosedForSend{}
	}
	limit := t.limit
	if !t.writing {
		limit++ // the device's frame
	}
	dropped := 0
	for _, pkt := range pkts {
		if len(t.q) >= limit {
			dropped++
			continue
		}
		t.q = append(t.q, pkt.IncRef())
	}
	t.queued.Add(uint64(len(pkts) - dropped))
	t.mu.Unlock()
	if dropped > 0 {
		t.path.l.txDropped.Add(uint64(dropped))
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
	if dropped > 0 {
		// The first len(pkts)-dropped went in; the queue stayed full
		// for the rest (the lock was held throughout).
		return len(pkts) - dropped, &tcpip.ErrNoBufferSpace{}
	}
	return len(pkts), nil
}

// maxWriteBatch bounds the frames the writer takes from its queue at a
// time: half of what makes the queue busy. After each batch the stack
// hears that the queue has room (OnOutboundRoom) while the other half
// still waits to be written, so that its TCP refills the queue while
// the writer writes, rather than after the writer found it empty.
const maxWriteBatch = busyFrames / 2

// run is the writer goroutine. Each wake-up drains the queue, in batches,
// until it finds it empty; it ends when the device closes.
func (t *txQueue) run() {
	defer t.done.Done()
	var batch []*stack.PacketBuffer
	for {
		select {
		case <-t.wake:
		case <-t.stop:
			t.mu.Lock()
			t.stopped = true
			q := t.q
			t.q = nil
			t.mu.Unlock()
			for _, pkt := range q {
				pkt.DecRef()
			}
			t.finished.Add(uint64(len(q)))
			return
		}
		// Bounded: each round takes at least one frame the stack had
		// queued, and the stack can queue only limit at a time; a
		// stack that keeps writing faster than the device takes
		// frames is served for a while and then waits for the next
		// wake-up, which its writes leave pending.
		for range 1024 {
			t.mu.Lock()
			if len(t.q) <= maxWriteBatch {
				batch, t.q = t.q, batch[:0]
			} else {
				batch = append(batch[:0], t.q[:maxWriteBatch]...)
				rest := copy(t.q, t.q[maxWriteBatch:])
				clear(t.q[rest:]) // the batch's references are the writer's now
				t.q = t.q[:rest]
			}
			t.writing = len(batch) > 0
			t.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			err := t.path.writeBatch(batch)
			for i, pkt := range batch {
				pkt.DecRef()
				batch[i] = nil
			}
			t.finished.Add(uint64(len(batch)))
			t.path.l.roomOpened.call()
			if _, closed := err.(*tcpip.ErrClosedForSend); closed {
				// The descriptor is closed: take no more frames, and
				// let go of those queued.
				t.mu.Lock()
				t.stopped = true
				q := t.q
				t.q = nil
				t.mu.Unlock()
				for _, pkt := range q {
					pkt.DecRef()
				}
				t.finished.Add(uint64(len(q)))
				return
			}
		}
		t.mu.Lock()
		t.writing = false // served its round: idle until the pending wake-up
		t.mu.Unlock()
	}
}

// close stops the writer and waits for it; frames still queued are
// dropped.
func (t *txQueue) close() {
	t.mu.Lock()
	stopped := t.stopped
	t.stopped = true
	t.mu.Unlock()
	if !stopped {
		close(t.stop)
	}
	t.done.Wait()
}

// flush waits until the frames queued so far have been written or
// dropped, or timeout passed, and reports whether they were.
func (t *txQueue) flush(timeout time.Duration) bool {
	target := t.queued.Load()
	deadline := time.Now().Add(timeout)
	for t.finished.Load() < target {
		t.mu.Lock()
		stopped := t.stopped
		t.mu.Unlock()
		if stopped || !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(50 * time.Microsecond)
	}
	return true
}
