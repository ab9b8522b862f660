package conn_test

// Package net's conventions, one test each, written as package net's own
// tests are: the call, and what the caller sees.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// acceptAll accepts on ln until it closes, sending each connection on.
func acceptAll(ln *conn.Listener) <-chan *conn.Conn {
	ch := make(chan *conn.Conn, 16)
	go func() {
		defer close(ch)
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	return ch
}

// TestListenFamily: "tcp4" and "tcp6" on the wildcard address take only
// their family (tcp6 as IPV6_V6ONLY) and report the family's wildcard
// address; a dial of the other family is refused (RST), as on Linux;
// "tcp" takes both.
func TestListenFamily(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		for _, tc := range []struct {
			network, address, addr string
			v4, v6                 bool
		}{
			{"tcp4", ":8004", "0.0.0.0:8004", true, false},
			{"tcp4", "0.0.0.0:8014", "0.0.0.0:8014", true, false},
			{"tcp6", ":8006", "[::]:8006", false, true},
			{"tcp6", "[::]:8016", "[::]:8016", false, true},
			{"tcp", ":8000", "[::]:8000", true, true},
			// Package net's "tcp" wildcard listener is a dual-stack
			// IPv6 socket whichever wildcard is given, and says so.
			{"tcp", "0.0.0.0:8010", "[::]:8010", true, true},
			{"tcp", "[::]:8020", "[::]:8020", true, true},
			{"tcp4", "[::]:8024", "0.0.0.0:8024", true, false},
		} {
			ln, err := conn.Listen(server, tc.network, tc.address)
			if err != nil {
				t.Fatal(err)
			}
			if got := ln.Addr().String(); got != tc.addr {
				t.Errorf("Listen(%q, %q).Addr() = %s, want %s", tc.network, tc.address, got, tc.addr)
			}
			accepted := acceptAll(ln)
			port := ln.Addr().(*net.TCPAddr).Port
			for _, peer := range []struct {
				addr string
				ok   bool
			}{{"192.0.2.1", tc.v4}, {"2001:db8::1", tc.v6}} {
				c, err := conn.Dial(client, "tcp", netip.AddrPortFrom(netip.MustParseAddr(peer.addr), uint16(port)).String())
				if !peer.ok {
					// No listener for this family: the SYN is reset,
					// as on Linux.
					if !errors.Is(err, syscall.ECONNREFUSED) {
						t.Errorf("%s %s: dial from a %s peer = %v, want ECONNREFUSED", tc.network, tc.address, peer.addr, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s %s: dial %s: %v", tc.network, tc.address, peer.addr, err)
				}
				a := <-accepted
				if a.RemoteAddr().String() != c.LocalAddr().String() {
					t.Errorf("%s: accepted %v, want %v", tc.network, a.RemoteAddr(), c.LocalAddr())
				}
				a.Close()
				c.Close()
			}
			ln.Close()
		}
	})
}

// TestListenFamilyMismatch: "tcp6" and "udp6" refuse an IPv4 address,
// the wildcard 0.0.0.0 included, and "tcp4" an IPv6 one other than ::,
// with package net's error (Linux: "listen tcp6: address 0.0.0.0: no
// suitable address found").
func TestListenFamilyMismatch(t *testing.T) {
	s := stack.New(stack.Options{Clock: faketime.NewManualClock()})
	defer s.Close()
	for _, tc := range []struct{ network, address, want string }{
		{"tcp6", "0.0.0.0:0", "listen tcp6: address 0.0.0.0: no suitable address found"},
		{"tcp6", "127.0.0.1:0", "listen tcp6: address 127.0.0.1: no suitable address found"},
		{"tcp4", "[::1]:0", "listen tcp4: address ::1: no suitable address found"},
		{"udp6", "0.0.0.0:0", "listen udp6: address 0.0.0.0: no suitable address found"},
	} {
		var err error
		if strings.HasPrefix(tc.network, "udp") {
			var pc net.PacketConn
			if pc, err = conn.ListenPacket(s, tc.network, tc.address); err == nil {
				pc.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = conn.Listen(s, tc.network, tc.address); err == nil {
				ln.Close()
			}
		}
		var ae *net.AddrError
		if err == nil || !errors.As(err, &ae) || err.Error() != tc.want {
			t.Errorf("Listen(%q, %q) = %v, want %q", tc.network, tc.address, err, tc.want)
		}
	}
}

// TestListenEphemeral: an empty or zero port picks an ephemeral one, for
// TCP and UDP, as net.Listen and net.ListenPacket do.
func TestListenEphemeral(t *testing.T) {
	s := stack.New(stack.Options{Clock: faketime.NewManualClock()})
	defer s.Close()
	for _, addr := range []string{"", ":", ":0", "127.0.0.1:", "127.0.0.1:0", "[::1]:0"} {
		ln, err := conn.Listen(s, "tcp", addr)
		if err != nil {
			t.Errorf("Listen(tcp, %q): %v", addr, err)
			continue
		}
		if ln.Addr().(*net.TCPAddr).Port == 0 {
			t.Errorf("Listen(tcp, %q).Addr() = %v: no port", addr, ln.Addr())
		}
		ln.Close()
		pc, err := conn.ListenPacket(s, "udp", addr)
		if err != nil {
			t.Errorf("ListenPacket(udp, %q): %v", addr, err)
			continue
		}
		if pc.LocalAddr().(*net.UDPAddr).Port == 0 {
			t.Errorf("ListenPacket(udp, %q).LocalAddr() = %v: no port", addr, pc.LocalAddr())
		}
		pc.Close()
	}
}

// TestDialFamily: "tcp4" and "udp4" refuse an IPv6 address, "tcp6" and
// "udp6" an IPv4 one, before anything is sent.
func TestDialFamily(t *testing.T) {
	s := stack.New(stack.Options{Clock: faketime.NewManualClock()})
	defer s.Close()
	d := &conn.Dialer{Stack: s}
	for _, tc := range []struct{ network, addr string }{
		{"tcp4", "[::1]:80"}, {"tcp6", "127.0.0.1:80"}, {"udp4", "[::1]:53"}, {"udp6", "127.0.0.1:53"},
	} {
		_, err := d.DialContext(context.Background(), tc.network, tc.addr)
		var ae *net.AddrError
		if !errors.As(err, &ae) {
			t.Errorf("Dial(%s, %s) = %v, want an *net.AddrError", tc.network, tc.addr, err)
		}
	}
}

// TestDialerDialContextIsNets: Dialer.DialContext has net.Dialer's
// signature, so it is http.Transport.DialContext as is.
func TestDialerDialContextIsNets(t *testing.T) {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var dial func(context.Context, string, string) (net.Conn, error) = (&conn.Dialer{Stack: p.Client}).DialContext
	tr := &http.Transport{DialContext: dial}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://192.0.2.1/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("body %q", body)
	}
	// The typed accessor gives the *Conn.
	c, err := (&conn.Dialer{Stack: p.Client}).DialTCP(context.Background(), "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	if c.State().String() != "ESTABLISHED" {
		t.Errorf("DialTCP: state %v", c.State())
	}
	c.Close()
}

// TestDialNetworks: package-level Dial is net.Dial on a stack: "udp"
// gives a connected *UDPConn, "tcp" a *Conn, as net.Dial gives a
// *net.UDPConn and a *net.TCPConn; an unknown network is net's error.
func TestDialNetworks(t *testing.T) {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	udpEchoServer(t, p.Server, "udp", "192.0.2.1:7")
	ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for c := range acceptAll(ln) {
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	for _, tc := range []struct {
		network string
		typ     string
	}{{"udp", "*conn.UDPConn"}, {"udp4", "*conn.UDPConn"}, {"tcp", "*conn.Conn"}, {"tcp4", "*conn.Conn"}} {
		c, err := conn.Dial(p.Client, tc.network, "192.0.2.1:7")
		if err != nil {
			t.Fatalf("Dial(%q): %v", tc.network, err)
		}
		if got := fmt.Sprintf("%T", c); got != tc.typ {
			t.Errorf("Dial(%q) gave a %s, want a %s", tc.network, got, tc.typ)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			t.Fatalf("%s write: %v", tc.network, err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Errorf("%s echo: %q, %v", tc.network, buf, err)
		}
		c.Close()
	}
	_, err = conn.Dial(p.Client, "sctp", "192.0.2.1:7")
	var ne net.UnknownNetworkError
	if !errors.As(err, &ne) {
		t.Errorf("Dial(sctp) = %v, want net.UnknownNetworkError", err)
	}
}

// TestControl: Dialer.Control and ListenConfig.Control are called with
// the network of the address's family and the address, before anything
// happens; their error aborts the call.
func TestControl(t *testing.T) {
	s := stack.New(stack.Options{Clock: faketime.NewManualClock()})
	defer s.Close()
	refuse := errors.New("refused by Control")
	var got []string
	control := func(network, address string, c syscall.RawConn) error {
		got = append(got, network+" "+address)
		if err := c.Control(func(uintptr) {}); !errors.Is(err, syscall.EOPNOTSUPP) {
			t.Errorf("RawConn.Control = %v, want EOPNOTSUPP (no descriptor)", err)
		}
		return refuse
	}
	_, err := (&conn.Dialer{Stack: s, Control: control}).DialContext(context.Background(), "tcp", "127.0.0.1:80")
	if !errors.Is(err, refuse) {
		t.Errorf("Dial = %v, want Control's error", err)
	}
	_, err = (&conn.Dialer{Stack: s, Control: control}).DialContext(context.Background(), "udp", "[::1]:53")
	if !errors.Is(err, refuse) {
		t.Errorf("Dial udp = %v, want Control's error", err)
	}
	lc := &conn.ListenConfig{Control: control}
	if _, err := lc.Listen(s, "tcp4", ":8080"); !errors.Is(err, refuse) {
		t.Errorf("Listen = %v, want Control's error", err)
	}
	if _, err := lc.ListenPacket(s, "udp", "127.0.0.1:53"); !errors.Is(err, refuse) {
		t.Errorf("ListenPacket = %v, want Control's error", err)
	}
	want := []string{"tcp4 127.0.0.1:80", "udp6 [::1]:53", "tcp4 0.0.0.0:8080", "udp4 127.0.0.1:53"}
	if len(got) != len(want) {
		t.Fatalf("Control called with %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Control call %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestListenConfigKeepAlive: accepted connections of a ListenConfig with
// KeepAlive send keepalive probes after that idle time; without it,
// none (RFC 9293 3.8.4: off by default).
func TestListenConfigKeepAlive(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		for _, lc := range []conn.ListenConfig{
			{},
			{KeepAlive: time.Minute},
			{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: time.Minute, Interval: time.Minute, Count: 3}},
		} {
			ln, err := lc.Listen(server, "tcp", "192.0.2.1:0")
			if err != nil {
				t.Fatal(err)
			}
			accepted := acceptAll(ln)
			c, err := conn.Dial(client, "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			a := <-accepted
			before := server.TCP().Stats().SegmentsOut.Load()
			advance(clock, time.Minute+time.Second)
			sent := server.TCP().Stats().SegmentsOut.Load() - before
			if on := lc.KeepAlive > 0 || lc.KeepAliveConfig.Enable; on != (sent > 0) {
				t.Errorf("%+v: the idle accepted connection sent %d segments in a minute", lc, sent)
			}
			a.Close()
			c.Close()
			ln.Close()
		}
	})
}

// keepalivesSent returns how many keepalive probes s's TCP has sent.
func keepalivesSent(s *stack.Stack) uint64 {
	return s.TCP().Stats().Sent(event.SendKeepalive)
}

// TestKeepAliveNegativeLeavesUnchanged: a negative field of
// net.KeepAliveConfig leaves that setting as it was ("the corresponding
// socket-level option will be left unchanged"; package net's
// setKeepAliveIdle and friends return nil for it), and so does
// SetKeepAlivePeriod with a negative duration; on a Conn, a Dialer and a
// ListenConfig alike.
func TestKeepAliveNegativeLeavesUnchanged(t *testing.T) {
	cfg := net.KeepAliveConfig{Enable: true, Idle: time.Minute, Interval: -1, Count: -1}
	// probes reports whether from sends a keepalive probe within a
	// minute of idle.
	probes := func(clock *faketime.ManualClock, from *stack.Stack) bool {
		before := keepalivesSent(from)
		advance(clock, time.Minute+time.Second)
		return keepalivesSent(from) > before
	}
	t.Run("Conn", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			c, _ := connect(t, client, server)
			if err := c.SetKeepAliveConfig(cfg); err != nil {
				t.Fatalf("SetKeepAliveConfig(%+v) = %v, want nil", cfg, err)
			}
			// Each leaves the minute of idle in place (not the
			// default two hours) and keepalive on.
			if err := c.SetKeepAlivePeriod(-1); err != nil {
				t.Errorf("SetKeepAlivePeriod(-1) = %v, want nil", err)
			}
			if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}); err != nil {
				t.Errorf("SetKeepAliveConfig with every field negative = %v, want nil", err)
			}
			if err := c.SetKeepAlive(true); err != nil {
				t.Errorf("SetKeepAlive(true) = %v, want nil", err)
			}
			if !probes(clock, client) {
				t.Errorf("no keepalive probe after a minute idle")
			}
		})
	})
	t.Run("Dialer", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			ln, err := conn.Listen(server, "tcp", "192.0.2.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := acceptAll(ln)
			c, err := (&conn.Dialer{Stack: client, KeepAliveConfig: cfg}).Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a := <-accepted
			defer a.Close()
			if !probes(clock, client) {
				t.Errorf("Dialer{KeepAliveConfig: %+v}: no keepalive probe after a minute idle", cfg)
			}
		})
	})
	t.Run("ListenConfig", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			ln, err := (&conn.ListenConfig{KeepAliveConfig: cfg}).Listen(server, "tcp", "192.0.2.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := acceptAll(ln)
			c, err := conn.Dial(client, "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a := <-accepted
			defer a.Close()
			if !probes(clock, server) {
				t.Errorf("ListenConfig{KeepAliveConfig: %+v}: no keepalive probe after a minute idle", cfg)
			}
		})
	})
}

