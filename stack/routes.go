package stack

import (
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/stack/tcp"
)

// RouteMetrics are a route's settings for the TCP connections that use
// it, as Linux keeps them on the route (`ip route change ... mtu lock 1400
// advmss 1360 initcwnd 20 initrwnd 4 rto_min 5ms quickack 1`): a path MTU,
// locked or not, the MSS our SYNs announce, the initial congestion and
// receive windows, the minimum RTO and ACKs without delay. See
// tcp.RouteMetrics.
type RouteMetrics = tcp.RouteMetrics

// routeKey names a route as gVisor's table matches it (tcpip.Route.Equal):
// its destination and interface.
type routeKey struct {
	dst netip.Prefix
	nic tcpip.NICID
}

// routeMetrics are the metrics of the stack's routes, by route.
type routeMetrics struct {
	mu sync.Mutex
	m  map[routeKey]RouteMetrics
}

// SetRouteMetrics gives the route to dst through interface nic the
// metrics m, as Linux's `ip route change dst dev nic mtu [lock] N advmss N
// initcwnd N rto_min T quickack 1`: dst and nic name the route exactly, as AddRoute or
// AddAddress made it (a stack made by NewPair has its cable on NIC 1),
// and m replaces all its metrics, as `ip route change` does (RouteMetrics
// reads them for a change of one); the zero RouteMetrics removes them.
// New connections on the
// route take them; live ones set their MSS again at once, cutting and
// resending what is in flight when the MTU falls, and read rto_min,
// quickack and initcwnd (as the window after idle) from then on, as a
// Linux socket does once `ip route change` made its cached route stale;
// what a handshake fixed (advmss, initrwnd) stays with its connection. The MTU applies to every
// protocol (it is the gVisor route's), the rest to TCP alone.
//
// It fails for a route the stack does not have (AddRoute and AddAddress
// make them), a dst with host bits set (EINVAL, as AddRoute), an MTU below 68 bytes (88 for IPv6) or above the
// interface's, an announced MSS below 88 bytes (Linux's TCP_MIN_MSS), an
// initial window beyond any window and an rto_min beyond the stack's
// MaxRTO.
func (s *Stack) SetRouteMetrics(dst netip.Prefix, nic tcpip.NICID, m RouteMetrics) error {
	if !dst.IsValid() {
		return fmt.Errorf("stack: SetRouteMetrics: invalid destination %v", dst)
	}
	dst, subnet, err := subnetOf(dst)
	if err != nil {
		return fmt.Errorf("stack: SetRouteMetrics %v: %w", dst, err)
	}
	var row tcpip.Route
	found := 0
	for _, r := range s.s.GetRouteTable() {
		if r.Destination == subnet && r.NIC == nic {
			row = r
			found++
		}
	}
	switch {
	case found == 0:
		return fmt.Errorf("stack: SetRouteMetrics: no route to %v through interface %d", dst, nic)
	case found > 1:
		// gVisor's table replaces them all as one (tcpip.Route.Equal):
		// the metrics would go to whichever came first.
		return fmt.Errorf("stack: SetRouteMetrics: %d routes to %v through interface %d: which one is ambiguous", found, dst, nic)
	}
	if m.MTU != 0 {
		// RFC 791's 68 bytes, with IPv6's longer header. An IPv6
		// route may go below RFC 8200's 1280, as Linux's may (the
		// upstream mtu_probe test sets 660): a user trying a small
		// path gets segments that small, which any peer takes.
		minMTU := uint32(68)
		if dst.Addr().Is6() {
			minMTU += 20
		}
		if m.MTU < minMTU {
			return fmt.Errorf("stack: SetRouteMetrics %v: MTU %d is below the minimum %d", dst, m.MTU, minMTU)
		}
		if linkMTU := s.nicMTU(nic); linkMTU != 0 && m.MTU > linkMTU {
			return fmt.Errorf("stack: SetRouteMetrics %v: MTU %d is above interface %d's %d", dst, m.MTU, nic, linkMTU)
		}
	}
	if m.InitCwnd > 1<<16 {
		return fmt.Errorf("stack: SetRouteMetrics %v: initial window of %d segments is beyond any window", dst, m.InitCwnd)
	}
	if m.InitRwnd > 0xffff {
		return fmt.Errorf("stack: SetRouteMetrics %v: initial receive window of %d segments is beyond any SYN's window", dst, m.InitRwnd)
	}
	if maxRTO := s.tcp.Options().MaxRTO; m.RTOMin < 0 || m.RTOMin > maxRTO {
		return fmt.Errorf("stack: SetRouteMetrics %v: rto_min %v: want up to the stack's MaxRTO, %v", dst, m.RTOMin, maxRTO)
	}
	if m.AdvMSS != 0 && m.AdvMSS < 88 {
		return fmt.Errorf("stack: SetRouteMetrics %v: MSS %d is below 88, Linux's TCP_MIN_MSS", dst, m.AdvMSS)
	}
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	k := routeKey{dst, nic}
	if m == (RouteMetrics{}) {
		delete(s.metrics.m, k)
	} else {
		if s.metrics.m == nil {
			s.metrics.m = make(map[routeKey]RouteMetrics)
		}
		s.metrics.m[k] = m
	}
	if row.MTU != m.MTU {
		row.MTU = m.MTU
		s.s.ReplaceRoute(row) // same place in the table: it is ordered by prefix length
	}
	s.pushRoutesLocked()
	return nil
}

