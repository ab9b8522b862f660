package tcp_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// CUBIC (RFC 9438) and HyStart++ (RFC 9406) through the engine, as packet
// traces: a bulk sender whose peer acknowledges each round trip's segments
// when the round trip ends. cc_test.go checks the algorithm on a synthetic
// flow; here the engine feeds it: its RTT samples, its rounds, its
// cwnd-limited rule, its loss detection and recovery.

// bulk is a bulk transfer from the stack to the peer: the send buffer kept
// full, and the segments of the current round trip (relative ends) the
// peer has yet to acknowledge.
type bulk struct {
	t    *testing.T
	p    *tcptest.Peer
	ep   *tcp.Endpoint
	mss  uint32
	sent []uint32 // ends of the segments in flight, in order
	next []uint32 // segments sent in answer to this round's ACKs
	// lean keeps two windows queued rather than 2 MiB or more, so that
	// the sender runs dry soon after the application stops writing
	// (stopped).
	lean, stopped bool
}

// newBulk opens a connection from the peer whose handshake takes rtt,
// with SACK and a window scale of 7, so that the peer's window never
// limits the sender: the congestion window does.
func newBulk(t *testing.T, rtt time.Duration, o tcp.Options) *bulk {
	t.Helper()
	b := openBulk(t, rtt, o)
	b.send(&b.sent)
	return b
}

// openBulk is newBulk before the application's first write.
func openBulk(t *testing.T, rtt time.Duration, o tcp.Options) *bulk {
	t.Helper()
	o.SendBufferSize = 1 << 22
	p, l := tcptest.Listen(t, tcptest.WithTCP(o))
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true, WS: 7})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return &bulk{t: t, p: p, ep: ep, mss: 1460}
}

func (b *bulk) cwnd() float64 { return float64(b.ep.Info().Cwnd) / float64(b.mss) }

// send tops the send buffer up and records what the stack sent.
func (b *bulk) send(into *[]uint32) {
	b.t.Helper()
	switch i := b.ep.Info(); {
	case b.stopped:
	case b.lean:
		if want := 2 * int(i.Cwnd); i.SendQueued < want {
			if _, err := b.ep.Write(payload(0, want-i.SendQueued)); err != nil {
				b.t.Fatal(err)
			}
		}
	case i.SendQueued < 1<<21:
		if _, err := b.ep.Write(payload(0, 1<<21)); err != nil {
			b.t.Fatal(err)
		}
	}
	for _, s := range b.p.Drain() {
		if s.Len > 0 {
			*into = append(*into, s.Seq+uint32(s.Len))
		}
	}
}

// round lets rtt pass and acknowledges the round's segments, every
// ackEvery of them with one cumulative ACK, at that instant; what the
// stack sends in answer is the next round.
func (b *bulk) round(rtt time.Duration, ackEvery int) {
	b.t.Helper()
	b.p.Advance(rtt)
	b.next = b.next[:0]
	for i := ackEvery - 1; i < len(b.sent)+ackEvery-1; i += ackEvery {
		b.p.Inject(seg{Flags: ".", Seq: 1, Ack: b.sent[min(i, len(b.sent)-1)]})
		b.send(&b.next)
	}
	b.sent, b.next = b.next, b.sent
}

// lossRound lets rtt pass; the round's first segment was lost, and the
// peer acknowledges the others with one ACK that SACKs them: RACK (RFC
// 8985 6.2) finds the first lost at once, since more than DupThresh
// segments were delivered after it, and fast recovery begins.
func (b *bulk) lossRound(rtt time.Duration) {
	b.t.Helper()
	b.p.Advance(rtt)
	first := b.sent[0] - b.mss
	b.p.Inject(seg{Flags: ".", Seq: 1, Ack: first, SACK: [][2]uint32{{b.sent[0], b.sent[len(b.sent)-1]}}})
	b.next = b.next[:0]
	b.send(&b.next)
	// The next round's ACK covers the retransmission with everything
	// else: up to SND.NXT.
	tcb := b.ep.Info().TCB
	b.sent = append(b.sent[:0], tcb.SndNxt-tcb.ISS)
}

