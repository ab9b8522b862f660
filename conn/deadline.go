package conn

import (
	"context"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// deadline is one of a connection's deadlines: a channel that is closed
// when the deadline passes. Setting it re-times the channel that calls
// already blocked are waiting on, so a new deadline applies to them too.
//
// Time is the stack's clock (stack.Options.Clock), the one the engine's
// own timers run on: on the real clock (the default) a deadline behaves
// as package net's; on a fake clock it passes when the clock is advanced
// past it, so tests of deadlines need no sleeps.
type deadline struct {
	clock    tcpip.Clock
	mu       sync.Mutex
	timer    tcpip.Timer
	expire   chan struct{} // made when first needed: most connections never wait nor set a deadline
	released bool          // the connection closed: no timer any more
}

func newDeadline(clock tcpip.Clock) *deadline {
	return &deadline{clock: clock}
}

func closedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// set moves the deadline to t, read on the stack's clock; the zero time
// removes it. After release it does nothing.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.released {
		return
	}
	// A timer stopped before it fired is kept to be reset: its function
	// closes the channel that is still d.expire (only set replaces the
	// channel, and it drops the timer then), so a deadline moved again
	// and again, as net/http moves it before each read, costs no
	// allocation.
	var stopped tcpip.Timer
	if d.timer != nil {
		if d.timer.Stop() {
			stopped = d.timer
		} else {
			// The timer fired: wait until its function has closed
			// the channel. The function takes no lock, so this cannot
			// wait on us (a fake clock runs it on the goroutine that
			// advances the clock).
			<-d.expire
		}
	}
	d.timer = nil
	expired := d.expire != nil && closedChan(d.expire)
	if t.IsZero() {
		if expired {
			d.expire = nil // wait makes an open one
		}
		return
	}
	if dur := t.Sub(d.clock.Now()); dur > 0 {
		if stopped != nil {
			stopped.Reset(dur)
			d.timer = stopped
			return
		}
		if expired || d.expire == nil {
			d.expire = make(chan struct{})
		}
		ch := d.expire
		d.timer = d.clock.AfterFunc(dur, func() { close(ch) })
		return
	}
	if d.expire == nil {
		d.expire = make(chan struct{})
	}
	if !expired {
		close(d.expire)
	}
}

// release stops the timer for good, so that a closed connection leaves
// nothing behind in the clock's timers: on the real clock a pending timer
// sits in the runtime's timer heap and keeps its function and channel
// alive until it fires, however far away. Calls that might still wait on
// the channel have been woken by the close itself.
func (d *deadline) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.released = true
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// wait returns the channel closed when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.expire == nil {
		d.expire = make(chan struct{})
	}
	return d.expire
}

// passed reports whether the deadline has passed, without making the
// channel of a deadline nobody waits on.
func (d *deadline) passed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expire != nil && closedChan(d.expire)
}

// after returns a channel closed once d has passed on clock, and a
// function that stops the timer. d <= 0 means never: the channel is nil.
// Dial timeouts and lingering closes use it, so that they run on the
// stack's clock as the engine's own timers do.
func after(clock tcpip.Clock, d time.Duration) (<-chan struct{}, func()) {
	if d <= 0 {
		return nil, func() {}
	}
	ch := make(chan struct{})
	t := clock.AfterFunc(d, func() { close(ch) })
	return ch, func() { t.Stop() }
}

// timeoutError is a deadline or context timeout: a net.Error whose
// Timeout is true, that errors.Is matches with os.ErrDeadlineExceeded and,
// for a dial, context.DeadlineExceeded.
type timeoutError struct{ ctx bool }

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (e timeoutError) Is(target error) bool {
	return target == os.ErrDeadlineExceeded || (e.ctx && target == context.DeadlineExceeded)
}
