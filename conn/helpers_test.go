package conn_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// How conn's tests keep time.
//
// Every stack a test makes runs on a faketime.ManualClock, and conn reads
// its deadlines, dial timeouts and linger from the stack's clock: nothing
// times out, retransmits or expires unless the test advances the clock.
//
// Tests whose peers are tapstack stacks run inside a synctest bubble
// (fake). synctest.Wait returns once every goroutine of the test (callers
// blocked in Read, the cable's pumps, the stacks' link goroutines) is
// blocked on something only the test can change, so "the call has not
// returned" is a fact, not a guess after a sleep, and a call that can
// never return fails the test at once as a deadlock. The helpers below
// advance the clock only at such points: the same test makes the same
// exchange of segments every run.
//
// gVisor's TCP parks its goroutines in ways a bubble does not see through,
// so tests with a gVisor peer run outside one: the peer keeps the real
// clock (its timers are its own business), the stack under test keeps a
// fake one that the test never needs to advance.

// fake runs f in a synctest bubble with a fresh fake clock.
func fake(t *testing.T, f func(t *testing.T, clock *faketime.ManualClock)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) { f(t, faketime.NewManualClock()) })
}

// Addresses on the test cable: the peer (server) and tapstack under test.
var (
	peerPrefix = netip.MustParsePrefix("192.0.2.1/24")
	tsPrefix   = netip.MustParsePrefix("192.0.2.2/24")
	peerAddr   = peerPrefix.Addr()
)

