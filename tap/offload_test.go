//go:build linux

package tap

import (
	"bytes"
	"encoding/binary"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// recvDispatcher records what a link delivers.
type recvDispatcher struct {
	frames    [][]byte
	validated []bool
	gso       []stack.GSO
}

func (d *recvDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	d.frames = append(d.frames, append([]byte(nil), v.AsSlice()...))
	v.Release()
	d.validated = append(d.validated, pkt.RXChecksumValidated)
	d.gso = append(d.gso, pkt.GSOOptions)
}

func (*recvDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// withVnet prefixes frame with h.
func withVnet(h vnetHdr, frame []byte) []byte {
	b := make([]byte, vnetHdrLen, vnetHdrLen+len(frame))
	h.encode(b)
	return append(b, frame...)
}

// kernelSuperFrame is a TSO super-frame as the kernel hands it over: TCP
// checksum partial (the pseudo-header sum), with its virtio-net header.
func kernelSuperFrame(s seg, mss int) (vnetHdr, []byte) {
	f := tcpFrame(s)
	l, _ := parseTCPFrame(f)
	src, dst := l.addrs(f)
	header.TCP(f[l.tcp:]).SetChecksum(pseudoSum(src, dst, l.end-l.tcp))
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: uint16(l.data), gsoSize: uint16(mss),
		csumStart: uint16(l.tcp), csumOffset: header.TCPChecksumOffset}
	if s.v6 {
		h.gsoType = vnetGSOTCPv6
	}
	return h, f
}

func newTestLink(d stack.NetworkDispatcher, o Offloads) *fdLink {
	o.VnetHdr = true
	l := &fdLink{offloads: o, dispatcher: d}
	l.qs = []*devQueue{{rx: newRxReader(l, nil)}}
	return l
}

// deliverVnet hands frame f to the device as its first queue's read loop
// would, outside a read loop: delivered at once.
func (l *fdLink) deliverVnet(f rxFrame) { l.qs[0].rx.deliverVnet(f) }

// rxSlice is a frame read whole into one slice.
func rxSlice(b []byte) rxFrame { return rxFrame{head: b} }

// rxSplit is a frame read in two pieces, as the read loop reads one
// larger than rxHead.
func rxSplit(b []byte) rxFrame {
	if len(b) <= rxHead {
		return rxFrame{head: b}
	}
	return rxFrame{head: b[:rxHead], rest: buffer.NewViewWithData(b[rxHead:])}
}

// TestDeliverSuperFrameSplit: without GRO the kernel's super-frame goes
// up as its wire segments; so it does with GRO when full checksums are
// asked for (tap.Fault corrupting inbound frames), where each carries
// its complete checksum and nothing is vouched for.
func TestDeliverSuperFrameSplit(t *testing.T) {
	for _, c := range []struct{ gro, full bool }{{false, false}, {false, true}, {true, true}} {
		full := c.full
		for _, v6 := range []bool{false, true} {
			var d recvDispatcher
			l := newTestLink(&d, Offloads{GRO: c.gro})
			if full {
				l.requireFullChecksums()
			}
			s := seg{v6: v6, seq: 100, ack: 7, flags: header.TCPFlagAck | header.TCPFlagPsh, window: 9, tsval: 3, payload: pattern(10*1448 + 17)}
			h, frame := kernelSuperFrame(s, 1448)
			l.deliverVnet(rxSplit(withVnet(h, frame)))
			want := segmentsOf(t, tcpFrame(s), 1448)
			if len(d.frames) != len(want) {
				t.Fatalf("full %v v6 %v: %d frames delivered, want %d", full, v6, len(d.frames), len(want))
			}
			for i, got := range d.frames {
				if !d.validated[i] {
					t.Errorf("full %v v6 %v: segment %d not marked validated", full, v6, i)
				}
				if full != ipFrameValid(got) {
					t.Errorf("full %v v6 %v: segment %d: checksum verifies %v", full, v6, i, !full)
				}
				// A capture fills the checksum in and gets the wire
				// segment.
				FillChecksum(got)
				if !bytes.Equal(got, want[i]) {
					t.Errorf("full %v v6 %v: segment %d differs from the wire segment", full, v6, i)
				}
			}
			st := l.rxSuper.Load()
			if st != 1 || l.rxSegments.Load() != uint64(len(want)) || l.rxFrames.Load() != uint64(len(want)) {
				t.Errorf("full %v v6 %v: counters super %d segments %d frames %d", full, v6, st, l.rxSegments.Load(), l.rxFrames.Load())
			}
			if got := l.Capabilities()&stack.CapabilityRXChecksumOffload != 0; got == full {
				t.Errorf("full %v: RX checksum offload claimed %v", full, got)
			}
		}
	}
}

// TestDeliverSplitChecksSuperFrame: with full checksums asked for, the
// segments cut from a super-frame get checksums computed afresh. A
// super-frame the kernel did not vouch for (no NEEDS_CSUM, no
// DATA_VALID) is checked whole before it is cut: with a byte changed it
// is dropped (RxBadChecksum), where its segments would all have
// verified.
func TestDeliverSplitChecksSuperFrame(t *testing.T) {
	for _, gro := range []bool{false, true} {
		for _, corrupt := range []bool{false, true} {
			frame := tcpFrame(seg{seq: 100, ack: 7, flags: header.TCPFlagAck, window: 9, payload: pattern(4 * 1000)})
			if corrupt {
				frame[len(frame)-5] ^= 0x10
			}
			var d recvDispatcher
			l := newTestLink(&d, Offloads{Checksum: true, TSO4: true, TSO6: true, GRO: gro})
			l.requireFullChecksums()
			l.deliverVnet(rxSplit(withVnet(vnetHdr{gsoType: vnetGSOTCPv4, hdrLen: 54, gsoSize: 1000}, frame)))
			wantFrames, wantBad := 4, uint64(0)
			if corrupt {
				wantFrames, wantBad = 0, 1
			}
			if len(d.frames) != wantFrames || l.rxBadChecksum.Load() != wantBad || l.rxDropped.Load() != wantBad {
				t.Errorf("gro %v corrupt %v: %d segments delivered, rxBadChecksum %d, rxDropped %d; want %d, %d, %d",
					gro, corrupt, len(d.frames), l.rxBadChecksum.Load(), l.rxDropped.Load(), wantFrames, wantBad, wantBad)
			}
			for i, f := range d.frames {
				if !ipFrameValid(f) {
					t.Errorf("gro %v corrupt %v: segment %d: a checksum does not verify", gro, corrupt, i)
				}
			}
		}
	}
}

func TestDeliverSuperFrameWhole(t *testing.T) {
	var d recvDispatcher
	l := newTestLink(&d, Offloads{GRO: true})
	s := seg{seq: 100, ack: 7, flags: header.TCPFlagAck, window: 9, payload: pattern(44 * 1448)}
	h, frame := kernelSuperFrame(s, 1448)
	l.deliverVnet(rxSplit(withVnet(h, frame)))
	if len(d.frames) != 1 || !bytes.Equal(d.frames[0], frame) {
		t.Fatalf("%d frames delivered, want the super-frame as it came", len(d.frames))
	}
	want := stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20}
	if d.gso[0] != want || !d.validated[0] {
		t.Errorf("GSO options %+v validated %v, want %+v", d.gso[0], d.validated[0], want)
	}
}