// TestCubicWindowCurve: a connection grows in slow start to 80 segments
// (RTT 400 ms, every segment acknowledged), then loses one segment. Fast
// recovery cuts the window to β_cubic*W_max = 56 segments (RFC 9438 4.6,
// PRR bringing it down) and ends a round trip later. With the first ACK of
// congestion avoidance the epoch begins (4.2: t_epoch, as Linux's
// epoch_start), K = cbrt((W_max - cwnd_epoch)/C) (equation 2): from then on
// one ACK per round trip, each acknowledging the whole window. After the
// ACK at t, the window aims at W_cubic(t + RTT) (4.4: the target one RTT
// ahead, and a whole window acknowledged moves it all the way there), and
// it is compared with that at the rounds nearest t = K/2, K and 2K, within
// 1% (bytes are whole, segments are not), with W_cubic(t) = C*(t-K)^3 +
// W_max (equation 1). At those points W_cubic is above W_est, the
// Reno-friendly estimate (4.3), so the cubic curve is what sets the window:
// concave below W_max, flat at K, convex beyond.
func TestCubicWindowCurve(t *testing.T) {
	const rtt = 400 * time.Millisecond
	b := newBulk(t, rtt, tcp.Options{})
	for range 10 {
		if b.cwnd() >= 80 {
			break
		}
		b.round(rtt, 1) // slow start: 10, 20, 40, 80 segments
	}
	wMax := b.cwnd()
	if wMax != 80 {
		t.Fatalf("slow start ended at %.1f segments, want 80", wMax)
	}
	b.lossRound(rtt)
	if i := b.ep.Info(); i.CAState != "fast recovery" {
		t.Fatalf("after the SACK of all but the first segment: %s", i.CAState)
	}
	b.round(rtt, len(b.sent)+1) // the ACK of the recovery point ends recovery
	i := b.ep.Info()
	if i.CAState != "open" || i.Cwnd != i.Ssthresh {
		t.Fatalf("after recovery: %s, cwnd %d, ssthresh %d; want open, cwnd = ssthresh", i.CAState, i.Cwnd, i.Ssthresh)
	}
	cwndEpoch := b.cwnd()
	if math.Abs(cwndEpoch-0.7*wMax) > 0.01 {
		t.Fatalf("cwnd %.2f segments after the reduction, want β_cubic*W_max = %.2f", cwndEpoch, 0.7*wMax)
	}
	const c, alpha = 0.4, 3 * (1 - 0.7) / (1 + 0.7)
	k := math.Cbrt((wMax - cwndEpoch) / c)
	wCubic := func(t float64) float64 { return c*math.Pow(t-k, 3) + wMax }
	wEst := func(t float64) float64 { return cwndEpoch + alpha*t/rtt.Seconds() }

	// The epoch starts with the next ACK: t = 0.
	checked := 0
	for n := 0; n < 60; n++ {
		b.round(rtt, len(b.sent)+1)
		el := float64(n) * rtt.Seconds()
		got, want := b.cwnd(), wCubic(el+rtt.Seconds())
		for _, at := range []float64{k / 2, k, 2 * k} {
			if math.Abs(el-at) > rtt.Seconds()/2 {
				continue
			}
			checked++
			if wEst(el) >= wCubic(el) {
				t.Fatalf("t = %.2f s: W_est %.1f above W_cubic %.1f; the test wants the cubic region", el, wEst(el), wCubic(el))
			}
			t.Logf("t = %.2f s (%.2f K): cwnd %.2f segments, W_cubic(t+RTT) = %.2f, W_cubic(t) = %.2f", el, el/k, got, want, wCubic(el))
			if math.Abs(got-want)/want > 0.01 {
				t.Errorf("t = %.2f s (%.2f K): cwnd %.2f segments, want W_cubic(t+RTT) = %.2f within 1%%", el, el/k, got, want)
			}
		}
		if el > 2*k+rtt.Seconds() {
			break
		}
	}
	if checked != 3 {
		t.Errorf("checked %d points, want 3 (K = %.2f s)", checked, k)
	}
	if st := b.p.TCP.Stats(); st.FastRecoveries.Load() != 1 || st.RetransmitTimeouts.Load() != 0 {
		t.Errorf("fast recoveries %d, RTOs %d; want the one loss only", st.FastRecoveries.Load(), st.RetransmitTimeouts.Load())
	}
}

