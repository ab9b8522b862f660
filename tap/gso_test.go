package tap

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	macA = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	macB = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02")
	ip4A = tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	ip4B = tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	ip6A = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	ip6B = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
)

// seg describes a TCP segment for tcpFrame.
type seg struct {
	v6      bool
	seq     uint32
	ack     uint32
	flags   header.TCPFlags
	window  uint16
	tsval   uint32 // a timestamps option when not 0
	id      uint16
	tos     uint8 // IPv4 TOS or IPv6 traffic class: DSCP and the ECN field
	mayFrag bool  // IPv4 DF clear
	payload []byte
}

// tcpFrame builds the Ethernet frame of s with correct checksums.
func tcpFrame(s seg) []byte {
	var opts []byte
	if s.tsval != 0 {
		opts = make([]byte, 12)
		header.EncodeNOP(opts)
		header.EncodeNOP(opts[1:])
		header.EncodeTSOption(s.tsval, 7, opts[2:])
	}
	tcpLen := header.TCPMinimumSize + len(opts)
	ipLen := header.IPv4MinimumSize
	if s.v6 {
		ipLen = header.IPv6MinimumSize
	}
	b := make([]byte, header.EthernetMinimumSize+ipLen+tcpLen+len(s.payload))
	eth := header.Ethernet(b)
	ethType := header.IPv4ProtocolNumber
	if s.v6 {
		ethType = header.IPv6ProtocolNumber
	}
	eth.Encode(&header.EthernetFields{SrcAddr: macA, DstAddr: macB, Type: ethType})
	ip := b[header.EthernetMinimumSize:]
	src, dst := ip4A, ip4B
	if s.v6 {
		src, dst = ip6A, ip6B
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(tcpLen + len(s.payload)),
			TrafficClass: s.tos, TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		h := header.IPv4(ip)
		flags := uint8(header.IPv4FlagDontFragment)
		if s.mayFrag {
			flags = 0
		}
		h.Encode(&header.IPv4Fields{TOS: s.tos, TotalLength: uint16(ipLen + tcpLen + len(s.payload)), ID: s.id,
			Flags: flags, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	}
	t := header.TCP(ip[ipLen:])
	t.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: s.seq, AckNum: s.ack,
		DataOffset: uint8(tcpLen), Flags: s.flags, WindowSize: s.window})
	copy(t[header.TCPMinimumSize:], opts)
	copy(t[tcpLen:], s.payload)
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen+len(s.payload)))
	t.SetChecksum(^checksum.Checksum(t, x))
	return b
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func TestVnetHdrEncodeDecode(t *testing.T) {
	for _, h := range []vnetHdr{
		{},
		{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 16},
		{flags: vnetFlagDataValid},
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16},
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv6 | vnetGSOECN, hdrLen: 86, gsoSize: 1428, csumStart: 54, csumOffset: 16},
		{flags: 0xff, gsoType: 0xff, hdrLen: 0xffff, gsoSize: 0xffff, csumStart: 0xffff, csumOffset: 0xffff},
	} {
		b := make([]byte, vnetHdrLen+3)
		h.encode(b)
		// The layout of struct virtio_net_hdr, in the host's byte order.
		want := []byte{h.flags, h.gsoType}
		for _, v := range []uint16{h.hdrLen, h.gsoSize, h.csumStart, h.csumOffset} {
			want = binary.NativeEndian.AppendUint16(want, v)
		}
		if !bytes.Equal(b[:vnetHdrLen], want) {
			t.Errorf("encode(%v) = % x, want % x", h, b[:vnetHdrLen], want)
		}
		if !bytes.Equal(b[vnetHdrLen:], make([]byte, 3)) {
			t.Errorf("encode(%v) wrote past the header", h)
		}
		got, err := decodeVnetHdr(b)
		if err != nil || got != h {
			t.Errorf("decode(encode(%v)) = %v, %v", h, got, err)
		}
	}
	if _, err := decodeVnetHdr(make([]byte, vnetHdrLen-1)); err == nil {
		t.Error("decode of 9 bytes succeeded")
	}
}

