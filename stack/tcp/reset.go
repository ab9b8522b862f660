package tcp

import (
	"syscall"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Resets: sending them, accepting them, and the challenge ACKs of RFC 5961
// that keep a blind attacker from injecting one.

// sendReset sends <SEQ=seq><CTL=RST>.
func (e *Endpoint) sendReset(seq seqnum.Value) {
	e.sendSegment(SendRst, header.TCPFlagRst, seq, buffer.Buffer{}, nil)
}

// rstArrives is the second step for an acceptable RST. RFC 5961 3.2: only
// a RST exactly at RCV.NXT resets the connection; one elsewhere in the
// window gets a challenge ACK.
func (e *Endpoint) rstArrives(seg *Segment) {
	if seg.Seq != e.RcvNxt {
		e.drop(seg, DropRstInvalid)
		e.challengeAck()
		return
	}
	e.proto.stats.ResetsReceived.Add(1)
	switch e.state {
	case SynReceived:
		if e.listener != nil {
			// Passive OPEN: the half-open entry goes; the listener
			// itself is unharmed.
			e.transition(Closed, segmentCause(seg))
			return
		}
		// Active OPEN (simultaneous open): "connection refused".
		e.fail(syscall.ECONNREFUSED, segmentCause(seg))
	case Established, FinWait1, FinWait2, CloseWait:
		// "Any outstanding RECEIVEs and SEND should receive 'reset'
		// responses. All segment queues should be flushed."
		e.fail(syscall.ECONNRESET, segmentCause(seg))
		e.sndBuf.Release()
	default: // CLOSING, LAST-ACK, TIME-WAIT
		e.transition(Closed, segmentCause(seg))
	}
}

// challengeAck sends <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> under the
// stack-wide rate limit of RFC 5961 7.
func (e *Endpoint) challengeAck() {
	if !e.proto.challenge.allow(e.proto.clock.NowMonotonic()) {
		e.proto.stats.Drops[DropChallengeRateLimited].Add(1)
		return
	}
	e.sendAck(SendChallengeAck)
}

// replyRST answers seg with a reset as RFC 9293 3.10.7.1 prescribes for a
// closed port: if the ACK bit is off, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>;
// otherwise <SEQ=SEG.ACK><CTL=RST>.
func (p *Protocol) replyRST(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *Segment) {
	r, err := p.stack.FindRoute(nic, id.LocalAddress, id.RemoteAddress, netProto, false)
	if err != nil {
		return
	}
	defer r.Release()
	f := outFields{srcPort: id.LocalPort, dstPort: id.RemotePort}
	if seg.has(header.TCPFlagAck) {
		f.seq = seg.Ack
		f.flags = header.TCPFlagRst
	} else {
		f.ack = seg.Seq.Add(seg.Len())
		f.flags = header.TCPFlagRst | header.TCPFlagAck
	}
	pkt := buildPacket(r, &f, buffer.Buffer{})
	p.countSend(connIDOf(id), SendRst, &f, 0, 0)
	writePacket(r, pkt)
}
