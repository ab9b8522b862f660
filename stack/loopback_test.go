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
