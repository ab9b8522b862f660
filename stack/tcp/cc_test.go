package tcp

import (
	"math"
	"testing"
	"time"
)

// ccFlow drives a congestion control algorithm as a bulk sender would
// see it: every round trip, the whole window is acknowledged, one segment
// per ACK.
type ccFlow struct {
	cc             CongestionControl
	cwnd, ssthresh uint32
	mss            uint32
	now            time.Duration
	rtt            time.Duration
}

// round acknowledges one window, spread over one round trip.
func (f *ccFlow) round() {
	n := int(f.cwnd / f.mss)
	step := f.rtt / time.Duration(max(n, 1))
	for i := range n {
		f.now += step
		f.cwnd, f.ssthresh = f.cc.OnAck(AckSample{Now: f.now, Acked: f.mss, Cwnd: f.cwnd, Ssthresh: f.ssthresh,
			MSS: f.mss, RTT: f.rtt, MinRTT: f.rtt, SRTT: f.rtt, RoundStart: i == 0})
	}
}

func (f *ccFlow) loss() {
	f.ssthresh = f.cc.OnCongestion(CongestionSample{Now: f.now, Cwnd: f.cwnd, Ssthresh: f.ssthresh, InFlight: f.cwnd, MSS: f.mss})
	f.cwnd = f.ssthresh // as at the end of fast recovery
}

func (f *ccFlow) segments() float64 { return float64(f.cwnd) / float64(f.mss) }

// TestCubicCurve: after a loss at W_max = 100 segments, CUBIC (RFC 9438)
// sets ssthresh = 0.7*W_max (4.6), then grows along W_cubic(t) =
// C*(t-K)^3 + W_max with K = cbrt(W_max*(1-β)/C) (equations 1 and 2):
// concave up to W_max, flat around t = K, convex beyond. The window after
// each round trip is checked against the formula at several points.
func TestCubicCurve(t *testing.T) {
	const mss = 1448
	f := &ccFlow{cc: &cubic{}, mss: mss, cwnd: 100 * mss, ssthresh: 50 * mss, rtt: 100 * time.Millisecond}
	f.cc.(*cubic).hs.done = true
	f.loss()
	if f.ssthresh != 70*mss {
		t.Fatalf("ssthresh %d after the loss, want 0.7*W_max = %d", f.ssthresh, 70*mss)
	}
	wMax := 100.0
	k := math.Cbrt(wMax * (1 - cubicBeta) / cubicC) // 4.217 s
	epoch := f.now
	wCubic := func(t float64) float64 { return cubicC*math.Pow(t-k, 3) + wMax }
	checked := 0
	for range 120 {
		f.round()
		el := (f.now - epoch).Seconds()
		// The window aims at W_cubic one RTT ahead (4.4): compare with
		// the formula at t+RTT, within 3%.
		want := wCubic(el + f.rtt.Seconds())
		got := f.segments()
		for _, at := range []float64{k / 2, k, 1.5 * k, 2 * k} {
			if math.Abs(el-at) < f.rtt.Seconds()/2 {
				checked++
				if math.Abs(got-want)/want > 0.03 {
					t.Errorf("at t = %.2f s (%.2f K): cwnd %.1f segments, W_cubic(t+RTT) = %.1f", el, el/k, got, want)
				}
			}
		}
	}
	if checked < 4 {
		t.Fatalf("checked %d points, want 4", checked)
	}
}

// TestCubicRenoFriendly: on a short path with a small window, Reno would
// grow faster than the cubic curve, which stays flat near W_max for K =
// 1.96 s here; CUBIC then follows W_est (RFC 9438 4.3): α_cubic = 0.53
// segments per round trip while W_est is below cwnd_prior (the window at
// the loss, W_max here), one segment (α = 1) once it passed it.
func TestCubicRenoFriendly(t *testing.T) {
	const mss = 1448
	f := &ccFlow{cc: &cubic{}, mss: mss, cwnd: 10 * mss, ssthresh: 5 * mss, rtt: time.Millisecond}
	f.cc.(*cubic).hs.done = true
	f.loss() // W_max 10, cwnd 7
	start := f.segments()
	for range 5 {
		f.round()
	}
	if grown := f.segments() - start; math.Abs(grown-5*cubicAlpha) > 0.5 {
		t.Errorf("grew %.2f segments in 5 round trips below W_max; want about 5*α_cubic = %.2f", grown, 5*cubicAlpha)
	}
	for range 3 {
		f.round() // W_est passes W_max
	}
	start = f.segments()
	for range 10 {
		f.round()
	}
	if grown := f.segments() - start; grown < 9 || grown > 11 {
		t.Errorf("grew %.1f segments in 10 round trips above W_max; want about 10 (α = 1)", grown)
	}
}

