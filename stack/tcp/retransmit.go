package tcp

import (
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// sampleRTT feeds one round-trip measurement into the RFC 6298 estimator.
func (e *Endpoint) sampleRTT(r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
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

// computeRTO is RTO = SRTT + max(G, 4*RTTVAR) (RFC 6298 2.3), clamped to
// [MinRTO, MaxRTO]. We take the clock granularity G as 1 ms.
func (e *Endpoint) computeRTO() time.Duration {
	rto := e.srtt + max(time.Millisecond, 4*e.rttvar)
	return min(max(rto, e.proto.opts.MinRTO), e.proto.opts.MaxRTO)
}

// backoff doubles the RTO (RFC 6298 5.5), up to MaxRTO.
func (e *Endpoint) backoff() {
	e.rto = min(2*e.rto, e.proto.opts.MaxRTO)
}

// retransmitTimeout is RFC 6298 5.4-5.7 for data, and the SYN and SYN-ACK
// retransmission of the handshake. A bounded number of tries ends the
// connection with ETIMEDOUT.
func (e *Endpoint) retransmitTimeout() {
	e.retries++
	switch e.state {
	case SynSent:
		if e.retries > e.proto.opts.SynRetries {
			e.fail(syscall.ETIMEDOUT, timerCause(timerRetransmit))
			return
		}
		e.backoff()
		e.emitRTO()
		e.sendSyn(SendSynRetransmit)
		e.setTimer(timerRetransmit, e.rto)
		return
	case SynReceived:
		if e.retries > e.proto.opts.SynAckRetries {
			// A half-open entry that never completed is forgotten
			// quietly, as Linux does; an active opener learns ETIMEDOUT.
			e.fail(syscall.ETIMEDOUT, timerCause(timerRetransmit))
			return
		}
		e.backoff()
		e.emitRTO()
		e.sendSynAck(SendSynAckRetransmit)
		e.setTimer(timerRetransmit, e.rto)
		return
	}
	if !e.state.synchronized() || e.SndUna == e.SndNxt {
		e.retries = 0
		return
	}
	if e.retries > e.proto.opts.MaxRetries {
		e.proto.stats.Timeouts.Add(1)
		e.fail(e.timeoutErr(), timerCause(timerRetransmit))
		return
	}
	e.backoff()
	e.emitRTO()
	e.enterLoss()
	// Go back to SND.UNA and send again what the (now one-segment)
	// congestion window allows; output counts these as retransmissions.
	e.SndNxt = e.SndUna
	e.rttTiming = false // Karn: no sample from a retransmitted segment
	e.output()
	if !e.timerArmed(timerRetransmit) {
		e.setTimer(timerRetransmit, e.rto)
	}
}

func (e *Endpoint) emitRTO() {
	e.emit(Event{Kind: EventRetransmitTimeout, Conn: e.connID(), RTO: e.rto})
}

// timeoutErr is the error a connection that gave up reports: ETIMEDOUT,
// or the last ICMP error heard, which says more.
func (e *Endpoint) timeoutErr() error {
	if e.softErr != nil {
		return e.softErr
	}
	return syscall.ETIMEDOUT
}

// fail ends the connection with a hard error the user will see.
func (e *Endpoint) fail(err error, cause Cause) {
	if e.err == nil && !(e.listener != nil && e.state == SynReceived) {
		e.err = err
	}
	e.transition(Closed, cause)
}

// fastRetransmit resends the segment at SND.UNA (RFC 5681 3.2 step 2).
func (e *Endpoint) fastRetransmit() {
	end := e.sndEnd()
	n := 0
	if e.SndUna.LessThan(end) {
		n = min(int(e.SndUna.Size(end)), e.sndMSS)
	}
	fin := e.finQueued && e.SndUna.Add(seqnum.Size(n)) == end && e.SndUna.Add(seqnum.Size(n)).LessThan(e.SndNxt)
	if n == 0 && !fin {
		return
	}
	e.retransmitted++
	e.proto.stats.Retransmits.Add(1)
	e.rttTiming = false
	e.transmit(e.SndUna, n, fin, SendFastRetransmit)
	e.setTimer(timerRetransmit, e.rto)
}
