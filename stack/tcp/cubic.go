package tcp

import (
	"fmt"
	"math"
	"time"
)

// cubic is CUBIC (RFC 9438), the default, as in Linux: after a congestion
// event the window follows a cubic function of the time since, concave up
// to the window where the loss happened (W_max), then convex beyond it,
// and never below what Reno would have reached (the Reno-friendly region,
// RFC 9438 4.3). Slow start leaves early on a rising RTT, with HyStart++
// (RFC 9406) or, as Options.HyStart chooses, with Linux's HyStart
// (hystart_linux.go). Windows are kept in segments as floats, as RFC 9438
// writes its formulas, and converted to bytes at the edges.
type cubic struct {
	wMax       float64       // W_max: the window before the last reduction (segments), less with fast convergence (4.7)
	k          float64       // K: seconds to climb back to W_max (equation 2)
	epochStart time.Duration // t_epoch; -1 when no congestion-avoidance epoch is running
	cwndEpoch  float64       // cwnd_epoch: the window when the epoch began
	wEst       float64       // W_est: what Reno would have (equation 4)
	cwndPrior  float64       // cwnd_prior: the window when ssthresh was last set (4.3), 0 before

	saved cubicState // before the last OnCongestion, for OnUndo (4.9)

	mode  HyStartMode
	hs    hystart      // HyStartPlusPlus
	linux hystartLinux // HyStartLinux
}

// newCubic makes a connection's CUBIC, leaving slow start as o.HyStart
// says.
func newCubic(o *Options) *cubic {
	c := &cubic{mode: o.HyStart}
	switch c.mode {
	case HyStartLinux:
		c.linux.paced = o.pacingOn()
	case HyStartOff:
	default:
		c.mode = HyStartPlusPlus
	}
	return c
}

// cubicState is what OnUndo restores.
type cubicState struct {
	wMax, k, cwndEpoch, wEst, cwndPrior float64
	epochStart                          time.Duration
}

// The constants of RFC 9438 (section 5 and 4.6): C and β_cubic, and
// α_cubic = 3(1-β)/(1+β), which makes the Reno-friendly estimate grow as
// fast as Reno with β = 0.5 would on average (4.3).
const (
	cubicC     = 0.4
	cubicBeta  = 0.7
	cubicAlpha = 3 * (1 - cubicBeta) / (1 + cubicBeta)
)

func (*cubic) Name() string { return "cubic" }

// wCubic is equation 1: W_cubic(t) = C*(t-K)^3 + W_max, t in seconds.
func (c *cubic) wCubic(t float64) float64 {
	d := t - c.k
	return cubicC*d*d*d + c.wMax
}

func (c *cubic) OnAck(a AckSample) (cwnd, ssthresh uint32) {
	mss := float64(a.MSS)
	cwnd, ssthresh = a.Cwnd, a.Ssthresh
	if cwnd < ssthresh {
		// Slow start: with HyStart++ while it is the first one, or
		// plain (Linux's HyStart has had its say, in OnAcked).
		var left uint32
		if c.mode == HyStartPlusPlus {
			cwnd, ssthresh, left = c.hs.onAck(&a)
		} else {
			cwnd, left = slowStart(&a)
		}
		if cwnd < ssthresh || left == 0 {
			return cwnd, ssthresh
		}
		// What slow start did not use, reaching ssthresh, grows the
		// window in congestion avoidance; an ACK it used up grows
		// nothing more (Linux's tcp_slow_start returns the rest to
		// cubictcp_cong_avoid, which returns when it is 0).
		a.Cwnd, a.Ssthresh, a.Acked = cwnd, ssthresh, left
	}
	// Congestion avoidance (RFC 9438 4.2 to 4.5).
	w := float64(cwnd) / mss
	if c.epochStart < 0 || c.cwndEpoch == 0 {
		// The first ACK of an epoch (4.2): after a congestion event,
		// or leaving slow start without one or after a timeout
		// (OnTimeoutAgain), where W_max is the window now and K is 0
		// (4.8).
		c.epochStart = a.Now
		c.cwndEpoch = w
		c.wEst = w
		if c.cwndPrior == 0 {
			// No congestion event yet: ssthresh was last set as
			// the first slow start ended, at this window (4.3).
			c.cwndPrior = w
		}
		if c.wMax <= w {
			c.wMax = w
			c.k = 0
		} else {
			c.k = math.Cbrt((c.wMax - w) / cubicC) // equation 2
		}
	}
	t := (a.Now - c.epochStart).Seconds()
	// W_est grows by α per window acknowledged; once it reaches
	// cwnd_prior, the window when ssthresh was last set, α is 1, as
	// Reno itself would grow (RFC 9438 4.3; not W_max, which fast
	// convergence and a timeout put lower). Linux's tcp_friendliness
	// keeps α_cubic throughout; we follow the RFC here.
	alpha := cubicAlpha
	if c.wEst >= c.cwndPrior {
		alpha = 1
	}
	c.wEst += alpha * float64(a.Acked) / float64(cwnd)
	if c.wCubic(t) < c.wEst {
		// The Reno-friendly region (4.3).
		w = c.wEst
	} else {
		// Concave or convex region (4.4, 4.5): aim at W_cubic one RTT
		// ahead, between cwnd and 1.5*cwnd, and move there by
		// (target-cwnd)/cwnd segments per segment acknowledged.
		target := c.wCubic(t + a.SRTT.Seconds())
		target = min(max(target, w), 1.5*w)
		w += (target - w) * float64(a.Acked) / float64(cwnd)
	}
	return min(uint32(w*mss), maxCwnd), ssthresh
}

