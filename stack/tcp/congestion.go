package tcp

// Congestion control is NewReno: slow start and congestion avoidance
// (RFC 5681 3.1), fast retransmit and fast recovery (RFC 5681 3.2) with
// NewReno's partial-ACK handling (RFC 6582 3.2). Windows are in bytes.

// initCongestion sets the initial window when the connection is
// established: IW = min(10*MSS, max(2*MSS, 14600)) (RFC 6928 2), as Linux.
func (e *Endpoint) initCongestion() {
	mss := uint32(e.sndMSS)
	e.cwnd = min(10*mss, max(2*mss, 14600))
	e.ssthresh = ^uint32(0) // RFC 5681 3.1: arbitrarily high
	e.dupAcks = 0
	e.inRecovery = false
}

// flightSize is FlightSize of RFC 5681: data sent and not yet acknowledged.
func (e *Endpoint) flightSize() uint32 { return uint32(e.SndUna.Size(e.SndNxt)) }

// onNewAck grows cwnd for newly acknowledged bytes, or handles a partial
// or full ACK during fast recovery. It reports whether the segment at the
// new SND.UNA must be retransmitted (a NewReno partial ACK).
func (e *Endpoint) onNewAck(acked uint32) (retransmit bool) {
	mss := uint32(e.sndMSS)
	e.dupAcks = 0
	if e.inRecovery {
		if !e.SndUna.LessThan(e.recover) {
			// Full ACK (RFC 6582 3.2 step 3): deflate to ssthresh.
			e.inRecovery = false
			e.cwnd = min(e.ssthresh, max(e.flightSize(), mss)+mss)
			return false
		}
		// Partial ACK (step 4): retransmit the next hole, deflate by the
		// amount acknowledged and add back one MSS.
		if e.cwnd > acked {
			e.cwnd -= acked
		} else {
			e.cwnd = mss
		}
		e.cwnd += mss
		return true
	}
	if e.cwnd < e.ssthresh {
		// Slow start, with appropriate byte counting limited to one MSS
		// per ACK (RFC 5681 3.1, RFC 3465 L=1).
		e.cwnd += min(acked, mss)
	} else {
		// Congestion avoidance: about one MSS per RTT.
		e.cwnd += max(1, mss*mss/e.cwnd)
	}
	e.cwnd = min(e.cwnd, 1<<30)
	return false
}

// onDupAck counts a duplicate ACK (RFC 5681 2, "DUPLICATE ACKNOWLEDGMENT")
// and reports whether fast retransmit should fire now.
func (e *Endpoint) onDupAck() (fastRetransmit bool) {
	mss := uint32(e.sndMSS)
	e.dupAcks++
	if e.inRecovery {
		// RFC 5681 3.2 step 4: inflate for each further duplicate.
		e.cwnd += mss
		return false
	}
	if e.dupAcks < e.dupThresh() {
		return false
	}
	// RFC 6582 3.2 step 2: a new recovery only if the ACK covers more
	// than "recover", so one loss event is not counted twice.
	if e.recover != 0 && !e.recover.LessThan(e.SndUna) && e.SndUna != e.recover {
		return false
	}
	e.ssthresh = max(e.flightSize()/2, 2*mss)
	e.cwnd = e.ssthresh + 3*mss
	e.recover = e.SndNxt
	e.inRecovery = true
	return true
}

// limitedTransmit is how far the first two duplicate ACKs let us send new
// data beyond cwnd (RFC 3042): one segment each, so that a small window
// still yields the three duplicates fast retransmit needs.
func (e *Endpoint) limitedTransmit() uint32 {
	if e.inRecovery || e.dupAcks == 0 || e.dupAcks > 2 {
		return 0
	}
	return uint32(e.dupAcks * e.sndMSS)
}

// dupThresh is the number of duplicate ACKs that triggers fast
// retransmit: 3 (RFC 5681 3.2), or fewer with Early Retransmit (RFC 5827
// 3.1) when fewer than four segments are outstanding and no new data can
// go out to make more duplicates: then oseg-1, at least 1.
func (e *Endpoint) dupThresh() int {
	mss := uint32(e.sndMSS)
	oseg := int((e.flightSize() + mss - 1) / mss)
	if oseg >= 4 || e.SndNxt.LessThan(e.sndEnd()) {
		return 3
	}
	return max(oseg-1, 1)
}

// enterLoss is the congestion response to a retransmission timeout
// (RFC 5681 3.1, equation 4): ssthresh = max(FlightSize/2, 2*SMSS) and a
// loss window of one segment.
func (e *Endpoint) enterLoss() {
	mss := uint32(e.sndMSS)
	e.ssthresh = max(e.flightSize()/2, 2*mss)
	e.cwnd = mss
	e.dupAcks = 0
	e.inRecovery = false
	e.recover = e.SndNxt
}
