package tcp

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/header/parse"
	"gvisor.dev/gvisor/pkg/tcpip/ports"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tapstack/tapstack/event"
)

// The engine as gVisor's netstack sees it. gVisor's stack.TransportProtocol
// and stack.TransportEndpoint are how segments and ICMP errors reach the
// engine, not part of its user interface, so they are implemented by
// unexported types that share the engine's own: transportProtocol is a
// Protocol, transportEndpoint an Endpoint, listenerEndpoint a Listener.
// A conversion between the two is free, and the demuxer's entries are the
// engine's own pointers.

type (
	transportProtocol Protocol
	transportEndpoint Endpoint
	listenerEndpoint  Listener
)

// demux is e as the demuxer holds it.
func (e *Endpoint) demux() stack.TransportEndpoint { return (*transportEndpoint)(e) }

// demux is l as the demuxer holds it.
func (l *Listener) demux() stack.TransportEndpoint { return (*listenerEndpoint)(l) }

// register enters e in the demuxer under its 4-tuple.
func (e *Endpoint) registerDemux(netProtos []tcpip.NetworkProtocolNumber) tcpip.Error {
	return e.proto.stack.RegisterTransportEndpoint(netProtos, protocolNumber, e.id, e.demux(), ports.Flags{}, 0)
}

// unregisterDemux takes e out of the demuxer.
func (e *Endpoint) unregisterDemux() {
	e.proto.stack.UnregisterTransportEndpoint([]tcpip.NetworkProtocolNumber{e.netProto}, protocolNumber, e.id, e.demux(), ports.Flags{}, 0)
}

// Number implements stack.TransportProtocol.
func (*transportProtocol) Number() tcpip.TransportProtocolNumber { return protocolNumber }

// NewEndpoint implements stack.TransportProtocol. tapstack's API is
// Endpoint and Listener (and package conn), not tcpip.Endpoint.
func (*transportProtocol) NewEndpoint(tcpip.NetworkProtocolNumber, *waiter.Queue) (tcpip.Endpoint, tcpip.Error) {
	return nil, &tcpip.ErrNotSupported{}
}

// NewRawEndpoint implements stack.TransportProtocol.
func (*transportProtocol) NewRawEndpoint(tcpip.NetworkProtocolNumber, *waiter.Queue) (tcpip.Endpoint, tcpip.Error) {
	return nil, &tcpip.ErrNotSupported{}
}

// MinimumPacketSize implements stack.TransportProtocol.
func (*transportProtocol) MinimumPacketSize() int { return header.TCPMinimumSize }

// ParsePorts implements stack.TransportProtocol. ICMP errors carry only
// the first 8 bytes of our header, which hold both ports.
func (*transportProtocol) ParsePorts(b []byte) (src, dst uint16, err tcpip.Error) {
	if len(b) < 4 {
		return 0, 0, &tcpip.ErrInvalidEndpointState{}
	}
	h := header.TCP(b)
	return h.SourcePort(), h.DestinationPort(), nil
}

// Parse implements stack.TransportProtocol: it moves the TCP header into
// pkt.TransportHeader, without which gVisor drops the packet.
func (tp *transportProtocol) Parse(pkt *stack.PacketBuffer) bool {
	if parse.TCP(pkt) {
		return true
	}
	// Shorter than a TCP header: gVisor drops it after we return, so the
	// drop is counted here or nowhere.
	p := (*Protocol)(tp)
	p.stats.SegmentsIn.Add(1)
	p.stats.Drops[event.DropMalformed].Add(1)
	if p.opts.Observer != nil {
		p.emit(event.Event{Kind: event.KindDrop, Drop: event.DropMalformed, Segment: event.SegmentInfo{Note: "truncated TCP header"}})
	}
	return false
}

// SetOption implements stack.TransportProtocol.
func (*transportProtocol) SetOption(tcpip.SettableTransportProtocolOption) tcpip.Error {
	return &tcpip.ErrUnknownProtocolOption{}
}

// Option implements stack.TransportProtocol.
func (*transportProtocol) Option(tcpip.GettableTransportProtocolOption) tcpip.Error {
	return &tcpip.ErrUnknownProtocolOption{}
}

// Close implements stack.TransportProtocol: gVisor's stack is closing.
// Connections are aborted by the stack (abortAll, TransportEndpoint.Abort);
// here we refuse new ones and delete the connections in TIME-WAIT, which
// are not in the demuxer.
func (tp *transportProtocol) Close() { (*Protocol)(tp).close() }

// Wait implements stack.TransportProtocol: the engine owns no goroutines.
func (*transportProtocol) Wait() {}

// Pause implements stack.TransportProtocol.
func (*transportProtocol) Pause() {}

// Resume implements stack.TransportProtocol.
func (*transportProtocol) Resume() {}

// Restore implements stack.TransportProtocol.
func (*transportProtocol) Restore() {}

// HandleUnknownDestinationPacket implements stack.TransportProtocol: a
// segment for which there is no connection and no listener.
func (tp *transportProtocol) HandleUnknownDestinationPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) stack.UnknownDestinationPacketDisposition {
	(*Protocol)(tp).closedArrives(id, pkt)
	return stack.UnknownDestinationPacketHandled
}

// HandlePacket implements stack.TransportEndpoint: SEGMENT ARRIVES.
func (te *transportEndpoint) HandlePacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	(*Endpoint)(te).packetArrives(id, pkt)
}

// HandleError implements stack.TransportEndpoint: an ICMP error about a
// segment we sent, validated and acted on in icmp.go.
func (te *transportEndpoint) HandleError(terr stack.TransportError, pkt *stack.PacketBuffer) {
	(*Endpoint)(te).icmpArrives(terr, pkt)
}

// Abort implements stack.TransportEndpoint: gVisor's stack is closing.
func (te *transportEndpoint) Abort() { (*Endpoint)(te).abort() }

// Wait implements stack.TransportEndpoint: there is no goroutine to wait
// for.
func (*transportEndpoint) Wait() {}

// HandlePacket implements stack.TransportEndpoint: SEGMENT ARRIVES in
// LISTEN.
func (le *listenerEndpoint) HandlePacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	(*Listener)(le).packetArrives(id, pkt)
}

// HandleError implements stack.TransportEndpoint: an ICMP error quoting a
// 4-tuple on the listener's port that has no connection (icmp.go).
func (le *listenerEndpoint) HandleError(terr stack.TransportError, pkt *stack.PacketBuffer) {
	(*Listener)(le).icmpToListener(terr, pkt)
}

// Abort implements stack.TransportEndpoint: gVisor's stack is closing.
func (le *listenerEndpoint) Abort() { (*Listener)(le).Close() }

// Wait implements stack.TransportEndpoint.
func (*listenerEndpoint) Wait() {}
