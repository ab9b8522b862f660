package tcp

import (
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// SEGMENT ARRIVES (RFC 9293 3.10.7) for a connection. Each state has a
// handler that follows the RFC's steps in order and returns a verdict:
// stay, or move to a state. follow alone applies it, through
// transition, and goes on where the RFC says processing continues in the
// new state ("continue processing at the sixth step", 3.10.7.3): the
// verdict names that continuation. LISTEN is Listener.packetArrives
// (listen.go); a connection in TIME-WAIT is usually a compact record
// (timewait.go).

// verdict is what a SEGMENT ARRIVES handler decided. The zero verdict
// stays (stay).
type verdict struct {
	// move asks for a change of state to to, for cause.
	move  bool
	to    event.State
	cause event.Cause
	// then is where processing of the segment goes on once the move is
	// made.
	then next
}

func stay() verdict { return verdict{} }

func moveTo(to event.State, cause event.Cause, then next) verdict {
	return verdict{move: true, to: to, cause: cause, then: then}
}

// next names where SEGMENT ARRIVES goes on after a state change: a step
// of the RFC to take in the new state. (A name rather than a function
// value, so that the segment, which lives on the stack of the goroutine
// that delivered it, does not escape to the heap.)
type next uint8

const (
	thenDone                  next = iota // processing ends
	thenOutput                            // sendOutput
	thenSixthStep                         // sixthStep
	thenOutputThenSixthStep               // outputThenSixthStep
	thenHandshakeCompleted                // handshakeCompleted
	thenSynAckAccepted                    // synAckAccepted (handshake.go)
	thenQueuedCloseThenOutput             // queuedCloseThenOutput (handshake.go)
	thenSynAckOut                         // synAckOut (handshake.go)
	thenCookieOpened                      // cookieOpened (listen.go)
)

// resume takes the step n names.
func (e *Endpoint) resume(n next, seg *segment) verdict {
	switch n {
	case thenOutput:
		return e.sendOutput(seg)
	case thenSixthStep:
		return e.sixthStep(seg)
	case thenOutputThenSixthStep:
		return e.outputThenSixthStep(seg)
	case thenHandshakeCompleted:
		return e.handshakeCompleted(seg)
	case thenSynAckAccepted:
		return e.synAckAccepted(seg)
	case thenQueuedCloseThenOutput:
		return e.queuedCloseThenOutput(seg)
	case thenSynAckOut:
		return e.synAckOut(seg)
	case thenCookieOpened:
		return e.cookieOpened(seg)
	}
	return stay()
}

// maxMoves bounds the state changes one segment makes. The longest chain
// is three: a final ACK that carries a FIN, to a connection whose user
// called CLOSE during the handshake (SYN-RECEIVED -> ESTABLISHED ->
// FIN-WAIT-1 -> CLOSING), or a SYN-ACK that carries one (SYN-SENT ->
// ESTABLISHED -> CLOSE-WAIT -> LAST-ACK).
const maxMoves = 8

// segmentArrives is SEGMENT ARRIVES for a connection: the handler of its
// state decides, and follow applies. The caller holds e.mu.
func (e *Endpoint) segmentArrives(seg *segment) {
	e.follow(e.arrives(seg), seg)
}

// arrives dispatches seg to the handler of the connection's state.
func (e *Endpoint) arrives(seg *segment) verdict {
	switch e.state {
	case event.Closed, event.TimeWait:
		// Out of the demuxer: packetArrives passes what still comes
		// here to Protocol.strayArrives, which answers for the
		// TIME-WAIT record or CLOSED (3.10.7.1) as the demuxer does.
		e.drop(seg, event.DropClosed)
		return stay()
	case event.SynSent:
		return e.synSentArrives(seg) // handshake.go
	case event.SynReceived:
		return e.synReceivedArrives(seg)
	case event.Established:
		return e.establishedArrives(seg)
	case event.FinWait1:
		return e.finWait1Arrives(seg)
	case event.FinWait2:
		return e.finWait2Arrives(seg)
	case event.CloseWait:
		return e.closeWaitArrives(seg)
	case event.Closing:
		return e.closingArrives(seg)
	case event.LastAck:
		return e.lastAckArrives(seg)
	}
	return stay() // LISTEN is a Listener's
}

// follow applies a verdict and the verdicts of its continuations: the one
// place where a segment changes a connection's state. The caller holds
// e.mu.
func (e *Endpoint) follow(v verdict, seg *segment) {
	for range maxMoves {
		if v.move {
			e.transition(v.to, v.cause)
		}
		if v.then == thenDone {
			return
		}
		v = e.resume(v.then, seg)
	}
}

// synReceivedArrives is 3.10.7.4 in SYN-RECEIVED.
func (e *Endpoint) synReceivedArrives(seg *segment) verdict {
	// A retransmitted SYN to a half-open connection is answered with the
	// SYN-ACK again, as Linux does (tcp_check_req), instead of the bare
	// ACK the sequence check below would send, which would leave the
	// peer in SYN-SENT until our own retransmission.
	if seg.has(header.TCPFlagSyn) && !seg.has(header.TCPFlagAck|header.TCPFlagRst) && seg.Seq == e.irs {
		e.sendSynAck(event.SendSynAck)
		return stay()
	}
	// Simultaneous open (3.5, figure 8, line 7): in SYN-RECEIVED the
	// peer's SYN-ACK repeats its SYN, one before RCV.NXT, so the sequence
	// check would refuse it. Like Linux (tcp_validate_incoming), take
	// its ACK: the SYN is already accounted for.
	if e.listener == nil && seg.has(header.TCPFlagSyn) && seg.has(header.TCPFlagAck) &&
		!seg.has(header.TCPFlagRst) && seg.Seq == e.irs {
		seg.Seq++
		seg.Flags &^= header.TCPFlagSyn
	}
	if v, ok := e.firstSteps(seg); !ok {
		return v
	}
	// Fifth, the ACK field: if SND.UNA < SEG.ACK =< SND.NXT, enter
	// ESTABLISHED; otherwise <SEQ=SEG.ACK><CTL=RST>.
	if !(e.sndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.sndNxt)) {
		e.drop(seg, event.DropInvalidAck)
		e.sendReset(seg.Ack)
		return stay()
	}
	if e.listener != nil && !e.listener.reserveAccept(e, seg.wire) {
		// The accept queue is full. Linux drops the ACK, so the peer's
		// retransmission (or our SYN-ACK retransmission) completes the
		// handshake once Accept made room; with AbortOnOverflow it
		// resets instead.
		e.drop(seg, event.DropAcceptQueueFull)
		if e.proto.opts.AbortOnOverflow {
			e.sendReset(seg.Ack)
			return moveTo(event.Closed, e.segmentCause(seg), thenDone)
		}
		return stay()
	}
	e.sndUna = seg.Ack
	e.sampleHandshakeRTT(seg)
	e.retries = 0
	e.stopTimer(timerRetransmit)
	e.setSndWnd(uint32(seg.Window)<<e.sndWndShift, seg)
	e.initCongestion()
	return moveTo(event.Established, e.segmentCause(seg), thenHandshakeCompleted)
}

