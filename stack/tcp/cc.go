package tcp

import (
	"cmp"
	"slices"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Congestion control decides how large the congestion window grows while
// data flows and how far it shrinks on a congestion event. The engine
// does everything else: it detects losses (RACK-TLP, RFC 8985, or the
// DupThresh rule without SACK), paces the window down during fast
// recovery (PRR, RFC 6937), collapses it after a retransmission timeout
// (RFC 5681 3.1) and undoes the response to losses that were not real
// (RFC 2883, RFC 3522, RFC 5682). This is Linux's split between
// tcp_congestion_ops and tcp_input.c, and why an algorithm here is a few
// small methods.
//
// An algorithm that models the path instead (BBR, bbr.go) is a
// RateController: it sets the window and the pacing rate itself on every
// ACK, in recovery too, from the delivery rate sample (rate.go), and the
// engine's PRR, its window at the end of recovery and its restart after
// idle stand aside, as Linux's do for a cong_control hook.

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

// A Noter is a CongestionControl that tells when it changes course on
// its own, as CUBIC's HyStart does when it leaves slow start: after
// each OnAck the engine takes the Note, and one that is not empty
// becomes a recovery event, which a capture puts on the ACK's frame (a
// RateController says the same in RateControl.Note).
type Noter interface {
	// Note returns what the last OnAck changed and why, or "", and
	// forgets it.
	Note() string
}

// An AckObserver is a CongestionControl that sees every ACK that delivers
// data with a round-trip sample, whatever limits sending and in loss
// recovery too, before loss detection and the window's growth: Linux's
// pkts_acked hook, called from tcp_clean_rtx_queue, where its CUBIC runs
// HyStart. The sample (AckSample.RTT) is the newest delivered segment's,
// as Linux's ca_rtt_us. It returns the slow-start threshold, which it may
// lower; a Noter's note is taken after it too.
type AckObserver interface {
	OnAcked(a AckSample) (ssthresh uint32)
}

// A TimeoutFollower is a CongestionControl that hears of every
// retransmission timeout, also those that continue an episode OnCongestion
// already heard: the retransmission timed out in its turn with no ACK
// moving SND.UNA in between, or the timeout came within the window that
// fast recovery or CWR had already reduced (recovery.go's
// timeoutStartsEpisode). Linux's tcp_enter_loss calls set_state with
// TCP_CA_Loss at each timeout, and ssthresh only at an episode's first:
// BBR's policer detector takes each as a sample with losses, CUBIC's
// HyStart starts over at each.
type TimeoutFollower interface {
	// OnTimeoutAgain is called at a timeout that continues an episode,
	// after the engine has marked what it deems lost (c.Lost); the
	// slow-start threshold stays where the episode put it.
	OnTimeoutAgain(c CongestionSample)
}

// A SendStarter is a CongestionControl that hears when the application
// sends again after the connection ran out of data (app-limited), with
// nothing in flight: Linux's cwnd_event with CA_EVENT_TX_START, from
// tcp_event_data_sent. CUBIC moves its curve past the idle spell. It
// hears it whether or not restart after idle (RFC 5681 4.1) cuts the
// window, and in any loss recovery state; a RateController hears Restart
// instead, on the same condition.
//
// Linux raises the event whenever data leaves with nothing in flight, and
// its BBR, not its CUBIC, checks that the application limited the flow
// (tp->app_limited). We check for every algorithm: a flow the window
// limited, whose whole flight one ACK covered (a small window, a stretch
// ACK), has not idled, and its curve does not stop for the round trip.
type SendStarter interface {
	// OnSendStart is called before the data leaves; now is the
	// connection's clock (AckSample.Now) and idle how long ago data, new
	// or retransmitted, last left (Linux's now - lsndtime).
	OnSendStart(now, idle time.Duration)
}

// A RateController is a congestion control that sets the congestion
// window and the pacing rate itself (Linux's cong_control): the engine
// calls Control for every ACK it processes, after loss detection, and
// paces every segment after the first ten at the rate it returns. OnAck
// is not called; OnCongestion is, at the start of each episode (its
// ssthresh is kept), and OnUndo when one is undone.
type RateController interface {
	CongestionControl
	// Control takes an ACK's sample and says what follows from it.
	Control(s RateSample) RateControl
	// Restart is called when the application sends after the
	// connection ran out of data (app-limited) with nothing in flight
	// (Linux's CA_EVENT_TX_START).
	Restart(s RateSample) RateControl
}

// RateControl is what a RateController sets.
type RateControl struct {
	Cwnd       uint32
	PacingRate uint64 // bytes a second
	// Ssthresh, if not 0, is the new slow-start threshold (BBR sets it
	// as it leaves startup, for what TCP_INFO shows).
	Ssthresh uint32
	// MarkAppLimited marks the samples until what is in flight now is
	// delivered app-limited (BBR's probe_rtt sends little on purpose).
	MarkAppLimited bool
	// Note, if not empty, says how the algorithm changed course: it is
	// the connection's recovery event.
	Note string
}

// RateSample is what Control learns of an ACK (Linux's struct
// rate_sample, and the socket's state beside it). Counts are bytes.
type RateSample struct {
	Now time.Duration // the clock's reading, from its zero (monotonic)
	// Delivered is the data delivered over Interval, the sample's
	// delivery rate (rate.go); Interval 0: the ACK gave no valid sample.
	// PriorDelivered is TotalDelivered when the newest segment the ACK
	// delivered was sent; AppLimited says the application, not the
	// path, limited it.
	Delivered      uint64
	Interval       time.Duration
	PriorDelivered uint64
	TotalDelivered uint64 // all delivered so far, cumulatively or by SACK
	AppLimited     bool
	// DeliveredAt is when TotalDelivered last grew (Linux's
	// delivered_mstamp).
	DeliveredAt time.Duration
	AckedSacked uint32 // newly delivered by this ACK
	Losses      uint32 // newly deemed lost on this ACK
	// PriorInFlight is pipe before the ACK, InFlight after it.
	PriorInFlight, InFlight uint32
	RTT                     time.Duration // this ACK's round-trip sample; 0 if none
	MinRTT, SRTT            time.Duration
	Cwnd                    uint32
	MSS                     uint32
	// InRecovery: fast recovery (Linux's TCP_CA_Recovery; CWR is not);
	// InLoss: recovery after a retransmission timeout (TCP_CA_Loss).
	InRecovery, InLoss bool
	// NextDeparture is how long until the next segment may leave at the
	// pacing rate (Linux's tcp_wstamp_ns - now), 0 if now.
	NextDeparture time.Duration
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
	// Lost is, for a Timeout, the bytes it has just deemed lost: as
	// Linux's tcp_enter_loss, the engine marks them before it calls
	// OnCongestion (tcp_timeout_mark_lost, then ssthresh).
	Lost uint32
}

// congestion is the connection's congestion control, made when first
// needed: a connection that never fills its window (an idle one, most of
// a million) does not carry one. The caller holds e.mu.
func (e *Endpoint) congestion() CongestionControl {
	if e.cc == nil {
		e.takeCongestion(newCongestionControl(&e.proto.opts))
	}
	return e.cc
}

// takeCongestion makes cc the connection's congestion control. A
// RateController paces, as Linux's BBR asks TCP to (SK_PACING_NEEDED),
// and sets the rate itself from its first ACK on. It reports whether cc
// is one.
func (e *Endpoint) takeCongestion(cc CongestionControl) bool {
	e.cc = cc
	_, rc := cc.(RateController)
	if rc && e.pace == nil {
		e.pace = &pacer{maxRate: e.proto.opts.pacingCap(), forCC: true}
	}
	if e.pace != nil {
		e.pace.ccRate = 0
	}
	return rc
}

// rateController is the connection's congestion control if it is a
// RateController.
func (e *Endpoint) rateController() RateController {
	rc, _ := e.cc.(RateController)
	return rc
}

// rateControl hands a RateController an ACK's sample, after loss
// detection, and applies what it sets (Linux's tcp_cong_control with a
// cong_control hook). A connection that never sent data has nothing to
// say about the path and is not asked.
func (e *Endpoint) rateControl(rc RateController, a *ackInfo, priorInFlight uint32) {
	if e.rate == nil {
		return
	}
	s := e.rateSample(a.now)
	s.PriorInFlight = priorInFlight
	s.AckedSacked, s.Losses, s.RTT = a.delivered, a.lostBytes, a.rttSample
	if rs := &a.rate; rs.interval > 0 {
		s.Delivered, s.Interval, s.PriorDelivered, s.AppLimited = rs.bytes, rs.interval, rs.priorDelivered, rs.appLimited
	}
	e.applyRateControl(rc.Control(s))
}

// rateRestart tells a RateController that the application sends again
// after it ran out of data, with nothing in flight.
func (e *Endpoint) rateRestart(rc RateController) {
	if e.rate == nil || e.rate.appLimited == 0 {
		return
	}
	e.applyRateControl(rc.Restart(e.rateSample(e.now())))
}

// sendStart tells a SendStarter that the application sends again after
// it ran out of data, with nothing in flight, as rateRestart tells a
// RateController. A connection that never sent data, or never needed a
// congestion control, has nothing to tell.
func (e *Endpoint) sendStart(now tcpip.MonotonicTime) {
	s, ok := e.cc.(SendStarter)
	if !ok || e.rate == nil || e.rate.appLimited == 0 || e.dataSentAt == (tcpip.MonotonicTime{}) {
		return
	}
	s.OnSendStart(now.Sub(tcpip.MonotonicTime{}), now.Sub(e.dataSentAt))
}

// rateSample is the connection's part of a RateSample.
func (e *Endpoint) rateSample(now tcpip.MonotonicTime) RateSample {
	r := e.rate
	s := RateSample{
		Now: r.clock(now), TotalDelivered: r.delivered, DeliveredAt: r.deliveredAt,
		InFlight: e.inflight(), MinRTT: e.rack.minRTT.v, SRTT: e.srtt, Cwnd: e.cwnd, MSS: uint32(e.sndMSS),
		InRecovery: e.caState == caRecovery, InLoss: e.caState == caLoss,
	}
	if p := e.pace; p != nil && now.Before(p.next) {
		s.NextDeparture = p.next.Sub(now)
	}
	return s
}

// applyRateControl takes the window and the pacing rate a
// RateController set.
func (e *Endpoint) applyRateControl(c RateControl) {
	e.cwnd = max(c.Cwnd, uint32(e.sndMSS))
	if c.Ssthresh != 0 {
		e.ssthresh = c.Ssthresh
	}
	if e.pace != nil {
		e.pace.ccRate = max(c.PacingRate, 1)
	}
	if c.MarkAppLimited {
		e.rate.appLimited = max(e.rate.delivered+uint64(e.inflight()), 1)
	}
	if c.Note != "" {
		e.emitRecovery(c.Note)
	}
}

// SetCongestionControl changes the connection's congestion control to
// the algorithm name names (one of CongestionControls), as Linux's
// TCP_CONGESTION socket option, at any time: the new one starts from the
// window the connection has (tcp_reinit_congestion_control), BBR with
// ssthresh unset, as bbr_init. It paces the connection while a
// RateController has it. An unknown name is ENOENT, as in Linux.
func (e *Endpoint) SetCongestionControl(name string) error {
	if !slices.Contains(congestionControls, name) {
		return syscall.ENOENT
	}
	e.mu.Lock()
	old := cmp.Or(ccName(e.cc), e.proto.opts.CongestionControl) // not made yet: the options' choice
	_, wasRC := e.cc.(RateController)
	switch rc := e.takeCongestion(namedCongestionControl(name, &e.proto.opts)); {
	case rc:
		if e.wasEstablished {
			e.ssthresh = ^uint32(0)
		}
	case wasRC:
		if e.pace.forCC {
			e.pace = nil // paced only for the RateController
			e.stopTimer(timerPacing)
		}
	}
	if old != name {
		e.emitRecovery("congestion control " + old + " → " + name)
	}
	opened := e.beginStamp()
	e.output()
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
	return nil
}

// newCongestionControl makes the algorithm Options name.
func newCongestionControl(o *Options) CongestionControl {
	if o.NewCongestionControl != nil {
		return o.NewCongestionControl()
	}
	return namedCongestionControl(o.CongestionControl, o)
}

// namedCongestionControl makes the algorithm congestionControls names,
// as the options configure it.
func namedCongestionControl(name string, o *Options) CongestionControl {
	switch name {
	case "", "cubic":
		return newCubic(o)
	case "reno":
		return reno{}
	case "bbr":
		return newBBR()
	}
	return newCubic(o) // withDefaults and SetCongestionControl refuse unknown names
}

// congestionControls are the algorithms Options.CongestionControl names.
var congestionControls = []string{"cubic", "reno", "bbr"}

// CongestionControls returns the names Options.CongestionControl takes,
// as Linux's tcp_available_congestion_control lists them.
func CongestionControls() []string { return slices.Clone(congestionControls) }

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
