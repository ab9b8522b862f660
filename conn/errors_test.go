package conn_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// The errors below are compared with what package net returns for a
// kernel socket: a *net.OpError{Op, Net: "tcp"} (the network the
// caller named: "tcp4" for a Dial("tcp4")) whose Err is an
// *os.SyscallError holding the errno (connect/read/write/bind), or
// net.ErrClosed, os.ErrDeadlineExceeded, a context error; and a bare
// io.EOF from Read.

// TestDialRefused dials a port nobody listens on. The peer answers the SYN
// with a RST (tapstack, gVisor) or with ICMP port unreachable (a gVisor
// stack whose TCP leaves unknown segments to IPv4, like a host that rejects
// with ICMP); Linux maps both to ECONNREFUSED. The answer comes at once:
// no timer is involved, and the fake clock never moves.
func TestDialRefused(t *testing.T) {
	check := func(t *testing.T, s *stack.Stack) {
		t.Helper()
		_, err := (&conn.Dialer{Stack: s, Timeout: 10 * time.Second}).DialContext(context.Background(), "tcp", "192.0.2.1:9")
		oe := wantOpError(t, err, "dial", syscall.ECONNREFUSED)
		if oe.Addr == nil || oe.Addr.String() != "192.0.2.1:9" {
			t.Errorf("OpError.Addr = %v, want 192.0.2.1:9", oe.Addr)
		}
		if _, ok := oe.Addr.(*net.TCPAddr); !ok {
			t.Errorf("OpError.Addr is %T, want *net.TCPAddr", oe.Addr)
		}
		if n := len(s.TCP().Connections()); n != 0 {
			t.Errorf("%d connections left after a refused dial", n)
		}
	}
	t.Run("TapstackRST", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			c, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			check(t, c)
		})
	})
	t.Run("GVisorRST", func(t *testing.T) {
		c, _ := gvPair(t, faketime.NewManualClock(), tcp.Options{})
		check(t, c)
	})
	t.Run("ICMPPortUnreachable", func(t *testing.T) {
		a, b := tap.Pipe()
		ts := newTS(t, a, faketime.NewManualClock(), tcp.Options{}, tsPrefix)
		p, err := gvpeer.NewRefusing(b, peerPrefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		check(t, ts)
		// IPv4 counts the ICMP before it tells the transport, so it is
		// counted by the time the dial has failed.
		if n := ts.Netstack().Stats().ICMP.V4.PacketsReceived.DstUnreachable.Value(); n == 0 {
			t.Error("the dial failed, but no ICMP destination unreachable came in")
		}
	})
}

// TestDialHostUnreachableICMP dials through a router whose next hop does
// not answer ARP: the router answers with ICMP host unreachable, which
// Linux (tcp_v4_err, icmp_err_convert) turns into EHOSTUNREACH in SYN-SENT.
// The router is gVisor's, so the test runs outside a bubble; it gives up
// on the next hop after 100 ms of the real clock, the router's own. The
// stack under test keeps a fake clock that never moves: its SYN is never
// retransmitted.
func TestDialHostUnreachableICMP(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		ts, in, far, out, remote string
	}{
		{"IPv4", "192.0.2.2/24", "192.0.2.1/24", "198.51.100.0/24", "198.51.100.1/24", "198.51.100.9"},
		// The router answers ICMPv6 address unreachable (RFC 4443
		// 3.1), which gVisor's IPv6 does not pass on: the engine takes
		// it itself (stack/tcp's icmp6.go), as Linux's tcp_v6_err.
		{"IPv6", "2001:db8::2/64", "2001:db8::1/64", "2001:db8:1::/64", "2001:db8:1::1/64", "2001:db8:1::9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := faketime.NewManualClock()
			a, b := tap.Pipe()
			c, d := tap.Pipe()
			in := netip.MustParsePrefix(tc.in)
			ts := newTS(t, a, clock, tcp.Options{}, netip.MustParsePrefix(tc.ts))
			if err := ts.AddRoute(netip.MustParsePrefix(tc.far), in.Addr(), 1); err != nil {
				t.Fatal(err)
			}
			// A stack on the far side that does not hold the dialed
			// address.
			far := netip.MustParsePrefix(tc.far)
			newTS(t, d, clock, tcp.Options{}, netip.PrefixFrom(far.Addr().Next().Next(), far.Bits()))
			r, err := gvpeer.NewRouter(b, in, c, netip.MustParsePrefix(tc.out), 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)

			// The stack's clock never moves: a dial that the ICMP
			// does not end waits for the context's deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = (&conn.Dialer{Stack: ts, Timeout: 10 * time.Second}).DialContext(ctx, "tcp", netip.AddrPortFrom(netip.MustParseAddr(tc.remote), 80).String())
			wantOpError(t, err, "dial", syscall.EHOSTUNREACH)
		})
	}
}

