// Package icmperr reads the ICMP and ICMPv6 errors that a raw endpoint
// sees, for the watchers that take the errors gVisor's IPv4 and IPv6
// hand no transport: the TCP engine's (stack/tcp, icmp4.go and icmp6.go)
// and the one for connected UDP sockets (stack, udp_errors.go).
//
// gVisor's demuxer hands raw endpoints a copy of every valid IPv4 (whole
// or reassembled) and IPv6 packet before the network layer routes it or
// checks its ICMP checksum. Read does for a watcher what gVisor's
// handleICMP, handleControl and the NIC's DeliverTransportError do before
// a transport sees an error, in their order, and names the quotes they
// discard without a count, so that a watcher can count them.
package icmperr

import (
	"github.com/tapstack/tapstack/event"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Error is an ICMP or ICMPv6 error message to us and what it quotes of a
// packet we sent.
type Error struct {
	Net        tcpip.NetworkProtocolNumber
	Type, Code uint8
	// Protocol is the quoted packet's transport protocol; Src and Dst
	// its addresses, Src one of ours unless Drop says otherwise.
	Protocol tcpip.TransportProtocolNumber
	Src, Dst tcpip.Address
	// Transport is the quote from the transport header on, at least
	// the 8 bytes with the ports (RFC 792; RFC 4443 2.4 (c)) unless
	// Drop says otherwise.
	Transport []byte
	// Drop is why gVisor's IP discards the quote before any transport
	// sees it: DropICMPShortQuote, DropICMPForeignQuote,
	// DropICMPFragmentQuote, or DropICMPBadQuote for a quoted IPv4
	// header length under 20 (which gVisor does not check); DropNone
	// if it would hand the error on.
	Drop event.DropReason
}

// Origin is the family of the message, as gVisor's transport errors say it.
func (e Error) Origin() tcpip.SockErrOrigin {
	if e.Net == header.IPv6ProtocolNumber {
		return tcpip.SockExtErrorOriginICMP6
	}
	return tcpip.SockExtErrorOriginICMP
}

// Read reads pkt, an ICMP or ICMPv6 packet as a raw endpoint gets it:
// its IP header in pkt.NetworkHeader, its ICMP header (8 bytes, as
// gVisor's parse.ICMPv4 and parse.ICMPv6 take it) in pkt.TransportHeader,
// the quote in the data. It reports false for what is no error to us: a
// message of another type (or an IPv4 Destination Unreachable code above
// 15, which gVisor's handleICMP and Linux's icmp_unreach ignore), one not
// addressed to us, one with a bad checksum (RFC 1122 3.2.2, RFC 4443 2.4
// (b)), one too short to say what protocol it quotes.
func Read(s *stack.Stack, pkt *stack.PacketBuffer) (Error, bool) {
	ic := pkt.TransportHeader().Slice()
	if len(ic) < header.ICMPv4MinimumSize { // ICMPv6's is the same 8
		return Error{}, false
	}
	e := Error{Net: pkt.NetworkProtocolNumber, Type: ic[0], Code: ic[1]}
	quoted := pkt.Data().AsRange().ToSlice()
	switch e.Net {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(pkt.NetworkHeader().Slice())
		if len(ip) < header.IPv4MinimumSize || !errorType4(e.Type, e.Code) ||
			// The raw copy comes before gVisor's routing: a message
			// not to one of our unicast addresses is not ours to
			// take (Linux's icmp_rcv drops an error sent to a
			// broadcast or multicast address).
			s.CheckLocalAddress(0, e.Net, ip.DestinationAddress()) == 0 ||
			checksum.Checksum(ic[:header.ICMPv4MinimumSize], checksum.Checksum(quoted, 0)) != 0xffff ||
			len(quoted) < 10 { // the quoted protocol, in the 10th byte
			return Error{}, false
		}
		e.quote4(s, quoted)
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(pkt.NetworkHeader().Slice())
		if len(ip) < header.IPv6MinimumSize || !errorType6(e.Type) || !toUs6(s, pkt.NICID, ip.DestinationAddress()) ||
			header.ICMPv6(ic).Checksum() != header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
				Header: ic[:header.ICMPv6MinimumSize], Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
				PayloadCsum: checksum.Checksum(quoted, 0), PayloadLen: len(quoted),
			}) ||
			len(quoted) < 7 { // the quoted next header, in the 7th byte
			return Error{}, false
		}
		e.quote6(s, pkt.NICID, quoted)
	default:
		return Error{}, false
	}
	return e, true
}

// errorType4 reports whether an ICMPv4 message of typ and code is an
// error gVisor's IPv4 counts and Linux's icmp_rcv hands a transport.
func errorType4(typ, code uint8) bool {
	switch header.ICMPv4Type(typ) {
	case header.ICMPv4DstUnreachable:
		return header.ICMPv4Code(code) <= header.ICMPv4PrecedenceCutInEffect
	case header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
		return true
	}
	return false
}