// TestCubicFastConvergence: a second loss below the last W_max lowers
// W_max further, to cwnd*(1+β)/2 (RFC 9438 4.7), releasing bandwidth.
func TestCubicFastConvergence(t *testing.T) {
	c := &cubic{}
	c.OnCongestion(CongestionSample{Cwnd: 100 * 1000, MSS: 1000})
	c.OnCongestion(CongestionSample{Cwnd: 80 * 1000, MSS: 1000})
	if want := 80 * (1 + cubicBeta) / 2; math.Abs(c.wMax-want) > 1e-9 {
		t.Errorf("W_max %.2f after the second loss, want %.2f", c.wMax, want)
	}
	c.OnUndo()
	if c.wMax != 100 {
		t.Errorf("W_max %.2f after undo, want 100 again (4.9)", c.wMax)
	}
}

// TestCubicRenoFriendlyUntilCwndPrior: W_est grows by α_cubic per window
// until it reaches cwnd_prior, the window when ssthresh was last set, and
// only then by one segment (RFC 9438 4.3), not once it reaches W_max,
// which fast convergence (4.7) puts below cwnd_prior. (Linux's
// tcp_friendliness keeps α_cubic throughout; cubic.go follows the RFC
// here.) Losses at 100, then 90 segments: W_max 76.5, cwnd_prior 90,
// ssthresh 63. The window is held at 63 segments and acknowledged one
// segment per ACK, a microsecond apart, so that W_cubic stays far below
// W_est and only W_est is looked at: between 76.5 and 90 it grows by
// α_cubic per window acknowledged, above 90 by one.
func TestCubicRenoFriendlyUntilCwndPrior(t *testing.T) {
	const mss = 1000
	c := &cubic{epochStart: -1}
	c.hs.done = true
	c.OnCongestion(CongestionSample{Cwnd: 100 * mss, Ssthresh: ^uint32(0), InFlight: 100 * mss, MSS: mss})
	ssthresh := c.OnCongestion(CongestionSample{Cwnd: 90 * mss, Ssthresh: 70 * mss, InFlight: 90 * mss, MSS: mss})
	if math.Abs(c.wMax-76.5) > 1e-9 || c.cwndPrior != 90 {
		t.Fatalf("after the second loss: W_max %.2f, cwnd_prior %.2f; want 76.5 (fast convergence), 90", c.wMax, c.cwndPrior)
	}
	now := time.Duration(0)
	var below, above int
	for n := 0; n < 100000 && c.wEst < 95; n++ {
		now += time.Microsecond
		before := c.wEst
		c.OnAck(AckSample{Now: now, Acked: mss, Cwnd: ssthresh, Ssthresh: ssthresh, MSS: mss, RTT: time.Millisecond, SRTT: time.Millisecond})
		perWindow := (c.wEst - before) * float64(ssthresh) / mss
		switch {
		case before > c.wMax && before < 90:
			below++
			if math.Abs(perWindow-cubicAlpha) > 1e-6 {
				t.Fatalf("W_est %.2f, between W_max %.2f and cwnd_prior 90: grows by %.3f per window, want α_cubic = %.3f (RFC 9438 4.3)", before, c.wMax, perWindow, cubicAlpha)
			}
		case before >= 90:
			above++
			if math.Abs(perWindow-1) > 1e-6 {
				t.Fatalf("W_est %.2f, past cwnd_prior 90: grows by %.3f per window, want 1 (RFC 9438 4.3)", before, perWindow)
			}
		}
	}
	if below == 0 || above == 0 {
		t.Errorf("%d ACKs with W_est between W_max and cwnd_prior, %d past it; want some of each", below, above)
	}
	c.OnUndo()
	if c.cwndPrior != 100 {
		t.Errorf("cwnd_prior %.2f after undo, want 100 again (4.9)", c.cwndPrior)
	}
}