// TestDialUnreachable covers unreachable destinations found by tapstack
// itself: no route (ENETUNREACH at once, as connect(2)), and an on-link
// address nobody answers ARP for (gVisor reports the link resolution
// failure to the transport as host unreachable: EHOSTUNREACH, as Linux
// reports a failed neighbour resolution, once its three probes a second
// apart went unanswered).
func TestDialUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name, addr string
		want       syscall.Errno
		after      time.Duration // of the fake clock
	}{
		{"NoRoute", "198.51.100.1:80", syscall.ENETUNREACH, 0},
		{"NoRoute6", "[2001:db8:1::1]:80", syscall.ENETUNREACH, 0},
		{"NoARPReply", "192.0.2.99:80", syscall.EHOSTUNREACH, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				cs, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
				r, took := advanceUntil(t, clock, start(clock, func() error {
					_, err := (&conn.Dialer{Stack: cs, Timeout: 20 * time.Second}).DialContext(context.Background(), "tcp", tc.addr)
					return err
				}), 100*time.Millisecond, 10*time.Second, "dial")
				wantOpError(t, r.err, "dial", tc.want)
				if took != tc.after {
					t.Errorf("failed after %v of the fake clock, want %v", took, tc.after)
				}
			})
		})
	}
}

// TestDialTimedOut dials while every SYN is lost: with SynRetries 1 and a
// 50 ms initial RTO, the dial fails with ETIMEDOUT when the retransmitted
// SYN's timer (backed off to 100 ms) expires, 150 ms after the dial, as
// Linux does after tcp_syn_retries.
func TestDialTimedOut(t *testing.T) {
	opts := tcp.Options{SynRetries: 1, InitialRTO: 50 * time.Millisecond}
	for _, tc := range []struct {
		name string
		wrap func(gstack.LinkEndpoint) gstack.LinkEndpoint
	}{
		{"SYNsDropped", func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			return newTCPFilter(l, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn)
		}},
		{"FaultLoss1", func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			return tap.NewFault(l, tap.FaultConfig{Loss: 1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				cs, ss := tsPairLinks(t, clock, opts, tcp.Options{}, tc.wrap, nil)
				ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				r, took := advanceUntil(t, clock, start(clock, func() error {
					_, err := (&conn.Dialer{Stack: cs, Timeout: 10 * time.Second}).DialContext(context.Background(), "tcp", "192.0.2.1:80")
					return err
				}), 10*time.Millisecond, 10*time.Second, "dial")
				wantOpError(t, r.err, "dial", syscall.ETIMEDOUT)
				var ne net.Error
				if errors.As(r.err, &ne) && !ne.Timeout() {
					// Package net: ETIMEDOUT's Timeout() is true.
					t.Errorf("Timeout() = false for ETIMEDOUT; syscall.ETIMEDOUT.Timeout() is true")
				}
				if took != 150*time.Millisecond {
					t.Errorf("ETIMEDOUT after %v of the fake clock, want 150ms", took)
				}
				if n := len(cs.TCP().Connections()); n != 0 {
					t.Errorf("%d connections left", n)
				}
			})
		})
	}
}

