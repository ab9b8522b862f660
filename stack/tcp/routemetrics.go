package tcp

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
)

// Route metrics: settings a route gives every connection that uses it, as
// Linux keeps them on the route (`ip route ... mtu [lock] N advmss N
// initcwnd N initrwnd N rto_min T quickack 1`: RTAX_MTU, RTAX_ADVMSS,
// RTAX_INITCWND, RTAX_INITRWND, RTAX_RTO_MIN, RTAX_QUICKACK). They are
// how a user of Linux tries a smaller path MTU, a larger initial window,
// a smaller initial receive window, a shorter minimum RTO or no delayed
// ACKs for one destination without touching the others, and how
// packetdrill's scripts set up their paths.
//
// Package stack keeps the metrics with its routes and hands the engine the
// whole table in lookup order (SetRoutes); a connection takes the metrics
// of the first route that matches its interface and peer, as gVisor's
// FindRoute picks its route. Connections read them when they need them:
// the announced MSS and the initial receive window when the SYN or
// SYN-ACK is built, the initial window when the handshake ends, the path
// MTU whenever the MSS is set, the minimum RTO whenever the RTO is
// computed, quick ACKs whenever text arrives. A change reaches live
// connections at once: SetRoutes sets each one's MSS again, as Linux's
// next tcp_current_mss does when the route's MTU is no longer the one the
// socket last saw (icsk_pmtu_cookie).

// RouteMetrics are a route's settings for the connections that use it.
// The zero value changes nothing.
type RouteMetrics struct {
	// MTU is the path MTU (the IP packet, headers included) in place of
	// the interface's, which ICMP may lower further unless LockMTU.
	// Linux's `mtu N`.
	MTU uint32
	// LockMTU keeps the path MTU where MTU or the interface puts it:
	// ICMP "fragmentation needed" and "packet too big" no longer lower
	// it (Linux's `mtu lock N`, as __ip_rt_update_pmtu ignores a locked
	// MTU). Its IPv4 segments leave without DF, as Linux's
	// (ip_dont_fragment: a locked MTU turns path MTU discovery off), so
	// a router with a smaller next hop fragments them; each then takes
	// an IP ID from the network layer.
	LockMTU bool
	// AdvMSS is the MSS option our SYN and SYN-ACK announce, in place of
	// the one the MTU makes; a user's clamp (Listener.SetMaxSegment,
	// ConnectOptions.MaxSegment, TCP_MAXSEG) still lowers it. It bounds
	// what the peer sends us, not what we send (Linux's `advmss N`).
	AdvMSS uint16
	// InitCwnd is the initial congestion window, and the restart window
	// after idle, in segments, in place of RFC 6928's IW (Linux's
	// `initcwnd N`, tcp_init_cwnd).
	InitCwnd uint32
	// InitRwnd is the initial receive window, in segments of the MSS we
	// announce, in place of the buffer's 65,535 bytes on the SYN or
	// SYN-ACK (Linux's `initrwnd N`, tcp_select_initial_window). The
	// window then grows by two segments for every segment of text that
	// arrives in order, as Linux's rcv_ssthresh does (tcp_grow_window),
	// until the receive buffer bounds it again.
	InitRwnd uint32
	// RTOMin is the floor of the retransmission timeout's variance term
	// (RTO = SRTT + max(4*RTTVAR, RTOMin)) in place of Options.MinRTO
	// (Linux's `rto_min 5ms`, tcp_rto_min): a short one makes a loss on
	// a short path cost a short wait.
	RTOMin time.Duration
	// QuickAck acknowledges received text at once, every time: no
	// delayed ACK, and no ping-pong mode waiting for a reply to carry
	// it (Linux's `quickack 1`, dst_quick_ack, which
	// tcp_in_quickack_mode answers before anything else).
	QuickAck bool
}

// Route is one row of the stack's route table as the engine sees it: a
// destination, the interface, and the row's metrics.
type Route struct {
	Destination tcpip.Subnet
	NIC         tcpip.NICID
	Metrics     RouteMetrics
}

