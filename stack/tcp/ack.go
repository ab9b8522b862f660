package tcp

import (
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// The sender's side of the fifth step of SEGMENT ARRIVES (RFC 9293
// 3.10.7.4, "If SND.UNA < SEG.ACK =< SND.NXT, then set SND.UNA <- SEG.ACK"):
// what an acceptable ACK acknowledges, cumulatively and by SACK (RFC 2018,
// with D-SACK, RFC 2883), the round-trip sample it gives (RFC 6298, RFC
// 7323 4), the losses it reveals (RACK, RFC 8985) and what recovery does
// about them (recovery.go).

// ackInfo is what one ACK did, gathered as it is processed.
type ackInfo struct {
	now       tcpip.MonotonicTime
	acked     uint32 // sequence space SND.UNA moved
	sacked    uint32 // bytes newly SACKed
	delivered uint32 // bytes newly delivered: acked and not SACKed before, plus newly SACKed (PRR's DeliveredData)
	// deliveredSegs counts the segments among them, and rate is the
	// delivery rate sample they give (rate.go).
	deliveredSegs uint32
	rate          rateSample
	// rackFrom is the send time of the last segment delivered that
	// RACK takes (rackDelivered), if rackSet; retxFrom that of the most
	// recently sent retransmission delivered, taken or not, if retxSet
	// (rackRTT).
	rackFrom, retxFrom tcpip.MonotonicTime
	rackSet, retxSet   bool
	// bare: neither the ACK nor the scoreboard before it holds a SACK
	// block, as without SACK or from a peer that agreed to SACK and
	// sends none (gVisor's TCP outside ESTABLISHED).
	bare bool
	dup  bool // a duplicate ACK: RFC 5681's, or one that SACKs new data (RFC 6675 2)

	dsack    bool // the ACK carried a D-SACK block (RFC 2883)
	dsackTLP bool // ... reporting the tail loss probe's segment

	// origAcked, origSacked: the ACK delivered, cumulatively or by
	// SACK, a segment never retransmitted: a timeout before it may have
	// been spurious (RFC 5682; Linux's FLAG_ORIG_SACK_ACKED).
	origAcked, origSacked bool
	// rttFrom: the transmission time of the oldest segment never
	// retransmitted that the ACK delivered, cumulatively (rttAcked) or
	// else by SACK: a round-trip sample by Karn's rule.
	rttFrom  tcpip.MonotonicTime
	rttAcked bool
	rttSACK  bool
	// newestFrom: the transmission time of the newest segment never
	// retransmitted that the ACK delivered, cumulatively or by SACK
	// (newestOK): the congestion control's sample, Linux's ca_rtt_us
	// (AckObserver).
	newestFrom tcpip.MonotonicTime
	newestOK   bool
	// The newest TSval among retransmitted segments the ACK covers
	// cumulatively: an ACK whose TSecr is older echoes an earlier
	// transmission, not the one that caused it (Eifel, RFC 3522).
	retransTS     uint32
	retransAcked  bool
	rttSample     time.Duration // the ACK's round-trip sample, 0 if none
	lost          int           // segments newly deemed lost
	lostBytes     uint32        // ... and their bytes
	roundStart    bool          // the first ACK of a new round trip
	endedRecovery bool          // the ACK ended fast recovery
	reorderedSeen bool          // a segment was delivered after one sent later (RFC 8985 6.2 step 3)
	// The lowest start of a segment never retransmitted that the ACK
	// delivered below the highest delivered sequence number,
	// cumulatively (reordAck) or by SACK (reordSACK): how far the
	// network reordered (rackReorderingDegree).
	reordAckLow, reordSACKLow seqnum.Value
	reordAck, reordSACK       bool
}

// processAck is the fifth step's processing for ESTABLISHED and the
// states that include it: SND.UNA, the send buffer, SACK, the RTT
// estimate, loss detection and recovery, the congestion window and the
// send window.
func (e *Endpoint) processAck(seg *segment) {
	a := ackInfo{now: e.now()}
	oldUna := e.sndUna
	rc := e.rateController()
	var priorInFlight uint32
	if rc != nil {
		priorInFlight = e.inflight()
	}
	// A duplicate ACK as RFC 5681 2 defines it.
	classicDup := seg.Ack == e.sndUna && seg.Payload.Size() == 0 && !seg.has(header.TCPFlagFin) &&
		e.sndUna != e.sndNxt && uint32(seg.Window)<<e.sndWndShift == e.sndWnd
	if classicDup || seg.nsack > 0 {
		// Duplicates and SACK blocks speak of segments: merged
		// bursts are split into theirs first (rtxqueue.go).
		e.splitRecords()
	}
	e.persistProbes = 0 // the peer answers (RFC 1122 4.2.2.17)
	a.bare = seg.nsack == 0 && e.rtxq.sacked == 0

	if e.sndUna.LessThan(seg.Ack) {
		e.ackCumulative(seg.Ack, &a)
		if e.mtup != nil {
			e.mtuProbeOnAck() // path MTU probing (plpmtud.go)
		}
	}
	if e.sackOK && seg.nsack > 0 {
		e.ackSACK(seg, &a)
		if e.rtxq.sacked > 0 {
			e.renoSacked = 0 // the scoreboard counts what left the network now
		}
	}
	e.rackRTT(&a)
	if a.reordAck {
		e.rackReorderingDegree(a.reordAckLow)
	}
	if a.reordSACK {
		e.rackReorderingDegree(a.reordSACKLow)
	}
	a.dup = a.acked == 0 && (classicDup && (!e.sackOK || seg.nsack == 0) || a.sacked > 0)
	if a.dup {
		e.dupAcks++
		if seg.nsack == 0 {
			e.plainDupAcks++
		}
		if (!e.sackOK || a.bare) && int(e.renoSacked+1)*e.sndMSS < int(e.flightSize()) {
			// Without SACK a duplicate ACK stands for a segment
			// that left the network (RFC 5681 3.2, Linux's
			// tcp_add_reno_sack), for PRR and pipe. So does one
			// without SACK blocks from a peer that agreed to SACK
			// but sends none (gVisor's TCP outside ESTABLISHED),
			// while no SACK block says more: without it pipe stays
			// full, the first two duplicates let nothing new out
			// (RFC 3042's Limited Transmit), and a window of a few
			// segments rarely brings the third that fast
			// retransmit waits for (recoverOnAck). Linux counts
			// them only without SACK, and waits for its RTO there.
			e.renoSacked++
			a.delivered += uint32(e.sndMSS)
			a.deliveredSegs++
		}
	} else if a.acked > 0 {
		e.dupAcks, e.plainDupAcks = 0, 0
	}
	e.ackRTT(seg, &a)
	e.rateGen(&a) // rate.go: after the RTT sample, which may lower the minimum
	if rc == nil {
		e.observeAck(&a) // an AckObserver sees it before loss detection and growth (congestion.go)
	}

	// Update the send window if the segment is newer than the one that
	// last set it: SND.WL1 < SEG.SEQ, or SND.WL1 = SEG.SEQ and
	// SND.WL2 =< SEG.ACK (RFC 9293 3.10.7.4); or, as Linux does
	// (tcp_may_update_window), if it moved SND.UNA. The window is an
	// offset from SND.UNA, so an ACK that moved SND.UNA without updating
	// the window slid its right edge past anything the peer offered.
	// That happens when the peer's text arrives out of order: a later
	// segment sets SND.WL1 above the hole, and the retransmission that
	// fills the hole, whose SEG.SEQ is lower, carries the peer's latest
	// ACK and window (FuzzConnection found it;
	// TestWindowFollowsAckOfOldSegment).
	//
	// But never from an old ACK, SEG.ACK < SND.UNA: the RFC updates the
	// window only if SND.UNA =< SEG.ACK =< SND.NXT, and Linux's tcp_ack
	// takes such an ACK to old_ack, past tcp_ack_update_window. Its window
	// was offered from SEG.ACK; counted from the later SND.UNA it puts the
	// right edge beyond anything the peer offered. A delayed segment of
	// the peer's, sent before the ACK that moved SND.UNA, has a higher
	// SEG.SEQ than the retransmission that carried that ACK, so SND.WL1
	// alone would take it (TestWindowIgnoresOldAck).
	if !seg.Ack.LessThan(oldUna) && (a.acked > 0 || e.sndWL1.LessThan(seg.Seq) || (e.sndWL1 == seg.Seq && e.sndWL2.LessThanEq(seg.Ack))) {
		old := e.sndWnd
		e.setSndWnd(uint32(seg.Window)<<e.sndWndShift, seg)
		if old == 0 && e.sndWnd > 0 {
			e.stopTimer(timerPersist)
			e.rto = e.computeRTOOrInitial()
			e.persistBackoff = 0
		}
	}

	e.recoverOnAck(seg, &a)
	if rc != nil {
		e.rateControl(rc, &a, priorInFlight) // BBR sets the window and the pacing rate (cc.go)
	} else {
		e.growWindow(&a)
	}

	// RFC 6298 5.2 and 5.3: stop the timer when everything is
	// acknowledged, restart it when new data is. In fast recovery that
	// is every partial ACK, and the retransmission of the first
	// segment it sends restarts it again (retransmitSeg): NewReno's
	// "Slow-but-Steady" variant, as Linux re-arms the timer on every
	// ACK that acknowledges data (tcp_rearm_rto, from
	// tcp_set_xmit_timer), not the letter of RFC 6582 3.2 step 3,
	// which resets it for the first partial ACK only (the "Impatient"
	// variant), so that a window with many losses, one repaired per
	// round trip without SACK, ends in a timeout and slow start rather
	// than in as many round trips (TestPartialAckRestartsRTO).
	if a.acked > 0 {
		if e.rtxq.empty() {
			e.stopTimer(timerRetransmit)
			e.stopTimer(timerReorder)
		} else {
			e.setTimer(timerRetransmit, e.rtoFromNow())
		}
	}
	if a.acked > 0 || a.sacked > 0 || !e.timerArmed(timerProbe) {
		// Linux rearms the probe only on an ACK that delivered data
		// (tcp_set_xmit_timer after FLAG_DATA_ACKED or a SACK): a
		// duplicate that says nothing new leaves the probe where it is.
		e.schedulePTO()
	}
	if e.proto.opts.Observer != nil {
		e.emitAck(seg, oldUna, &a)
	}
}

// ackCumulative moves SND.UNA to ack: the acknowledged bytes leave the
// send buffer and their records the retransmission queue.
func (e *Endpoint) ackCumulative(ack seqnum.Value, a *ackInfo) {
	a.acked = uint32(e.sndUna.Size(ack))
	if e.chrono.kind == chronoSndbufLimited {
		e.expandSendBuffer(e.flightSize())
	}
	// Free acknowledged bytes; the FIN's sequence number is not in the
	// buffer.
	if dataAcked := min(int64(a.acked), int64(e.sndBufSeq.Size(ack)), e.sndBuf.Size()); dataAcked > 0 {
		e.sndBuf.TrimFront(dataAcked, &e.proto.chunks)
		e.sndBufSeq = e.sndBufSeq.Add(seqnum.Size(dataAcked))
		e.bytesAcked += uint64(dataAcked)
	}
	q := &e.rtxq
	for !q.empty() {
		s := q.at(q.head)
		if ack.LessThan(s.end) {
			if s.start.LessThan(ack) {
				if !s.has(segSacked) {
					a.delivered += uint32(s.start.Size(ack))
					if s.segs() > 1 {
						// The first segments of a merged burst: delivered
						// as they would be with records of their own.
						p := *s
						p.end = ack
						e.delivered(&p, a, true)
					}
				}
				q.trimFront(ack)
			}
			break
		}
		if !s.has(segSacked) {
			a.delivered += s.len()
			e.delivered(s, a, true)
		}
		q.popFront()
	}
	if e.renoSacked > 0 {
		// The ACK covers the hole and segments the duplicates
		// stood for: all but one of those it acknowledges were
		// counted already (Linux tcp_remove_reno_sacks), as
		// delivered when each duplicate came, so this ACK delivers
		// only what they did not stand for, at least the hole's
		// segment (RFC 6937 3: without SACK, DeliveredData nets out
		// the duplicate ACKs; Linux's tcp_count_delivered of
		// max(acked - sacked_out, 1)). Slow start grows by that.
		mss := uint32(e.sndMSS)
		counted := min(uint32(e.renoSacked)*mss, a.delivered)
		a.delivered = max(a.delivered-counted, min(mss, a.delivered))
		segs := (int(a.acked) + e.sndMSS - 1) / e.sndMSS
		e.renoSacked = max(e.renoSacked-int32(segs-1), 0)
	}
	e.sndUna = ack
	if e.rack.fack.LessThan(e.sndUna) {
		e.rack.fack = e.sndUna
	}
	if e.roundEnd.LessThan(ack) {
		// The ACK covers what was sent when the round began: a new
		// round trip begins (HyStart++, RFC 9406 4.2).
		a.roundStart = true
		e.roundEnd = e.sndNxt
	}
	e.retries, e.rtoReverts = 0, 0
	e.softErr = nil // "Something worked...": as Linux's tcp_ack clears sk_err_soft, an ICMP error heard before no longer explains a timeout
	e.progressAt = a.now
	e.chronoStop(chronoSndbufLimited) // room in the send buffer; idle if all is acknowledged
	e.sendSpaceOpened()
}

// sendSpaceOpened wakes a writer waiting for room in the send buffer,
// and Changed's waiters, once the buffer's free space is at least half
// of what it holds (at most two thirds full), as Linux's
// sk_stream_write_space wakes a socket's writer (sk_stream_min_wspace),
// and its poll reports it writable, by the same rule. Woken at every
// ACK, a writer held back by the path copied what one ACK freed, a
// segment or two: over a lossy path to gVisor's TCP, 16 MiB were copied
// in some 2,300 pieces, all but a few shorter than a 64 KiB chunk, so
// that each needed a new chunk (chunkreuse.go) and a segment spanned
// several views; now in some 300, most of them whole chunks.
func (e *Endpoint) sendSpaceOpened() {
	queued := int(e.sndBuf.Size())
	if e.sndBufLimit-queued < queued/2 {
		return
	}
	e.notify()
}

// delivered accounts for a segment an ACK delivered for the first time,
// cumulatively (byAck) or by SACK: the round-trip sample it may give,
// whether it shows reordering, and RACK.
func (e *Endpoint) delivered(s *txSeg, a *ackInfo, byAck bool) {
	if s.has(segEverRetrans) {
		if byAck && (!a.retransAcked || tsBefore(a.retransTS, s.tsval)) {
			a.retransTS = s.tsval
		}
		a.retransAcked = a.retransAcked || byAck
	} else {
		if byAck {
			a.origAcked = true
		} else if !e.recover.LessThan(s.end) {
			// Only data sent before the timeout says something about
			// the flight it judged (RFC 5682 3.1); new data sent at
			// step 2.b lies above it, as Linux counts only below
			// high_seq (FLAG_ORIG_SACK_ACKED).
			a.origSacked = true
		}
		if !a.rttAcked && (byAck || !a.rttSACK || s.xmit.Before(a.rttFrom)) {
			a.rttFrom = s.xmit
			a.rttAcked, a.rttSACK = byAck, !byAck
		}
		if !a.newestOK || a.newestFrom.Before(s.xmit) {
			a.newestFrom, a.newestOK = s.xmit, true
		}
		// Delivered below a segment delivered before it and never
		// retransmitted: the network reordered it (RFC 8985 6.2 step
		// 3, Linux tcp_check_sack_reordering).
		if s.end.LessThan(e.rack.fack) {
			a.reorderedSeen = true
			if byAck && (!a.reordAck || s.start.LessThan(a.reordAckLow)) {
				a.reordAckLow, a.reordAck = s.start, true
			} else if !byAck && (!a.reordSACK || s.start.LessThan(a.reordSACKLow)) {
				a.reordSACKLow, a.reordSACK = s.start, true
			}
		}
	}
	e.rackDelivered(s, a)
	e.rateDelivered(s, a)
}

// ackSACK takes the SACK blocks of an acceptable ACK (RFC 2018 3). A
// block counts only within [SND.UNA, SND.NXT] with Start < End: a block
// for data never sent is a lie or a mistake. A first block below SND.UNA,
// or inside the second, is a D-SACK (RFC 2883 4): data received twice.
func (e *Endpoint) ackSACK(seg *segment, a *ackInfo) {
	blocks := seg.sack[:seg.nsack]
	for k, blk := range blocks {
		if !blk.Start.LessThan(blk.End) {
			continue
		}
		if k == 0 && (blk.End.LessThanEq(e.sndUna) || len(blocks) > 1 &&
			blocks[1].Start.LessThanEq(blk.Start) && blk.End.LessThanEq(blocks[1].End)) {
			e.takeDSACK(blk, a)
			continue
		}
		if blk.Start.LessThan(e.sndUna) || e.sndNxt.LessThan(blk.End) {
			continue
		}
		fack := e.rack.fack
		e.rtxq.sack(blk.Start, blk.End, func(_ uint64, s *txSeg) {
			a.sacked += s.len()
			a.delivered += s.len()
			e.delivered(s, a, false)
		})
		if fack.LessThan(blk.End) && e.rack.fack.LessThan(blk.End) {
			e.rack.fack = blk.End
		}
	}
}

// takeDSACK is a D-SACK block: the peer received [Start, End) twice. If
// that was our retransmission, it was not needed: one fewer
// retransmission of the recovery episode stands unexplained (Linux's
// undo_retrans), and the reordering window grows (RFC 8985 6.2 step 4).
func (e *Endpoint) takeDSACK(blk header.SACKBlock, a *ackInfo) {
	a.dsack = true
	e.proto.stats.DSACKsReceived.Add(1)
	if e.rack.tlpOut && e.rack.tlpRetrans && blk.Start.LessThan(e.rack.tlpEnd) && e.rack.tlpEnd.LessThanEq(blk.End.Add(1)) {
		a.dsackTLP = true
	}
	if e.undo.active && !blk.Start.LessThan(e.undo.marker) && e.undo.retrans > 0 {
		e.undo.retrans -= min(e.dsackRetransmissions(blk), e.undo.retrans)
	}
	e.rackOnDSACK()
}

// dsackRetransmissions is how many of our retransmissions a D-SACK block
// shows were not needed (RFC 3708 2: a D-SACK for a retransmitted
// segment). Within the retransmission queue, the records it covers that
// were sent more than once, as Linux's tcp_sacktag_one counts undo_retrans
// down only for TCPCB_RETRANS segments: a copy the network made of a
// segment sent once proves nothing of the retransmissions, and counting it
// undid the response to a real loss. The walk stops at the first record
// sent once, so it costs at most the retransmissions it counts. Below
// SND.UNA the records are gone: the segments the block spans, as Linux's
// "dumb counting" of D-SACKs for forgotten data (tcp_check_dsack), unless
// they outnumber the retransmissions still unexplained: then the block
// reports copies of segments sent once as well (or lies), and Linux skips
// a D-SACK that reports more copies than it retransmitted (tcp_dsack_seen).
func (e *Endpoint) dsackRetransmissions(blk header.SACKBlock) int {
	mss := uint32(max(e.sndMSS, 1))
	if blk.End.LessThanEq(e.sndUna) {
		if n := int((uint32(blk.Start.Size(blk.End)) + mss - 1) / mss); n <= e.undo.retrans {
			return n
		}
		return 0
	}
	q := &e.rtxq
	i, ok := q.find(blk.Start)
	if !ok || blk.Start.LessThan(e.sndUna) {
		return 0 // beyond SND.NXT, or across SND.UNA: not a copy of anything we hold
	}
	n := 0
	for ; i < q.tail() && n < e.undo.retrans; i++ {
		s := q.at(i)
		if !s.start.LessThan(blk.End) || !s.has(segEverRetrans) {
			break
		}
		n++
	}
	return n
}

// ackRTT takes the round-trip sample the ACK gives, if any. From the
// transmission time of the oldest segment it delivered that was never
// retransmitted (Karn's rule, RFC 6298 3; Linux prefers it to TSecr,
// which middleboxes may mangle); else, with timestamps, from TSecr (RFC
// 7323 4.1), but not when the ACK covers a retransmission and echoes a
// TSval older than the latest one: then it echoes an earlier transmission
// (the receiver keeps TS.Recent for a duplicate, RFC 7323 4.3) and
// now-TSecr would include the whole wait for the retransmission timer
// (Eifel, RFC 3522), which inflated the estimate into a feedback loop.
// The latest, not the first: when a fast retransmission's ACK is lost,
// the RTO sends SND.UNA's segment once more and the ACK it causes echoes
// the fast retransmission's TSval, older than the timeout's; Linux takes
// that sample (tcp_ack_update_rtt), and at 20% loss such samples grew
// SRTT from 0.5 ms to 180 ms on a sub-millisecond path.
func (e *Endpoint) ackRTT(seg *segment, a *ackInfo) {
	var rtt time.Duration
	if a.retransAcked {
		// Karn, as Linux applies it (tcp_clean_rtx_queue): an ACK
		// that covers a retransmission gives no sample from the
		// segments it covers, even those sent once. Those were
		// delivered out of order long before and waited for the
		// retransmission to fill the hole; their age is the loss
		// recovery, not the path. Nor from the segments it newly
		// SACKs: the retransmission's arrival caused this ACK, and
		// their SACK comes late because the ACKs that would have
		// carried it were lost. Here we part from Linux, which times
		// them (sack_rtt_us); at 20% loss that took SRTT from under
		// a millisecond to 180 ms. TSecr, below, still times the
		// retransmission itself.
		a.rttAcked, a.rttSACK = false, false
	}
	switch {
	case a.rttAcked || a.rttSACK:
		rtt = max(a.now.Sub(a.rttFrom), time.Microsecond)
	case a.acked > 0 && e.tsOK && seg.TS && seg.TSEcr != 0 && !(a.retransAcked && tsBefore(seg.TSEcr, a.retransTS)):
		d := int32(e.tsNow() - seg.TSEcr)
		if d < 0 {
			return
		}
		rtt = max(time.Duration(d)*time.Millisecond, time.Millisecond)
	default:
		// No sample: the RTO keeps its backoff, even on an ACK of new
		// data. Karn's algorithm (RFC 6298 5.5 and the note after 5.7,
		// RFC 1122 4.2.3.1) keeps the backed-off RTO until a valid
		// measurement; an ACK that covers only retransmitted segments
		// gives none, and the path that made them time out may still
		// be as slow. Linux resets icsk_backoff only in
		// tcp_ack_update_rtt, on a sample.
		return
	}
	if a.rttSACK && !a.rttAcked {
		// A SACK sample feeds RACK and the minimum, as in Linux,
		// and the estimator only when SND.UNA moved too.
		e.rack.minRTT.update(a.now, rtt)
		if a.acked == 0 {
			a.rttSample = rtt
			return
		}
	}
	a.rttSample = rtt
	e.sampleRTT(rtt)
}

// emitAck reports what an inbound acknowledgment did.
func (e *Endpoint) emitAck(seg *segment, oldUna seqnum.Value, a *ackInfo) {
	if a.acked == 0 && a.sacked == 0 && !a.dup && !a.dsack && seg.Payload.Size() > 0 {
		return // a data segment that acknowledged nothing new: its text is the news
	}
	ev := event.Event{Kind: event.KindAck, Conn: e.connID(), Segment: seg.info(), Key: seg.wire, Cwnd: e.cwnd, Ssthresh: e.ssthresh,
		Acked: a.acked, Sacked: a.sacked, SRTT: e.srtt, RTTVar: e.rttvar, RTO: e.rto, InFlight: e.inflight()}
	if a.dup {
		ev.DupAck = int(e.dupAcks)
	}
	switch {
	case a.dsack:
		ev.Note = "D-SACK: a segment arrived twice"
	case a.lost > 0:
		ev.Note = plural(a.lost, "segment") + " deemed lost"
	}
	e.emit(ev)
}