// TestPeerReset makes the peer reset while a Read or a Write is blocked:
// ECONNRESET in a "read" or "write" OpError, as package net reports.
func TestPeerReset(t *testing.T) {
	small := tcp.Options{SendBufferSize: 64 << 10, ReceiveBufferSize: 64 << 10}
	// A peer returns the tapstack conn under test and a function that
	// makes the peer reset the connection.
	tapstackPeer := func(t *testing.T, clock *faketime.ManualClock) (*conn.Conn, func()) {
		cs, ss := tsPair(t, clock, small, small)
		c, s := connect(t, cs, ss)
		return c, func() {
			if err := s.SetLinger(0); err != nil {
				t.Error(err)
			}
			s.Close()
		}
	}
	gvisorPeer := func(t *testing.T, clock *faketime.ManualClock) (*conn.Conn, func()) {
		ts, p := gvPair(t, clock, small)
		ln, err := p.Listen(80)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ch := make(chan net.Conn, 1)
		go func() {
			g, _ := ln.Accept()
			ch <- g
		}()
		c, err := (&conn.Dialer{Stack: ts}).DialTCP(context.Background(), "tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		g := <-ch
		if g == nil {
			t.Fatal("gonet accept failed")
		}
		// gonet has no SetLinger; gVisor's TCP resets on Close with unread
		// data, as Linux does. Make sure it has some: its ACK says so.
		if _, err := c.Write([]byte("unread")); err != nil {
			t.Fatal(err)
		}
		untilInfo(t, c, "the peer acknowledges the unread data", func(i tcp.Info) bool { return i.BytesAcked >= 6 })
		return c, func() { g.Close() }
	}
	blockedRead := func(t *testing.T, c *conn.Conn, reset, settle func()) {
		errc := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 10))
			errc <- err
		}()
		settle()
		if len(errc) > 0 {
			t.Fatalf("Read returned before the reset: %v", <-errc)
		}
		reset()
		wantOpError(t, <-errc, "read", syscall.ECONNRESET)
	}
	blockedWrite := func(t *testing.T, c *conn.Conn, reset, settle func()) {
		// The writer writes 1 KB at a time and says so after each Write
		// that returns: the engine tells of ACKs, not of what a writer
		// put in the buffer.
		errc := make(chan error, 1)
		wrote := make(chan struct{}, 1)
		go func() {
			b := make([]byte, 1<<10)
			for {
				if _, err := c.Write(b); err != nil {
					errc <- err
					return
				}
				select {
				case wrote <- struct{}{}:
				default:
				}
			}
		}()
		// Once our send buffer is full, the next Write blocks until an
		// ACK makes room; the peer reads nothing, so its window closes.
		for range 100_000 {
			changed := c.Endpoint().Changed()
			if c.Info().SendQueued >= 64<<10 {
				break
			}
			select {
			case <-changed:
			case <-wrote:
			}
		}
		settle()
		if len(errc) > 0 {
			t.Fatalf("Write returned before the reset: %v", <-errc)
		}
		reset()
		wantOpError(t, <-errc, "write", syscall.ECONNRESET)
		// Later calls keep failing, with ECONNRESET or EPIPE (Linux
		// reports the pending error once, then EPIPE).
		_, err := c.Write([]byte("x"))
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Errorf("Write after reset: %v, want ECONNRESET or EPIPE", err)
		}
	}
	for _, call := range []struct {
		name string
		run  func(t *testing.T, c *conn.Conn, reset, settle func())
	}{{"BlockedRead", blockedRead}, {"BlockedWrite", blockedWrite}} {
		// With a tapstack peer, in a bubble, the call is known to be
		// blocked when the peer resets (the peer's window and our buffer
		// are full).
		t.Run("Tapstack/"+call.name, func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				c, reset := tapstackPeer(t, clock)
				call.run(t, c, reset, synctest.Wait)
			})
		})
		// With gVisor's, outside one, the reset may find the call still
		// on its way to blocking (or, for Write, gVisor's larger window
		// still open): it must fail all the same.
		t.Run("GVisor/"+call.name, func(t *testing.T) {
			c, reset := gvisorPeer(t, faketime.NewManualClock())
			call.run(t, c, reset, func() {})
		})
	}
}