// handshakeCompleted goes on in ESTABLISHED after the final ACK of a
// handshake: first the CLOSE the user called meanwhile, then the rest of
// the segment from the sixth step.
func (e *Endpoint) handshakeCompleted(seg *segment) verdict {
	if v := e.queuedClose(); v.move {
		v.then = thenOutputThenSixthStep
		return v
	}
	return e.outputThenSixthStep(seg)
}

func (e *Endpoint) outputThenSixthStep(seg *segment) verdict {
	e.output()
	return e.sixthStep(seg)
}

// queuedClose is a CLOSE the user called before the handshake completed
// (3.10.4: "queue for processing after entering ESTABLISHED state"): now
// its FIN can go. It is the user's call, made late: the cause says so.
func (e *Endpoint) queuedClose() verdict {
	if e.finQueued {
		switch e.state {
		case event.Established:
			return moveTo(event.FinWait1, userCause("close"), thenDone)
		case event.CloseWait:
			return moveTo(event.LastAck, userCause("close"), thenDone)
		}
	}
	return stay()
}

// establishedArrives is 3.10.7.4 in ESTABLISHED.
func (e *Endpoint) establishedArrives(seg *segment) verdict {
	if v, ok := e.firstSteps(seg); !ok {
		return v
	}
	if !e.ackAcceptable(seg) {
		e.output()
		return stay()
	}
	e.processAck(seg)
	return e.sixthStep(seg)
}

