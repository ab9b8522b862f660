package tcp

import (
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// The receiver's acknowledgment policy: when in-order data is ACKed at
// once and when the ACK waits for the delayed-ACK timer (RFC 9293
// 3.8.6.3, RFC 5681 4.2, RFC 1122 4.2.3.2).
//
// RFC 1122 asks for an ACK for at least every second full-sized segment
// and lets the rest wait at most 500 ms. We refine it in four ways,
// each of which a peer can see on the wire (and on a link that marks its
// bursts, batch.go answers a burst of text with fewer ACKs):
//
//   - "Full-sized" is measured, not assumed: a full frame is the largest
//     segment the peer has sent, capped at the MSS we advertised, and
//     starting at 536 (Linux tcp_measure_rcv_mss). The rule counts bytes
//     since our last ACK, so one 2,000-byte segment from a peer whose
//     stack coalesced two (GRO) is ACKed at once, as two would be.
//   - Quick-ACK mode (Linux tcp_incr_quickack): the first data of a
//     connection, and the first after an idle spell longer than the RTO,
//     are ACKed at once for up to 16 ACKs, so a peer in slow start is
//     not held back by a delayed ACK while its window is small.
//   - Quick-ACK mode again after a hole (receive.go, holdOutOfOrder) and
//     after a retransmission of text we have (Linux tcp_data_queue): the
//     segments that follow are the peer's loss recovery, which RFC 5681
//     4.2 wants fast. Linux has stopped doing it after a hole (4.18). A
//     copy the network made, which timestamps tell from a retransmission,
//     does not count (peerRetransmitted); for Linux it does.
//   - Ping-pong (interactive) mode (Linux inet_csk_inc_pingpong_cnt):
//     once we send data within the delayed-ACK time of receiving some,
//     the connection is a request/response exchange and quick ACKs stop,
//     so the ACK rides on the reply. A delayed-ACK timer that fires
//     anyway ends ping-pong mode: the reply did not come in time.

// maxQuickAcks bounds quick-ACK mode, as Linux's TCP_MAX_QUICKACKS.
const maxQuickAcks = 16

// initialRcvSegMax is the guess of the peer's segment size before it has
// sent any: RFC 9293 3.7.1's default MSS, as Linux's TCP_MSS_DEFAULT.
const initialRcvSegMax = 536

// dataArrived notes n in-order or out-of-order bytes of text arriving at
// now: it measures the peer's segment size and enters quick-ACK mode on
// the first data and after an idle spell longer than the RTO.
func (e *Endpoint) dataArrived(n int, now tcpip.MonotonicTime) {
	if e.rcvSegMax == 0 {
		e.rcvSegMax = int32(min(initialRcvSegMax, e.rcvMSS))
	}
	if n >= int(e.rcvSegMax) {
		e.rcvSegMax = int32(min(n, e.rcvMSS))
	}
	if (!e.dataSeen || now.Sub(e.lastDataAt) > e.rto) && !e.proto.opts.NoQuickAck {
		e.incrQuickAck(maxQuickAcks)
	}
	e.dataSeen = true
	e.lastDataAt = now
	e.rcvCoalesced = n > e.rcvMSS // batch.go: its ACK may wait for the burst's end
}

// incrQuickAck enters quick-ACK mode for enough ACKs to open the peer's
// slow start across our window: half the window in full frames, at
// least 2 and at most limit (Linux tcp_incr_quickack).
func (e *Endpoint) incrQuickAck(limit int) {
	q := int(e.rcvWnd) / (2 * max(int(e.rcvSegMax), 1))
	if q == 0 {
		q = 2
	}
	q = min(q, limit)
	if int32(q) > e.quickAcks {
		e.quickAcks = int32(q)
	}
}

// enterQuickAck is quick-ACK mode for a peer that is retransmitting or
// reordering (duplicate text, a hole): ACK at once, leave ping-pong
// (Linux tcp_enter_quickack_mode). The path has shown loss or
// reordering, so full-sized text is ACKed per second segment again for
// a while, not per burst (ackPerBurst).
func (e *Endpoint) enterQuickAck() {
	if !e.proto.opts.NoQuickAck {
		e.incrQuickAck(maxQuickAcks)
	}
	e.pingpong = false
	e.segmentAcks = disorderSegmentAcks
}

// disorderSegmentAcks is how many ACKs a receiver sends per second full
// segment, not per burst, after text came out of order or twice: about
// 2,000 segments. Below about one loss in 2,000 segments a path gets
// two ACKs per burst most of the time; above, the per-segment rule that
// keeps a lossy sender's ACK clock (batch.go).
const disorderSegmentAcks = 1024

// ackPerBurst says whether the ACK that more than one full frame
// unacknowledged makes due may wait for the end of the burst the text
// came in (batch.go): always for coalesced text, and for full-sized text
// unless the path has lately shown loss or reordering, or the options
// say otherwise. An ACK it leaves to the per-segment rule because of
// recent disorder spends one of segmentAcks.
func (e *Endpoint) ackPerBurst() bool {
	switch {
	case !e.inBatch:
		return false
	case e.rcvCoalesced, e.proto.opts.AckPerBurst:
		return true
	case e.proto.opts.NoAckPerBurst:
		return false
	case e.segmentAcks > 0:
		e.segmentAcks--
		return false
	}
	return true
}

// ackPolicy decides for text just taken in order: an ACK now, or the
// delayed-ACK timer. now says the ACK cannot wait: a hole filled (RFC
// 5681 4.2), a D-SACK to report (RFC 2883). A route with quickack
// (routemetrics.go) always ACKs at once, as Linux's dst_quick_ack does.
func (e *Endpoint) ackPolicy(now bool) {
	e.unacked++
	e.oooAcks = 0 // in-order text: the next out-of-order text starts a count of its own (compressSack)
	pending := int(e.lastAckSent.Size(e.rcvNxt))
	if now || (e.quickAcks > 0 && !e.pingpong) || e.metrics().QuickAck {
		e.sendAck(event.SendAck)
		return
	}
	if pending > int(e.rcvSegMax) {
		if !e.ackPerBurst() {
			e.sendAck(event.SendAck)
			return
		}
		if !e.ackAtBatchEnd {
			// The burst's first ACK goes at once (for full-sized
			// text by the per-segment rule, for coalesced text at
			// its first super-frame), and only the rest of the
			// burst waits for its end (batch.go). The sender then
			// hears from every burst early, and an ACK lost at a
			// burst's end no longer leaves it without word of the
			// whole burst: a sender whose flight was that burst
			// would wait for its probe timeout, and the probe, one
			// segment, for our delayed-ACK timer
			// (TestCoalescedBurstEndAckLost).
			e.sendAck(event.SendAck)
			e.deferAck()
			return
		}
		// More than one full frame unacknowledged, in a burst whose
		// end the link marks: one ACK at the burst's end (batch.go).
		// The delayed-ACK timer below stays the bound.
		e.deferAck()
	}
	if !e.timerArmed(timerDelayedAck) {
		e.setTimer(timerDelayedAck, e.proto.opts.DelayedAck)
	}
}

// finAckTick is how long the ACK of a FIN waits on a connection that
// has received no text. Linux's delayed-ACK timeout (icsk_ack.ato) is
// still zero there, so its timer fires at the next tick of the kernel's
// timer wheel: within a jiffy, 1 ms at HZ=1000 and up to 4 ms at HZ=250
// (3.4 ms measured on this project's test machine). We take the shorter.
const finAckTick = time.Millisecond

// finAckPolicy decides when to acknowledge a FIN that arrived in
// ESTABLISHED. Linux's tcp_fin enters ping-pong mode, so the ACK is
// not a quick one: it waits on the delayed-ACK timer, and the
// application's close, if it comes first, carries it on its FIN (a
// request answered by a close, the end of most short connections,
// then costs three segments instead of four). It goes at once when the
// text before the FIN called for it (now), or when more than a full
// frame, the FIN counted, is unacknowledged, Linux's
// __tcp_ack_snd_check. The wait is DelayedAck once the connection has
// received text, a tick (finAckTick) before: Linux's delayed-ACK
// timeout, set by the first text. The caller holds e.mu.
func (e *Endpoint) finAckPolicy(now bool) {
	e.unacked++
	e.pingpong = true
	full := int(e.rcvSegMax)
	if full == 0 {
		full = min(initialRcvSegMax, e.rcvMSS) // no text yet: dataArrived's first guess
	}
	if now || int(e.lastAckSent.Size(e.rcvNxt)) > full || e.metrics().QuickAck {
		e.sendAck(event.SendAck)
		return
	}
	d := e.proto.opts.DelayedAck
	if !e.dataSeen {
		d = min(d, finAckTick)
	}
	if !e.timerArmed(timerDelayedAck) {
		e.setTimer(timerDelayedAck, d)
	}
}

// ackSent counts an ACK of new text against quick-ACK mode (Linux
// tcp_dec_quickack_mode). The caller holds e.mu.
func (e *Endpoint) ackSent() {
	if e.unacked > 0 && e.quickAcks > 0 {
		e.quickAcks--
	}
	e.unacked = 0
	e.ackAtBatchEnd = false
	e.sackAtBatchEnd = false
}

// dataSent notes new data leaving: sent within the delayed-ACK time of
// data arriving, it is a reply, and the connection enters ping-pong mode
// (Linux tcp_event_data_sent).
func (e *Endpoint) dataSent(now tcpip.MonotonicTime) {
	if e.dataSeen && now.Sub(e.lastDataAt) < e.proto.opts.DelayedAck {
		e.pingpong = true
	}
}

// SetQuickAck is Linux's TCP_QUICKACK: on, the connection leaves
// ping-pong mode and ACKs what it has received at once; off, it enters
// ping-pong mode, so ACKs wait for data to ride on or for the delayed-ACK
// timer. Neither is permanent: the policy above moves on from there.
func (e *Endpoint) SetQuickAck(on bool) {
	e.mu.Lock()
	if on {
		e.pingpong = false
		if e.unacked > 0 && e.state.Synchronized() {
			e.sendAck(event.SendAck)
		}
	} else {
		e.pingpong = true
	}
	e.mu.Unlock()
	e.flush()
}

// delayedAckFired is the delayed-ACK timer with text unacknowledged: no
// reply carried the ACK in time, so this is not a ping-pong exchange
// (Linux tcp_delack_timer_handler).
func (e *Endpoint) delayedAckFired() {
	e.pingpong = false
	e.sendAck(event.SendDelayedAck)
}