// TestListenAddrInUse listens twice on one port: the second fails as
// bind(2) does, with EADDRINUSE in a "listen" OpError.
func TestListenAddrInUse(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		_, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		for _, addr := range []string{"192.0.2.1:8080", ":8080", "0.0.0.0:8080"} {
			ln2, err := conn.Listen(ss, "tcp", addr)
			if err == nil {
				ln2.Close()
			}
			wantOpError(t, err, "listen", syscall.EADDRINUSE)
		}
		// After Close the port is free again.
		ln.Close()
		ln3, err := conn.Listen(ss, "tcp", "192.0.2.1:8080")
		if err != nil {
			t.Fatalf("Listen after Close: %v", err)
		}
		ln3.Close()
	})
}

// TestWriteAfterCloseWrite: EPIPE, as write(2) after shutdown(SHUT_WR).
func TestWriteAfterCloseWrite(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_, err := c.Write([]byte("x"))
		wantOpError(t, err, "write", syscall.EPIPE)
		// Reading goes on after CloseWrite.
		if _, err := s.Write([]byte("still")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "still" {
			t.Fatalf("read after CloseWrite: %q, %v", b, err)
		}
	})
}

// TestShutdownWhenDone: CloseWrite and CloseRead on a connection the
// peer reset, or whose close has completed (TIME-WAIT), fail as package
// net's do on Linux: an OpError "close" wrapping the os.SyscallError of
// "shutdown" with ENOTCONN (inet_shutdown on a socket in TCP_CLOSE).
func TestShutdownWhenDone(t *testing.T) {
	check := func(t *testing.T, c *conn.Conn) {
		t.Helper()
		for _, call := range []struct {
			name string
			f    func() error
		}{{"CloseWrite", c.CloseWrite}, {"CloseRead", c.CloseRead}} {
			err := call.f()
			oe := wantOpError(t, err, "close", syscall.ENOTCONN)
			var se *os.SyscallError
			if !errors.As(oe.Err, &se) || se.Syscall != "shutdown" {
				t.Errorf("%s: %v, want the errno in an os.SyscallError for shutdown", call.name, err)
			}
		}
	}
	t.Run("PeerReset", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			c, s := connect(t, cs, ss)
			s.SetLinger(0)
			s.Close()
			synctest.Wait()
			if st := c.State(); st != event.Closed {
				t.Fatalf("state after the peer's RST = %v, want CLOSED", st)
			}
			check(t, c)
		})
	})
	t.Run("TimeWait", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			c, s := connect(t, cs, ss)
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			synctest.Wait()
			if st := c.State(); st != event.TimeWait {
				t.Fatalf("state after both FINs = %v, want TIME-WAIT", st)
			}
			check(t, c)
		})
	})
}

// TestOpErrorNet: an OpError's Net is the network the caller named, as
// package net's fd.net: "tcp4" for a Dial("tcp4") and for a Listen("tcp4")
// and the connections it accepts, "tcp6" likewise, "tcp" for "tcp".
// Linux: "read tcp4 ...: use of closed network connection", "accept tcp4
// ...: i/o timeout".
func TestOpErrorNet(t *testing.T) {
	for _, tc := range []struct{ network, laddr string }{
		{"tcp4", "192.0.2.1:0"},
		{"tcp6", "[2001:db8::1]:0"},
		{"tcp", "192.0.2.1:0"},
	} {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			ln, err := conn.Listen(ss, tc.network, tc.laddr)
			if err != nil {
				t.Fatal(err)
			}
			accepted := acceptAll(ln)
			c, err := (&conn.Dialer{Stack: cs}).DialTCP(context.Background(), tc.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			a := <-accepted
			defer a.Close()
			check := func(what string, err error) {
				t.Helper()
				var oe *net.OpError
				if !errors.As(err, &oe) {
					t.Errorf("%s on %s: %v, want a *net.OpError", what, tc.network, err)
				} else if oe.Net != tc.network {
					t.Errorf("%s on %s: OpError.Net = %q, want %q (%v)", what, tc.network, oe.Net, tc.network, err)
				}
			}
			c.Close()
			_, err = c.Read(make([]byte, 1))
			check("Read after Close of the dialed conn", err)
			a.SetReadDeadline(clock.Now())
			_, err = a.Read(make([]byte, 1))
			check("Read timeout of the accepted conn", err)
			ln.SetDeadline(clock.Now())
			_, err = ln.Accept()
			check("Accept timeout", err)
			ln.Close()
			check("Close twice of the listener", ln.Close())
			check("SetDeadline of the closed listener", ln.SetDeadline(time.Time{}))
		})
	}
}

