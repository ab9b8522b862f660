package tcp

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Connections between the same two addresses share one gVisor route, as
// Linux's sockets share a dst_entry: a route is 190 bytes a connection
// otherwise, a tenth of the heap of an idle connection. A route found for
// a new connection is swapped for the shared one with the same interface,
// addresses and next hop, which is what the network layer uses to send
// (the path MTU is the engine's own, pmtu.go); the shared route is
// released with its last connection. The cache holds at most one entry
// per live connection.
//
// A new connection also skips the lookup itself when a live connection's
// route answered the same question (interface, local and remote address)
// less than routeFresh ago. gVisor's FindRoute is dear with the stack's
// loopback interface (HandleLocal: every interface is asked whether the
// remote address is its own, under the stack's read locks): 4 µs, 8% of
// the CPU of opening and closing connections over tap.Pipe. Linux too
// keeps the answer of an output route lookup (the nexthop's cached
// dst_entry) and checks a generation number on use; gVisor has no
// generation, so the answer is trusted for routeFresh and dropped at once
// by RoutesChanged, which package stack calls when its interfaces,
// addresses or routes change. A change made behind it, through
// stack.Stack.Netstack or by gVisor itself (an IPv6 router
// advertisement's route), reaches new connections within routeFresh;
// connections already open keep their route either way, as they always
// have.
const routeFresh = time.Second

// routeKey says which connections may share a route.
type routeKey struct {
	nic                    tcpip.NICID
	netProto               tcpip.NetworkProtocolNumber
	local, remote, nextHop tcpip.Address
	mtu                    uint32 // a route's MTU metric changes it
}

// routeQuery is what a connection asks FindRoute: nic and local may be
// zero, for any.
type routeQuery struct {
	nic           tcpip.NICID
	netProto      tcpip.NetworkProtocolNumber
	local, remote tcpip.Address
}

type sharedRoute struct {
	r    *stack.Route
	refs int
	// queries are the questions this route is the recorded answer to
	// (routeCache.answers), removed with it.
	queries []routeQuery
}

// routeAnswer is FindRoute's answer to a query, and when it was given.
type routeAnswer struct {
	s     *sharedRoute
	found tcpip.MonotonicTime
}

// routeCache is the engine's shared routes.
type routeCache struct {
	mu      sync.Mutex
	m       map[routeKey]*sharedRoute
	byPtr   map[*stack.Route]routeKey
	answers map[routeQuery]routeAnswer // at most a few per entry of m
	gen     uint64                     // RoutesChanged's count: answers older are not recorded
}

// findRoute returns the route for a new connection, or for one segment
// (replyRST, timeWaitAck): a live connection's route that answered q
// less than routeFresh ago, or FindRoute's answer, shared (shareRoute).
// Give it back with releaseRoute.
func (p *Protocol) findRoute(q routeQuery) (*stack.Route, tcpip.Error) {
	now := p.clock.NowMonotonic()
	c := &p.routes
	c.mu.Lock()
	if a, ok := c.answers[q]; ok && now.Sub(a.found) < routeFresh {
		a.s.refs++
		c.mu.Unlock()
		p.stats.RoutesReused.Add(1)
		return a.s.r, nil
	}
	gen := c.gen
	c.mu.Unlock()
	p.stats.RoutesFound.Add(1)
	r, err := p.stack.FindRoute(q.nic, q.local, q.remote, q.netProto, false)
	if err != nil {
		return nil, err
	}
	return p.shareRoute(r, q, now, gen), nil
}

// shareRoute returns the route a new connection keeps: r, or the shared
// route r stands for, in which case r is released. It records r's route
// as the answer to q, found at now, unless the routes changed since gen.
func (p *Protocol) shareRoute(r *stack.Route, q routeQuery, now tcpip.MonotonicTime, gen uint64) *stack.Route {
	k := routeKey{nic: r.NICID(), netProto: r.NetProto(), local: r.LocalAddress(), remote: r.RemoteAddress(), nextHop: r.NextHop(), mtu: r.MTU()}
	c := &p.routes
	c.mu.Lock()
	s, shared := c.m[k]
	if shared {
		s.refs++
	} else {
		if c.m == nil {
			c.m = make(map[routeKey]*sharedRoute)
			c.byPtr = make(map[*stack.Route]routeKey)
			c.answers = make(map[routeQuery]routeAnswer)
		}
		s = &sharedRoute{r: r, refs: 1}
		c.m[k] = s
		c.byPtr[r] = k
	}
	if gen == c.gen {
		old, had := c.answers[q]
		if !had || old.s != s {
			if had {
				old.s.forget(q)
			}
			s.queries = append(s.queries, q)
		}
		c.answers[q] = routeAnswer{s: s, found: now}
	}
	c.mu.Unlock()
	if shared {
		r.Release() // outside the cache's lock, as releaseRoute does
	}
	return s.r
}

// forget drops q from the queries s answers.
func (s *sharedRoute) forget(q routeQuery) {
	for i, x := range s.queries {
		if x == q {
			s.queries = append(s.queries[:i], s.queries[i+1:]...)
			return
		}
	}
}

// releaseRoute gives back a route findRoute returned.
func (p *Protocol) releaseRoute(r *stack.Route) {
	c := &p.routes
	c.mu.Lock()
	k, ok := c.byPtr[r]
	if !ok {
		c.mu.Unlock()
		r.Release() // not shared (cannot happen): release it as before
		return
	}
	s := c.m[k]
	s.refs--
	if s.refs > 0 {
		c.mu.Unlock()
		return
	}
	for _, q := range s.queries {
		delete(c.answers, q)
	}
	delete(c.m, k)
	delete(c.byPtr, r)
	c.mu.Unlock()
	r.Release()
}

// RoutesChanged tells the engine that the stack's interfaces, addresses
// or routes changed: new connections look their route up again. Package
// stack calls it for every change made through it; call it after
// changing gVisor's tables directly (stack.Stack.Netstack), or such a
// change reaches new connections within a second. Connections already
// open keep their route.
func (p *Protocol) RoutesChanged() {
	c := &p.routes
	c.mu.Lock()
	c.gen++
	clear(c.answers)
	for _, s := range c.m {
		s.queries = s.queries[:0]
	}
	c.mu.Unlock()
}
