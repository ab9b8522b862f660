//go:build linux

package tap

import (
	"bytes"
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// groReader is the read path of a device without offloads whose read
// loop joins segments, outside a read loop: read hands it a frame as a
// read would have returned it, burstEnd is a read finding none.
func groReader(d stack.NetworkDispatcher) (*fdLink, *rxReader) {
	l := &fdLink{dispatcher: d, softGRO: true}
	l.qs = []*devQueue{{rx: newRxReader(l, nil)}}
	return l, l.qs[0].rx
}

func (r *rxReader) readFrames(frames ...[]byte) {
	for _, f := range frames {
		r.deliver(append([]byte(nil), f...))
	}
}

func (r *rxReader) burstEnd() { r.groFlush() }

// wireRun is what the kernel sends without offloads for payload bytes
// from seq: segments of mss bytes, the last shorter, each with its own
// IP identification from id and checksums filled in, as its GSO cuts
// them; the last carries PSH.
func wireRun(t *testing.T, v6 bool, seq uint32, id uint16, payload, mss int) [][]byte {
	t.Helper()
	s := tcpFrame(seg{v6: v6, seq: seq, ack: 7, flags: header.TCPFlagAck | header.TCPFlagPsh, window: 512, tsval: 99, id: id, payload: pattern(payload)})
	if payload <= mss {
		return [][]byte{s}
	}
	return segmentsOf(t, s, mss)
}

// refill makes frame's IPv4 header and TCP checksums right again after a
// test changed it.
func refill(frame []byte) []byte {
	l, err := parseTCPFrame(frame)
	if err != nil {
		panic(err)
	}
	if !l.v6 {
		ipv4HeaderChecksum(header.IPv4(frame[l.ip:l.tcp]))
	}
	fillTCPChecksum(frame, l)
	return frame
}

// tcpOf returns frame's TCP header.
func tcpOf(frame []byte) header.TCP {
	l, err := parseTCPFrame(frame)
	if err != nil {
		panic(err)
	}
	return header.TCP(frame[l.tcp:l.data])
}

// TestGROJoinsWhatTheWireCarried: a device without offloads reads the
// kernel's segments one by one and joins those of one flow that follow
// one another into one super-frame for the stack, by Linux's GRO rules,
// and by those alone: what the stack gets, cut at each super-frame's MSS
// as a capture cuts it, is every frame read, byte for byte, in order.
// Each case changes the kernel's 8 segments (1448 bytes, the last 700
// with PSH) and says how many wire segments each frame handed to the
// stack stands for.
func TestGROJoinsWhatTheWireCarried(t *testing.T) {
	const mss = 1448
	udp := func() []byte {
		b := tcpFrame(seg{seq: 1, ack: 7, flags: header.TCPFlagAck, window: 512, payload: pattern(100)})
		l, _ := parseTCPFrame(b)
		b[l.ip+9] = byte(header.UDPProtocolNumber)
		ipv4HeaderChecksum(header.IPv4(b[l.ip:l.tcp]))
		return b
	}
	for _, tc := range []struct {
		name   string
		v6     bool
		change func([][]byte) [][]byte
		want   []int
	}{
		{name: "one run", want: []int{8}},
		{name: "v6", v6: true, want: []int{8}},
		{name: "PSH ends the run", change: func(f [][]byte) [][]byte {
			h := tcpOf(f[2])
			h.SetFlags(uint8(h.Flags() | header.TCPFlagPsh))
			refill(f[2])
			return f
		}, want: []int{3, 5}},
		{name: "FIN on the last", change: func(f [][]byte) [][]byte {
			h := tcpOf(f[7])
			h.SetFlags(uint8(h.Flags() | header.TCPFlagFin))
			refill(f[7])
			return f
		}, want: []int{8}},
		{name: "window moved", change: func(f [][]byte) [][]byte {
			for _, x := range f[4:] {
				tcpOf(x).SetWindowSize(1024)
				refill(x)
			}
			return f
		}, want: []int{4, 4}},
		{name: "timestamp moved", change: func(f [][]byte) [][]byte {
			for _, x := range f[5:] {
				h := tcpOf(x)
				h[header.TCPMinimumSize+4+3]++ // TSval's low byte
				refill(x)
			}
			return f
		}, want: []int{5, 3}},
		{name: "acknowledgment moved", change: func(f [][]byte) [][]byte {
			for _, x := range f[6:] {
				h := tcpOf(x)
				h.SetAckNumber(h.AckNumber() + 1000)
				refill(x)
			}
			return f
		}, want: []int{6, 2}},
		{name: "IP identification jumps", change: func(f [][]byte) [][]byte {
			l, _ := parseTCPFrame(f[3])
			h := header.IPv4(f[3][l.ip:l.tcp])
			h.SetID(h.ID() + 5)
			refill(f[3])
			return f
		}, want: []int{3, 1, 4}},
		{name: "TTL differs", change: func(f [][]byte) [][]byte {
			f[3][header.EthernetMinimumSize+8]--
			refill(f[3])
			return f
		}, want: []int{3, 1, 4}},
		{name: "ECN CE mark", change: func(f [][]byte) [][]byte {
			f[3][header.EthernetMinimumSize+1] |= 3
			refill(f[3])
			return f
		}, want: []int{3, 1, 4}},
		{name: "a segment lost", change: func(f [][]byte) [][]byte {
			return append(f[:3:3], f[4:]...)
		}, want: []int{3, 4}},
		{name: "segments swapped", change: func(f [][]byte) [][]byte {
			f[3], f[4] = f[4], f[3]
			return f
		}, want: []int{3, 1, 1, 3}},
		{name: "a segment twice", change: func(f [][]byte) [][]byte {
			return append(f[:4:4], f[3:]...)
		}, want: []int{4, 5}},
		{name: "payload corrupted", change: func(f [][]byte) [][]byte {
			f[3][len(f[3])-1] ^= 0x40
			return f
		}, want: []int{3, 1, 4}},
		{name: "CWR on the first", change: func(f [][]byte) [][]byte {
			h := tcpOf(f[0])
			h.SetFlags(uint8(h.Flags() | header.TCPFlagCwr))
			refill(f[0])
			return f
		}, want: []int{8}},
		{name: "CWR later", change: func(f [][]byte) [][]byte {
			h := tcpOf(f[3])
			h.SetFlags(uint8(h.Flags() | header.TCPFlagCwr))
			refill(f[3])
			return f
		}, want: []int{3, 5}},
		{name: "URG", change: func(f [][]byte) [][]byte {
			h := tcpOf(f[3])
			h.SetFlags(uint8(h.Flags() | header.TCPFlagUrg))
			h.SetUrgentPointer(10)
			refill(f[3])
			return f
		}, want: []int{3, 1, 4}},
		{name: "a short segment mid-run", change: func(f [][]byte) [][]byte {
			head := wireRun(t, false, 1000, 1, 2*mss+300, mss)
			for _, x := range head {
				h := tcpOf(x)
				h.SetFlags(uint8(h.Flags() &^ header.TCPFlagPsh))
				refill(x)
			}
			return append(head, f...)
		}, want: []int{3, 8}},
		{name: "another flow between", change: func(f [][]byte) [][]byte {
			o := append([]byte(nil), f[3]...)
			tcpOf(o).SetSourcePort(40001)
			refill(o)
			return append(f[:3:3], append([][]byte{o}, f[3:]...)...)
		}, want: []int{3, 1, 5}},
		{name: "UDP between", change: func(f [][]byte) [][]byte {
			return append(f[:3:3], append([][]byte{udp()}, f[3:]...)...)
		}, want: []int{3, 1, 5}},
		{name: "pure ACK between", change: func(f [][]byte) [][]byte {
			a := tcpFrame(seg{seq: 5, ack: 7, flags: header.TCPFlagAck, window: 512, tsval: 99, id: 77})
			return append(f[:3:3], append([][]byte{a}, f[3:]...)...)
		}, want: []int{3, 1, 5}},
		{name: "64 KiB at most", change: func([][]byte) [][]byte {
			// 60 segments: the first 45 fill an IPv4 packet.
			head := wireRun(t, false, 1000, 1, 40*mss, mss)
			last := head[len(head)-1]
			tcpOf(last).SetFlags(uint8(header.TCPFlagAck))
			refill(last)
			return append(head, wireRun(t, false, 1000+40*mss, 41, 20*mss, mss)...)
		}, want: []int{45, 15}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := wireRun(t, tc.v6, 1000+7*mss, 9, 7*mss+700, mss)
			if tc.change != nil {
				frames = tc.change(frames)
			}
			var d recvDispatcher
			l, r := groReader(&d)
			r.readFrames(frames...)
			r.burstEnd()
			var got []int
			var cut [][]byte
			for i, f := range d.frames {
				n := 1
				if g := d.gso[i]; g.MSS > 0 {
					var err error
					if n, err = SegmentCount(f, int(g.MSS)); err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					if !d.validated[i] || !tcpChecksumHolds(t, f) {
						t.Errorf("joined frame %d: checksum validated %v", i, d.validated[i])
					}
					cut = append(cut, segmentsOf(t, f, int(g.MSS))...)
				} else {
					cut = append(cut, f)
				}
				got = append(got, n)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("the stack got frames of %v wire segments, want %v", got, tc.want)
			}
			if len(cut) != len(frames) {
				t.Fatalf("cut at their MSS, the frames handed on are %d wire segments; %d were read", len(cut), len(frames))
			}
			for i := range cut {
				if !bytes.Equal(cut[i], frames[i]) {
					t.Errorf("wire segment %d handed on differs from the one read", i)
				}
			}
			st := l.stats()
			if st.RxFrames != uint64(len(frames)) {
				t.Errorf("RxFrames %d, want %d (one per wire segment read)", st.RxFrames, len(frames))
			}
		})
	}
}

