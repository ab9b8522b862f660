package stack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/ports"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
)

// RestrictListener keeps a listener on the wildcard address to one
// address family, as a Linux socket of that family is: IPv4 only for
// package net's "tcp4", IPv6 only for "tcp6" (IPV6_V6ONLY). The engine's
// Listen takes both families for an unspecified address; this removes the
// other family's entry from the stack's demultiplexer, so that a SYN of
// that family finds no listener and is answered with RST (RFC 9293
// 3.10.7.1), as Linux answers it. The port stays reserved for both
// families. ipv6 names the family kept.
func (s *Stack) RestrictListener(l *tcp.Listener, ipv6 bool) error {
	if a := l.Addr().Addr(); a.IsValid() && !a.IsUnspecified() {
		return nil // bound to one address: one family already
	}
	keep, drop := header.IPv4ProtocolNumber, header.IPv6ProtocolNumber
	if ipv6 {
		keep, drop = drop, keep
	}
	id := gstack.TransportEndpointID{LocalPort: l.Addr().Port()}
	kept := s.s.FindTransportEndpoint(keep, header.TCPProtocolNumber, id, 0)
	other := s.s.FindTransportEndpoint(drop, header.TCPProtocolNumber, id, 0)
	if other == nil {
		return nil
	}
	if kept == nil || kept != other {
		// Not the listener's pair of entries: leave them alone.
		return fmt.Errorf("stack: RestrictListener: port %d is not one listener's", id.LocalPort)
	}
	// The engine registers its listeners with no flags and no device;
	// unregistering with the same removes exactly this entry. The
	// engine's own Close later unregisters both families, which for the
	// removed one finds nothing and does nothing.
	s.s.UnregisterTransportEndpoint([]tcpip.NetworkProtocolNumber{drop}, header.TCPProtocolNumber, id, other, ports.Flags{}, 0)
	if s.s.FindTransportEndpoint(drop, header.TCPProtocolNumber, id, 0) != nil {
		return fmt.Errorf("stack: RestrictListener: port %d still takes the other family", id.LocalPort)
	}
	return nil
}
