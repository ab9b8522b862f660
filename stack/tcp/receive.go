package tcp

import (
	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// processTextAndFin is the seventh and eighth steps of 3.10.7.4: queue
// in-order text for the user, keep out-of-order text for reassembly, and
// act on a FIN once everything before it has arrived. It returns the
// state change a FIN, or data nobody can read, calls for.
func (e *Endpoint) processTextAndFin(seg *segment) verdict {
	switch e.state {
	case event.Established, event.FinWait1, event.FinWait2:
	default:
		// CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer's FIN is
		// already in; "ignore the segment text".
		return stay()
	}
	e.noteTrimmedDuplicate(seg)
	n := int(seg.Payload.Size())
	fin := seg.has(header.TCPFlagFin)
	if n > 0 && seg.Seq == e.rcvNxt && !e.userClosed && e.rcvMemRefuses(n) {
		e.dropForMemory(seg) // rcvmem.go
		return stay()
	}
	var now tcpip.MonotonicTime
	ecnAckNow := false
	if n > 0 {
		now = e.now()
		e.dataArrived(n, now) // delack.go
		ecnAckNow = e.ecnTextArrives(seg)
	}
	if n == 0 && !fin {
		if e.ooo.dsackSet {
			e.sendAck(event.SendAck) // the duplicate is reported at once
		}
		return stay()
	}
	if e.userClosed && n > 0 && !seg.Seq.Add(seqnum.Size(n)).LessThanEq(e.rcvNxt) {
		// New data for a connection the user has closed can never be
		// read. Like Linux (tcp_rcv_state_process), answer with RST so
		// the peer learns its data was lost (RFC 9293 3.10.4 lets
		// CLOSE discard received data only by reset; RFC 2525 2.17).
		// The RST's sequence number is the segment's ACK field, the
		// peer's RCV.NXT, as Linux (tcp_v4_send_reset): our FIN may
		// be in flight, and a RST at SND.NXT past it would only earn
		// a challenge ACK (RFC 5961 3.2).
		e.drop(seg, event.DropClosed)
		e.sendReset(seg.Ack)
		if finOut := e.finQueued && e.sndNxt == e.sndEnd().Add(1); !finOut && e.sndNxt != seg.Ack {
			// The segment left the peer before our latest data reached
			// it: by now its RCV.NXT may be past SEG.ACK, where RFC 5961
			// 3.2 has it drop that RST without a word. With no FIN of
			// ours out, its RCV.NXT is SND.NXT once our data has
			// arrived: a second RST there. Linux sends only the first;
			// its kernel outlives the process and resets the peer's
			// next segment, a tapstack process that exits cannot.
			e.sendReset(e.sndNxt)
		}
		return moveTo(event.Closed, e.segmentCause(seg), thenDone)
	}
	if seg.Seq != e.rcvNxt {
		e.holdOutOfOrder(seg, fin)
		return stay()
	}
	filled := e.ooo.ranges() > 0 || e.ooo.fin // a gap lies below what is held
	if e.ooo.fin && e.ooo.finSeq.LessThan(seg.Seq.Add(seqnum.Size(n))) {
		// In-order text runs past a FIN the peer sent earlier, out of
		// order: the peer contradicts itself, and as Linux does
		// (tcp_ofo_queue drops a held segment that RCV.NXT has
		// passed) the text stands and the stale FIN goes. RFC 9293
		// 3.10.7.4 takes a FIN only in order.
		e.staleFin(seg, e.ooo.finSeq)
		e.ooo.forgetFIN()
	}
	var cause event.Cause
	if fin {
		cause = e.segmentCause(seg) // before the payload moves out
	}
	if n > 0 {
		switch {
		case filled:
			e.received(seg, "in order: fills a hole")
		default:
			e.received(seg, "in order")
		}
	}
	e.deliver(&seg.Payload)
	if n > 0 {
		e.measureRcvRTT(now) // rcvbuf.go
	}
	// Acknowledge at once when the segment filled a hole (RFC 5681 4.2)
	// or repeated bytes we had (its D-SACK, RFC 2883); otherwise
	// delack.go decides between now and the delayed-ACK timer.
	ackNow := filled || e.ooo.dsackSet || ecnAckNow
	if fin {
		// Nothing after the FIN can be valid.
		before := e.ooo.mem
		e.ooo.reset()
		e.chargeOOO(before)
	} else if e.drainOutOfOrder() {
		fin = true
	}
	if fin {
		if cause.Kind == 0 {
			cause = e.segmentCause(seg)
		}
		return e.finArrives(cause, ackNow)
	}
	e.ackPolicy(ackNow)
	return stay()
}

// received reports what became of a segment's text. It costs nothing
// without an observer.
func (e *Endpoint) received(seg *segment, note string) {
	if e.observed() {
		e.emitReceived(seg, note)
	}
}

// emitReceived makes received's event, out of the callers' frames.
func (e *Endpoint) emitReceived(seg *segment, note string) {
	e.emit(event.Event{Kind: event.KindReceive, Conn: e.connID(), Note: note, Segment: seg.info(), Key: seg.wire})
}

// deliver appends in-order bytes for the user and advances RCV.NXT. It
// takes the bytes out of data.
func (e *Endpoint) deliver(data *buffer.Buffer) {
	n := data.Size()
	if n == 0 {
		return
	}
	e.rcvNxt = e.rcvNxt.Add(seqnum.Size(n))
	e.bytesReceived += uint64(n)
	if e.rcvGrowSegs > 0 {
		e.growInitialWindow(int(n))
	}
	// Small pieces are copied rather than left pinning whole frames
	// (appendCompact): the user may leave a window's worth unread.
	appendCompact(&e.rcvBuf, data, &e.rcvRunEnd)
	e.proto.rcvMem.Add(n)
	e.notify()
}

// finArrives is the eighth step for a FIN now in order: acknowledge it
// and return the state it leads to. Entering that state wakes a reader
// (transition), who will find io.EOF. ackNow says the text before it
// calls for an ACK at once (processTextAndFin).
//
// "Send an acknowledgment for the FIN" does not say at once, and in
// ESTABLISHED we follow Linux (tcp_fin), which does not: the ACK of a
// peer's FIN waits on the delayed-ACK timer (finAckPolicy), and an
// application that closes in that time puts it on its own FIN, so a
// passive close is FIN, FIN-ACK, ACK on the wire, as between two
// kernels. In FIN-WAIT-1 and FIN-WAIT-2 our FIN has gone: the ACK goes
// at once, as Linux's tcp_send_ack there.
func (e *Endpoint) finArrives(cause event.Cause, ackNow bool) verdict {
	e.rcvNxt++
	e.finReceived = true
	if e.state == event.Established {
		e.finAckPolicy(ackNow) // delack.go
		return moveTo(event.CloseWait, cause, thenDone)
	}
	e.sendAck(event.SendAck)
	switch e.state {
	case event.FinWait1:
		// "If our FIN has been ACKed (perhaps in this segment), then
		// enter TIME-WAIT ...; otherwise, enter the CLOSING state."
		if e.finAcked() {
			return moveTo(event.TimeWait, cause, thenDone)
		}
		return moveTo(event.Closing, cause, thenDone)
	case event.FinWait2:
		return moveTo(event.TimeWait, cause, thenDone)
	}
	e.notify()
	return stay()
}

// holdOutOfOrder is the seventh step for text above RCV.NXT: hold it for
// reassembly (reassembly.go) and send a duplicate ACK at once (RFC 9293
// 3.8.6.3 via RFC 5681 4.2) so the sender can fast retransmit, its SACK
// blocks saying what we hold (RFC 2018 4) and, if the segment repeated
// held bytes, which (RFC 2883 4). When the queue is at its limits, the
// ranges above the segment are pruned for it, highest first; if that is
// not enough the segment is dropped and, as Linux (tcp_data_queue_ofo)
// does, not acknowledged: it is as if it were lost.
func (e *Endpoint) holdOutOfOrder(seg *segment, fin bool) {
	r := &e.ooo
	defer e.chargeOOO(r.mem)
	plan := r.prepare(seg.Seq, &seg.Payload)
	if plan.afterFin {
		r.abort()
		e.drop(seg, event.DropDataAfterFin)
		return
	}
	if plan.newBytes > 0 {
		memLimit, rangeLimit := e.oooLimits()
		stackFull := func() bool { return r.memAfter(&plan)-r.mem > e.proto.rcvMemRoom() }
		over := func() bool {
			return r.memAfter(&plan) > memLimit || r.rangesAfter(&plan) > rangeLimit || stackFull()
		}
		for i := 0; over() && i <= r.ranges(); i++ {
			start, n, ok := r.pruneAbove(plan.end)
			if !ok {
				break
			}
			e.pruned(seg, start, n)
		}
		if over() {
			reason := event.DropOutOfOrderQueueFull
			if r.memAfter(&plan) <= memLimit && r.rangesAfter(&plan) <= rangeLimit {
				// The connection has room; the stack has not (rcvmem.go).
				reason = event.DropReceiveMemory
				e.proto.limits.ReceiveMemory.Add(1)
			}
			r.abort()
			e.drop(seg, reason)
			return
		}
	}
	// The text grows the range the last SACK block reported first: an
	// ACK may wait for it, as the next one's first block says all the
	// text since (compressSack). Not when part of it was held already:
	// the D-SACK that reports it goes at once (RFC 2883).
	extends := r.nrecent > 0 && plan.start == r.recent[0].End && !fin
	r.commit(&plan)
	extends = extends && !r.dsackSet
	if fin {
		r.holdFIN(plan.end)
	}
	switch {
	case plan.newBytes > 0:
		e.received(seg, "out of order: held")
		// The peer is losing segments. What follows the hole is its
		// loss recovery, often one segment at a time (PRR): a delayed
		// ACK there would hold the recovery back for the delayed-ACK
		// time, and its RTT sample inflate the peer's SRTT. So the
		// ACKs after a hole go at once (RFC 5681 4.2: out-of-order data
		// is acknowledged at once "to accelerate loss recovery"), as
		// Linux did until it compressed SACKs (4.18); only a long run
		// of it waits for the burst's end (compressSack).
		// TestRecoveryAcks shows the stall this avoids.
		e.enterQuickAck() // delack.go
	case fin && r.fin && r.finSeq == plan.end:
		e.received(seg, "out of order: FIN held")
	default:
		e.received(seg, "out of order: duplicate")
	}
	if plan.newBytes > 0 && e.compressSack(extends) {
		return
	}
	e.sendAck(event.SendAck)
}

// oooLimits are the out-of-order queue's limits: the heap it may pin and
// the ranges it may hold. Held text and in-order text not yet read share
// twice the receive buffer: the window (advertise, send.go) counts only
// text bytes, and the rest is the allowance for what they pin beyond
// themselves, as Linux's default tcp_adv_win_scale=1 advertised half of
// the buffer's memory as window.
func (e *Endpoint) oooLimits() (mem, ranges int) {
	return 2*e.rcvBufLimit - int(e.rcvBuf.Size()), max(minOOORanges, e.rcvBufLimit/oooBytesPerRange)
}

// staleFin counts and reports a held FIN at finSeq that seg's in-order
// text overtook; the event's Key is seg's, the frame that made it stale.
func (e *Endpoint) staleFin(seg *segment, finSeq seqnum.Value) {
	e.proto.stats.Drops[event.DropStaleFin].Add(1)
	if e.proto.opts.Observer != nil {
		e.emit(event.Event{Kind: event.KindDrop, Conn: e.connID(), Drop: event.DropStaleFin, Key: seg.wire, Segment: event.SegmentInfo{
			SrcPort: e.id.RemotePort, DstPort: e.id.LocalPort, Seq: uint32(finSeq), Flags: event.FlagFin, WS: -1,
		}})
	}
}

// pruned reports held text [start, start+n) discarded to make room for
// seg's: a drop of text the peer may have seen SACKed, which it must now
// send again (RFC 2018 8). The event's Segment is the pruned text; its Key
// is seg's, so a capture shows the prune on the frame that caused it.
func (e *Endpoint) pruned(seg *segment, start seqnum.Value, n int) {
	e.proto.stats.Drops[event.DropOutOfOrderPruned].Add(1)
	if e.proto.opts.Observer != nil {
		e.emit(event.Event{Kind: event.KindDrop, Conn: e.connID(), Drop: event.DropOutOfOrderPruned, Key: seg.wire, Segment: event.SegmentInfo{
			SrcPort: e.id.RemotePort, DstPort: e.id.LocalPort, Seq: uint32(start), WS: -1, Len: n,
		}})
	}
}

// drainOutOfOrder delivers held text that is now in order and reports
// whether a held FIN was reached; nothing after it is kept.
func (e *Endpoint) drainOutOfOrder() (fin bool) {
	defer e.chargeOOO(e.ooo.mem)
	for range e.ooo.ranges() {
		data, ok := e.ooo.takeInOrder(e.rcvNxt)
		if !ok {
			break
		}
		e.deliver(&data)
	}
	if e.ooo.fin && e.ooo.finSeq == e.rcvNxt {
		e.ooo.reset()
		return true
	}
	return false
}

// noteDuplicate records a D-SACK (RFC 2883 4) for a segment that failed
// the sequence check with text below RCV.NXT: its bytes up to RCV.NXT
// arrived before, and the ACK 3.10.7.4 sends reports them, as Linux's
// tcp_send_dupack does. SYN and FIN count as bytes here, as in Linux.
func (e *Endpoint) noteDuplicate(seg *segment) {
	if seg.Len() > 0 && seg.Seq.LessThan(e.rcvNxt) && e.peerRetransmitted(seg) {
		// The peer is retransmitting what we have: our ACKs are
		// being lost or were late, so send them at once for a while.
		e.enterQuickAck() // delack.go
	}
	if !e.sackOK || seg.Len() == 0 || !seg.Seq.LessThan(e.rcvNxt) {
		return
	}
	end := seg.Seq.Add(seg.Len())
	if e.rcvNxt.LessThan(end) {
		end = e.rcvNxt
	}
	e.ooo.setDSACK(seg.Seq, end)
}

// peerRetransmitted reports whether seg, which repeats text we have, may
// be the peer's retransmission, the sign that our ACKs were lost or late,
// rather than a copy of a segment the network delivered twice. Timestamps
// tell them apart (RFC 7323 3): a copy carries the TSval its original
// had, no newer than the newest the peer's segments have brought
// (tsNewest; not TS.Recent, which stays at the earliest segment an ACK
// covers); a retransmission carries the time it was sent again, after
// its timer (a tail loss probe's, an RTO) ran out, so later than anything
// we have taken in unless the peer's clock has not ticked since. Without
// timestamps there is no telling, and it is taken for a retransmission.
//
// Linux enters quick-ACK mode for either (tcp_data_queue,
// tcp_send_dupack); we do only for a retransmission. A copy is still
// answered at once with its D-SACK (RFC 2883), but it says nothing of our
// ACKs, and on a path that duplicates 5% of its frames the quick ACKs and
// the per-segment rule it put the receiver in (enterQuickAck) never ran
// out: 0.83 ACKs per segment against 0.13, and 7.0-7.6 s of CPU per GiB
// against 4.9-5.2, tapstack to tapstack over tap.Pipe
// (TestDuplicatesKeepBurstAcks).
func (e *Endpoint) peerRetransmitted(seg *segment) bool {
	if !e.tsOK || !seg.TS || !e.tsRecentValid() {
		return true
	}
	return tsBefore(e.tsNewest, seg.TSVal)
}

// noteTrimmedDuplicate records a D-SACK for the text of an acceptable
// segment that began below RCV.NXT and was cut there (trimToWindow): it
// arrived before (RFC 2883 4; Linux's tcp_data_queue "partial packet").
func (e *Endpoint) noteTrimmedDuplicate(seg *segment) {
	orig := seqnum.Value(seg.wire.Seq)
	if header.TCPFlags(seg.wire.Flags)&header.TCPFlagSyn != 0 {
		orig++
	}
	if !orig.LessThan(seg.Seq) {
		return
	}
	if e.peerRetransmitted(seg) {
		e.enterQuickAck() // a retransmission: our ACK was lost or late
	}
	if e.sackOK {
		e.ooo.setDSACK(orig, seg.Seq)
	}
}
