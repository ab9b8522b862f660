package tcp

import (
	"strconv"
	"time"
)

// BBR (Bottleneck Bandwidth and Round-trip propagation time) is the
// congestion control that models the path instead of reading loss as
// congestion: it keeps the highest delivery rate of the last ten round
// trips (BtlBw) and the lowest RTT of the last ten seconds (RTprop), paces
// at BtlBw times a gain and bounds what is in flight at twice their
// product (BDP). This is BBR v1 as Linux's tcp_bbr.c has it, the "bbr" a
// user compares tapstack with on the kernel end of the same TAP, rule for
// rule, with its constants; draft-cardwell-iccrg-bbr-congestion-control-00
// describes it. Four modes:
//
//   - startup: pacing and window gain 2/ln 2 (2.89), which doubles the
//     delivery rate every round trip, until three rounds in a row raise
//     BtlBw by less than 25%: the pipe is full.
//   - drain: pacing gain 1/2.89, until what is in flight is down to one BDP
//     (the queue startup built is gone).
//   - probe_bw: the steady state, eight phases of at least one RTprop
//     each, pacing at 1.25, 0.75, then 1 six times: a probe for more
//     bandwidth, the drain of the queue it built, and cruise; the window
//     is twice the BDP.
//   - probe_rtt: when RTprop has not been seen again for ten seconds, the
//     window drops to four segments for 200 ms and a round trip, so that
//     the bottleneck's queue empties and the true RTprop shows.
//
// Loss is not congestion here, with three exceptions Linux's BBR v1 has:
// the first round of fast recovery conserves packets (one sent per one
// delivered), each loss takes a segment from the window, and two
// successive intervals of heavy loss at a steady rate are read as a token
// bucket policer, whose rate is then used for 48 round trips (the
// long-term bandwidth, lt_bw). An ECN echo is ignored, as in BBR v1.
//
// The counts are bytes where Linux counts packets: a window of four
// packets is four MSS, a BDP is rounded up to whole segments. The
// random start of the gain cycle is drawn from a generator seeded from the
// connection's own numbers, so that a run on the fake clock repeats.
type bbr struct {
	mode bbrMode

	bw                 maxFilter // delivery rate samples, bytes a second, by round
	rounds             uint64    // packet-timed round trips
	nextRoundDelivered uint64    // TotalDelivered at which the next round starts
	roundStart         bool

	minRTT      time.Duration // RTprop; 0: no sample yet
	minRTTStamp time.Duration
	probeRTT    struct {
		doneAt    time.Duration // when probe_rtt may end; 0: not yet at four segments
		roundDone bool
	}
	idleRestart bool

	prevState          bbrCAState
	packetConservation bool
	priorCwnd          uint32

	fullBw        uint64
	fullBwCount   int
	fullBwReached bool

	cycleIdx   int
	cycleStamp time.Duration

	pacingGain, cwndGain uint32 // bbrUnit is 1.0
	pacingRate           uint64
	hasSeenRTT           bool
	started              bool

	// The long-term bandwidth (policer detection).
	lt struct {
		sampling      bool
		useBw         bool
		rounds        int
		bw            uint64
		lastDelivered uint64
		lastLost      uint64
		lastStamp     time.Duration
	}
	lost uint64 // bytes deemed lost, all told (Linux's tp->lost)

	// ACK aggregation: the most data ACKed beyond what BtlBw explains
	// in an epoch, in two windows of five round trips.
	ackEpochStamp    time.Duration
	ackEpochAcked    uint64
	extraAcked       [2]uint64
	extraAckedRounds int
	extraAckedIdx    int

	// The last sample's delivery state, for a timeout (OnCongestion),
	// which brings none.
	totalDelivered uint64
	deliveredAt    time.Duration
	mss            uint32
	cwnd           uint32 // the window being computed
	rnd            uint32
}

type bbrMode uint8

const (
	bbrStartup bbrMode = iota
	bbrDrain
	bbrProbeBW
	bbrProbeRTT
)

var bbrModeNames = [...]string{bbrStartup: "startup", bbrDrain: "drain", bbrProbeBW: "probe_bw", bbrProbeRTT: "probe_rtt"}