// TestGROOffUnderInboundFaults: with a fault middleware's inbound faults
// above it, the device joins nothing: the faults stand for the wire, and
// draw for each wire segment. Outbound faults alone leave it joining.
func TestGROOffUnderInboundFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  FaultConfig
		want int
	}{
		{"outbound faults", FaultConfig{Loss: 0.5}, 1},
		{"inbound faults", FaultConfig{Inbound: &FaultConfig{}}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d recvDispatcher
			l, r := groReader(nil)
			l.closed = true // attaching starts no read loop
			f := NewFault(ethernet.New(l), tc.cfg)
			f.Attach(&d)
			r.readFrames(wireRun(t, false, 1, 1, 5*1448, 1448)...)
			r.burstEnd()
			if len(d.frames) != tc.want {
				t.Fatalf("the stack got %d frames for 5 wire segments, want %d", len(d.frames), tc.want)
			}
		})
	}
}

// pinDispatcher records, for each packet delivered, the storage its views
// hold: what a receive queue keeps alive while the data waits there.
type pinDispatcher struct{ pinned []int }

func (d *pinDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	b := pkt.ToBuffer()
	n := 0
	b.Apply(func(v *buffer.View) { n += v.Capacity() })
	b.Release()
	d.pinned = append(d.pinned, n)
}

