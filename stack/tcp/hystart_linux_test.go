package tcp_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// Linux's HyStart (Options.HyStart = HyStartLinux, hystart_linux.go)
// through the engine, as packet traces on the fake clock, with the bulk
// sender of cubic_trace_test.go: each test sets up a round whose ACKs show
// one of HyStart's signs and checks where slow start ends, and the glass
// box's note that says why.

// trainRound lets rtt pass and acknowledges the round's segments one by
// one, gap apart: an ACK train as long as the round, gap*(n-1). What the
// stack sends in answer is the next round; refill false keeps the
// application from writing more.
func (b *bulk) trainRound(rtt, gap time.Duration, refill bool) {
	b.t.Helper()
	b.p.Advance(rtt)
	b.next = b.next[:0]
	for i, end := range b.sent {
		if i > 0 && gap > 0 {
			b.p.Advance(gap)
		}
		b.p.Inject(seg{Flags: ".", Seq: 1, Ack: end})
		if refill {
			b.send(&b.next)
		} else {
			b.collect(&b.next)
		}
	}
	b.sent, b.next = b.next, b.sent
}

// collect records what the stack sent, writing nothing more.
func (b *bulk) collect(into *[]uint32) {
	for _, s := range b.p.Drain() {
		if s.Len > 0 {
			*into = append(*into, s.Seq+uint32(s.Len))
		}
	}
}

// hystartNotes returns the recovery events HyStart's notes made, either
// HyStart's.
func hystartNotes(b *bulk, rec *events) []string {
	b.p.TCP.SyncEvents()
	var out []string
	for _, ev := range rec.of(event.KindRecovery) {
		if strings.HasPrefix(ev.Note, "HyStart") {
			out = append(out, ev.Note)
		}
	}
	return out
}

const noSsthresh = math.MaxUint32

// TestHyStartLinuxDelay: slow start with every segment acknowledged, RTT
// 100 ms, the window doubling each round trip: 10, 20, 40, 80 segments.
// Then the round of 80 comes back 10 or 20 ms late. Linux's delay
// threshold is the minimum RTT over 8, held between 4 and 16 ms: 12.5
// ms (HYSTART_DELAY_THRESH). A round 20 ms late is above it: at the
// round's ninth sample (HYSTART_MIN_SAMPLES, then the check) HyStart sets
// ssthresh to the window before that ACK grows it, 80 + 8 = 88 segments,
// and congestion avoidance takes the ACK. 10 ms late is not enough, and
// slow start doubles on to 160. The default, HyStart++, answers the same
// rise with conservative slow start and leaves ssthresh unset (RFC 9406
// 4.2); HyStartOff does not answer it.
func TestHyStartLinuxDelay(t *testing.T) {
	const rtt, mss = 100 * time.Millisecond, 1460
	for _, tc := range []struct {
		name     string
		mode     tcp.HyStartMode
		rise     time.Duration
		ssthresh uint32 // segments; noSsthresh: still in slow start
		note     string
	}{
		{"linux, below the threshold", tcp.HyStartLinux, 10 * time.Millisecond, noSsthresh, ""},
		{"linux, above the threshold", tcp.HyStartLinux, 20 * time.Millisecond, 88,
			"HyStart (Linux): the round's lowest RTT 120ms, after 9 samples, is above the minimum RTT 100ms by more than 12.5ms: ssthresh = cwnd 128480 (88 segments), congestion avoidance"},
		{"default: HyStart++", tcp.HyStartPlusPlus, 20 * time.Millisecond, noSsthresh,
			"HyStart++: the round's lowest RTT rose from 100ms to 120ms, by RttThresh 12.5ms or more: conservative slow start, a quarter as fast (RFC 9406 4.2)"},
		{"off", tcp.HyStartOff, 20 * time.Millisecond, noSsthresh, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &events{}
			b := newBulk(t, rtt, tcp.Options{Observer: rec.observe, HyStart: tc.mode})
			for _, want := range []float64{20, 40, 80} {
				b.round(rtt, 1)
				if got := b.cwnd(); got != want {
					t.Fatalf("slow start with a flat RTT: cwnd %.1f segments, want %.0f", got, want)
				}
			}
			b.round(rtt+tc.rise, 1)
			i := b.ep.Info()
			notes := hystartNotes(b, rec)
			if tc.note == "" && len(notes) != 0 || tc.note != "" && (len(notes) != 1 || notes[0] != tc.note) {
				t.Errorf("HyStart notes %q, want %q", notes, tc.note)
			}
			switch {
			case tc.ssthresh == noSsthresh:
				if i.Ssthresh != noSsthresh {
					t.Errorf("RTT +%v: ssthresh %d, want none (slow start)", tc.rise, i.Ssthresh)
				}
				if tc.mode != tcp.HyStartPlusPlus && b.cwnd() != 160 {
					t.Errorf("RTT +%v: cwnd %.1f segments, want 160 (slow start)", tc.rise, b.cwnd())
				}
			default:
				if i.Ssthresh != tc.ssthresh*mss {
					t.Errorf("RTT +%v: ssthresh %d, want cwnd at the ninth sample, %d segments (%d)", tc.rise, i.Ssthresh, tc.ssthresh, tc.ssthresh*mss)
				}
				// The rest of the round in congestion avoidance:
				// well under a segment more.
				if got := b.cwnd(); got < float64(tc.ssthresh) || got >= float64(tc.ssthresh)+1 {
					t.Errorf("RTT +%v: cwnd %.2f segments after the round, want congestion avoidance from %d", tc.rise, got, tc.ssthresh)
				}
			}
		})
	}
}