func (m bbrMode) String() string { return bbrModeNames[m] }

// bbrCAState is loss recovery's state as BBR tells them apart: Linux's
// TCP_CA_Open (and CWR), Recovery and Loss, in that order.
type bbrCAState uint8

const (
	bbrOpen bbrCAState = iota
	bbrRecovery
	bbrLoss
)

// BBR's constants, as tcp_bbr.c has them; gains are fixed point, bbrUnit
// being 1.0, so that ss prints the same gains as Linux (2.88672).
const (
	bbrUnit         = 256
	bbrHighGain     = bbrUnit*2885/1000 + 1 // 2/ln 2: startup doubles the rate each round
	bbrDrainGain    = bbrUnit * 1000 / 2885 // drains startup's queue in about a round
	bbrCwndGain     = bbrUnit * 2           // probe_bw's window: twice the BDP, for delayed and stretched ACKs
	bbrCycleLen     = 8
	bbrBwRounds     = bbrCycleLen + 2 // the bandwidth filter's window, in round trips
	bbrMinRTTWin    = 10 * time.Second
	bbrProbeRTTTime = 200 * time.Millisecond
	bbrMinTSORate   = 1200000 / 8 // bytes a second below which a packet is one segment
	bbrCwndMin      = 4           // segments: two ACKs' worth with ACK-every-other
	bbrFullBwGain   = bbrUnit * 5 / 4
	bbrFullBwCnt    = 3
	bbrCycleRand    = 7

	bbrLtMinRounds  = 4
	bbrLtLossThresh = 50 // of bbrUnit: 20% of the delivered lost
	bbrLtBwRatio    = bbrUnit / 8
	bbrLtBwDiff     = 4000 / 8 // bytes a second: 4 kbit/s
	bbrLtMaxRounds  = 48

	bbrExtraAckedRounds = 5
	bbrExtraAckedMax    = 100 * time.Millisecond
	bbrAckEpochReset    = 1 << 20 // segments
	bbrPacingMargin     = 1       // percent below BtlBw
)

// bbrPacingGains is probe_bw's gain cycle.
var bbrPacingGains = [bbrCycleLen]uint32{bbrUnit * 5 / 4, bbrUnit * 3 / 4, bbrUnit, bbrUnit, bbrUnit, bbrUnit, bbrUnit, bbrUnit}

func newBBR() *bbr { return &bbr{} }

func (*bbr) Name() string { return "bbr" }

// OnAck is not called for a RateController.
func (*bbr) OnAck(a AckSample) (uint32, uint32) { return a.Cwnd, a.Ssthresh }

// OnCongestion keeps ssthresh and notes the window to restore when the
// episode ends (bbr_ssthresh); a timeout also ends the round and restarts
// the search for a full pipe (bbr_set_state for TCP_CA_Loss).
func (b *bbr) OnCongestion(c CongestionSample) uint32 {
	b.saveCwnd(c.Cwnd)
	if c.Timeout {
		b.OnTimeoutAgain(c)
	}
	return c.Ssthresh
}

// OnTimeoutAgain is bbr_set_state's part for TCP_CA_Loss, which Linux
// runs at every retransmission timeout, the first of an episode
// (OnCongestion) and those that follow it (TimeoutFollower): the
// policer detector takes the timeout as a sample with a loss, and the
// segments the timeout deemed lost are in b.lost, as they are in Linux's
// tp->lost; the search for a full pipe starts over and a round ends.
func (b *bbr) OnTimeoutAgain(c CongestionSample) {
	b.lost += uint64(c.Lost)
	b.prevState = bbrLoss
	b.fullBw = 0
	b.roundStart = true
	b.ltSample(&RateSample{Losses: 1, TotalDelivered: b.totalDelivered, DeliveredAt: b.deliveredAt})
}

// OnUndo: the slow-down was spurious, so the search for a full pipe
// starts again and the policer estimate is dropped (bbr_undo_cwnd).
func (b *bbr) OnUndo() {
	b.fullBw, b.fullBwCount = 0, 0
	b.ltReset()
}

