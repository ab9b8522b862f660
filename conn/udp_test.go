package conn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// wantNetError checks that err is a *net.OpError for op whose Net starts
// with network ("udp" matches "udp4") and whose chain holds target.
func wantNetError(t testing.TB, err error, op, network string, target error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %v", op, target)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: error %v (%T) is not a *net.OpError", op, err, err)
	}
	if oe.Op != op || !strings.HasPrefix(oe.Net, network) {
		t.Errorf("OpError{Op: %q, Net: %q}, want Op %q, Net %q... (%v)", oe.Op, oe.Net, op, network, err)
	}
	if !errors.Is(err, target) {
		t.Errorf("%s: errors.Is(%v, %v) = false", op, err, target)
	}
	if _, ok := target.(syscall.Errno); ok {
		var se *os.SyscallError
		if !errors.As(err, &se) {
			t.Errorf("%s: no *os.SyscallError in %v, as package net has", op, err)
		}
	}
}

// udpEcho serves pc: every datagram goes back to its sender, until pc
// closes.
func udpEcho(pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if _, err := pc.WriteTo(buf[:n], from); err != nil {
			return
		}
	}
}

// udpEchoServer listens on s as ListenPacket does and echoes every
// datagram until the test ends.
func udpEchoServer(t testing.TB, s *stack.Stack, network, address string) net.PacketConn {
	t.Helper()
	pc, err := conn.ListenPacket(s, network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go udpEcho(pc)
	return pc
}

// listenUDP is conn.ListenUDP for a test: it fails the test on error
// and closes the socket when the test ends.
func listenUDP(t testing.TB, s *stack.Stack, network string, laddr *net.UDPAddr) *conn.UDPConn {
	t.Helper()
	c, err := conn.ListenUDP(s, network, laddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialUDP is conn.DialUDP to raddr ("192.0.2.1:7") for a test, as
// listenUDP is.
func dialUDP(t testing.TB, s *stack.Stack, network string, laddr *net.UDPAddr, raddr string) *conn.UDPConn {
	t.Helper()
	c, err := conn.DialUDP(s, network, laddr, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(raddr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantDatagram reads one datagram from c, waiting up to a second of
// clock, and checks its text.
func wantDatagram(t testing.TB, clock tcpip.Clock, c net.PacketConn, want string) {
	t.Helper()
	buf := make([]byte, len(want)+1)
	c.SetReadDeadline(clock.Now().Add(time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != want {
		t.Fatalf("ReadFrom = %q, %v; want %q", buf[:n], err, want)
	}
}

// TestUDPEcho: a datagram to an echo server on the other stack comes
// back whole, over IPv4 and IPv6, connected and not.
func TestUDPEcho(t *testing.T) {
	for _, tc := range []struct {
		network, listen, server string
	}{
		{"udp", "192.0.2.1:7", "192.0.2.1:7"},
		{"udp4", ":7", "192.0.2.1:7"},
		{"udp6", "[2001:db8::1]:7", "[2001:db8::1]:7"},
		{"udp", ":7", "[2001:db8::1]:7"}, // dual-stack listener, IPv6 peer
		{"udp", ":7", "192.0.2.1:7"},     // dual-stack listener, IPv4 peer
	} {
		t.Run(tc.network+" "+tc.listen+" "+tc.server, func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
				udpEchoServer(t, server, tc.network, tc.listen)
				raddr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.server))

				// Connected: Write and Read.
				c := dialUDP(t, client, "udp", nil, tc.server)
				if c.RemoteAddr().String() != tc.server {
					t.Errorf("RemoteAddr %v, want %s", c.RemoteAddr(), tc.server)
				}
				if la := c.LocalAddr().(*net.UDPAddr); la.Port == 0 || la.IP.IsUnspecified() {
					t.Errorf("LocalAddr %v: want the route's address and an ephemeral port", la)
				}
				msg := []byte("hello, datagram")
				if n, err := c.Write(msg); err != nil || n != len(msg) {
					t.Fatalf("Write = %d, %v", n, err)
				}
				buf := make([]byte, 100)
				n, err := c.Read(buf)
				if err != nil || string(buf[:n]) != string(msg) {
					t.Fatalf("Read = %q, %v; want %q", buf[:n], err, msg)
				}

				// Unconnected: WriteTo and ReadFromUDPAddrPort.
				u := listenUDP(t, client, "udp", nil)
				if _, err := u.WriteToUDPAddrPort([]byte("two"), raddr.AddrPort()); err != nil {
					t.Fatal(err)
				}
				n, from, err := u.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != "two" {
					t.Fatalf("ReadFromUDPAddrPort = %q, %v", buf[:n], err)
				}
				if from.Addr().Unmap() != raddr.AddrPort().Addr() || from.Port() != 7 {
					t.Errorf("from %v, want %v", from, raddr)
				}
			})
		})
	}
}

// TestUDPTruncated: a datagram longer than the buffer is cut, the rest
// lost, and ReadMsgUDPAddrPort says so with MSG_TRUNC, as recvmsg(2).
func TestUDPTruncated(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 9000})
		c := dialUDP(t, client, "udp4", nil, "192.0.2.1:9000")
		buf := make([]byte, 4)
		// The first datagram waits for ARP; gVisor sends what waited
		// from a goroutine of its own once the address is resolved,
		// so a datagram written meanwhile can overtake it (UDP keeps
		// no order). One datagram first, so that the two below leave
		// in the order written.
		c.Write([]byte("arp!"))
		if n, _, _, _, err := srv.ReadMsgUDPAddrPort(buf, nil); err != nil || string(buf[:n]) != "arp!" {
			t.Fatalf("first datagram = %q, %v", buf[:n], err)
		}
		c.Write([]byte("0123456789"))
		c.Write([]byte("next"))
		n, _, flags, from, err := srv.ReadMsgUDPAddrPort(buf, nil)
		if err != nil || string(buf[:n]) != "0123" || flags&syscall.MSG_TRUNC == 0 {
			t.Fatalf("ReadMsgUDPAddrPort = %q, flags %#x, %v; want \"0123\" with MSG_TRUNC", buf[:n], flags, err)
		}
		if from != c.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Errorf("from %v, want %v", from, c.LocalAddr())
		}
		n, _, flags, _, err = srv.ReadMsgUDPAddrPort(buf, nil)
		if err != nil || string(buf[:n]) != "next" || flags&syscall.MSG_TRUNC != 0 {
			t.Fatalf("second datagram = %q, flags %#x, %v; want \"next\" whole", buf[:n], flags, err)
		}
		// ReadFrom and ReadFromUDP cut it too, and say nothing of it:
		// n is len(b) and the error nil, as package net's.
		c.Write([]byte("0123456789"))
		c.Write([]byte("abcdefghij"))
		if n, _, err := srv.ReadFrom(buf); err != nil || n != len(buf) || string(buf) != "0123" {
			t.Errorf("ReadFrom = %d %q, %v; want 4 \"0123\", nil", n, buf[:n], err)
		}
		if n, _, err := srv.ReadFromUDP(buf); err != nil || n != len(buf) || string(buf) != "abcd" {
			t.Errorf("ReadFromUDP = %d %q, %v; want 4 \"abcd\", nil", n, buf[:n], err)
		}
	})
}

