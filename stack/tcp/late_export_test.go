package tcp

import (
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ArriveLate hands the TCP segment b (header, options, payload, checksum
// taken as valid) to e itself, as the demuxer hands a segment it found e
// for a moment before e left it: the goroutine that moved e to TIME-WAIT
// or CLOSED held e.mu, and the segment arrives once it is released.
func ArriveLate(e *Endpoint, b []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	defer pkt.DecRef()
	pkt.TransportHeader().Consume(int(header.TCP(b).DataOffset()))
	pkt.RXChecksumValidated = true
	pkt.NICID = e.nic
	pkt.NetworkProtocolNumber = e.netProto
	e.packetArrives(e.id, pkt)
}
