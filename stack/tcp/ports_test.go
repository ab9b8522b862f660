package tcp_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestActivePortTable: the local ports of active opens, which the engine
// keeps itself (ports.go), keep bind(2)'s rules against listeners both
// ways, let one port serve several destinations, refuse a 4-tuple taken,
// and come back when the connection ends.
func TestActivePortTable(t *testing.T) {
	p := tcptest.New(t)
	local := netip.AddrPortFrom(tcptest.StackAddr, 40001)
	wild := netip.AddrPortFrom(netip.IPv4Unspecified(), 40001)
	peer := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(tcptest.PeerAddr, port) }

	e1, err := p.TCP.Connect(local, peer(80))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.TCP.Connect(local, peer(80)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Connect on a 4-tuple taken: %v, want EADDRINUSE", err)
	}
	e2, err := p.TCP.Connect(local, peer(81))
	if err != nil {
		t.Errorf("Connect from the same port to another destination: %v", err)
	}
	for _, at := range []netip.AddrPort{local, wild} {
		if _, err := p.TCP.Listen(at, 8); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Listen on %v, held by connections: %v, want EADDRINUSE", at, err)
		}
	}
	e1.Reset()
	if e2 != nil {
		e2.Reset()
	}
	p.Link.Drain() // the SYNs and RSTs, not for the fixture's ports
	l, err := p.TCP.Listen(wild, 8)
	if err != nil {
		t.Fatalf("Listen once the connections ended: %v", err)
	}
	if _, err := p.TCP.Connect(local, peer(82)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Connect from a listening port: %v, want EADDRINUSE", err)
	}
	// An ephemeral port never lands on the listener's.
	for range 50 {
		e, err := p.TCP.Connect(netip.AddrPortFrom(tcptest.StackAddr, 0), peer(83))
		if err != nil {
			t.Fatal(err)
		}
		if e.ID().Local.Port() == 40001 {
			t.Fatalf("ephemeral port %d is the listener's", e.ID().Local.Port())
		}
	}
	l.Close()
}

// TestConnectBindError: Connect's failures over the local address or
// port it was given, which Linux's bind(2) returns before connect(2) runs,
// come in a *tcp.BindError holding the errno: EADDRNOTAVAIL for an
// address the stack lacks, EADDRINUSE for a port asked for and taken (a
// 4-tuple in use, a listener's port). A failure of connect(2)'s own is a
// bare errno.
func TestConnectBindError(t *testing.T) {
	p := tcptest.New(t)
	peer := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(tcptest.PeerAddr, port) }
	wantBind := func(what string, err error, want syscall.Errno) {
		t.Helper()
		var be *tcp.BindError
		if !errors.As(err, &be) || be.Errno != want || !errors.Is(err, want) {
			t.Errorf("%s: %v (%T), want a *tcp.BindError with %v", what, err, err, want)
		}
	}
	_, err := p.TCP.Connect(netip.MustParseAddrPort("192.0.2.77:0"), peer(80))
	wantBind("Connect from an address the stack lacks", err, syscall.EADDRNOTAVAIL)

	local := netip.AddrPortFrom(tcptest.StackAddr, 40001)
	e, err := p.TCP.Connect(local, peer(80))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.TCP.Connect(local, peer(80))
	wantBind("Connect on a 4-tuple taken", err, syscall.EADDRINUSE)
	e.Reset()
	p.Link.Drain()
	l, err := p.TCP.Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), 40002), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = p.TCP.Connect(netip.AddrPortFrom(tcptest.StackAddr, 40002), peer(80))
	wantBind("Connect from a listening port", err, syscall.EADDRINUSE)

	_, err = p.TCP.Connect(netip.AddrPort{}, netip.MustParseAddrPort("198.51.100.9:80"))
	var be *tcp.BindError
	if err == nil || errors.As(err, &be) {
		t.Errorf("Connect with no route: %v, want a bare errno", err)
	}
}

// TestConnectBroadcast: an active open to a broadcast address fails with
// ENETUNREACH and sends nothing: RFC 1122 4.2.3.10, an OPEN for a
// broadcast or multicast remote address MUST be rejected, and Linux's
// tcp_v4_connect refuses a route that is RTCF_BROADCAST so. The subnet's
// directed broadcast, 192.0.2.255, went out as a SYN to the
// link's broadcast address; the limited broadcast and multicast already
// found no route.
func TestConnectBroadcast(t *testing.T) {
	p := tcptest.New(t)
	for _, a := range []string{"192.0.2.255", "255.255.255.255", "224.0.0.1"} {
		e, err := p.TCP.Connect(netip.AddrPortFrom(netip.IPv4Unspecified(), 0), netip.AddrPortFrom(netip.MustParseAddr(a), 80))
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("Connect to %s: %v, want ENETUNREACH", a, err)
		}
		if e != nil {
			e.Reset()
		}
		if n := p.Link.Drain(); n != 0 {
			t.Errorf("Connect to %s sent %d packets, want none", a, n)
		}
	}
}