// errorType6 reports whether an ICMPv6 message of typ is an error (RFC
// 4443 2.1: types 1 to 4).
func errorType6(typ uint8) bool {
	switch header.ICMPv6Type(typ) {
	case header.ICMPv6DstUnreachable, header.ICMPv6PacketTooBig, header.ICMPv6TimeExceeded, header.ICMPv6ParamProblem:
		return true
	}
	return false
}

// toUs6 reports whether an IPv6 packet to dst that arrived on nic is
// delivered here, as gVisor's handleValidatedPacket delivers it (and
// Linux's ip6_rcv_finish): to an address the NIC holds, or a multicast
// group it has joined. The raw copy comes before that check.
func toUs6(s *stack.Stack, nic tcpip.NICID, dst tcpip.Address) bool {
	if header.IsV6MulticastAddress(dst) {
		in, err := s.IsInGroup(nic, dst)
		return err == nil && in
	}
	return s.CheckLocalAddress(nic, header.IPv6ProtocolNumber, dst) != 0
}

// quote4 reads a quoted IPv4 packet, at least 10 bytes, as gVisor's
// handleControl and DeliverTransportError do: the quoted IP header
// whole; its source one of our addresses; its header length and the 8
// bytes after it (RFC 792); not a later fragment, whose 8 bytes are no
// transport header.
func (e *Error) quote4(s *stack.Stack, quoted []byte) {
	q := header.IPv4(quoted)
	e.Protocol = tcpip.TransportProtocolNumber(q.Protocol())
	hl := int(q.HeaderLength())
	if hl < header.IPv4MinimumSize {
		// Linux's icmp_unreach drops a quote whose header length is
		// under 20: it has no transport header at its end.
		e.Drop = event.DropICMPBadQuote
		return
	}
	switch {
	case len(quoted) < header.IPv4MinimumSize:
		e.Drop = event.DropICMPShortQuote
		return
	case s.CheckLocalAddress(0, header.IPv4ProtocolNumber, q.SourceAddress()) == 0:
		e.Drop = event.DropICMPForeignQuote
	case len(quoted) < hl:
		e.Drop = event.DropICMPShortQuote
	case q.FragmentOffset() != 0:
		e.Drop = event.DropICMPFragmentQuote
	}
	e.Src, e.Dst = q.SourceAddress(), q.DestinationAddress()
	e.transport(quoted, hl)
}

// quote6 reads a quoted IPv6 packet, at least 7 bytes, that came in an
// error on nic, as gVisor's handleControl and DeliverTransportError do:
// the fixed IPv6 header whole; its source an address nic holds; a
// Fragment header after it skipped, if the quote holds it and it is of
// the first fragment; then the 8 bytes of the transport header (RFC 4443
// 2.4 (c) has the sender quote as much as fits in 1280 bytes). Other
// extension headers are not skipped, as gVisor does not: the protocol is
// then theirs, which no transport claims (we send none).
func (e *Error) quote6(s *stack.Stack, nic tcpip.NICID, quoted []byte) {
	q := header.IPv6(quoted)
	e.Protocol = tcpip.TransportProtocolNumber(q.NextHeader())
	if len(quoted) < header.IPv6MinimumSize {
		e.Drop = event.DropICMPShortQuote
		return
	}
	e.Src, e.Dst = q.SourceAddress(), q.DestinationAddress()
	if s.CheckLocalAddress(nic, header.IPv6ProtocolNumber, e.Src) == 0 {
		e.Drop = event.DropICMPForeignQuote
	}
	hl := header.IPv6MinimumSize
	if e.Protocol == header.IPv6FragmentHeader {
		if len(quoted) < hl+header.IPv6FragmentHeaderSize {
			// The protocol it quotes is not in the quote: nothing
			// any transport could claim.
			return
		}
		f := header.IPv6Fragment(quoted[hl:])
		e.Protocol = tcpip.TransportProtocolNumber(f.NextHeader())
		if e.Drop == event.DropNone && f.FragmentOffset() != 0 {
			e.Drop = event.DropICMPFragmentQuote
		}
		hl += header.IPv6FragmentHeaderSize
	}
	e.transport(quoted, hl)
}

// transport sets the quote from the transport header on, at hl, if the
// 8 bytes with the ports are there.
func (e *Error) transport(quoted []byte, hl int) {
	if len(quoted) < hl+8 {
		if e.Drop == event.DropNone {
			e.Drop = event.DropICMPShortQuote
		}
		return
	}
	e.Transport = quoted[hl:]
}