// TestUseAfterClose: every call on a closed Conn or Listener fails with
// net.ErrClosed in an OpError named after the call, as package net does.
func TestUseAfterClose(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, _ := connect(t, cs, ss)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := c.Read(make([]byte, 1))
		wantOpError(t, err, "read", net.ErrClosed)
		_, err = c.Write([]byte("x"))
		wantOpError(t, err, "write", net.ErrClosed)
		wantOpError(t, c.Close(), "close", net.ErrClosed)
		wantOpError(t, c.SetDeadline(clock.Now()), "set", net.ErrClosed)
		wantOpError(t, c.SetReadDeadline(clock.Now()), "set", net.ErrClosed)
		wantOpError(t, c.SetWriteDeadline(clock.Now()), "set", net.ErrClosed)
		wantOpError(t, c.SetReadBuffer(4096), "set", net.ErrClosed)
		wantOpError(t, c.SetWriteBuffer(4096), "set", net.ErrClosed)

		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		_, err = ln.Accept()
		wantOpError(t, err, "accept", net.ErrClosed)
		wantOpError(t, ln.Close(), "close", net.ErrClosed)
	})
}

// TestAcceptBlockedDuringClose: an Accept blocked when the Listener is
// closed returns at once with net.ErrClosed, as with package net.
func TestAcceptBlockedDuringClose(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		_, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := ln.Accept()
				errc <- err
			}()
		}
		synctest.Wait()
		if len(errc) > 0 {
			t.Fatalf("an Accept returned before Close: %v", <-errc)
		}
		ln.Close()
		synctest.Wait()
		if len(errc) != 3 {
			t.Fatalf("%d of 3 blocked Accepts returned after Close", len(errc))
		}
		for range 3 {
			wantOpError(t, <-errc, "accept", net.ErrClosed)
		}
	})
}

// TestReadEOF: after the peer's FIN, Read returns the data and then a
// bare io.EOF (err == io.EOF, not wrapped), as package net does; after a
// half-close this side can still write.
func TestReadEOF(t *testing.T) {
	for _, half := range []bool{false, true} {
		name := "Close"
		if half {
			name = "CloseWrite"
		}
		t.Run(name, func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
				c, s := connect(t, cs, ss)
				if _, err := s.Write([]byte("bye")); err != nil {
					t.Fatal(err)
				}
				if half {
					if err := s.CloseWrite(); err != nil {
						t.Fatal(err)
					}
				} else {
					s.Close()
				}
				b, err := io.ReadAll(c)
				if err != nil || string(b) != "bye" {
					t.Fatalf("ReadAll = %q, %v", b, err)
				}
				n, err := c.Read(make([]byte, 8))
				if n != 0 || err != io.EOF {
					t.Fatalf("Read after FIN = %d, %#v; want 0, io.EOF (bare)", n, err)
				}
				if half {
					if _, err := c.Write([]byte("ok")); err != nil {
						t.Fatalf("Write after the peer's half-close: %v", err)
					}
					b := make([]byte, 2)
					if _, err := io.ReadFull(s, b); err != nil || string(b) != "ok" {
						t.Fatalf("peer read %q, %v", b, err)
					}
				}
			})
		})
	}
}

