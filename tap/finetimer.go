package tap

import (
	"os"
	"sync"
	"time"
)

// fineTimer calls fn, on a goroutine of its own, once the time set by
// Reset has come: within tens of microseconds even in a process that has
// nothing else to do.
//
// A time.AfterFunc of 50 µs fires about 1.1 ms late in a process that is
// otherwise idle: with nothing to run, Go's scheduler sleeps in
// epoll_wait, whose timeout is in whole milliseconds, and rounds a wait
// under one up to one (golang/go#53824). The fault middleware is a wire,
// and a wire of 50 µs each way was then one of 1.1 ms: a request and its
// answer took 2.3 ms, not 0.1 ms. On Linux a fineTimer is a timerfd in
// Go's netpoller, whose expiry ends the scheduler's epoll_wait at once
// and wakes the goroutine that reads it, as event loops such as netty's
// do for the same reason. A busy scheduler looks at the netpoller
// whenever one of its Ps runs out of work.
//
// BenchmarkTimerLateness measures both: a 50 µs wait ends 36–41 µs late
// on a fineTimer, 1,041–1,049 µs late on a time.AfterFunc. Each wait is
// a kernel timer of its own, though, and on a virtual machine arming it
// and its interrupt leave the guest: timerfd_settime of 20 µs waits, in
// a loop, took 14.7 µs each here, against 0.9 µs for waits that never
// came. In a busy process the timerfd is later than a Go timer would be
// (a mean of about 50 µs against 12 µs, 8 dialers over a 50 Mbit/s
// wire), since the scheduler reads the netpoller only when it runs out
// of work. A Go timer armed beside it did not pay: with both ringing,
// one dialer's connections/s over that wire fell from 5,500 to 3,300;
// with the timerfd set 50 µs later and disarmed by the Go timer, every
// wait of an idle process carried the 50 µs. A fineTimer keeps its
// timerfd and goroutine until Close; without a timerfd it is a
// time.AfterFunc.
type fineTimer struct {
	fn func()

	mu     sync.Mutex
	armed  bool      // Reset armed it, and fn's call for that has not begun
	due    time.Time // when that call is due
	closed bool

	file *os.File // the timerfd; nil: none, coarse is the clock
	fd   int      // file's descriptor, used under mu while !closed

	coarse *time.Timer // without a timerfd
}

// newFineTimer returns a timer, not armed, that calls fn when it fires.
func newFineTimer(fn func()) *fineTimer {
	t := &fineTimer{fn: fn}
	t.openFine()
	return t
}

// Reset arms t to call fn once d has passed. t must not be armed: fn has
// been called, or Stop returned true, since t was last armed.
func (t *fineTimer) Reset(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.armed, t.due = true, time.Now().Add(d)
	if t.file != nil && t.setFine(d) {
		return
	}
	if t.coarse == nil {
		t.coarse = time.AfterFunc(d, t.fire)
		return
	}
	t.coarse.Reset(d)
}

// Stop keeps the armed call of fn from happening, and reports whether it
// did: false means t was not armed, or fn's call has begun. A timerfd
// left armed expires for nothing.
func (t *fineTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

// Close stops t for good and lets its goroutine end; a call of fn under
// way finishes.
func (t *fineTimer) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed, t.armed = true, false
	if t.file != nil {
		t.file.Close() // its goroutine's read fails, and it returns
	}
	if t.coarse != nil {
		t.coarse.Stop()
	}
}

// fire calls fn if t is armed and due. An expiry of an earlier arming,
// read after Stop and Reset, is not due, and does nothing.
func (t *fineTimer) fire() {
	t.mu.Lock()
	if !t.armed || time.Now().Before(t.due) {
		t.mu.Unlock()
		return
	}
	t.armed = false
	t.mu.Unlock()
	t.fn()
}
