package tcp

import (
	"fmt"
	"time"
)

// hystartLinux is the HyStart that Linux's CUBIC uses to leave slow start
// (net/ipv4/tcp_cubic.c, with its defaults: hystart=1, hystart_detect=3,
// hystart_low_window=16, hystart_ack_delta_us=2000), after Ha and Rhee,
// "Taming the Elephants: New TCP Slow Start" (2011). Options.HyStart
// chooses it in place of HyStart++ (RFC 9406, hystart in cubic.go); the
// upstream packetdrill scripts, Linux's own tests, expect it.
//
// Two signs that slow start has filled the path, both watched per round
// trip:
//
//   - an ACK train: the ACKs of a round, each within 2 ms of the one
//     before, have kept coming for longer than half the minimum RTT
//     (the whole minimum RTT when pacing spreads the round out): the
//     window now fills the path (hystart_update, HYSTART_ACK_TRAIN);
//   - a delay increase: the lowest RTT of the round, once it has more
//     than 8 samples, lies above the minimum RTT by more than an eighth
//     of it, held between 4 and 16 ms: a queue is building
//     (hystart_update, HYSTART_DELAY).
//
// Either sets ssthresh to the window as it is, before the ACK grows it,
// and congestion avoidance begins on that ACK. Unlike HyStart++ there is
// no conservative phase and nothing undoes the exit. Once it has found
// an exit, HyStart rests until a retransmission timeout resets it
// (cubictcp_state at TCP_CA_Loss); until then it watches every slow start
// of the connection, a restart after idle's too.
//
// HyStart sees every ACK that delivers data with a round-trip sample, in
// recovery too, before slow start grows the window (cubic's OnAcked, an
// AckObserver: Linux's pkts_acked from tcp_clean_rtx_queue), and the
// sample is the newest delivered segment's RTT, as Linux's ca_rtt_us.
// Where tapstack differs from Linux: an ACK that covers a retransmission
// gives no sample at all (Karn's rule as the engine applies it, ackRTT),
// where Linux still times the segments it newly SACKs. The rounds are the
// engine's (AckSample.RoundStart: the ACK that covers what was sent when
// the round began), which end where Linux's do.
type hystartLinux struct {
	// paced: the options pace every connection (Options.Pacing or
	// MaxPacingRate: Linux's fq qdisc, SK_PACING_FQ), so an ACK train
	// may last a whole minimum RTT before it counts. A connection paced
	// alone, by SetMaxPacingRate (Linux's SK_PACING_NEEDED), is not seen
	// here and counts as unpaced.
	paced bool
	// found: an exit was found (Linux's ca->found); HyStart rests.
	found bool
	// inRound: a round is under way. The engine marks the ACK that
	// begins a new round (AckSample.RoundStart); the round begins here
	// on the first ACK from then on that carries a sample, as Linux's
	// bictcp_hystart_reset runs only from hystart_update, which only
	// such an ACK reaches.
	inRound bool
	// roundStart is when the round began (round_start), lastAck the
	// last ACK of its train so far (last_ack).
	roundStart, lastAck time.Duration
	// currRTT is the round's lowest RTT so far (curr_rtt), 0 if none;
	// samples counts its samples up to hlMinSamples (sample_cnt).
	currRTT time.Duration
	samples int
	// delayMin is the lowest RTT seen (delay_min), 0 if none: since the
	// connection began or the last timeout.
	delayMin time.Duration
	// note says how the last onAck left slow start, for the glass box
	// (cubic's Note); empty if it did not.
	note string
}