// TestCubicFastConvergenceFromWMax: fast convergence compares the window
// at a loss with W_max as the last loss set it, fast convergence
// included (RFC 9438 4.7, as Linux's bictcp_recalc_ssthresh compares
// with last_max_cwnd), not with the last loss's window before reduction
// (RFC 8312's W_last_max). Losses at 100, 90 and 80 segments: W_max 100;
// 90 is below it, so 90*(1+β)/2 = 76.5; 80 is not below 76.5, so 80.
func TestCubicFastConvergenceFromWMax(t *testing.T) {
	const mss = 1000
	c := &cubic{}
	c.hs.done = true
	for _, step := range []struct{ cwnd, wMax float64 }{{100, 100}, {90, 76.5}, {80, 80}} {
		c.OnCongestion(CongestionSample{Cwnd: uint32(step.cwnd * mss), Ssthresh: ^uint32(0), InFlight: uint32(step.cwnd * mss), MSS: mss})
		if math.Abs(c.wMax-step.wMax) > 1e-9 {
			t.Errorf("loss at %.0f segments: W_max %.2f, want %.2f (RFC 9438 4.7)", step.cwnd, c.wMax, step.wMax)
		}
	}
}

// TestCubicTimeoutRestartsCurve: after a retransmission timeout, the
// first congestion-avoidance stage grows along W_cubic(t) = C*t^3 +
// cwnd_epoch, with K = 0 and W_max = the window where it begins (RFC 9438
// 4.8), as Linux's cubictcp_state resets the curve at TCP_CA_Loss
// (bictcp_reset), not along the curve towards the W_max of the window
// the timeout cut: after a timeout at 100 segments, slow start to
// ssthresh = 70 and congestion avoidance from there, K = 0 and W_max =
// 70, not K = 4.2 s and W_max = 100. A timeout that continues an episode
// (after CWR, OnTimeoutAgain only) resets it too, as Linux does at every
// TCP_CA_Loss; an undo restores the curve from before the episode.
func TestCubicTimeoutRestartsCurve(t *testing.T) {
	const mss = 1000
	ca := func(c *cubic, cwnd, ssthresh uint32) {
		c.OnAck(AckSample{Now: 10 * time.Second, Acked: mss, Cwnd: cwnd, Ssthresh: ssthresh, MSS: mss, RTT: 100 * time.Millisecond, SRTT: 100 * time.Millisecond})
	}
	c := &cubic{epochStart: -1}
	c.hs.done = true
	ssthresh := c.OnCongestion(CongestionSample{Cwnd: 100 * mss, Ssthresh: ^uint32(0), InFlight: 100 * mss, MSS: mss, Timeout: true})
	if ssthresh != 70*mss {
		t.Fatalf("ssthresh %d after the timeout, want 70 segments (4.6)", ssthresh)
	}
	ca(c, 70*mss, ssthresh)
	if c.k != 0 || math.Abs(c.wMax-70) > 0.1 || c.cwndEpoch != 70 {
		t.Errorf("first congestion avoidance after a timeout: K = %.3f s, W_max = %.2f, cwnd_epoch = %.2f; want K = 0, W_max = cwnd_epoch = 70 (RFC 9438 4.8)", c.k, c.wMax, c.cwndEpoch)
	}
	c.OnUndo()
	if c.wMax != 0 || c.epochStart != -1 {
		t.Errorf("after undo: W_max %.2f, epoch start %v; want 0 and none, as before the timeout", c.wMax, c.epochStart)
	}

	// A loss at 120 segments, then fast recovery at 100 (W_max 85 by
	// fast convergence, ssthresh 70) and a timeout before it ends: the
	// timeout continues the episode (OnTimeoutAgain alone, as within
	// CWR), and the curve starts over; an undo of the episode brings
	// back the W_max of the loss at 120.
	c = &cubic{epochStart: -1}
	c.hs.done = true
	c.OnCongestion(CongestionSample{Cwnd: 120 * mss, Ssthresh: ^uint32(0), InFlight: 120 * mss, MSS: mss})
	ssthresh = c.OnCongestion(CongestionSample{Cwnd: 100 * mss, Ssthresh: 84 * mss, InFlight: 100 * mss, MSS: mss})
	c.OnTimeoutAgain(CongestionSample{Cwnd: 80 * mss, Ssthresh: ssthresh, InFlight: 80 * mss, MSS: mss, Timeout: true})
	ca(c, 70*mss, ssthresh)
	if c.k != 0 || math.Abs(c.wMax-70) > 0.1 {
		t.Errorf("first congestion avoidance after a timeout within fast recovery: K = %.3f s, W_max = %.2f; want K = 0, W_max = 70 (RFC 9438 4.8)", c.k, c.wMax)
	}
	c.OnUndo()
	if c.wMax != 120 {
		t.Errorf("after undo: W_max %.2f, want 120 (4.9)", c.wMax)
	}
}