func TestCheckVnetHdr(t *testing.T) {
	f4 := tcpFrame(seg{seq: 1, ack: 1, flags: header.TCPFlagAck, payload: pattern(3000)})
	f6 := tcpFrame(seg{v6: true, seq: 1, ack: 1, flags: header.TCPFlagAck, payload: pattern(3000)})
	arp := make([]byte, 42)
	header.Ethernet(arp).Encode(&header.EthernetFields{Type: header.ARPProtocolNumber})
	for _, tc := range []struct {
		name  string
		h     vnetHdr
		frame []byte
		ok    bool
	}{
		{"plain", vnetHdr{}, f4, true},
		{"plain ARP", vnetHdr{}, arp, true},
		{"partial", vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 16}, f4, true},
		{"partial past the end", vnetHdr{flags: vnetFlagNeedsCsum, csumStart: uint16(len(f4) - 1), csumOffset: 0}, f4, false},
		{"partial offset past the end", vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 0xffff}, f4, false},
		{"TSO4", vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 34, csumOffset: 16}, f4, true},
		{"TSO4 with ECN", vnetHdr{gsoType: vnetGSOTCPv4 | vnetGSOECN, gsoSize: 1448}, f4, true},
		{"ECN without a GSO type", vnetHdr{gsoType: vnetGSOECN, gsoSize: 1448}, f4, false},
		{"TSO6", vnetHdr{gsoType: vnetGSOTCPv6, gsoSize: 1448}, f6, true},
		{"TSO4 on IPv6", vnetHdr{gsoType: vnetGSOTCPv4, gsoSize: 1448}, f6, false},
		{"TSO6 on IPv4", vnetHdr{gsoType: vnetGSOTCPv6, gsoSize: 1448}, f4, false},
		{"UFO", vnetHdr{gsoType: vnetGSOUDP, gsoSize: 1448}, f4, false},
		{"USO", vnetHdr{gsoType: vnetGSOUDPL4, gsoSize: 1448}, f4, false},
		{"TSO on ARP", vnetHdr{gsoType: vnetGSOTCPv4, gsoSize: 1448}, arp, false},
		{"TSO on a runt", vnetHdr{gsoType: vnetGSOTCPv4, gsoSize: 1448}, f4[:20], false},
	} {
		err := checkVnetHdr(tc.h, tc.frame)
		if (err == nil) != tc.ok {
			t.Errorf("%s: checkVnetHdr(%v) = %v, want ok %v", tc.name, tc.h, err, tc.ok)
		}
	}
}

// segmentsOf splits frame at mss with WireSegments and returns copies.
func segmentsOf(t *testing.T, frame []byte, mss int) [][]byte {
	t.Helper()
	var out [][]byte
	if err := WireSegments(frame, mss, func(s []byte) { out = append(out, append([]byte(nil), s...)) }); err != nil {
		t.Fatalf("WireSegments: %v", err)
	}
	return out
}