// SetRoutes gives the engine the stack's route table, in the order routes
// are looked up, with each row's metrics (package stack calls it whenever
// its routes or their metrics change). A table with no metrics at all
// costs connections nothing. Live connections set their MSS again from
// the new path MTU: a smaller one cuts the segments in flight that no
// longer fit and sends them again, as an ICMP report would; a larger one
// lets the next segments grow, up to what the peer's MSS allows.
func (p *Protocol) SetRoutes(rs []Route) {
	var table *[]Route
	for _, r := range rs {
		if r.Metrics != (RouteMetrics{}) {
			t := append([]Route(nil), rs...)
			table = &t
			break
		}
	}
	old := p.routeMetrics.Swap(table)
	if old == nil && table == nil {
		return
	}
	for _, e := range p.Connections() {
		e.mu.Lock()
		e.routeMetricsChanged()
		e.mu.Unlock()
		e.flush()
	}
}

// metricsFor returns the metrics of the first route that matches nic and
// remote; the zero value when no route has any.
func (p *Protocol) metricsFor(nic tcpip.NICID, remote tcpip.Address) RouteMetrics {
	t := p.routeMetrics.Load()
	if t == nil {
		return RouteMetrics{}
	}
	for i := range *t {
		r := &(*t)[i]
		if r.NIC == nic && r.Destination.Contains(remote) {
			return r.Metrics
		}
	}
	return RouteMetrics{}
}

// metrics returns the metrics of the connection's route.
func (e *Endpoint) metrics() RouteMetrics {
	return e.proto.metricsFor(e.nic, e.id.RemoteAddress)
}

// announcedMSS is the MSS option a SYN or SYN-ACK on route r to remote
// announces before any user clamp: the route's AdvMSS, or what its MTU
// leaves for a segment (RFC 9293 3.7.1, RFC 6691: neither IP nor TCP
// options counted), at most 65,535.
func (p *Protocol) announcedMSS(r interface{ MTU() uint32 }, nic tcpip.NICID, remote tcpip.Address) int {
	m := p.metricsFor(nic, remote)
	if m.AdvMSS > 0 {
		return int(m.AdvMSS)
	}
	mtu := int(r.MTU()) // the IP payload's
	if m.MTU > 0 {
		mtu = int(m.MTU) - netHeaderLenOf(remote)
	}
	return min(max(mtu-header.TCPMinimumSize, 0), 0xffff)
}

