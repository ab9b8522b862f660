package stack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/internal/tcpbind"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// Options configure a Stack. The zero value is a stack on the real clock
// with the engine's defaults.
type Options struct {
	// Clock is the only source of time for the stack and its TCP engine.
	// Tests pass a faketime.ManualClock. Nil means the real clock.
	Clock tcpip.Clock

	// TCP configures the engine.
	TCP tcp.Options

	// OnLinkDown, if set, is called once for each interface whose link
	// failed under the stack (see LinkDown), after the stack has taken it
	// down. It runs on a goroutine of its own and may call any method of
	// the Stack, Close and Shutdown included.
	OnLinkDown func(LinkDown)

	// ConnContext, if set, makes the context a TCP connection carries
	// to the application (conn.Conn.Context) from ctx and the
	// connection's 4-tuple (Local is this stack's end). It is called
	// once per connection, when Dial or Accept hands the connection over,
	// on the caller's goroutine. A tracer puts the connection's span
	// there (observe/otel's Tracer.ConnContext), so that an
	// application's own spans, such as those of the HTTP requests served
	// over the connection, can name the TCP connection's trace as their
	// parent or link to it, while the stack and conn depend on no
	// tracing package.
	ConnContext func(ctx context.Context, id event.ConnID) context.Context
}

// LinkDown reports an interface whose link failed: a TAP device deleted
// (ip link del) or set down under the stack, a tap.Pipe whose other end
// closed. By then the stack has taken the interface down: every
// connection through it failed with ENETDOWN (blocked calls returned),
// its TIME-WAIT connections are gone, and its addresses and routes are
// removed, so new connections to its networks fail with ENETUNREACH or
// EHOSTUNREACH, as on Linux once a device is gone. Linux is slower with
// the connections: after `ip link del` they stay until their
// retransmission timers give up, their segments finding no route; tapstack
// ends them at once, for a failed link never comes back as the same
// interface. Listeners stay, those bound to the interface's address
// included, and take connections again once AddNIC gives the address
// back (on Linux, once the address is added again).
type LinkDown struct {
	NIC tcpip.NICID
	Err error // what the link reported, such as "tap: read: file descriptor in bad state"
}

func (d LinkDown) String() string { return fmt.Sprintf("NIC %d: link down: %v", d.NIC, d.Err) }

// FailingLink is implemented by link endpoints that can fail on their own,
// such as the endpoints of package tap (a TAP device deleted or down, a
// pipe whose other end closed). AddNIC finds it in the link it is given or
// in any endpoint that link wraps (a Child method, as gVisor's nested and
// ethernet endpoints and tapstack's middleware have) and registers a
// function, which the link calls once, without blocking on it, when it
// stops for good.
type FailingLink interface {
	OnFailure(func(error))
}

// BatchingLink is implemented by link endpoints that deliver inbound
// frames in bursts and can say when one ends, such as a TAP device with
// offloads and tap.Pipe's ends. AddNIC registers the engine's function,
// which the link calls after each burst, so that a burst of in-order
// segments is acknowledged at its end rather than segment by segment
// (stack/tcp/batch.go).
type BatchingLink interface {
	OnBatchEnd(func())
}

// QueueingLink is implemented by link endpoints with an outbound queue
// that can say how many more frames it takes before it is busy, such as
// a TAP device. AddNIC hands OutboundRoom to the engine, which then holds
// new data back while the queue is busy rather than fill it, as Linux's
// TCP small queues do (stack/tcp/smallqueues.go), and registers with
// OnOutboundRoom what the link calls whenever it has taken frames out of
// its queue (written them, or handed them over): the held data goes then,
// as Linux's TX completion (tcp_wfree) lets a throttled socket send. The
// link calls it on its own goroutine, with no stack lock held.
type QueueingLink interface {
	OutboundRoom() int
	OnOutboundRoom(fn func())
}

// FlushingLink is implemented by link endpoints with an outbound queue of
// their own, such as tap.Pipe's ends: Close waits, up to a bound, until
// the resets it sent have left, before removing the interface discards
// them.
type FlushingLink interface {
	FlushOutbound(timeout time.Duration) bool
}

// flushTimeout bounds how long Close waits for a link to pass on what the
// connections sent last.
const flushTimeout = time.Second

// ErrClosed is returned by calls on a closed Stack.
var ErrClosed = errors.New("stack: closed")

