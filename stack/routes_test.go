package stack_test

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// TestSetRouteMetricsBadInput: metrics for a route the stack does not
// have, or that no path could carry, are refused with an error that says
// why, and leave the route as it was; good ones are kept, shown by
// RouteMetrics, and go with their route's interface.
func TestSetRouteMetricsBadInput(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	a, _ := tap.Pipe() // MTU 1500
	nic, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64"))
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64")
	for _, tc := range []struct {
		name string
		dst  netip.Prefix
		nic  tcpip.NICID
		m    stack.RouteMetrics
		want string // in the error
	}{
		{"invalid destination", netip.Prefix{}, nic, stack.RouteMetrics{InitCwnd: 4}, "invalid destination"},
		{"no such route", netip.MustParsePrefix("198.51.100.0/24"), nic, stack.RouteMetrics{InitCwnd: 4}, "no route"},
		{"another interface", v4, nic + 7, stack.RouteMetrics{InitCwnd: 4}, "no route"},
		{"host bits set", netip.MustParsePrefix("192.0.2.1/24"), nic, stack.RouteMetrics{InitCwnd: 4}, "host bits set"},
		{"mapped prefix too wide", netip.MustParsePrefix("::ffff:0:0/64"), nic, stack.RouteMetrics{InitCwnd: 4}, "wider than"},
		{"IPv4 MTU below 68", v4, nic, stack.RouteMetrics{MTU: 67}, "below the minimum 68"},
		{"IPv6 MTU below 88", v6, nic, stack.RouteMetrics{MTU: 87}, "below the minimum 88"},
		{"MTU above the link's", v4, nic, stack.RouteMetrics{MTU: 1501}, "above interface"},
		{"MSS below 88", v4, nic, stack.RouteMetrics{AdvMSS: 87}, "below 88"},
		{"window beyond any", v4, nic, stack.RouteMetrics{InitCwnd: 1<<16 + 1}, "beyond any window"},
		{"receive window beyond a SYN's", v4, nic, stack.RouteMetrics{InitRwnd: 1 << 16}, "beyond any SYN's window"},
		{"rto_min beyond MaxRTO", v4, nic, stack.RouteMetrics{RTOMin: 121 * time.Second}, "up to the stack's MaxRTO"},
		{"negative rto_min", v4, nic, stack.RouteMetrics{RTOMin: -time.Millisecond}, "up to the stack's MaxRTO"},
	} {
		err := s.SetRouteMetrics(tc.dst, tc.nic, tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, ok := s.RouteMetrics(v4, nic); ok {
		t.Error("refused metrics were kept")
	}
	// Two routes to one destination on one interface, through two
	// gateways: which one the metrics are for is ambiguous.
	twice := netip.MustParsePrefix("198.51.100.0/24")
	for _, gw := range []string{"192.0.2.7", "192.0.2.8"} {
		if err := s.AddRoute(twice, netip.MustParseAddr(gw), nic); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetRouteMetrics(twice, nic, stack.RouteMetrics{InitCwnd: 4}); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("metrics for one of two routes to %v: %v; want an error saying it is ambiguous", twice, err)
	}
	good := stack.RouteMetrics{MTU: 1280, LockMTU: true, AdvMSS: 1000, InitCwnd: 20, RTOMin: 5 * time.Millisecond}
	// An IPv4-mapped prefix names the IPv4 route.
	if err := s.SetRouteMetrics(netip.MustParsePrefix("::ffff:192.0.2.0/120"), nic, good); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.RouteMetrics(v4, nic); !ok || m != good {
		t.Errorf("RouteMetrics = %+v, %v; want %+v", m, ok, good)
	}
	if err := s.SetRouteMetrics(v4, nic, stack.RouteMetrics{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.RouteMetrics(v4, nic); ok {
		t.Error("the zero RouteMetrics did not remove them")
	}
}

// TestDuplicateRoute: a route the table already has is refused with
// EEXIST, as Linux's `ip route add` of an existing route ("File exists",
// fib_table_insert without NLM_F_APPEND), and a second address in a
// network the interface has adds no second route to it, as Linux's
// fib_add_ifaddr for a secondary address: otherwise the network has two
// routes, and its metrics are refused as ambiguous.
func TestDuplicateRoute(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	a, b := tap.Pipe()
	defer b.Close()
	nic, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.5/24"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddAddress(nic, netip.MustParsePrefix("192.0.2.9/24")); err != nil {
		t.Fatal(err)
	}
	lan := netip.MustParsePrefix("192.0.2.0/24")
	if err := s.SetRouteMetrics(lan, nic, stack.RouteMetrics{InitCwnd: 20}); err != nil {
		t.Errorf("metrics of a network with three addresses: %v", err)
	}
	if err := s.AddRoute(lan, netip.Addr{}, nic); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("AddRoute of the on-link route again: %v, want EEXIST", err)
	}
	far := netip.MustParsePrefix("198.51.100.0/24")
	gw := netip.MustParseAddr("192.0.2.7")
	if err := s.AddRoute(far, gw, nic); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoute(far, gw, nic); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("AddRoute of a gateway route again: %v, want EEXIST", err)
	}
	n := 0
	for _, r := range s.Netstack().GetRouteTable() {
		if r.NIC == nic {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d routes through NIC %d, want 2: %v", n, nic, s.Netstack().GetRouteTable())
	}
}