// Control is bbr_main: update the model, then the pacing rate and the
// window from it.
func (b *bbr) Control(s RateSample) RateControl {
	b.mss = max(s.MSS, 1)
	b.cwnd = s.Cwnd
	if !b.started {
		b.init(&s)
	}
	b.lost += uint64(s.Losses)
	b.totalDelivered, b.deliveredAt = s.TotalDelivered, s.DeliveredAt
	before, beforeBw := b.mode, b.lt.useBw
	var out RateControl
	b.updateBw(&s)
	b.updateAckAggregation(&s)
	if b.mode == bbrProbeBW && b.nextCyclePhase(&s) {
		b.advanceCycle(s.DeliveredAt)
	}
	b.checkFullBw(&s)
	if b.mode == bbrStartup && b.fullBwReached {
		b.mode = bbrDrain
		out.Ssthresh = b.inflight(b.bw.get(), bbrUnit) // as Linux sets snd_ssthresh on leaving startup
	}
	if b.mode == bbrDrain && b.inNetAtEDT(&s, s.InFlight) <= b.inflight(b.bw.get(), bbrUnit) {
		b.resetProbeBW() // the queue is drained
	}
	out.MarkAppLimited = b.updateMinRTT(&s)
	b.updateGains()
	bw := b.bandwidth()
	b.setPacingRate(&s, bw, b.pacingGain)
	out.Cwnd = b.setCwnd(&s, bw)
	out.PacingRate = b.pacingRate
	if b.mode != before || b.lt.useBw != beforeBw {
		out.Note = b.note(before)
	}
	return out
}

// Restart is the application sending again after it ran out of data
// with nothing in flight (bbr_cwnd_event, CA_EVENT_TX_START): in probe_bw
// the pacing rate drops to BtlBw, so the restart builds no queue; a
// probe_rtt that was due to end ends.
func (b *bbr) Restart(s RateSample) RateControl {
	b.mss = max(s.MSS, 1)
	b.cwnd = s.Cwnd
	if !b.started {
		b.init(&s)
	}
	b.idleRestart = true
	b.ackEpochStamp, b.ackEpochAcked = s.Now, 0
	before := b.mode
	switch b.mode {
	case bbrProbeBW:
		b.setPacingRate(&s, b.bandwidth(), bbrUnit)
	case bbrProbeRTT:
		b.checkProbeRTTDone(&s)
	}
	out := RateControl{Cwnd: b.cwnd, PacingRate: b.pacingRate}
	if b.mode != before {
		out.Note = b.note(before)
	}
	return out
}

// init is bbr_init, at the connection's first sample.
func (b *bbr) init(s *RateSample) {
	b.started = true
	b.minRTT, b.minRTTStamp = s.MinRTT, s.Now
	b.bw.reset(0, 0)
	b.initPacingRate(s)
	b.ltResetInterval(s.TotalDelivered, s.DeliveredAt)
	b.mode = bbrStartup
	b.updateGains()
	b.ackEpochStamp = s.Now
	b.rnd = uint32(s.TotalDelivered) ^ uint32(s.Now) ^ uint32(s.MinRTT) | 1
}

// bandwidth is BtlBw, or the policer's rate while it is in use.
func (b *bbr) bandwidth() uint64 {
	if b.lt.useBw {
		return b.lt.bw
	}
	return b.bw.get()
}

// rate is bw with a gain, less the pacing margin, bytes a second.
func (b *bbr) rate(bw uint64, gain uint32) uint64 {
	return bw * uint64(gain) / bbrUnit * (100 - bbrPacingMargin) / 100
}

// initPacingRate paces the start at the high gain over the initial
// window per SRTT, or per a millisecond before an RTT sample.
func (b *bbr) initPacingRate(s *RateSample) {
	rtt := time.Millisecond
	if s.SRTT > 0 {
		rtt = s.SRTT
		b.hasSeenRTT = true
	}
	bw := uint64(float64(s.Cwnd) * float64(time.Second) / float64(rtt))
	b.pacingRate = b.rate(bw, bbrHighGain)
}