// Stack is a network stack with tapstack's TCP.
type Stack struct {
	s    *gstack.Stack
	tcp  *tcp.Protocol
	bind *tcpbind.Binding // the engine's side of gVisor's netstack

	onLinkDown  func(LinkDown)
	connContext func(context.Context, event.ConnID) context.Context

	metrics routeMetrics // SetRouteMetrics (routes.go)

	mu       sync.Mutex
	nextNIC  tcpip.NICID
	links    map[tcpip.NICID]gstack.LinkEndpoint
	down     map[tcpip.NICID]error // interfaces whose link failed
	closed   bool
	handlers sync.WaitGroup // link-down handling in progress
}

// New makes a stack with no interfaces.
func New(opts Options) *Stack {
	clock := opts.Clock
	if clock == nil {
		clock = tcpip.NewStdClock()
	}
	engine, bind := tcp.NewProtocol(opts.TCP)
	// One wrapper of IP and UDP (udp_wrap.go) for two jobs: UDP datagrams
	// as events (udp_observe.go) and ICMP errors for connected UDP sockets
	// (udp_errors.go).
	udpErrs := newUDPErrors()
	udpw := &udpWrap{obs: newUDPObserver(opts.TCP.Observer, clock), errs: udpErrs}
	s := gstack.New(gstack.Options{
		NetworkProtocols: append(udpw.network(
			ipv4.NewProtocol,
			// Addresses are usable at once: duplicate address detection
			// would hold them tentative until the clock moves.
			ipv6.NewProtocolWithOptions(ipv6.Options{DADConfigs: gstack.DADConfigurations{DupAddrDetectTransmits: 0}}),
		), arp.NewProtocol),
		// TCP is ours; UDP and the ICMP echo sockets are gVisor's
		// (transport/udp, transport/icmp): a datagram to a port nobody
		// holds gets ICMP port unreachable from gVisor's demuxer, as
		// Linux answers (RFC 1122 4.1.3.1), where without a UDP protocol
		// IPv4 would answer protocol unreachable.
		TransportProtocols: []gstack.TransportProtocolFactory{bind.Factory, udpw.transport(udp.NewProtocol), icmp.NewProtocol4, icmp.NewProtocol6},
		Clock:              clock,
		HandleLocal:        true,
	})
	udpw.attach(s)
	// The ICMP and ICMPv6 errors gVisor's IPv4 and IPv6 do not hand TCP
	// (stack/tcp's icmp4.go and icmp6.go). Registering fails only without
	// the network or ICMP protocol, all registered above.
	_ = s.RegisterRawTransportEndpoint(ipv4.ProtocolNumber, header.ICMPv4ProtocolNumber, bind.ICMP)
	_ = s.RegisterRawTransportEndpoint(ipv6.ProtocolNumber, header.ICMPv6ProtocolNumber, bind.ICMP)
	// And those they do not hand UDP (udp_errors.go).
	_ = s.RegisterRawTransportEndpoint(ipv4.ProtocolNumber, header.ICMPv4ProtocolNumber, udpErrs)
	_ = s.RegisterRawTransportEndpoint(ipv6.ProtocolNumber, header.ICMPv6ProtocolNumber, udpErrs)
	st := &Stack{
		s: s, tcp: engine, bind: bind, onLinkDown: opts.OnLinkDown, connContext: opts.ConnContext,
		nextNIC: 1, links: make(map[tcpip.NICID]gstack.LinkEndpoint), down: make(map[tcpip.NICID]error),
	}
	st.addLoopback()
	return st
}

// walkLink calls fn for link and every endpoint it wraps, outermost first,
// until fn returns true. The chain is followed through Child methods and
// bounded.
func walkLink(link gstack.LinkEndpoint, fn func(gstack.LinkEndpoint) bool) {
	for range 32 {
		if link == nil || fn(link) {
			return
		}
		c, ok := link.(interface{ Child() gstack.LinkEndpoint })
		if !ok {
			return
		}
		link = c.Child()
	}
}

// TCP returns the stack's TCP engine: its counters, connections and
// listeners.
func (s *Stack) TCP() *tcp.Protocol { return s.tcp }

// ConnContext returns the context of a connection handed to the
// application: Options.ConnContext's answer, or ctx without that hook.
func (s *Stack) ConnContext(ctx context.Context, id event.ConnID) context.Context {
	if s.connContext == nil {
		return ctx
	}
	return s.connContext(ctx, id)
}

