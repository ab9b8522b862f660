package tcp

import (
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// RACK-TLP (RFC 8985), on by default as in Linux, when SACK is in force.
//
// RACK (Recent ACKnowledgment) detects losses by time rather than by
// counting duplicate ACKs: once a segment sent later than another has
// been delivered, the earlier one is lost if it has not been delivered
// within an RTT plus a reordering window. That detects lost
// retransmissions too, and needs no three duplicates, so the last
// segments of a flight are not left to the RTO.
//
// TLP (Tail Loss Probe) covers what RACK cannot see, a tail with no
// delivered segment after it: about two round trips after the last
// transmission, one segment is sent (new data, or the last segment again)
// so that the ACK it draws triggers RACK, or recovery, instead of an RTO.

// rack is RACK's state (RFC 8985 6.1).
type rack struct {
	xmit   tcpip.MonotonicTime // RACK.xmit_ts: the latest transmission delivered
	valid  bool                // a segment was delivered: xmit, endSeq and rtt are set
	endSeq seqnum.Value        // RACK.end_seq of that segment
	rtt    time.Duration       // RACK.rtt: its round trip
	fack   seqnum.Value        // the highest sequence number delivered (SACKed or ACKed)

	minRTT     minRTT
	reordering bool // RACK.reordering_seen
	// degree is how far, in segments, the network has been seen to
	// reorder, and reordSeen how many ACKs showed reordering: Linux's
	// tp->reordering (from tcp_reordering, 3) and tp->reord_seen,
	// reported as TCP_INFO's tcpi_reordering and tcpi_reord_seen. 0
	// stands for the initial 3.
	degree         uint32
	reordSeen      uint32
	reoWndMult     int // RACK.reo_wnd_mult
	reoWndPersist  int // RACK.reo_wnd_persist
	dsackRound     seqnum.Value
	dsackRoundOpen bool

	// TLP (RFC 8985 7): the end of the probe's episode (TLP.end_seq),
	// whether a probe of it was a retransmission, whether the last one
	// was (probeTimeout alternates), and whether one is out.
	tlpEnd      seqnum.Value
	tlpRetrans  bool
	tlpLastCopy bool
	tlpOut      bool
	// tlpSent counts the probes sent into the current silence, the
	// time since the episode's first probe with no ACK at all; any ACK
	// ends the silence and sets it to 0 (probeAgain).
	tlpSent int
}

// minRTTWindow is how long a minimum RTT sample is trusted: Linux's
// tcp_min_rtt_wlen, 300 s.
const minRTTWindow = 300 * time.Second

// minRTT is a windowed minimum of RTT samples: the smallest seen within
// the window, replaced by a newer sample once it is older than that.
type minRTT struct {
	v  time.Duration
	at tcpip.MonotonicTime
}

func (m *minRTT) update(now tcpip.MonotonicTime, rtt time.Duration) {
	if m.v == 0 || rtt <= m.v || now.Sub(m.at) > minRTTWindow {
		m.v, m.at = rtt, now
	}
}

// rackDelivered is RACK_update (RFC 8985 6.2 step 2) for a segment the
// ACK delivered, cumulatively or by SACK. RACK.rtt is the last such
// segment's round trip, in sequence order as Linux takes them (the RFC
// takes them in the order they were sent); the ACK keeps its send time
// (a.rackFrom) and rackRTT takes the difference once all are counted, as
// a MonotonicTime's Sub costs two time.Unix conversions: one per segment
// delivered was 2-3% of a bulk transfer's CPU in memory.
func (e *Endpoint) rackDelivered(s *txSeg, a *ackInfo) {
	if s.has(segEverRetrans) {
		if !a.retxSet || !s.xmit.Before(a.retxFrom) {
			a.retxFrom, a.retxSet = s.xmit, true
		}
		if a.now.Sub(s.xmit) < e.rack.minRTT.v {
			// Too fast to be the retransmission's ACK: it is the
			// original's, which tells nothing of when the last
			// transmission was delivered (6.2 step 2).
			return
		}
	}
	a.rackFrom, a.rackSet = s.xmit, true
	if !e.rack.valid || s.sentAfter(e.rack.xmit, e.rack.endSeq) {
		e.rack.xmit, e.rack.endSeq, e.rack.valid = s.xmit, s.end, true
	}
}

// rackRTT sets RACK.rtt from the last segment the ACK delivered
// (rackDelivered), once the ACK's deliveries are all counted.
//
// Except where no SACK block informs: then an ACK that covers a
// retransmission is a hole filled, and what it covers above the hole may
// have arrived long before and waited; nothing says when. Their age is
// the repair, not the path (Karn's reasoning, as ackRTT applies it), so
// the ACK times only the most recently sent retransmission it covers, and
// nothing if that one came back sooner than the minimum RTT (it may be
// the original's ACK). Timing the rest, an RTT of 0.1 ms read as 200 ms,
// from a segment retransmitted early in a recovery that waited 200 ms for
// a lost retransmission below it; for as long as the next ACK took to set
// it right, RACK deemed nothing sent since lost, and each RTO only the
// segment at SND.UNA, the others "sent too recently" (enterLoss): eleven
// RTOs in a row, at 20% loss to a gVisor that sent no SACK blocks. With
// SACK, what arrives above a hole is SACKed as it comes, so a segment
// first delivered by the ACK that fills the hole came late itself, and
// its age is a round trip (packetdrill's prr-ss-ack-below-snd_una-cubic
// counts on it).
func (e *Endpoint) rackRTT(a *ackInfo) {
	switch {
	case a.bare && a.retransAcked:
		if a.now.Sub(a.retxFrom) >= e.rack.minRTT.v {
			e.rack.rtt = a.now.Sub(a.retxFrom)
		}
	case a.rackSet:
		e.rack.rtt = a.now.Sub(a.rackFrom)
	}
}

// rackReorderWindow is RACK_update_reo_wnd (RFC 8985 6.2 step 4): none at
// all before any reordering was seen, while in recovery, or once DupThresh
// segments are SACKed (so RACK is at least as quick as the three
// duplicate ACKs rule); otherwise a quarter of the minimum RTT, times the
// multiplier D-SACKs raise, at most SRTT.
func (e *Endpoint) rackReorderWindow() time.Duration {
	if !e.rack.reordering {
		if e.caState >= caRecovery { // CWR is no recovery (Linux's tcp_rack_reo_wnd)
			return 0
		}
		if e.rtxq.sacked >= 3*uint32(e.sndMSS) {
			return 0
		}
	}
	return min(time.Duration(e.rack.reoWndMult)*e.rack.minRTT.v/4, e.srtt)
}

// maxReorderingDegree bounds the reordering degree: Linux's
// tcp_max_reordering, 300 segments.
const maxReorderingDegree = 300

// rackReorderingDegree counts an ACK that delivered, cumulatively or by
// SACK, a segment never retransmitted that starts at low, below the
// highest sequence number delivered before it: the network reordered it,
// by as many segments as lie between low and the highest delivered now
// (Linux's tcp_check_sack_reordering; RFC 8985 keeps only whether any
// reordering was seen, RACK.reordering_seen, which recoverOnAck sets).
// The degree only informs: Info reports it as Linux's tcpi_reordering,
// and with RACK no loss rule reads it.
func (e *Endpoint) rackReorderingDegree(low seqnum.Value) {
	fack := e.rack.fack
	if fack.LessThan(e.sndUna) {
		fack = e.sndUna
	}
	if !low.LessThan(fack) {
		return
	}
	e.rack.reordSeen++
	mss := uint32(max(e.sndMSS, 1))
	metric := uint32(low.Size(fack))
	if metric > e.reorderingDegree()*mss {
		e.rack.degree = min((metric+mss-1)/mss, maxReorderingDegree)
	}
}

// reorderingDegree is the reordering degree in segments: 3, Linux's
// tcp_reordering default and RFC 5681's DupThresh, until reordering
// beyond it is seen.
func (e *Endpoint) reorderingDegree() uint32 {
	return max(e.rack.degree, 3)
}

// rackOnDSACK is the D-SACK half of RACK_update_reo_wnd: a D-SACK means
// a retransmission was spurious, so the window grows by a step, at most
// once per round trip, and stays grown for 16 recoveries.
func (e *Endpoint) rackOnDSACK() {
	if e.rack.dsackRoundOpen && !e.sndUna.LessThan(e.rack.dsackRound) {
		e.rack.dsackRoundOpen = false
	}
	if !e.rack.dsackRoundOpen {
		e.rack.dsackRound, e.rack.dsackRoundOpen = e.sndNxt, true
		e.rack.reoWndMult++
		e.rack.reoWndPersist = 16
	}
}

// rackOnRecoveryEnd decays the D-SACK steps of the reordering window.
func (e *Endpoint) rackOnRecoveryEnd() {
	if e.rack.reoWndPersist--; e.rack.reoWndPersist <= 0 {
		e.rack.reoWndMult = 1
	}
}

// rackDetectLoss is RACK_detect_loss (RFC 8985 6.2 step 5): every
// segment in flight that was sent before the latest delivered one and has
// not been delivered within RACK.rtt + reo_wnd is lost. Segments are
// visited in transmission order, and the walk stops at the first that is
// not overdue yet: those after it were sent later still. If one is
// waiting, the reordering timer is armed for it. It returns how many
// segments it marked lost.
func (e *Endpoint) rackDetectLoss(now tcpip.MonotonicTime) int {
	if !e.rack.valid {
		return 0
	}
	reo := e.rackReorderWindow()
	q := &e.rtxq
	lost := 0
	for range maxInFlightSegments {
		h := q.tHead
		if h == 0 {
			break
		}
		s := q.at(h - 1)
		if s.sentAfter(e.rack.xmit, e.rack.endSeq) || s.xmit == e.rack.xmit && s.end == e.rack.endSeq {
			break
		}
		if remaining := s.xmit.Add(e.rack.rtt + reo).Sub(now); remaining > 0 {
			e.setTimer(timerReorder, remaining)
			return lost
		}
		if s.segs() > 1 {
			// A guard: merged records live only while ACKs come in
			// order, which deliver nothing sent after them, and
			// every ACK or timer that could has split them already.
			// Should one still come here, it is lost segment by
			// segment, not whole.
			e.splitRecords()
			continue
		}
		q.markLost(h - 1)
		lost++
	}
	e.stopTimer(timerReorder)
	return lost
}

// reorderTimeout is RACK's reordering timer (RFC 8985 6.2 step 6): the
// segments it waited for are overdue now.
func (e *Endpoint) reorderTimeout() {
	if !e.state.Synchronized() || e.rtxq.empty() {
		return
	}
	now := e.now()
	if n := e.rackDetectLoss(now); n > 0 {
		e.lossDetected(n, "RACK reordering timer")
		e.output()
	}
}

// Tail loss probes (RFC 8985 7).

// schedulePTO arms the probe timer after a transmission or an ACK, if a
// probe could help (7.2): SACK is in force, data is in flight, no loss
// recovery is under way and no probe is out. PTO = 2*SRTT, plus time for
// a delayed ACK when a single segment is in flight outside fast recovery
// (Linux adds TCP_RTO_MIN, 200 ms; RFC 8985 says WCDelAckT, 200 ms);
// never later than the RTO would fire. A probe after a probe that drew
// nothing (probeAgain) waits twice that, RFC 9002 6.2.1's backoff, and
// only if it would go before the RTO.
//
// With more than one segment in flight the PTO is RFC 8985's 2*SRTT and
// no more. Linux adds TCP_TIMEOUT_MIN, two jiffies (2 ms at HZ=1000, 8 ms
// at 250), because its timers count ticks and one of a single tick can
// fire at once; ours count nanoseconds and fire late, never early. Over a
// TAP, whose SRTT is some 300 µs, those 2 ms made every probe wait 2.6 ms,
// four times its 2*SRTT, and a sender whose window a lossy path keeps at
// a few segments waits for a probe whenever the one ACK of its flight is
// lost: sending to the kernel at 5% loss both ways, 77% of the transfer
// went in such waits (TestProbeTimeoutIsTwiceSRTT; the note in
// probeTimeout has the figures).
func (e *Endpoint) schedulePTO() {
	if !e.probeAllowed() {
		e.stopTimer(timerProbe)
		return
	}
	pto := time.Second // no RTT sample yet (7.2)
	if e.rttValid {
		pto = 2 * e.srtt
		// A lone segment waits WCDelAckT more, except in fast
		// recovery: there it is what PRR let out after the ACK that
		// marked it lost (RFC 9937), and the receiver has just seen a
		// hole: it acknowledges at once (RFC 5681 4.2; tapstack's
		// receiver does, and so did Linux's in our measurements).
		// Waiting WCDelAckT for it would make the probe as late as
		// the RTO: at 10% data loss in memory, three such waits were
		// 0.6 s of a 1.06 s transfer. A receiver that delays after
		// all gets one spurious probe, which it answers at once.
		if e.rtxq.segs == 1 && e.caState != caRecovery {
			pto += 200 * time.Millisecond
		}
	}
	if e.rack.tlpOut {
		// Each probe into the same silence waits twice as long as
		// the last (QUIC's PTO backoff, RFC 9002 6.2.1): 2·PTO after
		// the first, 4·PTO after the second.
		pto <<= min(e.rack.tlpSent, 16)
	}
	if e.timerArmed(timerRetransmit) {
		left := max(e.timers.deadline[timerRetransmit].Sub(e.now()), 0)
		if e.rack.tlpOut && pto >= left {
			e.stopTimer(timerProbe) // the RTO comes first
			return
		}
		// Never later than the RTO would fire: the probe goes then
		// instead, as Linux does (tcp_schedule_loss_probe:
		// min(PTO, RTO remaining)).
		pto = min(pto, left)
	}
	e.setTimer(timerProbe, pto)
}

// probeAllowed says whether a tail loss probe may be armed or sent: SACK
// is in force, data is in flight and no probe is out; and the connection
// is in open state, as RFC 8985 7.2 and Linux ask, or in fast recovery,
// once per silence (tlpOnAck). That last is ours, not Linux's: a receiver
// that acknowledges a burst with a single ACK (gVisor's TCP does) leaves
// a recovery with nothing to go on when that ACK is lost; RACK needs an
// ACK to act, and the RTO, 200 ms at least, would be the only way out. In
// a 16 MiB transfer to gVisor at 5% loss both ways, 8 of 11 RTOs were
// exactly that. A probe after 2·SRTT without an ACK draws the ACK that
// lets RACK go on. NoRecoveryProbe turns it off.
func (e *Endpoint) probeAllowed() bool {
	if !e.rackEnabled() || e.proto.opts.NoTLP || e.rtxq.empty() || !e.state.Synchronized() {
		return false
	}
	if e.rack.tlpOut {
		return e.probeAgain() || e.probeAwaitsVerdict() && (e.caState == caOpen || e.caState == caCWR)
	}
	switch e.caState {
	case caOpen, caCWR: // as Linux's tcp_schedule_loss_probe
		return true
	case caRecovery:
		return !e.proto.opts.NoRecoveryProbe && !e.recoveryProbed
	}
	return false
}

// probeAgain says whether another probe may follow one that is out: only
// into a silence, when no ACK at all came since the first probe went
// (any ACK shows the path alive and gives RACK or the recovery something
// to act on; tlpOnAck ends the silence), and up to TailLossProbes probes.
// RFC 8985 7 and Linux send one probe, then wait for the RTO, 200 ms at
// least; when the probe or the ACK it draws is lost, that wait is the
// whole cost of the tail. Further probes, each twice as long after the
// last as the one before, are ours, after QUIC's consecutive probes with
// the timeout doubled (RFC 9002 6.2.4). With the Linux kernel receiving
// at 5% loss both ways with reordering, 72 of 79 RTOs in three 64 MiB
// transfers came after a probe that drew nothing; a second probe left
// one failure that a trace shows step by step: the flight's last ACK is
// lost, the first probe is new data, which the kernel acknowledges only
// when its delayed-ACK timer fires, the second is a duplicate, answered
// at once with a D-SACK, and when that one ACK is lost too, a spurious
// RTO of 200 ms follows (undone by Eifel). At 5% loss each way a
// duplicate probe draws no ACK about one time in ten; with up to four
// probes all three duplicates fail about one time in a thousand. 8
// transfers of 4 MiB to the kernel at 5% loss both ways took 1.2-1.4 s
// in all with two probes (3 runs), 0.8-1.7 s (median 1.0 s) with four or
// six (8 runs) (TestTailLossProbeAgain).
func (e *Endpoint) probeAgain() bool {
	return e.rack.tlpSent > 0 && e.rack.tlpSent < e.proto.opts.TailLossProbes && e.caState != caLoss
}

// probeAwaitsVerdict says whether the probe out was a copy whose ACK has
// come, covering it and no more, with no D-SACK: RFC 8985 7.4.2 waits for
// an ACK beyond TLP.end_seq (the original's ACK, or its D-SACK, may yet
// follow) before it calls the probe a repaired loss, and sends no probe
// meanwhile. The data sent after the probe is then in flight with no
// probe to cover it: when the path loses all of it, or all its ACKs,
// only the RTO is left. At 20% loss both ways, tapstack to gVisor's TCP,
// 26 of 35 RTOs in eight 1 MiB transfers were that (the rest: 5 SYNs, 4
// after probes that all drew nothing), each 200 ms where a probe waits
// 2*SRTT, and the retransmission after the RTO, lost in turn, doubled it.
// So a silence after such a probe gets a probe of its own (ours; Linux
// and RFC 8985 wait for the RTO), and the earlier probe's verdict is the
// one the next ACK beyond it would have given: a loss repaired
// (probeTimeout).
func (e *Endpoint) probeAwaitsVerdict() bool {
	return e.rack.tlpRetrans && !e.sndUna.LessThan(e.rack.tlpEnd)
}

// probeTimeout sends the tail loss probe (7.3): new data if there is some
// and the receive window allows it, whatever room the congestion window
// has, as RFC 8985 and Linux; else the last segment sent, again. A probe
// after one that drew nothing (probeAgain) is of the other kind: a copy
// after new data, new data after a copy (below). The RTO is restarted
// from now.
//
// New data is two full segments where there are two (ours;
// TailLossProbeSegments, 1 is RFC 8985's and Linux's one). A receiver
// that has acknowledged everything before the probe (its ACK of the
// flight was lost) may hold the ACK of one new in-order segment for its
// delayed-ACK timer (RFC 5681 4.2; Linux up to 40 ms), never of two; the
// receiver that lost the tail answers the first new segment at once, out
// of order. Sending to the kernel at 5% loss both ways (16 MiB), probes
// of one segment drew no ACK in 46-48 of some 60 silences: 23-36 MB/s,
// against 56-58 with two.
//
// A copy is answered at once by both receivers, neither of which limits
// its answers to segments that carry data (Linux's tcp_oow_rate_limited
// exempts them, and gVisor's maybeSendOutOfWindowAck answers every one),
// but it is one segment, which one loss ends, and gVisor's answer carries
// no D-SACK, so the probe's verdict waits for a later ACK (7.4.2,
// probeAwaitsVerdict). Earlier we sent a copy whenever the congestion
// window was full, as gVisor does, because one new segment waited for
// the receiver's delayed ACK; with two new segments that reason is gone,
// and sending to gVisor's TCP at 20% loss both ways (16 transfers of
// 1 MiB, three runs each) took 23 s and 27-38 RTOs with copies, 8-13 s
// and 11-19 RTOs with new data (TestTailLossProbeWindowFull).
//
// New data is not answered at once by every receiver: sending to the
// kernel at 5% loss, two new segments that both arrived drew no ACK for
// 1-2.5 ms, until the next probe, in about half the silences (Linux holds
// an ACK that would advertise a shrunk window, __tcp_ack_snd_check, which
// its reader falling behind would explain), while Linux answers a copy at
// once, with a D-SACK. So a probe that drew nothing is followed by one of
// the other kind (ours). To the kernel at 5% loss both ways, 16 MiB
// without offloads, eight runs of four transfers: 28-32 MB/s in every run
// with new data each time; five runs of eight at 48-60 alternating, the
// others at 29-33. In memory to gVisor's TCP the runs of the two overlap
// (TestProbeAgainAlternates).
func (e *Endpoint) probeTimeout() {
	if !e.probeAllowed() {
		return
	}
	if e.rack.tlpOut && e.probeAwaitsVerdict() {
		// Only data sent after the last probe is in flight, and none
		// of it drew an ACK: that probe, acknowledged without a
		// D-SACK, repaired a loss, as an ACK beyond it would have said.
		e.tlpRepaired()
	}
	e.splitRecords() // a copy is one segment, not a burst's record
	again := e.rack.tlpOut
	note := "tail loss probe"
	switch {
	case again:
		note = "tail loss probe again: the last drew no ACK"
	case e.caState == caRecovery:
		note = "tail loss probe in fast recovery: no ACK for 2·SRTT"
	}
	if e.caState == caRecovery {
		e.recoveryProbed = true
	}
	if !again {
		e.rack.tlpRetrans, e.rack.tlpSent = false, 0
	}
	mark := len(e.events)
	if e.caState == caRecovery && e.plainDupAcks > 0 && e.rtxq.sacked == 0 {
		// A recovery that bare duplicates drive (SACK agreed, no
		// blocks sent): a bare duplicate for a new segment or for
		// the last one again would say nothing more, and RACK cannot
		// see a lost retransmission without a SACK for something sent
		// after it. The segment the recovery waits for is SND.UNA's:
		// its retransmission, sent at least 2·SRTT ago and still
		// unacknowledged while later segments drew duplicates, is
		// likely lost. Sending it again repairs the hole, where the
		// RTO would wait 200 ms and resend every segment after it
		// (ours; a receiver without SACK blocks gives nothing else
		// to go on).
		note += "; bare duplicate ACKs: SND.UNA's segment again"
		e.retransmitSeg(e.rtxq.unsacked(e.rtxq.head), event.SendTLP)
		e.rack.tlpRetrans, e.rack.tlpLastCopy = true, true
	} else if (again && !e.rack.tlpLastCopy) || !e.sendProbeData() {
		i, ok := e.probeSegment()
		if !ok {
			return // everything after SND.UNA is delivered: nothing to probe with
		}
		e.retransmitSeg(i, event.SendTLP)
		e.rack.tlpRetrans, e.rack.tlpLastCopy = true, true
	} else {
		e.rack.tlpLastCopy = false
	}
	e.rack.tlpOut = true
	e.rack.tlpEnd = e.sndNxt
	e.rack.tlpSent++
	e.proto.stats.TailLossProbes.Add(1)
	// The note goes before the probe's send event, so that a capture
	// puts it on the probe's frame; after it, it went on whatever frame
	// of the connection came next, an ACK racing the probe included.
	e.emitRecoveryBefore(mark, note)
	e.setTimer(timerRetransmit, e.rto)
	e.schedulePTO() // the next probe, if this one draws nothing
}

// sendProbeData sends a probe's new data, up to TailLossProbeSegments
// segments, the next only after a full-sized one, and reports whether it
// sent any.
func (e *Endpoint) sendProbeData() bool {
	from := e.sndNxt
	if !e.sendNewData(event.SendTLP, true) {
		return false
	}
	for k := 1; k < e.proto.opts.TailLossProbeSegments && int(from.Size(e.sndNxt)) == k*e.segmentSize(); k++ {
		if !e.sendNewData(event.SendTLP, true) {
			break
		}
	}
	return true
}

// probeSegment picks the segment a probe sends again: the last one sent
// (7.3), unless it is SACKed. In open state that ends the choice: RACK's
// reordering timer will mark the holes below a SACKed tail. In fast
// recovery the holes are the retransmissions already sent, and a lost
// one has nothing sent after it that RACK could see delivered, so the
// probe resends the highest segment not yet SACKed: it draws the ACK the
// recovery waits for, 2·SRTT after the last, where the RTO would take
// 200 ms (ours, not Linux's, as the probe in recovery itself is).
func (e *Endpoint) probeSegment() (uint64, bool) {
	q := &e.rtxq
	i := q.tail() - 1
	if !q.at(i).has(segSacked) {
		return i, true
	}
	if e.caState != caRecovery {
		return 0, false
	}
	for ; i != q.head; i-- {
		if !q.at(i - 1).has(segSacked) {
			return i - 1, true
		}
	}
	return 0, false
}

// tlpOnAck ends a probe's episode (7.4): the probe was new data and is
// delivered; or it was a retransmission that a D-SACK shows was not
// needed; or the ACK covers it with no D-SACK, so it repaired a loss,
// which is a congestion event; or a duplicate ACK shows both copies
// arrived.
func (e *Endpoint) tlpOnAck(a *ackInfo) {
	if !e.rack.tlpOut {
		return
	}
	// Any ACK ends the silence a further probe is for (probeAgain).
	e.rack.tlpSent = 0
	progress := a.acked > 0 || a.sacked > 0
	if e.caState == caRecovery && progress {
		// In fast recovery the probe has done its work once an ACK
		// shows progress: RACK and the recovery go on from it, and
		// the recovery's congestion response stands. A later silence
		// in the same recovery gets a probe of its own: when the
		// retransmissions that ACK let out are lost too, the RTO
		// would otherwise be the way out (at 10% data loss in memory,
		// the one RTO of a 16 MiB transfer, 200 ms of 0.47 s).
		e.rack.tlpOut = false
		e.recoveryProbed = false
		return
	}
	if !e.rack.tlpRetrans {
		// A probe of new data repairs nothing, so its episode has no
		// verdict to wait for (7.4.2 infers a loss only from a copy):
		// an ACK that shows progress ends it, though it covers only
		// part of the probe, and a later silence gets a probe of its
		// own; so does a duplicate ACK of it all. Waiting for SND.UNA
		// to pass TLP.end_seq left the data sent after such an ACK to
		// the RTO when the probe's second segment or its ACK was
		// lost: at 20% loss both ways to gVisor's TCP, 16 transfers
		// of 1 MiB, three runs, 11-18 RTOs came with no probe before
		// them, 2-4 now (TestProbeAfterPartlyAcknowledgedProbe).
		if progress || !e.sndUna.LessThan(e.rack.tlpEnd) {
			e.rack.tlpOut = false
		}
		return
	}
	if e.sndUna.LessThan(e.rack.tlpEnd) {
		return
	}
	switch {
	case a.dsackTLP:
		e.rack.tlpOut = false
	case e.rack.tlpEnd.LessThan(e.sndUna):
		e.tlpRepaired()
	case !progress:
		e.rack.tlpOut = false
	}
}

// tlpRepaired ends a probe episode whose probe, a copy, repaired a loss
// (7.4.2): the window is reduced as for any loss, in one step.
func (e *Endpoint) tlpRepaired() {
	e.rack.tlpOut = false
	if e.caState != caOpen {
		return
	}
	e.ssthresh = e.congestion().OnCongestion(e.congestionSample(false))
	e.cwnd = min(e.cwnd, e.ssthresh)
	e.ecnQueueCWR() // a reduction like any other (RFC 3168 6.1.2)
	e.proto.stats.TLPRecoveries.Add(1)
	e.emitRecovery("tail loss probe repaired a loss: window reduced")
}