func TestWireSegments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v6      bool
		payload int
		mss     int
		flags   header.TCPFlags
		tsval   uint32
	}{
		{"v4 44x1448", false, 44 * 1448, 1448, header.TCPFlagAck, 9},
		{"v4 remainder", false, 10*1448 + 100, 1448, header.TCPFlagAck | header.TCPFlagPsh, 9},
		{"v4 one segment", false, 1000, 1448, header.TCPFlagAck | header.TCPFlagPsh, 0},
		{"v4 FIN and CWR", false, 5000, 1460, header.TCPFlagAck | header.TCPFlagFin | header.TCPFlagPsh | header.TCPFlagCwr, 0},
		{"v4 odd mss", false, 7777, 999, header.TCPFlagAck, 3},
		{"v4 largest", false, 0xffff - 20 - 32, 1448, header.TCPFlagAck, 9},
		{"v6 remainder", true, 20*1428 + 1, 1428, header.TCPFlagAck | header.TCPFlagPsh, 5},
		{"v6 no options", true, 3 * 1440, 1440, header.TCPFlagAck, 0},
		// gVisor's GSO marks its pure ACKs too: one segment, itself.
		{"v4 pure ACK", false, 0, 1448, header.TCPFlagAck, 9},
		{"v6 FIN without data", true, 0, 1428, header.TCPFlagAck | header.TCPFlagFin, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := pattern(tc.payload)
			super := seg{v6: tc.v6, seq: 0xfffff000, ack: 77, flags: tc.flags, window: 501, tsval: tc.tsval, id: 0xfffe, payload: data}
			frame := tcpFrame(super)
			segs := segmentsOf(t, frame, tc.mss)
			want := max((tc.payload+tc.mss-1)/tc.mss, 1)
			if len(segs) != want {
				t.Fatalf("%d segments, want %d", len(segs), want)
			}
			var joined []byte
			for i, s := range segs {
				l, err := parseTCPFrame(s)
				if err != nil {
					t.Fatalf("segment %d: %v", i, err)
				}
				if !ipFrameValid(s) {
					t.Errorf("segment %d: a checksum does not verify", i)
				}
				size := min(tc.mss, tc.payload-i*tc.mss)
				if l.payload() != size || l.end != len(s) {
					t.Errorf("segment %d: payload %d in a frame of %d, want %d", i, l.payload(), len(s), size)
				}
				h := header.TCP(s[l.tcp:])
				if h.SequenceNumber() != super.seq+uint32(i*tc.mss) || h.AckNumber() != 77 || h.WindowSize() != 501 {
					t.Errorf("segment %d: seq %d ack %d win %d", i, h.SequenceNumber(), h.AckNumber(), h.WindowSize())
				}
				wantFlags := tc.flags
				if i > 0 {
					wantFlags &^= header.TCPFlagCwr
				}
				if i < len(segs)-1 {
					wantFlags &^= header.TCPFlagFin | header.TCPFlagPsh
				}
				if h.Flags() != wantFlags {
					t.Errorf("segment %d: flags %v, want %v", i, h.Flags(), wantFlags)
				}
				// Every header byte but lengths, IDs, sequence numbers,
				// flags and checksums is the super-frame's.
				if !bytes.Equal(s[l.tcp+header.TCPMinimumSize:l.data], frame[l.tcp+header.TCPMinimumSize:l.data]) {
					t.Errorf("segment %d: TCP options differ", i)
				}
				if !tc.v6 && header.IPv4(s[l.ip:]).ID() != uint16(0xfffe+i) {
					t.Errorf("segment %d: IP ID %d, want %d", i, header.IPv4(s[l.ip:]).ID(), uint16(0xfffe+i))
				}
				joined = append(joined, s[l.data:]...)
			}
			if !bytes.Equal(joined, data) {
				t.Error("the segments' payloads do not make the super-frame's")
			}
		})
	}
}

