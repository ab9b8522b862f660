package tcp

import (
	"sync"

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

// routeKey says which connections may share a route.
type routeKey struct {
	nic                    tcpip.NICID
	netProto               tcpip.NetworkProtocolNumber
	local, remote, nextHop tcpip.Address
}

type sharedRoute struct {
	r    *stack.Route
	refs int
}

// routeCache is the engine's shared routes.
type routeCache struct {
	mu    sync.Mutex
	m     map[routeKey]*sharedRoute
	byPtr map[*stack.Route]routeKey
}

// shareRoute returns the route a new connection keeps: r, or the shared
// route r stands for, in which case r is released. Give it back with
// releaseRoute.
func (p *Protocol) shareRoute(r *stack.Route) *stack.Route {
	k := routeKey{nic: r.NICID(), netProto: r.NetProto(), local: r.LocalAddress(), remote: r.RemoteAddress(), nextHop: r.NextHop()}
	c := &p.routes
	c.mu.Lock()
	if s, ok := c.m[k]; ok {
		s.refs++
		c.mu.Unlock()
		r.Release()
		return s.r
	}
	if c.m == nil {
		c.m = make(map[routeKey]*sharedRoute)
		c.byPtr = make(map[*stack.Route]routeKey)
	}
	c.m[k] = &sharedRoute{r: r, refs: 1}
	c.byPtr[r] = k
	c.mu.Unlock()
	return r
}

// releaseRoute gives back a route shareRoute returned.
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
	delete(c.m, k)
	delete(c.byPtr, r)
	c.mu.Unlock()
	r.Release()
}
