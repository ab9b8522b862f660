package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// Helpers shared by the subcommands.

// tapStack opens the TAP device name and returns a stack on it with the
// address/prefix addr. close releases both.
func tapStack(name, addr string, opts tcp.Options) (s *stack.Stack, close func(), err error) {
	return tapStackCapture(name, addr, opts, "")
}

// tapStackCapture is tapStack with an annotated pcapng capture of the
// device's frames written to pcapPath, if it is set. close flushes it.
func tapStackCapture(name, addr string, opts tcp.Options, pcapPath string) (s *stack.Stack, close func(), err error) {
	if name == "" {
		return nil, nil, errors.New("-tap is required (the name of a Linux TAP device, e.g. tap0)")
	}
	prefix, err := netip.ParsePrefix(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("-addr: want the stack's address/prefix such as 192.0.2.2/24: %v", err)
	}
	dev, err := tap.Open(name)
	if errors.Is(err, os.ErrPermission) {
		return nil, nil, fmt.Errorf("%w\n(run as root, or create the device for your user first: ip tuntap add dev %s mode tap user $USER)", err, name)
	}
	if err != nil {
		return nil, nil, err
	}
	link, obs, finish, err := capture(pcapPath, dev.LinkEndpoint(), opts.Observer, "tapstack on TAP device "+name)
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	opts.Observer = obs
	s = stack.New(stack.Options{TCP: opts})
	if _, err := s.AddNIC(link, prefix); err != nil {
		s.Close()
		dev.Close()
		finish()
		return nil, nil, err
	}
	return s, func() { s.Close(); dev.Close(); finish() }, nil
}

// tracer returns an observer that prints every event on one line, with
// the time since start and the name of the stack it came from. It writes
// to a syncWriter, since two stacks' observers may run concurrently.
func tracer(w *syncWriter, start time.Time, side string, only ...tcp.EventKind) tcp.Observer {
	return func(ev tcp.Event) {
		if len(only) > 0 && !hasKind(only, ev.Kind) {
			return
		}
		ms := float64(ev.Time.Sub(start)) / float64(time.Millisecond)
		fmt.Fprintf(w, "%9.3fms %-6s %s\n", ms, side, ev)
	}
}

func hasKind(kinds []tcp.EventKind, k tcp.EventKind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// waitState waits until c is in one of the states; CLOSED means the
// engine has deleted the TCB.
func waitState(ctx context.Context, c *conn.Conn, states ...tcp.State) error {
	for {
		changed := c.Endpoint().Changed()
		st := c.State()
		for _, s := range states {
			if st == s {
				return nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%v-%v still in %v: %w", c.LocalAddr(), c.RemoteAddr(), st, ctx.Err())
		}
	}
}

// printStats prints a stack's engine counters; drop reasons only when
// non-zero.
func printStats(w io.Writer, name string, st *tcp.Stats) {
	fmt.Fprintf(w, "%s: segments in %d, out %d; retransmits %d; resets in %d, out %d; timeouts %d\n",
		name, st.SegmentsIn.Load(), st.SegmentsOut.Load(), st.Retransmits.Load(),
		st.ResetsReceived.Load(), st.ResetsSent.Load(), st.Timeouts.Load())
	for r := range st.Drops {
		if n := st.Drops[r].Load(); n > 0 {
			fmt.Fprintf(w, "%s: dropped %d (%v)\n", name, n, tcp.DropReason(r))
		}
	}
}

// syncWriter serializes writes from concurrent goroutines and observers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
