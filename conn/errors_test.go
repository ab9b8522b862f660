package conn_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// The errors below are compared with what package net returns for a
// kernel socket: a *net.OpError{Op, Net: "tcp"} whose Err is an
// *os.SyscallError holding the errno (connect/read/write/bind), or
// net.ErrClosed, os.ErrDeadlineExceeded, a context error; and a bare
// io.EOF from Read.

// TestDialRefused dials a port nobody listens on. The peer answers the SYN
// with a RST (tapstack, gVisor) or with ICMP port unreachable (a gVisor
// stack whose TCP leaves unknown segments to IPv4, like a host that rejects
// with ICMP); Linux maps both to ECONNREFUSED.
func TestDialRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer func(t *testing.T) *stack.Stack
	}{
		{"TapstackRST", func(t *testing.T) *stack.Stack {
			c, _ := tsPair(t, tcp.Options{}, tcp.Options{})
			return c
		}},
		{"GVisorRST", func(t *testing.T) *stack.Stack {
			c, _ := gvPair(t, tcp.Options{})
			return c
		}},
		{"ICMPPortUnreachable", func(t *testing.T) *stack.Stack {
			a, b := tap.Pipe()
			ga, gb := a, b
			ts := newTS(t, ga, tcp.Options{}, tsPrefix)
			p, err := gvpeer.NewRefusing(gb, peerPrefix, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			t.Cleanup(func() {
				// gVisor counts the ICMP after writing it, and the pipe may
				// deliver it (and the dial return) first.
				for range 100 {
					if p.S.Stats().ICMP.V4.PacketsSent.DstUnreachable.Value() > 0 {
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
				t.Error("the peer sent no ICMP destination unreachable")
			})
			return ts
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.peer(t)
			start := time.Now()
			_, err := (&conn.Dialer{Stack: s, Timeout: 10 * time.Second}).DialContext(context.Background(), "tcp", "192.0.2.1:9")
			t.Logf("refused after %v", time.Since(start))
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
		})
	}
}

// TestDialHostUnreachableICMP dials through a router whose next hop does
// not answer ARP: the router answers with ICMP host unreachable, which
// Linux (tcp_v4_err, icmp_err_convert) turns into EHOSTUNREACH in SYN-SENT.
func TestDialHostUnreachableICMP(t *testing.T) {
	a, b := tap.Pipe()
	c, d := tap.Pipe()
	ga, gb, gc, gd := a, b, c, d
	ts := newTS(t, ga, tcp.Options{}, tsPrefix)
	if err := ts.AddRoute(netip.MustParsePrefix("198.51.100.0/24"), peerAddr, 1); err != nil {
		t.Fatal(err)
	}
	// A stack on the far side that does not hold the dialed address.
	newTS(t, gd, tcp.Options{}, netip.MustParsePrefix("198.51.100.200/24"))
	r, err := gvpeer.NewRouter(gb, peerPrefix, gc, netip.MustParsePrefix("198.51.100.1/24"), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)

	start := time.Now()
	_, err = (&conn.Dialer{Stack: ts, Timeout: 10 * time.Second}).DialContext(context.Background(), "tcp", "198.51.100.9:80")
	t.Logf("ICMP host unreachable after %v", time.Since(start))
	wantOpError(t, err, "dial", syscall.EHOSTUNREACH)
}

// TestDialUnreachable covers unreachable destinations found by tapstack
// itself: no route (ENETUNREACH at once, as connect(2)), and an on-link
// address nobody answers ARP for (gVisor reports the link resolution
// failure to the transport as host unreachable: EHOSTUNREACH, as Linux
// reports a failed neighbour resolution).
func TestDialUnreachable(t *testing.T) {
	cs, _ := tsPair(t, tcp.Options{}, tcp.Options{})
	for _, tc := range []struct {
		name, addr string
		want       syscall.Errno
		within     time.Duration
	}{
		{"NoRoute", "198.51.100.1:80", syscall.ENETUNREACH, time.Second},
		{"NoRoute6", "[2001:db8:1::1]:80", syscall.ENETUNREACH, time.Second},
		{"NoARPReply", "192.0.2.99:80", syscall.EHOSTUNREACH, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := (&conn.Dialer{Stack: cs, Timeout: 20 * time.Second}).DialContext(context.Background(), "tcp", tc.addr)
			took := time.Since(start)
			t.Logf("%s: %v after %v", tc.addr, err, took)
			wantOpError(t, err, "dial", tc.want)
			if took > tc.within {
				t.Errorf("took %v, want within %v", took, tc.within)
			}
		})
	}
}

// TestDialTimedOut dials while every SYN is lost: with SynRetries 1 and a
// 50 ms initial RTO, the dial fails with ETIMEDOUT after 150 ms, as Linux
// does after tcp_syn_retries.
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
			cs, ss := tsPairLinks(t, opts, tcp.Options{}, tc.wrap, nil)
			ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			start := time.Now()
			_, err = (&conn.Dialer{Stack: cs, Timeout: 10 * time.Second}).DialContext(context.Background(), "tcp", "192.0.2.1:80")
			took := time.Since(start)
			t.Logf("ETIMEDOUT after %v", took)
			wantOpError(t, err, "dial", syscall.ETIMEDOUT)
			var ne net.Error
			if errors.As(err, &ne) && !ne.Timeout() {
				// Package net: ETIMEDOUT's Timeout() is true.
				t.Errorf("Timeout() = false for ETIMEDOUT; syscall.ETIMEDOUT.Timeout() is true")
			}
			if took < 100*time.Millisecond || took > 2*time.Second {
				t.Errorf("took %v, want about 150ms", took)
			}
			if n := len(cs.TCP().Connections()); n != 0 {
				t.Errorf("%d connections left", n)
			}
		})
	}
}