// setPacingRate paces at bw times gain; before the pipe is full only
// ever upwards, so that startup never slows down on a low sample.
func (b *bbr) setPacingRate(s *RateSample, bw uint64, gain uint32) {
	if !b.hasSeenRTT && s.SRTT > 0 {
		b.initPacingRate(s)
	}
	if rate := b.rate(bw, gain); b.fullBwReached || rate > b.pacingRate {
		b.pacingRate = rate
	}
}

// updateBw counts round trips by what was delivered and takes the
// sample into the bandwidth filter; an app-limited sample only if it
// does not lower the estimate.
func (b *bbr) updateBw(s *RateSample) {
	b.roundStart = false
	if s.Interval <= 0 {
		return // no valid sample
	}
	if s.PriorDelivered >= b.nextRoundDelivered {
		b.nextRoundDelivered = s.TotalDelivered
		b.rounds++
		b.roundStart = true
		b.packetConservation = false
	}
	b.ltSample(s)
	bw := uint64(float64(s.Delivered) * float64(time.Second) / float64(s.Interval))
	if !s.AppLimited || bw >= b.bw.get() {
		b.bw.update(bbrBwRounds, b.rounds, bw)
	}
}

// updateAckAggregation estimates how much more the ACKs deliver at once
// than BtlBw explains (a receiver's or a link's batching), for the
// window to cover the silences between such batches.
func (b *bbr) updateAckAggregation(s *RateSample) {
	if s.AckedSacked == 0 || s.Interval <= 0 {
		return
	}
	if b.roundStart {
		b.extraAckedRounds = min(b.extraAckedRounds+1, 31)
		if b.extraAckedRounds >= bbrExtraAckedRounds {
			b.extraAckedRounds = 0
			b.extraAckedIdx ^= 1
			b.extraAcked[b.extraAckedIdx] = 0
		}
	}
	epoch := s.DeliveredAt - b.ackEpochStamp
	expected := uint64(float64(b.bandwidth()) * epoch.Seconds())
	if b.ackEpochAcked <= expected || b.ackEpochAcked+uint64(s.AckedSacked) >= bbrAckEpochReset*uint64(b.mss) {
		b.ackEpochAcked, b.ackEpochStamp, expected = 0, s.DeliveredAt, 0
	}
	b.ackEpochAcked = min(b.ackEpochAcked+uint64(s.AckedSacked), (bbrAckEpochReset-1)*uint64(b.mss))
	extra := min(b.ackEpochAcked-expected, uint64(s.Cwnd))
	b.extraAcked[b.extraAckedIdx] = max(b.extraAcked[b.extraAckedIdx], extra)
}

// nextCyclePhase says whether probe_bw's phase ends: after a min RTT at
// gain 1; the probe once it also put gain × BDP in flight or lost
// something; the drain once what is in flight is down to the BDP, or
// after a min RTT.
func (b *bbr) nextCyclePhase(s *RateSample) bool {
	full := s.DeliveredAt-b.cycleStamp > b.minRTT
	switch {
	case b.pacingGain == bbrUnit:
		return full
	case b.pacingGain > bbrUnit:
		return full && (s.Losses > 0 || b.inNetAtEDT(s, s.PriorInFlight) >= b.inflight(b.bw.get(), b.pacingGain))
	default:
		return full || b.inNetAtEDT(s, s.PriorInFlight) <= b.inflight(b.bw.get(), bbrUnit)
	}
}

func (b *bbr) advanceCycle(at time.Duration) {
	b.cycleIdx = (b.cycleIdx + 1) % bbrCycleLen
	b.cycleStamp = at
}

// resetProbeBW enters probe_bw at a random phase other than the drain,
// so that flows sharing a bottleneck do not probe in step.
func (b *bbr) resetProbeBW() {
	b.mode = bbrProbeBW
	b.cycleIdx = bbrCycleLen - 1 - int(b.random()%bbrCycleRand)
	b.advanceCycle(b.deliveredAt)
}

func (b *bbr) resetMode() {
	if b.fullBwReached {
		b.resetProbeBW()
	} else {
		b.mode = bbrStartup
	}
}

