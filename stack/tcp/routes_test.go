package tcp_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
)

// TestRouteReuse: a connection to an address that a live connection
// already reaches takes that connection's route without asking the
// network layer (routes.go), for a second after the network layer last
// answered; a route added through package stack is taken by the very
// next connection, one changed behind the engine's back (Netstack) within
// the second, or at once after RoutesChanged; and with the last
// connection gone the next one asks again.
func TestRouteReuse(t *testing.T) {
	p := tcptest.New(t)
	other := channel.New(64, tcptest.MTU, "")
	t.Cleanup(other.Close)
	nic2, err := p.Stack.AddNIC(other, netip.MustParsePrefix("198.51.100.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	st := p.TCP.Stats()
	var open []*tcp.Endpoint
	t.Cleanup(func() {
		for _, e := range open {
			e.Reset()
		}
	})
	port := uint16(80)
	// connect opens a connection to the peer's address from any local
	// address, and says which interface its SYN left by, and what the
	// network layer was asked and what was reused meanwhile.
	connect := func() (via string, found, reused uint64) {
		t.Helper()
		p.Link.Drain()
		other.Drain()
		f0, r0 := st.RoutesFound.Load(), st.RoutesReused.Load()
		port++
		e, err := p.TCP.Connect(netip.AddrPort{}, netip.AddrPortFrom(tcptest.PeerAddr, port))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, e)
		switch {
		case p.Link.NumQueued() == 1 && other.NumQueued() == 0:
			via = "nic1"
		case p.Link.NumQueued() == 0 && other.NumQueued() == 1:
			via = "nic2"
		default:
			t.Fatalf("SYN to port %d: %d frames on NIC 1, %d on NIC 2", port, p.Link.NumQueued(), other.NumQueued())
		}
		return via, st.RoutesFound.Load() - f0, st.RoutesReused.Load() - r0
	}
	want := func(step, via string, found, reused uint64, wantVia string, wantFound, wantReused uint64) {
		t.Helper()
		p.Logf("%s: SYN via %s, %d routes found, %d reused", step, via, found, reused)
		if via != wantVia || found != wantFound || reused != wantReused {
			t.Errorf("%s: SYN via %s, %d found, %d reused; want via %s, %d found, %d reused", step, via, found, reused, wantVia, wantFound, wantReused)
		}
	}

	via, f, r := connect()
	want("first connection", via, f, r, "nic1", 1, 0)
	via, f, r = connect()
	want("second, the first alive", via, f, r, "nic1", 0, 1)
	p.Advance(time.Second)
	via, f, r = connect()
	want("a second later", via, f, r, "nic1", 1, 0)

	// Through package stack: the next connection follows at once.
	if err := p.Stack.AddRoute(netip.PrefixFrom(tcptest.PeerAddr, 32), netip.Addr{}, nic2); err != nil {
		t.Fatal(err)
	}
	via, f, r = connect()
	want("after Stack.AddRoute", via, f, r, "nic2", 1, 0)

	// Behind the engine's back: within the second, the old answer.
	host := func(rt tcpip.Route) bool { return rt.NIC == nic2 && rt.Destination.Prefix() == 32 }
	if n := p.Stack.Netstack().RemoveRoutes(host); n != 1 {
		t.Fatalf("removed %d routes", n)
	}
	via, f, r = connect()
	want("route removed through Netstack", via, f, r, "nic2", 0, 1)
	p.Advance(time.Second)
	via, f, r = connect()
	want("a second later", via, f, r, "nic1", 1, 0)
	p.Stack.Netstack().AddRoute(tcpip.Route{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(tcptest.PeerAddr.As4()), PrefixLen: 32}.Subnet(), NIC: nic2})
	p.TCP.RoutesChanged()
	via, f, r = connect()
	want("added through Netstack, then RoutesChanged", via, f, r, "nic2", 1, 0)

	// The last connection gone, its route goes with it.
	for _, e := range open {
		e.Reset()
	}
	open = nil
	via, f, r = connect()
	want("every connection reset", via, f, r, "nic2", 1, 0)
}