// TestCubicCurveSkipsIdle: an idle spell is not time on CUBIC's curve.
// A connection in congestion avoidance after a loss at 80 segments (cwnd
// 56, K = 3.9 s; RTT 100 ms, every segment acknowledged) runs out of data,
// all of it is acknowledged, and nothing is sent for 10 s; restart after
// idle is off (Options.NoSlowStartAfterIdle, Linux's
// tcp_slow_start_after_idle=0), so the window stays. When the application
// writes again, with nothing in flight, the epoch moves forward by the
// spell, as Linux's bictcp_cwnd_event does at CA_EVENT_TX_START
// ("tcp_cubic: better follow cubic curve after idle period"; RFC 9438 5.8:
// no growth while the application limits the flow), and the first round
// trip after it grows the window about as the last ones before it did,
// not by half (1.5*cwnd, the most one round trip may aim at, 4.4), where
// t counting the spell would put W_cubic.
func TestCubicCurveSkipsIdle(t *testing.T) {
	const rtt = 100 * time.Millisecond
	b := openBulk(t, rtt, tcp.Options{NoSlowStartAfterIdle: true})
	b.lean = true
	b.send(&b.sent)
	for range 10 {
		if b.cwnd() >= 80 {
			break
		}
		b.round(rtt, 1)
	}
	if b.cwnd() != 80 {
		t.Fatalf("slow start ended at %.1f segments, want 80", b.cwnd())
	}
	b.lossRound(rtt)
	b.round(rtt, len(b.sent)+1) // the ACK of the recovery point ends recovery
	if i := b.ep.Info(); i.CAState != "open" {
		t.Fatalf("after recovery: %s, want open", i.CAState)
	}
	var growth float64
	for range 3 {
		before := b.cwnd()
		b.round(rtt, 1)
		growth = b.cwnd() - before
	}
	// The application stops writing; what is queued and in flight is
	// acknowledged.
	b.stopped = true
	for range 10 {
		if len(b.sent) == 0 {
			break
		}
		b.round(rtt, 1)
	}
	if i := b.ep.Info(); i.SendQueued != 0 || len(b.sent) != 0 {
		t.Fatalf("not drained: %d bytes queued, %d segments in flight", i.SendQueued, len(b.sent))
	}
	b.p.Advance(10 * time.Second)
	before := b.cwnd()
	b.stopped = false
	b.send(&b.sent)
	b.round(rtt, 1)
	after := b.cwnd()
	t.Logf("cwnd %.2f → %.2f segments in the round trip after 10 s idle; %.2f in the last before it", before, after, growth)
	if after < before || after > before+max(2*growth, 3) {
		t.Errorf("the round trip after 10 s idle took cwnd from %.2f to %.2f segments (×%.2f); want the curve to go on where it was (+%.2f a round trip before the spell)",
			before, after, after/before, growth)
	}
	if st := b.p.TCP.Stats(); st.FastRecoveries.Load() != 1 || st.RetransmitTimeouts.Load() != 0 || st.IdleRestarts.Load() != 0 {
		t.Errorf("fast recoveries %d, RTOs %d, idle restarts %d; want the one loss only", st.FastRecoveries.Load(), st.RetransmitTimeouts.Load(), st.IdleRestarts.Load())
	}
}