func (*pinDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestGROShortRunPinsLittle: a run of two segments, ended by a burst's
// end, is copied out of the run's 64 KiB view, which the next run takes
// again: two segments held in a receive queue must not pin 64 KiB. A run
// of 44 hands its view on.
func TestGROShortRunPinsLittle(t *testing.T) {
	var d pinDispatcher
	_, r := groReader(&d)
	long := wireRun(t, false, 1000, 1, 44*1448, 1448)
	short := wireRun(t, false, 1000+44*1448, 45, 3*1448, 1448)
	r.readFrames(short[:2]...)
	r.burstEnd()
	kept := r.gro.pay
	r.readFrames(long...)
	if len(d.pinned) != 2 {
		t.Fatalf("%d packets delivered, want 2 runs", len(d.pinned))
	}
	if d.pinned[0] > 8<<10 {
		t.Errorf("a run of 2 segments pins %d bytes", d.pinned[0])
	}
	if d.pinned[1] < 63<<10 {
		t.Errorf("a run of 44 pins %d bytes: not the run's view", d.pinned[1])
	}
	if kept == nil || r.gro.pay != nil {
		t.Errorf("the short run's view was not kept for the next run (kept %v, after the long run %v)", kept != nil, r.gro.pay != nil)
	}
	r.gro.release()
}
