package stack_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// udpEvents collects a stack's UDP events.
type udpEvents chan event.Event

func (c udpEvents) observe(ev event.Event) {
	switch ev.Kind {
	case event.KindUDPDeliver, event.KindUDPNoPort, event.KindUDPDrop, event.KindUDPSend:
		select {
		case c <- ev:
		default: // the test reads far fewer; a full channel is a failure it will see
		}
	}
}

// next returns the next UDP event, or fails after a generous bound: the
// event is reported while the datagram is delivered, so it only waits for
// the cable.
func (c udpEvents) next(t *testing.T) event.Event {
	t.Helper()
	select {
	case ev := <-c:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no UDP event")
	}
	return event.Event{}
}

func udpPair(t *testing.T) (p *stack.Pair, server, client udpEvents) {
	t.Helper()
	server, client = make(udpEvents, 256), make(udpEvents, 256)
	p, err := stack.NewPair(stack.PairOptions{
		Server: stack.Options{TCP: tcp.Options{Observer: server.observe}},
		Client: stack.Options{TCP: tcp.Options{Observer: client.observe}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, server, client
}

// TestUDPEvents: each datagram that reaches the server's UDP is one event
// naming its outcome, and each one a socket sends is one event at the
// sender, with the datagram's ends and length.
func TestUDPEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		// listen opens the server's socket on port 53, or nothing.
		listen func(t *testing.T, s *stack.Stack) *conn.UDPConn
		// sends is how many 1000-byte datagrams the client sends.
		sends int
		kind  event.Kind
		drop  event.DropReason
		note  string
	}{
		{name: "delivered", listen: listen53, sends: 1, kind: event.KindUDPDeliver},
		{name: "no port", sends: 1, kind: event.KindUDPNoPort, note: "answered ICMP port unreachable"},
		{name: "receive buffer full", listen: func(t *testing.T, s *stack.Stack) *conn.UDPConn {
			c := listen53(t, s)
			// The smallest buffer gVisor allows (it clamps, as Linux
			// clamps to SOCK_MIN_RCVBUF): a few datagrams fill it,
			// and nobody reads.
			if err := c.SetReadBuffer(1); err != nil {
				t.Fatal(err)
			}
			return c
		}, sends: 64, kind: event.KindUDPDrop, drop: event.DropBufferFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, server, client := udpPair(t)
			if tc.listen != nil {
				defer tc.listen(t, p.Server).Close()
			}
			to := netip.AddrPortFrom(p.ServerAddr, 53)
			c, err := conn.DialUDP(p.Client, "udp", nil, net.UDPAddrFromAddrPort(to))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			from := c.LocalAddr().(*net.UDPAddr).AddrPort()
			msg := make([]byte, 1000)
			want := event.ConnID{Local: to, Remote: from}
			for i := range tc.sends {
				if _, err := c.Write(msg); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				sent := client.next(t)
				if sent.Kind != event.KindUDPSend || sent.Conn != (event.ConnID{Local: from, Remote: to}) || sent.Key.Len != len(msg) {
					t.Fatalf("client event %v, want a send of %d bytes %v > %v", sent, len(msg), from, to)
				}
				ev := server.next(t)
				if ev.Conn != want || ev.Key.Len != len(msg) {
					t.Fatalf("server event %v, want one about %d bytes %v", ev, len(msg), want)
				}
				if ev.Kind == event.KindUDPDeliver && tc.kind != event.KindUDPDeliver {
					continue // the buffer is not full yet
				}
				if ev.Kind != tc.kind || ev.Drop != tc.drop || ev.Note != tc.note {
					t.Fatalf("server event %v (kind %v, drop %v, note %q), want kind %v, drop %v, note %q", ev, ev.Kind, ev.Drop, ev.Note, tc.kind, tc.drop, tc.note)
				}
				if !strings.Contains(ev.String(), "udp datagram 1000 bytes") {
					t.Errorf("String() = %q", ev.String())
				}
				return
			}
			t.Fatalf("no %v after %d datagrams", tc.kind, tc.sends)
		})
	}
}