// TestHyStartPlusPlusTrace: slow start with every segment acknowledged,
// RTT 100 ms: the window doubles each round trip while the RTT is flat.
// Then the queue builds and the RTT rises. By less than RttThresh =
// clamp(lastRoundMinRTT/8, 4 ms, 16 ms) = 12.5 ms (RFC 9406 4.2), nothing
// changes; by 20 ms, once the round has N_RTT_SAMPLE = 8 samples (the
// eighth ACK still grows the window as slow start does), slow start gives
// way to Conservative Slow Start: each later ACK grows the window by a
// quarter of what it acknowledged (CSS_GROWTH_DIVISOR = 4),
// and after CSS_ROUNDS = 5 rounds in CSS the connection is in congestion
// avoidance: ssthresh = cwnd (4.3). No segment was lost.
func TestHyStartPlusPlusTrace(t *testing.T) {
	for _, tc := range []struct {
		name string
		rise time.Duration
		css  bool
	}{
		{"rise below RttThresh", 10 * time.Millisecond, false},
		{"rise above RttThresh", 20 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const rtt = 100 * time.Millisecond
			rec := &events{}
			b := newBulk(t, rtt, tcp.Options{Observer: rec.observe})
			// HyStart++ says what it did, as recovery events (Noter).
			notes := func() []string {
				b.p.TCP.SyncEvents()
				var out []string
				for _, ev := range rec.of(event.KindRecovery) {
					if strings.HasPrefix(ev.Note, "HyStart++") {
						out = append(out, ev.Note)
					}
				}
				return out
			}
			for _, want := range []float64{20, 40, 80} {
				b.round(rtt, 1)
				if got := b.cwnd(); got != want {
					t.Fatalf("slow start with a flat RTT: cwnd %.1f segments, want %.0f", got, want)
				}
			}
			// The RTT rises by tc.rise for the round of 80 segments.
			n := len(b.sent)
			b.round(rtt+tc.rise, 1)
			got := b.cwnd()
			if !tc.css {
				if got != 160 {
					t.Fatalf("RTT +%v: cwnd %.1f segments, want 160 (still slow start)", tc.rise, got)
				}
				if s := b.ep.Info().Ssthresh; s != math.MaxUint32 {
					t.Errorf("ssthresh %d, want none yet", s)
				}
				if n := notes(); len(n) != 0 {
					t.Errorf("HyStart++ events %q, want none", n)
				}
				return
			}
			if n := notes(); len(n) != 1 || n[0] != "HyStart++: the round's lowest RTT rose from 100ms to 120ms, by RttThresh 12.5ms or more: conservative slow start, a quarter as fast (RFC 9406 4.2)" {
				t.Errorf("HyStart++ events %q, want the move to conservative slow start", n)
			}
			// Eight ACKs at the slow-start rate (one segment each):
			// the eighth grows the window before its sample is
			// checked (RFC 9406 4.2), then CSS, a quarter segment
			// per ACK.
			want := 80 + 8 + float64(n-8)/4
			if math.Abs(got-want) > 0.01 {
				t.Fatalf("RTT +%v: cwnd %.2f segments after the round, want 80 + 8 + %d/4 = %.2f (CSS after the 8th sample)",
					tc.rise, got, n-8, want)
			}
			if s := b.ep.Info().Ssthresh; s != math.MaxUint32 {
				t.Fatalf("ssthresh %d during CSS, want none yet", s)
			}
			// CSS_ROUNDS rounds at the raised RTT: then congestion
			// avoidance.
			for r := 1; r <= 5; r++ {
				before, n := b.cwnd(), len(b.sent)
				b.round(rtt+tc.rise, 1)
				if got, want := b.cwnd(), before+float64(n)/4; r < 5 && math.Abs(got-want) > 0.01 {
					t.Errorf("CSS round %d: cwnd %.2f segments after %d acknowledged, want %.2f + %d/4 = %.2f", r, got, n, before, n, want)
				}
				if i := b.ep.Info(); i.Ssthresh != math.MaxUint32 {
					if r != 5 || i.Ssthresh > i.Cwnd {
						t.Fatalf("CSS round %d: ssthresh %d, cwnd %d; want congestion avoidance after round 5", r, i.Ssthresh, i.Cwnd)
					}
				}
			}
			i := b.ep.Info()
			if i.Ssthresh == math.MaxUint32 {
				t.Fatalf("after %d CSS rounds: still in slow start (cwnd %d)", 5, i.Cwnd)
			}
			want2 := fmt.Sprintf("HyStart++: 5 rounds of conservative slow start: congestion avoidance, ssthresh = cwnd %d (RFC 9406 4.2)", i.Ssthresh)
			if n := notes(); len(n) != 2 || n[1] != want2 {
				t.Errorf("HyStart++ events %q, want the second %q", n, want2)
			}
			if st := b.p.TCP.Stats(); st.Retransmits.Load() != 0 || st.FastRecoveries.Load() != 0 {
				t.Errorf("retransmits %d, recoveries %d; want none", st.Retransmits.Load(), st.FastRecoveries.Load())
			}
		})
	}
}

