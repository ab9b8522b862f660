package stack_test

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// TestAddRouteMisuse: routes to an interface the stack does not have, or
// through a gateway that cannot be one, are refused, not silently kept.
func TestAddRouteMisuse(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	a, b := tap.Pipe()
	defer b.Close()
	nic, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst, gw string
		nic     int
		want    string
	}{
		{"198.51.100.0/24", "", 99, "no interface 99"},
		{"198.51.100.0/24", "2001:db8::1", int(nic), "another address family"},
		{"198.51.100.0/24", "0.0.0.0", int(nic), "not a unicast address"},
		{"198.51.100.0/24", "224.0.0.1", int(nic), "not a unicast address"},
		// Linux's `ip route add 198.51.100.7/24` fails with "Invalid
		// prefix for given prefix length" (inet_rtm_valid_getroute_req,
		// fib_nl_newroute via rtm_to_fib_config): a typo of a host route
		// or of its network is not silently widened.
		{"198.51.100.7/24", "", int(nic), "host bits set"},
		{"::ffff:198.51.100.7/120", "", int(nic), "host bits set"},
	} {
		var gw netip.Addr
		if tc.gw != "" {
			gw = netip.MustParseAddr(tc.gw)
		}
		err := s.AddRoute(netip.MustParsePrefix(tc.dst), gw, tcpip.NICID(tc.nic))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddRoute(%s via %q, NIC %d) = %v, want an error saying %q", tc.dst, tc.gw, tc.nic, err, tc.want)
		}
		if tc.want == "host bits set" && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("AddRoute(%s): %v, want EINVAL as Linux's", tc.dst, err)
		}
	}
	if err := s.AddRoute(netip.MustParsePrefix("198.51.100.0/24"), netip.MustParseAddr("192.0.2.1"), nic); err != nil {
		t.Errorf("a good route: %v", err)
	}
	if err := s.AddAddress(99, netip.MustParsePrefix("198.51.100.2/24")); err == nil {
		t.Error("AddAddress to NIC 99 succeeded")
	}
	if err := s.AddAddress(nic, netip.MustParsePrefix("224.0.0.1/4")); err == nil {
		t.Error("AddAddress of a multicast address succeeded")
	}
}

// TestLoopbackInterface: every stack has lo with 127.0.0.1/8 and ::1,
// and the first interface added is still NIC 1.
func TestLoopbackInterface(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	info := s.Netstack().NICInfo()[stack.LoopbackNIC]
	var got []string
	for _, a := range info.ProtocolAddresses {
		got = append(got, a.AddressWithPrefix.String())
	}
	if strings.Join(got, " ") != "127.0.0.1/8 ::1/128" {
		t.Errorf("loopback addresses %v, want 127.0.0.1/8 ::1/128", got)
	}
	a, b := tap.Pipe()
	defer b.Close()
	nic, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.2/24"))
	if err != nil || nic != 1 {
		t.Errorf("first AddNIC = %d, %v; want NIC 1", nic, err)
	}
}

// TestAddRouteGatewayOffLink: a gateway must be on a network of the
// route's interface, as Linux's fib_check_nh refuses `ip route add
// 198.51.100.0/24 via 203.0.113.1 dev X` ("Nexthop has invalid gateway",
// ENETUNREACH) when no on-link route of X holds the gateway. Kept, such
// a route sends every packet to a neighbour nobody answers for: a Dial
// through it waits out its timeout. An IPv6 link-local gateway (a
// router's usual address) is on-link on any interface, as in Linux's
// ip6_validate_gw.
func TestAddRouteGatewayOffLink(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	a, b := tap.Pipe()
	defer b.Close()
	c, d := tap.Pipe()
	defer d.Close()
	nic, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64"))
	if err != nil {
		t.Fatal(err)
	}
	nic2, err := s.AddNIC(c, netip.MustParsePrefix("198.51.100.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	before := len(s.Netstack().GetRouteTable())
	for _, tc := range []struct{ dst, gw string }{
		{"203.0.113.0/24", "10.9.9.9"},            // on no network at all
		{"203.0.113.0/24", "198.51.100.1"},        // on NIC 2's network, not NIC 1's
		{"2001:db8:5::/48", "2001:db8:9::1"},      // IPv6, off-link
		{"203.0.113.0/24", "::ffff:198.51.100.1"}, // mapped, on NIC 2's
		{"0.0.0.0/0", "203.0.113.1"},              // a default route
	} {
		err := s.AddRoute(netip.MustParsePrefix(tc.dst), netip.MustParseAddr(tc.gw), nic)
		if !errors.Is(err, syscall.ENETUNREACH) || !strings.Contains(err.Error(), "not on a network of interface") {
			t.Errorf("AddRoute(%s via %s, NIC %d) = %v, want ENETUNREACH saying the gateway is not on a network of the interface", tc.dst, tc.gw, nic, err)
		}
	}
	if n := len(s.Netstack().GetRouteTable()); n != before {
		t.Errorf("%d routes after the refusals, want %d", n, before)
	}
	for _, tc := range []struct {
		dst, gw string
		nic     tcpip.NICID
	}{
		{"203.0.113.0/24", "198.51.100.1", nic2},
		{"0.0.0.0/0", "192.0.2.1", nic},
		{"::/0", "fe80::1", nic}, // link-local: on-link by definition
		{"2001:db8:5::/48", "2001:db8::1", nic},
	} {
		if err := s.AddRoute(netip.MustParsePrefix(tc.dst), netip.MustParseAddr(tc.gw), tc.nic); err != nil {
			t.Errorf("AddRoute(%s via %s, NIC %d): %v", tc.dst, tc.gw, tc.nic, err)
		}
	}
	// An on-link route of the user's own makes its network's addresses
	// gateways too, as Linux's `ip route add 100.64.0.0/24 dev X`.
	if err := s.AddRoute(netip.MustParsePrefix("100.64.0.0/24"), netip.Addr{}, nic); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoute(netip.MustParsePrefix("100.65.0.0/16"), netip.MustParseAddr("100.64.0.1"), nic); err != nil {
		t.Errorf("a gateway on an on-link route of the user's: %v", err)
	}
}
