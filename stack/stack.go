// Package stack builds a tapstack network stack: gVisor's netstack for
// Ethernet, ARP, IPv4, IPv6 and ICMP, with tapstack's own TCP engine
// (package stack/tcp) registered as the transport for protocol 6. gVisor's
// TCP is never part of a tapstack stack.
//
// A Stack is a value: tests run many in one process, each with its own
// clock, addresses, counters and observer.
package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
)

// Options configure a Stack. The zero value is a stack on the real clock
// with the engine's defaults.
type Options struct {
	// Clock is the only source of time for the stack and its TCP engine.
	// Tests pass a faketime.ManualClock. Nil means the real clock.
	Clock tcpip.Clock

	// TCP configures the engine.
	TCP tcp.Options
}

// ErrClosed is returned by calls on a closed Stack.
var ErrClosed = errors.New("stack: closed")

// Stack is a network stack with tapstack's TCP.
type Stack struct {
	s   *gstack.Stack
	tcp *tcp.Protocol

	mu      sync.Mutex
	nextNIC tcpip.NICID
	links   map[tcpip.NICID]gstack.LinkEndpoint
	closed  bool
}

// New makes a stack with no interfaces.
func New(opts Options) *Stack {
	clock := opts.Clock
	if clock == nil {
		clock = tcpip.NewStdClock()
	}
	s := gstack.New(gstack.Options{
		NetworkProtocols: []gstack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			// Addresses are usable at once: duplicate address detection
			// would hold them tentative until the clock moves.
			ipv6.NewProtocolWithOptions(ipv6.Options{DADConfigs: gstack.DADConfigurations{DupAddrDetectTransmits: 0}}),
			arp.NewProtocol,
		},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol(opts.TCP)},
		Clock:              clock,
		HandleLocal:        true,
	})
	return &Stack{s: s, tcp: tcp.Of(s), nextNIC: 1, links: make(map[tcpip.NICID]gstack.LinkEndpoint)}
}

// TCP returns the stack's TCP engine: its counters, connections and
// listeners.
func (s *Stack) TCP() *tcp.Protocol { return s.tcp }

// Netstack returns the underlying gVisor stack, for what this package does
// not wrap (neighbor tables, NIC statistics).
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
	for _, p := range addrs {
		if !p.IsValid() || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
			return 0, fmt.Errorf("stack: AddNIC: %v is not a unicast address with a prefix length", p)
		}
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

	if err := s.s.CreateNIC(id, link); err != nil {
		s.mu.Lock()
		delete(s.links, id)
		s.mu.Unlock()
		return 0, fmt.Errorf("stack: create NIC: %s", err)
	}
	for _, p := range addrs {
		if err := s.AddAddress(id, p); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// AddAddress assigns p's address to interface nic and adds an on-link route
// for p's network.
func (s *Stack) AddAddress(nic tcpip.NICID, p netip.Prefix) error {
	addr := p.Addr().Unmap()
	pa := tcpip.ProtocolAddress{
		Protocol:          netProto(addr),
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(addr.AsSlice()), PrefixLen: p.Bits()},
	}
	if err := s.s.AddProtocolAddress(nic, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("stack: add address %v to NIC %d: %s", p, nic, err)
	}
	return s.AddRoute(p.Masked(), netip.Addr{}, nic)
}

// AddRoute routes dst through interface nic, via gateway gw if it is valid.
func (s *Stack) AddRoute(dst netip.Prefix, gw netip.Addr, nic tcpip.NICID) error {
	if !dst.IsValid() {
		return fmt.Errorf("stack: AddRoute: invalid destination %v", dst)
	}
	dst = dst.Masked()
	a := dst.Addr().Unmap()
	mb := make([]byte, a.BitLen()/8)
	for i := range dst.Bits() {
		mb[i/8] |= 0x80 >> (i % 8)
	}
	mask := tcpip.MaskFromBytes(mb)
	subnet, err := tcpip.NewSubnet(tcpip.AddrFromSlice(a.AsSlice()), mask)
	if err != nil {
		return fmt.Errorf("stack: AddRoute %v: %v", dst, err)
	}
	r := tcpip.Route{Destination: subnet, NIC: nic}
	if gw.IsValid() {
		r.Gateway = tcpip.AddrFromSlice(gw.Unmap().AsSlice())
	}
	s.s.AddRoute(r)
	return nil
}

// Close aborts every connection and listener, detaches and closes the
// interfaces and waits for their goroutines.
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
	for _, l := range s.tcp.Listeners() {
		l.Close()
	}
	for _, e := range s.tcp.Connections() {
		e.Abort()
	}
	// Remove the NICs before gVisor's Stack.Wait: it waits for each link
	// endpoint while holding the stack's lock, and a link goroutine that is
	// delivering a frame into this stack at that moment needs the same
	// lock. RemoveNIC detaches and closes the link without holding it.
	for id, link := range links {
		_ = s.s.RemoveNIC(id)
		link.Wait()
	}
	s.s.Close()
	s.s.Wait()
}

func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}
