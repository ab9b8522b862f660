// Command echo is the classic echo service (RFC 862) on tapstack.
//
// By default it needs no privileges: it builds two tapstack stacks joined by
// an in-memory Ethernet cable (tap.Pipe), a server on 192.0.2.1 and a client
// on 192.0.2.2, prints every TCP state transition as it happens, sends a few
// lines, checks the echo, and waits until both connections reach CLOSED:
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
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "echo:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	tapName := fs.String("tap", "", "serve on this Linux TAP device instead of the in-memory demo")
	addr := fs.String("addr", "", "address/prefix of the stack on the TAP device, e.g. 192.0.2.2/24")
	port := fs.Int("port", 7, "port to serve echo on (TAP mode)")
	timeWait := fs.Duration("timewait", time.Second, "TIME-WAIT (2*MSL) of the in-memory demo; Linux uses 60s")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	out := &syncWriter{w: w} // observers of two stacks write concurrently
	if *tapName != "" {
		return serveTAP(ctx, out, *tapName, *addr, *port)
	}
	if *addr != "" {
		return errors.New("-addr needs -tap")
	}
	return inMemory(ctx, out, *timeWait)
}

// inMemory runs server and client in this process over tap.Pipe.
func inMemory(ctx context.Context, out io.Writer, timeWait time.Duration) error {
	fmt.Fprintf(out, "two stacks on an in-memory cable; TIME-WAIT is %v (Linux: 60s)\n", timeWait)
	a, b := tap.Pipe()
	server := newStack(out, "server", timeWait)
	defer server.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		return err
	}
	client := newStack(out, "client", timeWait)
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
		c, err := ln.AcceptTCP()
		if err != nil {
			close(accepted)
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
	const lines = "hello\nfrom the\nclient\n"
	if _, err := io.WriteString(c, lines); err != nil {
		return err
	}
	c.CloseWrite() // our FIN: the server's io.Copy sees EOF after the lines
	reply, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "client sent %q, read back %q\n", lines, reply)
	if string(reply) != lines {
		return errors.New("echo mismatch")
	}
	fmt.Fprintln(out, "echo matched; waiting for both sides to reach CLOSED")

	var sc *conn.Conn
	select {
	case sc = <-accepted:
	case <-ctx.Done():
		return ctx.Err()
	}
	if sc == nil {
		return errors.New("server did not accept")
	}
	for _, c := range []*conn.Conn{c, sc} {
		if err := waitClosed(ctx, c); err != nil {
			return err
		}
	}
	printStats(out, "server", server.TCP().Stats())
	printStats(out, "client", client.TCP().Stats())
	return nil
}

// serveTAP serves echo on a TAP device until ctx is cancelled.
func serveTAP(ctx context.Context, out io.Writer, name, addr string, port int) error {
	prefix, err := netip.ParsePrefix(addr)
	if err != nil {
		return fmt.Errorf("-addr: want address/prefix such as 192.0.2.2/24: %v", err)
	}
	dev, err := tap.Open(name)
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w\n(run as root, or create the device for your user: ip tuntap add dev %s mode tap user $USER)", err, name)
	}
	if err != nil {
		return err
	}
	defer dev.Close()
	s := newStack(out, "server", 0)
	defer s.Close()
	if _, err := s.AddNIC(dev.LinkEndpoint(), prefix); err != nil {
		return err
	}
	ln, err := conn.Listen(s, "tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { ln.Close() })()
	fmt.Fprintf(out, "echo on %v port %d via %s; try: nc %v %d (Ctrl-C stops)\n", prefix.Addr(), port, dev.Name(), prefix.Addr(), port)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			io.Copy(c, c)
			c.Close()
		}()
	}
}

// newStack makes a tapstack stack whose observer prints every state
// transition, prefixed with the stack's name. timeWait 0 means the default.
func newStack(out io.Writer, name string, timeWait time.Duration) *stack.Stack {
	return stack.New(stack.Options{TCP: tcp.Options{
		TimeWait: timeWait,
		Observer: func(ev event.Event) {
			if ev.Kind == event.KindState {
				fmt.Fprintf(out, "%s %s\n", name, ev)
			}
		},
	}})
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

func printStats(out io.Writer, name string, st *tcp.Stats) {
	fmt.Fprintf(out, "%s counters: segments in %d, out %d, retransmits %d, resets in %d, out %d\n",
		name, st.SegmentsIn.Load(), st.SegmentsOut.Load(), st.Retransmits.Load(),
		st.ResetsReceived.Load(), st.ResetsSent.Load())
	for r := range st.Drops {
		if n := st.Drops[r].Load(); n > 0 {
			fmt.Fprintf(out, "%s   dropped (%v): %d\n", name, event.DropReason(r), n)
		}
	}
}

// syncWriter serializes writes from concurrent observers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