// TestDialContextCancel cancels a dial while SYNs are being dropped: it
// returns at once with context.Canceled in the chain, and no connection
// appears later on either side.
func TestDialContextCancel(t *testing.T) {
	t.Run("SYNDropped", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			var f *tcpFilter
			cs, ss := tsPairLinks(t, clock, tcp.Options{InitialRTO: 50 * time.Millisecond}, tcp.Options{}, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
				f = newTCPFilter(l, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn)
				return f
			}, nil)
			ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithCancel(context.Background())
			ch := start(clock, func() error { _, err := (&conn.Dialer{Stack: cs}).DialTCP(ctx, "tcp", "192.0.2.1:80"); return err })
			advance(clock, 120*time.Millisecond) // the SYN and its retransmission at 50ms are lost
			notYet(t, ch, "dial")
			cancel()
			wantOpError(t, now(t, ch, "dial after its context was cancelled").err, "dial", context.Canceled)
			if n := f.count(); n != 2 {
				t.Errorf("%d SYNs dropped, want 2", n)
			}
			f.set(false)
			advance(clock, 300*time.Millisecond) // a stray SYN retransmission would get through now
			if n := len(cs.TCP().Connections()); n != 0 {
				t.Errorf("%d connections on the dialing stack after the cancel", n)
			}
			wantNoAccept(t, ln)
		})
	})
	// The peer is in SYN-RECEIVED when the dial is cancelled: its SYN-ACKs
	// are lost until then. Its next SYN-ACK must not revive the connection.
	t.Run("SYNACKDropped", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			var f *tcpFilter
			cs, ss := tsPairLinks(t, clock, tcp.Options{}, tcp.Options{InitialRTO: 50 * time.Millisecond}, nil, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
				f = newTCPFilter(l, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn|header.TCPFlagAck)
				return f
			})
			ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithCancel(context.Background())
			ch := start(clock, func() error { _, err := (&conn.Dialer{Stack: cs}).DialTCP(ctx, "tcp", "192.0.2.1:80"); return err })
			advance(clock, 120*time.Millisecond) // the SYN-ACK and its retransmission at 50ms are lost
			notYet(t, ch, "dial")
			cancel()
			wantOpError(t, now(t, ch, "dial after its context was cancelled").err, "dial", context.Canceled)
			if n := f.count(); n != 2 {
				t.Errorf("%d SYN-ACKs dropped, want 2", n)
			}
			f.set(false)
			advance(clock, 500*time.Millisecond) // the next SYN-ACK retransmission reaches the client
			if n := len(cs.TCP().Connections()); n != 0 {
				t.Errorf("%d connections on the dialing stack after the cancel", n)
			}
			wantNoAccept(t, ln)
			for _, e := range ss.TCP().Connections() {
				t.Errorf("peer still has %v in %v", e.ID(), e.State())
			}
		})
	})
}

// wantNoAccept checks that no connection is waiting on ln, established or
// half-open.
func wantNoAccept(t *testing.T, ln *conn.Listener) {
	t.Helper()
	if q := ln.Endpoint().Queues(); q.AcceptQueueLen != 0 || q.SynQueueLen != 0 {
		t.Errorf("the peer holds a connection from a cancelled dial: %+v", q)
	}
}

