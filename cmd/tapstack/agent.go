package main

import (
	"context"
	"fmt"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// runAgent is "tapstack agent": a fresh stack on an existing TAP device,
// driven over JSON lines on stdin/stdout by an external test harness, as
// AGENT.md, the agent contract (protocol version 1), specifies. The protocol
// itself is in agent_serve.go; this file holds the flags and the wiring.
//
// Extensions beyond the contract, for tests that cannot wait a minute:
// -time-wait sets the engine's TIME-WAIT (2*MSL, default 60 s, Linux's
// value); -trace prints every engine event on stderr.
func runAgent(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "agent", "")
	tapName := fs.String("tap", "", "existing Linux TAP device to attach to, e.g. tap0")
	addr := fs.String("addr", "", "the stack's address/prefix on the device, e.g. 192.0.2.2/24")
	timeWait := fs.Duration("time-wait", 60*time.Second, "TIME-WAIT (2*MSL) of the stack (extension; Linux uses 60s)")
	trace := fs.Bool("trace", false, "print every engine event on stderr (extension)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *timeWait <= 0 {
		return fmt.Errorf("-time-wait %v: want a positive duration", *timeWait)
	}
	// Keepalive is off: the engine never probes unless a connection asks
	// for it (RFC 9293 3.8.4), and the agent never asks.
	opts := tcp.Options{TimeWait: *timeWait}
	if *trace {
		opts.Observer = tracer(&syncWriter{w: e.stderr}, time.Now(), "agent")
	}
	s, closeStack, err := tapStack(*tapName, *addr, opts)
	if err != nil {
		return err
	}
	defer closeStack()
	fmt.Fprintf(e.stderr, "tapstack agent: %s on %s, serving protocol version %d on stdin/stdout\n", *addr, *tapName, agentVersion)
	return serveAgent(ctx, s, e.stdin, e.stdout, e.stderr)
}
