package conn_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestDialLinkLocalZone: a link-local address means something only on
// one link, so its zone picks the interface, as package net passes the
// zone to connect(2) as sin6_scope_id (Linux's tcp_v6_connect binds the
// socket to that interface, sk_bound_dev_if). A stack has no interface
// names: the zone is the interface's number, as a numeric zone is to
// package net. Here the client has two links, each with a server at the
// same link-local address fe80::2 (as two links may well have): %1
// reaches the first, %2 the second, and the connection's addresses carry
// the zone, as package net's do for a link-local address, on both ends.
// As on Linux (package net on this host's kernel answers the same): an
// interface that does not exist is ENETUNREACH, a link-local address
// without a zone, or with a name for one, EINVAL (tcp_v6_connect).
func TestDialLinkLocalZone(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client := stack.New(stack.Options{Clock: clock})
		t.Cleanup(client.Close)
		var servers [2]*stack.Stack
		var nics [2]string
		for i, local := range []string{"fe80::1/64", "fe80::3/64"} {
			a, b := tap.Pipe()
			nic, err := client.AddNIC(a, netip.MustParsePrefix(local))
			if err != nil {
				t.Fatal(err)
			}
			nics[i] = strconv.Itoa(int(nic))
			servers[i] = newTS(t, b, clock, tcp.Options{}, netip.MustParsePrefix("fe80::2/64"))
		}
		var accepted [2]<-chan *conn.Conn
		for i, s := range servers {
			ln, err := conn.Listen(s, "tcp", ":80")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted[i] = acceptAll(ln)
		}
		for i := range servers {
			addr := "[fe80::2%" + nics[i] + "]:80"
			c, err := (&conn.Dialer{Stack: client}).DialContext(context.Background(), "tcp", addr)
			if err != nil {
				t.Fatalf("Dial %s: %v", addr, err)
			}
			var a *conn.Conn
			reached := 0
			select {
			case a = <-accepted[0]:
			case a = <-accepted[1]:
				reached = 1
			}
			if reached != i {
				t.Errorf("Dial %s reached the server on interface %s, want %s", addr, nics[reached], nics[i])
			}
			local := []string{"fe80::1", "fe80::3"}[i]
			if got, want := a.RemoteAddr().String(), "["+local+"%1]"; !strings.HasPrefix(got, want) {
				t.Errorf("Dial %s came from %s, want %s on the server's interface 1", addr, got, want)
			}
			if got, want := c.RemoteAddr().String(), addr; got != want {
				t.Errorf("RemoteAddr() = %s, want %s", got, want)
			}
			if got, want := c.LocalAddr().(*net.TCPAddr).Zone, nics[i]; got != want {
				t.Errorf("LocalAddr() = %v, want zone %s", c.LocalAddr(), want)
			}
			a.Close()
			c.Close()
		}
		for _, tc := range []struct {
			addr string
			want error
		}{
			{"[fe80::2%9]:80", syscall.ENETUNREACH},
			{"[fe80::2%eth0]:80", syscall.EINVAL},
			{"[fe80::2]:80", syscall.EINVAL},
		} {
			_, err := (&conn.Dialer{Stack: client}).DialContext(context.Background(), "tcp", tc.addr)
			if !errors.Is(err, tc.want) {
				t.Errorf("Dial %s = %v, want %v", tc.addr, err, tc.want)
			}
		}
	})
}