// TestDialDeadline: a context deadline or Dialer.Timeout that passes while
// SYNs are lost fails the dial with an error that matches both
// context.DeadlineExceeded and os.ErrDeadlineExceeded and whose Timeout()
// is true, as package net's dial does. Dialer.Timeout is read on the
// stack's clock; a context's deadline is the caller's, on the time
// package's clock (a fake one too, inside the bubble).
func TestDialDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		// dial dials and returns how long the dial took on the clock its
		// deadline is read on, and its error.
		dial func(t *testing.T, clock *faketime.ManualClock, s *stack.Stack) (time.Duration, error)
		took time.Duration
	}{
		{"Context", func(t *testing.T, clock *faketime.ManualClock, s *stack.Stack) (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			begin := time.Now() // the bubble's clock, which moves by itself once all is blocked
			_, err := (&conn.Dialer{Stack: s}).DialTCP(ctx, "tcp", "192.0.2.1:80")
			return time.Since(begin), err
		}, 150 * time.Millisecond},
		{"DialerTimeout", func(t *testing.T, clock *faketime.ManualClock, s *stack.Stack) (time.Duration, error) {
			ch := start(clock, func() error {
				_, err := (&conn.Dialer{Stack: s, Timeout: 150 * time.Millisecond}).Dial("tcp", "192.0.2.1:80")
				return err
			})
			notYet(t, ch, "dial")
			advance(clock, 149*time.Millisecond)
			notYet(t, ch, "dial 1ms before its timeout")
			advance(clock, time.Millisecond)
			return 150 * time.Millisecond, now(t, ch, "dial at its timeout").err
		}, 150 * time.Millisecond},
		{"AlreadyExpired", func(t *testing.T, clock *faketime.ManualClock, s *stack.Stack) (time.Duration, error) {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel()
			begin := time.Now()
			_, err := (&conn.Dialer{Stack: s}).DialTCP(ctx, "tcp", "192.0.2.1:80")
			return time.Since(begin), err
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				cs, ss := tsPairLinks(t, clock, tcp.Options{InitialRTO: 50 * time.Millisecond}, tcp.Options{}, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
					return newTCPFilter(l, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn)
				}, nil)
				ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				took, err := tc.dial(t, clock, cs)
				wantTimeout(t, err, "dial")
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
				}
				if took != tc.took {
					t.Errorf("took %v, want %v", took, tc.took)
				}
				synctest.Wait()
				if n := len(cs.TCP().Connections()); n != 0 {
					t.Errorf("%d connections left", n)
				}
			})
		})
	}
}

// TestDialerLocalAddr: the Dialer's LocalAddr fixes the local address and
// port; an address the stack does not have, or a port taken, fails as
// bind(2) does, in an os.SyscallError for "bind" as package net's.
func TestDialerLocalAddr(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(c.RemoteAddr().String()))
				c.Close()
			}
		}()
		for _, la := range []*net.TCPAddr{
			{IP: net.ParseIP("192.0.2.2"), Port: 40001},
			{Port: 40002},
			{IP: net.ParseIP("192.0.2.2")},
		} {
			c, err := (&conn.Dialer{Stack: cs, LocalAddr: la}).Dial("tcp", "192.0.2.1:80")
			if err != nil {
				t.Fatalf("LocalAddr %v: %v", la, err)
			}
			got := c.LocalAddr().(*net.TCPAddr)
			if la.Port != 0 && got.Port != la.Port {
				t.Errorf("LocalAddr %v: local port %d", la, got.Port)
			}
			if !got.IP.Equal(net.ParseIP("192.0.2.2")) {
				t.Errorf("LocalAddr %v: local IP %v", la, got.IP)
			}
			b, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("LocalAddr %v: %v", la, err)
			}
			if string(b) != got.String() {
				t.Errorf("LocalAddr %v: the peer saw %s, we are %s", la, b, got)
			}
			c.Close()
		}
		// bind(2) fails, not connect(2), and package net names that
		// call: "dial tcp 192.0.2.77:0->192.0.2.1:80: bind: cannot
		// assign requested address" (sock_posix.go dial).
		wantBind := func(err error) {
			t.Helper()
			var se *os.SyscallError
			if !errors.As(err, &se) || se.Syscall != "bind" {
				t.Errorf("%v: want the errno in an os.SyscallError for bind, as package net's", err)
			}
		}
		// An address the stack does not have.
		_, err = (&conn.Dialer{Stack: cs, LocalAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.77")}}).Dial("tcp", "192.0.2.1:80")
		wantOpError(t, err, "dial", syscall.EADDRNOTAVAIL)
		wantBind(err)
		// A port in use with the same 4-tuple: EADDRINUSE (Linux: bind
		// without SO_REUSEADDR).
		c1, err := (&conn.Dialer{Stack: cs, LocalAddr: &net.TCPAddr{Port: 40010}}).Dial("tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		_, err = (&conn.Dialer{Stack: cs, LocalAddr: &net.TCPAddr{Port: 40010}}).Dial("tcp", "192.0.2.1:80")
		wantOpError(t, err, "dial", syscall.EADDRINUSE)
		wantBind(err)
	})
}