// TestSlowStartStretchACK: a peer that acknowledges ten segments at a time
// (a receiver coalescing with GRO, or thinning its ACKs) still sees the
// window double every round trip in HyStart++'s slow start: each ACK grows
// it by all it acknowledges, as Linux's tcp_slow_start does, not by at most
// L = 8 segments as RFC 9406 4.3 caps a sender that does not pace.
func TestSlowStartStretchACK(t *testing.T) {
	const rtt = 100 * time.Millisecond
	b := newBulk(t, rtt, tcp.Options{})
	for _, want := range []float64{20, 40, 80} {
		b.round(rtt, 10)
		if got := b.cwnd(); got != want {
			t.Fatalf("slow start, one ACK per 10 segments: cwnd %.1f segments, want %.0f", got, want)
		}
	}
}

// TestSlowStartEndsEvent: after a retransmission timeout the window
// starts again from one segment and slow start climbs back to ssthresh
// (RFC 5681 3.1); where it reaches it, congestion avoidance begins, and
// the glass box says so once, on that ACK: "slow start ends".
func TestSlowStartEndsEvent(t *testing.T) {
	const rtt = 100 * time.Millisecond
	rec := &events{}
	b := newBulk(t, rtt, tcp.Options{Observer: rec.observe, NoFRTO: true, NoTLP: true})
	b.round(rtt, 1)
	b.round(rtt, 1) // slow start: 10, 20, 40 segments
	// The round of 40 is lost whole: the RTO sends the first again.
	b.sent = b.sent[:0]
	b.p.Advance(b.ep.Info().RTO)
	b.send(&b.sent)
	ssthresh := b.ep.Info().Ssthresh
	for range 20 {
		b.round(rtt, 1)
	}
	b.p.TCP.SyncEvents()
	var ends []string
	for _, ev := range rec.of(event.KindRecovery) {
		if strings.HasPrefix(ev.Note, "slow start ends") {
			ends = append(ends, ev.Note)
			if ev.Cwnd < ev.Ssthresh || ev.Ssthresh != ssthresh {
				t.Errorf("%q with cwnd %d, ssthresh %d; want cwnd at the RTO's ssthresh %d", ev.Note, ev.Cwnd, ev.Ssthresh, ssthresh)
			}
		}
	}
	if len(ends) != 1 {
		for _, ev := range rec.of(event.KindRecovery) {
			t.Logf("recovery event: %s (cwnd %d, ssthresh %d)", ev.Note, ev.Cwnd, ev.Ssthresh)
		}
		t.Fatalf("slow start ended %d times: %q; want once", len(ends), ends)
	}
	if i := b.ep.Info(); i.Cwnd <= i.Ssthresh || i.Ssthresh != ssthresh {
		t.Errorf("cwnd %d, ssthresh %d; want congestion avoidance above %d", i.Cwnd, i.Ssthresh, ssthresh)
	}
	t.Log(ends[0])
}
