package tcp

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// The receive buffer's auto-tuning, Linux's dynamic right-sizing
// (tcp_rcv_space_adjust, tcp_rcv_rtt_measure). The receive buffer bounds
// the window (advertise, send.go), and the window bounds what the peer
// sends per round trip: a buffer fixed at ReceiveBufferSize holds a fast
// peer to ReceiveBufferSize per round trip whatever the path and the
// reader could take. So, once per round trip, the bytes the user read in
// it are measured, and when they exceed the last measure the buffer
// grows to twice them plus sixteen segments, more while they keep
// growing (the peer may still be in slow start), up to
// ReceiveBufferMax. It never shrinks, as Linux's; a user who sets the
// buffer (SetBuffers) turns the tuning off.
//
// The round trip is the receiver's own estimate, as Linux's without
// timestamps: the least time a window's worth of data has taken to
// arrive (measureRcvRTT). A pure receiver has no RTT samples of its own
// data.
//
// The Linux kernel sending to tapstack over a TAP: with the window fixed
// at 1 MiB the kernel was rwnd-limited 90-98% of its busy time with
// cwnd ~750 segments; gVisor's TCP, which tunes its buffer the same way
// (ModerateReceiveBuffer), advertised 1.2-2 MB.

// rcvSpace is the auto-tuning's state.
type rcvSpace struct {
	// The fields are in this order to pack them in 48 bytes, 8 fewer
	// than grouped by use: Endpoint is at its size class's limit
	// (TestEndpointSizeClass).
	rtt       time.Duration       // the least time a window's worth took to arrive; 0 until measured
	measuring bool                // a measurement of rtt runs: it began at rttAt and ends at RCV.NXT rttSeq
	started   bool                // a round runs: it began at `at`, when the user had read `read` bytes
	rttSeq    seqnum.Value        // (measuring)
	rttAt     tcpip.MonotonicTime // (measuring)
	read      uint64              // (started)
	at        tcpip.MonotonicTime // (started)
	space     int                 // bytes read in the last round that grew
}

// rcvSpaceSegments is the round's initial measure in segments: Linux's
// TCP_INIT_CWND (tcp_init_buffer_space), what a peer sends in its first
// round trip.
const rcvSpaceSegments = 10

// measureRcvRTT runs when in-order text arrived at now: once RCV.NXT
// passes the window's right edge as it stood when the measurement began,
// a window's worth has arrived, and the time that took is a round trip
// or more (Linux tcp_rcv_rtt_measure with win_dep: the least wins). The
// caller holds e.mu.
func (e *Endpoint) measureRcvRTT(now tcpip.MonotonicTime) {
	s := &e.rcvSpace
	if s.measuring {
		if e.rcvNxt.LessThan(s.rttSeq) {
			return
		}
		if d := max(now.Sub(s.rttAt), time.Microsecond); s.rtt == 0 || d < s.rtt {
			s.rtt = d
		}
	}
	s.measuring, s.rttSeq, s.rttAt = true, e.rcvNxt.Add(seqnum.Size(e.rcvWnd)), now
}

// growReceiveBuffer runs after the user read: at most once per round
// trip it measures what the user read since the last time and grows the
// buffer for it (Linux tcp_rcv_space_adjust). A buffer that cannot grow
// (set by the user, or at its maximum) costs a read no clock reading.
// The caller holds e.mu.
func (e *Endpoint) growReceiveBuffer() {
	s := &e.rcvSpace
	if e.rcvBufLocked || e.rcvBufLimit >= e.proto.opts.ReceiveBufferMax {
		return
	}
	now := e.now()
	read := e.bytesReceived - uint64(e.rcvBuf.Size())
	if !s.started {
		s.started, s.read, s.at, s.space = true, read, now, min(e.rcvBufLimit, rcvSpaceSegments*e.rcvMSS)
		return
	}
	if s.rtt == 0 || now.Sub(s.at) < s.rtt {
		return
	}
	if copied := int(read - s.read); copied > s.space {
		// Twice what was read, for a round trip of slack (a loss, the
		// reader late), and sixteen segments; while the reading grows,
		// room for it to grow as much again in the round trip our ACKs
		// take to reach the peer.
		want := 2*copied + 16*e.rcvMSS
		want += 2 * want * (copied - s.space) / s.space
		if grown := min(want, e.proto.opts.ReceiveBufferMax, 0xffff<<e.rcvWndShift); grown > e.rcvBufLimit {
			e.rcvBufLimit = grown
			e.proto.stats.RecvBufferGrown.Add(1)
		}
		s.space = copied
	}
	s.read, s.at = read, now
}