// TestLinkLocalZoneUDPAndListen: the zone of a link-local address picks
// the interface for a UDP dial, a UDP bind and a TCP listen, as it does
// for a TCP dial (TestDialLinkLocalZone). Linux's __ip6_datagram_connect
// binds a socket connected to a link-local address to the zone's
// interface and refuses one without a zone (EINVAL); __inet6_bind does
// the same for a bind to one, and answers EADDRNOTAVAIL when that
// interface does not hold the address. Addresses carry the zone, as
// package net's do.
func TestLinkLocalZoneUDPAndListen(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client := stack.New(stack.Options{Clock: clock})
		t.Cleanup(client.Close)
		var servers [2]*stack.Stack
		var nics [2]string
		var lns [2]*conn.UDPConn
		for i, local := range []string{"fe80::1/64", "fe80::3/64"} {
			a, b := tap.Pipe()
			nic, err := client.AddNIC(a, netip.MustParsePrefix(local))
			if err != nil {
				t.Fatal(err)
			}
			nics[i] = strconv.Itoa(int(nic))
			servers[i] = newTS(t, b, clock, tcp.Options{}, netip.MustParsePrefix("fe80::2/64"))
			lns[i] = listenUDP(t, servers[i], "udp6", &net.UDPAddr{Port: 53})
		}
		for i := range servers {
			addr := "[fe80::2%" + nics[i] + "]:53"
			nc, err := conn.Dial(client, "udp6", addr)
			if err != nil {
				t.Fatalf("Dial udp6 %s: %v", addr, err)
			}
			if _, err := nc.Write([]byte("which?")); err != nil {
				t.Fatalf("Write to %s: %v", addr, err)
			}
			wantDatagram(t, clock, lns[i], "which?")
			if got := nc.RemoteAddr().String(); got != addr {
				t.Errorf("RemoteAddr() = %s, want %s", got, addr)
			}
			if got, want := nc.LocalAddr().(*net.UDPAddr).Zone, nics[i]; got != want {
				t.Errorf("LocalAddr() = %v, want zone %s", nc.LocalAddr(), want)
			}
			nc.Close()
		}
		for _, tc := range []struct {
			addr string
			want error
		}{
			{"[fe80::2%9]:53", syscall.ENETUNREACH},
			{"[fe80::2%eth0]:53", syscall.EINVAL},
			{"[fe80::2]:53", syscall.EINVAL},
		} {
			if _, err := conn.Dial(client, "udp6", tc.addr); !errors.Is(err, tc.want) {
				t.Errorf("Dial udp6 %s = %v, want %v", tc.addr, err, tc.want)
			}
		}

		// A bind: the zone's interface must hold the address.
		at := "[fe80::1%" + nics[0] + "]:53"
		pc, err := conn.ListenPacket(client, "udp6", at)
		if err != nil {
			t.Fatalf("ListenPacket udp6 %s: %v", at, err)
		}
		defer pc.Close()
		if got := pc.LocalAddr().String(); got != at {
			t.Errorf("LocalAddr() = %s, want %s", got, at)
		}
		if _, err := lns[0].WriteTo([]byte("to you"), &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 53, Zone: "1"}); err != nil {
			t.Fatal(err)
		}
		wantDatagram(t, clock, pc, "to you")
		l, err := conn.Listen(client, "tcp6", "[fe80::1%"+nics[0]+"]:80")
		if err != nil {
			t.Fatalf("Listen tcp6 on fe80::1%%%s: %v", nics[0], err)
		}
		if got, want := l.Addr().String(), "[fe80::1%"+nics[0]+"]:80"; got != want {
			t.Errorf("Listener.Addr() = %s, want %s", got, want)
		}
		l.Close()
		for _, tc := range []struct {
			network, addr string
			want          error
		}{
			{"udp6", "[fe80::1]:54", syscall.EINVAL},
			{"udp6", "[fe80::1%eth0]:54", syscall.EINVAL},
			{"udp6", "[fe80::1%" + nics[1] + "]:54", syscall.EADDRNOTAVAIL},
			{"tcp6", "[fe80::1]:81", syscall.EINVAL},
			{"tcp6", "[fe80::1%" + nics[1] + "]:81", syscall.EADDRNOTAVAIL},
		} {
			var err error
			if tc.network == "tcp6" {
				var l *conn.Listener
				if l, err = conn.Listen(client, tc.network, tc.addr); err == nil {
					l.Close()
				}
			} else {
				var pc net.PacketConn
				if pc, err = conn.ListenPacket(client, tc.network, tc.addr); err == nil {
					pc.Close()
				}
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Listen %s %s = %v, want %v", tc.network, tc.addr, err, tc.want)
			}
		}
	})
}