// newTS makes a tapstack stack on link with the given prefixes, on clock
// (nil: the real clock).
func newTS(t testing.TB, link gstack.LinkEndpoint, clock tcpip.Clock, opts tcp.Options, prefixes ...netip.Prefix) *stack.Stack {
	t.Helper()
	s := stack.New(stack.Options{Clock: clock, TCP: opts})
	if _, err := s.AddNIC(link, prefixes...); err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// tsPair makes two tapstack stacks on one clock, joined by a cable:
// client (192.0.2.2, 2001:db8::2) with copts and server (192.0.2.1,
// 2001:db8::1) with sopts.
func tsPair(t testing.TB, clock tcpip.Clock, copts, sopts tcp.Options) (client, server *stack.Stack) {
	t.Helper()
	return tsPairLinks(t, clock, copts, sopts, nil, nil)
}

// tsPairLinks is tsPair with the client's and server's ends of the cable
// passed through wrap functions (nil: unchanged), for middleware.
func tsPairLinks(t testing.TB, clock tcpip.Clock, copts, sopts tcp.Options, wc, ws func(gstack.LinkEndpoint) gstack.LinkEndpoint) (client, server *stack.Stack) {
	t.Helper()
	p, err := stack.NewPair(stack.PairOptions{
		Client:         stack.Options{Clock: clock, TCP: copts},
		Server:         stack.Options{Clock: clock, TCP: sopts},
		ClientPrefixes: []netip.Prefix{tsPrefix, netip.MustParsePrefix("2001:db8::2/64")},
		ServerPrefixes: []netip.Prefix{peerPrefix, netip.MustParsePrefix("2001:db8::1/64")},
		ClientLink:     wc,
		ServerLink:     ws,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p.Client, p.Server
}

// gvPair makes a tapstack stack (192.0.2.2) on clock and a gVisor-TCP
// peer (192.0.2.1) on the real clock, on a cable.
func gvPair(t testing.TB, clock tcpip.Clock, opts tcp.Options) (*stack.Stack, *gvpeer.Peer) {
	t.Helper()
	a, b := tap.Pipe()
	ts := newTS(t, a, clock, opts, tsPrefix)
	p, err := gvpeer.New(b, peerPrefix, nil)
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
	return connectContext(t, context.Background(), client, server)
}

// connectContext is connect dialing with ctx.
func connectContext(t testing.TB, ctx context.Context, client, server *stack.Stack) (c, s *conn.Conn) {
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
	c, err = (&conn.Dialer{Stack: client}).DialTCP(ctx, "tcp", ln.Addr().String())
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

// result is a call's error and the fake time at which it returned.
type result struct {
	err error
	at  time.Time
}

// start runs call on its own goroutine and reports its result, stamped
// with clock's time.
func start(clock tcpip.Clock, call func() error) <-chan result {
	ch := make(chan result, 1)
	go func() {
		err := call()
		ch <- result{err, clock.Now()}
	}()
	return ch
}

// returned waits until every goroutine of the bubble is blocked and
// reports whether the call behind ch has returned, and with what.
func returned(ch <-chan result) (result, bool) {
	synctest.Wait()
	select {
	case r := <-ch:
		return r, true
	default:
		return result{}, false
	}
}

// notYet fails the test if the call behind ch has returned.
func notYet(t *testing.T, ch <-chan result, what string) {
	t.Helper()
	if r, ok := returned(ch); ok {
		t.Fatalf("%s returned early: %v", what, r.err)
	}
}

// now fails the test unless the call behind ch has returned, and returns
// its result.
func now(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	r, ok := returned(ch)
	if !ok {
		t.Fatalf("%s has not returned", what)
	}
	return r
}

// advance waits until every goroutine of the bubble is blocked, moves
// clock on by d, and waits again until the bubble has done all that the
// timers that fired set off.
func advance(clock *faketime.ManualClock, d time.Duration) {
	synctest.Wait()
	clock.Advance(d)
	synctest.Wait()
}

// advanceUntil advances clock by step, waiting for the bubble to settle
// before each step, until the call behind ch returns; it gives up after
// limit of fake time. It returns the result and how much fake time
// passed. A step is taken only when nothing else can happen, so the
// result, and the fake time it took, are the same every run.
func advanceUntil(t *testing.T, clock *faketime.ManualClock, ch <-chan result, step, limit time.Duration, what string) (result, time.Duration) {
	t.Helper()
	for passed := time.Duration(0); ; passed += step {
		if r, ok := returned(ch); ok {
			return r, passed
		}
		if passed >= limit {
			t.Fatalf("%s has not returned after %v on the fake clock", what, limit)
		}
		clock.Advance(step)
	}
}

// untilInfo waits until cond holds for c's engine snapshot, waking each
// time the engine reports a change; it gives up after max changes.
func untilInfo(t testing.TB, c *conn.Conn, what string, cond func(tcp.Info) bool) {
	t.Helper()
	for range 100_000 {
		changed := c.Endpoint().Changed()
		if cond(c.Info()) {
			return
		}
		<-changed
	}
	t.Fatalf("%s: still not so after 100,000 changes: %+v", what, c.Info())
}

// bubbled returns the stacks of the goroutines in the test's bubble,
// once every one of them is blocked. Goroutines outside it (a real-clock
// timer of an earlier test firing) are none of the test's business.
func bubbled() []string {
	synctest.Wait()
	buf := make([]byte, 1<<20)
	for range 8 {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var ours []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if head, _, _ := strings.Cut(g, "\n"); strings.Contains(head, "synctest bubble") {
			ours = append(ours, g)
		}
	}
	return ours
}

// noneLeft fails the test if more goroutines run in the bubble than
// base (a count from bubbled), with their stacks.
func noneLeft(t *testing.T, base int, what string) {
	t.Helper()
	if g := bubbled(); len(g) > base {
		t.Errorf("%d goroutines in the bubble %s, want at most %d:\n%s", len(g), what, base, strings.Join(g, "\n\n"))
	}
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

// cuttable is link middleware that, once cut, drops every frame in both
// directions: a peer that vanished without a word.
type cuttable struct {
	nested.Endpoint
	cut atomic.Bool
}

func newCuttable(inner gstack.LinkEndpoint) *cuttable {
	c := &cuttable{}
	c.Endpoint.Init(inner, c)
	return c
}

func (c *cuttable) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if c.cut.Load() {
		return pkts.Len(), nil
	}
	return c.Endpoint.WritePackets(pkts)
}

func (c *cuttable) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	if !c.cut.Load() {
		c.Endpoint.DeliverNetworkPacket(proto, pkt)
	}
}