// Netstack returns the underlying gVisor stack, for what this package does
// not wrap (neighbor tables, NIC statistics). A change to its routes,
// addresses or interfaces made there reaches new TCP connections within
// a second, or at once after TCP().RoutesChanged(): the engine reuses a
// live connection's route for a second (stack/tcp/routes.go). Change
// routes with AddRoute and RemoveRoute: a route removed there keeps its
// metrics (SetRouteMetrics) in force until this stack next changes its
// routes.
func (s *Stack) Netstack() *gstack.Stack { return s.s }

// Clock returns the stack's clock.
func (s *Stack) Clock() tcpip.Clock { return s.s.Clock() }

// AddNIC attaches a link endpoint as a new interface, assigns it the given
// addresses and adds an on-link route for each prefix. It returns the
// interface's id.
func (s *Stack) AddNIC(link gstack.LinkEndpoint, addrs ...netip.Prefix) (tcpip.NICID, error) {
	if link == nil {
		return 0, errors.New("stack: AddNIC: nil link endpoint")
	}
	// Every address is checked before the interface exists: one that
	// fails after it would leave a half-made interface holding the link.
	seen := make(map[netip.Addr]bool, len(addrs))
	for _, p := range addrs {
		q, err := addressPrefix(p)
		if err != nil {
			return 0, fmt.Errorf("stack: AddNIC: %w", err)
		}
		if seen[q.Addr()] {
			return 0, fmt.Errorf("stack: AddNIC: address %v twice", q.Addr())
		}
		seen[q.Addr()] = true
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	id := s.nextNIC
	s.nextNIC++
	s.links[id] = link
	s.mu.Unlock()

	if err := s.s.CreateNICWithOptions(id, link, gstack.NICOptions{QDisc: tap.NewQDisc(link)}); err != nil {
		s.mu.Lock()
		delete(s.links, id)
		s.mu.Unlock()
		return 0, fmt.Errorf("stack: create NIC: %s", err)
	}
	walkLink(link, func(l gstack.LinkEndpoint) bool {
		f, ok := l.(FailingLink)
		if ok {
			f.OnFailure(func(err error) { s.linkFailed(id, err) })
		}
		return ok
	})
	walkLink(link, func(l gstack.LinkEndpoint) bool {
		b, ok := l.(BatchingLink)
		if ok {
			b.OnBatchEnd(s.bind.BatchLink(id))
		}
		return ok
	})
	walkLink(link, func(l gstack.LinkEndpoint) bool {
		q, ok := l.(QueueingLink)
		if ok {
			q.OnOutboundRoom(s.bind.QueueLink(id, q.OutboundRoom))
		}
		return ok
	})
	for _, p := range addrs {
		if err := s.AddAddress(id, p); err != nil {
			// Not expected after the checks above; if it happens, the
			// interface goes (gVisor's RemoveNIC closes the link).
			s.mu.Lock()
			delete(s.links, id)
			s.mu.Unlock()
			_ = s.s.RemoveNIC(id)
			s.routesChanged()
			return 0, err
		}
	}
	return id, nil
}

// addressPrefix returns p as an interface address: an IPv4-mapped
// address as the IPv4 address it maps, with its prefix length. It fails
// for anything but a unicast address.
func addressPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
		return p, fmt.Errorf("%v is not a unicast address with a prefix length", p)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return p, fmt.Errorf("prefix %v is wider than the IPv4-mapped addresses", p)
		}
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96), nil
	}
	return p, nil
}

// AddAddress assigns p's address to interface nic and adds an on-link route
// for p's network.
func (s *Stack) AddAddress(nic tcpip.NICID, p netip.Prefix) error {
	p, err := addressPrefix(p)
	if err != nil {
		return fmt.Errorf("stack: AddAddress: %w", err)
	}
	addr := p.Addr()
	pa := tcpip.ProtocolAddress{
		Protocol:          netProto(addr),
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(addr.AsSlice()), PrefixLen: p.Bits()},
	}
	if err := s.s.AddProtocolAddress(nic, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("stack: add address %v to NIC %d: %s", p, nic, err)
	}
	// A second address in a network the interface has adds no second
	// route, as Linux's fib_add_ifaddr adds none for a secondary address.
	return s.addRoute(p.Masked(), netip.Addr{}, nic, true)
}

// AddRoute routes dst through interface nic, via gateway gw if it is valid.
// It fails for an interface the stack does not have, a gateway of
// another family than dst, a multicast or unspecified gateway, a gateway
// on none of the interface's networks (ENETUNREACH, as Linux's "Nexthop
// has invalid gateway": add the address or on-link route first), and a
// destination with host bits set (198.51.100.7/24: EINVAL, as Linux's
// "Invalid prefix for given prefix length"), and a route the table has
// already, with the same gateway (EEXIST, as Linux's "File exists").
func (s *Stack) AddRoute(dst netip.Prefix, gw netip.Addr, nic tcpip.NICID) error {
	return s.addRoute(dst, gw, nic, false)
}

