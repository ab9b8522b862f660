package tcp

import (
	"strconv"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// Loss recovery: what the sender does once it knows, or suspects, that
// segments were lost. Four states, as Linux names them (tcp_ca_state):
//
//   - open: no loss outstanding; the congestion control algorithm grows
//     the window (cc.go).
//   - CWR: the peer echoed an ECN mark (RFC 3168, ecn.go); PRR brings
//     the window down as in fast recovery, with nothing deemed lost.
//   - fast recovery (RFC 6675 5, RFC 8985 5): ACKs revealed losses; the
//     lost segments are sent again while Proportional Rate Reduction (RFC
//     6937) brings the window down to ssthresh in step with what the ACKs
//     say left the network, until the ACK of everything sent when
//     recovery began (the RecoveryPoint).
//   - RTO recovery: the retransmission timer fired (RFC 6298 5, RFC 5681
//     3.1); the window starts again from one segment, and F-RTO (RFC
//     5682) checks whether the timeout was spurious.
//
// Every congestion response can be undone: when D-SACKs (RFC 2883) show
// that every retransmission of an episode arrived twice, or timestamps
// show the ACKs were for the original transmissions (Eifel, RFC 3522),
// the window and threshold go back to what they were (RFC 4015), as
// Linux's tcp_try_undo_* do. A lost ACK is not a lost segment.

// caState is the sender's loss recovery state.
type caState uint8

const (
	caOpen     caState = iota // no loss outstanding
	caCWR                     // the window comes down for an ECN echo (ecn.go), nothing lost
	caRecovery                // fast recovery
	caLoss                    // recovery after a retransmission timeout
)

var caStateNames = [...]string{caOpen: "open", caCWR: "CWR", caRecovery: "fast recovery", caLoss: "RTO recovery"}

func (s caState) String() string { return caStateNames[s] }

// caMoves are the moves between loss recovery's states, as Linux makes
// them (tcp_set_ca_state's callers): from open, to CWR on an ECN echo,
// to fast recovery on a loss, to RTO recovery on a timeout; CWR turns
// into fast recovery on a loss, with no second reduction; fast recovery
// ends in open, or in RTO recovery at a timeout; RTO recovery ends in
// open. Each episode may be undone back to open. Open to open is a
// connection's start and the undo of an episode already ended; RTO
// recovery to itself a further timeout.
var caMoves = [4][4]bool{
	caOpen:     {caOpen: true, caCWR: true, caRecovery: true, caLoss: true},
	caCWR:      {caOpen: true, caRecovery: true, caLoss: true},
	caRecovery: {caOpen: true, caLoss: true},
	caLoss:     {caOpen: true, caLoss: true},
}

// setCAState moves loss recovery to state to. It is the one place the
// state changes, as transition is for RFC 9293's states. A move caMoves
// does not hold is a bug in the engine: it is refused, so the state
// stays one the table knows, and counted (Stats.RecoveryMovesRefused,
// which every tcptest peer checks) and reported.
func (e *Endpoint) setCAState(to caState) {
	if !caMoves[e.caState][to] {
		e.proto.stats.RecoveryMovesRefused.Add(1)
		e.emitRecovery("refused: " + e.caState.String() + " to " + to.String() + " is not a move of loss recovery (caMoves)")
		return
	}
	e.caState = to
}

// undoState is what an episode's congestion response can be undone to,
// and the evidence for it (Linux's undo_marker, undo_retrans,
// prior_cwnd, prior_ssthresh and retrans_stamp).
type undoState struct {
	active        bool
	marker        seqnum.Value // SND.UNA when the episode began
	retrans       int          // retransmissions of the episode no D-SACK has shown spurious
	priorCwnd     uint32
	priorSsthresh uint32
	stamped       bool   // a retransmission of the episode went out
	stampTS       uint32 // our TSval on the first one
}

// initUndo starts a new episode's undo record (Linux tcp_init_undo).
func (e *Endpoint) initUndo() {
	prior := e.ssthresh
	if e.ssthresh != ^uint32(0) {
		// Linux's tcp_current_ssthresh: at least 3/4 of the window.
		prior = max(e.ssthresh, e.cwnd/4*3)
	}
	e.undo = undoState{active: true, marker: e.sndUna, priorCwnd: e.cwnd, priorSsthresh: prior}
}

// mayUndo is Linux's tcp_may_undo: every retransmission of the episode was
// shown spurious by a D-SACK, or the peer's timestamps show that this ACK
// was for a transmission made before the first retransmission.
func (e *Endpoint) mayUndo(seg *segment) bool {
	return e.undo.active && (e.undo.retrans == 0 || e.packetDelayed(seg))
}

// packetDelayed is Eifel detection (RFC 3522 3.2): the ACK echoes a TSval
// older than our first retransmission, so the original got through.
func (e *Endpoint) packetDelayed(seg *segment) bool {
	if !e.undo.stamped {
		return true // nothing was retransmitted
	}
	return e.tsOK && seg.TS && seg.TSEcr != 0 && tsBefore(seg.TSEcr, e.undo.stampTS)
}

// undoResponse restores the window and threshold from before the episode
// (RFC 4015 for timeouts; RFC 6675 and Linux for fast recovery), forgets
// the loss marks, and returns to open.
func (e *Endpoint) undoResponse(why string) {
	// A timeout within an episode that has nothing to undo (CWR's, for
	// an ECN echo) may still prove spurious by F-RTO: RTO recovery ends
	// and the window and threshold stay, as Linux's
	// tcp_undo_cwnd_reduction with prior_ssthresh 0 (tcp_enter_cwr).
	if e.undo.active {
		if e.rateController() == nil {
			e.cwnd = max(e.cwnd, e.undo.priorCwnd) // BBR keeps its own (bbr_undo_cwnd)
		}
		e.ssthresh = max(e.ssthresh, e.undo.priorSsthresh)
		e.congestion().OnUndo()
	}
	e.rtxq.unmarkLost()
	e.undo.active = false
	e.frto, e.frtoNewData = false, false
	// A retransmission that was not needed means the network reorders
	// or delays: RACK waits longer before calling a segment lost.
	e.rack.reordering = true
	if e.caState != caOpen {
		e.rackOnRecoveryEnd()
	}
	e.setCAState(caOpen)
	e.proto.stats.Undos.Add(1)
	e.emitRecovery("undo: " + why)
}

// congestionSample describes the connection now for OnCongestion.
func (e *Endpoint) congestionSample(timeout bool) CongestionSample {
	return CongestionSample{Now: e.sinceStart(), Cwnd: e.cwnd, Ssthresh: e.ssthresh, InFlight: e.flightSize(),
		MSS: uint32(e.sndMSS), Timeout: timeout}
}

// recoverOnAck is the loss detection and recovery an ACK drives (Linux's
// tcp_fastretrans_alert): tail loss probe bookkeeping, RACK or the
// DupThresh rule, then what the recovery state makes of it.
func (e *Endpoint) recoverOnAck(seg *segment, a *ackInfo) {
	e.tlpOnAck(a)
	lostBefore := e.rtxq.lost
	if a.reorderedSeen && !e.rack.reordering {
		e.rack.reordering = true
		e.proto.stats.ReorderingSeen.Add(1)
	}
	if e.rackEnabled() {
		a.lost = e.rackDetectLoss(a.now)
		// Duplicate ACKs that carry no SACK blocks although SACK was
		// agreed (gVisor's TCP sends none outside ESTABLISHED, so a
		// half-closed peer goes quiet) tell RACK nothing, so the rules
		// without SACK apply as well:
		//   - in open state the DupThresh rule (RFC 5681 3.2) rather
		//     than the probe timer and the RTO. Three of them, never
		//     fewer: Early Retransmit's lower threshold counts SACKed
		//     segments on a SACK connection (RFC 5827 3.2), and a lone
		//     duplicate may be the network's copy, or the peer's answer
		//     to a segment the network duplicated. With one, at 5%
		//     duplication over a TAP, the last short segment of a
		//     transfer was sent twice 2 to 8 times per 64 MiB.
		//   - in fast recovery NewReno's partial ACK (RFC 6582 3.2
		//     step 3), where no SACK block informs the ACK: RACK deems
		//     the next hole lost only if the ACK came at least the
		//     minimum RTT after the retransmission it covers (RFC 8985
		//     6.2 step 2), which an RTT that varies tenfold in memory
		//     often does not; the hole then waited for the RTO, and the
		//     RTO resent every segment after it.
		if e.caState == caOpen && e.plainDupAcks >= classicDupThresh || e.caState == caRecovery && a.bare {
			a.lost += e.dupAckLoss(a)
		}
	} else {
		a.lost = e.dupAckLoss(a)
	}
	if e.rtxq.lost > lostBefore {
		a.lostBytes = e.rtxq.lost - lostBefore
	}
	ece := e.ecnEchoed(seg)
	switch e.caState {
	case caOpen:
		if a.dsack && e.undo.active && e.undo.retrans == 0 {
			// Linux tcp_try_undo_dsack: the last episode's every
			// retransmission arrived twice, after it ended.
			e.undoResponse("D-SACK: every retransmission was spurious")
		}
		switch {
		case e.rtxq.lostWaiting > 0 && e.mtuProbeLost():
			// The path MTU probe, not congestion (plpmtud.go).
		case e.rtxq.lostWaiting > 0:
			e.enterRecovery(a.lost, "ACK")
			if ece {
				e.undo.active = false // a mark is congestion, whatever the retransmissions show
			}
		case ece:
			e.enterCWR()
		}
	case caCWR:
		if e.rtxq.lostWaiting > 0 {
			e.enterRecovery(a.lost, "ACK")
		} else {
			e.cwrOnAck(a)
		}
	case caRecovery:
		switch {
		case !e.sndUna.LessThan(e.recover):
			e.endRecovery(seg, a)
		case e.undo.active && a.dsack && e.undo.retrans == 0:
			e.undoResponse("D-SACK: every retransmission was spurious")
		case e.undo.active && a.acked > 0 && e.tsOK && e.packetDelayed(seg) && e.rtxq.retrans == 0:
			// Linux tcp_try_undo_partial: a partial ACK echoing a
			// transmission older than the retransmissions, once none
			// of them is in flight (retrans_out == 0): the ACK shows
			// that one hole was a delayed original, not that the
			// others were, and a retransmission still out may be
			// repairing a real loss.
			e.undoResponse("timestamps: the original transmissions arrived")
		}
	case caLoss:
		e.rtoRecoverOnAck(seg, a)
	}
	if e.reducing() && e.rateController() == nil {
		e.prr(a.delivered, a.lost, a.acked > 0)
	}
}

// reducing says whether PRR has the window: in fast recovery and in CWR
// (Linux's tcp_in_cwnd_reduction).
func (e *Endpoint) reducing() bool { return e.caState == caRecovery || e.caState == caCWR }

// rule3Segment is RFC 6675's NextSeg rule (3), for SACK recovery without
// RACK: when nothing deemed lost waits (rule (1)) and no new data can go
// (rule (2)), the first segment not SACKed above HighRxt and below the
// highest one SACKed SHOULD go again, although IsLost does not hold for
// it yet: a hole with fewer than DupThresh segments SACKed above it (one
// of the last of a flight with no new data behind it) is repaired in
// this round trip, not a round trip later at the partial ACK, nor after
// the RTO, and the ACK clock goes on. It comes before rule (4)'s rescue
// (rescueRetransmit). Linux has no such rule: its
// tcp_xmit_retransmit_queue sends only segments marked lost, and RACK
// finds such a hole lost by time (RFC 8985), so with RACK it is not
// needed.
func (e *Endpoint) rule3Segment() (uint64, bool) {
	if e.caState != caRecovery || e.rackEnabled() || !e.sackOK {
		return 0, false
	}
	return e.rtxq.nextRule3()
}

// rescueRetransmit is RFC 6675's NextSeg rule (4), for SACK recovery
// without RACK: when nothing is deemed lost and no new data can go, the
// highest segment not SACKed is sent once per recovery, so that a lost
// tail draws an ACK instead of waiting for the RTO. (RACK-TLP's probe does
// this in open state, and RACK finds the tail lost once anything after it
// is delivered, so with RACK the rule is not needed.)
func (e *Endpoint) rescueRetransmit() bool {
	if e.caState != caRecovery || e.rackEnabled() || !e.sackOK || e.rescueSent || !e.cwndFits(e.sndMSS) {
		return false
	}
	q := &e.rtxq
	for i := q.tail(); i > q.head; i-- {
		s := q.at(i - 1)
		if s.has(segSacked) {
			continue
		}
		if s.has(segRetrans) {
			return false
		}
		e.rescueSent = true
		e.retransmitSeg(i-1, event.SendFastRetransmit)
		return true
	}
	return false
}

// rackEnabled says whether losses are detected with RACK (RFC 8985),
// which needs SACK, or with the DupThresh rule.
func (e *Endpoint) rackEnabled() bool { return e.sackOK && !e.proto.opts.NoRACK }

// dupAckLoss is loss detection without RACK: fast retransmit after
// DupThresh duplicate ACKs (RFC 5681 3.2, with Early Retransmit's lower
// threshold, RFC 5827), or once more than (DupThresh-1)*SMSS is SACKed
// above SND.UNA (RFC 6675 IsLost); with SACK, every other hole for which
// IsLost holds is lost as well, at that ACK and at each that SACKs more
// in recovery (RFC 6675 5 (4) and NextSeg's rule (1); Linux's
// tcp_update_scoreboard); and in recovery, NewReno's partial ACK (RFC
// 6582 3.2 step 3): the next segment is lost too.
func (e *Endpoint) dupAckLoss(a *ackInfo) int {
	q := &e.rtxq
	if q.empty() {
		return 0
	}
	limit := uint32(e.dupThresh()-1) * uint32(e.sndMSS)
	isLost := e.sackOK && !e.rackEnabled()
	n := 0
	switch e.caState {
	case caOpen:
		if int(e.dupAcks) < e.dupThresh() && q.sacked <= limit {
			return 0
		}
		if q.sacked <= limit && e.sndUna == e.recover {
			// Duplicate ACKs alone, for no more than the last
			// episode's RecoveryPoint: no fast retransmit (RFC 6582
			// 3.2 step 2, the careful variant of its 4.1). They are
			// the answers to retransmissions the receiver already
			// held, the go-back-N after a timeout above all, not a
			// loss of what was sent since. Linux holds a non-SACK
			// connection in its recovery state until an ACK above
			// high_seq (tcp_is_non_sack_preventing_reopen), to the
			// same effect; SACK blocks say which segments arrived, so
			// IsLost may still decide. (recover stays from episode to
			// episode, as the RFC's variable: 4 GiB later SND.UNA
			// meets it again, and one fast retransmit may wait for
			// the RTO.)
			return 0
		}
		n = e.markHeadLost()
		if isLost {
			q.startIsLost(e.sndUna)
			n += q.markIsLost(limit)
		}
	case caRecovery:
		if isLost && a.sacked > 0 {
			n = q.markIsLost(limit)
		}
		if a.acked > 0 && e.sndUna.LessThan(e.recover) && !e.headResent() {
			n += e.markHeadLost()
		}
	}
	return n
}

// headResent reports whether the first segment not SACKed has a copy in
// flight that is not deemed lost: sent again in this recovery by a rule
// that does not deem it lost first (RFC 6675 NextSeg's rules (3) and (4),
// a tail loss probe). A partial ACK does not send it a third time: it
// was elicited by an earlier retransmission, and the copy's ACK is still
// to come. RFC 6675 sends nothing at or below HighRxt again (NextSeg rule
// (1.a)), and Linux's tcp_xmit_retransmit_queue skips a segment whose
// retransmission is out (TCPCB_SACKED_RETRANS); only the RTO sends it
// again.
func (e *Endpoint) headResent() bool {
	q := &e.rtxq
	i := q.unsacked(q.head)
	return i < q.tail() && q.at(i).has(segRetrans)
}

// markHeadLost deems the first segment not SACKed lost, unless it is
// already, and says whether it did (1) or not (0).
func (e *Endpoint) markHeadLost() int {
	q := &e.rtxq
	i := q.unsacked(q.head)
	if i == q.tail() || q.at(i).has(segLost) {
		return 0
	}
	q.markLost(i)
	return 1
}

// classicDupThresh is RFC 5681's DupThresh.
const classicDupThresh = 3

// dupThresh is the number of duplicate ACKs that triggers fast
// retransmit: 3 (RFC 5681 3.2), or fewer with Early Retransmit (RFC 5827
// 3.1) when fewer than four segments are outstanding and no new data can
// go out to make more duplicates: then oseg-1, at least 1.
func (e *Endpoint) dupThresh() int {
	oseg := int(e.rtxq.segs)
	if oseg >= 4 || e.sndNxt.LessThan(e.sndEnd()) {
		return classicDupThresh
	}
	return max(oseg-1, 1)
}

// enterRecovery starts fast recovery (RFC 6675 5 (4), RFC 8985 5.3): the
// RecoveryPoint is SND.NXT, the congestion control picks ssthresh, and
// PRR (RFC 6937) starts counting.
func (e *Endpoint) enterRecovery(lost int, by string) {
	e.startRecovery()
	e.emitRecovery("fast recovery: " + plural(lost, "segment") + " deemed lost (" + e.lossRule() + ", " + by + ")")
}

// startRecovery is enterRecovery without its event. From CWR the window
// is already coming down for this window of data: fast recovery goes on
// with CWR's reduction, RecoveryPoint and PRR count, and nothing to undo
// (Linux's tcp_enter_recovery within tcp_in_cwnd_reduction).
func (e *Endpoint) startRecovery() {
	if e.caState == caCWR {
		e.undo.active = false
	} else {
		e.initUndo()
		e.initCwndReduction()
	}
	e.rescueSent = false
	e.rtxq.startIsLost(e.sndUna)
	e.setCAState(caRecovery)
	e.rack.tlpOut = false
	e.recoveryProbed = false
	e.stopTimer(timerProbe)
	e.proto.stats.FastRecoveries.Add(1)
}

// initCwndReduction begins a window reduction, fast recovery's or CWR's
// (Linux's tcp_init_cwnd_reduction): the RecoveryPoint is SND.NXT, the
// congestion control picks ssthresh, PRR starts counting, and CWR goes on
// the next new data (RFC 3168 6.1.2).
func (e *Endpoint) initCwndReduction() {
	e.recover = e.sndNxt
	e.ssthresh = e.congestion().OnCongestion(e.congestionSample(false))
	e.prrDelivered, e.prrOut = 0, 0
	e.recoverFS = uint64(max(e.flightSize(), 1))
	e.ecnQueueCWR()
}

func (e *Endpoint) lossRule() string {
	if e.rackEnabled() {
		return "RACK"
	}
	return "duplicate ACKs"
}

// lossDetected is a loss found without an ACK (RACK's reordering timer):
// it starts fast recovery from open or CWR, and lets PRR send.
func (e *Endpoint) lossDetected(n int, by string) {
	if e.caState == caOpen && e.mtuProbeLost() {
		return // the path MTU probe, not congestion (plpmtud.go)
	}
	if e.caState == caOpen || e.caState == caCWR {
		e.enterRecovery(n, by)
	}
	if e.caState == caRecovery && e.rateController() == nil {
		e.prr(0, n, false)
	}
}

// endRecovery is the ACK of the RecoveryPoint (RFC 6675 5 (A), RFC 6937):
// fast recovery ends with cwnd = ssthresh, unless the whole episode was
// spurious and is undone.
func (e *Endpoint) endRecovery(seg *segment, a *ackInfo) {
	if e.mayUndo(seg) {
		e.undoResponse("the retransmissions were not needed")
		return
	}
	if e.rateController() == nil {
		e.cwnd = e.ssthresh // a RateController sets its own (Linux's tcp_end_cwnd_reduction)
	}
	e.setCAState(caOpen)
	e.renoSacked = 0
	e.rackOnRecoveryEnd()
	e.emitRecovery("fast recovery ends")
	a.endedRecovery = true
}

// prr is Proportional Rate Reduction (RFC 6937 3.1) on each ACK in fast
// recovery: while pipe is above ssthresh, send in proportion to what was
// delivered, ssthresh/RecoverFS of it, so the window comes down smoothly;
// once pipe is at or below ssthresh, send what was delivered, plus one
// segment when SND.UNA moved and no new loss was found (the slow-start
// reduction bound as RFC 6937bis and Linux have it), up to ssthresh. The window
// becomes pipe + sndcnt, as in Linux's tcp_cwnd_reduction. The first ACK
// of recovery always lets one segment go: the fast retransmission.
func (e *Endpoint) prr(delivered uint32, lost int, unaAdvanced bool) {
	if delivered == 0 && lost == 0 {
		return
	}
	mss := int64(e.sndMSS)
	e.prrDelivered += uint64(delivered)
	pipe := int64(e.inflight())
	ssthresh := int64(e.ssthresh)
	var sndcnt int64
	if pipe > ssthresh {
		// ceil(prr_delivered * ssthresh / RecoverFS) - prr_out, the
		// quotient rounded up to whole segments as Linux's, which
		// counts packets: a segment goes only when all of it fits
		// (cwndFits), and a byte-exact quotient would hold each one
		// back an ACK longer than RFC 6937's segment-counted example.
		due := (e.prrDelivered*uint64(ssthresh) + e.recoverFS - 1) / e.recoverFS
		due = (due + uint64(mss) - 1) / uint64(mss) * uint64(mss)
		sndcnt = int64(due) - int64(e.prrOut)
	} else {
		// The slow-start reduction bound. Its extra segment goes only
		// with an ACK that moved SND.UNA and found no new loss, as in
		// Linux's tcp_cwnd_reduction and RFC 6937bis.
		limit := max(int64(e.prrDelivered)-int64(e.prrOut), int64(delivered))
		if unaAdvanced && lost == 0 {
			limit += mss
		}
		sndcnt = min(ssthresh-pipe, limit)
	}
	if e.prrOut == 0 {
		sndcnt = max(sndcnt, mss)
	}
	sndcnt = max(sndcnt, 0)
	e.cwnd = uint32(min(pipe+sndcnt, maxCwnd))
}

// enterLoss is the response to a retransmission timeout (RFC 5681 3.1,
// RFC 6298 5.4-5.6, Linux tcp_enter_loss): ssthresh from the congestion
// control unless this timeout continues an episode, every segment in
// flight deemed lost except those sent too recently for that (RFC 8985
// 6.3), and a window of one segment. F-RTO (RFC 5682) starts when
// frtoMayJudge says it may.
func (e *Endpoint) enterLoss(answered bool) {
	e.splitRecords()
	now := e.now()
	episode := e.timeoutStartsEpisode(answered)
	frto := e.frtoMayJudge(answered)
	var cs CongestionSample
	if episode {
		e.initUndo()
		cs = e.congestionSample(true)
	}
	q := &e.rtxq
	if !q.empty() && q.at(q.head).has(segSacked) {
		// SND.UNA's segment was SACKed, yet the timer fired: the
		// receiver has reneged (RFC 2018 8). Linux forgets every SACK.
		q.renege()
		e.proto.stats.Renegings.Add(1)
	}
	reo := e.rackReorderWindow()
	lost, recent, lostBytes := 0, 0, uint32(0)
	for i := q.head; i < q.tail(); i++ {
		s := q.at(i)
		if s.has(segSacked) {
			continue
		}
		if e.rackEnabled() && i != q.head && now.Before(s.xmit.Add(e.rack.rtt+reo)) {
			recent++
			continue // sent too recently to be called lost (RFC 8985 6.3)
		}
		if !s.awaitingRetransmit() {
			q.markLost(i)
			lost++
			lostBytes += s.len()
		}
	}
	switch cc := e.congestion(); {
	case episode:
		// After the marking, as Linux's tcp_enter_loss: a congestion
		// control that counts losses (BBR's policer detector) counts
		// these.
		cs.Lost = lostBytes
		e.ssthresh = cc.OnCongestion(cs)
	default:
		// A timeout in its turn: the threshold stays, and an algorithm
		// that follows each timeout, as Linux's set_state hears each,
		// is told.
		if f, ok := cc.(TimeoutFollower); ok {
			cs = e.congestionSample(true)
			cs.Lost = lostBytes
			f.OnTimeoutAgain(cs)
		}
	}
	e.dupAcks, e.renoSacked = 0, 0
	e.setCAState(caLoss)
	e.ecnQueueCWR()
	e.recover = e.sndNxt
	e.cwnd = e.inflight() + uint32(e.sndMSS)
	e.frto = frto
	e.frtoStep = 1
	e.frtoNewData = false
	e.rack.tlpOut = false
	e.stopTimer(timerProbe)
	e.stopTimer(timerReorder)
	if e.proto.opts.Observer != nil {
		note := "retransmission timeout: " + plural(lost, "segment") + " deemed lost"
		if recent > 0 {
			// Why the rest are not: RACK's RTT and reordering
			// window, which a wrong RTT sample stretches.
			note += ", " + strconv.Itoa(recent) + " sent within RACK's RTT and reordering window (" +
				(e.rack.rtt + reo).Round(time.Microsecond).String() + ") not yet"
		}
		e.emitRecovery(note + ", window one segment")
	}
}

// timeoutStartsEpisode reports whether a retransmission timeout begins a
// new congestion episode, with a new ssthresh, rather than continuing one
// whose window was already reduced: one reduction per window of data
// (RFC 3168 6.1.2; RFC 5681 3.1 sets ssthresh once for a timeout
// retransmitted again). As Linux's tcp_enter_loss, which reduces "if it
// has not yet been made inside this window": in open state; once SND.UNA
// has reached the episode's end (RecoveryPoint); and in RTO recovery also
// when the previous timeout's retransmission was answered, SND.UNA having
// moved since (icsk_retransmits == 0). A timeout during CWR, or during a
// fast recovery that began in CWR or with an ECN echo, continues that
// episode, although nothing in it can be undone. answered: no timeout
// was counted since SND.UNA last moved (retransmitTimeout).
func (e *Endpoint) timeoutStartsEpisode(answered bool) bool {
	if e.caState == caOpen || !e.sndUna.LessThan(e.recover) {
		return true
	}
	return e.caState == caLoss && answered
}

// frtoMayJudge reports whether F-RTO may judge this retransmission
// timeout: only when no loss recovery was under way before it (RFC 5682
// 3.1 step 1: not while RecoveryPoint >= SND.UNA), or, as Linux's
// tcp_enter_loss (new_recovery || icsk_retransmits), when it recurs with
// SND.UNA unmoved since the last one, which the RFC excludes and Linux
// keeps (its comment's "sec 3.2"): the flight those timeouts judge is the
// same. A timeout in fast recovery means the fast retransmission was lost,
// a loss already proven; a SACK of data never retransmitted then shows
// only that the rest of the flight got through, and an undo would take
// back fast recovery's reduction as well. A timeout in RTO recovery after
// the last one's retransmission was answered is not recurring either, and
// step 2.b's new data would hold back the repair of the holes each time
// (Linux f82b681a, "tcp: don't use F-RTO on non-recurring timeouts").
// answered: no timeout was counted since SND.UNA last moved.
func (e *Endpoint) frtoMayJudge(answered bool) bool {
	return !e.proto.opts.NoFRTO && (e.caState == caOpen || e.caState == caCWR || !answered)
}

// rtoRecoverOnAck is an ACK in RTO recovery. The timeout was spurious if
// the ACK echoes an original transmission (timestamps, RFC 3522) or every
// retransmission was D-SACKed; or by F-RTO (RFC 5682): a SACK for data
// sent before the timeout and never retransmitted (the SACK-enhanced
// variant of section 3, as Linux's FLAG_ORIG_SACK_ACKED), or, without
// SACK information, the second ACK after the timeout moving SND.UNA over
// such data (section 2.1, steps 2 and 3). The first ACK only shows that
// the retransmission arrived, which it does as well when the original
// was lost, so F-RTO sends new data then and lets the second decide.
func (e *Endpoint) rtoRecoverOnAck(seg *segment, a *ackInfo) {
	recovered := !e.sndUna.LessThan(e.recover)
	if (a.acked > 0 || a.dsack) && e.mayUndo(seg) {
		e.undoResponse("spurious timeout (the ACK was for the original transmission)")
		return
	}
	if e.frto {
		switch {
		case a.origSacked:
			e.spuriousRTO("F-RTO: data sent before the timeout was SACKed")
			return
		case e.frtoStep == 1 && a.acked > 0 && !recovered:
			// Step 2.b: new data, if there is any and the peer's
			// window allows it, instead of retransmitting.
			e.frtoStep = 2
			if e.sndNxt.LessThan(e.sndEnd()) && e.sndNxt.LessThan(e.sndUna.Add(seqnum.Size(e.sndWnd))) {
				e.frtoNewData = true
				return
			}
			e.frto = false
		case e.frtoStep == 2 && a.acked > 0 && a.origAcked:
			// Step 3.b.
			e.spuriousRTO("F-RTO: the second ACK after it acknowledged data never retransmitted")
			return
		case a.dup || a.acked > 0:
			e.frto = false // steps 2.a and 3.a: the loss was real
		}
	}
	if recovered {
		e.setCAState(caOpen)
		e.frto = false
		e.rackOnRecoveryEnd()
		e.emitRecovery("RTO recovery ends")
	}
}

func (e *Endpoint) spuriousRTO(why string) {
	e.proto.stats.SpuriousRTOs.Add(1)
	e.undoResponse("spurious timeout (" + why + ")")
}

// flightSize is FlightSize of RFC 5681: data sent and not yet acknowledged.
func (e *Endpoint) flightSize() uint32 { return uint32(e.sndUna.Size(e.sndNxt)) }

// inflight is pipe (RFC 6675 4's SetPipe, Linux's tcp_packets_in_flight),
// in bytes: what was sent and has not left the network, as far as the
// sender knows: FlightSize less what was SACKed and what is deemed lost,
// plus retransmissions in flight. Without SACK, each duplicate ACK counts
// as one segment delivered (renoSacked), as Linux does (tcp_add_reno_sack).
func (e *Endpoint) inflight() uint32 {
	q := &e.rtxq
	out := e.flightSize() + q.retrans
	left := q.sacked + q.lost
	if e.renoSacked > 0 {
		left += min(uint32(int(e.renoSacked)*e.sndMSS), e.flightSize()-min(q.lost, e.flightSize()))
	}
	if left >= out {
		return 0
	}
	return out - left
}

// emitRecovery reports a change of course in loss recovery.
func (e *Endpoint) emitRecovery(note string) {
	if e.proto.opts.Observer != nil {
		e.emit(event.Event{Kind: event.KindRecovery, Conn: e.connID(), Note: note, Cwnd: e.cwnd, Ssthresh: e.ssthresh})
	}
}

// emitRecoveryBefore is emitRecovery for a course change that explains
// the events queued since mark (len(e.events) then, under the same hold
// of mu): it goes before them.
func (e *Endpoint) emitRecoveryBefore(mark int, note string) {
	if e.proto.opts.Observer == nil {
		return
	}
	e.emitBefore(mark, event.Event{Kind: event.KindRecovery, Conn: e.connID(), Note: note, Cwnd: e.cwnd, Ssthresh: e.ssthresh})
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