// finWait1Arrives is 3.10.7.4 in FIN-WAIT-1: "In addition to the
// processing for the ESTABLISHED state, if the FIN segment is now
// acknowledged, then enter FIN-WAIT-2 and continue processing in that
// state."
func (e *Endpoint) finWait1Arrives(seg *segment) verdict {
	if v, ok := e.firstSteps(seg); !ok {
		return v
	}
	if !e.ackAcceptable(seg) {
		e.output()
		return stay()
	}
	e.processAck(seg)
	if e.finAcked() {
		return moveTo(event.FinWait2, e.segmentCause(seg), thenSixthStep)
	}
	return e.sixthStep(seg)
}

// finWait2Arrives is 3.10.7.4 in FIN-WAIT-2: the processing for
// ESTABLISHED; the user's CLOSE is acknowledged, and a FIN leads to
// TIME-WAIT (eighth step).
func (e *Endpoint) finWait2Arrives(seg *segment) verdict {
	return e.establishedArrives(seg)
}

// closeWaitArrives is 3.10.7.4 in CLOSE-WAIT: the processing for
// ESTABLISHED, except that the text and a FIN are ignored (seventh and
// eighth steps): the peer's FIN is in.
func (e *Endpoint) closeWaitArrives(seg *segment) verdict {
	return e.establishedArrives(seg)
}

// closingArrives is 3.10.7.4 in CLOSING: "In addition to the processing
// for the ESTABLISHED state, if the ACK acknowledges our FIN, then enter
// the TIME-WAIT state; otherwise, ignore the segment."
func (e *Endpoint) closingArrives(seg *segment) verdict {
	return e.finAckArrives(seg, event.TimeWait)
}

// lastAckArrives is 3.10.7.4 in LAST-ACK: "The only thing that can
// arrive in this state is an acknowledgment of our FIN. If our FIN is now
// acknowledged, delete the TCB, enter the CLOSED state, and return."
func (e *Endpoint) lastAckArrives(seg *segment) verdict {
	return e.finAckArrives(seg, event.Closed)
}

// finAckArrives is what CLOSING and LAST-ACK share: both wait for the ACK
// of our FIN and move to next when it comes. Until then an acceptable ACK
// is processed, and what it opened of the window may carry data still
// queued.
func (e *Endpoint) finAckArrives(seg *segment, next event.State) verdict {
	if v, ok := e.firstSteps(seg); !ok {
		return v
	}
	if !e.ackAcceptable(seg) {
		e.output()
		return stay()
	}
	e.processAck(seg)
	if e.finAcked() {
		return moveTo(next, e.segmentCause(seg), thenDone)
	}
	e.output()
	return stay()
}

