package tcp

import "time"

// Congestion control decides how large the congestion window grows while
// data flows and how far it shrinks on a congestion event. The engine
// does everything else: it detects losses (RACK-TLP, RFC 8985, or the
// DupThresh rule without SACK), paces the window down during fast
// recovery (PRR, RFC 6937), collapses it after a retransmission timeout
// (RFC 5681 3.1) and undoes the response to losses that were not real
// (RFC 2883, RFC 3522, RFC 5682). This is Linux's split between
// tcp_congestion_ops and tcp_input.c, and why an algorithm here is a few
// small methods.

// CongestionControl is a congestion control algorithm for one connection.
// Its methods are called with the connection's lock held: they must not
// block or call back into the engine. Windows are in bytes.
type CongestionControl interface {
	// Name is the algorithm's name as Linux's tcp_congestion_control
	// spells it: "cubic", "reno".
	Name() string
	// OnAck is called for an ACK that acknowledged new data outside
	// loss recovery while the congestion window was the limit on
	// sending; it returns the new congestion window and slow-start
	// threshold (an algorithm that leaves slow start early, such as
	// HyStart++, lowers the threshold).
	OnAck(a AckSample) (cwnd, ssthresh uint32)
	// OnCongestion is called at a congestion event: the start of fast
	// recovery, the start of CWR for an ECN echo (ecn.go), a loss a tail
	// loss probe repaired, or a retransmission timeout (Timeout). It
	// returns the new slow-start threshold; the engine sets the window
	// (PRR brings it down to the threshold during fast recovery and CWR;
	// a timeout makes it one segment).
	OnCongestion(c CongestionSample) (ssthresh uint32)
	// OnUndo is called when the last congestion event turned out to be
	// spurious: the algorithm restores what OnCongestion changed. The
	// engine restores cwnd and ssthresh themselves.
	OnUndo()
}

// AckSample is what OnAck learns of an ACK.
type AckSample struct {
	Now            time.Duration // the connection's clock, monotonic
	Acked          uint32        // bytes newly acknowledged, cumulatively or by SACK
	Cwnd, Ssthresh uint32
	MSS            uint32
	RTT            time.Duration // this ACK's round-trip sample; 0 if none
	MinRTT, SRTT   time.Duration
	// RoundStart is true on the first ACK of a new round trip: one that
	// acknowledges what was sent after the previous round began.
	RoundStart bool
}

// CongestionSample is what OnCongestion learns of a congestion event.
type CongestionSample struct {
	Now            time.Duration
	Cwnd, Ssthresh uint32 // before the event
	InFlight       uint32 // bytes in flight when the loss was detected
	MSS            uint32
	Timeout        bool // a retransmission timeout, not a loss found by ACKs
}

// congestion is the connection's congestion control, made when first
// needed: a connection that never fills its window (an idle one, most of
// a million) does not carry one. The caller holds e.mu.
func (e *Endpoint) congestion() CongestionControl {
	if e.cc == nil {
		e.cc = newCongestionControl(&e.proto.opts)
	}
	return e.cc
}

// newCongestionControl makes the algorithm Options name.
func newCongestionControl(o *Options) CongestionControl {
	if o.NewCongestionControl != nil {
		return o.NewCongestionControl()
	}
	switch o.CongestionControl {
	case "", "cubic":
		return &cubic{}
	case "reno":
		return reno{}
	}
	return &cubic{} // withDefaults replaced any unknown name
}

// congestionControls are the algorithms Options.CongestionControl names.
var congestionControls = []string{"cubic", "reno"}

// slowStart grows the window by the bytes acknowledged, as Linux does
// (tcp_slow_start: no cap per ACK, RFC 3465's L is the whole ACK), up to
// ssthresh, and returns the new window and what is left for congestion
// avoidance.
func slowStart(a *AckSample) (cwnd, left uint32) {
	cwnd = a.Cwnd + a.Acked
	if cwnd > a.Ssthresh {
		return a.Ssthresh, cwnd - a.Ssthresh
	}
	return cwnd, 0
}

// reno is NewReno's window (RFC 5681 3.1): slow start below ssthresh, then
// one segment per round trip; on a congestion event, half the data in
// flight (RFC 5681 equation 4), at least two segments.
type reno struct{}

func (reno) Name() string { return "reno" }

func (reno) OnAck(a AckSample) (uint32, uint32) {
	cwnd, left := a.Cwnd, a.Acked
	if cwnd < a.Ssthresh {
		cwnd, left = slowStart(&a)
	}
	if left > 0 && cwnd >= a.Ssthresh {
		// Congestion avoidance: cwnd += MSS*MSS/cwnd per MSS acked,
		// about one MSS per round trip (RFC 5681 equation 3).
		cwnd += max(1, uint32(uint64(a.MSS)*uint64(left)/uint64(cwnd)))
	}
	return min(cwnd, maxCwnd), a.Ssthresh
}

func (reno) OnCongestion(c CongestionSample) uint32 {
	return max(c.InFlight/2, 2*c.MSS)
}

func (reno) OnUndo() {}

// maxCwnd bounds the window: more than any receive window can offer
// (2^30, RFC 7323 2.3).
const maxCwnd = 1 << 30