func (c *cubic) OnCongestion(s CongestionSample) uint32 {
	c.saved = cubicState{wMax: c.wMax, k: c.k, cwndEpoch: c.cwndEpoch, wEst: c.wEst, cwndPrior: c.cwndPrior, epochStart: c.epochStart}
	w := float64(s.Cwnd) / float64(s.MSS)
	c.cwndPrior = w
	// Fast convergence (4.7): a flow whose window at a loss is below
	// W_max, as the last loss set it (fast convergence included), releases
	// bandwidth to newer flows, as Linux's bictcp_recalc_ssthresh compares
	// with last_max_cwnd. (RFC 8312 compared with the previous loss's
	// window before this reduction, W_last_max; RFC 9438 dropped it.)
	if w < c.wMax {
		c.wMax = w * (1 + cubicBeta) / 2
	} else {
		c.wMax = w
	}
	c.epochStart = -1
	c.hs.done = true // HyStart++ is for the first slow start only
	if s.Timeout {
		c.OnTimeoutAgain(s)
	}
	// ssthresh = cwnd * β_cubic (4.6), at least two segments.
	return max(uint32(w*cubicBeta*float64(s.MSS)), 2*s.MSS)
}

// OnAcked is where Linux's HyStart sees an ACK (AckObserver, Linux's
// cubictcp_acked): every ACK with a sample, before slow start grows the
// window, and it may end slow start where it stands.
func (c *cubic) OnAcked(a AckSample) uint32 {
	if c.mode != HyStartLinux {
		return a.Ssthresh
	}
	return c.linux.onAck(&a, c.epochYoung(a.Now))
}

// OnTimeoutAgain: after a timeout the curve starts over. The first
// congestion-avoidance stage after it grows from K = 0 and W_max = the
// window where it begins (RFC 9438 4.8), as Linux's cubictcp_state does
// at TCP_CA_Loss (bictcp_reset: last_max_cwnd 0, so bictcp_update takes
// K = 0 and origin_point = cwnd), and Linux's HyStart starts over. Linux
// does both at every timeout, the first of an episode (after ssthresh,
// and here after OnCongestion kept what OnUndo restores) and those that
// follow it or continue fast recovery or CWR (TimeoutFollower).
func (c *cubic) OnTimeoutAgain(s CongestionSample) {
	c.wMax, c.k, c.epochStart, c.cwndEpoch, c.wEst = 0, 0, -1, 0, 0
	if c.mode == HyStartLinux {
		c.linux.reset(s.Now)
	}
}

// OnSendStart: the application sends again after the connection ran dry.
// The idle spell is not time on the curve: the epoch moves forward by it,
// never past now, so the window goes on from where it was along the same
// curve, as Linux's bictcp_cwnd_event does at CA_EVENT_TX_START
// ("tcp_cubic: better follow cubic curve after idle period", 2015).
// Otherwise t (4.2) counts the spell and the first ACK after it aims at
// W_cubic seconds ahead, 1.5 times the window (4.4); RFC 9438 5.8 says
// CUBIC does not grow the window while the application limits the flow.
func (c *cubic) OnSendStart(now, idle time.Duration) {
	if c.epochStart < 0 || c.cwndEpoch == 0 || idle <= 0 {
		return
	}
	c.epochStart = min(c.epochStart+idle, now)
}

// Note tells what HyStart did on the last ACK (Noter).
func (c *cubic) Note() string {
	n := c.hs.note + c.linux.note // one of them at most
	c.hs.note, c.linux.note = "", ""
	return n
}

// epochYoung reports whether a congestion-avoidance epoch began less than
// a second ago: Linux's HyStart takes no RTT sample then (hystart_linux.go).
func (c *cubic) epochYoung(now time.Duration) bool {
	return c.epochStart >= 0 && c.cwndEpoch != 0 && now-c.epochStart < hlEpochQuiet
}

