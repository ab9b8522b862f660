package conn_test

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"testing/synctest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestUDPBoundAddressReturns: a UDP socket bound to an address whose
// interface is removed and then added again with the same address sends
// and receives again, as a Linux socket bound to an address that comes
// back does: bind(2) without SO_BINDTODEVICE ties a socket to an address,
// not to the interface that held it (inet_bind checks the address once;
// each sendmsg looks the route up again).
func TestUDPBoundAddressReturns(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, nic := renicClient(t, clock)
		u := listenUDP(t, client, "udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 53})
		if terr := client.Netstack().RemoveNIC(nic); terr != nil {
			t.Fatal(terr)
		}
		server := renicServer(t, clock, client)
		peer := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 53})
		if _, err := u.WriteToUDPAddrPort([]byte("back"), netip.MustParseAddrPort("192.0.2.1:53")); err != nil {
			t.Errorf("WriteTo after the address came back: %v", err)
		}
		synctest.Wait()
		if _, err := peer.WriteToUDPAddrPort([]byte("hello"), netip.MustParseAddrPort("192.0.2.2:53")); err != nil {
			t.Fatal(err)
		}
		wantDatagram(t, clock, u, "hello")
		wantDatagram(t, clock, peer, "back")
	})
}

// renicClient is a stack holding 192.0.2.2 on interface nic, cabled to a
// peer stack holding 192.0.2.1.
func renicClient(t *testing.T, clock *faketime.ManualClock) (client *stack.Stack, nic tcpip.NICID) {
	t.Helper()
	client = stack.New(stack.Options{Clock: clock})
	t.Cleanup(client.Close)
	a, b := tap.Pipe()
	nic, err := client.AddNIC(a, tsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	newTS(t, b, clock, tcp.Options{}, peerPrefix)
	return client, nic
}

// renicServer gives client 192.0.2.2 again on a new interface, cabled to
// a new peer stack holding 192.0.2.1, and returns that peer.
func renicServer(t *testing.T, clock *faketime.ManualClock, client *stack.Stack) *stack.Stack {
	t.Helper()
	a, b := tap.Pipe()
	if _, err := client.AddNIC(a, tsPrefix); err != nil {
		t.Fatal(err)
	}
	return newTS(t, b, clock, tcp.Options{}, peerPrefix)
}

// TestUDPConnectedAddressReturns: a connected UDP socket whose interface
// is removed and then added again with the same address sends and
// receives again, from the same address and port, as a Linux socket
// does: udp_sendmsg checks the socket's cached route (sk_dst_check) and
// looks it up again once it is obsolete, which a removed device makes
// it, and fails with ENETUNREACH while no route is there. gVisor keeps
// the route it chose at connect time, and Write failed with EINVAL for
// good.
func TestUDPConnectedAddressReturns(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, nic := renicClient(t, clock)
		c := dialUDP(t, client, "udp4", nil, "192.0.2.1:53")
		local := c.LocalAddr().String()
		if terr := client.Netstack().RemoveNIC(nic); terr != nil {
			t.Fatal(terr)
		}
		// No route meanwhile: ip_route_output_flow's error.
		if _, err := c.Write([]byte("gone")); !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("Write with the interface gone: %v, want ENETUNREACH", err)
		}
		server := renicServer(t, clock, client)
		peer := listenUDP(t, server, "udp4", &net.UDPAddr{Port: 53})
		if _, err := c.Write([]byte("back")); err != nil {
			t.Fatalf("Write after the address came back: %v", err)
		}
		if got := c.LocalAddr().String(); got != local {
			t.Errorf("local address %s after the address came back, want %s", got, local)
		}
		synctest.Wait()
		if _, err := peer.WriteToUDPAddrPort([]byte("hello"), netip.MustParseAddrPort(local)); err != nil {
			t.Fatal(err)
		}
		wantDatagram(t, clock, c, "hello")
		wantDatagram(t, clock, peer, "back")
	})
}
