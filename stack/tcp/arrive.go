package tcp

import (
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// segmentArrives is SEGMENT ARRIVES (RFC 9293 3.10.7) for a connection:
// one handler per state group, each following the RFC's steps in order.
// LISTEN is Listener.HandlePacket. The caller holds e.mu.
func (e *Endpoint) segmentArrives(seg *segment) {
	switch e.state {
	case event.Closed:
		e.closedArrives(seg)
	case event.SynSent:
		e.synSentArrives(seg)
	default:
		e.otherwiseArrives(seg)
	}
}

// closedArrives is 3.10.7.1: everything is discarded, and anything but a
// RST is answered with one. A connection only sees this in the moment
// between reaching CLOSED and leaving the demuxer.
func (e *Endpoint) closedArrives(seg *segment) {
	e.drop(seg, event.DropClosed)
	if seg.has(header.TCPFlagRst) {
		return
	}
	if seg.has(header.TCPFlagAck) {
		e.sendSegment(event.SendRst, header.TCPFlagRst, seg.Ack, emptyBuffer(), nil)
	} else {
		e.sendSegment(event.SendRst, header.TCPFlagRst|header.TCPFlagAck, 0, emptyBuffer(), nil)
	}
}

// otherwiseArrives is 3.10.7.4, "Otherwise": SYN-RECEIVED and every
// synchronized state.
func (e *Endpoint) otherwiseArrives(seg *segment) {
	// A retransmitted SYN to a half-open connection is answered with the
	// SYN-ACK again, as Linux does (tcp_check_req), instead of the bare
	// ACK the sequence check below would send, which would leave the
	// peer in SYN-SENT until our own retransmission.
	if e.state == event.SynReceived && seg.has(header.TCPFlagSyn) && !seg.has(header.TCPFlagAck|header.TCPFlagRst) && seg.Seq == e.irs {
		e.sendSynAck(event.SendSynAck)
		return
	}

	// Simultaneous open (3.5, figure 8, line 7): in SYN-RECEIVED the
	// peer's SYN-ACK repeats its SYN, one before RCV.NXT, so the sequence
	// check would refuse it. Like Linux (tcp_validate_incoming), take
	// its ACK: the SYN is already accounted for.
	if e.state == event.SynReceived && e.listener == nil && seg.has(header.TCPFlagSyn) && seg.has(header.TCPFlagAck) &&
		!seg.has(header.TCPFlagRst) && seg.Seq == e.irs {
		seg.Seq++
		seg.Flags &^= header.TCPFlagSyn
	}

	// A new SYN in TIME-WAIT, above everything the old connection
	// received, may reopen it (RFC 1122 4.2.2.13), provided the new ISN is
	// above the old sequence space; Linux (tcp_timewait_state_process)
	// does so with ISN = old SND.NXT + 65535 + 2, and so do we. The
	// listener takes the SYN once this connection is gone (HandlePacket).
	if e.state == event.TimeWait && seg.has(header.TCPFlagSyn) && !seg.has(header.TCPFlagAck|header.TCPFlagRst) && e.rcvNxt.LessThan(seg.Seq) {
		if l := e.proto.listenerFor(e.netProto, e.id); l != nil {
			e.handoff = l
			e.handoffISS = e.sndNxt + 65535 + 2
			e.transition(event.Closed, event.Cause{Kind: event.CauseSegment, Detail: "new SYN in TIME-WAIT " + seg.String(), Key: seg.wire})
			return
		}
	}

	// RFC 7323 5.3 (R1): PAWS comes before the sequence check. A
	// segment with an old timestamp is an old duplicate: answer with an
	// ACK, as for an unacceptable segment, and drop it.
	if e.pawsReject(seg) {
		e.drop(seg, event.DropPAWS)
		e.ackUnacceptable(seg)
		return
	}

	// First, check the sequence number.
	if !e.acceptable(seg) {
		e.unacceptable(seg)
		return
	}
	// RFC 7323 4.3 (2) and 5.3 (R3): the segment is acceptable; take its
	// TSval for TS.Recent if the rule allows, before trimming moves SEG.SEQ.
	e.updateTSRecent(seg)
	e.trimToWindow(seg)

	// Second, check the RST bit (RFC 5961 3.2).
	if seg.has(header.TCPFlagRst) {
		e.rstArrives(seg)
		return
	}

	// Third, security: not implemented.

	// Fourth, check the SYN bit. A SYN in a synchronized state, or a new
	// SYN in SYN-RECEIVED, gets a challenge ACK (RFC 5961 4.2).
	if seg.has(header.TCPFlagSyn) {
		e.drop(seg, event.DropSynUnexpected)
		e.challengeAck()
		return
	}

	// Fifth, check the ACK field.
	if !seg.has(header.TCPFlagAck) {
		e.drop(seg, event.DropNoAck)
		return
	}
	if e.ackArrives(seg) {
		// Sixth, the URG bit: urgent data is not supported; the bytes
		// are delivered inline, as RFC 6093 recommends new applications
		// expect.

		// Seventh and eighth: the segment text and the FIN bit.
		e.processTextAndFin(seg)
	}
	// Whatever the ACK did, it may have opened the window for data still
	// queued, in LAST-ACK and CLOSING too, where the text is ignored.
	e.output()
}

// acceptable is the test of 3.10.7.4's table: does any part of the
// segment fall in the receive window [RCV.NXT, RCV.NXT+RCV.WND)? RCV.WND
// here is the window we promised, which may exceed what we could take now.
func (e *Endpoint) acceptable(seg *segment) bool {
	wnd := seqnum.Size(0)
	if e.rcvNxt.LessThan(e.rcvAcc) {
		wnd = e.rcvNxt.Size(e.rcvAcc)
	}
	n := seg.Len()
	switch {
	case n == 0 && wnd == 0:
		return seg.Seq == e.rcvNxt
	case n == 0:
		return seg.Seq.InWindow(e.rcvNxt, wnd)
	case wnd == 0:
		// "If the RCV.WND is zero, no segments will be acceptable, but
		// special allowance should be made to accept valid ACKs, URGs,
		// and RSTs": text is not acceptable; unacceptable makes the
		// allowance for the rest of a segment at RCV.NXT.
		return seg.Seq == e.rcvNxt && seg.Payload.Size() == 0
	default:
		return seg.Seq.InWindow(e.rcvNxt, wnd) || seg.Seq.Add(n-1).InWindow(e.rcvNxt, wnd)
	}
}

// unacceptable handles a segment that failed the sequence check: if it is
// not a RST, answer <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, then drop it. The
// answer goes under the per-connection limit of InvalidRateLimit
// (ackUnacceptable, reset.go), as in Linux, which keeps two TCPs that
// each find the other out of window from ACKing each other forever and a
// peer from making us answer every segment it forges.
func (e *Endpoint) unacceptable(seg *segment) {
	if seg.Seq == e.rcvNxt && seg.Payload.Size() > 0 && !e.rcvNxt.LessThan(e.rcvAcc) {
		e.zeroWindowArrives(seg)
		return
	}
	reason := event.DropOutOfWindow
	if seg.Seq.Add(seg.Len()).LessThanEq(e.rcvNxt) {
		reason = event.DropOldSequence
	}
	e.drop(seg, reason)
	if seg.has(header.TCPFlagRst) {
		return
	}
	if e.state == event.TimeWait && seg.has(header.TCPFlagFin) && seg.Seq.Add(seg.Len()) == e.rcvNxt {
		// 3.10.7.4 eighth step, TIME-WAIT: a retransmitted FIN is
		// acknowledged and restarts the 2 MSL timeout. Not rate
		// limited: the peer cannot close without this ACK.
		e.setTimer(timerTimeWait, e.proto.opts.TimeWait)
		e.noteDuplicate(seg)
		e.sendAck(event.SendAck)
		return
	}
	e.noteDuplicate(seg) // RFC 2883: the ACK reports text received twice
	e.ackUnacceptable(seg)
}

// zeroWindowArrives is a segment with text at RCV.NXT while the receive
// window is zero. 3.10.7.4: "If the RCV.WND is zero, no segments will be
// acceptable, but special allowance should be made to accept valid ACKs,
// URGs, and RSTs." The text (and a FIN after it, which lies beyond the
// window) is dropped; what remains, an empty segment at RCV.NXT, is
// acceptable and goes through SEGMENT ARRIVES for its ACK, RST or SYN.
// Then the unacceptable text gets its ACK, which tells the peer the
// window is still closed (or, once the user has read, that it opened).
func (e *Endpoint) zeroWindowArrives(seg *segment) {
	e.drop(seg, event.DropZeroWindow)
	seg.Payload.Truncate(0)
	seg.Flags &^= header.TCPFlagFin
	e.otherwiseArrives(seg) // acceptable now: no text at RCV.NXT
	if e.state.Synchronized() && !seg.has(header.TCPFlagRst) {
		e.ackUnacceptable(seg)
	}
}

// trimToWindow cuts the parts of an acceptable segment that lie outside
// the window, as 3.10.7.4 prescribes ("segments with higher beginning
// sequence numbers ... trimmed to the window"); a SYN or FIN cut off goes
// with its byte.
func (e *Endpoint) trimToWindow(seg *segment) {
	if seg.Seq.LessThan(e.rcvNxt) {
		d := int(seg.Seq.Size(e.rcvNxt))
		if seg.has(header.TCPFlagSyn) {
			seg.Flags &^= header.TCPFlagSyn
			d--
			seg.Seq++
		}
		d = min(d, int(seg.Payload.Size()))
		seg.Payload.TrimFront(int64(d))
		seg.Seq = seg.Seq.Add(seqnum.Size(d))
	}
	edge := e.rcvAcc
	if edge.LessThan(e.rcvNxt) {
		edge = e.rcvNxt
	}
	if end := seg.Seq.Add(seqnum.Size(seg.Payload.Size())); edge.LessThan(end) {
		keep := 0
		if seg.Seq.LessThan(edge) {
			keep = int(seg.Seq.Size(edge))
		}
		seg.Payload.Truncate(int64(keep))
		seg.Flags &^= header.TCPFlagFin
	}
}

// ackArrives is the fifth step. It reports whether processing continues
// with the segment text.
func (e *Endpoint) ackArrives(seg *segment) bool {
	if e.state == event.SynReceived {
		// If SND.UNA < SEG.ACK =< SND.NXT, enter ESTABLISHED;
		// otherwise <SEQ=SEG.ACK><CTL=RST>.
		if !(e.sndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.sndNxt)) {
			e.drop(seg, event.DropInvalidAck)
			e.sendReset(seg.Ack)
			return false
		}
		if e.listener != nil && !e.listener.reserveAccept(e, seg.wire) {
			// The accept queue is full. Linux drops the ACK, so the
			// peer's retransmission (or our SYN-ACK retransmission)
			// completes the handshake once Accept made room; with
			// AbortOnOverflow it resets instead.
			e.drop(seg, event.DropAcceptQueueFull)
			if e.proto.opts.AbortOnOverflow {
				e.sendReset(seg.Ack)
				e.transition(event.Closed, segmentCause(seg))
			}
			return false
		}
		e.sndUna = seg.Ack
		e.retries = 0
		e.stopTimer(timerRetransmit)
		// The handshake's round trip seeds the estimator: from TSecr
		// when timestamps are on, which survives a retransmitted
		// SYN-ACK (RFC 7323 4.1), else timed unless retransmitted (Karn).
		if !e.sampleRTTFromTSecr(seg) && e.rto == e.proto.opts.InitialRTO {
			e.sampleRTT(e.proto.clock.NowMonotonic().Sub(e.stateSince))
		}
		e.setSndWnd(uint32(seg.Window)<<e.sndWndShift, seg)
		e.initCongestion()
		e.transition(event.Established, segmentCause(seg))
		e.afterEstablished()
		return true
	}

	// RFC 5961 5.2: the ACK is acceptable only within
	// [SND.UNA - MAX.SND.WND, SND.NXT]. After a retransmission timeout
	// SND.NXT went back to SND.UNA, but data sent before it may still be
	// acknowledged: the upper bound is the highest sequence number sent.
	if e.sndNxt.LessThan(seg.Ack) {
		// Acknowledges something not yet sent: send an ACK, drop.
		// The ACK goes under InvalidRateLimit (RFC 5961 5.2 asks for
		// the ACK, and a forger could otherwise have every one of its
		// segments answered).
		e.drop(seg, event.DropAckUnsent)
		e.ackUnacceptable(seg)
		return false
	}
	if seg.Ack.LessThan(e.sndUna - seqnum.Value(e.maxSndWnd)) {
		e.drop(seg, event.DropInvalidAck)
		e.challengeAck()
		return false
	}

	e.processAck(seg)

	switch e.state {
	case event.FinWait1:
		// In addition to the processing for ESTABLISHED: if our FIN is
		// now acknowledged, enter FIN-WAIT-2.
		if e.finAcked() {
			e.transition(event.FinWait2, segmentCause(seg))
			if e.userClosed {
				e.setTimer(timerTimeWait, e.proto.opts.FinWait2Timeout)
			}
		}
	case event.Closing:
		if e.finAcked() {
			e.transition(event.TimeWait, segmentCause(seg))
		}
		return false
	case event.LastAck:
		// The only thing that can arrive is an acknowledgment of our
		// FIN; once it has, delete the TCB.
		if e.finAcked() {
			e.transition(event.Closed, segmentCause(seg))
		}
		return false
	case event.TimeWait:
		return true // a retransmitted FIN is handled at the eighth step
	}
	return true
}

// finAcked reports whether our FIN has been sent and acknowledged.
func (e *Endpoint) finAcked() bool {
	return e.finQueued && e.sndUna == e.sndEnd()+1
}

// computeRTOOrInitial undoes persist backoff once the window opens.
func (e *Endpoint) computeRTOOrInitial() time.Duration {
	if e.rttValid {
		return e.computeRTO()
	}
	return e.proto.opts.InitialRTO
}