// TestZeroByteRead: Read with an empty buffer returns 0, nil at once,
// with nothing to read, as package net's Read does.
func TestZeroByteRead(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, _ := connect(t, client, server)
		ch := start(clock, func() error {
			n, err := c.Read(nil)
			if n != 0 {
				return errors.New("n != 0")
			}
			return err
		})
		if r := now(t, ch, "Read(nil)"); r.err != nil {
			t.Errorf("Read(nil) = %v, want nil", r.err)
		}
		c.Close()
		if _, err := c.Read(nil); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read(nil) after Close = %v, want net.ErrClosed", err)
		}
	})
}

// TestReadContext: ReadContext returns what arrives, and gives up when
// its context is cancelled or reaches its deadline.
func TestReadContext(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, s := connect(t, client, server)
		buf := make([]byte, 10)

		ctx, cancel := context.WithCancel(context.Background())
		ch := start(clock, func() error { _, err := c.ReadContext(ctx, buf); return err })
		notYet(t, ch, "ReadContext")
		cancel()
		r := now(t, ch, "ReadContext after cancel")
		wantOpError(t, r.err, "read", context.Canceled)

		// The context's deadline is the caller's, on the real (here the
		// bubble's) clock.
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.ReadContext(ctx, buf)
		wantOpError(t, err, "read", context.DeadlineExceeded)
		wantTimeout(t, err, "read")

		s.Write([]byte("data"))
		n, err := c.ReadContext(context.Background(), buf)
		if err != nil || string(buf[:n]) != "data" {
			t.Errorf("ReadContext = %q, %v", buf[:n], err)
		}
	})
}