func TestWireSegmentsRejects(t *testing.T) {
	good := tcpFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(3000)})
	syn := tcpFrame(seg{seq: 1, flags: header.TCPFlagSyn, payload: pattern(3000)})
	udp := append([]byte(nil), good...)
	udp[header.EthernetMinimumSize+9] = uint8(header.UDPProtocolNumber)
	short := good[:len(good)-1] // the IP length says more than there is
	for _, tc := range []struct {
		name  string
		frame []byte
		mss   int
	}{
		{"zero mss", good, 0},
		{"negative mss", good, -5},
		{"too many segments", tcpFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(5000)}), 1},
		{"SYN with data", syn, 1000},
		{"UDP", udp, 1000},
		{"truncated", short, 1000},
		{"empty", nil, 1000},
	} {
		if err := WireSegments(tc.frame, tc.mss, func([]byte) { t.Errorf("%s: a segment was emitted", tc.name) }); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestIPFrameValid(t *testing.T) {
	good := tcpFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(100)})
	good6 := tcpFrame(seg{v6: true, seq: 1, flags: header.TCPFlagAck, payload: pattern(101)})
	flip := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		return c
	}
	frag := flip(good, len(good)-1)
	header.IPv4(frag[header.EthernetMinimumSize:]).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	ipv4HeaderChecksum(header.IPv4(frag[header.EthernetMinimumSize : header.EthernetMinimumSize+20]))
	for _, tc := range []struct {
		name  string
		frame []byte
		ok    bool
	}{
		{"TCP", good, true},
		{"TCP over IPv6", good6, true},
		{"TCP payload flipped", flip(good, len(good)-1), false},
		{"TCP over IPv6 payload flipped", flip(good6, len(good6)-3), false},
		{"IPv4 header flipped", flip(good, header.EthernetMinimumSize+8), false},
		{"fragment: transport unchecked", frag, true},
		{"runt", good[:10], true},
	} {
		if got := ipFrameValid(tc.frame); got != tc.ok {
			t.Errorf("%s: ipFrameValid = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestFillChecksumAndCompletePartial(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		f := tcpFrame(seg{v6: v6, seq: 9, flags: header.TCPFlagAck | header.TCPFlagPsh, payload: pattern(333)})
		want := append([]byte(nil), f...)
		l, _ := parseTCPFrame(f)
		// The kernel's CHECKSUM_PARTIAL: the pseudo-header sum only.
		src, dst := l.addrs(f)
		header.TCP(f[l.tcp:]).SetChecksum(pseudoSum(src, dst, l.end-l.tcp))
		partial := append([]byte(nil), f...)
		if ipFrameValid(f) {
			t.Fatalf("v6 %v: a partial checksum verifies", v6)
		}
		completePartial(f, l.tcp, header.TCPChecksumOffset)
		if !bytes.Equal(f, want) {
			t.Errorf("v6 %v: completePartial made % x, want % x", v6, f[l.tcp:l.data], want[l.tcp:l.data])
		}
		if !FillChecksum(partial) || !bytes.Equal(partial, want) {
			t.Errorf("v6 %v: FillChecksum did not make the wire frame", v6)
		}
	}
}

// outPacket makes a PacketBuffer as gVisor's stack hands it to a link:
// Ethernet, IP and TCP headers pushed, the payload in views of at most
// chunk bytes.
func outPacket(frame []byte, chunk int) *stack.PacketBuffer {
	l, err := parseTCPFrame(frame)
	if err != nil {
		panic(err)
	}
	var payload buffer.Buffer
	for off := l.data; off < len(frame); off += chunk {
		payload.Append(buffer.NewViewWithData(frame[off:min(off+chunk, len(frame))]))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: l.data + 16, Payload: payload})
	copy(pkt.TransportHeader().Push(l.data-l.tcp), frame[l.tcp:l.data])
	copy(pkt.NetworkHeader().Push(l.tcp-l.ip), frame[l.ip:l.tcp])
	copy(pkt.LinkHeader().Push(l.ip), frame[:l.ip])
	return pkt
}

// coalesceFrames runs the coalescer over frames and returns what it would
// write: each run's bytes, virtio-net header first.
func coalesceFrames(t *testing.T, frames [][]byte) [][]byte {
	t.Helper()
	txf := make([]txFrame, len(frames))
	for i, f := range frames {
		pkt := outPacket(f, 700)
		defer pkt.DecRef()
		txf[i].load(pkt)
	}
	var out [][]byte
	for _, r := range planRuns(nil, txf) {
		var b []byte
		if r.n == 1 {
			f := &txf[r.first]
			var h [vnetHdrLen]byte
			vh := frameHeader(f)
			vh.encode(h[:])
			b = append(b, h[:]...)
			for _, s := range appendFrameSlices(nil, f.pkt, 0, f.size) {
				b = append(b, s...)
			}
		} else {
			var hdr [vnetHdrLen + maxHeaders]byte
			b = append(b, superHeader(hdr[:], txf, r)...)
			for i := r.first; i < r.first+r.n; i++ {
				f := &txf[i]
				for _, s := range appendFrameSlices(nil, f.pkt, f.l.data, f.size) {
					b = append(b, s...)
				}
			}
		}
		out = append(out, b)
	}
	return out
}