func TestDeliverVnetChecks(t *testing.T) {
	good := tcpFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(2000)})
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 1
	_, super := kernelSuperFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(3000)}, 1448)
	ack := tcpFrame(seg{seq: 1, ack: 9, flags: header.TCPFlagAck})
	for _, tc := range []struct {
		name            string
		full            bool
		b               []byte
		delivered       int
		validated       bool
		badCsum, badHdr uint64
	}{
		{"plain, checked here", false, withVnet(vnetHdr{}, good), 1, true, 0, 0},
		{"plain, bad checksum dropped", false, withVnet(vnetHdr{}, bad), 0, false, 1, 0},
		{"plain, bad checksum left to the stack", true, withVnet(vnetHdr{}, bad), 1, false, 0, 0},
		{"data valid", false, withVnet(vnetHdr{flags: vnetFlagDataValid}, bad), 1, true, 0, 0},
		{"short header", false, good[:5], 0, false, 0, 1},
		{"partial past the end", false, withVnet(vnetHdr{flags: vnetFlagNeedsCsum, csumStart: uint16(len(good) - 1), csumOffset: 0}, good), 0, false, 0, 1},
		{"UDP GSO", false, withVnet(vnetHdr{gsoType: vnetGSOUDPL4, gsoSize: 100}, good), 0, false, 0, 1},
		{"ECN without a GSO type", false, withVnet(vnetHdr{gsoType: vnetGSOECN, gsoSize: 100}, good), 0, false, 0, 1},
		{"gso_size zero", false, withVnet(vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, csumStart: 34, csumOffset: 16}, super), 0, false, 0, 1},
		{"TSO on a pure ACK: the frame itself", false, withVnet(vnetHdr{flags: vnetFlagDataValid, gsoType: vnetGSOTCPv4, gsoSize: 1448}, ack), 1, true, 0, 0},
		{"too many segments", false, withVnet(vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1, csumStart: 34, csumOffset: 16}, super), 0, false, 0, 1},
	} {
		// Read whole, or in two pieces as the read loop reads a frame
		// longer than rxHead.
		for _, read := range []func([]byte) rxFrame{rxSlice, rxSplit} {
			var d recvDispatcher
			l := newTestLink(&d, Offloads{})
			if tc.full {
				l.requireFullChecksums()
			}
			l.deliverVnet(read(tc.b))
			if len(d.frames) != tc.delivered || (tc.delivered > 0 && d.validated[0] != tc.validated) {
				t.Errorf("%s: %d frames delivered (validated %v), want %d (%v)", tc.name, len(d.frames), d.validated, tc.delivered, tc.validated)
			}
			if tc.delivered > 0 && !bytes.Equal(d.frames[0], tc.b[vnetHdrLen:]) {
				t.Errorf("%s: the frame delivered differs from the frame read", tc.name)
			}
			if l.rxBadChecksum.Load() != tc.badCsum || l.rxBadOffload.Load() != tc.badHdr {
				t.Errorf("%s: bad checksum %d, bad offload %d; want %d, %d", tc.name, l.rxBadChecksum.Load(), l.rxBadOffload.Load(), tc.badCsum, tc.badHdr)
			}
		}
	}
}