// TestLoopbackTCP: 127.0.0.1/8 and ::1 work in a stack with no interface,
// and "localhost" names them without a resolver.
func TestLoopbackTCP(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	for _, tc := range []struct{ listen, dial string }{
		{"127.0.0.1:7", "localhost:7"},
		{"127.0.0.1:8", "127.0.0.1:8"},
		{"[::1]:7", "[::1]:7"},
		{":9", "localhost:9"},
		{":10", ":10"}, // an empty host dials this host, as in package net
	} {
		ln, err := conn.Listen(s, "tcp", tc.listen)
		if err != nil {
			t.Fatal(err)
		}
		accepted := acceptAll(ln)
		c, err := conn.Dial(s, "tcp", tc.dial)
		if err != nil {
			t.Errorf("Dial(%s) to Listen(%s): %v", tc.dial, tc.listen, err)
			ln.Close()
			continue
		}
		a := <-accepted
		c.Write([]byte("lo"))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "lo" {
			t.Errorf("%s: read %q, %v", tc.dial, buf, err)
		}
		a.Close()
		c.Close()
		ln.Close()
	}
}

// TestNoResolver: a host name other than localhost needs a resolver;
// without one the error says so, as a *net.DNSError.
func TestNoResolver(t *testing.T) {
	s := stack.New(stack.Options{Clock: faketime.NewManualClock()})
	defer s.Close()
	_, err := conn.Dial(s, "tcp", "example.test:80")
	var de *net.DNSError
	if !errors.As(err, &de) || de.Name != "example.test" {
		t.Errorf("Dial(example.test:80) = %v, want a *net.DNSError for example.test", err)
	}
}

