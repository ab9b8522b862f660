package tcp

import (
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ICMP errors that gVisor's IPv4 does not pass on.
//
// gVisor's IPv4 (icmp.go, handleICMP) hands the transport every
// Destination Unreachable code of RFC 792 and RFC 1812 (0 to 15) through
// handleControl and Endpoint.HandleError, but only counts a Time Exceeded
// (type 11) or a Parameter Problem (type 12). Linux's tcp_v4_err takes
// both: EHOSTUNREACH for time exceeded (a routing loop, or a path longer
// than our TTL), EPROTO for parameter problem (something on the path
// cannot parse what we send); both end a dial in SYN-SENT or SYN-RECEIVED
// and are soft errors in a synchronized state (RFC 1122 4.2.3.9), and
// tcp_req_err aborts a listener's half-open entry on either. So the
// engine watches ICMPv4 as it watches ICMPv6 (icmp6.go): package stack
// registers icmpWatch with gVisor's demuxer, which hands raw endpoints a
// copy of every valid, unfragmented (or reassembled) IPv4 packet before
// the network layer acts on it.
//
// One owner per type, so that no message is acted on twice: gVisor's
// HandleError path owns Destination Unreachable, which it passes on
// already (its codes mapped by icmpErrno, Fragmentation Needed to path
// MTU discovery); the watcher owns Time Exceeded and Parameter Problem,
// which gVisor's handleICMP passes to no one. The watcher checks what
// gVisor's handleICMP and handleControl would have (the checksum, a
// quoted IPv4 header from one of our addresses, not a later fragment,
// with the 8 bytes of TCP header) and hands the error to the connection
// found by the quoted 4-tuple, where icmpArrives checks the quote's
// sequence number as for any ICMP error (RFC 5927 4.1).

// icmpv4Errno is the errno Linux's tcp_v4_err gives a Time Exceeded or
// Parameter Problem, whatever the code, and 0 for the types the watcher
// leaves to gVisor.
func icmpv4Errno(typ header.ICMPv4Type) syscall.Errno {
	switch typ {
	case header.ICMPv4TimeExceeded:
		return syscall.EHOSTUNREACH
	case header.ICMPv4ParamProblem:
		return syscall.EPROTO
	}
	return 0
}

// icmpv4Arrives is an ICMPv4 packet seen as a raw endpoint sees it. It
// copies only a Time Exceeded or Parameter Problem quoting TCP.
func (p *Protocol) icmpv4Arrives(pkt *stack.PacketBuffer) {
	// gVisor has parsed the ICMPv4 header into the transport header
	// (parse.ICMPv4); the data is the message body, the quote.
	ic := header.ICMPv4(pkt.TransportHeader().Slice())
	ip := header.IPv4(pkt.NetworkHeader().Slice())
	if len(ic) < header.ICMPv4MinimumSize || len(ip) < header.IPv4MinimumSize || icmpv4Errno(ic.Type()) == 0 {
		return
	}
	// The raw copy comes before gVisor's routing: a message not to one
	// of our unicast addresses is not ours to take (Linux's icmp_rcv
	// drops an error sent to a broadcast or multicast address).
	if p.stack.CheckLocalAddress(0, header.IPv4ProtocolNumber, ip.DestinationAddress()) == 0 {
		return
	}
	quoted := pkt.Data().AsRange().ToSlice()
	// RFC 1122 3.2.2: a message with a bad checksum is discarded, as
	// gVisor's handleICMP would discard it after us.
	if checksum.Checksum(ic[:header.ICMPv4MinimumSize], checksum.Checksum(quoted, 0)) != 0xffff {
		return
	}
	// The quoted packet: an IPv4 header from one of our addresses (as
	// gVisor's handleControl requires), of a TCP segment, with at least
	// the 8 bytes of its header with the ports and the sequence number
	// (RFC 792), not a later fragment, whose 8 bytes are no header; and,
	// as Linux's icmp_unreach, with a header length of at least 20.
	if len(quoted) < header.IPv4MinimumSize {
		return
	}
	q := header.IPv4(quoted)
	hl := int(q.HeaderLength())
	if q.Protocol() != uint8(header.TCPProtocolNumber) || hl < header.IPv4MinimumSize || len(quoted) < hl+8 ||
		q.FragmentOffset() != 0 || p.stack.CheckLocalAddress(0, header.IPv4ProtocolNumber, q.SourceAddress()) == 0 {
		return
	}
	th := quoted[hl:]
	ep := p.quotedEndpoint(header.IPv4ProtocolNumber, pkt.NICID, q.SourceAddress(), q.DestinationAddress(), th)
	if ep == nil {
		return // no connection or listener: as gVisor's deliverError
	}
	handQuote(ep, watchedError{origin: tcpip.SockExtErrorOriginICMP, typ: uint8(ic.Type()), code: uint8(ic.Code()), errno: icmpv4Errno(ic.Type())}, th)
}
