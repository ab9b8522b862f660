package stack_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// Links that fail under a running stack: the stack takes the interface
// down, connections through it fail with ENETDOWN at once (blocked calls
// return), OnLinkDown names the cause, and new connections find no route.

// linkDowns collects OnLinkDown's reports.
type linkDowns chan stack.LinkDown

func (l linkDowns) observe(d stack.LinkDown) { l <- d }

func (l linkDowns) wait(t *testing.T) stack.LinkDown {
	t.Helper()
	select {
	case d := <-l:
		return d
	case <-time.After(guard):
		t.Fatal("no OnLinkDown")
	}
	return stack.LinkDown{}
}

// blockedRead starts a Read on c and returns its error when it ends.
func blockedRead(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

func wantNetDown(t *testing.T, name string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		var op *net.OpError
		if !errors.As(err, &op) || !errors.Is(err, syscall.ENETDOWN) {
			t.Errorf("%s: blocked Read returned %v, want a *net.OpError wrapping ENETDOWN", name, err)
		}
	case <-time.After(guard):
		t.Fatalf("%s: blocked Read did not return", name)
	}
}

// wantNoRoute checks that a dial into the failed interface's network
// fails with the errno Linux gives when no route is left.
func wantNoRoute(t *testing.T, s *stack.Stack, addr string) {
	t.Helper()
	_, err := (&conn.Dialer{Stack: s}).DialTCP(context.Background(), "tcp", addr)
	if !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("Dial %s after the link failed: %v, want ENETUNREACH or EHOSTUNREACH", addr, err)
	}
}