// TestListenFamilyClose: a tcp4 and a tcp6 listener share a port, each
// taking its own family's connections (as on Linux, the tcp6 one with
// IPV6_V6ONLY); a dual-stack "tcp" listener cannot join them; once they
// close, the port is free for it, and it takes IPv6 too.
func TestListenFamilyClose(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		ln4, err := conn.Listen(server, "tcp4", ":8100")
		if err != nil {
			t.Fatal(err)
		}
		ln6, err := conn.Listen(server, "tcp6", ":8100")
		if err != nil {
			t.Fatalf("tcp6 on the port of a tcp4 listener: %v, want both (IPV6_V6ONLY)", err)
		}
		if _, err := conn.Listen(server, "tcp", ":8100"); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("a dual-stack listener on their port: %v, want EADDRINUSE", err)
		}
		for _, tc := range []struct {
			ln   *conn.Listener
			peer string
		}{{ln4, "192.0.2.1:8100"}, {ln6, "[2001:db8::1]:8100"}} {
			accepted := acceptAll(tc.ln)
			c, err := conn.Dial(client, "tcp", tc.peer)
			if err != nil {
				t.Fatalf("dial %s: %v", tc.peer, err)
			}
			a := <-accepted
			if a == nil || a.LocalAddr().String() != tc.peer {
				t.Errorf("dial %s: accepted %v by the listener on %s", tc.peer, a, tc.ln.Addr())
			}
			if a != nil {
				a.Close()
			}
			c.Close()
		}
		ln4.Close()
		ln6.Close()
		ln, err := conn.Listen(server, "tcp", ":8100")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := acceptAll(ln)
		c, err := conn.Dial(client, "tcp6", "[2001:db8::1]:8100")
		if err != nil {
			t.Fatal(err)
		}
		(<-accepted).Close()
		c.Close()
	})
}

