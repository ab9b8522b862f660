package tcp

import (
	"sync/atomic"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// timerKind names a connection's timers. A connection keeps one deadline
// per kind and arms a single clock timer for the earliest of them, so a
// connection costs one tcpip.Timer however many of its timers run.
type timerKind uint8

// Timers due at the same instant run in this order: RACK's reordering
// timer and the tail loss probe come before the RTO, which is the last
// resort (RFC 8985 7.2: a probe due with the RTO goes instead of it, and
// rearms it).
const (
	timerReorder    timerKind = iota // RACK's reordering timer (RFC 8985 6.2 step 6)
	timerProbe                       // the tail loss probe's PTO (RFC 8985 7.2)
	timerRetransmit                  // RFC 6298: also SYN and SYN-ACK retransmission
	timerPersist                     // RFC 9293 3.8.6.1 zero-window probes; the tries of what the link refused (refused.go)
	timerDelayedAck                  // RFC 9293 3.8.6.3
	timerTimeWait                    // 2*MSL in TIME-WAIT; also the orphan FIN-WAIT-2 timeout
	timerKeepalive                   // RFC 9293 3.8.4, off unless the user asks
	timerPacing                      // the next packet's departure time, while paced (pacing.go)
	numTimers
)

var timerNames = [...]string{
	timerRetransmit: "retransmit",
	timerPersist:    "persist",
	timerDelayedAck: "delayed ack",
	timerTimeWait:   "time-wait",
	timerKeepalive:  "keepalive",
	timerReorder:    "RACK reordering",
	timerProbe:      "tail loss probe",
	timerPacing:     "pacing",
}

func (k timerKind) String() string { return timerNames[k] }

// timerSet is the named timers of one connection over one clock timer.
// The clock and the function to run are the connection's (e.proto.clock,
// e.onTimer), so they are not kept here.
type timerSet struct {
	t        *clockTimer // nil while no timer is armed
	deadline [numTimers]tcpip.MonotonicTime
	armed    [numTimers]bool
	at       tcpip.MonotonicTime // when t fires; zero if stopped
}

// clockTimer is a clock timer that serves one connection after another:
// a connection takes one from its Protocol's pool when it arms its first
// timer and gives it back when none is left armed. An idle connection so
// holds no timer (a million of them would hold 170 MB), and one that arms
// and disarms all the time, the delayed ACK every second segment or the
// retransmission timer once per request and response, allocates none.
type clockTimer struct {
	ep atomic.Pointer[Endpoint] // the connection it serves; nil in the pool
	t  tcpip.Timer
}

// fire runs the timers of the connection the clock timer serves. A firing
// already on its way when the timer changed hands reaches the new
// connection, or none: onTimer finds nothing due and rearms.
func (c *clockTimer) fire() {
	if e := c.ep.Load(); e != nil {
		e.onTimer()
	}
}

// set arms timer k to fire after d. The caller holds the connection's lock.
func (e *Endpoint) setTimer(k timerKind, d time.Duration) {
	ts := &e.timers
	ts.deadline[k] = e.now().Add(d)
	ts.armed[k] = true
	e.reschedule()
}

func (e *Endpoint) stopTimer(k timerKind) {
	if e.timers.armed[k] {
		e.timers.armed[k] = false
		e.reschedule()
	}
}

func (e *Endpoint) timerArmed(k timerKind) bool { return e.timers.armed[k] }

func (e *Endpoint) stopAllTimers() {
	e.timers.armed = [numTimers]bool{}
	e.reschedule()
}

// reschedule points the clock timer at the earliest armed deadline. The
// clock timer is only moved earlier, never later: when a deadline moves
// later (the retransmission timer restarted by every ACK, RFC 6298 5.3)
// the timer fires as armed, finds nothing due and sets itself for the
// next deadline. That keeps a Stop and a Reset of the clock's timer off
// the path of every ACK.
func (e *Endpoint) reschedule() {
	ts := &e.timers
	var next tcpip.MonotonicTime
	found := false
	for k := range ts.deadline {
		if ts.armed[k] && (!found || ts.deadline[k].Before(next)) {
			next, found = ts.deadline[k], true
		}
	}
	if !found {
		// Nothing armed: the clock timer goes back to the pool. A
		// firing already on its way finds nothing due.
		if c := ts.t; c != nil {
			c.ep.Store(nil)
			c.t.Stop()
			e.proto.timers.Put(c)
			ts.t, ts.at = nil, tcpip.MonotonicTime{}
		}
		return
	}
	if ts.at != (tcpip.MonotonicTime{}) && !next.Before(ts.at) {
		return // it fires first, and rearms for next
	}
	ts.at = next
	d := max(next.Sub(e.now()), 0)
	if ts.t != nil {
		ts.t.t.Stop()
		ts.t.t.Reset(d)
		return
	}
	if c, ok := e.proto.timers.Get().(*clockTimer); ok {
		c.ep.Store(e)
		c.t.Reset(d)
		ts.t = c
		return
	}
	c := &clockTimer{}
	c.ep.Store(e)
	c.t = e.proto.clock.AfterFunc(d, c.fire)
	ts.t = c
}

// onTimer runs when the clock timer fires: every timer whose deadline has
// passed is handled, in the order of timerKind.
func (e *Endpoint) onTimer() {
	e.mu.Lock()
	opened := e.beginStamp()
	ts := &e.timers
	ts.at = tcpip.MonotonicTime{}
	now := e.now()
	for k := timerKind(0); k < numTimers; k++ {
		if ts.armed[k] && !now.Before(ts.deadline[k]) {
			ts.armed[k] = false
			e.timerExpired(k)
		}
	}
	e.reschedule()
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
}

// timerExpired dispatches one expired timer.
func (e *Endpoint) timerExpired(k timerKind) {
	switch k {
	case timerRetransmit:
		e.retransmitTimeout()
	case timerPersist:
		e.persistTimeout()
	case timerDelayedAck:
		if e.unacked > 0 && e.state.Synchronized() {
			e.delayedAckFired() // delack.go
		}
	case timerKeepalive:
		e.keepaliveTimeout()
	case timerPacing:
		e.output() // pacing.go: the next packet's time has come
	case timerReorder:
		e.reorderTimeout()
	case timerProbe:
		e.probeTimeout()
	case timerTimeWait:
		switch e.state {
		case event.TimeWait:
			// 3.10.8: when the time-wait timeout expires, delete the TCB.
			e.transition(event.Closed, timerCause(k))
		case event.FinWait2:
			// Linux's tcp_fin_timeout for an orphan: nobody can read the
			// peer's data any more and the peer never sent its FIN.
			e.sendActiveReset()
			e.transition(event.Closed, timerCause(k))
		}
	}
}
