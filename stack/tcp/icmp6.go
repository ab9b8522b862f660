package tcp

import (
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ICMPv6 Destination Unreachable codes that gVisor does not pass on.
//
// gVisor's IPv6 (icmp.go, handleICMP) hands the transport a Destination
// Unreachable (RFC 4443 3.1) only for codes 0 (no route) and 4 (port
// unreachable), and drops the rest: among them 3, address unreachable,
// which a router sends when neighbour discovery for the dialed host
// fails, the IPv6 form of IPv4's host unreachable; and 1, administratively
// prohibited, a firewall's reject. A dial to an IPv6 host that is not
// there then waited out its SYN retransmissions for ETIMEDOUT where
// Linux, whose tcp_v6_err ends a connection in SYN-SENT on any of them,
// says at once what icmpv6_err_convert makes of the code. So the engine
// watches ICMPv6 as a raw endpoint does (package stack registers
// icmpWatch with gVisor's demuxer, which hands raw endpoints a copy of
// every ICMPv6 packet before the network layer acts on it), and, for the
// codes gVisor drops, does what gVisor does for the others: it checks
// the message (its checksum, a quote of a TCP segment from one of our
// addresses), finds the connection by the quoted 4-tuple and hands it the
// error with the data at the quoted TCP header, where icmpArrives checks
// the quote as for any ICMP error (RFC 5927).

// icmpv6Errno is what Linux's icmpv6_err_convert makes of a Destination
// Unreachable code, for the codes gVisor drops (0 if none of them).
func icmpv6Errno(code header.ICMPv6Code) syscall.Errno {
	switch code {
	case header.ICMPv6Prohibited, header.ICMPv6Policy, header.ICMPv6RejectRoute:
		return syscall.EACCES
	case header.ICMPv6BeyondScope, header.ICMPv6AddressUnreachable:
		return syscall.EHOSTUNREACH
	}
	return 0
}

// icmpv6Arrives is an ICMPv6 packet seen as a raw endpoint sees it. All
// but a Destination Unreachable of a code gVisor drops, quoting a TCP
// segment, is left to gVisor. It copies only such a message.
func (p *Protocol) icmpv6Arrives(pkt *stack.PacketBuffer) {
	// gVisor has parsed the ICMPv6 header into the transport header
	// (parse.ICMPv6); the data is the message body, the quote.
	ic := header.ICMPv6(pkt.TransportHeader().Slice())
	ip := header.IPv6(pkt.NetworkHeader().Slice())
	if len(ic) < header.ICMPv6DstUnreachableMinimumSize || len(ip) < header.IPv6MinimumSize ||
		ic.Type() != header.ICMPv6DstUnreachable || icmpv6Errno(ic.Code()) == 0 {
		return
	}
	quoted := pkt.Data().AsRange().ToSlice()
	// RFC 4443 2.4 (b): a message with a bad checksum is discarded, as
	// gVisor's handleICMP would discard it after us.
	if ic.Checksum() != header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: ic[:header.ICMPv6DstUnreachableMinimumSize], Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
		PayloadCsum: checksum.Checksum(quoted, 0), PayloadLen: len(quoted),
	}) {
		return
	}
	// The quoted packet: a TCP segment we sent (its source one of our
	// addresses, as gVisor's handleControl requires), with no extension
	// header between, as we send them, and at least the 8 bytes of it
	// with the ports and the sequence number.
	if len(quoted) < header.IPv6MinimumSize+8 {
		return
	}
	q := header.IPv6(quoted)
	if q.NextHeader() != uint8(header.TCPProtocolNumber) ||
		p.stack.CheckLocalAddress(pkt.NICID, header.IPv6ProtocolNumber, q.SourceAddress()) == 0 {
		return
	}
	th := quoted[header.IPv6MinimumSize:]
	ep := p.quotedEndpoint(header.IPv6ProtocolNumber, pkt.NICID, q.SourceAddress(), q.DestinationAddress(), th)
	if ep == nil {
		return // no connection or listener: as gVisor's deliverError
	}
	handQuote(ep, watchedError{origin: tcpip.SockExtErrorOriginICMP6, typ: uint8(ic.Type()), code: uint8(ic.Code()), errno: icmpv6Errno(ic.Code())}, th)
}