// firstSteps is the first to fourth steps of 3.10.7.4 and the fifth's
// check of the ACK bit, the same in SYN-RECEIVED and the synchronized
// states: PAWS, the sequence number, RST, SYN. ok is false when the
// segment ends there, with the verdict it came to.
func (e *Endpoint) firstSteps(seg *segment) (v verdict, ok bool) {
	// RFC 7323 5.3 (R1): PAWS comes before the sequence check. A
	// segment with an old timestamp is an old duplicate: answer with an
	// ACK, as for an unacceptable segment, and drop it.
	if e.pawsReject(seg) {
		if seg.has(header.TCPFlagSyn) {
			// RFC 5961 4.2: a SYN gets a challenge ACK whatever its
			// sequence number, and an old timestamp does not change
			// that; Linux's tcp_validate_incoming sends a SYN that
			// fails PAWS to the challenge ACK as well. (A RST never
			// fails PAWS: pawsReject.)
			return e.synArrives(seg), false
		}
		e.drop(seg, event.DropPAWS)
		e.ackUnacceptable(seg)
		return stay(), false
	}

	// First, check the sequence number.
	if !e.acceptable(seg) {
		if seg.has(header.TCPFlagSyn) && !seg.has(header.TCPFlagRst) {
			// The fourth step's SYN rule holds "irrespective of the
			// sequence number" (RFC 5961 4.2): a SYN outside the
			// window gets the challenge ACK, under the challenge
			// ACKs' limits, not the ACK of an unacceptable segment,
			// as in Linux's tcp_validate_incoming. With RST set it is
			// dropped as any RST outside the window.
			return e.synArrives(seg), false
		}
		e.unacceptable(seg)
		return stay(), false
	}
	// RFC 7323 4.3 (2) and 5.3 (R3): an acceptable segment's TSval may
	// become TS.Recent. Linux (tcp_ack's FLAG_UPDATE_TS_RECENT) waits
	// until the ACK field is found acceptable too, so that a segment
	// acknowledging data never sent cannot poison TS.Recent and have the
	// next valid segment fail PAWS; so do we (ackAcceptable), except in
	// SYN-RECEIVED, whose ACK is checked by the handshake.
	if e.state == event.SynReceived {
		e.updateTSRecent(seg)
	}

	// The second and fourth steps see the segment as it arrived:
	// trimming it to the window would move a SEG.SEQ below RCV.NXT up to
	// RCV.NXT, where a RST resets, and cut off a SYN below RCV.NXT with
	// its byte, letting its text or FIN in. Linux's tcp_validate_incoming
	// likewise takes the RST and SYN steps before tcp_data_queue trims.
	// (A simultaneous open's SYN-ACK comes here without its SYN, which
	// synReceivedArrives accounted for.)

	// Second, check the RST bit (RFC 5961 3.2).
	if seg.has(header.TCPFlagRst) {
		return e.rstArrives(seg), false // reset.go
	}

	// Third, security: not implemented.

	// Fourth, check the SYN bit (synArrives, reset.go): one below
	// RCV.NXT whose text reaches the window comes here too.
	if seg.has(header.TCPFlagSyn) {
		return e.synArrives(seg), false
	}

	// Then trim to the window what the ACK and text steps take.
	e.trimToWindow(seg)

	// Fifth, check the ACK field: "if the ACK bit is off, drop the
	// segment and return".
	if !seg.has(header.TCPFlagAck) {
		e.drop(seg, event.DropNoAck)
		return stay(), false
	}
	return stay(), true
}

// ackAcceptable is the fifth step's check of SEG.ACK in the synchronized
// states. RFC 5961 5.2: the ACK is acceptable only within
// [SND.UNA - MAX.SND.WND, SND.NXT]. After a retransmission timeout SND.NXT
// stays where it was (rtxqueue.go), so data sent before it may still be
// acknowledged.
func (e *Endpoint) ackAcceptable(seg *segment) bool {
	if e.sndNxt.LessThan(seg.Ack) {
		// Acknowledges something not yet sent: send an ACK, drop. The
		// ACK goes under InvalidRateLimit (RFC 5961 5.2 asks for the
		// ACK, and a forger could otherwise have every one of its
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
	e.updateTSRecent(seg)
	return true
}

// sixthStep is the sixth to eighth steps of 3.10.7.4 (URG, the segment
// text, FIN), then what the windows allow: whatever the ACK did, it may
// have opened the window for data still queued, in LAST-ACK and CLOSING
// too. A FIN's state change is made before that output.
func (e *Endpoint) sixthStep(seg *segment) verdict {
	// Sixth, the URG bit: urgent data is not supported; the bytes are
	// delivered inline, as RFC 6093 recommends new applications expect.

	// Seventh and eighth: the segment text and the FIN bit (receive.go).
	if v := e.processTextAndFin(seg); v.move {
		v.then = thenOutput
		return v
	}
	e.output()
	return stay()
}

// sendOutput sends what the windows allow, after a state change.
func (e *Endpoint) sendOutput(*segment) verdict {
	e.output()
	return stay()
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
	e.segmentArrives(seg) // acceptable now: no text at RCV.NXT
	if e.state.Synchronized() && !seg.has(header.TCPFlagRst) {
		e.ackUnacceptable(seg)
	}
}

// trimToWindow cuts the parts of an acceptable segment that lie outside
// the window, as 3.10.7.4 prescribes ("segments with higher beginning
// sequence numbers ... trimmed to the window"); a FIN cut off goes with
// its byte. The segment carries no SYN: the fourth step ended one that
// did (firstSteps), and a SYN cookie's ACK has none.
func (e *Endpoint) trimToWindow(seg *segment) {
	if seg.Seq.LessThan(e.rcvNxt) {
		d := min(int(seg.Seq.Size(e.rcvNxt)), int(seg.Payload.Size()))
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
