package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The stack's one wrapper of gVisor's IP and UDP, for two jobs that need
// to see UDP where gVisor's transport/udp, not ours to change, keeps it:
// the observer's report of each datagram (udp_observe.go) and the hard
// ICMP errors for connected sockets (udp_errors.go). gVisor gives no hook
// there, so the stack wraps the factories: IP's, whose endpoints hand
// every transport packet and ICMP error to a TransportDispatcher, and
// UDP's, which makes every socket. One wrapper serves both jobs, so that
// each inbound packet crosses one dispatcher of ours, not one per job; it
// only routes to the jobs' hooks, which each file keeps:
//
//   - a UDP datagram delivered: udpObserver.deliver, with an observer;
//   - an ICMP error IP hands UDP: udpErrors.icmpError;
//   - a socket made: udpErrors.opened; closed: udpErrors.closed;
//   - a datagram written: udpObserver.sent, with an observer.
//
// The endpoints of IP are gVisor's own: only the dispatcher they are
// given differs.

// udpWrap routes what gVisor's IP and UDP do with UDP to the jobs'
// hooks.
type udpWrap struct {
	obs  *udpObserver // nil without an observer: datagrams go unreported
	errs *udpErrors
}

// attach gives the jobs the gVisor stack the wrapped factories built,
// before any NIC exists.
func (w *udpWrap) attach(s *gstack.Stack) {
	w.obs.attach(s)
	w.errs.s = s
}

// network wraps the factories of IP so that their endpoints deliver to
// transport protocols through udpDispatcher.
func (w *udpWrap) network(fs ...gstack.NetworkProtocolFactory) []gstack.NetworkProtocolFactory {
	out := make([]gstack.NetworkProtocolFactory, len(fs))
	for i, f := range fs {
		out[i] = func(s *gstack.Stack) gstack.NetworkProtocol {
			return &udpNetworkProtocol{NetworkProtocol: f(s), w: w}
		}
	}
	return out
}

// transport wraps UDP's factory so that the jobs see each socket.
func (w *udpWrap) transport(f gstack.TransportProtocolFactory) gstack.TransportProtocolFactory {
	return func(s *gstack.Stack) gstack.TransportProtocol {
		return &udpProtocol{TransportProtocol: f(s), w: w}
	}
}

// udpNetworkProtocol is IPv4 or IPv6 with endpoints that deliver through
// udpDispatcher.
type udpNetworkProtocol struct {
	gstack.NetworkProtocol
	w *udpWrap
}

func (p *udpNetworkProtocol) NewEndpoint(nic gstack.NetworkInterface, d gstack.TransportDispatcher) gstack.NetworkEndpoint {
	return p.NetworkProtocol.NewEndpoint(nic, &udpDispatcher{TransportDispatcher: d, w: p.w})
}

// udpDispatcher passes every transport packet and error on to the NIC's
// dispatcher, through the jobs' hooks for UDP's.
type udpDispatcher struct {
	gstack.TransportDispatcher
	w *udpWrap
}

var _ gstack.TransportDispatcherWithDefaultHandlerResult = (*udpDispatcher)(nil)

func (d *udpDispatcher) DeliverTransportPacket(proto tcpip.TransportProtocolNumber, pkt *gstack.PacketBuffer) gstack.TransportPacketDisposition {
	if proto == udp.ProtocolNumber && d.w.obs != nil {
		return d.w.obs.deliver(d.TransportDispatcher, pkt)
	}
	return d.TransportDispatcher.DeliverTransportPacket(proto, pkt)
}

// DeliverTransportPacketWithDefaultHandlerResult is asked for by IP's
// ICMP handling (echo requests); the NIC's dispatcher has it. UDP, were
// it asked for, goes through DeliverTransportPacket and its hook.
func (d *udpDispatcher) DeliverTransportPacketWithDefaultHandlerResult(proto tcpip.TransportProtocolNumber, pkt *gstack.PacketBuffer) (gstack.TransportPacketDisposition, bool) {
	if proto == udp.ProtocolNumber && d.w.obs != nil {
		return d.DeliverTransportPacket(proto, pkt), false
	}
	if wd, ok := d.TransportDispatcher.(gstack.TransportDispatcherWithDefaultHandlerResult); ok {
		return wd.DeliverTransportPacketWithDefaultHandlerResult(proto, pkt)
	}
	return d.TransportDispatcher.DeliverTransportPacket(proto, pkt), false
}

// DeliverTransportError is IP handing a transport an ICMP error: pkt is
// the ICMP message, its ICMP header in pkt.TransportHeader() and its data
// the quote from the transport header on; local and remote are the
// quoted datagram's source and destination.
func (d *udpDispatcher) DeliverTransportError(local, remote tcpip.Address, net tcpip.NetworkProtocolNumber, trans tcpip.TransportProtocolNumber, transErr gstack.TransportError, pkt *gstack.PacketBuffer) {
	if trans == udp.ProtocolNumber {
		d.w.errs.icmpError(local, remote, net, pkt)
	}
	d.TransportDispatcher.DeliverTransportError(local, remote, net, trans, transErr, pkt)
}

// udpProtocol is gVisor's UDP with sockets the jobs see.
type udpProtocol struct {
	gstack.TransportProtocol
	w *udpWrap
}

func (p *udpProtocol) NewEndpoint(netProto tcpip.NetworkProtocolNumber, wq *waiter.Queue) (tcpip.Endpoint, tcpip.Error) {
	ep, err := p.TransportProtocol.NewEndpoint(netProto, wq)
	if err != nil {
		return nil, err
	}
	return &udpEndpoint{Endpoint: ep, te: p.w.errs.opened(ep, wq), w: p.w}, nil
}

// udpEndpoint is one of gVisor's UDP sockets whose writes and close the
// jobs see.
type udpEndpoint struct {
	tcpip.Endpoint
	te gstack.TransportEndpoint // udpErrors.opened's answer
	w  *udpWrap
}

func (e *udpEndpoint) Write(p tcpip.Payloader, opts tcpip.WriteOptions) (int64, tcpip.Error) {
	n, err := e.Endpoint.Write(p, opts)
	if err == nil && e.w.obs != nil {
		e.w.obs.sent(e.Endpoint, opts.To, int(n))
	}
	return n, err
}

func (e *udpEndpoint) Close() {
	e.w.errs.closed(e.te)
	e.Endpoint.Close()
}
