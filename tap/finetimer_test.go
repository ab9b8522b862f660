package tap

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fineTimerKinds runs a test on a timer with a timerfd (where the system
// has them) and on a coarse one.
func fineTimerKinds(t *testing.T, test func(t *testing.T, newTimer func(fn func()) *fineTimer)) {
	t.Run("timerfd", func(t *testing.T) {
		test(t, func(fn func()) *fineTimer {
			ft := newFineTimer(fn)
			if ft.file == nil && runtime.GOOS == "linux" {
				t.Fatal("no timerfd on Linux")
			}
			return ft
		})
	})
	t.Run("coarse", func(t *testing.T) {
		test(t, func(fn func()) *fineTimer { return &fineTimer{fn: fn} })
	})
}

// TestFineTimerFiresOnce: an armed timer calls fn once, and can be armed
// again after that call.
func TestFineTimerFiresOnce(t *testing.T) {
	fineTimerKinds(t, func(t *testing.T, newTimer func(func()) *fineTimer) {
		calls := make(chan struct{}, 4)
		ft := newTimer(func() { calls <- struct{}{} })
		defer ft.Close()
		for round := range 3 {
			ft.Reset(100 * time.Microsecond)
			select {
			case <-calls:
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: fn not called", round)
			}
		}
		time.Sleep(20 * time.Millisecond)
		if n := len(calls); n != 0 {
			t.Errorf("%d calls more than armed", n)
		}
		if ft.Stop() {
			t.Error("Stop after the call = true, want false: nothing was armed")
		}
	})
}

// TestFineTimerStop: Stop before the time keeps fn from being called and
// says so.
func TestFineTimerStop(t *testing.T) {
	fineTimerKinds(t, func(t *testing.T, newTimer func(func()) *fineTimer) {
		calls := make(chan struct{}, 1)
		ft := newTimer(func() { calls <- struct{}{} })
		defer ft.Close()
		ft.Reset(20 * time.Millisecond)
		if !ft.Stop() {
			t.Fatal("Stop of an armed timer = false")
		}
		time.Sleep(60 * time.Millisecond)
		if len(calls) != 0 {
			t.Error("fn called after Stop")
		}
	})
}

// TestFineTimerStaleExpiry: an expiry of an earlier arming, read after the
// timer was stopped and armed again for later, does not call fn early;
// fn comes at the new time. The test holds the timer's lock while the
// first arming and its expiry, so the goroutine reads the expiry and
// waits, as it would if Stop and Reset ran between its read and its
// check.
func TestFineTimerStaleExpiry(t *testing.T) {
	calls := make(chan time.Time, 2)
	ft := newFineTimer(func() { calls <- time.Now() })
	defer ft.Close()
	if ft.file == nil {
		t.Skip("no timerfd here")
	}
	ft.mu.Lock() // Reset(1µs) with the lock kept: fire cannot run before Unlock
	ft.armed, ft.due = true, time.Now().Add(time.Microsecond)
	if !ft.setFine(time.Microsecond) {
		t.Fatal("timerfd_settime failed")
	}
	time.Sleep(20 * time.Millisecond) // the expiry is read; fire waits for the lock
	ft.armed = false                  // Stop
	later := 80 * time.Millisecond
	ft.armed, ft.due = true, time.Now().Add(later) // Reset(later)
	if !ft.setFine(later) {
		t.Fatal("timerfd_settime failed")
	}
	rearmed := time.Now()
	ft.mu.Unlock()
	select {
	case at := <-calls:
		if early := at.Sub(rearmed); early < later {
			t.Fatalf("fn called %v after the new arming, want >= %v: the stale expiry fired it", early, later)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fn not called at the new time")
	}
}

// TestFineTimerClose: Close stops an armed timer, ends its goroutine and
// gives its descriptor back; a Reset after it arms nothing.
func TestFineTimerClose(t *testing.T) {
	fineTimerKinds(t, func(t *testing.T, newTimer func(func()) *fineTimer) {
		before := runtime.NumGoroutine()
		calls := make(chan struct{}, 1)
		ft := newTimer(func() { calls <- struct{}{} })
		fd := ft.fd
		ft.Reset(20 * time.Millisecond)
		ft.Close()
		ft.Reset(time.Microsecond)
		time.Sleep(60 * time.Millisecond)
		if len(calls) != 0 {
			t.Error("fn called after Close")
		}
		if ft.file != nil {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
				t.Errorf("the timerfd %d after Close: %v, want EBADF", fd, err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			t.Errorf("%d goroutines after Close, want <= %d", n, before)
		}
	})
}

// TestFineTimerOnTimeWhenIdle: in a process with nothing else to do, a
// short wait ends at its time, not when the scheduler's millisecond sleep
// does. The bound, 900 µs late in the median of 21 waits, is above what
// the timerfd needs (tens of µs) and below the 1 ms a time.AfterFunc
// takes here (BenchmarkTimerLateness): the test fails if the timer falls
// back to Go's clock.
func TestFineTimerOnTimeWhenIdle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no timerfd here")
	}
	fired := make(chan time.Time, 1)
	ft := newFineTimer(func() { fired <- time.Now() })
	defer ft.Close()
	const d = 50 * time.Microsecond
	late := make([]time.Duration, 21)
	for i := range late {
		start := time.Now()
		ft.Reset(d)
		late[i] = (<-fired).Sub(start) - d
	}
	slices.Sort(late)
	if med := late[len(late)/2]; med > 900*time.Microsecond {
		t.Errorf("a %v wait ends %v late in the median (%v)", d, med, late)
	}
}

// BenchmarkTimerLateness reports how late a 50 µs wait ends in a process
// with nothing else to do, for a fineTimer and for time.AfterFunc: the
// lateness a delayed frame of the fault middleware (tap.Fault's Delay,
// Jitter, Rate) would carry on top of its delay.
func BenchmarkTimerLateness(b *testing.B) {
	const d = 50 * time.Microsecond
	measure := func(b *testing.B, fired <-chan time.Time, arm func()) {
		var late time.Duration
		for b.Loop() {
			start := time.Now()
			arm()
			late += (<-fired).Sub(start) - d
		}
		b.ReportMetric(float64(late.Microseconds())/float64(b.N), "µs-late/op")
	}
	b.Run("fineTimer", func(b *testing.B) {
		fired := make(chan time.Time, 1)
		ft := newFineTimer(func() { fired <- time.Now() })
		defer ft.Close()
		measure(b, fired, func() { ft.Reset(d) })
	})
	b.Run("AfterFunc", func(b *testing.B) {
		fired := make(chan time.Time, 1)
		notify := func() { fired <- time.Now() }
		measure(b, fired, func() { time.AfterFunc(d, notify) })
	})
}