func (c *cubic) OnUndo() {
	st := c.saved
	c.wMax, c.k, c.cwndEpoch, c.wEst, c.cwndPrior, c.epochStart = st.wMax, st.k, st.cwndEpoch, st.wEst, st.cwndPrior, st.epochStart
}

// hystart is HyStart++ (RFC 9406): in slow start, each round's minimum
// RTT is compared with the last round's; a rise of more than RttThresh
// means a queue is building, and slow start gives way to Conservative
// Slow Start (CSS), which grows four times slower for CSS_ROUNDS rounds
// before congestion avoidance; if the RTT falls back, slow start resumes.
type hystart struct {
	done           bool // left for good: after CSS, or after a congestion event
	inCSS          bool
	cssRounds      int
	cssBaseline    time.Duration
	lastRoundMin   time.Duration // 0: none yet
	curRoundMin    time.Duration // 0: none yet
	rttSampleCount int
	// note says what the last onAck changed, for the glass box
	// (cubic's Note); empty if nothing.
	note string
}

// The constants of RFC 9406 4.3.
const (
	hsMinRTTThresh    = 4 * time.Millisecond
	hsMaxRTTThresh    = 16 * time.Millisecond
	hsMinRTTDivisor   = 8
	hsNRTTSample      = 8
	hsCSSGrowthDiv    = 4
	hsCSSRounds       = 5
	hsInfiniteMinimum = time.Duration(math.MaxInt64)
)

// onAck grows the window in slow start and returns it with ssthresh and
// the bytes acknowledged that slow start left to congestion avoidance.
func (h *hystart) onAck(a *AckSample) (cwnd, ssthresh, left uint32) {
	if h.done {
		cwnd, left := slowStart(a)
		return cwnd, a.Ssthresh, left
	}
	if a.RoundStart {
		h.lastRoundMin = h.curRoundMin
		h.curRoundMin = 0
		h.rttSampleCount = 0
		if h.inCSS {
			h.cssRounds++
			if h.cssRounds >= hsCSSRounds {
				// Enough CSS rounds: congestion avoidance.
				h.done, h.inCSS = true, false
				h.note = fmt.Sprintf("HyStart++: %d rounds of conservative slow start: congestion avoidance, ssthresh = cwnd %d (RFC 9406 4.2)",
					hsCSSRounds, a.Cwnd)
				return a.Cwnd, a.Cwnd, a.Acked
			}
		}
	}
	// RFC 9406 4.2 grows the window first, then takes the RTT sample
	// and checks for a rise: the ACK that brings the eighth sample of
	// a round still grows at the rate it arrived in.
	//
	// N is not capped at L = 8 segments here, where RFC 9406 4.3 caps
	// it for a sender that does not pace: we follow Linux, whose slow
	// start grows by all a stretch ACK acknowledges (tcp_slow_start,
	// since 2015), as slowStart does after HyStart++. Receivers that
	// coalesce (GRO, ACK per burst) make ACKs of more than 8 segments
	// common, and a cap would slow slow start by what they thin out.
	if h.inCSS {
		cwnd = min(a.Cwnd+a.Acked/hsCSSGrowthDiv, maxCwnd)
	} else {
		cwnd, left = slowStart(a)
	}
	if a.RTT > 0 {
		if h.curRoundMin == 0 || a.RTT < h.curRoundMin {
			h.curRoundMin = a.RTT
		}
		h.rttSampleCount++
	}
	if h.rttSampleCount < hsNRTTSample || h.curRoundMin == 0 {
		return cwnd, a.Ssthresh, left
	}
	if h.inCSS {
		if h.curRoundMin < h.cssBaseline {
			// The RTT came down: the rise was spurious. Back to
			// slow start.
			h.note = fmt.Sprintf("HyStart++: the round's lowest RTT fell back to %v, below %v: slow start again (RFC 9406 4.2)",
				h.curRoundMin.Round(time.Microsecond), h.cssBaseline.Round(time.Microsecond))
			h.inCSS = false
			h.cssBaseline = 0
		}
		return cwnd, a.Ssthresh, left
	}
	if h.lastRoundMin > 0 {
		thresh := min(max(h.lastRoundMin/hsMinRTTDivisor, hsMinRTTThresh), hsMaxRTTThresh)
		if h.curRoundMin >= h.lastRoundMin+thresh {
			h.inCSS = true
			h.cssRounds = 0
			h.cssBaseline = h.curRoundMin
			h.note = fmt.Sprintf("HyStart++: the round's lowest RTT rose from %v to %v, by RttThresh %v or more: conservative slow start, a quarter as fast (RFC 9406 4.2)",
				h.lastRoundMin.Round(time.Microsecond), h.curRoundMin.Round(time.Microsecond), thresh.Round(time.Microsecond))
		}
	}
	return cwnd, a.Ssthresh, left
}
