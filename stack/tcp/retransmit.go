package tcp

import (
	"syscall"
	"time"

	"github.com/tapstack/tapstack/event"
)

// sampleRTT feeds one round-trip measurement into the RFC 6298 estimator.
func (e *Endpoint) sampleRTT(r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
	e.rack.minRTT.update(e.now(), r)
	if !e.rttValid {
		// RFC 6298 2.2: the first measurement.
		e.srtt = r
		e.rttvar = r / 2
		e.rttValid = true
	} else {
		// RFC 6298 2.3, with alpha = 1/8 and beta = 1/4.
		delta := e.srtt - r
		if delta < 0 {
			delta = -delta
		}
		e.rttvar = (3*e.rttvar + delta) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	e.rto = e.computeRTO()
}

// computeRTO is RTO = SRTT + max(G, K*RTTVAR) (RFC 6298 2.3) as Linux
// computes it (tcp_set_rto, tcp_rtt_estimator): the minimum RTO bounds the
// variance term, not the sum, so RTO = SRTT + max(4*RTTVAR, MinRTO), at
// most MaxRTO. RFC 6298 2.4 puts its (1 s) minimum on the whole RTO; with
// Linux's 200 ms the difference is SRTT, which keeps a path with a long,
// steady RTT from retransmitting spuriously. A route's rto_min replaces
// MinRTO (routemetrics.go).
func (e *Endpoint) computeRTO() time.Duration {
	rto := e.srtt + max(4*e.rttvar, e.minRTO())
	return min(rto, e.proto.opts.MaxRTO)
}

// backoff doubles the RTO (RFC 6298 5.5), up to MaxRTO.
func (e *Endpoint) backoff() {
	e.rto = min(2*e.rto, e.proto.opts.MaxRTO)
}

// countHandshakeRetransmit counts a SYN or SYN-ACK sent again on its
// timer as a retransmitted segment, as Linux counts one in
// tcpi_total_retrans and RetransSegs (tcp_retransmit_skb for the SYN;
// tcp_rtx_synack, whose count a child inherits in
// tcp_create_openreq_child): data's are counted in retransmitSeg.
func (e *Endpoint) countHandshakeRetransmit() {
	e.retransmitted++
	e.proto.stats.Retransmits.Add(1)
}

// retransmitTimeout is RFC 6298 5.4-5.7 for data, and the SYN and SYN-ACK
// retransmission of the handshake. A bounded number of tries ends the
// connection with ETIMEDOUT.
//
// The user timeout (RFC 5482; RFC 9293 3.8.3) bounds the handshake too:
// the SYN is the first octet sent, and its acknowledgment is what the
// connection waits for. As Linux since 5.4 (tcp_write_timeout checks
// retransmits_timed_out with icsk_user_timeout in SYN-SENT and
// SYN-RECEIVED as in the other states), whichever of the retries and the
// user timeout runs out first ends the open, and the timer is cut short to
// end at the user timeout (tcp_clamp_rto_to_user_timeout). Its clock
// starts with the first SYN (progressAt, set by ConnectWith, as Linux's
// tcp_connect sets retrans_stamp). A listener's half-open entry has no
// user timeout, as a Linux request sock has none.
func (e *Endpoint) retransmitTimeout() {
	switch e.state {
	case event.SynSent:
		e.retries++
		if e.retries > e.proto.opts.SynRetries || e.userTimedOut() {
			e.fail(syscall.ETIMEDOUT, e.giveUpCause(timerCause(timerRetransmit)))
			return
		}
		e.backoff()
		e.emitRTO()
		e.sendSyn(event.SendSynRetransmit)
		e.countHandshakeRetransmit()
		e.setTimer(timerRetransmit, e.rtoFromNow())
		return
	case event.SynReceived:
		e.retries++
		if e.retries > e.proto.opts.SynAckRetries || e.userTimedOut() {
			// A half-open entry that never completed is forgotten
			// quietly, as Linux does; an active opener learns ETIMEDOUT.
			e.fail(syscall.ETIMEDOUT, e.giveUpCause(timerCause(timerRetransmit)))
			return
		}
		e.backoff()
		e.emitRTO()
		e.sendSynAck(event.SendSynAckRetransmit)
		e.countHandshakeRetransmit()
		e.setTimer(timerRetransmit, e.rtoFromNow())
		return
	}
	if !e.state.Synchronized() || e.rtxq.empty() {
		e.retries, e.rtoReverts = 0, 0
		return
	}
	// No timeout since SND.UNA last moved: the last one's retransmission
	// was answered (Linux's icsk_retransmits == 0; enterLoss).
	answered := e.retries == 0
	zeroWindow := e.sndWnd == 0 && !e.userClosed
	if zeroWindow {
		if !e.shrunkWindowProbe() {
			return
		}
	} else if e.retries++; e.retriesTimedOut(e.retryLimit()) {
		e.proto.stats.Timeouts.Add(1)
		e.fail(e.timeoutErr(), e.giveUpCause(timerCause(timerRetransmit)))
		return
	}
	e.backoff()
	e.proto.stats.RetransmitTimeouts.Add(1)
	e.emitRTO()
	e.mtuProbeTimeout()
	if !zeroWindow {
		e.blackHoleSuspected()
	}
	e.enterLoss(answered)
	e.output()
	e.setTimer(timerRetransmit, e.rtoFromNow())
}

// shrunkWindowProbe decides a retransmission timeout with data in flight
// and the peer's window at zero: the window shrank under the data (RFC
// 9293 3.8.6.2.2 says a receiver should not do that; RFC 1122 4.2.2.16
// says a sender must cope). With data in flight the persist timer does
// not run, so the retransmissions are the window's probes, and a sender
// "SHOULD NOT time out the connection if data beyond the right window
// edge is not acknowledged" (4.2.2.16), nor close one whose receiver
// keeps answering with a zero window (4.2.2.17, RFC 9293 3.8.6.1 MUST).
// Like Linux's tcp_retransmit_timer ("receiver dastardly shrinks
// window"), such a timeout does not count against MaxRetries (retries
// is not moved, and the path MTU black hole is not suspected); the
// retransmission goes as usual. Unlike Linux, which gives up once
// nothing was received for 2*TCP_RTO_MAX (tcp_rtx_probe0_timed_out), we
// count the probes the peer leaves unanswered, as the persist timer
// does: persistProbes, which every ACK clears (ack.go), so a peer that
// answers is kept and one that fell silent is timed out after
// MaxRetries probes or the user timeout (probesGiveUp), for which
// Linux's rule is the same. The Endpoint has no room for the time of the
// last ACK (TestEndpointSizeClass). The caller keeps an orphan out of
// here, as Linux keeps a SOCK_DEAD socket: nobody will read what it
// waits to deliver, and retryLimit bounds it. It reports whether the
// retransmission should go.
func (e *Endpoint) shrunkWindowProbe() bool {
	if e.probesGiveUp("retransmit: the peer answered no probe of its zero window") {
		return false
	}
	e.persistProbes++
	return true
}

// retryLimit is how many retransmission timeouts in a row a connection
// takes before it gives up: MaxRetries; for an orphan whose peer's
// window is zero, no more than OrphanRetries, answered or not, as Linux's
// tcp_write_timeout bounds a SOCK_DEAD socket's timeouts by
// tcp_orphan_retries: a window that never opens would otherwise hold a
// connection nobody reads for ever. (Other orphans keep MaxRetries here,
// as they did.)
func (e *Endpoint) retryLimit() int {
	if e.userClosed && e.sndWnd == 0 {
		return min(e.proto.opts.MaxRetries, e.proto.opts.OrphanRetries)
	}
	return e.proto.opts.MaxRetries
}

// retriesTimedOut reports whether a connection in a synchronized state
// that has just had its retries-th retransmission timeout gives up, as
// Linux's tcp_write_timeout decides (retransmits_timed_out): by time, not
// by count. Without a user timeout, once the time since SND.UNA last
// moved (progressAt; Linux's retrans_stamp) reaches what limit
// retransmissions would take from a first RTO of 200 ms doubled each
// time up to MaxRTO (retriesTimeout; Linux's tcp_model_timeout, 924.6 s
// for 15): a connection whose RTO is larger (a long path, or no RTT
// sample yet) tries fewer times, one whose backoff an ICMP error took
// back (RFC 6069, icmpld.go) tries more, in the same time. With a user
// timeout, that timeout alone (RFC 5482; Linux passes icsk_user_timeout
// in place of the model).
func (e *Endpoint) retriesTimedOut(limit int) bool {
	if e.userTimeout > 0 {
		return e.userTimedOut()
	}
	return !e.now().Before(e.progressAt.Add(e.proto.retriesTimeout(limit)))
}

// rtoModelBase is the first RTO of the model retriesTimeout measures by:
// Linux's TCP_RTO_MIN, whatever the route's rto_min.
const rtoModelBase = 200 * time.Millisecond

// retriesTimeout is how long limit retransmission timeouts take from a
// first RTO of rtoModelBase, doubled each time up to MaxRTO (Linux's
// tcp_model_timeout).
func (p *Protocol) retriesTimeout(limit int) time.Duration {
	maxRTO := p.opts.MaxRTO
	thresh := 0 // the doublings before MaxRTO: ilog2(MaxRTO / base)
	for thresh < 62 && rtoModelBase<<(thresh+1) <= maxRTO {
		thresh++
	}
	if limit <= thresh {
		return time.Duration(2<<limit-1) * rtoModelBase
	}
	return time.Duration(2<<thresh-1)*rtoModelBase + time.Duration(limit-thresh)*maxRTO
}

// rtoFromNow is the time until the retransmission timer should fire: the
// RTO, or less if the user timeout (RFC 5482, Linux TCP_USER_TIMEOUT)
// ends sooner, as Linux's tcp_clamp_rto_to_user_timeout.
func (e *Endpoint) rtoFromNow() time.Duration { return e.withinUserTimeout(e.rto) }

// withinUserTimeout is d, or less, at least a millisecond, if the user
// timeout ends sooner (Linux's tcp_clamp_rto_to_user_timeout and
// tcp_clamp_probe0_to_user_timeout).
func (e *Endpoint) withinUserTimeout(d time.Duration) time.Duration {
	if ut := e.userTimeout; ut > 0 {
		left := e.progressAt.Add(ut).Sub(e.now())
		d = min(d, max(left, time.Millisecond))
	}
	return d
}

// userTimedOut reports whether data has waited for its acknowledgment (or
// for the peer's window to open) longer than the user timeout: RFC 5482's
// UTO, Linux's TCP_USER_TIMEOUT, counted from the last time SND.UNA moved
// or data went out with nothing in flight.
func (e *Endpoint) userTimedOut() bool {
	return e.userTimeout > 0 && !e.now().Before(e.progressAt.Add(e.userTimeout))
}

// userTimeoutCause is the cause a connection's end carries when the user
// timeout is what ran out.
const userTimeoutCause = "user timeout (RFC 5482)"

// giveUpCause is the cause of a timer's giving up on the peer (RFC 9293
// 3.8.3): the user timeout when it has run out, since that is the limit
// the user set and the one to look for (RFC 5482 4; Linux's
// tcp_write_timeout and tcp_probe_timer check it first too), else plain,
// the timer's own cause (retries exhausted).
func (e *Endpoint) giveUpCause(plain event.Cause) event.Cause {
	if e.userTimedOut() {
		return event.Cause{Kind: event.CauseTimer, Detail: userTimeoutCause}
	}
	return plain
}

// SetUserTimeout bounds how long sent data may stay unacknowledged, or
// wait behind a closed window, before the connection fails with ETIMEDOUT
// (RFC 5482 and RFC 9293 3.8.3's USER TIMEOUT; Linux TCP_USER_TIMEOUT). Zero
// turns it off: then MaxRetries and OrphanRetries decide.
func (e *Endpoint) SetUserTimeout(d time.Duration) {
	e.mu.Lock()
	e.userTimeout = max(d, 0)
	e.mu.Unlock()
}

func (e *Endpoint) emitRTO() {
	e.emit(event.Event{Kind: event.KindRetransmitTimeout, Conn: e.connID(), RTO: e.rto})
}

// timeoutErr is the error a connection that gave up reports: ETIMEDOUT,
// or the last ICMP error heard, which says more.
func (e *Endpoint) timeoutErr() error {
	if e.softErr != nil {
		return e.softErr
	}
	return syscall.ETIMEDOUT
}

// fail ends the connection with a hard error the user will see: a timer
// gave up, or the link failed.
func (e *Endpoint) fail(err error, cause event.Cause) {
	v := e.failed(err, cause)
	e.transition(v.to, v.cause)
}

// failed records a hard error for the user and returns the move to
// CLOSED that it makes, for a SEGMENT ARRIVES handler to return. A
// half-open connection of a listener has no user to tell.
func (e *Endpoint) failed(err error, cause event.Cause) verdict {
	if e.err == nil && !(e.listener != nil && e.state == event.SynReceived) {
		e.err = err
	}
	return moveTo(event.Closed, cause, thenDone)
}