// TestUDPEventBadChecksum: a datagram damaged on the cable fails UDP's
// checksum at the socket it was for: a drop with that reason, after
// which the socket still takes intact ones. The fault middleware changes
// one byte after the IP header of every frame the client sends (the
// seed is fixed: the byte lands in the payload, which the checksum
// covers, not in the ports).
func TestUDPEventBadChecksum(t *testing.T) {
	server := make(udpEvents, 16)
	var fault *tap.Fault
	p, err := stack.NewPair(stack.PairOptions{
		Server: stack.Options{TCP: tcp.Options{Observer: server.observe}},
		ClientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			fault = tap.NewFault(l, tap.FaultConfig{Corrupt: 1, Seed: 1})
			return fault
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	defer listen53(t, p.Server).Close()
	c, err := conn.DialUDP(p.Client, "udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ServerAddr, 53)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	ev := server.next(t)
	if ev.Kind != event.KindUDPDrop || ev.Drop != event.DropBadChecksum || ev.Key.Len != 1000 || ev.Conn.Local.Port() != 53 {
		t.Fatalf("server event %v (kind %v, drop %v), want a bad checksum drop of 1000 bytes to port 53", ev, ev.Kind, ev.Drop)
	}
	// To a port no socket holds: damaged, so not answered either.
	c9, err := conn.DialUDP(p.Client, "udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ServerAddr, 9)))
	if err != nil {
		t.Fatal(err)
	}
	defer c9.Close()
	if _, err := c9.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	ev = server.next(t)
	if ev.Kind != event.KindUDPDrop || ev.Drop != event.DropBadChecksum || ev.Conn.Local.Port() != 9 {
		t.Fatalf("server event %v (kind %v, drop %v), want a bad checksum drop to port 9", ev, ev.Kind, ev.Drop)
	}
	if st := p.Server.UDPStats(); st.Checksum != 2 {
		t.Errorf("server UDPStats %+v, want Checksum 2", st)
	}
	if fault.Stats().Corrupted == 0 {
		t.Error("the fault middleware corrupted nothing")
	}
}

func listen53(t *testing.T, s *stack.Stack) *conn.UDPConn {
	t.Helper()
	c, err := conn.ListenUDP(s, "udp", &net.UDPAddr{Port: 53})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestUDPEventNoPortAnswered: the ICMP port unreachable the no-port event
// announces does reach the sender, over IPv4 and IPv6: its connected
// socket fails with ECONNREFUSED.
func TestUDPEventNoPortAnswered(t *testing.T) {
	server := make(udpEvents, 16)
	p, err := stack.NewPair(stack.PairOptions{
		Server:         stack.Options{TCP: tcp.Options{Observer: server.observe}},
		ClientPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")},
		ServerPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, to := range []string{"192.0.2.1:9", "[2001:db8::1]:9"} {
		c, err := conn.DialUDP(p.Client, "udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		ev := server.next(t)
		if ev.Kind != event.KindUDPNoPort || ev.Note != "answered ICMP port unreachable" || ev.Conn.Local != netip.MustParseAddrPort(to) {
			t.Fatalf("server event %v, want no port, answered, for %s", ev, to)
		}
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: read after the no-port event: %v, want ECONNREFUSED", to, err)
		}
	}
}

// TestUDPEventBroadcast: a broadcast reaches the socket bound to its
// port; one to a port no socket holds is not answered (RFC 1122 3.2.2:
// no ICMP error for a datagram to a broadcast address).
func TestUDPEventBroadcast(t *testing.T) {
	p, server, _ := udpPair(t)
	c, err := conn.ListenUDP(p.Client, "udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := conn.ListenUDP(p.Server, "udp4", &net.UDPAddr{Port: 67})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct {
		port uint16
		kind event.Kind
		note string
	}{
		{port: 9, kind: event.KindUDPNoPort, note: "not answered (broadcast or multicast destination)"},
		{port: 67, kind: event.KindUDPDeliver},
	} {
		to := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.255"), tc.port)
		if _, err := c.WriteToUDPAddrPort([]byte("all"), to); err != nil {
			t.Fatal(err)
		}
		ev := server.next(t)
		if ev.Kind != tc.kind || ev.Note != tc.note || ev.Conn.Local != to {
			t.Errorf("port %d: event %v (kind %v, note %q), want kind %v, note %q", tc.port, ev, ev.Kind, ev.Note, tc.kind, tc.note)
		}
	}
}

// TestUDPEventsLoopback: datagrams between sockets of one stack, over the
// loopback interface and over a local route to the stack's own address,
// are observed too.
func TestUDPEventsLoopback(t *testing.T) {
	p, server, _ := udpPair(t)
	ln := listen53(t, p.Server)
	defer ln.Close()
	for _, to := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), p.ServerAddr} {
		c, err := conn.DialUDP(p.Server, "udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to, 53)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		var got []event.Kind
		for range 2 {
			got = append(got, server.next(t).Kind)
		}
		c.Close()
		// The send is reported once Write returns, and a local route
		// delivers within Write: here the delivery comes first.
		if got[0] != event.KindUDPDeliver || got[1] != event.KindUDPSend {
			t.Errorf("to %v: events %v, want [udp deliver, udp send]", to, got)
		}
	}
}

// BenchmarkUDPObserved measures what watching UDP costs: one 512-byte
// datagram from client to server over tap.Pipe per op, written and read,
// with and without an observer on both stacks (an observer that counts,
// the cheapest there is).
func BenchmarkUDPObserved(b *testing.B) {
	for _, observed := range []bool{false, true} {
		name := map[bool]string{false: "NoObserver", true: "Observer"}[observed]
		b.Run(name, func(b *testing.B) {
			var events atomic.Int64
			var opts stack.Options
			if observed {
				opts.TCP.Observer = func(event.Event) { events.Add(1) }
			}
			p, err := stack.NewPair(stack.PairOptions{Client: opts, Server: opts})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			srv, err := conn.ListenUDP(p.Server, "udp4", &net.UDPAddr{Port: 9})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			c, err := conn.DialUDP(p.Client, "udp4", nil, &net.UDPAddr{IP: p.ServerAddr.AsSlice(), Port: 9})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg, buf := make([]byte, 512), make([]byte, 1024)
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := srv.ReadFrom(buf); err != nil {
					b.Fatal(err)
				}
			}
			if observed && events.Load() < int64(2*b.N) {
				b.Errorf("%d events for %d datagrams, want a send and a delivery each", events.Load(), b.N)
			}
		})
	}
}