// random is a xorshift generator: no global state, and a run on the
// fake clock repeats.
func (b *bbr) random() uint32 {
	x := b.rnd
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	b.rnd = x
	return x
}

// checkFullBw is startup's exit test: three round trips, each not
// app-limited, that raised BtlBw by less than 25% over the last that did.
func (b *bbr) checkFullBw(s *RateSample) {
	if b.fullBwReached || !b.roundStart || s.AppLimited {
		return
	}
	if max := b.bw.get(); max >= b.fullBw*bbrFullBwGain/bbrUnit {
		b.fullBw, b.fullBwCount = max, 0
		return
	}
	b.fullBwCount++
	b.fullBwReached = b.fullBwCount >= bbrFullBwCnt
}

// updateMinRTT keeps RTprop, the lowest RTT of the last ten seconds, and
// runs probe_rtt when it expired; it reports whether the samples must be
// marked app-limited (probe_rtt's low rate is not the path's).
func (b *bbr) updateMinRTT(s *RateSample) (appLimited bool) {
	expired := s.Now > b.minRTTStamp+bbrMinRTTWin
	if s.RTT > 0 && (b.minRTT == 0 || s.RTT <= b.minRTT || expired) {
		b.minRTT, b.minRTTStamp = s.RTT, s.Now
	}
	if expired && !b.idleRestart && b.mode != bbrProbeRTT {
		b.mode = bbrProbeRTT
		b.saveCwnd(s.Cwnd)
		b.probeRTT.doneAt = 0
	}
	if b.mode == bbrProbeRTT {
		appLimited = true
		switch {
		case b.probeRTT.doneAt == 0 && s.InFlight <= bbrCwndMin*b.mss:
			// At four segments: hold them 200 ms and a round trip.
			b.probeRTT.doneAt = max(s.Now+bbrProbeRTTTime, 1)
			b.probeRTT.roundDone = false
			b.nextRoundDelivered = s.TotalDelivered
		case b.probeRTT.doneAt != 0:
			if b.roundStart {
				b.probeRTT.roundDone = true
			}
			if b.probeRTT.roundDone {
				b.checkProbeRTTDone(s)
			}
		}
	}
	if s.Delivered > 0 {
		b.idleRestart = false
	}
	return appLimited
}

// checkProbeRTTDone ends probe_rtt once its time is up: the window it
// cut comes back, and the next one is due in ten seconds.
func (b *bbr) checkProbeRTTDone(s *RateSample) {
	if b.probeRTT.doneAt == 0 || s.Now <= b.probeRTT.doneAt {
		return
	}
	b.minRTTStamp = s.Now
	b.cwnd = max(b.cwnd, b.priorCwnd)
	b.resetMode()
}

func (b *bbr) updateGains() {
	switch b.mode {
	case bbrStartup:
		b.pacingGain, b.cwndGain = bbrHighGain, bbrHighGain
	case bbrDrain:
		b.pacingGain, b.cwndGain = bbrDrainGain, bbrHighGain
	case bbrProbeBW:
		b.pacingGain, b.cwndGain = bbrPacingGains[b.cycleIdx], bbrCwndGain
		if b.lt.useBw {
			b.pacingGain = bbrUnit
		}
	case bbrProbeRTT:
		b.pacingGain, b.cwndGain = bbrUnit, bbrUnit
	}
}

// saveCwnd notes the last good window, to restore after recovery or
// probe_rtt; one they cut is not good, and does not replace a larger.
func (b *bbr) saveCwnd(cwnd uint32) {
	if b.prevState < bbrRecovery && b.mode != bbrProbeRTT {
		b.priorCwnd = cwnd
	} else {
		b.priorCwnd = max(b.priorCwnd, cwnd)
	}
}

// bdp is bw × RTprop × gain, rounded up to whole segments; the initial
// window before any RTT sample.
func (b *bbr) bdp(bw uint64, gain uint32) uint32 {
	if b.minRTT <= 0 {
		return initialWindow(b.mss)
	}
	w := float64(bw) * b.minRTT.Seconds() * float64(gain) / bbrUnit
	segs := uint64(w+float64(b.mss)-1) / uint64(b.mss)
	return uint32(min(segs*uint64(b.mss), maxCwnd))
}