// addRoute is AddRoute; an existing route is an error unless existingOK.
func (s *Stack) addRoute(dst netip.Prefix, gw netip.Addr, nic tcpip.NICID, existingOK bool) error {
	if !dst.IsValid() {
		return fmt.Errorf("stack: AddRoute: invalid destination %v", dst)
	}
	if !s.s.HasNIC(nic) {
		return fmt.Errorf("stack: AddRoute %v: no interface %d", dst, nic)
	}
	if gw.IsValid() {
		g := gw.Unmap()
		if g.Is4() != dst.Addr().Unmap().Is4() {
			return fmt.Errorf("stack: AddRoute %v: gateway %v is of another address family", dst, gw)
		}
		if g.IsUnspecified() || g.IsMulticast() {
			return fmt.Errorf("stack: AddRoute %v: gateway %v is not a unicast address", dst, gw)
		}
	}
	dst, subnet, err := subnetOf(dst)
	if err != nil {
		return fmt.Errorf("stack: AddRoute %v: %w", dst, err)
	}
	r := tcpip.Route{Destination: subnet, Gateway: gatewayAddr(gw), NIC: nic}
	s.metrics.mu.Lock() // one change of the table at a time
	defer s.metrics.mu.Unlock()
	if gw.IsValid() && !s.onLink(r.Gateway, nic) {
		// Linux's fib_check_nh (fib_check_nh_v4_gw, ip6_validate_gw)
		// refuses it: "Nexthop has invalid gateway". Kept, the route
		// would send every packet to a neighbour no link can reach.
		return fmt.Errorf("stack: AddRoute %v: gateway %v is not on a network of interface %d (add its address or an on-link route first): %w", dst, gw, nic, syscall.ENETUNREACH)
	}
	for _, have := range s.s.GetRouteTable() {
		if have.Equal(r) && have.Gateway == r.Gateway {
			if existingOK {
				return nil
			}
			// Linux's fib_table_insert without NLM_F_APPEND: "File
			// exists". A second row would change no lookup, and make
			// the route's metrics ambiguous (SetRouteMetrics).
			return fmt.Errorf("stack: AddRoute %v: the route exists: %w", dst, syscall.EEXIST)
		}
	}
	s.s.AddRoute(r)
	s.pushRoutesLocked() // new connections look their route up again
	return nil
}

// RemoveRoute removes the route to dst through interface nic via gateway
// gw (none if gw is not valid), with its metrics, as Linux's `ip route del
// dst [via gw] dev nic`: new connections to dst take the next route that
// matches; live ones move to it within a second (stack/tcp/routes.go).
// It fails with ESRCH for a route the table does not have, as Linux's
// "No such process", and with EINVAL for a dst with host bits set.
func (s *Stack) RemoveRoute(dst netip.Prefix, gw netip.Addr, nic tcpip.NICID) error {
	if !dst.IsValid() {
		return fmt.Errorf("stack: RemoveRoute: invalid destination %v", dst)
	}
	dst, subnet, err := subnetOf(dst)
	if err != nil {
		return fmt.Errorf("stack: RemoveRoute %v: %w", dst, err)
	}
	g := gatewayAddr(gw)
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	n := s.s.RemoveRoutes(func(r tcpip.Route) bool {
		return r.Destination == subnet && r.NIC == nic && r.Gateway == g
	})
	if n == 0 {
		via := "without a gateway"
		if gw.IsValid() {
			via = "via " + gw.String()
		}
		return fmt.Errorf("stack: RemoveRoute %v: no route %s through interface %d: %w", dst, via, nic, syscall.ESRCH)
	}
	s.pushRoutesLocked() // forgets the metrics of a route that went
	return nil
}

// gatewayAddr is a route's gateway as gVisor holds it: none for the
// zero Addr, an IPv4-mapped address as IPv4.
func gatewayAddr(gw netip.Addr) tcpip.Address {
	if !gw.IsValid() {
		return tcpip.Address{}
	}
	return tcpip.AddrFromSlice(gw.Unmap().AsSlice())
}