// TestCubicSendStartShiftsEpoch: when the application sends again after
// an idle spell, CUBIC's epoch moves forward by the spell, and never past
// now, as Linux's bictcp_cwnd_event at CA_EVENT_TX_START; with no epoch
// running there is nothing to move. Reno and BBR do not hear of it.
func TestCubicSendStartShiftsEpoch(t *testing.T) {
	c := &cubic{epochStart: 5 * time.Second, cwndEpoch: 50}
	c.OnSendStart(20*time.Second, 10*time.Second)
	if c.epochStart != 15*time.Second {
		t.Errorf("epoch start %v after 10 s idle, want 15s", c.epochStart)
	}
	c.OnSendStart(20*time.Second, 30*time.Second)
	if c.epochStart != 20*time.Second {
		t.Errorf("epoch start %v after 30 s idle, want 20s: never past now", c.epochStart)
	}
	c = &cubic{epochStart: -1}
	c.OnSendStart(20*time.Second, 10*time.Second)
	if c.epochStart != -1 {
		t.Errorf("epoch start %v with no epoch running, want none", c.epochStart)
	}
	for _, cc := range []CongestionControl{reno{}, newBBR()} {
		if _, ok := cc.(SendStarter); ok {
			t.Errorf("%s is a SendStarter", cc.Name())
		}
	}
}

// TestHyStartPlusPlus: in slow start the window doubles every round trip
// while the RTT stays flat. When a round's minimum RTT rises by more than
// RttThresh = clamp(lastRoundMinRTT/8, 4 ms, 16 ms) over the last round's
// (RFC 9406 4.2), slow start gives way to Conservative Slow Start, which
// grows by a quarter of what is acknowledged, and after CSS_ROUNDS = 5
// rounds to congestion avoidance, ssthresh = cwnd.
func TestHyStartPlusPlus(t *testing.T) {
	const mss = 1000
	f := &ccFlow{cc: &cubic{}, mss: mss, cwnd: 10 * mss, ssthresh: ^uint32(0), rtt: 40 * time.Millisecond}
	for range 3 {
		before := f.cwnd
		f.round()
		if f.cwnd != 2*before {
			t.Fatalf("slow start: cwnd %d after a round from %d, want doubled", f.cwnd, before)
		}
	}
	// The queue builds: +5 ms is below the threshold (40/8 = 5 ms,
	// clamped to at least 4: 5 ms is just at it, so +4 ms is not).
	f.rtt += 4 * time.Millisecond
	before := f.cwnd
	f.round()
	if f.cwnd != 2*before || f.cc.(*cubic).hs.inCSS {
		t.Fatalf("RTT +4 ms (below RttThresh 5 ms): cwnd %d from %d, CSS %v; want still slow start", f.cwnd, before, f.cc.(*cubic).hs.inCSS)
	}
	f.rtt += 6 * time.Millisecond // +6 ms over the last round: above
	f.round()
	h := &f.cc.(*cubic).hs
	if !h.inCSS {
		t.Fatalf("RTT +6 ms over the last round: not in CSS")
	}
	before = f.cwnd
	f.round()
	if grew := f.cwnd - before; grew > before/4+mss || grew < before/4-mss {
		t.Errorf("CSS grew %d in a round from %d, want about a quarter", grew, before)
	}
	for range hsCSSRounds {
		f.round()
	}
	if f.ssthresh != f.cwnd && f.ssthresh > f.cwnd {
		t.Errorf("after %d CSS rounds: ssthresh %d, cwnd %d; want congestion avoidance (ssthresh <= cwnd)", hsCSSRounds, f.ssthresh, f.cwnd)
	}
	if !h.done {
		t.Errorf("HyStart++ still on after CSS")
	}
}

