// Command echo is the classic echo service (RFC 862) on tapstack.
//
// By default it needs no privileges: it builds two tapstack stacks joined by
// an in-memory Ethernet cable (stack.NewPair), a server on 192.0.2.1 and a
// client on 192.0.2.2, prints every TCP state transition as it happens,
// sends a few lines, checks the echo, and waits until both connections
// reach CLOSED:
//
//	go run ./examples/echo
//
// With -tap it serves echo on a Linux TAP device instead, until Ctrl-C. This
// needs CAP_NET_ADMIN (or a TAP device owned by the user):
//
//	go run ./examples/echo -tap tap0 -addr 192.0.2.2/24
//	nc 192.0.2.2 7     # from the host
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		log.Fatalf("echo: %v", err)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	tapName := fs.String("tap", "", "serve on this Linux TAP device instead of the in-memory demo")
	var addr netip.Prefix
	fs.TextVar(&addr, "addr", netip.Prefix{}, "the stack's address/prefix on the TAP device, e.g. 192.0.2.2/24")
	port := fs.Int("port", 7, "port to serve echo on (TAP mode)")
	timeWait := fs.Duration("timewait", time.Second, "TIME-WAIT (2*MSL) of the in-memory demo; Linux uses 60s")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// A Logger serializes its output: the observers of two stacks print
	// at once.
	out := log.New(w, "", 0)
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *tapName != "":
		s, err := stack.OpenTAP(*tapName, addr, stack.Options{TCP: printStates(out, "server", 0)})
		if err != nil {
			return err
		}
		defer s.Close()
		return serve(ctx, out, s, net.JoinHostPort(addr.Addr().String(), fmt.Sprint(*port)))
	case addr.IsValid():
		return errors.New("-addr needs -tap")
	}
	return inMemory(ctx, out, *timeWait)
}

// inMemory runs server and client in this process over an in-memory cable.
func inMemory(ctx context.Context, out *log.Logger, timeWait time.Duration) error {
	out.Printf("two stacks on an in-memory cable; TIME-WAIT is %v (Linux: 60s)", timeWait)
	p, err := stack.NewPair(stack.PairOptions{
		Server: stack.Options{TCP: printStates(out, "server", timeWait)},
		Client: stack.Options{TCP: printStates(out, "client", timeWait)},
	})
	if err != nil {
		return err
	}
	defer p.Close()

	ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:7")
	if err != nil {
		return err
	}
	defer ln.Close()
	accepted := make(chan *conn.Conn, 1)
	go func() {
		defer close(accepted)
		if c, err := ln.AcceptTCP(); err == nil {
			io.Copy(c, c) // echo until the client's FIN
			c.Close()
			accepted <- c
		}
	}()

	nc, err := conn.DialContext(ctx, p.Client, "tcp", "192.0.2.1:7")
	if err != nil {
		return err
	}
	c := nc.(*conn.Conn) // a TCP dial gives a *conn.Conn, as net.Dial a *net.TCPConn
	defer context.AfterFunc(ctx, func() { c.Close() })()
	const lines = "hello\nfrom the\nclient\n"
	io.WriteString(c, lines)
	c.CloseWrite() // our FIN: the server's io.Copy sees EOF after the lines
	reply, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		return err
	}
	out.Printf("client sent %q, read back %q", lines, reply)
	if string(reply) != lines {
		return errors.New("echo mismatch")
	}
	out.Print("echo matched; waiting for both sides to reach CLOSED")

	sc, ok := <-accepted
	if !ok {
		return errors.New("server did not accept")
	}
	for _, c := range []*conn.Conn{c, sc} {
		if err := waitClosed(ctx, c); err != nil {
			return err
		}
	}
	printStats(out, "server", p.Server.TCP().Stats())
	printStats(out, "client", p.Client.TCP().Stats())
	return nil
}

// serve serves echo on s at addr until ctx is cancelled.
func serve(ctx context.Context, out *log.Logger, s *stack.Stack, addr string) error {
	ln, err := conn.Listen(s, "tcp", addr)
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { ln.Close() })()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	out.Printf("echo on %s; try: nc %s %s (Ctrl-C stops)", ln.Addr(), host, port)
	for {
		c, err := ln.Accept()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		go func() {
			io.Copy(c, c)
			c.Close()
		}()
	}
}

// printStates returns engine options whose observer prints every state
// transition, prefixed with the stack's name. timeWait 0 means the
// default.
func printStates(out *log.Logger, name string, timeWait time.Duration) tcp.Options {
	return tcp.Options{
		TimeWait: timeWait,
		Observer: func(ev event.Event) {
			if ev.Kind == event.KindState {
				out.Printf("%s %s", name, ev)
			}
		},
	}
}

// waitClosed waits until the engine has deleted c's TCB.
func waitClosed(ctx context.Context, c *conn.Conn) error {
	for {
		changed := c.Endpoint().Changed()
		if c.State() == event.Closed {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%v still in %v: %w", c.LocalAddr(), c.State(), ctx.Err())
		}
	}
}

func printStats(out *log.Logger, name string, st *tcp.Stats) {
	out.Printf("%s counters: segments in %d, out %d, retransmits %d, resets in %d, out %d",
		name, st.SegmentsIn.Load(), st.SegmentsOut.Load(), st.Retransmits.Load(),
		st.ResetsReceived.Load(), st.ResetsSent.Load())
	for r := range st.Drops {
		if n := st.Drops[r].Load(); n > 0 {
			out.Printf("%s   dropped (%v): %d", name, event.DropReason(r), n)
		}
	}
}