// TestLinkDownPipe: the in-memory cable is closed under a stack (its end
// closed directly, not through the stack): both stacks lose the link;
// every connection on either side fails with ENETDOWN, blocked Reads
// return, and both stacks report it.
func TestLinkDownPipe(t *testing.T) {
	a, b := tap.Pipe()
	downA, downB := make(linkDowns, 1), make(linkDowns, 1)
	sa := stack.New(stack.Options{OnLinkDown: downA.observe})
	defer sa.Close()
	causes := make(chan event.Cause, 16)
	sb := stack.New(stack.Options{OnLinkDown: downB.observe, TCP: tcp.Options{Observer: func(ev event.Event) {
		if ev.Kind == event.KindState && ev.To == event.Closed {
			causes <- ev.Cause
		}
	}}})
	defer sb.Close()
	nicA, err := sa.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	ln, err := conn.Listen(sa, "tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	cb, err := (&conn.Dialer{Stack: sb}).DialTCP(context.Background(), "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	var ca net.Conn
	select {
	case ca = <-accepted:
	case <-time.After(guard):
		t.Fatal("no connection accepted")
	}
	defer ca.Close()
	readA, readB := blockedRead(ca), blockedRead(cb)

	a.Close() // the cable, under stack A

	for _, x := range []struct {
		name string
		down linkDowns
	}{{"A", downA}, {"B", downB}} {
		if d := x.down.wait(t); !errors.Is(d.Err, tap.ErrPipeClosed) {
			t.Errorf("stack %s: OnLinkDown %v, want tap.ErrPipeClosed", x.name, d)
		}
	}
	wantNetDown(t, "stack A", readA)
	wantNetDown(t, "stack B", readB)
	if err := sa.LinkErr(nicA); !errors.Is(err, tap.ErrPipeClosed) {
		t.Errorf("LinkErr = %v", err)
	}
	if _, err := cb.Write([]byte("x")); !errors.Is(err, syscall.ENETDOWN) {
		t.Errorf("Write after the link failed: %v, want ENETDOWN", err)
	}
	if st := cb.State(); st != event.Closed {
		t.Errorf("connection in %v, want CLOSED", st)
	}
	wantNoRoute(t, sb, "192.0.2.1:7")
	// The state changed under the connection's lock; its event reaches
	// the observer after the lock is released, maybe on another
	// goroutine: wait for it, as an observer's reader must.
	sb.TCP().SyncEvents()
	select {
	case c := <-causes:
		if c.Kind != event.CauseLink || !strings.Contains(c.Detail, "link down: tap: pipe closed") {
			t.Errorf("the connection closed with cause %v, want the link failure", c)
		}
	default:
		t.Error("no state event for the connection's end")
	}
}

// TestLinkDownPeerStackClosed: when the stack at the other end of a pipe
// closes, it resets its connections first (Close), and this stack's link
// fails after the RST arrived: the connection reports the reset.
func TestLinkDownPeerStackClosed(t *testing.T) {
	a, b := tap.Pipe()
	downB := make(linkDowns, 1)
	sa := stack.New(stack.Options{})
	sb := stack.New(stack.Options{OnLinkDown: downB.observe})
	defer sb.Close()
	if _, err := sa.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	ln, err := conn.Listen(sa, "tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := (&conn.Dialer{Stack: sb}).DialTCP(context.Background(), "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if _, err := ln.Accept(); err != nil {
		t.Fatal(err)
	}
	read := blockedRead(cb)
	sa.Close()
	select {
	case err := <-read:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Read: %v, want ECONNRESET from the closing stack's RST", err)
		}
	case <-time.After(guard):
		t.Fatal("Read did not return")
	}
	if d := downB.wait(t); !errors.Is(d.Err, tap.ErrPipeClosed) {
		t.Errorf("OnLinkDown %v", d)
	}
}

// TestLinkDownTAP: a real TAP device deleted (ip link del) or set down
// under the stack, in a network namespace of the test's own. The kernel
// side holds a TCP connection to tapstack. Skipped without CAP_NET_ADMIN.
func TestLinkDownTAP(t *testing.T) {
	for _, how := range []string{"deleted", "down"} {
		t.Run(how, func(t *testing.T) {
			ns := taptest.NewNamespace(t)
			dev := ns.AddTAP(t, "tsdown0", "192.0.2.1/24")
			down := make(linkDowns, 1)
			s := stack.New(stack.Options{OnLinkDown: down.observe})
			defer s.Close()
			if _, err := s.AddNIC(dev.LinkEndpoint(), netip.MustParsePrefix("192.0.2.2/24")); err != nil {
				t.Fatal(err)
			}
			var kl net.Listener
			if err := ns.Do(func() error {
				var err error
				kl, err = net.Listen("tcp4", "192.0.2.1:7000")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer kl.Close()
			go func() {
				if c, err := kl.Accept(); err == nil {
					defer c.Close()
					io.Copy(io.Discard, c)
				}
			}()
			c, err := (&conn.Dialer{Stack: s}).DialTCP(context.Background(), "tcp", "192.0.2.1:7000")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			read := blockedRead(c)
			switch how {
			case "deleted":
				ns.Run(t, "ip", "link", "del", "tsdown0")
			case "down":
				ns.Run(t, "ip", "link", "set", "tsdown0", "down")
				// A down device refuses frames: the next segment
				// tapstack writes finds out.
				if _, err := c.Write([]byte("hello")); err != nil {
					t.Fatalf("Write: %v", err)
				}
			}
			d := down.wait(t)
			t.Logf("OnLinkDown: %v", d)
			if d.Err == nil {
				t.Error("OnLinkDown without a cause")
			}
			wantNetDown(t, how, read)
			wantNoRoute(t, s, "192.0.2.1:7000")
		})
	}
}

// closingLink is a link that can fail, whose Close waits for release:
// it says when Close began, and whether Wait came before Close was done.
type closingLink struct {
	*channel.Endpoint
	fail      func(error)
	once      sync.Once
	closing   chan struct{} // closed when Close begins
	release   chan struct{} // Close returns once this is closed
	waited    chan struct{} // closed when Wait is first called
	waitOnce  sync.Once
	closed    atomic.Bool
	waitEarly atomic.Bool
}

func (l *closingLink) OnFailure(fn func(error)) { l.fail = fn }

func (l *closingLink) Close() {
	l.once.Do(func() { close(l.closing) })
	<-l.release
	l.Endpoint.Close()
	l.closed.Store(true)
}

func (l *closingLink) Wait() {
	if !l.closed.Load() {
		l.waitEarly.Store(true)
	}
	l.waitOnce.Do(func() { close(l.waited) })
	l.Endpoint.Wait()
}

// TestCloseAfterLinkDown: a link fails and the stack takes its interface
// down on a goroutine of its own, whose RemoveNIC has the interface out
// of gVisor's table but has not yet closed the link when the stack is
// closed. Close must not wait for the link before the link's Close is
// done: a link still working (tap.Fault arming a timer for a frame that
// arrives) would race with the wait, as a CI run under the race detector
// saw (sync.WaitGroup's Add concurrent with its Wait).
func TestCloseAfterLinkDown(t *testing.T) {
	l := &closingLink{Endpoint: channel.New(16, 1500, ""), closing: make(chan struct{}), release: make(chan struct{}), waited: make(chan struct{})}
	s := stack.New(stack.Options{})
	if _, err := s.AddNIC(l, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	l.fail(errors.New("cable cut"))
	select {
	case <-l.closing:
	case <-time.After(guard):
		t.Fatal("the failed link was not closed")
	}
	done := make(chan struct{})
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-l.waited:
		t.Error("Close waited for the link while its Close was still running")
	case <-time.After(100 * time.Millisecond): // long enough for Close to get there, if it would
	}
	close(l.release)
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("Close did not return")
	}
	if l.waitEarly.Load() {
		t.Error("the link's Wait came before its Close was done")
	}
	select {
	case <-l.waited:
	default:
		t.Error("Close did not wait for the link")
	}
}

// TestLinkDownListenersStay: a link failure takes the interface down but
// not the listeners, as Linux's `ip link del` leaves listening sockets,
// those bound to the device's address included; once an interface with
// the same address is added on a new cable, new connections reach both
// listeners, and a UDP socket bound to the address receives again.
func TestLinkDownListenersStay(t *testing.T) {
	down := make(linkDowns, 1)
	s := stack.New(stack.Options{OnLinkDown: down.observe})
	defer s.Close()
	addr := netip.MustParsePrefix("192.0.2.1/24")
	a, b := tap.Pipe()
	if _, err := s.AddNIC(a, addr); err != nil {
		t.Fatal(err)
	}
	peer := stack.New(stack.Options{})
	defer peer.Close()
	if _, err := peer.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ at, name string }{{":7", "any"}, {"192.0.2.1:8", "bound"}} {
		ln, err := conn.Listen(s, "tcp", x.at)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go serveName(ln, x.name)
	}
	u, err := conn.ListenUDP(s, "udp", &net.UDPAddr{IP: addr.Addr().AsSlice(), Port: 53})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()

	a.Close()
	down.wait(t)

	c, d := tap.Pipe()
	if _, err := s.AddNIC(c, addr); err != nil {
		t.Fatalf("AddNIC with the failed interface's address: %v", err)
	}
	peer2 := stack.New(stack.Options{})
	defer peer2.Close()
	if _, err := peer2.AddNIC(d, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ addr, want string }{{"192.0.2.1:7", "any"}, {"192.0.2.1:8", "bound"}} {
		if got := whoAnswers(t, peer2, tc.addr); got != tc.want {
			t.Errorf("%s after the interface came back: %q, want %q", tc.addr, got, tc.want)
		}
	}
	pu, err := conn.DialUDP(peer2, "udp", nil, &net.UDPAddr{IP: addr.Addr().AsSlice(), Port: 53})
	if err != nil {
		t.Fatal(err)
	}
	defer pu.Close()
	if _, err := pu.Write([]byte("query")); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(guard))
	buf := make([]byte, 16)
	if n, _, err := u.ReadFrom(buf); err != nil || string(buf[:n]) != "query" {
		t.Errorf("bound UDP socket after the interface came back: %q, %v", buf[:n], err)
	}
}