// TestUDPMsg: ReadMsgUDP and WriteMsgUDP, WriteMsgUDPAddrPort, as
// *net.UDPConn has them: a datagram longer than b is cut with MSG_TRUNC
// in flags (recvmsg(2)); an address on a connected socket is
// net.ErrWriteToConnected and none on an unconnected one "missing
// address", as package net's writeMsg checks before any syscall.
func TestUDPMsg(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 9000})
		u := listenUDP(t, client, "udp4", nil)
		c := dialUDP(t, client, "udp4", nil, "192.0.2.1:9000")
		to := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9000}
		readMsg := func(b []byte) (n, flags int, from *net.UDPAddr, err error) {
			t.Helper()
			ch := start(clock, func() (err error) { n, _, flags, from, err = srv.ReadMsgUDP(b, nil); return err })
			return n, flags, from, now(t, ch, "ReadMsgUDP").err
		}
		buf := make([]byte, 4)
		if n, oobn, err := u.WriteMsgUDP([]byte("0123456789"), nil, to); n != 10 || oobn != 0 || err != nil {
			t.Fatalf("WriteMsgUDP = %d, %d, %v", n, oobn, err)
		}
		n, flags, from, err := readMsg(buf)
		want := netip.AddrPortFrom(tsPrefix.Addr(), u.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		if err != nil || string(buf[:n]) != "0123" || flags&syscall.MSG_TRUNC == 0 || from.AddrPort() != want {
			t.Fatalf("ReadMsgUDP = %q, flags %#x, from %v, %v; want \"0123\" with MSG_TRUNC from %v", buf[:n], flags, from, err, want)
		}
		if _, _, err := c.WriteMsgUDP([]byte("conn"), nil, nil); err != nil {
			t.Fatalf("WriteMsgUDP on a connected socket: %v", err)
		}
		if n, flags, from, err := readMsg(buf); err != nil || string(buf[:n]) != "conn" || flags != 0 || from.AddrPort() != c.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("ReadMsgUDP = %q, flags %#x, from %v, %v; want \"conn\" whole from %v", buf[:n], flags, from, err, c.LocalAddr())
		}
		if _, _, err := u.WriteMsgUDPAddrPort([]byte("ap"), nil, to.AddrPort()); err != nil {
			t.Fatalf("WriteMsgUDPAddrPort: %v", err)
		}
		if n, _, _, err := readMsg(buf); err != nil || string(buf[:n]) != "ap" {
			t.Fatalf("ReadMsgUDP = %q, %v; want \"ap\"", buf[:n], err)
		}
		_, _, err = c.WriteMsgUDP([]byte("x"), nil, to)
		wantNetError(t, err, "write", "udp", net.ErrWriteToConnected)
		_, _, err = u.WriteMsgUDP([]byte("x"), nil, nil)
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" || oe.Err.Error() != "missing address" {
			t.Errorf("WriteMsgUDP with no address on an unconnected socket = %v, want package net's \"missing address\"", err)
		}
		// A control message is refused, not ignored.
		_, _, err = u.WriteMsgUDP([]byte("x"), []byte{0}, to)
		wantNetError(t, err, "write", "udp", syscall.EOPNOTSUPP)
	})
}