// TestUDPLocalAddrWildcard: a UDP socket bound to no address reports its
// family's wildcard, as package net's does (it reads getsockname):
// "0.0.0.0:p" for udp4, "[::]:p" for udp6 and for the dual-stack "udp",
// never ":p" with no IP; so do the Source of its errors.
func TestUDPLocalAddrWildcard(t *testing.T) {
	s := stack.New(stack.Options{Clock: faketime.NewManualClock()})
	defer s.Close()
	for _, tc := range []struct{ network, address, want string }{
		{"udp4", ":0", "0.0.0.0"},
		{"udp4", "0.0.0.0:0", "0.0.0.0"},
		{"udp6", ":0", "::"},
		{"udp6", "[::]:0", "::"},
		{"udp", ":0", "::"},
		{"udp", "[::]:0", "::"},
	} {
		pc, err := conn.ListenPacket(s, tc.network, tc.address)
		if err != nil {
			t.Fatal(err)
		}
		c := pc.(*conn.UDPConn)
		la, ok := c.LocalAddr().(*net.UDPAddr)
		if !ok || la.Port == 0 || !la.IP.Equal(net.ParseIP(tc.want)) {
			t.Errorf("ListenPacket(%q, %q).LocalAddr() = %v, want %s with a port", tc.network, tc.address, c.LocalAddr(), tc.want)
		}
		// An error names the socket as its LocalAddr does.
		_, err = c.Write([]byte("x"))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Source == nil || oe.Source.String() != c.LocalAddr().String() {
			t.Errorf("%s %s: Write error %v, want Source %v", tc.network, tc.address, err, c.LocalAddr())
		}
		c.Close()
	}
	// ListenUDP with a nil laddr is the dual-stack wildcard too.
	c, err := conn.ListenUDP(s, "udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if la := c.LocalAddr().(*net.UDPAddr); !la.IP.Equal(net.IPv6unspecified) {
		t.Errorf("ListenUDP(udp, nil).LocalAddr() = %v, want [::]:p", la)
	}
}

