package tcp

import "gvisor.dev/gvisor/pkg/tcpip/seqnum"

// Congestion control: slow start and congestion avoidance (RFC 5681 3.1),
// Limited Transmit (RFC 3042) and Early Retransmit (RFC 5827). Loss
// recovery is RFC 6675's, driven by the peer's SACK blocks, when SACK is
// in force, and otherwise fast retransmit and fast recovery (RFC 5681
// 3.2) with NewReno's partial-ACK handling (RFC 6582 3.2). Windows are in
// bytes.

// initCongestion sets the initial window when the connection is
// established: IW = min(10*MSS, max(2*MSS, 14600)) (RFC 6928 2), as Linux.
func (e *Endpoint) initCongestion() {
	mss := uint32(e.sndMSS)
	e.cwnd = min(10*mss, max(2*mss, 14600))
	e.ssthresh = ^uint32(0) // RFC 5681 3.1: arbitrarily high
	e.dupAcks = 0
	e.inRecovery = false
	e.scoreboard.clear()
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
	// RFC 6675 5.1 lets the scoreboard survive a timeout, but a timeout
	// may mean the receiver reneged (RFC 2018 8): like Linux when it
	// cannot trust the SACK information (tcp_enter_loss), we forget it
	// and let go-back-N resend everything not SACKed again from here on.
	e.scoreboard.clear()
	e.highRxt = e.SndUna
}

// sackAck is the congestion side of an acceptable ACK when SACK is in
// force (RFC 6675 5), after SND.UNA moved by acked bytes (maybe 0) and
// takeSACK recorded its blocks; newSACK says some block SACKed new data,
// classicDup that the ACK is a duplicate as RFC 5681 defines it.
func (e *Endpoint) sackAck(acked uint32, newSACK, classicDup bool, nsack int) {
	mss := uint32(e.sndMSS)
	if acked > 0 {
		// "If the incoming ACK is a cumulative acknowledgment, the TCP
		// MUST reset DupAcks to zero."
		e.dupAcks = 0
		if e.inRecovery {
			if !e.SndUna.LessThan(e.recover) {
				// (A): the cumulative ACK covers RecoveryPoint: recovery
				// ends, with cwnd = ssthresh as set on entry. The
				// scoreboard above SND.UNA is kept.
				e.inRecovery = false
				e.cwnd = e.ssthresh
			} else if e.scoreboard.n == 0 && !e.SndUna.LessThan(e.highRxt) {
				// A partial ACK with no SACK information at all: the
				// peer holds nothing above SND.UNA, so nothing can show
				// the next hole lost. Retransmit it as NewReno would
				// (RFC 6582 3.2 step 4) rather than wait for the RTO.
				if n := min(int(e.SndUna.Size(e.sndEnd())), e.sndMSS); n > 0 && e.SndUna.LessThan(e.SndNxt) {
					e.retransmitHole(e.SndUna, n)
				}
			}
			// Otherwise (B): cwnd stays; output runs step (C).
			return
		}
		e.onNewAck(acked)
	}
	// A duplicate ACK is one that SACKs new data (RFC 6675 2), whether or
	// not it also moves SND.UNA; a peer that sends no blocks still has
	// its plain duplicates counted as RFC 5681 does.
	if e.inRecovery || !(newSACK || (classicDup && nsack == 0)) {
		return
	}
	e.dupAcks++
	// (1) DupThresh duplicates, or (2) IsLost(HighACK+1): enough is
	// SACKed above SND.UNA to call it lost.
	if e.dupAcks < e.dupThresh() && !e.isLost(e.SndUna) {
		return // (3) Limited Transmit: output sends new data
	}
	// RFC 6675 5: a new recovery only if the cumulative ACK is beyond the
	// last RecoveryPoint, so one loss event is not counted twice.
	if e.recover != 0 && e.SndUna.LessThan(e.recover) {
		return
	}
	// (4.1) RecoveryPoint = HighData; (4.2) ssthresh = cwnd =
	// max(FlightSize/2, 2*SMSS), with no inflation (RFC 6675 counts
	// what is in the network with pipe instead).
	e.recover = e.SndNxt
	e.ssthresh = max(e.flightSize()/2, 2*mss)
	e.cwnd = e.ssthresh
	e.inRecovery = true
	e.highRxt = e.SndUna
	// (4.3) Retransmit the first segment presumed lost, at HighACK+1,
	// whatever pipe says; (4.4) and (4.5): output then runs SetPipe and
	// step (C).
	if seq, n, _, ok := e.nextHole(); ok && seq == e.SndUna {
		e.retransmitHole(seq, n)
	} else {
		e.fastRetransmit()
		if end := e.SndUna.Add(seqnum.Size(e.sndMSS)); e.highRxt.LessThan(end) {
			e.highRxt = end
		}
	}
}
