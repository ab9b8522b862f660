package tcp

// The congestion window: its start (RFC 6928), its growth through the
// congestion control algorithm (cc.go) while the window is what limits
// sending, and nothing else. Loss detection and recovery, which shrink
// it, are in recovery.go, rack.go and ack.go.

// initCongestion sets the initial window when the connection is
// established: IW = min(10*MSS, max(2*MSS, 14600)) (RFC 6928 2), as Linux.
func (e *Endpoint) initCongestion() {
	e.applyPathMTU()
	mss := uint32(e.sndMSS)
	e.cwnd = min(10*mss, max(2*mss, 14600))
	e.ssthresh = ^uint32(0) // RFC 5681 3.1: arbitrarily high
	e.dupAcks = 0
	e.caState = caOpen
	e.rack.reoWndMult = 1
	e.rack.fack = e.sndUna
	e.roundEnd = e.sndNxt
	e.cwndUsageSeq = e.sndNxt
}

// growWindow gives the congestion control an ACK that moved SND.UNA,
// outside fast recovery (PRR has the window then; the ACK that ends it
// leaves cwnd at ssthresh, RFC 6675 5 (A)) and only while the window was
// what limited sending: a window that was not used says nothing about the
// path (RFC 7661; Linux's tcp_is_cwnd_limited). A SACK alone does not
// grow it, as in Linux (tcp_may_raise_cwnd wants FLAG_DATA_ACKED): the
// network may be reordering.
func (e *Endpoint) growWindow(a *ackInfo) {
	if a.acked == 0 || a.endedRecovery || e.caState == caRecovery || !e.cwndLimited() {
		return
	}
	e.cwnd, e.ssthresh = e.congestion().OnAck(AckSample{
		Now: e.monoNow(), Acked: a.delivered, Cwnd: e.cwnd, Ssthresh: e.ssthresh, MSS: uint32(e.sndMSS),
		RTT: a.rttSample, MinRTT: e.rack.minRTT.v, SRTT: e.srtt, RoundStart: a.roundStart,
	})
	e.cwnd = max(e.cwnd, uint32(e.sndMSS))
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
