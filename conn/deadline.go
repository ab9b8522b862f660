package conn

import (
	"context"
	"os"
	"sync"
	"time"
)

// deadline is one of a connection's deadlines: a channel that is closed
// when the deadline passes. Setting it re-times the channel that calls
// already blocked are waiting on, so a new deadline applies to them too.
type deadline struct {
	mu       sync.Mutex
	timer    *time.Timer
	expire   chan struct{}
	released bool // the connection closed: no timer any more
}

func newDeadline() *deadline { return &deadline{expire: make(chan struct{})} }

func closedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// set moves the deadline to t; the zero time removes it. After release it
// does nothing.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.released {
		return
	}
	if d.timer != nil && !d.timer.Stop() {
		<-d.expire // the timer fired: wait until it has closed the channel
	}
	d.timer = nil
	expired := closedChan(d.expire)
	if t.IsZero() {
		if expired {
			d.expire = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if expired {
			d.expire = make(chan struct{})
		}
		ch := d.expire
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !expired {
		close(d.expire)
	}
}

// release stops the timer for good, so that a closed connection leaves
// nothing behind in the runtime's timer heap: a pending timer keeps its
// function and channel alive until it fires, however far away. Calls that
// might still wait on the channel have been woken by the close itself.
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
	return d.expire
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