// minGSOSegments is the fewest segments in a packet at the pacing rate,
// in place of Options.MinGSOSegments (bbr_min_tso_segs): one below 1.2
// Mbit/s, where a packet of two would be a burst of 20 ms or more, two
// above.
func (b *bbr) minGSOSegments(rate uint64) int {
	if rate < bbrMinTSORate {
		return 1
	}
	return 2
}

// tsoSegs is how many segments a packet carries at the pacing rate
// (bbr_tso_segs_goal: about a millisecond's worth, one or two at least).
func (b *bbr) tsoSegs() uint32 {
	bytes := min(b.pacingRate>>10, 1<<16-1-320)
	return uint32(min(max(bytes/uint64(b.mss), uint64(b.minGSOSegments(b.pacingRate))), 0x7f))
}

// quantizationBudget adds room for a packet each in the sender's queue,
// its segmentation and the receiver's batching, rounds to an even number
// of segments (for ACK-every-other), and lets the probe phase's gain
// show even on a small BDP.
func (b *bbr) quantizationBudget(cwnd uint32) uint32 {
	segs := (cwnd+b.mss-1)/b.mss + 3*b.tsoSegs()
	segs = (segs + 1) &^ 1
	if b.mode == bbrProbeBW && b.cycleIdx == 0 {
		segs += 2
	}
	return min(segs*b.mss, maxCwnd)
}

// inflight is the data BBR aims to have in flight at a gain.
func (b *bbr) inflight(bw uint64, gain uint32) uint32 {
	return b.quantizationBudget(b.bdp(bw, gain))
}

// inNetAtEDT estimates what will be in the network when the next packet
// may leave (bbr_packets_in_net_at_edt): what is in flight, with that
// packet when probing, less what BtlBw delivers until then.
func (b *bbr) inNetAtEDT(s *RateSample, inflight uint32) uint32 {
	delivered := uint64(float64(b.bandwidth()) * s.NextDeparture.Seconds())
	at := uint64(inflight)
	if b.pacingGain > bbrUnit {
		at += uint64(b.tsoSegs() * b.mss)
	}
	if delivered >= at {
		return 0
	}
	return uint32(at - delivered)
}

// ackAggregationCwnd is the extra window the ACKs' batching needs, at
// most 100 ms at BtlBw, once the pipe is full.
func (b *bbr) ackAggregationCwnd() uint32 {
	if !b.fullBwReached {
		return 0
	}
	limit := uint64(float64(b.bandwidth()) * bbrExtraAckedMax.Seconds())
	return uint32(min(max(b.extraAcked[0], b.extraAcked[1]), limit))
}

// setCwnd moves the window toward its target, cwnd_gain × BDP: up by
// what the ACK delivered (a slow start), down at once once the pipe was
// full; packet conservation in recovery's first round; four segments in
// probe_rtt.
func (b *bbr) setCwnd(s *RateSample, bw uint64) uint32 {
	cwnd, acked := b.cwnd, s.AckedSacked
	if acked > 0 {
		conserving := false
		cwnd, conserving = b.recoverOrRestore(s, cwnd)
		if !conserving {
			target := b.quantizationBudget(b.bdp(bw, b.cwndGain) + b.ackAggregationCwnd())
			switch {
			case b.fullBwReached:
				cwnd = min(cwnd+acked, target)
			case cwnd < target || s.TotalDelivered < uint64(initialWindow(b.mss)):
				cwnd += acked
			}
			cwnd = max(cwnd, bbrCwndMin*b.mss)
		}
	}
	cwnd = min(cwnd, maxCwnd)
	if b.mode == bbrProbeRTT {
		cwnd = min(cwnd, bbrCwndMin*b.mss)
	}
	return cwnd
}