// seqpacketLink is an fdLink writing to one end of a SOCK_SEQPACKET pair,
// which keeps frames apart as a TAP does; the other end is returned.
func seqpacketLink(t *testing.T, o Offloads) (*fdLink, int) {
	t.Helper()
	f, rc, peer := seqpacketPair(t)
	o.VnetHdr = true
	l := &fdLink{offloads: o}
	q := &devQueue{f: f, rc: rc}
	q.tx = newTxPath(l, q, true, o.Coalesce)
	l.qs = []*devQueue{q}
	return l, peer
}

// seqpacketPair is a SOCK_SEQPACKET pair standing for a TAP descriptor
// (non-blocking, as Open makes it) and the kernel's end of it.
func seqpacketPair(t *testing.T) (*os.File, syscall.RawConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "seqpacket")
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); unix.Close(fds[1]) })
	return f, rc, fds[1]
}

// readFrames reads n frames from fd, each with its virtio-net header.
func readFrames(t *testing.T, fd, n int) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, vnetHdrLen+maxFrame)
	for range n {
		m, err := unix.Read(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), buf[:m]...))
	}
	return out
}

// wireOf returns the wire segments a written frame stands for.
func wireOf(t *testing.T, w []byte) [][]byte {
	t.Helper()
	h, err := decodeVnetHdr(w)
	if err != nil {
		t.Fatal(err)
	}
	if h.gsoType == vnetGSONone {
		return [][]byte{w[vnetHdrLen:]}
	}
	return segmentsOf(t, w[vnetHdrLen:], int(h.gsoSize))
}

