package pcap

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
)

// udpBytes builds an Ethernet/IPv4/UDP frame of c (as the stack sees it)
// in direction dir with n payload bytes.
func udpBytes(dir uint8, c event.ConnID, n int) []byte {
	src, dst := c.Local, c.Remote
	if dir == dirIn {
		src, dst = dst, src
	}
	ipLen := header.IPv4MinimumSize + header.UDPMinimumSize + n
	b := make([]byte, header.EthernetMinimumSize+ipLen)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	header.IPv4(b[header.EthernetMinimumSize:]).Encode(&header.IPv4Fields{
		TotalLength: uint16(ipLen), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	header.UDP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:]).Encode(&header.UDPFields{
		SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(header.UDPMinimumSize + n),
	})
	return b
}

// TestAnnotateUDP: UDP events meet their frames by direction, ports,
// peer and length, in either order; a socket bound to no address names
// no local address, and its datagrams still find their frames; datagrams
// alike take one comment each, in order.
func TestAnnotateUDP(t *testing.T) {
	dns := netip.MustParseAddrPort("192.0.2.1:53")
	peer := netip.MustParseAddrPort("192.0.2.2:40000")
	onWire := event.ConnID{Local: dns, Remote: peer}
	wildcard := event.ConnID{Local: netip.MustParseAddrPort("0.0.0.0:53"), Remote: peer}
	orders(t, func(t *testing.T, h *harness, pair func(frame func(), events ...func())) {
		frame := func(dir uint8, n int) func() {
			return func() {
				b := udpBytes(dir, onWire, n)
				h.a.addFrame(h.now, &record{ts: h.now, dir: dir, data: b, length: len(b), fi: parseFrame(b, dir == dirOut)})
			}
		}
		ev := func(k event.Kind, c event.ConnID, n int, drop event.DropReason) func() {
			return func() { h.ev(event.Event{Kind: k, Conn: c, Key: event.SegKey{Len: n}, Drop: drop}) }
		}
		pair(frame(dirIn, 12), ev(event.KindUDPDeliver, onWire, 12, 0))
		pair(frame(dirOut, 30), ev(event.KindUDPSend, wildcard, 30, 0))
		for range 2 {
			pair(frame(dirIn, 12), ev(event.KindUDPDeliver, onWire, 12, 0))
		}
		pair(frame(dirIn, 12), ev(event.KindUDPDrop, onWire, 12, event.DropBufferFull))
		pair(frame(dirOut, 5), ev(event.KindUDPSend, onWire, 6, 0)) // a length that is not the frame's
		got := h.flush()
		want := []string{
			"udp datagram 12 bytes delivered to 192.0.2.1:53",
			"udp datagram 30 bytes sent",
			"udp datagram 12 bytes delivered to 192.0.2.1:53",
			"udp datagram 12 bytes delivered to 192.0.2.1:53",
			"udp datagram 12 bytes to 192.0.2.1:53: receive buffer full: dropped",
			"UDP 192.0.2.1:53 > 192.0.2.2:40000, 5 bytes (no event)",
		}
		if len(got) != len(want) {
			t.Fatalf("comments:\n%q\nwant:\n%q", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("frame %d: %q, want %q", i+1, got[i], want[i])
			}
		}
	})
}