// TestUDPZeroLength: an empty datagram is a datagram, both ways: Write
// and WriteTo send one, ReadFrom returns it as 0 bytes and its sender.
// Read with an empty buffer returns 0, nil at once and leaves the next
// datagram waiting, as package net's Read does (internal/poll's FD.Read
// answers a zero-byte read without a syscall), where ReadFrom with one
// takes the datagram, as recvfrom(2) does.
func TestUDPZeroLength(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 9000})
		c := dialUDP(t, client, "udp4", nil, "192.0.2.1:9000")
		buf := make([]byte, 10)
		read := func(pc net.PacketConn, b []byte) (int, net.Addr, error) {
			t.Helper()
			var n int
			var from net.Addr
			ch := start(clock, func() (err error) { n, from, err = pc.ReadFrom(b); return err })
			return n, from, now(t, ch, "ReadFrom").err
		}
		// Connected Write of nothing; then WriteTo of nothing, back.
		if n, err := c.Write(nil); n != 0 || err != nil {
			t.Fatalf("Write(nil) = %d, %v", n, err)
		}
		n, from, err := read(srv, buf)
		if n != 0 || err != nil || from.String() != c.LocalAddr().String() {
			t.Fatalf("ReadFrom = %d from %v, %v; want the empty datagram from %v", n, from, err, c.LocalAddr())
		}
		if n, err := srv.WriteTo([]byte{}, from); n != 0 || err != nil {
			t.Fatalf("WriteTo(empty) = %d, %v", n, err)
		}
		if n, _, err := read(c, buf); n != 0 || err != nil {
			t.Fatalf("client ReadFrom = %d, %v; want the empty datagram", n, err)
		}

		// Read(nil) with nothing waiting: 0, nil at once.
		var zn int
		ch := start(clock, func() (err error) { zn, err = c.Read(nil); return err })
		if r := now(t, ch, "Read(nil) with nothing to read"); zn != 0 || r.err != nil {
			t.Errorf("Read(nil) = %d, %v; want 0, nil", zn, r.err)
		}
		// Read(nil) with a datagram waiting leaves it for the next Read.
		srv.WriteTo([]byte("kept"), from)
		synctest.Wait()
		if n, err := c.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
		}
		if n, _, err := read(c, buf); err != nil || string(buf[:n]) != "kept" {
			t.Errorf("Read after Read(nil) = %q, %v; want the datagram Read(nil) left", buf[:n], err)
		}
		// ReadFrom(nil) takes it, as recvfrom does.
		srv.WriteTo([]byte("taken"), from)
		srv.WriteTo([]byte("next"), from)
		synctest.Wait()
		if n, from, err := c.ReadFrom(nil); n != 0 || err != nil || from == nil {
			t.Errorf("ReadFrom(nil) = %d, %v, %v; want 0, the sender, nil", n, from, err)
		}
		if n, _, err := read(c, buf); err != nil || string(buf[:n]) != "next" {
			t.Errorf("ReadFrom after ReadFrom(nil) = %q, %v; want the next datagram", buf[:n], err)
		}
		c.Close()
		if _, err := c.Read(nil); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read(nil) after Close = %v, want net.ErrClosed", err)
		}
	})
}

// TestUDPDatagramSizes: the largest datagram is what fits in one IP
// packet of 65,535 bytes, 65,507 bytes of payload over IPv4 and 65,527
// over IPv6 (no jumbograms); one byte more fails with EMSGSIZE, as
// Linux's ip_append_data and ip6_append_data refuse it, and nothing is
// sent. A datagram larger than the link's MTU leaves in fragments (DF
// clear, as Linux sends UDP with IP_PMTUDISC_WANT when the path MTU is
// unknown) and is reassembled whole.
func TestUDPDatagramSizes(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		for _, tc := range []struct {
			network, peer string
			max           int
		}{{"udp4", "192.0.2.1:9000", 65507}, {"udp6", "[2001:db8::1]:9000", 65527}} {
			srv := listenUDP(t, server, tc.network, &net.UDPAddr{Port: 9000})
			u := listenUDP(t, client, tc.network, nil)
			to := netip.MustParseAddrPort(tc.peer)
			buf := make([]byte, 70000)
			for _, n := range []int{3000, tc.max} {
				ip := server.Netstack().Stats().IP.PacketsReceived.Value()
				if _, err := u.WriteToUDPAddrPort(make([]byte, n), to); err != nil {
					t.Fatalf("%s: WriteTo %d bytes: %v", tc.network, n, err)
				}
				ch := start(clock, func() error {
					got, _, err := srv.ReadFrom(buf)
					if err == nil && got != n {
						return fmt.Errorf("read %d bytes", got)
					}
					return err
				})
				if r := now(t, ch, "ReadFrom"); r.err != nil {
					t.Fatalf("%s: a datagram of %d bytes: %v, want it whole", tc.network, n, r.err)
				}
				if frags := server.Netstack().Stats().IP.PacketsReceived.Value() - ip; frags < uint64(n/1500+1) {
					t.Errorf("%s: %d bytes came in %d IP packets, want fragments of the 1500-byte MTU", tc.network, n, frags)
				}
			}
			sent := client.UDPStats().Sent
			_, err := u.WriteToUDPAddrPort(make([]byte, tc.max+1), to)
			wantNetError(t, err, "write", "udp", syscall.EMSGSIZE)
			if client.UDPStats().Sent != sent {
				t.Errorf("%s: a datagram of %d bytes was counted sent", tc.network, tc.max+1)
			}
		}
	})
}