// netHeaderLenOf is the size of the IP header in front of a segment to
// addr.
func netHeaderLenOf(addr tcpip.Address) int {
	if addr.Len() == header.IPv6AddressSize {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

// minRTO is the least variance term of the connection's RTO: its
// route's rto_min, or Options.MinRTO.
func (e *Endpoint) minRTO() time.Duration {
	if m := e.metrics(); m.RTOMin > 0 {
		return m.RTOMin
	}
	return e.proto.opts.MinRTO
}

// initialCwnd is the connection's initial window, in bytes, at the send
// MSS: the route's InitCwnd segments, or RFC 6928's IW.
func (e *Endpoint) initialCwnd() uint32 {
	mss := uint32(e.sndMSS)
	if m := e.metrics(); m.InitCwnd > 0 {
		return m.InitCwnd * mss
	}
	return initialWindow(mss)
}

// routeMetricsChanged sets the MSS of an established connection again
// after its route's metrics changed (SetRoutes). The caller holds e.mu.
func (e *Endpoint) routeMetricsChanged() {
	if e.synMSS == 0 || e.route == nil || e.state == event.Closed || e.state == event.TimeWait {
		return // no handshake yet (the SYN's exchange sets the MSS), or nothing more to send
	}
	old := e.sndMSS
	e.syncMSS()
	if e.sndMSS == old {
		return
	}
	why := fmt.Sprintf("route metrics: path MTU %d", e.pathMTU())
	if e.sndMSS > old {
		if e.observed() {
			e.emit(event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
				Note: fmt.Sprintf("%s: MSS %d → %d", why, old, e.sndMSS)})
		}
		return
	}
	e.mssLowered(old, why)
}

// ParseRouteMetrics reads route metrics as Linux's `ip route` writes them,
// in any order: "mtu [lock] N", "advmss N", "initcwnd N", "initrwnd N", "rto_min T" (a
// time with its unit: 5ms, 0.2s), "quickack 1"; 0 leaves one unset, as
// the zero RouteMetrics. Any other word is an error that names it: tapstack keeps
// no other metric.
func ParseRouteMetrics(s string) (RouteMetrics, error) {
	var m RouteMetrics
	words := strings.Fields(s)
	for i := 0; i < len(words); i++ {
		key := words[i]
		switch key {
		case "mtu", "advmss", "initcwnd", "initrwnd", "rto_min", "quickack":
		default:
			return RouteMetrics{}, fmt.Errorf("route metric %q: tapstack has mtu [lock], advmss, initcwnd, initrwnd, rto_min and quickack", key)
		}
		if key == "mtu" && i+1 < len(words) && words[i+1] == "lock" {
			m.LockMTU = true
			i++
		}
		if i+1 >= len(words) {
			return RouteMetrics{}, fmt.Errorf("route metric %s without a value", key)
		}
		i++
		if key == "rto_min" {
			d, err := time.ParseDuration(words[i])
			if words[i] == "0" {
				d, err = 0, nil
			}
			if err != nil || d < 0 {
				return RouteMetrics{}, fmt.Errorf("route metric rto_min %q: want a time with its unit, as 5ms", words[i])
			}
			m.RTOMin = d
			continue
		}
		n, err := strconv.ParseUint(words[i], 10, 32)
		if err != nil {
			return RouteMetrics{}, fmt.Errorf("route metric %s %q: want a number", key, words[i])
		}
		switch key {
		case "mtu":
			if n != 0 && (n < 68 || n > 0xffff) {
				// An IP packet is at least 68 bytes long (RFC 791) and
				// at most 65,535; SetRouteMetrics holds a route to its
				// family's minimum and its link's MTU.
				return RouteMetrics{}, fmt.Errorf("route metric mtu %d: want 68 (IPv4's minimum) to 65535", n)
			}
			m.MTU = uint32(n)
		case "advmss":
			if n > 0xffff {
				return RouteMetrics{}, fmt.Errorf("route metric advmss %d: an MSS option holds at most 65535", n)
			}
			m.AdvMSS = uint16(n)
		case "initcwnd":
			m.InitCwnd = uint32(n)
		case "initrwnd":
			m.InitRwnd = uint32(n)
		case "quickack":
			if n > 1 {
				return RouteMetrics{}, fmt.Errorf("route metric quickack %d: want 0 or 1", n)
			}
			m.QuickAck = n == 1
		}
	}
	return m, nil
}

// String writes m as ParseRouteMetrics reads it, "" for no metrics.
func (m RouteMetrics) String() string {
	var parts []string
	if m.MTU != 0 {
		lock := ""
		if m.LockMTU {
			lock = "lock "
		}
		parts = append(parts, fmt.Sprintf("mtu %s%d", lock, m.MTU))
	}
	if m.AdvMSS != 0 {
		parts = append(parts, fmt.Sprintf("advmss %d", m.AdvMSS))
	}
	if m.InitCwnd != 0 {
		parts = append(parts, fmt.Sprintf("initcwnd %d", m.InitCwnd))
	}
	if m.InitRwnd != 0 {
		parts = append(parts, fmt.Sprintf("initrwnd %d", m.InitRwnd))
	}
	if m.RTOMin != 0 {
		parts = append(parts, fmt.Sprintf("rto_min %v", m.RTOMin))
	}
	if m.QuickAck {
		parts = append(parts, "quickack 1")
	}
	return strings.Join(parts, " ")
}

// synWindow is the window a SYN or SYN-ACK to remote on nic offers, with
// a receive buffer of bufLimit bytes and our MSS mss: at most 65,535, as
// the window field of a SYN is never scaled (RFC 7323 2.2), and at most
// the route's initrwnd segments (tcp_select_initial_window). grow is the
// window's cap in segments that the connection then grows (rcvGrowSegs),
// 0 when the route sets none or the buffer bounds the window anyway.
func (p *Protocol) synWindow(bufLimit, mss int, nic tcpip.NICID, remote tcpip.Address) (wnd int, grow uint16) {
	wnd = min(bufLimit, 0xffff)
	if m := p.metricsFor(nic, remote); m.InitRwnd > 0 && mss > 0 {
		if c := int(min(m.InitRwnd, 0xffff)) * mss; c < wnd {
			return c, uint16(min(m.InitRwnd, 0xffff))
		}
	}
	return wnd, 0
}

// growInitialWindow widens the window's cap by two segments for each
// segment of the n bytes of text that came in order, as Linux's
// tcp_grow_window raises rcv_ssthresh by 2*advmss a segment, and lifts
// the cap once the receive buffer bounds the window more.
func (e *Endpoint) growInitialWindow(n int) {
	mss := max(e.rcvMSS, 1)
	g := int(e.rcvGrowSegs) + 2*max(n/mss, 1)
	if g*mss >= e.rcvBufLimit || g > 0xffff {
		e.rcvGrowSegs = 0
		return
	}
	e.rcvGrowSegs = uint16(g)
}