// TestPeerReset makes the peer reset while a Read or a Write is blocked:
// ECONNRESET in a "read" or "write" OpError, as package net reports.
func TestPeerReset(t *testing.T) {
	small := tcp.Options{SendBufferSize: 64 << 10, ReceiveBufferSize: 64 << 10}
	// setups return the tapstack conn under test and a function that makes
	// the peer reset the connection.
	type setup func(t *testing.T) (c net.Conn, reset func())
	tapstackPeer := func(t *testing.T) (net.Conn, func()) {
		cs, ss := tsPair(t, small, small)
		c, s := connect(t, cs, ss)
		return c, func() {
			if err := s.SetLinger(0); err != nil {
				t.Error(err)
			}
			s.Close()
		}
	}
	gvisorPeer := func(t *testing.T) (net.Conn, func()) {
		ts, p := gvPair(t, small)
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
		c, err := conn.Dial(ts, "tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		g := <-ch
		if g == nil {
			t.Fatal("gonet accept failed")
		}
		// gonet has no SetLinger; gVisor's TCP resets on Close with unread
		// data, as Linux does. Make sure it has some.
		if _, err := c.Write([]byte("unread")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		return c, func() { g.Close() }
	}
	for _, peer := range []struct {
		name string
		make setup
	}{{"Tapstack", tapstackPeer}, {"GVisor", gvisorPeer}} {
		t.Run(peer.name+"/BlockedRead", func(t *testing.T) {
			c, reset := peer.make(t)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 10))
				errc <- err
			}()
			time.Sleep(50 * time.Millisecond)
			reset()
			select {
			case err := <-errc:
				wantOpError(t, err, "read", syscall.ECONNRESET)
			case <-time.After(5 * time.Second):
				t.Fatal("Read still blocked 5s after the peer's RST")
			}
		})
		t.Run(peer.name+"/BlockedWrite", func(t *testing.T) {
			c, reset := peer.make(t)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(make([]byte, 4<<20))
				errc <- err
			}()
			// Wait until the peer's window and our send buffer are full.
			tc := c.(*conn.Conn)
			deadline := time.Now().Add(5 * time.Second)
			for tc.Info().SendQueued < 64<<10 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			select {
			case err := <-errc:
				t.Fatalf("Write returned before the reset: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			reset()
			select {
			case err := <-errc:
				wantOpError(t, err, "write", syscall.ECONNRESET)
			case <-time.After(5 * time.Second):
				t.Fatal("Write still blocked 5s after the peer's RST")
			}
			// Later calls keep failing, with ECONNRESET or EPIPE (Linux
			// reports the pending error once, then EPIPE).
			_, err := c.Write([]byte("x"))
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Errorf("Write after reset: %v, want ECONNRESET or EPIPE", err)
			}
		})
	}
}