// TestUDPListenWildcardDualStack: "udp" on a wildcard address, 0.0.0.0
// included, is package net's dual-stack socket (favoriteAddrFamily makes
// an AF_INET6 socket without IPV6_V6ONLY for a listen on any wildcard):
// it reports "[::]:p" and takes datagrams over IPv4 and IPv6. "udp4"
// takes IPv4 only, "udp6" IPv6 only.
func TestUDPListenWildcardDualStack(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		listenUDP4 := func(a string) net.PacketConn {
			c, err := conn.ListenUDP(server, "udp", &net.UDPAddr{IP: net.IPv4zero, Port: int(netip.MustParseAddrPort(a).Port())})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		for _, tc := range []struct {
			network, address string
			listen           func(string) net.PacketConn
			addr             string
			v4, v6           bool
		}{
			{"udp", ":0", nil, "::", true, true},
			{"udp", "0.0.0.0:9200", nil, "::", true, true},
			{"udp", "[::]:9201", nil, "::", true, true},
			{"udp", "0.0.0.0:9202", listenUDP4, "::", true, true}, // ListenUDP, IP: net.IPv4zero
			{"udp4", "0.0.0.0:9203", nil, "0.0.0.0", true, false},
			{"udp6", "[::]:9204", nil, "::", false, true},
		} {
			var pc net.PacketConn
			if tc.listen != nil {
				pc = tc.listen(tc.address)
			} else {
				var err error
				if pc, err = conn.ListenPacket(server, tc.network, tc.address); err != nil {
					t.Fatal(err)
				}
			}
			la := pc.LocalAddr().(*net.UDPAddr)
			if !la.IP.Equal(net.ParseIP(tc.addr)) {
				t.Errorf("%s %s: LocalAddr %v, want %s", tc.network, tc.address, la, tc.addr)
			}
			for _, peer := range []struct {
				addr string
				want bool
			}{{"192.0.2.1", tc.v4}, {"2001:db8::1", tc.v6}} {
				c := dialUDP(t, client, "udp", nil, netip.AddrPortFrom(netip.MustParseAddr(peer.addr), uint16(la.Port)).String())
				c.Write([]byte("to the wildcard"))
				pc.SetReadDeadline(clock.Now().Add(time.Second))
				got := start(clock, func() error { _, _, err := pc.ReadFrom(make([]byte, 100)); return err })
				advance(clock, time.Second)
				if err := now(t, got, "ReadFrom").err; (err == nil) != peer.want {
					t.Errorf("%s %s: a datagram from %s: ReadFrom = %v, want it delivered: %v", tc.network, tc.address, peer.addr, err, peer.want)
				}
				c.Close()
			}
			pc.Close()
		}
	})
}