// sameSegment compares two frames but for the IPv4 identification and
// header checksum, which a super-frame's cutting renumbers.
func sameSegment(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = append([]byte(nil), a...), append([]byte(nil), b...)
	if header.Ethernet(a).Type() == header.IPv4ProtocolNumber {
		for _, i := range []int{4, 5, 10, 11} {
			a[header.EthernetMinimumSize+i], b[header.EthernetMinimumSize+i] = 0, 0
		}
	}
	return bytes.Equal(a, b)
}

func TestCoalesce(t *testing.T) {
	const mss = 1448
	ack := header.TCPFlagAck
	psh := header.TCPFlagAck | header.TCPFlagPsh
	// run makes n segments of one flow from seq 1000, each mss long.
	run := func(v6 bool, n int, mod func(i int, s *seg)) [][]byte {
		var out [][]byte
		seq := uint32(1000)
		for i := range n {
			s := seg{v6: v6, seq: seq, ack: 5, flags: ack, window: 300, tsval: 77, id: uint16(i), payload: pattern(mss)}
			if mod != nil {
				mod(i, &s)
			}
			seq += uint32(len(s.payload))
			out = append(out, tcpFrame(s))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		runs   []int // frames per written frame
	}{
		{"one flow", run(false, 10, nil), []int{10}},
		{"one flow over IPv6", run(true, 7, nil), []int{7}},
		{"single segment", run(false, 1, nil), []int{1}},
		{"short last segment", run(false, 5, func(i int, s *seg) {
			if i == 4 {
				s.payload = pattern(100)
			}
		}), []int{5}},
		{"short segment ends the run", run(false, 5, func(i int, s *seg) {
			if i == 2 {
				s.payload = pattern(100)
			}
		}), []int{3, 2}},
		{"PSH ends the run", run(false, 6, func(i int, s *seg) {
			if i == 3 {
				s.flags = psh
			}
		}), []int{4, 2}},
		{"PSH first stands alone", run(false, 3, func(i int, s *seg) {
			if i == 0 {
				s.flags = psh
			}
		}), []int{1, 2}},
		{"ACK number changes", run(false, 6, func(i int, s *seg) {
			if i >= 2 {
				s.ack = 9
			}
		}), []int{2, 4}},
		{"window changes", run(false, 4, func(i int, s *seg) {
			if i == 1 {
				s.window = 301
			}
		}), []int{1, 1, 2}},
		{"timestamp ticks", run(false, 4, func(i int, s *seg) {
			if i >= 3 {
				s.tsval = 78
			}
		}), []int{3, 1}},
		{"gap in sequence", run(false, 4, func(i int, s *seg) {
			if i >= 2 {
				s.seq += mss
			}
		}), []int{2, 2}},
		{"FIN is not coalesced", run(false, 3, func(i int, s *seg) {
			if i == 2 {
				s.flags = header.TCPFlagAck | header.TCPFlagFin
			}
		}), []int{2, 1}},
		{"pure ACKs are not coalesced", run(false, 3, func(i int, s *seg) { s.payload = nil }), []int{1, 1, 1}},
		// A router marks segments one by one: a CE segment never joins
		// ECT(0) ones (the super-frame would carry one ECN field for
		// all), as Linux's GRO compares the TOS whole.
		{"CE mark ends the run", run(false, 5, func(i int, s *seg) {
			s.tos = 0b10 // ECT(0)
			if i == 2 {
				s.tos = 0b11
			}
		}), []int{2, 1, 2}},
		{"CE mark ends the run over IPv6", run(true, 3, func(i int, s *seg) {
			s.tos = 0b10
			if i == 1 {
				s.tos = 0b11
			}
		}), []int{1, 1, 1}},
		{"marked segments join", run(false, 4, func(i int, s *seg) {
			s.tos = 0b10
			if i == 1 || i == 2 {
				s.tos = 0b11
			}
		}), []int{1, 2, 1}},
		{"odd mss", run(false, 5, func(i int, s *seg) { s.payload = pattern(999) }), []int{5}},
		// The kernel gives the segments it cuts the first one's IPv4 ID
		// plus one each: with DF clear a run takes only segments whose
		// IDs do so, as Linux's GRO (inet_gro_receive); with DF set the
		// IDs may also stay fixed, as gVisor's IPv4 sends them.
		{"IDs follow with DF clear", run(false, 4, func(i int, s *seg) { s.mayFrag, s.id = true, uint16(10+i) }), []int{4}},
		{"ID jump with DF clear ends the run", run(false, 3, func(i int, s *seg) {
			s.mayFrag, s.id = true, []uint16{10, 50, 51}[i]
		}), []int{1, 2}},
		{"fixed IDs with DF set", run(false, 4, func(i int, s *seg) { s.id = 0 }), []int{4}},
		{"fixed IDs with DF clear", run(false, 2, func(i int, s *seg) { s.mayFrag, s.id = true, 7 }), []int{1, 1}},
		{"fixed then incrementing IDs with DF set", run(false, 3, func(i int, s *seg) { s.id = []uint16{7, 7, 8}[i] }), []int{2, 1}},
		{"ID jump with DF set ends the run", run(false, 3, func(i int, s *seg) { s.id = []uint16{0, 5, 6}[i] }), []int{1, 2}},
		{"64 KiB limit", run(false, 50, nil), []int{45, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			written := coalesceFrames(t, tc.frames)
			if len(written) != len(tc.runs) {
				t.Fatalf("%d frames written, want %d", len(written), len(tc.runs))
			}
			next := 0
			for i, w := range written {
				h, err := decodeVnetHdr(w)
				if err != nil {
					t.Fatal(err)
				}
				frame := w[vnetHdrLen:]
				if err := checkVnetHdr(h, frame); err != nil {
					t.Errorf("frame %d: %v", i, err)
				}
				if !ipFrameValid(frame) {
					t.Errorf("frame %d: a checksum does not verify", i)
				}
				var segs [][]byte
				if tc.runs[i] == 1 {
					if h != (vnetHdr{}) {
						t.Errorf("frame %d: header %v on a frame written alone", i, h)
					}
					segs = [][]byte{frame}
				} else {
					l, _ := parseTCPFrame(frame)
					if h.gsoSize == 0 || h.hdrLen != uint16(l.data) || h.csumStart != uint16(l.tcp) || h.flags != 0 {
						t.Errorf("frame %d: header %v", i, h)
					}
					segs = segmentsOf(t, frame, int(h.gsoSize))
				}
				if len(segs) != tc.runs[i] {
					t.Fatalf("frame %d stands for %d segments, want %d", i, len(segs), tc.runs[i])
				}
				for j, s := range segs {
					if !sameSegment(s, tc.frames[next]) {
						t.Errorf("frame %d segment %d differs from the stack's frame %d", i, j, next)
					}
					if sent := tc.frames[next]; header.Ethernet(sent).Type() == header.IPv4ProtocolNumber {
						ip, sip := header.IPv4(s[header.EthernetMinimumSize:]), header.IPv4(sent[header.EthernetMinimumSize:])
						if sip.Flags()&header.IPv4FlagDontFragment == 0 && ip.ID() != sip.ID() {
							t.Errorf("frame %d segment %d: IPv4 ID %d with DF clear, the stack sent %d", i, j, ip.ID(), sip.ID())
						}
					}
					next++
				}
			}
		})
	}
}

// A segment corrupted after its checksum was made (by a fault middleware
// above the device) makes its super-frame's checksum fail: the kernel
// never takes corrupted bytes for good ones. It drops the whole
// super-frame, though, so tap.Fault has the device leave such a segment
// out (TestTxPathLeavesCorruptedSegmentOut).
func TestCoalesceKeepsCorruptionVisible(t *testing.T) {
	var frames [][]byte
	for i := range 4 {
		frames = append(frames, tcpFrame(seg{seq: uint32(1 + i*1448), ack: 1, flags: header.TCPFlagAck, payload: pattern(1448)}))
	}
	frames[2][len(frames[2])-5] ^= 0x10
	written := coalesceFrames(t, frames)
	if len(written) != 1 {
		t.Fatalf("%d frames written, want 1", len(written))
	}
	if ipFrameValid(written[0][vnetHdrLen:]) {
		t.Error("the super-frame of a corrupted segment verifies")
	}
}

// GSO packets from gVisor's TCP (a super-frame with a partial checksum)
// are written with the header their options ask for.
func TestFrameHeaderFromGSO(t *testing.T) {
	frame := tcpFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(5000)})
	for _, tc := range []struct {
		gso  stack.GSO
		want vnetHdr
	}{
		{stack.GSO{}, vnetHdr{}},
		{stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20},
			vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16}},
		{stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 6000, L3HdrLen: 20},
			vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 16}},
		{stack.GSO{Type: stack.GSOTCPv4, MSS: 1448, L3HdrLen: 20},
			vnetHdr{gsoType: vnetGSOTCPv4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16}},
	} {
		pkt := outPacket(frame, 4096)
		pkt.GSOOptions = tc.gso
		var f txFrame
		f.load(pkt)
		if f.tcp != (tc.gso == stack.GSO{}) {
			t.Errorf("%+v: may be coalesced %v", tc.gso, f.tcp)
		}
		if got := frameHeader(&f); got != tc.want {
			t.Errorf("%+v: header %v, want %v", tc.gso, got, tc.want)
		}
		pkt.DecRef()
	}
}

