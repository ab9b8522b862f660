package main

import (
	"context"
	"io"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runDial is "tapstack dial": connect over a TAP device, send stdin, shut
// down the sending side (FIN) and copy the reply to stdout until the
// peer's FIN.
func runDial(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "dial", "host:port")
	lf := addLinkFlags(fs, "dial through")
	timeout := fs.Duration("timeout", 10*time.Second, "give up connecting after this long")
	trace := fs.Bool("trace", false, "print every engine event on stderr")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := lf.check(fs); err != nil {
		return err
	}
	var opts tcp.Options
	if *trace {
		opts.Observer = traceLine(&syncWriter{w: e.stderr}, "dial")
	}
	s, closeStack, err := lf.open(e, opts)
	if err != nil {
		return err
	}
	defer closeStack(shutdownGrace)

	d := conn.Dialer{Stack: s, Timeout: *timeout}
	c, err := d.DialTCP(ctx, "tcp", fs.Arg(0))
	if err != nil {
		return err
	}
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })()

	sent := make(chan error, 1)
	// Progress of a large input, on a terminal stderr when the reply
	// does not go to the terminal too.
	var prog *progress
	if !isTerminal(e.stdout) {
		prog = newProgress(e.stderr, "dial "+fs.Arg(0), 0)
		prog.retransmits(s.TCP().Stats().Retransmits.Load)
		defer prog.end()
	}
	go func() {
		_, err := io.Copy(c, prog.reader(e.stdin))
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- err
	}()
	if _, err := io.Copy(e.stdout, c); err != nil {
		return err
	}
	select {
	case err := <-sent:
		if err != nil {
			return err
		}
	default:
		// stdin is still open, but the peer has finished: so do we.
	}
	c.Close()
	// Give the ACK of the peer's FIN time to leave before the stack goes:
	// it has once we are in TIME-WAIT (or CLOSED).
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return waitState(wctx, c, event.TimeWait, event.Closed)
}
