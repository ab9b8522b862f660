package tcp

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// stamp is the clock as one piece of the engine's work reads it: a
// segment arriving, a timer firing, a user's call, one output run.
//
// Reading the clock is not free on a virtual machine (49 ns here, with
// kvm's TSC), and one segment's processing asked for it a dozen times:
// the ACK's RTT sample, the timestamp echoed, the timers rearmed, the age
// of the new state, the receive buffer's tuning. As Linux stamps a
// segment's processing once (tp->tcp_mstamp, tcp_mstamp_refresh) and
// every rule of that segment reads the stamp, the entry points of the
// engine open a stamp (beginStamp) under e.mu; the first reading inside
// fills it and the others get the same instant; endStamp closes it
// before e.mu is released. A reading with no stamp open goes to the
// clock, so a path that opens none is slower, never wrong.
//
// A stamp is one word, as it lives in every connection: 0 while none is
// open, 1 once one is open and the clock not yet read, and 2 + the
// reading (as a duration from the clock's zero) after that.
type stamp int64

const (
	stampClosed stamp = iota
	stampUnread
	stampBase // stampBase + d: read at d
)

// beginStamp opens a stamp, unless one is open already (an output run
// inside a segment's processing shares the segment's), and says whether
// it did, for endStamp. The caller holds e.mu.
func (e *Endpoint) beginStamp() bool {
	if e.stamp != stampClosed {
		return false
	}
	e.stamp = stampUnread
	return true
}

// endStamp closes the stamp beginStamp opened, if it opened one.
func (e *Endpoint) endStamp(opened bool) {
	if opened {
		e.stamp = stampClosed
	}
}

// now is the engine's clock for the work in hand. The caller holds e.mu.
func (e *Endpoint) now() tcpip.MonotonicTime {
	if e.stamp >= stampBase {
		return tcpip.MonotonicTime{}.Add(time.Duration(e.stamp - stampBase))
	}
	t := e.proto.clock.NowMonotonic()
	if d := t.Sub(tcpip.MonotonicTime{}); e.stamp == stampUnread && d >= 0 {
		e.stamp = stampBase + stamp(d)
	}
	return t
}

// sinceStart is now as a duration from the clock's zero: the
// congestion control's clock, and the TSval clock's.
func (e *Endpoint) sinceStart() time.Duration {
	return e.now().Sub(tcpip.MonotonicTime{})
}