// TestHyStartLinuxAckTrain: slow start at RTT 100 ms, every segment
// acknowledged: 10, 20, 40 segments. The round of 40 comes back as a
// train, its ACKs 2 ms apart (hystart_ack_delta_us: at most 2 ms between
// two ACKs of a train). Unpaced, the train counts once it lasts more than
// half the minimum RTT plus the ACK delay allowance (hystart_ack_delay,
// 1 ms here): (100 + 1)/2 = 50.5 ms, reached by the 27th ACK, 52 ms after
// the first, where the window is 40 + 26 = 66 segments: ssthresh = cwnd.
// The RTTs rise by 2 ms an ACK, but the round's lowest is its first, 100
// ms: the delay sign stays silent, the train alone ends slow start. ACKs
// 3 ms apart are no train, and slow start goes on to 80.
func TestHyStartLinuxAckTrain(t *testing.T) {
	const rtt, mss = 100 * time.Millisecond, 1460
	for _, tc := range []struct {
		gap      time.Duration
		ssthresh uint32 // segments; noSsthresh: still in slow start
		note     string
	}{
		{2 * time.Millisecond, 66,
			"HyStart (Linux): ACK train of 52ms reached half the minimum RTT 100ms (50.5ms with the ACK delay allowance): ssthresh = cwnd 96360 (66 segments), congestion avoidance"},
		{3 * time.Millisecond, noSsthresh, ""},
	} {
		t.Run(fmt.Sprintf("ACKs %v apart", tc.gap), func(t *testing.T) {
			rec := &events{}
			b := newBulk(t, rtt, tcp.Options{Observer: rec.observe, HyStart: tcp.HyStartLinux})
			b.round(rtt, 1)
			b.round(rtt, 1)
			if got := b.cwnd(); got != 40 {
				t.Fatalf("slow start: cwnd %.1f segments, want 40", got)
			}
			b.trainRound(rtt, tc.gap, true)
			i := b.ep.Info()
			notes := hystartNotes(b, rec)
			if tc.note == "" && len(notes) != 0 || tc.note != "" && (len(notes) != 1 || notes[0] != tc.note) {
				t.Errorf("HyStart notes %q, want %q", notes, tc.note)
			}
			if tc.ssthresh == noSsthresh {
				if i.Ssthresh != noSsthresh || b.cwnd() != 80 {
					t.Errorf("ACKs %v apart: cwnd %.1f segments, ssthresh %d; want slow start to 80", tc.gap, b.cwnd(), i.Ssthresh)
				}
				return
			}
			if i.Ssthresh != tc.ssthresh*mss {
				t.Errorf("ACKs %v apart: ssthresh %d, want the window at the train's 27th ACK, %d segments (%d)", tc.gap, i.Ssthresh, tc.ssthresh, tc.ssthresh*mss)
			}
			if got := b.cwnd(); got < float64(tc.ssthresh) || got >= float64(tc.ssthresh)+1 {
				t.Errorf("cwnd %.2f segments after the round, want congestion avoidance from %d", got, tc.ssthresh)
			}
		})
	}
}

// TestHyStartLinuxLowWindow: below hystart_low_window, 16 segments,
// HyStart takes no sign. At RTT 4 ms the first round's ten ACKs come 1 ms
// apart: a train past (4 + 1)/2 = 2.5 ms by the fourth, where the window
// is 13 segments, but ACKs 2 to 6 find it below 16 and are not counted,
// so that the 7th, at 16 segments, is 6 ms from the train's last: no
// train, and slow start reaches 20. The next round, at 20 segments, is
// such a train again and ends slow start at its fourth ACK: ssthresh =
// cwnd = 23 segments.
func TestHyStartLinuxLowWindow(t *testing.T) {
	const rtt, gap, mss = 4 * time.Millisecond, time.Millisecond, 1460
	rec := &events{}
	b := newBulk(t, rtt, tcp.Options{Observer: rec.observe, HyStart: tcp.HyStartLinux})
	b.trainRound(rtt, gap, true)
	if i := b.ep.Info(); i.Ssthresh != noSsthresh || b.cwnd() != 20 {
		t.Fatalf("a train below 16 segments: cwnd %.1f segments, ssthresh %d; want slow start to 20 (notes %q)", b.cwnd(), i.Ssthresh, hystartNotes(b, rec))
	}
	b.trainRound(rtt, gap, true)
	want := "HyStart (Linux): ACK train of 3ms reached half the minimum RTT 4ms (2.5ms with the ACK delay allowance): ssthresh = cwnd 33580 (23 segments), congestion avoidance"
	if n := hystartNotes(b, rec); len(n) != 1 || n[0] != want {
		t.Errorf("HyStart notes %q, want %q", n, want)
	}
	if i := b.ep.Info(); i.Ssthresh != 23*mss {
		t.Errorf("a train at 20 segments: ssthresh %d, want 23 segments (%d)", i.Ssthresh, 23*mss)
	}
}

