package pcap

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestDescribeUDPPortUnreachable: the ICMP port unreachable a stack sends
// for a UDP datagram no socket took names that datagram, as one for a
// TCP segment names the connection.
func TestDescribeUDPPortUnreachable(t *testing.T) {
	// The quoted datagram: 192.0.2.1:5353 > 192.0.2.2:9, its IP header
	// and UDP header (RFC 792: the header and 64 bits of data).
	quoted := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize)
	header.IPv4(quoted).Encode(&header.IPv4Fields{
		TotalLength: 40, TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), DstAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}),
	})
	header.UDP(quoted[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: 5353, DstPort: 9, Length: 20})
	total := header.EthernetMinimumSize + header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quoted)
	b := make([]byte, total)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	header.IPv4(b[header.EthernetMinimumSize:]).Encode(&header.IPv4Fields{
		TotalLength: uint16(total - header.EthernetMinimumSize), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}),
	})
	icmp := header.ICMPv4(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4DstUnreachable)
	icmp.SetCode(header.ICMPv4PortUnreachable)
	copy(icmp[header.ICMPv4MinimumSize:], quoted)

	fi := parseFrame(b, true)
	want := "ICMP port unreachable for UDP 192.0.2.1:5353 > 192.0.2.2:9"
	if got := fi.describe(true); got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
	if fi.quotedTCP {
		t.Error("a quoted UDP datagram is taken for a TCP segment")
	}
}
