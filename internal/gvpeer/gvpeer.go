// Package gvpeer builds the independent peer tapstack is tested and
// benchmarked against: a gVisor stack running gVisor's own TCP
// (transport/tcp). It is used only by tests, benchmarks and demos; a
// tapstack stack never runs gVisor's TCP.
package gvpeer

import (
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Peer is a gVisor stack with gVisor's TCP on one NIC.
type Peer struct {
	S    *stack.Stack
	Addr netip.Addr
	link stack.LinkEndpoint
}

// New makes a gVisor-TCP stack on link with address addr (with prefix).
func New(link stack.LinkEndpoint, addr netip.Prefix, clock tcpip.Clock) (*Peer, error) {
	if clock == nil {
		clock = tcpip.NewStdClock()
	}
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			// No duplicate address detection, as in a tapstack stack: the
			// address would stay tentative for a second on the real clock.
			ipv6.NewProtocolWithOptions(ipv6.Options{DADConfigs: stack.DADConfigurations{DupAddrDetectTransmits: 0}}),
			arp.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		Clock:              clock,
	})
	if err := s.CreateNIC(1, link); err != nil {
		return nil, fmt.Errorf("gvpeer: create NIC: %s", err)
	}
	a := addr.Addr()
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.AsSlice()), PrefixLen: addr.Bits()},
	}, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("gvpeer: add address: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: defaultSubnet(a), NIC: 1},
	})
	return &Peer{S: s, Addr: a, link: link}, nil
}

// defaultSubnet is the default route's destination (0.0.0.0/0 or ::/0) for
// a's address family.
func defaultSubnet(a netip.Addr) tcpip.Subnet {
	n := 4
	if a.Is6() {
		n = 16
	}
	sn, _ := tcpip.NewSubnet(tcpip.AddrFromSlice(make([]byte, n)), tcpip.MaskFromBytes(make([]byte, n)))
	return sn
}

func (p *Peer) proto() tcpip.NetworkProtocolNumber {
	if p.Addr.Is6() {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// Listen listens with gVisor's TCP on port.
func (p *Peer) Listen(port uint16) (net.Listener, error) {
	return gonet.ListenTCP(p.S, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(p.Addr.AsSlice()), Port: port}, p.proto())
}

// Dial connects with gVisor's TCP to addr.
func (p *Peer) Dial(addr netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialTCP(p.S, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(addr.Addr().AsSlice()), Port: addr.Port()}, p.proto())
}

// Close shuts the stack down.
//
// The NICs are removed first: gVisor's Stack.Wait waits for each link
// endpoint while holding the stack's lock, and a link goroutine delivering
// a frame into the stack at that moment needs the lock too.
func (p *Peer) Close() {
	for id := range p.S.NICInfo() {
		_ = p.S.RemoveNIC(id)
	}
	if p.link != nil {
		p.link.Wait()
	}
	p.S.Close()
	p.S.Wait()
}
