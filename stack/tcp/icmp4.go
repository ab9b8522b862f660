package tcp

import (
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip/header"
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
//
// One decision about a destination unreachable is the watcher's all the
// same: whether it reverts an RTO backoff (RFC 6069; icmpld.go), which
// Linux's tcp_v4_err takes for codes 0 and 1 alone and gVisor cannot
// tell from codes 6 and 9 to 15, which it folds into the same kinds. The
// watcher, which sees the code, reverts for those two (disruptionArrives);
// gVisor's path still acts on the error, and reverts nothing.

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