// TestUDPPortShare: binding a port already held fails with EADDRINUSE in
// package net's error, "listen udp4 :p: bind: address already in use",
// as Linux's udp_lib_get_port: a dual-stack "udp" socket holds the port
// in both families, so neither "udp4" on the wildcard or one address nor
// another "udp" may bind it; a "udp4" and a "udp6" (IPV6_V6ONLY) socket
// share it, each with its own family, as on Linux.
func TestUDPPortShare(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		bind := func(network, addr string) (*conn.UDPConn, error) {
			return conn.ListenUDP(server, network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		}
		dual, err := bind("udp", "[::]:7000")
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ network, addr string }{
			{"udp4", "0.0.0.0:7000"}, {"udp4", "192.0.2.1:7000"}, {"udp6", "[::]:7000"}, {"udp", "[::]:7000"},
		} {
			_, err := bind(tc.network, tc.addr)
			wantNetError(t, err, "listen", tc.network, syscall.EADDRINUSE)
			var oe *net.OpError
			if errors.As(err, &oe) && (oe.Net != tc.network || oe.Addr.String() != tc.addr || oe.Source != nil) {
				t.Errorf("bind %s %s under a dual-stack socket: %#v, want Net %s, Addr %s, no Source", tc.network, tc.addr, oe, tc.network, tc.addr)
			}
		}
		dual.Close()
		u4, err := bind("udp4", "0.0.0.0:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer u4.Close()
		u6, err := bind("udp6", "[::]:7000")
		if err != nil {
			t.Fatalf("udp6 on the port of a udp4 socket: %v, want both (IPV6_V6ONLY)", err)
		}
		defer u6.Close()
		for _, tc := range []struct {
			c    *conn.UDPConn
			peer string
		}{{u4, "192.0.2.1:7000"}, {u6, "[2001:db8::1]:7000"}} {
			c := dialUDP(t, client, "udp", nil, tc.peer)
			c.Write([]byte("which?"))
			wantDatagram(t, clock, tc.c, "which?")
		}
	})
}

// TestUDPPortUnreachable: a datagram to a port nobody holds is answered
// with ICMP port unreachable (RFC 1122 4.1.3.1), counted as NoPort, and
// the connected socket that sent it fails its next call with
// ECONNREFUSED, once, as on Linux.
func TestUDPPortUnreachable(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		for _, raddr := range []string{"192.0.2.1:9", "[2001:db8::1]:9"} {
			c := dialUDP(t, client, "udp", nil, raddr)
			before := server.UDPStats().NoPort
			read := start(clock, func() error {
				_, err := c.Read(make([]byte, 10))
				return err
			})
			if _, err := c.Write([]byte("anyone?")); err != nil {
				t.Fatalf("Write: %v", err)
			}
			r := now(t, read, "Read after port unreachable")
			wantNetError(t, r.err, "read", "udp", syscall.ECONNREFUSED)
			if got := server.UDPStats().NoPort - before; got != 1 {
				t.Errorf("%s: server NoPort went up by %d, want 1", raddr, got)
			}
			// The error is reported once; the socket stays usable.
			if _, err := c.Write([]byte("again")); err != nil {
				t.Errorf("Write after ECONNREFUSED: %v", err)
			}
			synctest.Wait()
			_, err := c.Write([]byte("and again"))
			wantNetError(t, err, "write", "udp", syscall.ECONNREFUSED)
		}
		// An unconnected socket never hears of it: Linux's
		// __udp4_lib_err reports an ICMP error only to a connected
		// socket unless IP_RECVERR is set.
		u := listenUDP(t, client, "udp", nil)
		before := server.UDPStats().NoPort
		for _, to := range []string{"192.0.2.1:9", "[2001:db8::1]:9", "192.0.2.1:9"} {
			if _, err := u.WriteToUDPAddrPort([]byte("anyone?"), netip.MustParseAddrPort(to)); err != nil {
				t.Errorf("WriteTo %s after a port unreachable: %v", to, err)
			}
			synctest.Wait()
		}
		if got := server.UDPStats().NoPort - before; got != 3 {
			t.Errorf("server NoPort went up by %d, want 3", got)
		}
		u.SetReadDeadline(clock.Now())
		_, _, err := u.ReadFrom(make([]byte, 10))
		wantNetError(t, err, "read", "udp", os.ErrDeadlineExceeded)
	})
}