func TestTxPathWritesSuperFrames(t *testing.T) {
	l, peer := seqpacketLink(t, Offloads{Coalesce: true})
	var frames [][]byte
	var pkts []*stack.PacketBuffer
	for i := range 30 {
		f := tcpFrame(seg{seq: uint32(1 + i*1448), ack: 1, flags: header.TCPFlagAck, tsval: 5, payload: pattern(1448)})
		frames = append(frames, f)
		pkts = append(pkts, outPacket(f, 500))
	}
	ackOnly := tcpFrame(seg{seq: 1 + 30*1448, ack: 1, flags: header.TCPFlagAck, tsval: 5})
	frames = append(frames, ackOnly)
	pkts = append(pkts, outPacket(ackOnly, 500))
	if err := l.qs[0].tx.writeBatch(pkts); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		p.DecRef()
	}
	written := readFrames(t, peer, 2)
	var got [][]byte
	for _, w := range written {
		got = append(got, wireOf(t, w)...)
	}
	if len(got) != len(frames) {
		t.Fatalf("%d wire segments, want %d", len(got), len(frames))
	}
	for i := range got {
		if !sameSegment(got[i], frames[i]) {
			t.Errorf("wire segment %d differs", i)
		}
	}
	if l.txSuper.Load() != 1 || l.txCoalesced.Load() != 30 || l.txFrames.Load() != 31 {
		t.Errorf("super %d coalesced %d frames %d; want 1, 30, 31", l.txSuper.Load(), l.txCoalesced.Load(), l.txFrames.Load())
	}
}

// TestTxPathLeavesCorruptedSegmentOut: a segment changed after its
// checksum was made (tap.Fault corrupting above the device) makes the
// checksum of a super-frame it joins fail, since that checksum is derived
// from the segments' own, and the kernel would drop nine intact segments
// with it. With the check on (checkOutboundChecksums) it is written alone,
// between super-frames of the intact ones, whose checksums hold. The
// check sums views that start at odd offsets too (chunks of 333 bytes).
func TestTxPathLeavesCorruptedSegmentOut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		check  bool
		chunk  int
		off    int   // the payload byte of segment 4 that is changed
		runs   []int // segments in each frame written
		intact []bool
	}{
		{"unchecked: the whole super-frame fails", false, 500, 100, []int{10}, []bool{false}},
		{"checked, even offset", true, 500, 100, []int{4, 1, 5}, []bool{true, false, true}},
		{"checked, odd offset, odd views", true, 333, 1001, []int{4, 1, 5}, []bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, peer := seqpacketLink(t, Offloads{Coalesce: true})
			l.checkJoins.Store(tc.check)
			var pkts []*stack.PacketBuffer
			for i := range 10 {
				f := tcpFrame(seg{seq: uint32(1 + i*1448), ack: 1, flags: header.TCPFlagAck, tsval: 5, payload: pattern(1448)})
				if i == 4 {
					lay, _ := parseTCPFrame(f)
					f[lay.data+tc.off] ^= 0x5a // after the checksum was made
				}
				pkts = append(pkts, outPacket(f, tc.chunk))
			}
			if err := l.qs[0].tx.writeBatch(pkts); err != nil {
				t.Fatal(err)
			}
			for _, p := range pkts {
				p.DecRef()
			}
			written := readFrames(t, peer, len(tc.runs))
			for i, w := range written {
				if n := len(wireOf(t, w)); n != tc.runs[i] {
					t.Errorf("frame %d stands for %d segments, want %d", i, n, tc.runs[i])
				}
				if ok := tcpChecksumHolds(t, w[vnetHdrLen:]); ok != tc.intact[i] {
					t.Errorf("frame %d: checksum holds %v, want %v", i, ok, tc.intact[i])
				}
			}
			want := uint64(0)
			if tc.check {
				want = 1
			}
			if got := l.txBadChecksum.Load(); got != want {
				t.Errorf("TxBadChecksum %d, want %d", got, want)
			}
		})
	}
}