// TestIPv6 listens and dials over IPv6 (2001:db8::/64).
func TestIPv6(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		ln, err := conn.Listen(ss, "tcp6", "[2001:db8::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}()
		c, err := (&conn.Dialer{Stack: cs}).DialTCP(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if la := c.LocalAddr().(*net.TCPAddr); !la.IP.Equal(net.ParseIP("2001:db8::2")) {
			t.Errorf("LocalAddr %v", la)
		}
		if _, err := c.Write([]byte("six")); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "six" {
			t.Fatalf("echo %q, %v", b, err)
		}
		_, err = (&conn.Dialer{Stack: cs}).DialTCP(context.Background(), "tcp6", "[2001:db8::1]:9")
		if oe := wantOpError(t, err, "dial", syscall.ECONNREFUSED); oe.Net != "tcp6" {
			t.Errorf("OpError.Net = %q, want \"tcp6\" as package net reports", oe.Net)
		}
		_, err = (&conn.Dialer{Stack: cs}).DialTCP(context.Background(), "tcp4", "[2001:db8::1]:9")
		if err == nil {
			t.Error("tcp4 dial of an IPv6 address succeeded")
		}
	})
}

// TestSetCongestionControlErrors: an unknown algorithm is ENOENT in a
// *net.OpError, as Linux's TCP_CONGESTION answers; a known one takes,
// and after Close it is net.ErrClosed.
func TestSetCongestionControlErrors(t *testing.T) {
	cs, ss := tsPair(t, nil, tcp.Options{}, tcp.Options{})
	c, s := connect(t, cs, ss)
	defer s.Close()
	var op *net.OpError
	if err := c.SetCongestionControl("vegas"); !errors.As(err, &op) || op.Op != "set" || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("an unknown algorithm: %v, want a set OpError with ENOENT", err)
	}
	if err := c.SetCongestionControl("bbr"); err != nil {
		t.Fatal(err)
	}
	if i := c.Info(); i.CongestionControl != "bbr" || !i.Paced {
		t.Errorf("after bbr: %q, paced %v", i.CongestionControl, i.Paced)
	}
	c.Close()
	if err := c.SetCongestionControl("cubic"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("after Close: %v, want net.ErrClosed", err)
	}
}

// TestSetBufferBelowMinimum: SetReadBuffer and SetWriteBuffer with a size
// below Linux's minimum, zero and negative included, succeed and set the
// minimum (SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF), as package net's do on
// Linux, whose sk_setsockopt raises the size without an error; the
// connection still carries data.
func TestSetBufferBelowMinimum(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		for _, n := range []int{0, -1} {
			if err := c.SetReadBuffer(n); err != nil {
				t.Errorf("SetReadBuffer(%d) = %v, want nil", n, err)
			}
			if got := c.Info().RecvBuffer; got != 2304 {
				t.Errorf("after SetReadBuffer(%d): receive buffer %d, want 2304", n, got)
			}
			if err := s.SetWriteBuffer(n); err != nil {
				t.Errorf("SetWriteBuffer(%d) = %v, want nil", n, err)
			}
			if got := s.Info().SendBuffer; got != 4608 {
				t.Errorf("after SetWriteBuffer(%d): send buffer %d, want 4608", n, got)
			}
		}
		want := bytes.Repeat([]byte("0123456789"), 10_000)
		go func() {
			s.Write(want)
			s.CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("read %d bytes, %v; want the %d sent", len(got), err, len(want))
		}
		// A size above the minimum is taken as given.
		if err := c.SetReadBuffer(64 << 10); err != nil || c.Info().RecvBuffer != 64<<10 {
			t.Errorf("SetReadBuffer(64 KiB) = %v, receive buffer %d", err, c.Info().RecvBuffer)
		}
	})
}
