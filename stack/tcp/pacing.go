package tcp

import (
	"math"
	"strconv"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// Pacing spreads a connection's packets over the round trip instead of
// sending what the windows allow back to back, as Linux's internal TCP
// pacing does (tcp_internal_pacing, the EDT model: each packet's departure
// time follows the previous one's by its length at the pacing rate). It
// is off unless asked for, as in Linux, where a socket is paced when the
// fq qdisc does it or when the congestion control or SO_MAX_PACING_RATE
// asks TCP to: Options.Pacing paces every connection of the engine (at
// most at Options.MaxPacingRate, as fq's maxrate), and SetMaxPacingRate
// one connection, at most at the rate it gives.
//
// The rate is Linux's sk_pacing_rate (tcp_update_pacing_rate): the
// congestion window, or what is in flight if more, per smoothed RTT, at
// 200% while the window is below half of ssthresh (slow start still
// doubling it) and 120% after, so that the ACKs, not pacing, bound the
// window; and at most the maximum. Before the first RTT sample the rate
// is the maximum, or none; the first ten segments are never paced
// (Linux's data_segs_out >= 10).
// The paced unit is output's train of gsoSegs segments, which the rate
// also sizes (about a millisecond of it, tcp_tso_autosize): Linux's skb,
// paced whole whether the device segments it (one GSO packet) or not
// (several packets back to back).

// pacer is a paced connection's state, allocated when pacing is turned
// on: most connections are never paced, and the Endpoint keeps its size.
type pacer struct {
	maxRate uint64              // bytes per second; math.MaxUint64: no cap
	next    tcpip.MonotonicTime // the earliest departure of the next packet
	segs    uint64              // data segments sent since pacing began
	waits   uint64              // trains held until their departure time
	heldAt  tcpip.MonotonicTime // when the next packet began to wait; zero if it did not
	owed    time.Duration       // the pacing timer's lateness, not yet made up (paced)
	ccRate  uint64              // the rate a RateController set (cc.go); 0: none yet
	forCC   bool                // made for a RateController alone: it goes when the congestion control changes
}

// pacedAfter is how many data segments leave unpaced, as Linux's first
// ten (tcp_update_skb_after_send: data_segs_out >= 10).
const pacedAfter = 10

// pacingOn reports whether the options pace every connection.
func (o *Options) pacingOn() bool { return o.Pacing || o.MaxPacingRate > 0 }

// pacingCap is every paced connection's cap: MaxPacingRate, or none.
func (o *Options) pacingCap() uint64 {
	if o.MaxPacingRate > 0 {
		return o.MaxPacingRate
	}
	return math.MaxUint64
}

// SetMaxPacingRate paces the connection at its pacing rate, at most rate
// bytes a second, as Linux's SO_MAX_PACING_RATE does (it turns on TCP's
// internal pacing): rate math.MaxUint64 paces at the computed rate alone.
// Rate 0 turns pacing off, unless the options pace every connection
// (Options.Pacing, MaxPacingRate): this one is then paced as they say.
func (e *Endpoint) SetMaxPacingRate(rate uint64) {
	e.mu.Lock()
	switch {
	case rate == 0 && !e.proto.opts.pacingOn() && e.rateController() == nil:
		e.pace = nil
		e.stopTimer(timerPacing)
	default:
		asked := rate != 0
		if rate == 0 {
			rate = e.proto.opts.pacingCap() // a RateController paces uncapped
		}
		if e.pace == nil {
			e.pace = &pacer{}
		}
		e.pace.maxRate = rate
		if asked {
			e.pace.forCC = false // the user's now: it stays when the congestion control changes
		}
	}
	opened := e.beginStamp()
	e.output() // a lower cap takes effect at the next packet, a higher one now
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
}

// pacingRate is the rate, in bytes per second, at which the connection
// would be paced (0: none yet, before an RTT sample and without a cap),
// capped by SetMaxPacingRate's maximum when the connection is paced.
// gsoSegs sizes packets by it whether or not pacing is on, as Linux does.
func (e *Endpoint) pacingRate() uint64 {
	if p := e.pace; p != nil && p.ccRate != 0 {
		return min(p.ccRate, p.maxRate) // BBR's (bbr.go)
	}
	if e.srtt <= 0 {
		// No RTT yet: Linux's sk_pacing_rate is still ~0, unbounded,
		// but SO_MAX_PACING_RATE has lowered it to the cap, which then
		// sizes the first packets (tcp_tso_autosize) and paces those
		// after the tenth.
		if p := e.pace; p != nil && p.maxRate != math.MaxUint64 {
			return p.maxRate
		}
		return 0
	}
	mss := uint64(max(e.sndMSS, 1))
	ratio := uint64(120)
	if e.cwnd < e.ssthresh/2 {
		ratio = 200
	}
	segs := uint64(max(e.cwnd, e.inflight())) / mss
	rate := mss * segs * ratio / 100 * uint64(time.Second) / uint64(e.srtt)
	if e.pace != nil {
		rate = min(rate, e.pace.maxRate)
	}
	return rate
}

// pacingWait reports whether the next packet must wait for its departure
// time, and arms the pacing timer for it; output stops there.
func (e *Endpoint) pacingWait() bool {
	p := e.pace
	if p == nil || p.next == (tcpip.MonotonicTime{}) {
		return false
	}
	now := e.now()
	if !now.Before(p.next) {
		return false
	}
	if p.heldAt == (tcpip.MonotonicTime{}) {
		p.heldAt = now // once per held train, however often output looks
		p.waits++
	}
	if !e.timerArmed(timerPacing) {
		e.setTimer(timerPacing, p.next.Sub(now))
	}
	return true
}

// paced sets the next departure time after a data packet of n bytes in
// segs segments left: its length at the pacing rate after this one's. A
// packet that left late because it waited for an ACK or for the
// application is credited up to half its length for the lateness, as
// Linux credits OS jitter (tcp_update_skb_after_send).
//
// A packet the pacing timer held is credited differently, and there we
// part from Linux, whose pacing timer is an hrtimer, microseconds late at
// most: Go's runtime sleeps in whole milliseconds when idle (netpoll's
// epoll_wait), so a timer armed for a fraction of a millisecond fires up
// to a millisecond late. With Linux's credit, a packet shorter than that
// at the rate lost most of the timer's lateness, and a paced sender
// averaged far below its cap (in memory, examples/pacing: 80 Mbit/s
// 54-56, 400 Mbit/s 206-227, 1 Gbit/s 415-434). The timer's lateness, up
// to timerSlack, is owed instead: the packets that follow leave that much
// sooner, at once while it lasts, until the schedule has caught up. That
// is a burst of at most a millisecond at the rate, as userspace pacers
// bound theirs by their timer's granularity (quic-go's maxBurstSize). It
// only makes up for the timer: the packets after a held one are due no
// sooner than their bytes at the rate after the time the held one was
// due, so the cap holds over any span from there. A packet late for
// another reason forgets what was owed: the sender was not held, and
// Linux's credit applies.
func (e *Endpoint) paced(n, segs int) {
	p := e.pace
	p.segs += uint64(segs)
	rate := e.pacingRate()
	if rate == 0 || p.segs < pacedAfter {
		return
	}
	now := e.now()
	length := time.Duration(uint64(n) * uint64(time.Second) / rate)
	start := p.next
	switch {
	case p.heldAt != (tcpip.MonotonicTime{}):
		// Held until start, sent now: the timer's lateness is owed.
		p.owed = min(max(now.Sub(start), 0), timerSlack)
		start = now
	case start == (tcpip.MonotonicTime{}) || start.Before(now):
		if start != (tcpip.MonotonicTime{}) {
			length -= min(length/2, now.Sub(start))
		}
		p.owed = 0
		start = now
	}
	used := min(p.owed, length)
	p.owed -= used
	p.next = start.Add(length - used)
}

// timerSlack is how late a pacing timer may fire on Go's runtime: a
// millisecond, netpoll's granularity when the process sleeps.
const timerSlack = time.Millisecond

// outputPending reports whether output has something the windows would
// let it send now: a segment deemed lost that fits the congestion window,
// or data or a FIN not yet sent that fits both windows. Only then does a
// packet wait for its departure time: one the windows hold back waits for
// an ACK, not for pacing, and its frame must not say otherwise.
func (e *Endpoint) outputPending() bool {
	if i, ok := e.rtxq.nextLost(); ok {
		return e.cwndFits(e.retransmitSize(i))
	}
	unsent := e.sndNxt.LessThan(e.sndEnd()) || e.finQueued && e.sndNxt == e.sndEnd()
	inWindow := e.sndNxt.LessThan(e.sndUna.Add(seqnum.Size(e.sndWnd))) || e.sndWnd == 0 && e.sndNxt == e.sndUna
	return unsent && inWindow && e.cwndFits(min(e.segmentSize(), max(int(e.sndNxt.Size(e.sndEnd())), 1)))
}

// pacedNote says, on the send event of a packet that waited for its
// departure time, how long and at what rate: "paced: held 3.9ms, 16
// Mbit/s". The capture puts it on the packet's frame.
func (e *Endpoint) pacedNote() string {
	p := e.pace
	held := e.now().Sub(p.heldAt)
	p.heldAt = tcpip.MonotonicTime{}
	return "paced: held " + held.Round(time.Microsecond).String() + ", " + bitRate(e.pacingRate()*8)
}

// bitRate writes bits a second as tc does: "16 Mbit/s", "1.5 Gbit/s".
func bitRate(bps uint64) string {
	v, unit := float64(bps), "bit/s"
	for _, u := range []string{"kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"} {
		if v < 1000 {
			break
		}
		v, unit = v/1000, u
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " " + unit
}