// TestListenAddrInUse listens twice on one port: the second fails as
// bind(2) does, with EADDRINUSE in a "listen" OpError.
func TestListenAddrInUse(t *testing.T) {
	_, ss := tsPair(t, tcp.Options{}, tcp.Options{})
	ln, err := conn.Listen(ss, "tcp", "192.0.2.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, addr := range []string{"192.0.2.1:8080", ":8080", "0.0.0.0:8080"} {
		t.Run(addr, func(t *testing.T) {
			ln2, err := conn.Listen(ss, "tcp", addr)
			if err == nil {
				ln2.Close()
			}
			wantOpError(t, err, "listen", syscall.EADDRINUSE)
		})
	}
	// After Close the port is free again.
	ln.Close()
	ln3, err := conn.Listen(ss, "tcp", "192.0.2.1:8080")
	if err != nil {
		t.Fatalf("Listen after Close: %v", err)
	}
	ln3.Close()
}

// TestWriteAfterCloseWrite: EPIPE, as write(2) after shutdown(SHUT_WR).
func TestWriteAfterCloseWrite(t *testing.T) {
	cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
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
}

// TestUseAfterClose: every call on a closed Conn or Listener fails with
// net.ErrClosed in an OpError named after the call, as package net does.
func TestUseAfterClose(t *testing.T) {
	cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
	c, _ := connect(t, cs, ss)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	wantOpError(t, err, "read", net.ErrClosed)
	_, err = c.Write([]byte("x"))
	wantOpError(t, err, "write", net.ErrClosed)
	wantOpError(t, c.Close(), "close", net.ErrClosed)
	wantOpError(t, c.SetDeadline(time.Now()), "set", net.ErrClosed)
	wantOpError(t, c.SetReadDeadline(time.Now()), "set", net.ErrClosed)
	wantOpError(t, c.SetWriteDeadline(time.Now()), "set", net.ErrClosed)

	ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	_, err = ln.Accept()
	wantOpError(t, err, "accept", net.ErrClosed)
	wantOpError(t, ln.Close(), "close", net.ErrClosed)
}

// TestAcceptBlockedDuringClose: an Accept blocked when the Listener is
// closed returns promptly with net.ErrClosed, as with package net.
func TestAcceptBlockedDuringClose(t *testing.T) {
	_, ss := tsPair(t, tcp.Options{}, tcp.Options{})
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
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	ln.Close()
	for range 3 {
		select {
		case err := <-errc:
			wantOpError(t, err, "accept", net.ErrClosed)
		case <-time.After(time.Second):
			t.Fatal("Accept still blocked 1s after Close")
		}
	}
	t.Logf("all Accepts returned %v after Close", time.Since(start))
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
			cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
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
	}
}

// TestDialContextCancel cancels a dial while SYNs are being dropped: it
// returns promptly with context.Canceled in the chain, and no connection
// appears later on either side.
func TestDialContextCancel(t *testing.T) {
	t.Run("SYNDropped", func(t *testing.T) {
		var f *tcpFilter
		cs, ss := tsPairLinks(t, tcp.Options{InitialRTO: 50 * time.Millisecond}, tcp.Options{}, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			f = newTCPFilter(l, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn)
			return f
		}, nil)
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(120*time.Millisecond, cancel)
		start := time.Now()
		_, err = conn.DialContext(ctx, cs, "tcp", "192.0.2.1:80")
		took := time.Since(start)
		wantOpError(t, err, "dial", context.Canceled)
		if took > 500*time.Millisecond {
			t.Errorf("dial returned %v after start, %v after cancel", took, took-120*time.Millisecond)
		}
		if f.count() == 0 {
			t.Error("no SYN was dropped")
		}
		f.set(false)
		time.Sleep(300 * time.Millisecond) // a stray SYN retransmission would get through now
		if n := len(cs.TCP().Connections()); n != 0 {
			t.Errorf("%d connections on the dialing stack after the cancel", n)
		}
		wantNoAccept(t, ln)
	})
	// The peer is in SYN-RECEIVED when the dial is cancelled: its SYN-ACKs
	// are lost until then. Its next SYN-ACK must not revive the connection.
	t.Run("SYNACKDropped", func(t *testing.T) {
		var f *tcpFilter
		cs, ss := tsPairLinks(t, tcp.Options{}, tcp.Options{InitialRTO: 50 * time.Millisecond}, nil, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			f = newTCPFilter(l, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn|header.TCPFlagAck)
			return f
		})
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(120*time.Millisecond, cancel)
		_, err = conn.DialContext(ctx, cs, "tcp", "192.0.2.1:80")
		wantOpError(t, err, "dial", context.Canceled)
		if f.count() == 0 {
			t.Error("no SYN-ACK was dropped")
		}
		f.set(false) // the next SYN-ACK retransmission reaches the client
		time.Sleep(500 * time.Millisecond)
		if n := len(cs.TCP().Connections()); n != 0 {
			t.Errorf("%d connections on the dialing stack after the cancel", n)
		}
		wantNoAccept(t, ln)
		for _, e := range ss.TCP().Connections() {
			t.Errorf("peer still has %v in %v", e.ID(), e.State())
		}
	})
}