// tcpChecksumHolds reports whether the complete TCP checksum of frame
// (a segment or a whole super-frame) is right, as the kernel checks a
// frame written with no partial checksum.
func tcpChecksumHolds(t *testing.T, frame []byte) bool {
	t.Helper()
	l, err := parseTCPFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := l.addrs(frame)
	return checksum.Checksum(frame[l.tcp:l.end], pseudoSum(src, dst, l.end-l.tcp)) == 0xffff
}

func TestTxQueue(t *testing.T) {
	l, peer := seqpacketLink(t, Offloads{Coalesce: true})
	q := newTxQueue(l.qs[0].tx, 8)
	defer q.close()
	var frames [][]byte
	for i := range 5 {
		f := tcpFrame(seg{seq: uint32(1 + i*1000), ack: 1, flags: header.TCPFlagAck, payload: pattern(1000)})
		frames = append(frames, f)
		pkt := outPacket(f, 4096)
		if n, err := q.enqueue([]*stack.PacketBuffer{pkt}); n != 1 || err != nil {
			t.Fatalf("enqueue: %d, %v", n, err)
		}
		pkt.DecRef() // the queue holds its own reference
	}
	if !q.flush(10 * time.Second) {
		t.Fatal("flush timed out")
	}
	var got [][]byte
	for len(got) < len(frames) {
		for _, w := range readFrames(t, peer, 1) {
			got = append(got, wireOf(t, w)...)
		}
	}
	for i := range frames {
		if !sameSegment(got[i], frames[i]) {
			t.Errorf("frame %d differs", i)
		}
	}
	// A full queue drops and counts, and says how many it took (the
	// first ones: a capture above marks the rest as not sent). While
	// the writer is writing, a queue of 8 takes 8; while it is idle,
	// the first frame is the device's and 8 more fit (Linux's qdisc
	// bypass), so that a queue of one does not refuse the second
	// segment of a two-segment window.
	for _, tc := range []struct {
		writing       bool
		taken, dropNo int
	}{{true, 8, 2}, {false, 9, 1}} {
		stalled := &txQueue{path: l.qs[0].tx, limit: 8, wake: make(chan struct{}, 1), stop: make(chan struct{}), writing: tc.writing}
		var many []*stack.PacketBuffer
		for range 10 {
			many = append(many, outPacket(frames[0], 4096))
		}
		before := l.txDropped.Load()
		if n, err := stalled.enqueue(many); n != tc.taken || !isNoBufferSpace(err) {
			t.Errorf("writing %v: enqueue: %d of %d, %v; want %d taken, %v", tc.writing, n, len(many), err, tc.taken, &tcpip.ErrNoBufferSpace{})
		}
		if dropped := l.txDropped.Load() - before; dropped != uint64(tc.dropNo) || len(stalled.q) != tc.taken {
			t.Errorf("writing %v: dropped %d, queued %d; want %d, %d", tc.writing, dropped, len(stalled.q), tc.dropNo, tc.taken)
		}
		// The room before the queue is busy (TCP small queues) counts
		// the frames waiting.
		if got := stalled.room(); got != busyFrames-tc.taken {
			t.Errorf("writing %v: room %d, want %d", tc.writing, got, busyFrames-tc.taken)
		}
		for _, p := range append(many, stalled.q...) {
			p.DecRef()
		}
	}
	q.close()
	pkt := outPacket(frames[0], 4096)
	defer pkt.DecRef()
	if _, err := q.enqueue([]*stack.PacketBuffer{pkt}); err == nil {
		t.Error("enqueue after close succeeded")
	}
}

