package conn_test

import (
	"net"
	"net/netip"
	"testing"
	"testing/synctest"

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
		client := stack.New(stack.Options{Clock: clock})
		t.Cleanup(client.Close)
		a, b := tap.Pipe()
		nic, err := client.AddNIC(a, tsPrefix)
		if err != nil {
			t.Fatal(err)
		}
		newTS(t, b, clock, tcp.Options{}, peerPrefix)
		u := listenUDP(t, client, "udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 53})
		if terr := client.Netstack().RemoveNIC(nic); terr != nil {
			t.Fatal(terr)
		}
		a2, b2 := tap.Pipe()
		if _, err := client.AddNIC(a2, tsPrefix); err != nil {
			t.Fatal(err)
		}
		server := newTS(t, b2, clock, tcp.Options{}, peerPrefix)
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
