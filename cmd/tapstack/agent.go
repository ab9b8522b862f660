package main

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// runAgent is "tapstack agent": a fresh stack on an existing TAP device,
// driven over JSON lines on stdin/stdout by an external test harness, as
// the harness's contract (protocol version 1) specifies; docs/agent.md
// restates it. The protocol itself is in agent_serve.go; this file holds
// the flags and the wiring.
//
// Extensions beyond the contract, for tests that cannot wait a minute:
// -time-wait sets the engine's TIME-WAIT (2*MSL, default 60 s, Linux's
// value); -trace prints every engine event on stderr; and the flags of
// every command on a TAP device (addLinkFlags), listed in docs/agent.md.
func runAgent(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "agent", "")
	lf := addLinkFlags(fs, "attach to")
	timeWait := timeWaitFlag(fs, "time-wait", 60*time.Second, "TIME-WAIT (2*MSL) of the stack (extension; Linux uses 60s)")
	trace := fs.Bool("trace", false, "print every engine event on stderr (extension)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := checkTimeWait(fs, "time-wait", *timeWait); err != nil {
		return err
	}
	if err := lf.check(fs); err != nil {
		return err
	}
	// Keepalive is off: the engine never probes unless a connection asks
	// for it (RFC 9293 3.8.4), and the agent never asks.
	opts := tcp.Options{TimeWait: *timeWait}
	if *trace {
		opts.Observer = traceLine(&syncWriter{w: e.stderr}, "agent")
	}
	// A harness that has closed its end of stdout makes a reply's write
	// fail with EPIPE, and Go's runtime ends a program that writes to a
	// broken pipe on fd 1 with SIGPIPE unless the signal is ignored
	// (os/signal, "SIGPIPE"): the agent died with its connections open.
	// Ignored, the write returns EPIPE, the replies are counted as not
	// written (replyQueue), and the end of stdin closes everything.
	signal.Ignore(syscall.SIGPIPE)
	s, closeStack, err := lf.open(e, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "tapstack agent: %s on %s, serving protocol version %d on stdin/stdout\n", *lf.addr, *lf.tap, agentVersion)
	// The contract's 2 s from the end of stdin to the exit: serveAgent
	// and the stack's shutdown share one deadline, agentExit from there;
	// the device and the capture close in the rest.
	stopBy, err := serveAgent(ctx, s, e.stdin, e.stdout, e.stderr)
	closeStack(time.Until(stopBy))
	return err
}
