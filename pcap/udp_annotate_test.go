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