// TestPlainDeviceWritesFromQueue: a device the kernel gave no offloads
// writes from its outbound queue too, one frame per write, by its writer
// goroutine: the queue's limit holds (of three frames, a queue of one
// takes the idle device's frame and one more, and refuses the third, as
// a qdisc drops it), and the frames it took reach the kernel whole and
// in order.
func TestPlainDeviceWritesFromQueue(t *testing.T) {
	f, rc, peer := seqpacketPair(t)
	l := newFDLink(config{mtu: DefaultMTU, txQueue: 1}, Offloads{}, []*os.File{f}, []syscall.RawConn{rc})
	defer l.qs[0].txq.close()
	var frames [][]byte
	var pkts stack.PacketBufferList
	for i := range 3 {
		fr := tcpFrame(seg{seq: uint32(1 + i*1000), ack: 1, flags: header.TCPFlagAck, payload: pattern(1000)})
		frames = append(frames, fr)
		pkts.PushBack(outPacket(fr, 4096))
	}
	n, err := l.WritePackets(pkts)
	pkts.DecRef()
	if n != 2 || !isNoBufferSpace(err) {
		t.Fatalf("WritePackets: %d of 3, %v; want 2 taken, %v", n, err, &tcpip.ErrNoBufferSpace{})
	}
	if !l.FlushOutbound(10 * time.Second) {
		t.Fatal("flush timed out")
	}
	got := readFrames(t, peer, 2)
	for i, w := range got {
		if !bytes.Equal(w, frames[i]) {
			t.Errorf("frame %d: the kernel got %d bytes, not the frame as sent", i, len(w))
		}
	}
	if l.txFrames.Load() != 2 || l.txDropped.Load() != 1 || l.txSuper.Load() != 0 {
		t.Errorf("frames %d dropped %d super %d; want 2, 1, 0", l.txFrames.Load(), l.txDropped.Load(), l.txSuper.Load())
	}
}

