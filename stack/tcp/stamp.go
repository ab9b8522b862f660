package tcp

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// A stamp is the clock as one piece of the engine's work reads it: a
// segment arriving, a timer firing, a user's call, one output run.
//
// Reading the clock is not free on a virtual machine (49 ns here, with
// kvm's TSC), and one segment's processing asked for it five times:
// the ACK's RTT sample, the timestamp echoed, the timers rearmed, the age
// of the new state, the receive buffer's tuning. As Linux stamps a
// segment's processing once (tp->tcp_mstamp, tcp_mstamp_refresh) and
// every rule of that segment reads the stamp, the entry points of the
// engine open a stamp (beginStamp) under e.mu; the first reading inside
// fills it and the others get the same instant; endStamp closes it
// before e.mu is released. A reading with no stamp open goes to the
// clock, so a path that opens none is slower, never wrong.
//
// The stamp lives in every connection, as two fields placed where
// Endpoint had padding (stampAt, stampState), so that a connection stays
// in its allocation size class.
type stampState uint8

const (
	stampClosed stampState = iota // no stamp open: now reads the clock
	stampUnread                   // open, the clock not read yet
	stampRead                     // open, stampAt holds the reading
)

// beginStamp opens a stamp, unless one is open already (an output run
// inside a segment's processing shares the segment's), and says whether
// it did, for endStamp. The caller holds e.mu.
func (e *Endpoint) beginStamp() bool {
	if e.stampState != stampClosed {
		return false
	}
	e.stampState = stampUnread
	return true
}

// endStamp closes the stamp beginStamp opened, if it opened one.
func (e *Endpoint) endStamp(opened bool) {
	if opened {
		e.stampState = stampClosed
	}
}

// now is the engine's clock for the work in hand. The caller holds e.mu.
func (e *Endpoint) now() tcpip.MonotonicTime {
	switch e.stampState {
	case stampRead:
		return e.stampAt
	case stampUnread:
		e.stampAt, e.stampState = e.proto.clock.NowMonotonic(), stampRead
		return e.stampAt
	}
	return e.proto.clock.NowMonotonic()
}

// sinceStart is now as a duration from the clock's zero, the congestion
// control's clock.
func (e *Endpoint) sinceStart() time.Duration {
	return e.now().Sub(tcpip.MonotonicTime{})
}