// TestHyStartLinuxAfterTimeout: once HyStart has found an exit it rests,
// until a retransmission timeout resets it (Linux's cubictcp_state at
// TCP_CA_Loss): the slow start that climbs back may end early again. The
// first slow start ends on a delay rise at 88 segments, as in
// TestHyStartLinuxDelay; the transfer runs out in congestion avoidance,
// and then a write of one segment is lost: the timeout leaves cwnd one
// segment and ssthresh β_cubic = 0.7 of the window. Slow start from
// there, with new data, climbs to 32 segments at a flat RTT (its rounds
// below 16 segments do not count), and the round of 32 comes back 20 ms
// late: HyStart ends slow start at its ninth sample, 40 segments, well
// below ssthresh. A HyStart that stayed at rest would have let slow start
// run on to ssthresh. (The round after the timeout begins, as Linux's
// does, with the first ACK beyond what was sent before it; a write of one
// segment keeps the rounds the peer's.)
func TestHyStartLinuxAfterTimeout(t *testing.T) {
	const rtt, rise, mss = 100 * time.Millisecond, 20 * time.Millisecond, 1460
	rec := &events{}
	b := newBulk(t, rtt, tcp.Options{Observer: rec.observe, HyStart: tcp.HyStartLinux, NoFRTO: true, NoTLP: true})
	for range 3 {
		b.round(rtt, 1)
	}
	b.round(rtt+rise, 1)
	if i := b.ep.Info(); i.Ssthresh != 88*mss {
		t.Fatalf("first slow start: ssthresh %d, want HyStart's exit at 88 segments", i.Ssthresh)
	}
	// Let the transfer run dry: everything written is sent and
	// acknowledged.
	for n := 0; len(b.sent) > 0 || b.ep.Info().SendQueued > 0; n++ {
		if n == 100 {
			t.Fatalf("after %d rounds still %d bytes queued", n, b.ep.Info().SendQueued)
		}
		b.trainRound(rtt, 0, false)
	}
	// One segment, lost: the timeout.
	if _, err := b.ep.Write(payload(0, mss)); err != nil {
		t.Fatal(err)
	}
	b.collect(&b.sent)
	w := b.ep.Info().Cwnd
	b.sent = b.sent[:0]
	b.p.Advance(b.ep.Info().RTO)
	b.collect(&b.sent)
	i := b.ep.Info()
	if st := b.p.TCP.Stats(); st.RetransmitTimeouts.Load() != 1 || i.Cwnd != mss {
		t.Fatalf("after the loss: %d timeouts, cwnd %d; want one timeout, cwnd one segment", st.RetransmitTimeouts.Load(), i.Cwnd)
	}
	lossSsthresh := i.Ssthresh
	if lossSsthresh < 60*mss || lossSsthresh != uint32(float64(w)/mss*0.7*mss) {
		t.Fatalf("after the loss: ssthresh %d, want 0.7 of cwnd %d", lossSsthresh, w)
	}
	// Slow start from one segment: the lost one again, then new data.
	for n := 0; b.cwnd() < 32; n++ {
		if n == 10 {
			t.Fatalf("slow start after the timeout: cwnd %.1f segments after %d rounds", b.cwnd(), n)
		}
		b.trainRound(rtt, 0, true)
	}
	if got := b.cwnd(); got != 32 {
		t.Fatalf("slow start after the timeout: cwnd %.1f segments, want 32", got)
	}
	b.round(rtt+rise, 1)
	want := "HyStart (Linux): the round's lowest RTT 120ms, after 9 samples, is above the minimum RTT 100ms by more than 12.5ms: ssthresh = cwnd 58400 (40 segments), congestion avoidance"
	if n := hystartNotes(b, rec); len(n) != 2 || n[1] != want {
		t.Errorf("HyStart notes %q, want a second: %q", n, want)
	}
	if i := b.ep.Info(); i.Ssthresh != 40*mss {
		t.Errorf("slow start after the timeout: ssthresh %d, want HyStart's exit at 40 segments (%d); the timeout's was %d", i.Ssthresh, 40*mss, lossSsthresh)
	}
}

// TestHyStartModes: HyStart++ is the zero value, and each mode says its
// name.
func TestHyStartModes(t *testing.T) {
	if m := (tcp.Options{}).HyStart; m != tcp.HyStartPlusPlus {
		t.Errorf("default HyStart %v, want HyStart++", m)
	}
	for m, want := range map[tcp.HyStartMode]string{
		tcp.HyStartPlusPlus: "hystart++", tcp.HyStartLinux: "linux", tcp.HyStartOff: "off", 9: "HyStartMode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", m, got, want)
		}
	}
}