// A super-frame with CWR (an ECN sender's first segment after a
// reduction) tells the kernel so (VIRTIO_NET_HDR_GSO_ECN), as Linux's own
// sender marks such packets SKB_GSO_TCP_ECN; a single segment with CWR
// needs no GSO header at all.
func TestFrameHeaderCWR(t *testing.T) {
	for _, tc := range []struct {
		payload int
		gso     stack.GSO
		want    vnetHdr
	}{
		{5000, stack.GSO{Type: stack.GSOTCPv4, MSS: 1448, L3HdrLen: 20},
			vnetHdr{gsoType: vnetGSOTCPv4 | vnetGSOECN, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16}},
		{5000, stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20},
			vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4 | vnetGSOECN, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16}},
		{1000, stack.GSO{Type: stack.GSOTCPv4, MSS: 1448, L3HdrLen: 20}, vnetHdr{}},
	} {
		pkt := outPacket(tcpFrame(seg{seq: 1, flags: header.TCPFlagAck | header.TCPFlagCwr, payload: pattern(tc.payload)}), 4096)
		pkt.GSOOptions = tc.gso
		var f txFrame
		f.load(pkt)
		if got := frameHeader(&f); got != tc.want {
			t.Errorf("%d bytes, %+v: header %v, want %v", tc.payload, tc.gso, got, tc.want)
		}
		pkt.DecRef()
	}
}

func TestCopyFramePrefixAndSlices(t *testing.T) {
	frame := tcpFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(3000)})
	pkt := outPacket(frame, 333)
	defer pkt.DecRef()
	for _, n := range []int{0, 1, 14, 54, 100, len(frame)} {
		dst := make([]byte, n)
		if got := copyFramePrefix(dst, pkt); got != n || !bytes.Equal(dst, frame[:n]) {
			t.Errorf("copyFramePrefix(%d) = %d", n, got)
		}
	}
	for _, r := range [][2]int{{0, len(frame)}, {54, len(frame)}, {10, 11}, {400, 2000}, {5, 5}} {
		var got []byte
		for _, s := range appendFrameSlices(nil, pkt, r[0], r[1]) {
			got = append(got, s...)
		}
		if !bytes.Equal(got, frame[r[0]:r[1]]) {
			t.Errorf("appendFrameSlices(%d, %d): %d bytes", r[0], r[1], len(got))
		}
	}
}