// recoverOrRestore: a loss takes its bytes from the window; the first
// round of fast recovery sends one for one delivered; leaving recovery
// restores the window from before it. It reports whether packet
// conservation set the window.
func (b *bbr) recoverOrRestore(s *RateSample, cwnd uint32) (uint32, bool) {
	state := bbrOpen
	switch {
	case s.InLoss:
		state = bbrLoss
	case s.InRecovery:
		state = bbrRecovery
	}
	if s.Losses > 0 {
		cwnd = uint32(max(int64(cwnd)-int64(s.Losses), int64(b.mss)))
	}
	switch {
	case state == bbrRecovery && b.prevState != bbrRecovery:
		b.packetConservation = true
		b.nextRoundDelivered = s.TotalDelivered // the round starts now
		cwnd = s.InFlight + s.AckedSacked       // no unused window from before
	case b.prevState >= bbrRecovery && state < bbrRecovery:
		cwnd = max(cwnd, b.priorCwnd)
		b.packetConservation = false
	}
	b.prevState = state
	if b.packetConservation {
		return max(cwnd, s.InFlight+s.AckedSacked), true
	}
	return cwnd, false
}

// ltSample is the policer detector (bbr_lt_bw_sampling): from the first
// loss, intervals of 4 to 16 round trips, each ended by a loss; an
// interval that lost 20% of what it delivered gives a rate, and two such
// rates within 12.5% (or 4 kbit/s) of each other are the policer's. BBR
// then paces at their mean, at gain 1, for 48 round trips.
func (b *bbr) ltSample(s *RateSample) {
	if b.lt.useBw {
		if b.mode == bbrProbeBW && b.roundStart {
			if b.lt.rounds++; b.lt.rounds >= bbrLtMaxRounds {
				b.ltReset()
				b.resetProbeBW()
			}
		}
		return
	}
	if !b.lt.sampling {
		if s.Losses == 0 {
			return // the policer's tokens may not be spent yet
		}
		b.ltResetInterval(s.TotalDelivered, s.DeliveredAt)
		b.lt.sampling = true
	}
	if s.AppLimited {
		b.ltReset()
		return
	}
	if b.roundStart {
		b.lt.rounds++
	}
	switch {
	case b.lt.rounds < bbrLtMinRounds:
		return
	case b.lt.rounds > 4*bbrLtMinRounds:
		b.ltReset()
		return
	case s.Losses == 0:
		return
	}
	lost := b.lost - b.lt.lastLost
	delivered := s.TotalDelivered - b.lt.lastDelivered
	if delivered == 0 || lost*bbrUnit < bbrLtLossThresh*delivered {
		return
	}
	// Linux times the interval in milliseconds.
	t := (s.DeliveredAt - b.lt.lastStamp).Truncate(time.Millisecond)
	if t < time.Millisecond {
		return
	}
	b.ltIntervalDone(uint64(float64(delivered) / t.Seconds()))
}

func (b *bbr) ltIntervalDone(bw uint64) {
	if b.lt.bw != 0 {
		diff := max(bw, b.lt.bw) - min(bw, b.lt.bw)
		if diff*bbrUnit <= bbrLtBwRatio*b.lt.bw || b.rate(diff, bbrUnit) <= bbrLtBwDiff {
			b.lt.bw = (bw + b.lt.bw) / 2
			b.lt.useBw = true
			b.pacingGain = bbrUnit
			b.lt.rounds = 0
			return
		}
	}
	b.lt.bw = bw
	b.ltResetInterval(b.totalDelivered, b.deliveredAt)
}

func (b *bbr) ltResetInterval(delivered uint64, at time.Duration) {
	b.lt.lastStamp = at.Truncate(time.Millisecond)
	b.lt.lastDelivered = delivered
	b.lt.lastLost = b.lost
	b.lt.rounds = 0
}

func (b *bbr) ltReset() {
	b.lt.bw, b.lt.useBw, b.lt.sampling = 0, false, false
	b.ltResetInterval(b.totalDelivered, b.deliveredAt)
}