// TestRxReader: the read loop's reader returns each frame whole, however
// it was split between the header buffer and the chunk: frames within
// the header buffer, short frames copied out, long ones in the chunk.
func TestRxReader(t *testing.T) {
	l, peer := seqpacketLink(t, Offloads{})
	r := newRxReader(l, l.qs[0].rc)
	for _, n := range []int{1, rxHead - 1, rxHead, rxHead + 1, 1514 + vnetHdrLen, rxHead + rxShareMin - 1, rxHead + rxShareMin, vnetHdrLen + maxFrame} {
		want := pattern(n)
		if _, err := unix.Write(peer, want); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		f, err := r.read()
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got := append([]byte(nil), f.head...)
		if f.rest != nil {
			got = append(got, f.rest.AsSlice()...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d bytes: read %d bytes that differ", n, len(got))
		}
		shared := f.rest != nil && f.rest.Capacity() == buffer.MaxChunkSize
		if wantShared := n-rxHead >= rxShareMin; shared != wantShared {
			t.Errorf("%d bytes: the chunk is handed on %v, want %v", n, shared, wantShared)
		}
		r.done(f)
	}
}

// TestRxReaderReusesChunks: the reader reads into the chunk of a frame it
// handed over once nothing else holds it (a packet made from it, here a
// clone), not while something does, and clears what a shorter frame
// leaves of it, so that a view grown past the frame shows zeros, as in a
// chunk fresh from gVisor's pool, not the earlier frame's bytes.
func TestRxReaderReusesChunks(t *testing.T) {
	l, peer := seqpacketLink(t, Offloads{})
	r := newRxReader(l, l.qs[0].rc)
	defer r.releaseSpent()
	read := func(n int, fill byte) rxFrame {
		t.Helper()
		want := bytes.Repeat([]byte{fill}, n)
		if _, err := unix.Write(peer, want); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		f, err := r.read()
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got := append(append([]byte(nil), f.head...), f.rest.AsSlice()...)
		if !bytes.Equal(got, want) || !f.chunk {
			t.Fatalf("%d bytes of %q: read %d bytes that differ, or not in the chunk", n, fill, len(got))
		}
		return f
	}
	long := vnetHdrLen + maxFrame
	a := read(long, 'a')
	held := a.rest.Clone() // a packet the stack still holds
	r.done(a)
	b := read(long, 'b')
	if i := bytes.IndexFunc(held.AsSlice(), func(c rune) bool { return c != 'a' }); i >= 0 {
		t.Fatalf("a held frame's byte %d was overwritten with %q", i, held.AsSlice()[i])
	}
	if n := l.rxChunksReused.Load(); n != 0 {
		t.Fatalf("%d chunks reused while the only one spent is held", n)
	}
	r.done(b)
	held.Release()
	short := rxHead + rxShareMin + 100
	c := read(short, 'c')
	if n := l.rxChunksReused.Load(); n != 1 {
		t.Fatalf("%d chunks reused, want 1: the first frame's, let go of", n)
	}
	grown := c.rest.Clone()
	defer grown.Release()
	grown.Grow(buffer.MaxChunkSize - grown.Size()) // as a buffer operation that grows a view might
	if i := bytes.IndexFunc(grown.AsSlice()[c.rest.Size():], func(c rune) bool { return c != 0 }); i >= 0 {
		t.Errorf("byte %d past the frame in a reused chunk is %q, want 0", c.rest.Size()+i, grown.AsSlice()[c.rest.Size()+i])
	}
	r.done(c)
	// Spent chunks kept are bounded.
	for range rxSpentMax + 10 {
		f := read(long, 'd')
		keep := f.rest.Clone()
		r.done(f)
		defer keep.Release()
	}
	if r.spent.Len() != rxSpentMax {
		t.Errorf("%d spent chunks kept, want %d", r.spent.Len(), rxSpentMax)
	}
}

func isNoBufferSpace(err tcpip.Error) bool {
	_, ok := err.(*tcpip.ErrNoBufferSpace)
	return ok
}

// v6WithExtHeader is the IPv6 frame of s with an extension header of
// type ext (8 bytes: Hop-by-Hop or Destination Options with padding, or
// a Fragment header at offset 0 with M clear, an atomic fragment) before
// its TCP segment, checksums correct.
func v6WithExtHeader(s seg, ext uint8) []byte {
	s.v6 = true
	f := tcpFrame(s)
	at := header.EthernetMinimumSize + header.IPv6MinimumSize
	b := make([]byte, 0, len(f)+8)
	b = append(b, f[:at]...)
	b = append(b, uint8(header.TCPProtocolNumber), 0, 1, 4, 0, 0, 0, 0) // next header, length 0, PadN
	if ext == ipv6Fragment {
		b[at+2], b[at+3], b[at+4] = 0, 0, 9 // offset 0, M clear; identification 9<<24
	}
	b = append(b, f[at:]...)
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.SetNextHeader(ext)
	ip.SetPayloadLength(ip.PayloadLength() + 8)
	return b
}

// fragmentsOf cuts the IP packet in frame into fragments carrying size
// bytes (a multiple of 8) of its payload each: IPv4 fragments, or IPv6
// ones with a Fragment header, identification id.
func fragmentsOf(frame []byte, size int, id uint32) [][]byte {
	l, _ := parseIPFrame(frame)
	var out [][]byte
	for off := 0; off < l.end-l.l4; off += size {
		n := min(size, l.end-l.l4-off)
		more := off+n < l.end-l.l4
		b := append([]byte(nil), frame[:l.l4]...)
		if l.v6 {
			fh := make([]byte, 8)
			fh[0] = l.proto
			binary.BigEndian.PutUint16(fh[2:], uint16(off))
			if more {
				fh[3] |= 1
			}
			binary.BigEndian.PutUint32(fh[4:], id)
			b = append(b, fh...)
			b = append(b, frame[l.l4+off:l.l4+off+n]...)
			ip := header.IPv6(b[header.EthernetMinimumSize:])
			ip.SetNextHeader(ipv6Fragment)
			ip.SetPayloadLength(uint16(8 + n))
		} else {
			b = append(b, frame[l.l4+off:l.l4+off+n]...)
			ip := header.IPv4(b[header.EthernetMinimumSize:])
			ip.SetTotalLength(uint16(l.l4 - l.ip + n))
			ip.SetID(uint16(id))
			flags := uint8(0)
			if more {
				flags = header.IPv4FlagMoreFragments
			}
			ip.SetFlagsFragmentOffset(flags, uint16(off))
			ipv4HeaderChecksum(ip)
		}
		out = append(out, b)
	}
	return out
}

// TestDeliverVnetChecksBehindIPv6ExtensionHeaders: a device with
// offloads vouches for every frame (CapabilityRXChecksumOffload), so a
// frame the kernel did not vouch for is checked here, its TCP checksum
// found behind the IPv6 extension headers the network layer will walk.
func TestDeliverVnetChecksBehindIPv6ExtensionHeaders(t *testing.T) {
	for _, ext := range []uint8{ipv6HopByHop, ipv6DestOptions, ipv6Fragment} {
		for _, corrupt := range []bool{false, true} {
			f := v6WithExtHeader(seg{seq: 1, ack: 1, flags: header.TCPFlagAck, window: 100, payload: pattern(200)}, ext)
			if corrupt {
				f[len(f)-1] ^= 0x40
			}
			var d recvDispatcher
			l := newTestLink(&d, Offloads{Checksum: true, TSO4: true, TSO6: true, GRO: true})
			l.deliverVnet(rxSlice(withVnet(vnetHdr{}, f)))
			want, bad := 1, uint64(0)
			if corrupt {
				want, bad = 0, 1
			}
			if len(d.frames) != want || l.rxBadChecksum.Load() != bad {
				t.Errorf("next header %d corrupt %v: %d delivered, rxBadChecksum %d; want %d, %d",
					ext, corrupt, len(d.frames), l.rxBadChecksum.Load(), want, bad)
			}
		}
	}
}

// TestDeliverVnetChecksFragmentedDatagram: gVisor's NIC marks every
// packet of a link that vouches for checksums validated, the reassembled
// datagram too, so the device checks a datagram whose fragments the
// kernel did not vouch for when its last missing fragment comes: every
// fragment of a good datagram is delivered as it comes, in any order;
// of a datagram whose bytes changed, the one that completes it is
// dropped (RxBadChecksum), and gVisor's reassembly never completes.
func TestDeliverVnetChecksFragmentedDatagram(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, tc := range []struct {
			name    string
			corrupt bool
			order   []int // fragments in the order read
			want    []int // the fragments delivered
		}{
			{"in order", false, []int{0, 1, 2}, []int{0, 1, 2}},
			{"reordered", false, []int{2, 0, 1}, []int{2, 0, 1}},
			{"duplicate", false, []int{0, 0, 1, 2}, []int{0, 0, 1, 2}},
			{"corrupted", true, []int{0, 1, 2}, []int{0, 1}},
			{"corrupted, reordered", true, []int{1, 2, 0}, []int{1, 2}},
		} {
			s := seg{v6: v6, mayFrag: true, seq: 1, ack: 1, flags: header.TCPFlagAck, window: 100, payload: pattern(500)}
			frags := fragmentsOf(tcpFrame(s), 200, 77)
			if tc.corrupt {
				frags[1][len(frags[1])-3] ^= 0x10
			}
			var d recvDispatcher
			l := newTestLink(&d, Offloads{Checksum: true, TSO4: true, TSO6: true, GRO: true})
			for _, i := range tc.order {
				l.deliverVnet(rxSlice(withVnet(vnetHdr{}, frags[i])))
			}
			bad := uint64(0)
			if tc.corrupt {
				bad = 1
			}
			ok := len(d.frames) == len(tc.want)
			for i := 0; ok && i < len(tc.want); i++ {
				ok = bytes.Equal(d.frames[i], frags[tc.want[i]])
			}
			if !ok || l.rxBadChecksum.Load() != bad || l.rxDropped.Load() != bad {
				t.Errorf("v6 %v %s: %d fragments delivered, rxBadChecksum %d, rxDropped %d; want fragments %v, %d, %d",
					v6, tc.name, len(d.frames), l.rxBadChecksum.Load(), l.rxDropped.Load(), tc.want, bad, bad)
			}
			if len(l.frags.m) != 0 {
				t.Errorf("v6 %v %s: %d datagrams' sums kept after reassembly", v6, tc.name, len(l.frags.m))
			}
		}
	}
}