// wantNoAccept checks that no connection is waiting on ln.
func wantNoAccept(t *testing.T, ln *conn.Listener) {
	t.Helper()
	ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Errorf("the peer accepted a connection from a cancelled dial: %v", c.RemoteAddr())
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Accept: %v", err)
	}
}

// TestDialDeadline: a context deadline or Dialer.Timeout that passes while
// SYNs are lost fails the dial with an error that matches both
// context.DeadlineExceeded and os.ErrDeadlineExceeded and whose Timeout()
// is true, as package net's dial does.
func TestDialDeadline(t *testing.T) {
	cs, ss := tsPairLinks(t, tcp.Options{InitialRTO: 50 * time.Millisecond}, tcp.Options{}, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
		return newTCPFilter(l, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn)
	}, nil)
	ln, err := conn.Listen(ss, "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	check := func(t *testing.T, err error, took time.Duration) {
		t.Helper()
		wantTimeout(t, err, "dial")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
		}
		if took > time.Second {
			t.Errorf("took %v for a 150ms deadline", took)
		}
		if n := len(cs.TCP().Connections()); n != 0 {
			t.Errorf("%d connections left", n)
		}
	}
	t.Run("Context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := conn.DialContext(ctx, cs, "tcp", "192.0.2.1:80")
		check(t, err, time.Since(start))
	})
	t.Run("DialerTimeout", func(t *testing.T) {
		start := time.Now()
		_, err := (&conn.Dialer{Stack: cs, Timeout: 150 * time.Millisecond}).Dial("tcp", "192.0.2.1:80")
		check(t, err, time.Since(start))
	})
	t.Run("AlreadyExpired", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		start := time.Now()
		_, err := conn.DialContext(ctx, cs, "tcp", "192.0.2.1:80")
		check(t, err, time.Since(start))
	})
}

// TestDialerLocalAddr: the Dialer's LocalAddr fixes the local address and
// port; an address the stack does not have fails as bind(2) does.
func TestDialerLocalAddr(t *testing.T) {
	cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
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
		t.Run(la.String(), func(t *testing.T) {
			c, err := (&conn.Dialer{Stack: cs, LocalAddr: la}).Dial("tcp", "192.0.2.1:80")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := c.LocalAddr().(*net.TCPAddr)
			if la.Port != 0 && got.Port != la.Port {
				t.Errorf("local port %d, want %d", got.Port, la.Port)
			}
			if !got.IP.Equal(net.ParseIP("192.0.2.2")) {
				t.Errorf("local IP %v", got.IP)
			}
			b, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != got.String() {
				t.Errorf("the peer saw %s, we are %s", b, got)
			}
		})
	}
	t.Run("NotOurs", func(t *testing.T) {
		_, err := (&conn.Dialer{Stack: cs, LocalAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.77")}}).Dial("tcp", "192.0.2.1:80")
		wantOpError(t, err, "dial", syscall.EADDRNOTAVAIL)
	})
	t.Run("PortInUse", func(t *testing.T) {
		c1, err := (&conn.Dialer{Stack: cs, LocalAddr: &net.TCPAddr{Port: 40010}}).Dial("tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		// Same 4-tuple: EADDRINUSE (Linux: bind without SO_REUSEADDR).
		_, err = (&conn.Dialer{Stack: cs, LocalAddr: &net.TCPAddr{Port: 40010}}).Dial("tcp", "192.0.2.1:80")
		wantOpError(t, err, "dial", syscall.EADDRINUSE)
	})
}

// TestIPv6 listens and dials over IPv6 (2001:db8::/64).
func TestIPv6(t *testing.T) {
	cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
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
	c, err := conn.Dial(cs, "tcp", ln.Addr().String())
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
	_, err = conn.Dial(cs, "tcp6", "[2001:db8::1]:9")
	if oe := wantOpError(t, err, "dial", syscall.ECONNREFUSED); oe.Net != "tcp6" {
		t.Errorf("OpError.Net = %q, want \"tcp6\" as package net reports", oe.Net)
	}
	_, err = conn.Dial(cs, "tcp4", "[2001:db8::1]:9")
	if err == nil {
		t.Error("tcp4 dial of an IPv6 address succeeded")
	}
}
