package tcp

import (
	"fmt"
	"syscall"

	"github.com/tapstack/tapstack/event"

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
// acts on a Time Exceeded or Parameter Problem quoting TCP, and counts a
// Destination Unreachable quoting TCP that gVisor's handleControl or
// DeliverTransportError will discard before TCP sees it, leaving gVisor
// to act on the others. It copies only such a message.
func (p *Protocol) icmpv4Arrives(pkt *stack.PacketBuffer) {
	// gVisor has parsed the ICMPv4 header into the transport header
	// (parse.ICMPv4); the data is the message body, the quote.
	ic := header.ICMPv4(pkt.TransportHeader().Slice())
	ip := header.IPv4(pkt.NetworkHeader().Slice())
	if len(ic) < header.ICMPv4MinimumSize || len(ip) < header.IPv4MinimumSize {
		return
	}
	errno := icmpv4Errno(ic.Type())
	// The codes gVisor's handleICMP hands handleControl; it ignores
	// others, as Linux's tcp_v4_err (code > NR_ICMP_UNREACH).
	gvisors := ic.Type() == header.ICMPv4DstUnreachable && ic.Code() <= header.ICMPv4PrecedenceCutInEffect
	if errno == 0 && !gvisors {
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
	// The quoted packet: a TCP segment, its protocol in the 10th byte.
	// What is no TCP quote is no concern of ours.
	if len(quoted) < 10 || header.IPv4(quoted).Protocol() != uint8(header.TCPProtocolNumber) {
		return
	}
	q := header.IPv4(quoted)
	hl := int(q.HeaderLength())
	if !gvisors && hl < header.IPv4MinimumSize {
		// Linux's icmp_unreach drops a quote whose header length is
		// under 20: it has no TCP header at its end. gVisor does
		// not check, and its kinds are its own to act on.
		p.dropICMPv4(quoted, icmpQuote{}, ic, event.DropICMPBadQuote)
		return
	}
	// gVisor's handleControl and DeliverTransportError, in their order:
	// the quoted IP header whole; its source one of our addresses; its
	// header length and the 8 bytes of TCP header after it (RFC 792);
	// not a later fragment, whose 8 bytes are no header.
	var reason event.DropReason
	switch {
	case len(quoted) < header.IPv4MinimumSize:
		reason = event.DropICMPShortQuote
	case p.stack.CheckLocalAddress(0, header.IPv4ProtocolNumber, q.SourceAddress()) == 0:
		reason = event.DropICMPForeignQuote
	case len(quoted) < hl:
		reason = event.DropICMPShortQuote
	case q.FragmentOffset() != 0:
		reason = event.DropICMPFragmentQuote
	case len(quoted) < hl+8:
		reason = event.DropICMPShortQuote
	}
	if reason != event.DropNone {
		p.dropICMPv4(quoted, icmpQuote{}, ic, reason)
		return
	}
	th := quoted[hl:]
	ep := p.quotedEndpoint(header.IPv4ProtocolNumber, pkt.NICID, q.SourceAddress(), q.DestinationAddress(), th)
	switch {
	case ep == nil:
		// No connection or listener: gVisor's deliverError drops it
		// without a word.
		p.dropICMPv4(quoted, quoteOf(th), ic, event.DropICMPNoConnection)
	case !gvisors:
		handQuote(ep, watchedError{origin: tcpip.SockExtErrorOriginICMP, typ: uint8(ic.Type()), code: uint8(ic.Code()), errno: errno}, th)
	}
}

// dropICMPv4 counts and reports, for reason r, an ICMP error ic that no
// connection will see, by what it quotes: an IPv4 header, quoted, of a
// segment from one of our addresses (or not, r says) that quoted q.
func (p *Protocol) dropICMPv4(quoted []byte, q icmpQuote, ic header.ICMPv4, r event.DropReason) {
	var c event.ConnID
	if len(quoted) >= header.IPv4MinimumSize {
		ip := header.IPv4(quoted)
		c = connIDOf(stack.TransportEndpointID{LocalPort: q.srcPort, LocalAddress: ip.SourceAddress(), RemotePort: q.dstPort, RemoteAddress: ip.DestinationAddress()})
	}
	var err error = icmpv4Errno(ic.Type())
	if ic.Type() == header.ICMPv4DstUnreachable {
		err = fmt.Errorf("destination unreachable, code %d", ic.Code())
	}
	p.dropICMP(c, q, err, r)
}