// TestUDPErrors: misuse and failures as package net reports them, tested
// with errors.Is.
func TestUDPErrors(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		listenUDP(t, client, "udp4", &net.UDPAddr{Port: 5353}) // held
		connected := dialUDP(t, client, "udp", nil, "192.0.2.1:53")
		unconnected := listenUDP(t, client, "udp4", nil)
		only6 := listenUDP(t, client, "udp6", nil)
		closed := listenUDP(t, client, "udp4", nil)
		closed.Close()
		peer := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 53}

		for _, tc := range []struct {
			name, op string
			call     func() error
			want     error
		}{
			{"bind a port in use", "listen", func() error {
				_, err := conn.ListenUDP(client, "udp4", &net.UDPAddr{Port: 5353})
				return err
			}, syscall.EADDRINUSE},
			{"bind an address not ours", "listen", func() error {
				_, err := conn.ListenUDP(client, "udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 99)})
				return err
			}, syscall.EADDRNOTAVAIL},
			{"dial with no route", "dial", func() error {
				_, err := conn.DialUDP(client, "udp4", nil, &net.UDPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 53})
				return err
			}, syscall.ENETUNREACH},
			{"unknown network", "listen", func() error {
				_, err := conn.ListenPacket(client, "udp5", ":0")
				return err
			}, net.UnknownNetworkError("udp5")},
			{"datagram over 64 KiB", "write", func() error {
				_, err := unconnected.WriteTo(make([]byte, 70000), peer)
				return err
			}, syscall.EMSGSIZE},
			// Package net's error, not the kernel's EISCONN: its
			// writeTo checks before any syscall, and its own tests
			// assert e.Err == ErrWriteToConnected.
			{"WriteTo on a connected socket", "write", func() error {
				_, err := connected.WriteTo([]byte("x"), peer)
				return err
			}, net.ErrWriteToConnected},
			{"WriteToUDPAddrPort on a connected socket", "write", func() error {
				_, err := connected.WriteToUDPAddrPort([]byte("x"), peer.AddrPort())
				return err
			}, net.ErrWriteToConnected},
			{"Write on an unconnected socket", "write", func() error {
				_, err := unconnected.Write([]byte("x"))
				return err
			}, syscall.EDESTADDRREQ},
			{"IPv6 peer on an IPv4 socket", "write", func() error {
				_, err := unconnected.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("[2001:db8::1]:53"))
				return err
			}, syscall.EAFNOSUPPORT},
			// Linux's udpv6_sendmsg: an IPV6_V6ONLY socket has no
			// route to an IPv4(-mapped) peer.
			{"IPv4 peer on an IPv6-only socket", "write", func() error {
				_, err := only6.WriteTo([]byte("x"), peer)
				return err
			}, syscall.ENETUNREACH},
			{"read after Close", "read", func() error {
				_, _, err := closed.ReadFrom(make([]byte, 1))
				return err
			}, net.ErrClosed},
			{"write after Close", "write", func() error {
				_, err := closed.WriteTo([]byte("x"), peer)
				return err
			}, net.ErrClosed},
			{"Close twice", "close", closed.Close, net.ErrClosed},
		} {
			// t.Run may not be called in a synctest bubble.
			err := tc.call()
			t.Logf("%s: %v", tc.name, err)
			if ue, ok := tc.want.(net.UnknownNetworkError); ok {
				var got net.UnknownNetworkError
				if !errors.As(err, &got) || got != ue {
					t.Errorf("%s: got %v, want %v", tc.name, err, ue)
				}
				continue
			}
			wantNetError(t, err, tc.op, "udp", tc.want)
			var oe *net.OpError
			if tc.want == net.ErrWriteToConnected && errors.As(err, &oe) && oe.Err != tc.want {
				t.Errorf("%s: OpError.Err = %#v, want net.ErrWriteToConnected itself, as package net's tests assert", tc.name, oe.Err)
			}
		}
	})
}

// TestUDPErrorSyscall: the os.SyscallError in an error names the system
// call package net makes for the method on Linux (fd_posix.go): read and
// write for Read and Write, recvfrom and sendto for ReadFrom and WriteTo,
// recvmsg and sendmsg for ReadMsgUDP and WriteMsgUDP; so the text reads
// as net's, "write udp4 0.0.0.0:p: write: destination address required".
func TestUDPErrorSyscall(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c := dialUDP(t, client, "udp4", nil, "192.0.2.1:9") // nobody there
		u := listenUDP(t, client, "udp4", nil)
		peer := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}
		big := make([]byte, 70000)
		// refused sends a datagram the peer answers with ICMP port
		// unreachable, so that c's next call fails with ECONNREFUSED.
		refused := func() {
			c.Write([]byte("anyone?"))
			synctest.Wait()
		}
		for _, tc := range []struct {
			call, syscall string
			do            func() error
			want          error
		}{
			{"Read", "read", func() error { refused(); _, err := c.Read(make([]byte, 1)); return err }, syscall.ECONNREFUSED},
			{"ReadFrom", "recvfrom", func() error { refused(); _, _, err := c.ReadFrom(make([]byte, 1)); return err }, syscall.ECONNREFUSED},
			{"ReadMsgUDP", "recvmsg", func() error { refused(); _, _, _, _, err := c.ReadMsgUDP(make([]byte, 1), nil); return err }, syscall.ECONNREFUSED},
			{"Write", "write", func() error { refused(); _, err := c.Write([]byte("x")); return err }, syscall.ECONNREFUSED},
			{"Write unconnected", "write", func() error { _, err := u.Write([]byte("x")); return err }, syscall.EDESTADDRREQ},
			{"WriteTo", "sendto", func() error { _, err := u.WriteTo(big, peer); return err }, syscall.EMSGSIZE},
			{"WriteMsgUDP", "sendmsg", func() error { _, _, err := u.WriteMsgUDP(big, nil, peer); return err }, syscall.EMSGSIZE},
		} {
			err := tc.do()
			var se *os.SyscallError
			if !errors.Is(err, tc.want) || !errors.As(err, &se) || se.Syscall != tc.syscall {
				t.Errorf("%s: %v, want %v from %s, as package net's", tc.call, err, tc.want, tc.syscall)
			}
		}
		_, err := u.Write([]byte("x"))
		if want := "write udp4 " + u.LocalAddr().String() + ": write: destination address required"; err == nil || err.Error() != want {
			t.Errorf("Write on an unconnected socket: %v, want %q", err, want)
		}
	})
}