// icmpUnreachBytes builds an Ethernet/IPv4 ICMP destination unreachable
// with code, from src to dst, quoting dgram (an IPv4 packet) as RFC 792
// asks: its IP header and 8 bytes.
func icmpUnreachBytes(code header.ICMPv4Code, src, dst netip.Addr, dgram []byte) []byte {
	quoted := dgram[:header.IPv4MinimumSize+header.UDPMinimumSize]
	ipLen := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quoted)
	b := make([]byte, header.EthernetMinimumSize+ipLen)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	header.IPv4(b[header.EthernetMinimumSize:]).Encode(&header.IPv4Fields{
		TotalLength: uint16(ipLen), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	icmp := header.ICMPv4(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4DstUnreachable)
	icmp.SetCode(code)
	copy(icmp[header.ICMPv4MinimumSize:], quoted)
	return b
}

// TestAnnotateUDPPortUnreachable: the ICMP port unreachable that answers
// a datagram is named on the datagram's frame and the other way round,
// whether the stack answered or the peer did; another ICMP error quoting
// a datagram is not taken for one.
func TestAnnotateUDPPortUnreachable(t *testing.T) {
	us := netip.MustParseAddrPort("192.0.2.1:53")
	peer := netip.MustParseAddrPort("192.0.2.2:40000")
	c := event.ConnID{Local: us, Remote: peer}
	h := newHarness(t)
	add := func(dir uint8, b []byte) {
		h.a.addFrame(h.now, &record{ts: h.now, dir: dir, data: b, length: len(b), fi: parseFrame(b, dir == dirOut)})
	}
	// The stack had no socket: frames 1 and 2.
	in := udpBytes(dirIn, c, 12)
	add(dirIn, in)
	h.ev(event.Event{Kind: event.KindUDPNoPort, Conn: c, Key: event.SegKey{Len: 12}, Note: "answered ICMP port unreachable"})
	add(dirOut, icmpUnreachBytes(header.ICMPv4PortUnreachable, us.Addr(), peer.Addr(), in[header.EthernetMinimumSize:]))
	// The peer had none: frames 3 and 4.
	out := udpBytes(dirOut, c, 7)
	add(dirOut, out)
	h.ev(event.Event{Kind: event.KindUDPSend, Conn: c, Key: event.SegKey{Len: 7}})
	add(dirIn, icmpUnreachBytes(header.ICMPv4PortUnreachable, peer.Addr(), us.Addr(), out[header.EthernetMinimumSize:]))
	// A host unreachable is not an answer of the peer's: frames 5 and 6.
	add(dirOut, out)
	h.ev(event.Event{Kind: event.KindUDPSend, Conn: c, Key: event.SegKey{Len: 7}})
	add(dirIn, icmpUnreachBytes(header.ICMPv4HostUnreachable, peer.Addr(), us.Addr(), out[header.EthernetMinimumSize:]))
	// The stack should have answered and nothing left: frame 7.
	add(dirIn, in)
	h.ev(event.Event{Kind: event.KindUDPNoPort, Conn: c, Key: event.SegKey{Len: 12}, Note: "answered ICMP port unreachable"})

	want := []string{
		"udp datagram 12 bytes to 192.0.2.1:53: no port: answered ICMP port unreachable (frame 2)",
		"ICMP port unreachable for UDP 192.0.2.2:40000 > 192.0.2.1:53 (answers frame 1)",
		"udp datagram 7 bytes sent → ICMP port unreachable (frame 4)",
		"ICMP port unreachable for UDP 192.0.2.1:53 > 192.0.2.2:40000 (answers frame 3)",
		"udp datagram 7 bytes sent",
		"ICMP host unreachable for UDP 192.0.2.1:53 > 192.0.2.2:40000",
		"udp datagram 12 bytes to 192.0.2.1:53: no port: answered ICMP port unreachable (but none in the capture: rate limited, or no route back)",
	}
	got := h.flush()
	if len(got) != len(want) {
		t.Fatalf("comments:\n%q\nwant:\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("frame %d: %q, want %q", i+1, got[i], want[i])
		}
	}
}

// TestParseUDPFirstFragment: the first fragment of a UDP datagram, IPv4
// or IPv6, is read as the datagram it begins (the UDP header's length
// counts the whole); a later fragment is not.
func TestParseUDPFirstFragment(t *testing.T) {
	const n = 3000 // payload bytes of the whole datagram
	udp := make([]byte, header.UDPMinimumSize+100)
	header.UDP(udp).Encode(&header.UDPFields{SrcPort: 40000, DstPort: 53, Length: header.UDPMinimumSize + n})
	src6, dst6 := netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1")
	v6 := func(offset uint16) []byte {
		frag := []byte{uint8(header.UDPProtocolNumber), 0, byte(offset << 3 >> 8), byte(offset<<3) | 1, 0, 0, 0, 7}
		pl := append(frag, udp...)
		b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize, header.EthernetMinimumSize+header.IPv6MinimumSize+len(pl))
		header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
		header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
			PayloadLength: uint16(len(pl)), TransportProtocol: tcpip.TransportProtocolNumber(header.IPv6FragmentExtHdrIdentifier), HopLimit: 64,
			SrcAddr: tcpip.AddrFrom16(src6.As16()), DstAddr: tcpip.AddrFrom16(dst6.As16()),
		})
		return append(b, pl...)
	}
	v4 := func(offset uint16) []byte {
		ipLen := header.IPv4MinimumSize + len(udp)
		b := make([]byte, header.EthernetMinimumSize+ipLen)
		header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
		header.IPv4(b[header.EthernetMinimumSize:]).Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
			Flags: header.IPv4FlagMoreFragments, FragmentOffset: offset,
			SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}),
		})
		copy(b[header.EthernetMinimumSize+header.IPv4MinimumSize:], udp)
		return b
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		udp   bool
	}{
		{"IPv4 first", v4(0), true},
		{"IPv4 later", v4(1480), false},
		{"IPv6 first", v6(0), true},
		{"IPv6 later", v6(1448), false},
	} {
		fi := parseFrame(tc.frame, false)
		if got := fi.kind == kindUDP; got != tc.udp {
			t.Errorf("%s: read as UDP = %v, want %v", tc.name, got, tc.udp)
			continue
		}
		if tc.udp && (fi.key.Len != n || fi.conn.Local.Port() != 53 || fi.conn.Remote.Port() != 40000) {
			t.Errorf("%s: %v, %d bytes; want the datagram to port 53 of %d bytes", tc.name, fi.conn, fi.key.Len, n)
		}
	}
}
