package tcp

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ArriveAtListenerLate hands the TCP segment b (header, options, payload,
// checksum taken as valid) from remote to local, over IPv4 on NIC 1, to
// l itself, as the demuxer hands a segment it found only the listener for
// a moment before another goroutine, handling a copy of it, registered a
// child on its 4-tuple.
func ArriveAtListenerLate(l *Listener, local, remote netip.Addr, b []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	defer pkt.DecRef()
	h := header.TCP(b)
	pkt.TransportHeader().Consume(int(h.DataOffset()))
	pkt.RXChecksumValidated = true
	pkt.NICID = 1
	pkt.NetworkProtocolNumber = ipv4.ProtocolNumber
	l.packetArrives(stack.TransportEndpointID{
		LocalPort: h.DestinationPort(), LocalAddress: tcpip.AddrFromSlice(local.AsSlice()),
		RemotePort: h.SourcePort(), RemoteAddress: tcpip.AddrFromSlice(remote.AsSlice()),
	}, pkt)
}