// TestUDPDeadlines: deadlines on the stack's clock, as TCP's: a blocked
// ReadFrom returns os.ErrDeadlineExceeded when the clock passes the
// deadline, not before; a past deadline fails at once; a moved deadline
// applies to a blocked call, one moved into the past ends it at once; the
// zero time removes it.
func TestUDPDeadlines(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c := listenUDP(t, client, "udp", nil)
		buf := make([]byte, 10)

		c.SetReadDeadline(clock.Now().Add(time.Second))
		ch := start(clock, func() error { _, _, err := c.ReadFrom(buf); return err })
		advance(clock, 999*time.Millisecond)
		notYet(t, ch, "ReadFrom before its deadline")
		advance(clock, time.Millisecond)
		wantNetError(t, now(t, ch, "ReadFrom at its deadline").err, "read", "udp", os.ErrDeadlineExceeded)

		// Passed: fails at once, and is a net.Error with Timeout.
		_, _, err := c.ReadFrom(buf)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("ReadFrom past the deadline: %v, want a timeout", err)
		}
		c.SetWriteDeadline(clock.Now().Add(-time.Second))
		_, err = c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9})
		wantNetError(t, err, "write", "udp", os.ErrDeadlineExceeded)

		// Extended while blocked.
		c.SetReadDeadline(clock.Now().Add(time.Second))
		ch = start(clock, func() error { _, _, err := c.ReadFrom(buf); return err })
		advance(clock, 500*time.Millisecond)
		c.SetReadDeadline(clock.Now().Add(time.Second))
		advance(clock, 900*time.Millisecond)
		notYet(t, ch, "ReadFrom after its deadline moved")
		advance(clock, 100*time.Millisecond)
		wantNetError(t, now(t, ch, "ReadFrom at the moved deadline").err, "read", "udp", os.ErrDeadlineExceeded)

		// Moved into the past while blocked: the call returns at once.
		c.SetReadDeadline(time.Time{})
		ch = start(clock, func() error { _, _, err := c.ReadFrom(buf); return err })
		notYet(t, ch, "ReadFrom before SetDeadline")
		c.SetDeadline(clock.Now().Add(-time.Second))
		wantNetError(t, now(t, ch, "ReadFrom after a past deadline was set").err, "read", "udp", os.ErrDeadlineExceeded)
		c.SetDeadline(time.Time{})

		// Removed: a blocked call waits until Close, which unblocks it.
		c.SetReadDeadline(time.Time{})
		ch = start(clock, func() error { _, _, err := c.ReadFrom(buf); return err })
		advance(clock, time.Hour)
		notYet(t, ch, "ReadFrom with no deadline")
		c.Close()
		wantNetError(t, now(t, ch, "ReadFrom after Close").err, "read", "udp", net.ErrClosed)
	})
}

// TestUDPReceiveBufferFull: datagrams arriving while the receive buffer
// is full are dropped and counted, never queued without bound.
func TestUDPReceiveBufferFull(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 9001})
		srv.SetReadBuffer(1) // clamped to the stack's minimum, a few KiB
		c := dialUDP(t, client, "udp4", nil, "192.0.2.1:9001")
		const sent = 20
		for i := range sent {
			if _, err := c.Write(make([]byte, 1000)); err != nil {
				t.Fatalf("Write %d: %v", i, err)
			}
			synctest.Wait()
		}
		st := server.UDPStats()
		got := 0
		for range sent {
			srv.SetReadDeadline(clock.Now().Add(time.Second))
			ch := start(clock, func() error { _, _, err := srv.ReadFrom(make([]byte, 2000)); return err })
			advance(clock, time.Second)
			if r := now(t, ch, "ReadFrom"); r.err != nil {
				break
			}
			got++
		}
		if st.ReceiveBufferFull == 0 || uint64(got)+st.ReceiveBufferFull != sent || st.Delivered != uint64(got) || st.Received != sent {
			t.Errorf("read %d, counters %+v: want drops, and read + ReceiveBufferFull = %d = Received", got, st, sent)
		}
		// The sockets' own counters say the same.
		if cs := srv.Stats(); cs.Received != sent || cs.Delivered != uint64(got) || cs.ReceiveBufferFull != st.ReceiveBufferFull || cs.Sent != 0 {
			t.Errorf("server socket's counters %+v, want %d received, %d delivered, %d refused", cs, sent, got, st.ReceiveBufferFull)
		}
		if cs := c.Stats(); cs.Sent != sent || cs.Received != 0 {
			t.Errorf("client socket's counters %+v, want %d sent", cs, sent)
		}
	})
}