// RouteMetrics returns the metrics SetRouteMetrics gave the route to dst
// through nic, and whether it has any.
func (s *Stack) RouteMetrics(dst netip.Prefix, nic tcpip.NICID) (RouteMetrics, bool) {
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	dst, _, err := subnetOf(dst)
	if err != nil {
		return RouteMetrics{}, false
	}
	m, ok := s.metrics.m[routeKey{dst, nic}]
	return m, ok
}

// routesChanged tells the engine that the route table changed: its
// cached routes go (RoutesChanged), and it takes the table with the
// metrics of the routes that are still there.
func (s *Stack) routesChanged() {
	s.metrics.mu.Lock()
	s.pushRoutesLocked()
	s.metrics.mu.Unlock()
}

// pushRoutesLocked hands the engine the route table in lookup order, each
// row with its metrics, forgets the metrics of routes that went, and
// drops the engine's cached routes. The caller holds s.metrics.mu.
func (s *Stack) pushRoutesLocked() {
	defer s.tcp.RoutesChanged()
	if len(s.metrics.m) == 0 {
		s.tcp.SetRoutes(nil)
		return
	}
	table := s.s.GetRouteTable()
	rows := make([]tcp.Route, 0, len(table))
	live := make(map[routeKey]bool, len(s.metrics.m))
	for _, r := range table {
		row := tcp.Route{Destination: r.Destination, NIC: r.NIC}
		if k, ok := keyOf(r); ok {
			if m, ok := s.metrics.m[k]; ok {
				row.Metrics = m
				live[k] = true
			}
		}
		rows = append(rows, row)
	}
	for k := range s.metrics.m {
		if !live[k] {
			delete(s.metrics.m, k) // its route went with its interface
		}
	}
	s.tcp.SetRoutes(rows)
}

// keyOf is the key of gVisor's route r.
func keyOf(r tcpip.Route) (routeKey, bool) {
	id := r.Destination.ID()
	a, ok := netip.AddrFromSlice(id.AsSlice())
	if !ok {
		return routeKey{}, false
	}
	return routeKey{netip.PrefixFrom(a, r.Destination.Prefix()), r.NIC}, true
}

// subnetOf returns dst, an IPv4-mapped IPv6 prefix as the IPv4 prefix it
// maps, and as gVisor's subnet. A prefix with host bits set is refused
// with EINVAL, as Linux's rtm_to_fib_config refuses it ("Invalid prefix
// for given prefix length"): 192.0.2.1/24 is a typo of 192.0.2.1/32 as
// often as of 192.0.2.0/24, and masking it would guess.
func subnetOf(dst netip.Prefix) (netip.Prefix, tcpip.Subnet, error) {
	if dst.Addr().Is4In6() {
		if dst.Bits() < 96 {
			return dst, tcpip.Subnet{}, fmt.Errorf("prefix %v is wider than the IPv4-mapped addresses", dst)
		}
		dst = netip.PrefixFrom(dst.Addr().Unmap(), dst.Bits()-96)
	}
	if m := dst.Masked(); m != dst {
		return dst, tcpip.Subnet{}, fmt.Errorf("invalid prefix for its length: host bits set (its network is %v): %w", m, syscall.EINVAL)
	}
	a := dst.Addr()
	mb := make([]byte, a.BitLen()/8)
	for i := range dst.Bits() {
		mb[i/8] |= 0x80 >> (i % 8)
	}
	subnet, err := tcpip.NewSubnet(tcpip.AddrFromSlice(a.AsSlice()), tcpip.MaskFromBytes(mb))
	return dst, subnet, err
}

// nicMTU is the MTU of interface nic's link, 0 if it has none.
func (s *Stack) nicMTU(nic tcpip.NICID) uint32 {
	info, ok := s.s.NICInfo()[nic]
	if !ok {
		return 0
	}
	return info.MTU
}

// ParseRouteMetrics reads route metrics as Linux's `ip route` writes them
// (tcp.ParseRouteMetrics): "mtu lock 1400 advmss 1360 initcwnd 20
// rto_min 5ms".
func ParseRouteMetrics(s string) (RouteMetrics, error) { return tcp.ParseRouteMetrics(s) }
