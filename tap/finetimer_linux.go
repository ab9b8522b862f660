//go:build linux

package tap

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// openFine makes t's timerfd, non-blocking so that os.File puts it in
// Go's netpoller, and starts the goroutine that reads its expiries. If
// the kernel refuses one (out of descriptors), t is coarse.
func (t *fineTimer) openFine() {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return
	}
	t.fd, t.file = fd, os.NewFile(uintptr(fd), "timerfd")
	go t.readExpiries(t.file)
}

// setFine sets the timerfd to expire in d; t.mu is held and t not
// closed. False: the kernel refused, and t is coarse from now on.
func (t *fineTimer) setFine(d time.Duration) bool {
	// A zero value disarms a timerfd: the earliest expiry is 1 ns.
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(int64(d), 1))}
	if err := unix.TimerfdSettime(t.fd, 0, &spec, nil); err != nil {
		t.file.Close()
		t.file = nil
		return false
	}
	return true
}

// readExpiries waits for each expiry of the timerfd f in the netpoller
// (a read before one fails with EAGAIN, and os.File waits for
// readiness), until f is closed.
func (t *fineTimer) readExpiries(f *os.File) {
	var count [8]byte // expiries since the last read
	for {
		if _, err := f.Read(count[:]); err != nil {
			return
		}
		t.fire()
	}
}
