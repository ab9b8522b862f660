package tcp

import (
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ICMPv6 errors that gVisor does not pass on: Destination Unreachable
// codes, Time Exceeded and Parameter Problem.
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
// the message as gVisor's handleICMP and handleControl would (icmperr.Read:
// addressed to us, its checksum, a quote of a TCP segment from one of our
// addresses, a Fragment header skipped if of the first fragment, the 8
// bytes of TCP header), finds the connection by the quoted 4-tuple and
// hands it the error with the data at the quoted TCP header, where
// icmpArrives checks the quote as for any ICMP error (RFC 5927).
//
// gVisor's handleICMP only counts a Time Exceeded (RFC 4443 3.3) or a
// Parameter Problem (RFC 4443 3.4) too, where Linux's tcp_v6_err takes
// both, as tcp_v4_err takes their IPv4 counterparts (icmp4.go):
// icmpv6_err_convert makes a time exceeded EHOSTUNREACH, not fatal (a
// routing loop, or a path longer than our hop limit), and a parameter
// problem EPROTO, fatal (something on the path cannot parse what we
// send). Either ends a dial in SYN-SENT or SYN-RECEIVED and is a soft
// error in a synchronized state (RFC 1122 4.2.3.9); tcp_req_err ends a
// listener's half-open entry on the fatal one alone (halfOpenAbort,
// icmp.go). The watcher takes both, whatever the code.
//
// One owner per type and code, as for IPv4 (icmp4.go): gVisor's
// HandleError path owns no route, port unreachable and Packet Too Big,
// the watcher the other Destination Unreachable codes, Time Exceeded and
// Parameter Problem, and counts a message of gVisor's that gVisor
// discards before TCP sees it under the name of the check it fails
// (watchedArrives, icmp.go).

// icmpv6Errno is what Linux's icmpv6_err_convert makes of an ICMPv6 error
// of typ and code that gVisor drops (0 for one gVisor hands on, or one
// of another type).
func icmpv6Errno(typ header.ICMPv6Type, code header.ICMPv6Code) syscall.Errno {
	switch typ {
	case header.ICMPv6TimeExceeded:
		return syscall.EHOSTUNREACH
	case header.ICMPv6ParamProblem:
		return syscall.EPROTO
	case header.ICMPv6DstUnreachable:
		switch code {
		case header.ICMPv6Prohibited, header.ICMPv6Policy, header.ICMPv6RejectRoute:
			return syscall.EACCES
		case header.ICMPv6BeyondScope, header.ICMPv6AddressUnreachable:
			return syscall.EHOSTUNREACH
		}
	}
	return 0
}

// gvisorsICMPv6 reports whether gVisor's IPv6 hands TCP an ICMPv6 error
// of typ and code (its handleICMP): Packet Too Big, and no route and port
// unreachable of the Destination Unreachable codes.
func gvisorsICMPv6(typ header.ICMPv6Type, code header.ICMPv6Code) bool {
	switch typ {
	case header.ICMPv6PacketTooBig:
		return true
	case header.ICMPv6DstUnreachable:
		return code == header.ICMPv6NetworkUnreachable || code == header.ICMPv6PortUnreachable
	}
	return false
}