// TestUDPReceiveBufferBound: a flood to a socket that does not read
// queues at most its receive buffer, 212 KiB by default (Linux's
// rmem_default), the rest dropped and counted (ReceiveBufferFull, Linux's
// RcvbufErrors); and SetReadBuffer cannot raise the bound past the
// stack's maximum, 4 MiB, as Linux caps SO_RCVBUF at rmem_max: a caller
// asking for 64 MiB does not get a socket that queues 64 MiB of a flood.
func TestUDPReceiveBufferBound(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		u := listenUDP(t, client, "udp4", nil)
		flood := func(port, n int) {
			for range n {
				u.WriteTo(make([]byte, 1000), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: port})
				synctest.Wait() // no drop on the cable
			}
		}
		for _, tc := range []struct {
			set, sent, bound int
		}{{0, 400, 212 << 10}, {64 << 20, 6000, 4 << 20}} {
			srv := listenUDP(t, server, "udp4", nil)
			if tc.set != 0 {
				srv.SetReadBuffer(tc.set)
			}
			flood(srv.LocalAddr().(*net.UDPAddr).Port, tc.sent)
			st := srv.Stats()
			// gVisor refuses a datagram once the buffer holds its size
			// or more: it may go over by one datagram.
			if st.Delivered*1000 > uint64(tc.bound+1000) || st.Delivered+st.ReceiveBufferFull != uint64(tc.sent) || st.ReceiveBufferFull == 0 {
				t.Errorf("SetReadBuffer(%d), %d datagrams of 1000 bytes unread: %+v; want at most %d bytes queued, the rest counted ReceiveBufferFull", tc.set, tc.sent, st, tc.bound)
			}
		}
	})
}

// TestUDPSetBufferBelowMinimum: SetReadBuffer and SetWriteBuffer with a
// size below the stack's minimum, zero and negative included, succeed and
// set the minimum, as Linux raises SO_RCVBUF and SO_SNDBUF to its own
// (sk_setsockopt): a socket whose buffer was set to 0 still receives.
func TestUDPSetBufferBelowMinimum(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 9001})
		c := dialUDP(t, client, "udp4", nil, "192.0.2.1:9001")
		for _, n := range []int{0, -1} {
			if err := srv.SetReadBuffer(n); err != nil {
				t.Errorf("SetReadBuffer(%d) = %v, want nil", n, err)
			}
			if err := c.SetWriteBuffer(n); err != nil {
				t.Errorf("SetWriteBuffer(%d) = %v, want nil", n, err)
			}
		}
		// The minimum, 4 KiB, holds three datagrams of 1000 bytes.
		for i := range 3 {
			if _, err := c.Write(make([]byte, 1000)); err != nil {
				t.Fatalf("Write %d: %v", i, err)
			}
			synctest.Wait()
		}
		if st := server.UDPStats(); st.Delivered != 3 || st.ReceiveBufferFull != 0 {
			t.Errorf("counters %+v, want 3 delivered to the minimal buffer, none refused", st)
		}
	})
}

// TestUDPBroadcast: a datagram to the subnet's broadcast address reaches
// a socket bound to the wildcard address on the other stack, not one
// bound to a unicast address (Linux's __udp_is_mcast_sock). The limited
// broadcast, 255.255.255.255, leaves by the interface of the socket's
// bound address, and without one needs a route, as Linux's
// ip_route_output_key_hash_rcu: ENETUNREACH with no default route.
func TestUDPBroadcast(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 67})
		unicast := listenUDP(t, server, "udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 68})
		c := listenUDP(t, client, "udp4", nil)
		if _, err := c.WriteTo([]byte("all"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 255), Port: 67}); err != nil {
			t.Fatal(err)
		}
		wantDatagram(t, clock, srv, "all")
		c.WriteTo([]byte("not for you"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 255), Port: 68})
		synctest.Wait()
		unicast.SetReadDeadline(clock.Now())
		if _, _, err := unicast.ReadFrom(make([]byte, 20)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a socket bound to 192.0.2.1 got a broadcast: %v", err)
		}

		limited := &net.UDPAddr{IP: net.IPv4bcast, Port: 67}
		_, err := c.WriteTo([]byte("everyone"), limited)
		wantNetError(t, err, "write", "udp", syscall.ENETUNREACH)
		bound := listenUDP(t, client, "udp4", &net.UDPAddr{IP: tsPrefix.Addr().AsSlice()})
		if _, err := bound.WriteTo([]byte("everyone"), limited); err != nil {
			t.Fatalf("limited broadcast from a bound socket: %v", err)
		}
		wantDatagram(t, clock, srv, "everyone")
		if err := client.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), peerAddr, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteTo([]byte("everyone"), limited); err != nil {
			t.Fatalf("limited broadcast with a default route: %v", err)
		}
		wantDatagram(t, clock, srv, "everyone")
		c.SetBroadcast(false)
		_, err = c.WriteTo([]byte("all"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 255), Port: 67})
		wantNetError(t, err, "write", "udp", syscall.EACCES)
	})
}

// TestUDPMulticast: a socket that joined a group on its interface gets
// datagrams sent to the group.
func TestUDPMulticast(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		group := netip.MustParseAddr("239.1.2.3")
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 5000})
		if err := srv.JoinGroup(1, group); err != nil {
			t.Fatal(err)
		}
		c := listenUDP(t, client, "udp4", nil)
		if err := c.SetMulticastInterface(1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToUDPAddrPort([]byte("group"), netip.AddrPortFrom(group, 5000)); err != nil {
			t.Fatal(err)
		}
		wantDatagram(t, clock, srv, "group")
		if err := srv.JoinGroup(1, netip.MustParseAddr("192.0.2.1")); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("JoinGroup(unicast) = %v, want EINVAL", err)
		}

		// ListenMulticastUDP: bound and joined in one call, as in net.
		m, err := conn.ListenMulticastUDP(server, "udp4", 1, &net.UDPAddr{IP: net.IPv4(239, 1, 2, 4), Port: 5001})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		c.WriteToUDPAddrPort([]byte("group 2"), netip.MustParseAddrPort("239.1.2.4:5001"))
		wantDatagram(t, clock, m, "group 2")
	})
}

