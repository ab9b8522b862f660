package gvpeer

import (
	"fmt"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// refusingTCP is gVisor's TCP, except that a segment for which no endpoint
// exists is left unhandled, so the network layer answers it the way RFC 1122
// 3.2.2.1 describes for a transport without a reset mechanism: with an ICMP
// destination unreachable, code port unreachable. It stands in for a host
// or firewall that rejects with ICMP (iptables -j REJECT's default).
type refusingTCP struct {
	stack.TransportProtocol
}

func (refusingTCP) HandleUnknownDestinationPacket(stack.TransportEndpointID, *stack.PacketBuffer) stack.UnknownDestinationPacketDisposition {
	return stack.UnknownDestinationPacketUnhandled
}

// NewRefusing makes a peer like New whose TCP answers a segment to a port
// nobody listens on with ICMP port unreachable instead of a RST.
func NewRefusing(link stack.LinkEndpoint, addr netip.Prefix, clock tcpip.Clock) (*Peer, error) {
	factory := func(s *stack.Stack) stack.TransportProtocol {
		return refusingTCP{tcp.NewProtocol(s)}
	}
	return newWith(link, addr, clock, factory)
}

func newWith(link stack.LinkEndpoint, addr netip.Prefix, clock tcpip.Clock, transport stack.TransportProtocolFactory) (*Peer, error) {
	if clock == nil {
		clock = tcpip.NewStdClock()
	}
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			ipv6.NewProtocolWithOptions(ipv6.Options{DADConfigs: stack.DADConfigurations{DupAddrDetectTransmits: 0}}),
			arp.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{transport},
		Clock:              clock,
	})
	if err := enableSACK(s); err != nil {
		return nil, err
	}
	p := &Peer{S: s, Addr: addr.Addr()}
	if err := p.addNIC(1, link, addr); err != nil {
		return nil, err
	}
	s.SetRouteTable([]tcpip.Route{{Destination: defaultSubnet(p.Addr), NIC: 1}})
	return p, nil
}

func (p *Peer) addNIC(id tcpip.NICID, link stack.LinkEndpoint, addr netip.Prefix) error {
	if err := p.S.CreateNIC(id, link); err != nil {
		return fmt.Errorf("gvpeer: create NIC %d: %s", id, err)
	}
	a := addr.Addr()
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	if err := p.S.AddProtocolAddress(id, tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.AsSlice()), PrefixLen: addr.Bits()},
	}, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("gvpeer: add address %v: %s", addr, err)
	}
	return nil
}

// NewRouter makes a router between two links: inside (the tested stack's
// side) with address in, and outside with address out, IPv4 or IPv6 as
// the addresses are. A packet it forwards to an outside neighbour that
// does not answer ARP (neighbour solicitations) is answered with ICMP
// destination unreachable, code host unreachable (ICMPv6 address
// unreachable), after resolveTimeout (gVisor's default is 3 s: three
// probes a second apart).
func NewRouter(inside stack.LinkEndpoint, in netip.Prefix, outside stack.LinkEndpoint, out netip.Prefix, resolveTimeout time.Duration) (*Peer, error) {
	p, err := newWith(inside, in, nil, tcp.NewProtocol)
	if err != nil {
		return nil, err
	}
	if err := p.addNIC(2, outside, out); err != nil {
		p.Close()
		return nil, err
	}
	mask := func(pr netip.Prefix) tcpip.Subnet {
		pr = pr.Masked()
		mb := make([]byte, pr.Addr().BitLen()/8)
		for i := range pr.Bits() {
			mb[i/8] |= 0x80 >> (i % 8)
		}
		sn, _ := tcpip.NewSubnet(tcpip.AddrFromSlice(pr.Addr().AsSlice()), tcpip.MaskFromBytes(mb))
		return sn
	}
	p.S.SetRouteTable([]tcpip.Route{
		{Destination: mask(in), NIC: 1},
		{Destination: mask(out), NIC: 2},
	})
	proto := ipv4.ProtocolNumber
	if in.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	if err := p.S.SetForwardingDefaultAndAllNICs(proto, true); err != nil {
		p.Close()
		return nil, fmt.Errorf("gvpeer: enable forwarding: %s", err)
	}
	if resolveTimeout > 0 {
		cfg := stack.DefaultNUDConfigurations()
		cfg.MaxMulticastProbes = 1
		cfg.RetransmitTimer = resolveTimeout
		if err := p.S.SetNUDConfigurations(2, proto, cfg); err != nil {
			p.Close()
			return nil, fmt.Errorf("gvpeer: NUD configuration: %s", err)
		}
	}
	return p, nil
}
