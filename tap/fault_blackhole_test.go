package tap_test

import (
	"bytes"
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/tap"
)

// ipFrame is the Ethernet frame of an IP packet of ipLen bytes (IPv4, or
// IPv6) carrying TCP with a header of tcpHdr bytes (options zero), or UDP
// when tcpHdr is 0, and id as every byte of its payload.
func ipFrame(v6 bool, tcpHdr, ipLen int, id byte) []byte {
	src4, dst4 := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	src6, dst6 := tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}), tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
	network, typ := header.IPv4MinimumSize, header.IPv4ProtocolNumber
	if v6 {
		network, typ = header.IPv6MinimumSize, header.IPv6ProtocolNumber
	}
	transport, proto := tcpHdr, header.TCPProtocolNumber
	if tcpHdr == 0 {
		transport, proto = header.UDPMinimumSize, header.UDPProtocolNumber
	}
	b := make([]byte, linkLen+ipLen)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x02\x00\x00\x00\x00\x02", Type: typ})
	ip := b[linkLen:]
	if v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(ipLen - network), TransportProtocol: proto, HopLimit: 64, SrcAddr: src6, DstAddr: dst6})
	} else {
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(ipLen), ID: 0x1234, TTL: 64, Protocol: uint8(proto), SrcAddr: src4, DstAddr: dst4})
		h.SetChecksum(^h.CalculateChecksum())
	}
	if tcpHdr > 0 {
		header.TCP(ip[network:]).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 7, SeqNum: 1000, AckNum: 2000, DataOffset: uint8(tcpHdr), Flags: header.TCPFlagAck, WindowSize: 65535})
	} else {
		header.UDP(ip[network:]).Encode(&header.UDPFields{SrcPort: 40000, DstPort: 7, Length: uint16(ipLen - network)})
	}
	for i := network + transport; i < len(ip); i++ {
		ip[i] = id
	}
	return b
}

// padded is frame with Ethernet padding after its IP packet, as a short
// frame arrives from a wire of 60-byte minimum frames.
func padded(frame []byte) []byte {
	return append(bytes.Clone(frame), make([]byte, max(header.EthernetMinimumSize+46-len(frame), 0))...)
}

