package tcp

import (
	"math"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// Delivery rate estimation, as Linux's tcp_rate.c does it and
// draft-cheng-iccrg-delivery-rate-estimation describes it: each ACK that
// delivers data yields a sample, the data delivered between the
// transmission of the newest segment it delivered and now, over the
// longer of the two phases that took: the send phase (from the send time
// of the newest segment delivered before it to its own) and the ACK
// phase (from when that segment's predecessor was delivered to now). The
// longer phase keeps ACK compression, or a burst sent faster than the
// path drains it, from inflating the estimate; a sample shorter than the
// minimum RTT is discarded as one. The connection keeps the latest
// sample, or an application-limited one only while it is the highest
// (Linux's rate_delivered and rate_interval_us), and reports it as
// Info.DeliveryRate (tcpi_delivery_rate), what ss -i prints as
// delivery_rate.
//
// A sample taken while the sender had run out of data (the application
// wrote less than a segment beyond what was sent, with room in the
// congestion window, and nothing lost waiting to go again) measures the
// application, not the path: it is marked app-limited, as is every
// sample until the data in flight then is delivered (the "bubble").
//
// The counters are bytes, where Linux counts packets and multiplies by
// the MSS: the same rate with segments of one size, exact with others.

// rateState is a connection's estimator, made when it is first written
// to or sends its first data segment: a connection that never sends data
// keeps none.
type rateState struct {
	delivered     uint64        // bytes delivered, cumulatively ACKed or SACKed (C.delivered)
	deliveredSegs uint64        // segments delivered (Linux's tcpi_delivered)
	deliveredAt   time.Duration // when delivered last grew (C.delivered_time), on the clock
	firstTx       time.Duration // send time of the newest segment delivered (C.first_sent_time)
	appLimited    uint64        // delivered+inflight when the sender ran out of data; 0: not limited (C.app_limited)
	writerWaits   bool          // the last write found too little room in the send buffer: the next resumes it

	// The times are durations from the clock's zero, so that a segment
	// is stamped with integer arithmetic: a MonotonicTime's Sub costs
	// two time.Unix conversions, and two per segment sent took 20% of a
	// bulk sender's throughput in memory. stamp and stampAt convert the
	// engine's stamp once per piece of work (stamp.go).
	stamp   tcpip.MonotonicTime
	stampAt time.Duration

	// The sample kept: bytes delivered over interval, and whether the
	// application limited it.
	sampleBytes      uint64
	sampleInterval   time.Duration
	sampleAppLimited bool
}

// rateSample is what one ACK's delivered segments say (Linux's struct
// rate_sample, the part tcp_rate_skb_delivered fills): from the newest
// of them, the data delivered and the time when it left, the send phase
// it ends, and whether it was sent app-limited.
type rateSample struct {
	have           bool
	priorDelivered uint64        // the connection's delivered count when it left
	sinceDelivered time.Duration // from when that count was reached to its send time
	sendPhase      time.Duration // from the first_sent_time it carried to its send time
	appLimited     bool
	lastXmit       tcpip.MonotonicTime // its send time and end: a later segment replaces it
	lastEnd        seqnum.Value
	// The sample rateGen found valid: bytes delivered over interval
	// (a RateController's, cc.go); interval 0: none.
	bytes    uint64
	interval time.Duration
}

// rateSent stamps s, a data segment (or a FIN) that is leaving now, with
// the connection's delivery state, for the sample its ACK will give
// (Linux's tcp_rate_skb_sent). idle says nothing else is in flight: the
// phases then start now.
func (e *Endpoint) rateSent(s *txSeg, now tcpip.MonotonicTime, idle bool) {
	r := e.rate
	if r == nil {
		r = new(rateState)
		e.rate, idle = r, true
	}
	at := r.clock(now)
	if idle {
		r.firstTx, r.deliveredAt = at, at
	}
	s.rateDelivered = uint32(r.delivered)
	s.rateSinceDelivered, s.rateSinceFirst = micros(at-r.deliveredAt), micros(at-r.firstTx)
	if r.appLimited != 0 {
		s.flags |= segAppLimited
	} else {
		s.flags &^= segAppLimited
	}
}

// rateSame reports whether a segment sent at now would carry the delivery
// state s carries (rateSent), so that it may share s's record.
func (e *Endpoint) rateSame(s *txSeg, now tcpip.MonotonicTime) bool {
	r := e.rate
	if r == nil {
		return false
	}
	at := r.clock(now)
	return s.rateDelivered == uint32(r.delivered) && s.rateSinceDelivered == micros(at-r.deliveredAt) &&
		s.rateSinceFirst == micros(at-r.firstTx) && s.has(segAppLimited) == (r.appLimited != 0)
}

// clock is t as a duration from the clock's zero: one conversion per
// stamp, whatever the number of segments it stamps.
func (r *rateState) clock(t tcpip.MonotonicTime) time.Duration {
	if t != r.stamp {
		r.stamp, r.stampAt = t, t.Sub(tcpip.MonotonicTime{})
	}
	return r.stampAt
}

// micros is d in whole microseconds, as a segment record keeps it: at
// most about 71 minutes, which no rate sample needs.
func micros(d time.Duration) uint32 {
	return uint32(min(max(d, 0)/time.Microsecond, math.MaxUint32))
}

// rateDelivered takes s, delivered for the first time by this ACK, into
// its sample if s left after the segment the sample holds (Linux's
// tcp_rate_skb_delivered with tcp_skb_sent_after).
func (e *Endpoint) rateDelivered(s *txSeg, a *ackInfo) {
	r, rs := e.rate, &a.rate
	if r == nil {
		return
	}
	a.deliveredSegs += s.segs()
	if s.has(segFin) && s.len() == 1 {
		// A FIN alone carries no data: its sample would be one
		// sequence number over a round trip. Linux counts it as a
		// packet of MSS bytes, which it is not.
		return
	}
	if rs.have && !s.sentAfter(rs.lastXmit, rs.lastEnd) {
		return
	}
	rs.have = true
	// The count when s left, from its low 32 bits: less than 4 GiB was
	// delivered since, as it was in flight.
	rs.priorDelivered = r.delivered - uint64(uint32(r.delivered)-s.rateDelivered)
	rs.sinceDelivered = time.Duration(s.rateSinceDelivered) * time.Microsecond
	rs.sendPhase = time.Duration(s.rateSinceFirst) * time.Microsecond
	rs.appLimited = s.has(segAppLimited)
	rs.lastXmit, rs.lastEnd = s.xmit, s.end // first_sent_time moves to it in rateGen
}

// rateGen ends an ACK's part: the delivered count grows by what it
// delivered, and its sample, if it has one, is kept when it is valid
// and either not app-limited or higher than the one kept (Linux's
// tcp_rate_gen).
func (e *Endpoint) rateGen(a *ackInfo) {
	r, rs := e.rate, &a.rate
	if r == nil || a.delivered == 0 {
		return
	}
	r.delivered += uint64(a.delivered)
	r.deliveredSegs += uint64(a.deliveredSegs)
	now := r.clock(a.now)
	r.deliveredAt = now
	if r.appLimited != 0 && r.delivered > r.appLimited {
		r.appLimited = 0 // the bubble is delivered
	}
	if !rs.have {
		return
	}
	// The newest segment delivered: the next send phase starts at its
	// send time (Linux's tcp_rate_skb_delivered sets first_tx_mstamp).
	xmit := rs.lastXmit.Sub(tcpip.MonotonicTime{})
	r.firstTx = xmit
	bytes := r.delivered - rs.priorDelivered
	interval := max(rs.sendPhase, now-(xmit-rs.sinceDelivered))
	if interval <= 0 || interval < e.rack.minRTT.v {
		// Shorter than a round trip: a burst of ACKs, not the path's
		// rate (Linux discards it the same way).
		return
	}
	rs.bytes, rs.interval = bytes, interval
	if !rs.appLimited || bytes*uint64(r.sampleInterval) >= r.sampleBytes*uint64(interval) {
		r.sampleBytes, r.sampleInterval, r.sampleAppLimited = bytes, interval, rs.appLimited
	}
}

// rateWrite is a write, short if it found less room than it wanted: as
// it begins,
// the connection is marked app-limited if it has less than a segment
// unsent, room in the congestion window and nothing lost waiting to go
// again, and the samples until what is in flight now is delivered
// measure the application (Linux's tcp_rate_check_app_limited, which
// tcp_sendmsg calls once per call). A write that found too little room
// in the send buffer and waits for more is resumed, not begun, when it
// is tried again with the rest: Linux's sendmsg sleeps in the call
// (sk_stream_wait_memory) and checks no more; checking every try marked
// a sender whose whole buffer was in flight app-limited every time an
// ACK made room.
//
// The first write of a connection finds it so, as Linux's does: its
// first samples measure the initial window, not the path.
func (e *Endpoint) rateWrite(short bool) {
	r := e.rate
	if r == nil {
		r = new(rateState)
		e.rate = r
	}
	resumed := r.writerWaits
	r.writerWaits = short
	if resumed {
		return
	}
	unsent := 0
	if e.sndNxt.LessThan(e.sndEnd()) {
		unsent = int(e.sndNxt.Size(e.sndEnd()))
	}
	inflight := e.inflight()
	if unsent < e.sndMSS && inflight < e.cwnd && e.rtxq.lostWaiting == 0 && len(e.outq) == 0 {
		r.appLimited = max(r.delivered+uint64(inflight), 1)
	}
}

// deliveryRate is the kept sample as Info reports it: bytes a second,
// and whether the application limited it; and the segments delivered,
// counting the handshake's SYN or SYN-ACK once it is acknowledged, as
// Linux's tcpi_delivered does.
func (e *Endpoint) deliveryRate() (rate uint64, appLimited bool, segs uint64) {
	if e.wasEstablished {
		segs = 1
	}
	r := e.rate
	if r == nil {
		return 0, false, segs
	}
	segs += r.deliveredSegs
	if r.sampleInterval <= 0 {
		return 0, false, segs
	}
	return uint64(float64(r.sampleBytes) * float64(time.Second) / float64(r.sampleInterval)), r.sampleAppLimited, segs
}