// TestDialerUDP: Dialer.DialContext("udp") gives a connected *UDPConn as
// a net.Conn that is also a net.PacketConn, as net.Dial's is (Go's
// resolver relies on that).
func TestDialerUDP(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		udpEchoServer(t, server, "udp", "192.0.2.1:7")
		c, err := (&conn.Dialer{Stack: client}).DialContext(context.Background(), "udp", "192.0.2.1:7")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.(net.PacketConn); !ok {
			t.Errorf("%T is not a net.PacketConn", c)
		}
		c.Write([]byte("ping"))
		buf := make([]byte, 10)
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "ping" {
			t.Fatalf("Read = %q, %v", buf[:n], err)
		}
	})
}

// TestUDPConnLike runs the checks of nettest.TestConn that apply to a
// connected datagram socket (its byte-stream checks do not): concurrent
// use, Close unblocking blocked calls, deadlines on a blocked Read.
func TestUDPConnLike(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		udpEchoServer(t, server, "udp", "192.0.2.1:7")
		c := dialUDP(t, client, "udp", nil, "192.0.2.1:7")
		// Concurrent writers and readers: every datagram comes back once.
		const writers, each = 4, 25
		done := make(chan int)
		go func() {
			got := 0
			buf := make([]byte, 100)
			for got < writers*each {
				if _, err := c.Read(buf); err != nil {
					break
				}
				got++
			}
			done <- got
		}()
		for w := range writers {
			go func() {
				for i := range each {
					c.Write([]byte{byte(w), byte(i)})
				}
			}()
		}
		if got := <-done; got != writers*each {
			t.Errorf("echoed %d datagrams, want %d", got, writers*each)
		}
		// A blocked Read and a blocked Read with a deadline: Close
		// unblocks the one, the deadline the other.
		c.SetReadDeadline(clock.Now().Add(time.Minute))
		ch1 := start(clock, func() error { _, err := c.Read(make([]byte, 1)); return err })
		advance(clock, time.Minute)
		wantNetError(t, now(t, ch1, "Read at its deadline").err, "read", "udp", os.ErrDeadlineExceeded)
		c.SetReadDeadline(time.Time{})
		ch2 := start(clock, func() error { _, err := c.Read(make([]byte, 1)); return err })
		notYet(t, ch2, "Read with no deadline")
		c.Close()
		wantNetError(t, now(t, ch2, "Read after Close").err, "read", "udp", net.ErrClosed)
	})
}

// TestUDPLoopback: 127.0.0.1 and ::1 work inside one stack with no
// interface at all, like Linux's lo.
func TestUDPLoopback(t *testing.T) {
	s := stack.New(stack.Options{Clock: faketime.NewManualClock()})
	defer s.Close()
	for _, addr := range []string{"127.0.0.1:7", "[::1]:7"} {
		pc, err := conn.ListenPacket(s, "udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := (&conn.Dialer{Stack: s}).DialContext(context.Background(), "udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("self"))
		buf := make([]byte, 10)
		n, from, err := pc.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "self" || from.String() != c.LocalAddr().String() {
			t.Errorf("%s: ReadFrom = %q from %v, %v; want \"self\" from %v", addr, buf[:n], from, err, c.LocalAddr())
		}
		c.Close()
		pc.Close()
	}
}

// TestUDPStackClose: closing the stack unblocks a blocked ReadFrom and
// fails later calls with ECONNABORTED, as it does TCP connections.
func TestUDPStackClose(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		s := stack.New(stack.Options{Clock: clock})
		pc := listenUDP(t, s, "udp", nil)
		ch := start(clock, func() error { _, _, err := pc.ReadFrom(make([]byte, 10)); return err })
		notYet(t, ch, "ReadFrom")
		s.Close()
		wantNetError(t, now(t, ch, "ReadFrom after Stack.Close").err, "read", "udp", syscall.ECONNABORTED)
		_, err := pc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
		wantNetError(t, err, "write", "udp", syscall.ECONNABORTED)
	})
}

// TestDialUDPLocalPort: a laddr with a port and no IP binds that port on
// every address, as net.DialUDP does; the peer sees it.
func TestDialUDPLocalPort(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		srv := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 7})
		c := dialUDP(t, client, "udp4", &net.UDPAddr{Port: 4242}, "192.0.2.1:7")
		if la := c.LocalAddr().(*net.UDPAddr); la.Port != 4242 {
			t.Errorf("LocalAddr %v, want port 4242", la)
		}
		c.Write([]byte("from 4242"))
		srv.SetReadDeadline(clock.Now().Add(time.Second))
		_, from, err := srv.ReadFromUDPAddrPort(make([]byte, 16))
		if err != nil || from != netip.MustParseAddrPort("192.0.2.2:4242") {
			t.Fatalf("ReadFrom: from %v, %v; want 192.0.2.2:4242", from, err)
		}
	})
}