// TestFaultBlackHole: with BlackHoleMTU 1400, an IP packet (IPv4 or IPv6)
// of up to 1400 bytes passes byte for byte and a longer one vanishes,
// counted and reported with its size and the MTU ("no ICMP": the sender
// is not told); ARP passes whatever the MTU, and Ethernet padding is no
// part of the packet. A super-frame is judged by its wire segments
// (network and TCP headers, options included, and MSS bytes of payload):
// it passes whole when they fit, however long it is, and is dropped whole
// when they do not; one that is not TCP is judged whole. Each in both
// directions; the report carries the frame as a capture above holds it.
func TestFaultBlackHole(t *testing.T) {
	tcpGSO := func(v6 bool, mss uint16) stack.GSO {
		typ := stack.GSOTCPv4
		if v6 {
			typ = stack.GSOTCPv6
		}
		return stack.GSO{Type: typ, NeedsCsum: true, MSS: mss}
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		gso   stack.GSO
		mtu   int
		size  int // the size reported when dropped; 0: the frame passes
	}{
		{name: "IPv4 under", frame: ipFrame(false, tcpLen, 1399, 1), mtu: 1400},
		{name: "IPv4 at", frame: ipFrame(false, tcpLen, 1400, 2), mtu: 1400},
		{name: "IPv4 over", frame: ipFrame(false, tcpLen, 1401, 3), mtu: 1400, size: 1401},
		{name: "IPv6 under", frame: ipFrame(true, tcpLen, 1399, 4), mtu: 1400},
		{name: "IPv6 at", frame: ipFrame(true, tcpLen, 1400, 5), mtu: 1400},
		{name: "IPv6 over", frame: ipFrame(true, tcpLen, 1401, 6), mtu: 1400, size: 1401},
		{name: "UDP over", frame: ipFrame(false, 0, 1401, 7), mtu: 1400, size: 1401},
		{name: "ARP", frame: arpFrame(), mtu: 20},
		{name: "IPv4 at, Ethernet padding after it", frame: padded(ipFrame(false, tcpLen, 40, 8)), mtu: 40},
		{name: "IPv4 super-frame, segments at", frame: ipFrame(false, tcpLen, 40+4000, 9), gso: tcpGSO(false, 1360), mtu: 1400},
		{name: "IPv4 super-frame, segments over", frame: ipFrame(false, tcpLen, 40+4000, 10), gso: tcpGSO(false, 1361), mtu: 1400, size: 1401},
		{name: "IPv4 super-frame, TCP options, segments at", frame: ipFrame(false, 32, 52+4000, 11), gso: tcpGSO(false, 1348), mtu: 1400},
		{name: "IPv4 super-frame, TCP options, segments over", frame: ipFrame(false, 32, 52+4000, 12), gso: tcpGSO(false, 1349), mtu: 1400, size: 1401},
		{name: "IPv4 super-frame, one short segment", frame: ipFrame(false, tcpLen, 1040, 13), gso: tcpGSO(false, 1460), mtu: 1400},
		{name: "IPv6 super-frame, segments at", frame: ipFrame(true, tcpLen, 60+4000, 14), gso: tcpGSO(true, 1340), mtu: 1400},
		{name: "IPv6 super-frame, segments over", frame: ipFrame(true, tcpLen, 60+4000, 15), gso: tcpGSO(true, 1341), mtu: 1400, size: 1401},
		{name: "UDP super-frame, judged whole", frame: ipFrame(false, 0, 3000, 16), gso: stack.GSO{Type: stack.GSOGvisor, MSS: 1000}, mtu: 1400, size: 3000},
	} {
		for _, dir := range []tap.FaultDir{tap.FaultOutbound, tap.FaultInbound} {
			t.Run(tc.name+", "+dir.String(), func(t *testing.T) {
				r := newMarkRig(t, dir, tap.FaultConfig{BlackHoleMTU: tc.mtu}, 1)
				if tc.gso.Type != stack.GSONone {
					r.moveGSO(tc.frame, tc.gso)
				} else {
					r.move(tc.frame)
				}
				out := r.out()
				if tc.size == 0 {
					if len(out) != 1 || !bytes.Equal(out[0], tc.frame) {
						t.Errorf("%d frames came out, want the frame as it went in", len(out))
					}
					if len(r.evs) != 0 {
						t.Errorf("reported %v", r.evs)
					}
					if st := r.stats(); st != (tap.FaultStats{Frames: 1}) {
						t.Errorf("stats %+v, want 1 frame", st)
					}
					return
				}
				if len(out) != 0 {
					t.Errorf("%d frames came out, want none", len(out))
				}
				if st := r.stats(); st != (tap.FaultStats{Frames: 1, BlackHoled: 1}) {
					t.Errorf("stats %+v, want 1 frame, 1 black-holed", st)
				}
				if len(r.evs) != 1 {
					t.Fatalf("%d reports, want 1: %v", len(r.evs), r.evs)
				}
				ev := r.evs[0]
				want := fmt.Sprintf("dropped: %d bytes, over the black hole's MTU %d (no ICMP, seed 1, #1)", tc.size, tc.mtu)
				if ev.Kind != tap.FaultBlackHole || ev.Dir != dir || ev.N != 1 || ev.Frame != 1 || ev.Prob != 0 ||
					ev.Size != tc.size || ev.MTU != tc.mtu || !ev.Seeded || ev.Seed != 1 || ev.String() != want || !bytes.Equal(ev.Data, tc.frame) {
					t.Errorf("report %v %v #%d frame %d prob %v size %d MTU %d %q, data %d bytes; want %q on frame 1, its bytes",
						ev.Dir, ev.Kind, ev.N, ev.Frame, ev.Prob, ev.Size, ev.MTU, ev.String(), len(ev.Data), want)
				}
			})
		}
	}
}

// TestFaultBlackHoleOrdinals: in a trace of short and long packets, the
// long ones are counted and reported in order, #1, #2, ..., each with
// its frame's ordinal, in both directions; without a seed the report
// says only "no ICMP" and the ordinal.
func TestFaultBlackHoleOrdinals(t *testing.T) {
	for _, dir := range []tap.FaultDir{tap.FaultOutbound, tap.FaultInbound} {
		t.Run(dir.String(), func(t *testing.T) {
			r := newMarkRig(t, dir, tap.FaultConfig{BlackHoleMTU: 1280}, 9)
			var long, short []byte
			for i := range 30 {
				size := 1000
				if i%3 == 1 {
					size = 1500
					long = append(long, byte(i))
				} else {
					short = append(short, byte(i))
				}
				r.move(ipFrame(i%2 == 1, tcpLen, size, byte(i)))
			}
			if got := ids(r.out()); !bytes.Equal(got, short) {
				t.Errorf("came out %v, want %v", got, short)
			}
			if st := r.stats(); st != (tap.FaultStats{Frames: 30, BlackHoled: uint64(len(long))}) {
				t.Errorf("stats %+v, want 30 frames, %d black-holed", st, len(long))
			}
			r.wantReports(tap.FaultBlackHole, long, 9, func(n int) string {
				return fmt.Sprintf("dropped: 1500 bytes, over the black hole's MTU 1280 (no ICMP, seed 9, #%d)", n)
			})
			ev := r.evs[0]
			ev.Seeded = false
			if got, want := ev.String(), "dropped: 1500 bytes, over the black hole's MTU 1280 (no ICMP, #1)"; got != want {
				t.Errorf("unseeded: %q, want %q", got, want)
			}
			if got := tap.FaultBlackHole.String(); got != "black-holed" {
				t.Errorf("FaultBlackHole.String() = %q", got)
			}
		})
	}
}