// note says how the model changed course, for the connection's events.
func (b *bbr) note(from bbrMode) string {
	s := "BBR " + from.String() + " → " + b.mode.String() + ": "
	switch {
	case b.mode == from && b.lt.useBw:
		s = "BBR " + b.mode.String() + ": a token bucket policer: paced at its long-term rate"
	case b.mode == from:
		s = "BBR " + b.mode.String() + ": the policer's rate is dropped after 48 round trips"
	case b.mode == bbrDrain:
		s += "the bandwidth grew less than 25% in 3 round trips: the pipe is full"
	case from == bbrStartup && b.mode == bbrProbeBW:
		// Both of bbr_check_drain's steps on one ACK, as in Linux:
		// startup ended with no more than a BDP in flight (ACKs that
		// came in a bunch, a sender the application held back), so
		// drain has no queue to empty.
		s = "BBR startup → drain → probe_bw: the bandwidth grew less than 25% in 3 round trips: the pipe is full, " +
			"and no more than a BDP is in flight: no queue to drain"
	case b.mode == bbrProbeRTT:
		s += "no lower RTT for 10 s: 4 segments in flight for 200 ms and a round trip"
	case from == bbrProbeRTT:
		s += "the min RTT is measured again"
	case from == bbrDrain:
		s += "the queue startup built is drained"
	}
	return s + " (bw " + bitRate(b.bandwidth()*8) + ", min RTT " + b.minRTT.Round(time.Microsecond).String() +
		", pacing gain " + strconv.FormatFloat(float64(b.pacingGain)/bbrUnit, 'g', 6, 64) + ")"
}

// info is what Info reports of the model (Linux's tcp_bbr_info).
func (b *bbr) info() *BBRInfo {
	return &BBRInfo{
		Mode:       b.mode.String(),
		Bandwidth:  b.bandwidth(),
		MinRTT:     b.minRTT,
		PacingGain: float64(b.pacingGain) / bbrUnit,
		CwndGain:   float64(b.cwndGain) / bbrUnit,
		Policed:    b.lt.useBw,
	}
}

// BBRInfo is the model of a connection under BBR, as Linux's
// tcp_bbr_info (what ss prints as bbr:(bw:...,mrtt:...)).
type BBRInfo struct {
	Mode                 string        // "startup", "drain", "probe_bw" or "probe_rtt"
	Bandwidth            uint64        // BtlBw, bytes a second
	MinRTT               time.Duration // RTprop
	PacingGain, CwndGain float64
	Policed              bool // pacing at a token bucket policer's rate (lt_bw)
}

// maxFilter is a windowed maximum over the last win units of time (here
// round trips), kept as the best three samples of the window's thirds:
// Kathleen Nichols' algorithm, as Linux's lib/minmax.c.
type maxFilter struct {
	s [3]struct{ t, v uint64 }
}

func (m *maxFilter) get() uint64 { return m.s[0].v }

func (m *maxFilter) reset(t, v uint64) {
	for i := range m.s {
		m.s[i].t, m.s[i].v = t, v
	}
}

func (m *maxFilter) update(win, t, v uint64) {
	if v >= m.s[0].v || t-m.s[2].t > win {
		m.reset(t, v) // a new maximum, or nothing left in the window
		return
	}
	switch {
	case v >= m.s[1].v:
		m.s[1].t, m.s[1].v = t, v
		m.s[2] = m.s[1]
	case v >= m.s[2].v:
		m.s[2].t, m.s[2].v = t, v
	}
	dt := t - m.s[0].t
	switch {
	case dt > win:
		// The best expired: the second and third move up, and the
		// new sample is third (twice, if the second expired too).
		m.s[0], m.s[1] = m.s[1], m.s[2]
		m.s[2].t, m.s[2].v = t, v
		if t-m.s[0].t > win {
			m.s[0], m.s[1] = m.s[1], m.s[2]
			m.s[2].t, m.s[2].v = t, v
		}
	case m.s[1].t == m.s[0].t && dt > win/4:
		// A quarter of the window passed with no second choice.
		m.s[1].t, m.s[1].v = t, v
		m.s[2] = m.s[1]
	case m.s[2].t == m.s[1].t && dt > win/2:
		m.s[2].t, m.s[2].v = t, v
	}
}
