package tcp

import (
	"crypto/sha256"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Resets: sending them, accepting them, and the challenge ACKs of RFC 5961
// that keep a blind attacker from injecting one.

// sendReset sends <SEQ=seq><CTL=RST>: the reply to a segment, whose ACK
// field names seq (RFC 9293 3.5.2, 3.10.7.3).
func (e *Endpoint) sendReset(seq seqnum.Value) {
	e.sendSegment(event.SendRst, header.TCPFlagRst, seq, buffer.Buffer{}, nil)
}

// sendActiveReset sends <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK>: the
// reset the connection decides on itself (ABORT, a close that discards
// unread data, a timeout, a listener that goes away). RFC 9293 3.10.5
// writes it <SEQ=SND.NXT><CTL=RST>; we set ACK with RCV.NXT as Linux
// (tcp_send_active_reset) and the BSDs (tcp_drop) do. A receiver checks
// a RST by its sequence number only (RFC 5961 3.2), so the ACK costs
// nothing, and stateful firewalls and captures see which data the
// reset's sender had received.
func (e *Endpoint) sendActiveReset() {
	e.sendSegment(event.SendRst, header.TCPFlagRst|header.TCPFlagAck, e.sndNxt, buffer.Buffer{}, nil)
}

// rstArrives is the second step for an acceptable RST, as it arrived
// (untrimmed). RFC 5961 3.2: only a RST exactly at RCV.NXT resets the
// connection; one elsewhere in the window gets a challenge ACK. In the
// window means the first step's acceptability test, which counts SEG.LEN:
// a RST whose SEG.SEQ lies below RCV.NXT but whose text reaches into the
// window is in it and gets the challenge ACK, as in Linux
// (tcp_validate_incoming: tcp_sequence tests seq..end_seq, then only
// seq == rcv_nxt resets). RFC 5961 3.2 speaks of "the sequence number" as
// if a RST carried no text; either reading keeps its MUST (no reset), and
// this one keeps a single meaning of "in the window" for every segment.
// (Linux's tcp_sequence also admits text that ends exactly at RCV.NXT;
// 3.10.7.4's table does not, and neither do we.) Linux's further matches,
// tcp_reset_check's RCV.NXT-1 after a FIN and the right edge of the
// highest SACK block, are not taken: the RFC does not ask for them. It
// returns the move to CLOSED a reset makes.
func (e *Endpoint) rstArrives(seg *segment) verdict {
	if seg.Seq != e.rcvNxt {
		e.drop(seg, event.DropRstInvalid)
		e.challengeAck()
		return stay()
	}
	e.proto.stats.ResetsReceived.Add(1)
	switch e.state {
	case event.SynReceived:
		if e.listener != nil {
			// Passive OPEN: the half-open entry goes; the listener
			// itself is unharmed.
			return moveTo(event.Closed, e.segmentCause(seg), thenDone)
		}
		// Active OPEN (simultaneous open): "connection refused".
		return e.failed(syscall.ECONNREFUSED, e.segmentCause(seg))
	case event.Established, event.FinWait1, event.FinWait2, event.CloseWait:
		// "Any outstanding RECEIVEs and SEND should receive 'reset'
		// responses. All segment queues should be flushed": entering
		// CLOSED flushes them (release).
		return e.failed(syscall.ECONNRESET, e.segmentCause(seg))
	}
	// CLOSING, LAST-ACK, TIME-WAIT
	return moveTo(event.Closed, e.segmentCause(seg), thenDone)
}

// synArrives is the fourth step of 3.10.7.4 in SYN-RECEIVED (a new SYN)
// and the synchronized states: RFC 5961 4.2, "if the SYN bit is set,
// irrespective of the sequence number, TCP endpoints MUST send a
// 'challenge ACK'" and drop the segment. Irrespective of the sequence
// number means in the window, below it, beyond it or failing PAWS
// alike (firstSteps), as Linux's syn_challenge in tcp_validate_incoming.
func (e *Endpoint) synArrives(seg *segment) verdict {
	e.drop(seg, event.DropSynUnexpected)
	e.challengeAck()
	return stay()
}

// challengeAck sends <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 5961 3.2,
// 4.2, 5.2) under two limits, in Linux's order (tcp_send_challenge_ack):
// first the connection's own, one per InvalidRateLimit, shared with every
// other reply to an unacceptable segment; then the stack-wide budget of
// RFC 5961 7, drawn at random every second. The per-connection limit is
// what closes the side channel of RFC 5961 10 (CVE-2016-5696): a
// connection can no longer spend enough of the shared budget to notice
// that another connection spent one challenge ACK of it.
func (e *Endpoint) challengeAck() {
	if !e.invalidAckAllowed(nil) {
		return
	}
	if !e.proto.challenge.allow(e.now()) {
		e.suppressedReply(nil, event.DropChallengeRateLimited)
		return
	}
	e.sendAck(event.SendChallengeAck)
}

// ackUnacceptable answers an unacceptable segment (3.10.7.4 first step,
// RFC 7323 5.3 for PAWS, the fifth step for an ACK of unsent data) with
// <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, unless the connection answered
// one within InvalidRateLimit.
func (e *Endpoint) ackUnacceptable(seg *segment) {
	if e.invalidAckAllowed(seg) {
		e.sendAck(event.SendAck)
	}
}

// invalidAckAllowed is the per-connection limit on replies to
// unacceptable segments, Linux's tcp_oow_rate_limited with
// tcp_invalid_ratelimit: at most one per InvalidRateLimit, challenge ACKs
// included, except the replies replyUnlimited exempts. It reports whether
// a reply may go now, and counts the one it holds back as
// DropAckRateLimited.
func (e *Endpoint) invalidAckAllowed(seg *segment) bool {
	lim := e.proto.opts.InvalidRateLimit
	if lim < 0 {
		return true
	}
	if seg != nil && replyUnlimited(seg) {
		return true
	}
	now := e.now()
	if e.invalidAckSent && now.Sub(e.invalidAckAt) < lim {
		e.suppressedReply(seg, event.DropAckRateLimited)
		return false
	}
	e.invalidAckSent, e.invalidAckAt = true, now
	return true
}

// replyUnlimited reports whether the reply to seg, an unacceptable
// segment as it arrived, escapes InvalidRateLimit, in a connection and in
// a TIME-WAIT record alike. As Linux (tcp_oow_rate_limited: seq !=
// end_seq and no SYN), the reply to a segment that occupied sequence
// space, text or a FIN, and carried no SYN is never limited: such a
// segment answered by one ACK is no ACK loop and no amplification, and
// that ACK is how the sender learns its retransmission was a duplicate
// (the D-SACK of RFC 2883, which undoes a spurious congestion response),
// that our window is still closed, or that its data or FIN arrived: a
// peer whose FIN was acknowledged by an ACK that was lost retransmits it
// on its RTO, faster than InvalidRateLimit, and cannot close without an
// answer.
func replyUnlimited(seg *segment) bool {
	return (seg.wire.Len > 0 || seg.wire.Flags&event.FlagFin != 0) && seg.wire.Flags&event.FlagSyn == 0
}

// suppressedReply counts and reports a reply a limit held back; seg is
// the segment that asked for it, when known.
func (e *Endpoint) suppressedReply(seg *segment, r event.DropReason) {
	if seg != nil {
		e.drop(seg, r)
		return
	}
	e.proto.stats.Drops[r].Add(1)
	if e.proto.opts.Observer != nil {
		e.emit(event.Event{Kind: event.KindDrop, Conn: e.connID(), Drop: r, Segment: event.SegmentInfo{WS: -1, Note: "challenge ACK not sent: " + r.String()}})
	}
}

// challengeLimiter is the stack-wide budget of challenge ACKs (RFC 5961 7:
// "the number of challenge ACKs sent MUST be rate limited"). A fixed
// budget shared by every connection is itself the side channel RFC 5961
// 10 warns about: with 1000 a second, an attacker who provokes 1000
// challenge ACKs on its own connection and counts 999 learns that a
// spoofed RST landed in another connection's window. As Linux since the
// fix for CVE-2016-5696, each second's budget is drawn at random from
// [limit/2, limit*3/2), from a generator keyed by the stack's secret, and
// the per-connection limit comes first (challengeAck).
type challengeLimiter struct {
	mu      sync.Mutex
	limit   int
	rng     *rand.ChaCha8
	started bool
	window  tcpip.MonotonicTime // start of the current second
	left    int                 // challenge ACKs left in it
}

func (c *challengeLimiter) init(limit int, secret [16]byte) {
	c.limit = limit
	c.rng = rand.NewChaCha8(sha256.Sum256(append([]byte("tapstack challenge ACK budget"), secret[:]...)))
}

func (c *challengeLimiter) allow(now tcpip.MonotonicTime) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || now.Sub(c.window) >= time.Second {
		c.started = true
		c.window = now
		half := (c.limit + 1) / 2
		c.left = half + int(c.rng.Uint64()%uint64(c.limit))
	}
	if c.left <= 0 {
		return false
	}
	c.left--
	return true
}

// replyRST answers seg with a reset as RFC 9293 3.10.7.1 prescribes for a
// closed port: if the ACK bit is off, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>;
// otherwise <SEQ=SEG.ACK><CTL=RST>.
func (p *Protocol) replyRST(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment) {
	r, err := p.findRoute(routeQuery{nic: nic, netProto: netProto, local: id.LocalAddress, remote: id.RemoteAddress})
	if err != nil {
		return
	}
	defer p.releaseRoute(r)
	f := outFields{srcPort: id.LocalPort, dstPort: id.RemotePort}
	if seg.has(header.TCPFlagAck) {
		f.seq = seg.Ack
		f.flags = header.TCPFlagRst
	} else {
		f.ack = seg.Seq.Add(seg.Len())
		f.flags = header.TCPFlagRst | header.TCPFlagAck
	}
	pkt := buildPacket(r, &f, buffer.Buffer{})
	p.countSend(connIDOf(id), event.SendRst, &f, 0, 0)
	p.writeOnce(r, pkt)
}
