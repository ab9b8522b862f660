package stack

import (
	"sync"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/internal/icmperr"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ICMP errors for connected UDP sockets.
//
// RFC 1122 4.1.3.3 has UDP pass every ICMP error to the application.
// Linux's __udp4_lib_err and __udp6_lib_err do so for a connected socket
// without IP_RECVERR only for a hard error: the codes icmp_err_convert
// (icmpv6_err_convert for IPv6) calls fatal, and fragmentation needed or
// packet too big (EMSGSIZE) unless path MTU discovery is off
// (IP_PMTUDISC_DONT). The error goes in sk_err, which the next send or
// receive returns and clears (sock_error), and sk_error_report wakes the
// socket's waiters. Soft errors (net and host unreachable, IPv4 codes 0,
// 1, 5, 11 and 12; IPv6 no route and address unreachable) and every
// error to an unconnected socket are not reported without IP_RECVERR,
// which package conn does not offer.
//
// gVisor's UDP (transport/udp, HandleError) acts on port unreachable
// alone (ECONNREFUSED) and drops every other error IP hands it. So the
// stack sees the errors IP hands UDP (the TransportDispatcher's
// DeliverTransportError, whose wrapper in udp_wrap.go calls icmpError,
// after gVisor's IP has checked the ICMP checksum and that the quoted
// datagram left from one of our addresses), and for a hard one gVisor's
// UDP drops it finds the connected socket by the quoted 4-tuple and sets
// the socket's last error, gVisor's sk_err that it already keeps for
// ECONNREFUSED and returns and clears on the next Read or Write; then it
// wakes the socket's waiters. gVisor's IPv6 hands UDP only no route, port
// unreachable and packet too big, and neither family hands it a parameter
// problem: for the fatal administratively prohibited, policy and reject
// route codes (EACCES) and parameter problems (EPROTO, both families),
// the stack watches ICMP and ICMPv6 as a raw endpoint (HandlePacket), as
// the TCP engine does, and sets them the same way. One owner per type and
// code, so that each error is set once: the dispatcher for what gVisor's
// IP hands UDP, the watcher for the rest.

// udpErrors finds UDP sockets for the ICMP errors IP hands UDP, and
// watches ICMP for the hard ones it does not.
type udpErrors struct {
	s *gstack.Stack // set once the stack exists, before any NIC

	mu sync.Mutex
	// wqs holds the waiter queue of each open UDP socket, by gVisor's
	// endpoint: the demuxer knows a socket by its endpoint, the queue
	// only its owner.
	wqs map[gstack.TransportEndpoint]*waiter.Queue
}

func newUDPErrors() *udpErrors {
	return &udpErrors{wqs: make(map[gstack.TransportEndpoint]*waiter.Queue)}
}

// icmpError sets a hard error on the connected socket the quoted
// datagram left from and wakes its waiters: udpDispatcher's hook
// (udp_wrap.go) for every ICMP error IP hands UDP. pkt is the ICMP
// message, its ICMP header in pkt.TransportHeader() and its data the
// quote from the transport header on; local and remote are the quoted
// datagram's source and destination.
func (u *udpErrors) icmpError(local, remote tcpip.Address, net tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	ih := pkt.TransportHeader().Slice()
	if len(ih) < 2 {
		return
	}
	err, pmtu := udpHardError(net, ih[0], ih[1])
	if err == nil {
		return
	}
	q, ok := pkt.Data().PullUp(header.UDPMinimumSize)
	if !ok {
		return
	}
	u.setError(net, pkt.NICID, local, remote, header.UDP(q), err, pmtu)
}

// HandlePacket implements gstack.RawTransportEndpoint: an ICMP or ICMPv6
// packet, as a copy the caller releases. It takes the hard errors for
// UDP that gVisor's IP hands no transport (udpWatchedError), checked as
// gVisor checks those it hands on (icmperr.Read), and sets them as
// icmpError does.
func (u *udpErrors) HandlePacket(pkt *gstack.PacketBuffer) {
	m, ok := icmperr.Read(u.s, pkt)
	if !ok || m.Protocol != udp.ProtocolNumber || m.Drop != event.DropNone {
		return
	}
	if err := udpWatchedError(m.Net, m.Type, m.Code); err != nil {
		u.setError(m.Net, pkt.NICID, m.Src, m.Dst, header.UDP(m.Transport), err, false)
	}
}

// setError sets err on the connected socket that sent the quoted UDP
// header uh from local to remote, found by the quoted 4-tuple as gVisor's
// demuxer finds it for the errors IP hands UDP, and wakes its waiters.
// An unconnected socket hears nothing. pmtu is set for an error that
// path MTU discovery turned off (IP_PMTUDISC_DONT) silences.
func (u *udpErrors) setError(net tcpip.NetworkProtocolNumber, nic tcpip.NICID, local, remote tcpip.Address, uh header.UDP, err tcpip.Error, pmtu bool) {
	id := gstack.TransportEndpointID{LocalPort: uh.SourcePort(), LocalAddress: local, RemotePort: uh.DestinationPort(), RemoteAddress: remote}
	te := u.s.FindTransportEndpoint(net, udp.ProtocolNumber, id, nic)
	ep, ok := te.(tcpip.Endpoint)
	if !ok || ep.State() != uint32(transport.DatagramEndpointStateConnected) {
		return
	}
	if pmtu {
		// __udp4_lib_err: no error under IP_PMTUDISC_DONT.
		if v, e := ep.GetSockOptInt(tcpip.MTUDiscoverOption); e == nil && v == int(tcpip.PMTUDiscoveryDont) {
			return
		}
	}
	ep.SocketOptions().SetLastError(err)
	u.mu.Lock()
	wq := u.wqs[te]
	u.mu.Unlock()
	if wq != nil {
		wq.Notify(waiter.EventErr)
	}
}

// udpWatchedError is the error a connected UDP socket reports for an ICMP
// error of typ and code that gVisor's IP hands no transport, nil for a
// soft one or one gVisor hands UDP (udpHardError's): a parameter problem,
// either family, is EPROTO and hard (Linux's __udp4_lib_err;
// icmpv6_err_convert for __udp6_lib_err); IPv6's administratively
// prohibited, source address failed ingress/egress policy and reject
// route are EACCES and hard (icmpv6_err_convert). Time exceeded (both
// families) and IPv6's beyond scope and address unreachable are soft.
// Package conn turns the tcpip.Error into the errno named.
func udpWatchedError(net tcpip.NetworkProtocolNumber, typ, code uint8) tcpip.Error {
	if net == header.IPv6ProtocolNumber {
		switch header.ICMPv6Type(typ) {
		case header.ICMPv6ParamProblem:
			return &tcpip.ErrMalformedHeader{} // EPROTO
		case header.ICMPv6DstUnreachable:
			switch header.ICMPv6Code(code) {
			case header.ICMPv6Prohibited, header.ICMPv6Policy, header.ICMPv6RejectRoute:
				return &tcpip.ErrNotPermitted{} // EACCES
			}
		}
		return nil
	}
	if header.ICMPv4Type(typ) == header.ICMPv4ParamProblem {
		return &tcpip.ErrMalformedHeader{} // EPROTO
	}
	return nil
}

// udpHardError is the error a connected UDP socket reports for an ICMP
// message of typ and code (Linux's __udp4_lib_err with icmp_err_convert,
// __udp6_lib_err with icmpv6_err_convert), nil for a soft one and for
// port unreachable, which gVisor's UDP reports itself. pmtu is set for
// fragmentation needed and packet too big. Package conn turns the
// tcpip.Error into the errno named.
func udpHardError(net tcpip.NetworkProtocolNumber, typ, code uint8) (err tcpip.Error, pmtu bool) {
	if net == header.IPv6ProtocolNumber {
		if header.ICMPv6Type(typ) == header.ICMPv6PacketTooBig {
			return &tcpip.ErrMessageTooLong{}, true // EMSGSIZE
		}
		// Of the Destination Unreachable codes gVisor hands UDP, no
		// route is soft and port unreachable gVisor's own.
		return nil, false
	}
	if header.ICMPv4Type(typ) != header.ICMPv4DstUnreachable {
		return nil, false
	}
	switch header.ICMPv4Code(code) {
	case header.ICMPv4ProtoUnreachable:
		return &tcpip.ErrUnknownProtocolOption{}, false // ENOPROTOOPT
	case header.ICMPv4FragmentationNeeded:
		return &tcpip.ErrMessageTooLong{}, true // EMSGSIZE
	case header.ICMPv4DestinationNetworkUnknown, header.ICMPv4NetProhibited:
		return &tcpip.ErrNetworkUnreachable{}, false // ENETUNREACH
	case header.ICMPv4DestinationHostUnknown:
		return &tcpip.ErrHostDown{}, false // EHOSTDOWN
	case header.ICMPv4SourceHostIsolated:
		return &tcpip.ErrNoNet{}, false // ENONET
	case header.ICMPv4HostProhibited, header.ICMPv4AdminProhibited,
		header.ICMPv4HostPrecedenceViolation, header.ICMPv4PrecedenceCutInEffect:
		return &tcpip.ErrHostUnreachable{}, false // EHOSTUNREACH
	}
	// Net and host unreachable (for TOS too) and source route failed
	// are soft; port unreachable is gVisor's.
	return nil, false
}

// opened records the waiter queue of a new UDP socket, so that setError
// can wake it: udpProtocol's hook (udp_wrap.go) for every socket made. It
// returns the socket as the demuxer knows it, for closed; nil for one the
// demuxer would not find.
func (u *udpErrors) opened(ep tcpip.Endpoint, wq *waiter.Queue) gstack.TransportEndpoint {
	te, ok := ep.(gstack.TransportEndpoint)
	if !ok {
		return nil
	}
	u.mu.Lock()
	u.wqs[te] = wq
	u.mu.Unlock()
	return te
}

// closed forgets a socket opened returned, as it closes.
func (u *udpErrors) closed(te gstack.TransportEndpoint) {
	if te == nil {
		return
	}
	u.mu.Lock()
	delete(u.wqs, te)
	u.mu.Unlock()
}
