package tcp

import (
	"slices"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

func emptyBuffer() buffer.Buffer { return buffer.Buffer{} }

// processTextAndFin is the seventh and eighth steps of 3.10.7.4: queue
// in-order text for the user, keep out-of-order text for reassembly, and
// act on a FIN once everything before it has arrived.
func (e *Endpoint) processTextAndFin(seg *Segment) {
	switch e.state {
	case Established, FinWait1, FinWait2:
	default:
		// CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer's FIN is
		// already in; "ignore the segment text".
		return
	}
	n := int(seg.Payload.Size())
	fin := seg.has(header.TCPFlagFin)
	if n == 0 && !fin {
		return
	}
	if e.userClosed && n > 0 && !seg.Seq.Add(seqnum.Size(n)).LessThanEq(e.RcvNxt) {
		// New data for a connection the user has closed can never be
		// read. Like Linux (tcp_rcv_state_process), answer with RST so
		// the peer learns its data was lost (RFC 9293 3.10.4 lets
		// CLOSE discard received data only by reset; RFC 2525 2.17).
		e.drop(seg, DropClosed)
		e.sendReset(e.SndNxt)
		e.transition(Closed, segmentCause(seg))
		return
	}
	if seg.Seq != e.RcvNxt {
		e.received(seg, "out of order: held")
		// Out of order: keep it, and send a duplicate ACK at once
		// (RFC 9293 3.8.6.3 via RFC 5681 4.2) so the sender can fast
		// retransmit.
		e.lastOOO = seg.Seq
		e.storeOutOfOrder(seg.Seq, &seg.Payload, fin)
		e.sendAck(SendAck)
		return
	}
	var cause Cause
	if fin {
		cause = segmentCause(seg) // before the payload moves out
	}
	filled := len(e.ooo) > 0
	if n > 0 {
		switch {
		case e.rcvClosed:
			e.received(seg, "in order: discarded, read side closed")
		case filled:
			e.received(seg, "in order: fills a hole")
		default:
			e.received(seg, "in order")
		}
	}
	e.deliver(&seg.Payload)
	if e.drainOutOfOrder() {
		fin = true
	}
	if fin {
		if cause.Kind == 0 {
			cause = segmentCause(seg)
		}
		e.finArrives(cause)
		return
	}
	// Acknowledge at least every second full segment, and at once when
	// the segment filled a hole (RFC 5681 4.2); otherwise delay the ACK
	// (RFC 9293 3.8.6.3), hoping to piggyback it on data.
	e.unacked++
	if e.unacked >= 2 || filled {
		e.sendAck(SendAck)
	} else if !e.timerArmed(timerDelayedAck) {
		e.setTimer(timerDelayedAck, e.proto.opts.DelayedAck)
	}
}

// received reports what became of a segment's text. It costs nothing
// without an observer.
func (e *Endpoint) received(seg *Segment, note string) {
	if e.proto.opts.Observer != nil {
		e.proto.emit(Event{Kind: EventReceive, Conn: e.connID(), Note: note, Segment: seg.info(), Key: seg.wire})
	}
}

// deliver appends in-order bytes for the user and advances RCV.NXT. It
// takes the bytes out of data.
func (e *Endpoint) deliver(data *buffer.Buffer) {
	n := data.Size()
	if n == 0 {
		return
	}
	e.RcvNxt = e.RcvNxt.Add(seqnum.Size(n))
	e.bytesReceived += uint64(n)
	if e.rcvClosed {
		data.Release() // CloseRead: acknowledged and discarded
		return
	}
	e.rcvBuf.Merge(data)
	e.notify()
}

// finArrives is the eighth step for a FIN now in order.
func (e *Endpoint) finArrives(cause Cause) {
	e.RcvNxt++
	e.finReceived = true
	e.sendAck(SendAck)
	switch e.state {
	case Established:
		e.transition(CloseWait, cause)
	case FinWait1:
		// "If our FIN has been ACKed (perhaps in this segment), then
		// enter TIME-WAIT ...; otherwise, enter the CLOSING state."
		if e.finAcked() {
			e.transition(TimeWait, cause)
		} else {
			e.transition(Closing, cause)
		}
	case FinWait2:
		e.transition(TimeWait, cause)
	}
	e.notify()
}

// seqKey orders sequence numbers relative to RCV.NXT, which is correct
// across wraparound for anything inside the window.
func (e *Endpoint) seqKey(s seqnum.Value) uint32 { return uint32(s - e.RcvNxt) }

// storeOutOfOrder keeps the parts of [seq, seq+len(data)) that no held
// segment covers yet, so the queue stays sorted and disjoint and its size
// stays within the window we advertised.
func (e *Endpoint) storeOutOfOrder(seq seqnum.Value, data *buffer.Buffer, fin bool) {
	end := seq.Add(seqnum.Size(data.Size()))
	cur := seq
	var pieces []oooSegment
	take := func(from, to seqnum.Value) {
		if e.seqKey(from) >= e.seqKey(to) {
			return
		}
		var b buffer.Buffer
		data.SubApply(int(seq.Size(from)), int(from.Size(to)), func(v *buffer.View) { _ = b.Append(v.Clone()) })
		pieces = append(pieces, oooSegment{seq: from, data: b})
	}
	for _, x := range e.ooo {
		if e.seqKey(x.end()) <= e.seqKey(cur) {
			continue
		}
		if e.seqKey(end) <= e.seqKey(x.seq) {
			break
		}
		take(cur, x.seq)
		if e.seqKey(cur) < e.seqKey(x.end()) {
			cur = x.end()
		}
	}
	take(cur, end)
	if fin && !slices.ContainsFunc(e.ooo, func(x oooSegment) bool { return x.fin }) {
		pieces = append(pieces, oooSegment{seq: end, fin: true})
	}
	for _, p := range pieces {
		e.oooBytes += int(p.data.Size())
	}
	e.ooo = append(e.ooo, pieces...)
	slices.SortStableFunc(e.ooo, func(a, b oooSegment) int {
		ka, kb := e.seqKey(a.seq), e.seqKey(b.seq)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		case a.fin != b.fin: // data before a FIN at the same sequence number
			if a.fin {
				return 1
			}
			return -1
		}
		return 0
	})
}

// drainOutOfOrder delivers held segments that are now in order and
// reports whether a held FIN was reached.
func (e *Endpoint) drainOutOfOrder() (fin bool) {
	i := 0
	for ; i < len(e.ooo); i++ {
		x := &e.ooo[i]
		if e.RcvNxt.LessThan(x.seq) {
			break
		}
		e.oooBytes -= int(x.data.Size())
		if e.RcvNxt.LessThan(x.end()) {
			x.data.TrimFront(int64(x.seq.Size(e.RcvNxt)))
			e.deliver(&x.data)
		}
		x.data.Release()
		if x.fin {
			fin = true
			i++
			break
		}
	}
	if fin {
		// Nothing after the FIN can be valid.
		for j := i; j < len(e.ooo); j++ {
			e.ooo[j].data.Release()
		}
		i = len(e.ooo)
		e.oooBytes = 0
	}
	e.ooo = append(e.ooo[:0], e.ooo[i:]...)
	return fin
}
