package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's two ends: what is written to the
// terminal end can be read from the controlling end.
func openPTY(t *testing.T) (ctrl, term *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// readPTY reads what is written to the terminal end of a pseudo-terminal
// from its controlling end ctrl; the function it returns waits (up to
// five seconds) for the terminal end to be closed and returns it all.
func readPTY(ctrl *os.File) func() string {
	var mu sync.Mutex
	var seen bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := ctrl.Read(buf)
			mu.Lock()
			seen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return func() string {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		mu.Lock()
		defer mu.Unlock()
		return seen.String()
	}
}

// On a terminal, bench shows its progress on one line rewritten in place
// (bytes, share, rate, retransmits) and leaves the line clean.
func TestProgressOnTerminal(t *testing.T) {
	ctrl, term := openPTY(t)
	seen := readPTY(ctrl)
	var out bytes.Buffer
	// 6 MiB at 60 Mbit/s: about 0.8 s a run, past progressAfter.
	code := run(context.Background(), env{stdin: strings.NewReader(""), stdout: &out, stderr: term},
		[]string{"bench", "--size", "6291456", "--rate", "60mbit", "--seed", "3", "--link", "pipe", "--rounds", "1",
			"--conns", "20", "--echo", "20", "--heap-conns", ""})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	term.Close()
	got := seen()
	for _, want := range []string{"\rtapstack over tap.Pipe, bulk, dialer → listener: ", " of 6.0 MiB (", " MB/s, ", " retransmits\x1b[K", "\r\x1b[K", "\rgVisor over tap.Pipe, bulk, listener → dialer: "} {
		if !strings.Contains(got, want) {
			t.Errorf("the terminal shows no %q: %q", want, got)
		}
	}
	if strings.Contains(out.String(), "\r") {
		t.Errorf("progress went to stdout: %q", out.String())
	}
}

// Not on a terminal, progress says nothing: logs and pipes stay clean.
func TestProgressQuietOffTerminal(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut},
		[]string{"bench", "--size", "6291456", "--rate", "60mbit", "--seed", "3", "--link", "pipe", "--rounds", "1",
			"--conns", "20", "--echo", "20", "--heap-conns", ""})
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	if strings.ContainsAny(errOut.String()+out.String(), "\r\x1b") {
		t.Errorf("progress off a terminal: stderr %q", errOut.String())
	}
	if p := newProgress(io.Discard, "x", 1); p != nil {
		t.Error("a progress on io.Discard")
	}
}