// TestFaultBlackHoleDrawsNothing: the black hole takes no draw from the
// lane's source. With a BlackHoleMTU no packet reaches, one seed loses,
// marks, corrupts and duplicates the same frames as without it; and with
// long packets among the short ones, the short ones meet the very faults
// they meet in a run where the long ones were never sent.
func TestFaultBlackHoleDrawsNothing(t *testing.T) {
	faults := tap.FaultConfig{Loss: 0.2, Mark: 0.5, Corrupt: 0.2, Duplicate: 0.3}
	run := func(dir tap.FaultDir, mtu int, withLong bool) ([][]byte, tap.FaultStats) {
		cfg := faults
		cfg.BlackHoleMTU = mtu
		r := newMarkRig(t, dir, cfg, 7)
		for i := range 60 {
			if withLong && i%4 == 0 {
				r.move(ipFrame(false, tcpLen, 1500, 200))
			}
			r.move(ecnFrame(i%2 == 1, ect0, byte(i)))
		}
		st := r.stats()
		st.Frames -= st.BlackHoled
		st.BlackHoled = 0
		return r.out(), st
	}
	for _, dir := range []tap.FaultDir{tap.FaultOutbound, tap.FaultInbound} {
		t.Run(dir.String(), func(t *testing.T) {
			without, st := run(dir, 0, false)
			if st.Lost == 0 || st.Marked == 0 || st.Corrupted == 0 || st.Duplicated == 0 {
				t.Fatalf("some fault never applied: %+v", st)
			}
			for _, tc := range []struct {
				name     string
				mtu      int
				withLong bool
			}{
				{"MTU above every packet", 1400, false},
				{"long packets black-holed", 1400, true},
			} {
				with, st2 := run(dir, tc.mtu, tc.withLong)
				if st2 != st || len(with) != len(without) {
					t.Errorf("%s: stats %+v and %d frames, want %+v and %d as without the black hole", tc.name, st2, len(with), st, len(without))
					continue
				}
				for i := range with {
					if !bytes.Equal(with[i], without[i]) {
						t.Errorf("%s: frame %d came out as %x, want %x as without the black hole", tc.name, i, with[i], without[i])
					}
				}
			}
		})
	}
}

// TestFaultBlackHoleBeforeLoss: the black hole is decided before Loss, so
// with Loss 1 a long packet is black-holed, not lost, and a short one is
// lost; the long one's report is the black hole's alone.
func TestFaultBlackHoleBeforeLoss(t *testing.T) {
	for _, dir := range []tap.FaultDir{tap.FaultOutbound, tap.FaultInbound} {
		t.Run(dir.String(), func(t *testing.T) {
			r := newMarkRig(t, dir, tap.FaultConfig{Loss: 1, BlackHoleMTU: 1400}, 1)
			r.move(ipFrame(false, tcpLen, 1401, 1))
			r.move(ipFrame(false, tcpLen, 1400, 2))
			if out := r.out(); len(out) != 0 {
				t.Errorf("%d frames came out, want none", len(out))
			}
			if st := r.stats(); st != (tap.FaultStats{Frames: 2, BlackHoled: 1, Lost: 1}) {
				t.Errorf("stats %+v, want 2 frames, 1 black-holed, 1 lost", st)
			}
			if len(r.evs) != 2 || r.evs[0].Kind != tap.FaultBlackHole || r.evs[0].Frame != 1 || r.evs[1].Kind != tap.FaultLoss || r.evs[1].Frame != 2 {
				t.Errorf("reports %v, want frame 1 black-holed, frame 2 lost", r.evs)
			}
		})
	}
}