// Linux's tcp_cubic settings, at their defaults.
const (
	hlLowWindow  = 16                    // hystart_low_window: segments below which HyStart waits
	hlAckDelta   = 2 * time.Millisecond  // hystart_ack_delta_us: the most between two ACKs of a train
	hlMinSamples = 8                     // HYSTART_MIN_SAMPLES: samples before a round's lowest RTT counts
	hlDelayMin   = 4 * time.Millisecond  // HYSTART_DELAY_MIN
	hlDelayMax   = 16 * time.Millisecond // HYSTART_DELAY_MAX
	hlAckDelay   = time.Millisecond      // hystart_ack_delay's cap
	hlGSOMax     = 64 << 10              // sk_gso_max_size of a device that sets none larger (GSO_LEGACY_MAX_SIZE)
	hlEpochQuiet = time.Second           // samples are ignored this long after a congestion-avoidance epoch begins (HZ)
	hlClockTick  = time.Microsecond      // Linux's HyStart clock and RTT samples: microseconds
)

// onAck takes an ACK in slow start or congestion avoidance before the
// window grows, and returns ssthresh: the window itself where HyStart
// finds the exit. epochYoung says a congestion-avoidance epoch began less
// than a second ago.
func (h *hystartLinux) onAck(a *AckSample, epochYoung bool) (ssthresh uint32) {
	if a.RoundStart {
		h.inRound = false
	}
	// cubictcp_acked: an ACK without a sample says nothing, and the
	// samples of the first second of an epoch (just after a recovery)
	// are left out of the minimum, which the recovery's queue would
	// inflate. Linux measures that second in jiffies; tapstack on its
	// own clock.
	if a.RTT <= 0 || epochYoung {
		return a.Ssthresh
	}
	// Linux's samples and HyStart's clock are in microseconds (the
	// ACK's tcp_mstamp; older kernels timed the train in jiffies);
	// tapstack's are finer, and are cut to microseconds so that the
	// comparisons fall as Linux's do.
	delay := max(a.RTT.Truncate(hlClockTick), hlClockTick)
	if h.delayMin == 0 || delay < h.delayMin {
		h.delayMin = delay
	}
	if h.found || a.Cwnd >= a.Ssthresh {
		return a.Ssthresh
	}
	// hystart_update, from here on.
	now := a.Now.Truncate(hlClockTick)
	if !h.inRound {
		h.beginRound(now)
	}
	// Below hystart_low_window, too few segments for either sign: the
	// round is counted, its samples are not. Linux has checked the
	// window here, after a round begins, since its fix of January 2025
	// ("tcp_cubic: fix incorrect HyStart round start detection"); from
	// late 2023 until then it checked before, so that no round began
	// below 16 segments and the first one's end was set later. The
	// upstream cubic-bulk-166k scripts were written for that order.
	if a.Cwnd/a.MSS < hlLowWindow {
		return a.Ssthresh
	}
	// The ACK train (HYSTART_ACK_TRAIN). An ACK more than 2 ms after the
	// train's last breaks the train for the rest of the round.
	if now-h.lastAck <= hlAckDelta {
		h.lastAck = now
		// The minimum RTT, plus a cushion for the TSO/GRO batching a
		// fast flow's later rounds see and its first did not
		// (hystart_ack_delay); halved unless paced. A round sent back
		// to back comes back spaced by the bottleneck: a train that
		// has lasted half the minimum RTT carried half the path's
		// bandwidth-delay product, so the round's flight was at least
		// that, and slow start has added as much again on these ACKs:
		// the window now fills the path. A paced round was spread out
		// by the sender itself (slow start paces at twice the window
		// per RTT, over up to half an RTT), and its train is longer
		// by that much without meaning more.
		threshold := h.delayMin + hlAckDelayFor(a)
		what := "the minimum RTT"
		if !h.paced {
			threshold = (threshold / hlClockTick / 2) * hlClockTick
			what = "half the minimum RTT"
		}
		if train := now - h.roundStart; train > threshold {
			return h.exit(a, fmt.Sprintf("HyStart (Linux): ACK train of %v reached %s %v (%v with the ACK delay allowance): ssthresh = cwnd %d (%d segments), congestion avoidance",
				train, what, h.delayMin, threshold, a.Cwnd, a.Cwnd/a.MSS))
		}
	}
	// The delay increase (HYSTART_DELAY). The round's lowest RTT takes
	// in every sample, the ninth and later too: a sample that lowers the
	// minimum RTT lowers it as well, so that a falling RTT does not end
	// slow start (Linux's fix of June 2020, "tcp_cubic: fix spurious
	// HYSTART_DELAY exit upon drop in min RTT"). It counts from the
	// ninth sample on: eight make the round's minimum first.
	if h.currRTT == 0 || delay < h.currRTT {
		h.currRTT = delay
	}
	if h.samples < hlMinSamples {
		h.samples++
		return a.Ssthresh
	}
	// delay_min/8 in whole microseconds, between 4 and 16 ms
	// (HYSTART_DELAY_THRESH); the round's RTT must exceed it.
	thresh := min(max((h.delayMin/hlClockTick>>3)*hlClockTick, hlDelayMin), hlDelayMax)
	if h.currRTT > h.delayMin+thresh {
		return h.exit(a, fmt.Sprintf("HyStart (Linux): the round's lowest RTT %v, after %d samples, is above the minimum RTT %v by more than %v: ssthresh = cwnd %d (%d segments), congestion avoidance",
			h.currRTT, h.samples+1, h.delayMin, thresh, a.Cwnd, a.Cwnd/a.MSS))
	}
	return a.Ssthresh
}

