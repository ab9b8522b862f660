package conn_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// Addresses on the test cable: the peer (server) and tapstack under test.
var (
	peerPrefix = netip.MustParsePrefix("192.0.2.1/24")
	tsPrefix   = netip.MustParsePrefix("192.0.2.2/24")
	peerAddr   = peerPrefix.Addr()
)

// newTS makes a tapstack stack on link with the given prefixes.
func newTS(t testing.TB, link gstack.LinkEndpoint, opts tcp.Options, prefixes ...netip.Prefix) *stack.Stack {
	t.Helper()
	if opts.TimeWait == 0 {
		opts.TimeWait = 100 * time.Millisecond
	}
	s := stack.New(stack.Options{TCP: opts})
	if _, err := s.AddNIC(link, prefixes...); err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// tsPair makes two tapstack stacks on a cable: client (192.0.2.2) with
// copts and server (192.0.2.1) with sopts.
func tsPair(t testing.TB, copts, sopts tcp.Options) (client, server *stack.Stack) {
	t.Helper()
	a, b := tap.Pipe()
	ga, gb := a, b
	client = newTS(t, ga, copts, tsPrefix, netip.MustParsePrefix("2001:db8::2/64"))
	server = newTS(t, gb, sopts, peerPrefix, netip.MustParsePrefix("2001:db8::1/64"))
	return client, server
}

// gvPair makes a tapstack stack (192.0.2.2) and a gVisor-TCP peer
// (192.0.2.1) on a cable.
func gvPair(t testing.TB, opts tcp.Options) (*stack.Stack, *gvpeer.Peer) {
	t.Helper()
	a, b := tap.Pipe()
	ga, gb := a, b
	ts := newTS(t, ga, opts, tsPrefix)
	p, err := gvpeer.New(gb, peerPrefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return ts, p
}

// connect returns a connection pair between two tapstack stacks: c dialed
// from client, s accepted on server.
func connect(t testing.TB, client, server *stack.Stack) (c, s *conn.Conn) {
	t.Helper()
	ln, err := conn.Listen(server, "tcp", "192.0.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *conn.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- res{c, err}
	}()
	c, err = conn.Dial(client, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		c.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() {
		c.Close()
		r.c.Close()
	})
	return c, r.c
}

// wantOpError checks that err is a *net.OpError for op on "tcp" whose
// chain holds target (errors.Is), and returns it.
func wantOpError(t testing.TB, err error, op string, target error) *net.OpError {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %v", op, target)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: error %v (%T) is not a *net.OpError", op, err, err)
	}
	// Net is the network the caller named, as in package net: "tcp",
	// or "tcp4"/"tcp6" if the caller asked for one.
	if oe.Op != op || (oe.Net != "tcp" && oe.Net != "tcp4" && oe.Net != "tcp6") {
		t.Errorf("%s: OpError{Op: %q, Net: %q}, want Op %q, Net \"tcp\" (%v)", op, oe.Op, oe.Net, op, err)
	}
	if !errors.Is(err, target) {
		t.Errorf("%s: errors.Is(%v, %v) = false", op, err, target)
	}
	var errno syscall.Errno
	if want, ok := target.(syscall.Errno); ok {
		if !errors.As(err, &errno) || errno != want {
			t.Errorf("%s: errors.As errno = %v, want %v", op, errno, want)
		}
		// Package net puts the errno in an *os.SyscallError.
		var se *os.SyscallError
		if !errors.As(err, &se) {
			t.Errorf("%s: no *os.SyscallError in %v, as package net has", op, err)
		}
	}
	return oe
}

// wantTimeout checks a deadline error as package net makes it.
func wantTimeout(t testing.TB, err error, op string) {
	t.Helper()
	wantOpError(t, err, op, os.ErrDeadlineExceeded)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s: %v: not a net.Error with Timeout() true", op, err)
	}
}

// waitGoroutines waits up to d for the goroutine count to fall to at most
// base, and fails with a dump if it does not.
func waitGoroutines(t testing.TB, base int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			var ours []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "tapstack/conn") {
					ours = append(ours, g)
				}
			}
			t.Fatalf("%d goroutines after Close, want <= %d; those in conn:\n%s", n, base, strings.Join(ours, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// within fails the test if fn does not return within d, and returns how
// long it took.
func within(t testing.TB, d time.Duration, what string, fn func()) time.Duration {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return 0
	}
}

// tcpFilter is link middleware that drops outbound TCP segments whose
// flags, masked by mask, equal flags, while it is on. ARP and everything
// else pass, so a dropped SYN is a SYN lost on the wire, not an
// unreachable neighbour.
type tcpFilter struct {
	nested.Endpoint
	mask, flags header.TCPFlags

	mu      sync.Mutex
	on      bool
	dropped int
}

func newTCPFilter(inner gstack.LinkEndpoint, mask, flags header.TCPFlags) *tcpFilter {
	f := &tcpFilter{mask: mask, flags: flags, on: true}
	f.Endpoint.Init(inner, f)
	return f
}

func (f *tcpFilter) set(on bool) {
	f.mu.Lock()
	f.on = on
	f.mu.Unlock()
}

func (f *tcpFilter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

func (f *tcpFilter) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	var out gstack.PacketBufferList
	f.mu.Lock()
	for _, pkt := range pkts.AsSlice() {
		if f.on && pkt.TransportProtocolNumber == header.TCPProtocolNumber {
			if th := header.TCP(pkt.TransportHeader().Slice()); len(th) >= header.TCPMinimumSize && th.Flags()&f.mask == f.flags {
				f.dropped++
				continue
			}
		}
		out.PushBack(pkt)
	}
	f.mu.Unlock()
	if out.Len() > 0 {
		if _, err := f.Endpoint.WritePackets(out); err != nil {
			return 0, err
		}
	}
	return pkts.Len(), nil
}

// tsPairLinks is tsPair with the client's and server's links passed
// through wrap functions (nil: unchanged), for middleware.
func tsPairLinks(t testing.TB, copts, sopts tcp.Options, wc, ws func(gstack.LinkEndpoint) gstack.LinkEndpoint) (client, server *stack.Stack) {
	t.Helper()
	a, b := tap.Pipe()
	ga, gb := a, b
	var la, lb gstack.LinkEndpoint = ga, gb
	if wc != nil {
		la = wc(la)
	}
	if ws != nil {
		lb = ws(lb)
	}
	client = newTS(t, la, copts, tsPrefix, netip.MustParsePrefix("2001:db8::2/64"))
	server = newTS(t, lb, sopts, peerPrefix, netip.MustParsePrefix("2001:db8::1/64"))
	return client, server
}