// onLink reports whether gw is a neighbour on interface nic: in the
// network of one of its on-link routes (those AddAddress adds, or
// AddRoute's without a gateway), or an IPv6 link-local address, which
// is on-link on every interface (RFC 4291 2.5.6).
func (s *Stack) onLink(gw tcpip.Address, nic tcpip.NICID) bool {
	if header.IsV6LinkLocalUnicastAddress(gw) {
		return true
	}
	for _, r := range s.s.GetRouteTable() {
		if r.NIC == nic && r.Gateway.Len() == 0 && r.Destination.Contains(gw) {
			return true
		}
	}
	return false
}

// Close ends the stack at once. Listeners close; every connection is
// aborted (RFC 9293 3.10.5): one RST for each that the peer still believes
// open (SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT),
// and users see ECONNABORTED. Connections in
// TIME-WAIT are deleted. The interfaces are detached and closed once
// their links have passed the resets on and the observer has heard of
// every event made until then, and Close waits for their goroutines.
// Shutdown is the graceful way.
func (s *Stack) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	links := s.links
	s.links = nil
	s.mu.Unlock()
	s.bind.Abort()
	for _, link := range links {
		walkLink(link, func(l gstack.LinkEndpoint) bool {
			f, ok := l.(FlushingLink)
			if ok {
				f.FlushOutbound(flushTimeout)
			}
			return ok
		})
	}
	// Events are delivered after the engine's locks are released, maybe
	// by another goroutine a moment after a user saw the state they tell
	// (a dial that waited for TIME-WAIT and closes the stack): they reach
	// the observer before the interfaces go, for a capture is link
	// middleware (pcap.Writer) and is closed with its link.
	s.tcp.SyncEvents()
	// Remove the NICs before gVisor's Stack.Wait: it waits for each link
	// endpoint while holding the stack's lock, and a link goroutine that is
	// delivering a frame into this stack at that moment needs the same
	// lock. RemoveNIC detaches and closes the link without holding it.
	for id := range links {
		_ = s.s.RemoveNIC(id)
	}
	_ = s.s.RemoveNIC(LoopbackNIC)
	// A link that failed is taken down on a goroutine of the stack's
	// (linkFailed), whose RemoveNIC may have the NIC out of gVisor's
	// table, so that ours found nothing to do, and not have closed the
	// link yet. The links are waited for once that is done: a link that
	// is not closed still works, and a wait then races with it (a
	// tap.Fault arming a timer for a frame still arriving, its
	// WaitGroup's Add concurrent with its Wait).
	s.handlers.Wait()
	for _, link := range links {
		link.Wait()
	}
	s.s.Close()
	s.s.Wait()
	// And those of the closing itself (TIME-WAIT records deleted, a
	// frame that was arriving): the observer hears of every
	// connection's end before Close returns.
	s.tcp.SyncEvents()
}

// Shutdown closes the stack the way its peers can see, like a server that
// drains before it exits (every connection gets the CLOSE call): listeners close, and
// every connection is closed as Conn.Close would, a FIN after the data
// still queued, or a RST where received data is discarded unread;
// connections still in their handshake finish it and then send their FIN.
// Shutdown waits until every connection has reached CLOSED or TIME-WAIT,
// or until ctx ends, and then closes the stack as Close does, which resets
// the connections that remain. It returns nil if every connection closed
// in time, ctx's error otherwise, and ErrClosed if the stack was already
// closed.
func (s *Stack) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	s.bind.Shutdown()
	var err error
	select {
	case <-s.bind.Drained():
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.Close()
	return err
}

// linkFailed takes interface id down after its link failed: once, and not
// while the stack closes. The link calls it from its own goroutine; the
// work happens on a goroutine of the stack's, which Close waits for.
func (s *Stack) linkFailed(id tcpip.NICID, err error) {
	s.mu.Lock()
	if s.closed || s.links[id] == nil || s.down[id] != nil {
		s.mu.Unlock()
		return
	}
	s.down[id] = err
	s.handlers.Add(1)
	s.mu.Unlock()
	go func() {
		// Connections first: they must not wait for a retransmission
		// timeout that a dead link makes certain.
		s.bind.LinkDown(id, err)
		_ = s.s.RemoveNIC(id)
		s.routesChanged()
		s.handlers.Done()
		if s.onLinkDown != nil {
			s.onLinkDown(LinkDown{NIC: id, Err: err})
		}
	}()
}

// LinkErr returns the failure of interface id's link, or nil if it has
// not failed.
func (s *Stack) LinkErr(id tcpip.NICID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down[id]
}

func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}