// exit ends slow start where the window stands, as Linux's HyStart does
// on either sign: ssthresh = cwnd, and CUBIC's congestion avoidance takes
// the ACK (tcp_slow_start is no longer reached).
func (h *hystartLinux) exit(a *AckSample, note string) uint32 {
	h.found = true
	h.note = note
	return a.Cwnd
}

// beginRound starts a round (bictcp_hystart_reset): the train and the
// round's lowest RTT start again.
func (h *hystartLinux) beginRound(now time.Duration) {
	h.inRound = true
	h.roundStart, h.lastAck = now, now
	h.currRTT, h.samples = 0, 0
}

// reset forgets what HyStart learned, as Linux does when a retransmission
// timeout enters TCP_CA_Loss (cubictcp_state: bictcp_reset clears found
// and delay_min, bictcp_hystart_reset starts a round): the slow start
// that follows the timeout may find an exit of its own. Its round runs
// until the engine's next round begins; Linux's until what was sent
// before the timeout is acknowledged, a little later at most.
func (h *hystartLinux) reset(now time.Duration) {
	*h = hystartLinux{paced: h.paced}
	h.beginRound(now.Truncate(hlClockTick))
}

// hlAckDelayFor is Linux's hystart_ack_delay: the time a 64 KiB GSO
// packet takes four times over at the pacing rate, at most 1 ms, 0 before
// there is a rate. The rate is Linux's sk_pacing_rate as the ACK before
// left it (tcp_update_pacing_rate, which Linux keeps whether or not it
// paces): the window per smoothed RTT, at 200% while the window is below
// half of ssthresh, 120% after (Linux takes what is in flight where it is
// more than the window). SO_MAX_PACING_RATE's cap is not applied: it could
// only lengthen the delay, which the 1 ms cap bounds on all but the
// fastest paths.
func hlAckDelayFor(a *AckSample) time.Duration {
	srtt := a.SRTT / hlClockTick
	if srtt <= 0 || a.MSS == 0 {
		return 0
	}
	ratio := uint64(120)
	if a.Cwnd < a.Ssthresh/2 {
		ratio = 200
	}
	segs := uint64(a.Cwnd / a.MSS)
	rate := uint64(a.MSS) * segs * ratio / 100 * uint64(time.Second/hlClockTick) / uint64(srtt) // bytes a second
	if rate == 0 {
		return 0
	}
	us := uint64(hlGSOMax) * 4 * uint64(time.Second/hlClockTick) / rate
	return min(time.Duration(us)*hlClockTick, hlAckDelay)
}