// TestHyStartPlusPlusFallsBack: a rise that the next round takes back
// was not a queue: conservative slow start gives way to slow start
// again (RFC 9406 4.2), and Note says each move once.
func TestHyStartPlusPlusFallsBack(t *testing.T) {
	const mss = 1000
	c := &cubic{}
	f := &ccFlow{cc: c, mss: mss, cwnd: 10 * mss, ssthresh: ^uint32(0), rtt: 40 * time.Millisecond}
	f.round()
	f.round()
	if n := c.Note(); n != "" {
		t.Fatalf("note %q with a flat RTT, want none", n)
	}
	f.rtt = 50 * time.Millisecond
	f.round()
	if n, want := c.Note(), "HyStart++: the round's lowest RTT rose from 40ms to 50ms, by RttThresh 5ms or more: conservative slow start, a quarter as fast (RFC 9406 4.2)"; n != want {
		t.Fatalf("note %q, want %q", n, want)
	}
	if n := c.Note(); n != "" {
		t.Fatalf("note %q taken twice", n)
	}
	f.rtt = 40 * time.Millisecond
	f.round()
	if n, want := c.Note(), "HyStart++: the round's lowest RTT fell back to 40ms, below 50ms: slow start again (RFC 9406 4.2)"; n != want {
		t.Fatalf("note %q, want %q", n, want)
	}
	if c.hs.inCSS || c.hs.done {
		t.Errorf("after the fall: CSS %v, done %v; want slow start", c.hs.inCSS, c.hs.done)
	}
}

// TestRenoAvoidance: Reno grows one segment per round trip in congestion
// avoidance (RFC 5681 3.1) and halves FlightSize on a loss.
func TestRenoAvoidance(t *testing.T) {
	const mss = 1000
	f := &ccFlow{cc: reno{}, mss: mss, cwnd: 20 * mss, ssthresh: 20 * mss, rtt: 10 * time.Millisecond}
	for range 10 {
		f.round()
	}
	// A little less than one segment per round: the window grows
	// during the round, so each ACK adds a little less (mss*mss/cwnd).
	if s := f.segments(); s < 29 || s > 30 {
		t.Errorf("cwnd %.1f segments after 10 rounds from 20, want about 30", s)
	}
	flight := f.cwnd
	f.loss()
	if f.ssthresh != flight/2 {
		t.Errorf("ssthresh %d after a loss with %d in flight, want half", f.ssthresh, flight)
	}
}

// TestSlowStartToSsthresh: an ACK that brings slow start exactly to
// ssthresh grows the window to ssthresh and no further; only what slow
// start did not use goes on to congestion avoidance (Linux's
// tcp_slow_start returns it). Counting the ACK's bytes in both would grow
// the window twice for the same data. Both algorithms, after a timeout
// (HyStart++ is over) and in the first slow start.
func TestSlowStartToSsthresh(t *testing.T) {
	const mss = 1000
	for _, tc := range []struct {
		name  string
		cc    CongestionControl
		acked uint32
		want  uint32
	}{
		{"cubic, used up", &cubic{hs: hystart{done: true}}, mss, 7 * mss},
		{"cubic, HyStart++ on, used up", &cubic{}, mss, 7 * mss},
		{"reno, used up", reno{}, mss, 7 * mss},
		{"reno, 1000 left", reno{}, 2 * mss, 7*mss + mss*mss/(7*mss)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, ok := tc.cc.(*cubic); ok {
				c.epochStart = -1
			}
			cwnd, ssthresh := tc.cc.OnAck(AckSample{Now: time.Second, Acked: tc.acked, Cwnd: 6 * mss, Ssthresh: 7 * mss,
				MSS: mss, RTT: 100 * time.Millisecond, SRTT: 100 * time.Millisecond})
			if cwnd != tc.want || ssthresh != 7*mss {
				t.Errorf("cwnd %d, ssthresh %d after %d acknowledged from cwnd 6000, ssthresh 7000; want cwnd %d", cwnd, ssthresh, tc.acked, tc.want)
			}
		})
	}
}
