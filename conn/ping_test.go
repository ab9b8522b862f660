package conn_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// TestPingPair: conn.Ping from one tapstack stack to another, IPv4 and
// IPv6, gets the echo reply; the round trip on a fake clock that nobody
// advances is 0.
func TestPingPair(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		for _, a := range []string{"192.0.2.1", "2001:db8::1"} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rtt, err := conn.Ping(ctx, client, netip.MustParseAddr(a))
			cancel()
			if err != nil || rtt != 0 {
				t.Errorf("Ping %s = %v, %v; want 0, nil", a, rtt, err)
			}
		}
	})
}

// TestPingErrors: no route fails at once with ENETUNREACH; a host that
// never answers ends with the context's deadline.
func TestPingErrors(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		_, err := conn.Ping(context.Background(), client, netip.MustParseAddr("198.51.100.9"))
		wantNetError(t, err, "write", "ip4:icmp", syscall.ENETUNREACH)

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = conn.Ping(ctx, client, netip.MustParseAddr("192.0.2.77"))
		wantNetError(t, err, "read", "ip4:icmp", context.DeadlineExceeded)

		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		_, err = conn.Ping(ctx, client, netip.MustParseAddr("192.0.2.1"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Ping with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

// TestPingLoopback: a stack with no interface answers its own
// 127.0.0.1 and ::1.
func TestPingLoopback(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	for _, a := range []string{"127.0.0.1", "127.1.2.3", "::1"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := conn.Ping(ctx, s, netip.MustParseAddr(a))
		cancel()
		if err != nil {
			t.Errorf("Ping %s: %v", a, err)
		}
	}
}

// TestICMPConnXNet: ListenPacket("ip4:icmp") and ("ip6:ipv6-icmp") carry
// messages that golang.org/x/net/icmp marshals and parses: an echo
// request written comes back as an echo reply with the socket's ID, the
// sequence number and the data.
func TestICMPConnXNet(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, _ := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		for _, tc := range []struct {
			network, laddr, peer string
			req, rep             icmp.Type
			proto                int
		}{
			{"ip4:icmp", "0.0.0.0", "192.0.2.1", ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply, 1},
			{"ip4:1", "192.0.2.2", "192.0.2.1", ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply, 1},
			{"ip6:ipv6-icmp", "", "2001:db8::1", ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58},
		} {
			pc, err := conn.ListenPacket(client, tc.network, tc.laddr)
			if err != nil {
				t.Fatal(err)
			}
			id := pc.(*conn.ICMPConn).ID()
			data := []byte("x/net/icmp message")
			req, err := (&icmp.Message{Type: tc.req, Body: &icmp.Echo{ID: 1234, Seq: 7, Data: data}}).Marshal(nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pc.WriteTo(req, &net.IPAddr{IP: net.ParseIP(tc.peer)}); err != nil {
				t.Fatalf("%s: WriteTo: %v", tc.network, err)
			}
			buf := make([]byte, 1500)
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: ReadFrom: %v", tc.network, err)
			}
			m, err := icmp.ParseMessage(tc.proto, buf[:n])
			if err != nil {
				t.Fatalf("%s: ParseMessage: %v", tc.network, err)
			}
			e, ok := m.Body.(*icmp.Echo)
			if m.Type != tc.rep || !ok || e.ID != id || e.Seq != 7 || !bytes.Equal(e.Data, data) {
				t.Errorf("%s: reply %+v %+v, want an echo reply with ID %d (the socket's, as a ping socket's), Seq 7 and the data", tc.network, m, m.Body, id)
			}
			if from.String() != tc.peer {
				t.Errorf("%s: reply from %v, want %s", tc.network, from, tc.peer)
			}
			// Wrong family: refused.
			if _, err := pc.WriteTo(req, &net.IPAddr{IP: net.ParseIP("198.51.100.1").To16()}); tc.proto == 58 && !errors.Is(err, syscall.EAFNOSUPPORT) {
				t.Errorf("%s: WriteTo an IPv4 address = %v, want EAFNOSUPPORT", tc.network, err)
			}
			pc.Close()
		}
		if _, err := conn.ListenPacket(client, "ip4:tcp", ""); err == nil {
			t.Error(`ListenPacket("ip4:tcp") succeeded; only ICMP echo is offered`)
		}
	})
}
