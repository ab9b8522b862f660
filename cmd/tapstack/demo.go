package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// runDemo is "tapstack demo": two tapstack stacks on an in-memory Ethernet
// cable, an echo server on one and a client on the other, and the
// lifecycle trace of both connections, one line per engine event, until
// both are CLOSED.
func runDemo(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "demo", "")
	timeWait := fs.Duration("timewait", time.Second, "TIME-WAIT (2*MSL) of both stacks; Linux uses 60s")
	text := fs.String("text", "hello, tapstack\n", "what the client sends")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	out := &syncWriter{w: e.stdout}
	start := time.Now()
	fmt.Fprintf(out, "server 192.0.2.1:7 and client 192.0.2.2 on an in-memory cable (tap.Pipe); TIME-WAIT %v (Linux: 60s)\n", *timeWait)

	a, b := tap.Pipe()
	server := stack.New(stack.Options{TCP: tcp.Options{TimeWait: *timeWait, Observer: tracer(out, start, "server")}})
	defer server.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		return err
	}
	client := stack.New(stack.Options{TCP: tcp.Options{TimeWait: *timeWait, Observer: tracer(out, start, "client")}})
	defer client.Close()
	if _, err := client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		return err
	}

	ln, err := conn.Listen(server, "tcp", "192.0.2.1:7")
	if err != nil {
		return err
	}
	defer ln.Close()
	accepted := make(chan *conn.Conn, 1)
	go func() {
		defer close(accepted)
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		io.Copy(c, c) // echo until the client's FIN
		c.Close()
		accepted <- c
	}()

	c, err := conn.DialContext(ctx, client, "tcp", "192.0.2.1:7")
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { c.Close() })()
	if _, err := io.WriteString(c, *text); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	reply, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		return err
	}
	if string(reply) != *text {
		return fmt.Errorf("echo mismatch: sent %q, read %q", *text, reply)
	}
	fmt.Fprintf(out, "echo matched: %q\n", reply)

	var sc *conn.Conn
	select {
	case sc = <-accepted:
	case <-ctx.Done():
		return ctx.Err()
	}
	if sc == nil {
		return errors.New("the server accepted no connection")
	}
	for _, c := range []*conn.Conn{c, sc} {
		if err := waitState(ctx, c, tcp.Closed); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "both connections CLOSED")
	printStats(out, "server", server.TCP().Stats())
	printStats(out, "client", client.TCP().Stats())
	return nil
}
