package tcp

import (
	"fmt"
	"strconv"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// The congestion window: its start (RFC 6928), its growth through the
// congestion control algorithm (cc.go) while the window is what limits
// sending, and nothing else. Loss detection and recovery, which shrink
// it, are in recovery.go, rack.go and ack.go.

// initCongestion sets the initial window when the connection is
// established: IW = min(10*MSS, max(2*MSS, 14600)) (RFC 6928 2), as Linux,
// or the route's initcwnd (routemetrics.go), which the glass box names:
// a first flight of 40 segments needs its reason on a frame.
func (e *Endpoint) initCongestion() {
	e.mtuProbeInit()
	e.applyPathMTU()
	e.cwnd = e.initialCwnd()
	e.ssthresh = ^uint32(0) // RFC 5681 3.1: arbitrarily high
	if m := e.metrics(); m.InitCwnd > 0 && e.observed() {
		mss := uint32(e.sndMSS)
		e.emitRecovery(fmt.Sprintf("initial window %d segments, the route's initcwnd (RFC 6928's IW: %d)", m.InitCwnd, initialWindow(mss)/mss))
	}
	e.dupAcks = 0
	e.setCAState(caOpen)
	e.rack.reoWndMult = 1
	e.rack.fack = e.sndUna
	e.roundEnd = e.sndNxt
	e.cwndUsageSeq = e.sndNxt
	if o := &e.proto.opts; o.CongestionControl == "bbr" || o.NewCongestionControl != nil {
		e.congestion() // a RateController paces from the start
	}
}

// observeAck hands an AckObserver every ACK that delivered data with a
// round-trip sample, as Linux's tcp_clean_rtx_queue calls pkts_acked,
// before loss detection and the window's growth; the sample is the
// newest delivered segment's, Linux's ca_rtt_us (the estimator's is the
// oldest's, RFC 6298). As for the estimator (ackRTT), an ACK that covers a
// retransmission gives none (Karn). A connection whose window has not
// yet been the limit carries no congestion control, and makes one only
// for an ACK that finds it so (growWindow makes it for that ACK anyway).
func (e *Endpoint) observeAck(a *ackInfo) {
	if !a.newestOK || a.retransAcked {
		return
	}
	cc := e.cc
	if cc == nil {
		if !e.cwndLimited() {
			return
		}
		cc = e.congestion()
	}
	o, ok := cc.(AckObserver)
	if !ok {
		return
	}
	e.ssthresh = o.OnAcked(e.ackSample(a, max(a.now.Sub(a.newestFrom), time.Microsecond)))
	if note := takeNote(cc); note != "" {
		e.emitRecovery(note)
	}
}

// ackSample is what a congestion control hears of the ACK a, with the
// round-trip sample rtt (0: none).
func (e *Endpoint) ackSample(a *ackInfo, rtt time.Duration) AckSample {
	return AckSample{
		Now: e.sinceStart(), Acked: a.delivered, Cwnd: e.cwnd, Ssthresh: e.ssthresh, MSS: uint32(e.sndMSS),
		RTT: rtt, MinRTT: e.rack.minRTT.v, SRTT: e.srtt, RoundStart: a.roundStart,
	}
}

// takeNote takes what cc says it changed on its own (Noter), or "".
func takeNote(cc CongestionControl) string {
	if n, ok := cc.(Noter); ok {
		return n.Note()
	}
	return ""
}

// growWindow gives the congestion control an ACK that moved SND.UNA,
// outside fast recovery (PRR has the window then; the ACK that ends it
// leaves cwnd at ssthresh, RFC 6675 5 (A)) and only while the window was
// what limited sending: a window that was not used says nothing about the
// path (RFC 7661; Linux's tcp_is_cwnd_limited). A SACK alone does not
// grow it, as in Linux (tcp_may_raise_cwnd wants FLAG_DATA_ACKED): the
// network may be reordering.
func (e *Endpoint) growWindow(a *ackInfo) {
	if a.acked == 0 || a.endedRecovery || e.reducing() || !e.cwndLimited() {
		return
	}
	cc := e.congestion()
	slowStart := e.cwnd < e.ssthresh
	e.cwnd, e.ssthresh = cc.OnAck(e.ackSample(a, a.rttSample))
	e.cwnd = max(e.cwnd, uint32(e.sndMSS))
	switch note := takeNote(cc); {
	case note != "":
		e.emitRecovery(note)
	case slowStart && e.cwnd >= e.ssthresh && e.observed():
		// The glass box's own note: where slow start gave way to
		// congestion avoidance (RFC 5681 3.1), which no state of
		// RFC 9293 or Linux's names.
		e.emitRecovery("slow start ends: cwnd " + strconv.Itoa(int(e.cwnd)) + " reached ssthresh " + strconv.Itoa(int(e.ssthresh)) + ": congestion avoidance (RFC 5681 3.1)")
	}
}

// cwndLimited is Linux's tcp_is_cwnd_limited: in slow start, whether the
// window is less than twice the most sent in a round trip lately (slow
// start may double it); in congestion avoidance, whether sending stopped
// at the window in the last round trip.
func (e *Endpoint) cwndLimited() bool {
	if e.cwnd < e.ssthresh {
		return e.cwnd < 2*e.maxFlight
	}
	return e.wasCwndLimited
}

// cwndValidate records, after each round of sending, whether the window
// was the limit, for the current round trip (Linux tcp_cwnd_validate).
func (e *Endpoint) cwndValidate(limited bool) {
	flight := e.flightSize()
	if !e.sndUna.LessThan(e.cwndUsageSeq) || limited || (!e.wasCwndLimited && flight > e.maxFlight) {
		e.wasCwndLimited = limited
		e.maxFlight = flight
		e.cwndUsageSeq = e.sndNxt
	}
}

// restartAfterIdle is the restart window of RFC 5681 4.1: a connection
// about to send data with none in flight (new data from the user, or a
// closed window opening), that sent none, new or retransmitted, for longer
// than the RTO, has no ACK clock left, so cwnd drops to at most RW =
// min(IW, cwnd) before the transmission begins. Window probes are no data
// and do not count. We follow Linux (tcp_cwnd_restart) in how: the window
// halves once per RTO of idleness, down to RW and no further (RFC 2861's
// decay, floored at RFC 5681's RW), and ssthresh keeps at least three
// quarters of the old window (tcp_current_ssthresh), so slow start climbs
// back quickly to where it was. Options.NoSlowStartAfterIdle turns it
// off, as Linux's tcp_slow_start_after_idle=0.
func (e *Endpoint) restartAfterIdle(now tcpip.MonotonicTime) {
	if e.proto.opts.NoSlowStartAfterIdle || e.dataSentAt == (tcpip.MonotonicTime{}) || e.caState != caOpen {
		return
	}
	idle := now.Sub(e.dataSentAt)
	if idle <= e.rto {
		return
	}
	rw := min(e.initialCwnd(), e.cwnd)
	cwnd := e.cwnd
	for idle -= e.rto; idle > 0 && cwnd > rw; idle -= e.rto {
		cwnd >>= 1
	}
	cwnd = max(cwnd, rw)
	if cwnd == e.cwnd {
		return
	}
	e.ssthresh = max(e.ssthresh, e.cwnd/4*3)
	e.cwnd = cwnd
	e.proto.stats.IdleRestarts.Add(1)
	e.emitRecovery("restart after idle (RFC 5681 4.1): cwnd " + strconv.Itoa(int(cwnd)))
}

// initialWindow is IW (RFC 6928): ten segments, at most 14600 bytes and at
// least two segments, as initCongestion sets it.
func initialWindow(mss uint32) uint32 {
	return min(10*mss, max(2*mss, 14600))
}
