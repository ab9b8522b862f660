package tcp

import (
	"strings"
	"testing"
	"time"
)

// TestMaxFilter: BBR's windowed maximum over 10 round trips (lib/minmax.c's
// algorithm): a higher sample takes over at once; a lower one waits its
// turn while the maximum is in the window, and becomes the maximum when
// the best has aged out of it, as do the second and third choices kept
// from the window's later quarters and half.
func TestMaxFilter(t *testing.T) {
	type step struct{ t, v, want uint64 }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a higher sample at once", []step{{0, 5, 5}, {1, 7, 7}, {2, 9, 9}}},
		{"a lower one waits", []step{{0, 9, 9}, {1, 5, 9}, {5, 4, 9}, {10, 3, 9}}},
		{"the best ages out, the second takes over", []step{{0, 9, 9}, {3, 6, 9}, {6, 4, 9}, {11, 4, 6}}},
		{"both age out, the third", []step{{0, 9, 9}, {3, 6, 9}, {6, 4, 9}, {14, 2, 4}}},
		{"nothing left in the window", []step{{0, 9, 9}, {3, 6, 9}, {6, 4, 9}, {30, 2, 2}}},
		{"equal to the best restarts the window", []step{{0, 9, 9}, {8, 9, 9}, {15, 1, 9}, {19, 1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m maxFilter
			m.reset(0, 0)
			for _, s := range tc.steps {
				m.update(10, s.t, s.v)
				if got := m.get(); got != s.want {
					t.Fatalf("after %d at round %d: max %d, want %d (%+v)", s.v, s.t, got, s.want, m.s)
				}
			}
		})
	}
}

// TestBBRTimeoutLossesCount: a retransmission timeout in the middle of a
// policer detector's interval ends it with the losses it deemed, as in
// Linux (tcp_timeout_mark_lost adds them to tp->lost before
// bbr_set_state samples): 30,000 bytes lost of 100,000 delivered over
// 100 ms is 30%, above the 20% that makes the interval a rate sample,
// 1,000,000 bytes a second.
func TestBBRTimeoutLossesCount(t *testing.T) {
	for _, tc := range []struct {
		lost   uint32
		wantBw uint64
	}{{30000, 1000000}, {10000, 0}} {
		b := &bbr{}
		b.lt.sampling = true
		b.lt.rounds = bbrLtMinRounds
		b.totalDelivered, b.deliveredAt = 100000, 100*time.Millisecond
		b.OnCongestion(CongestionSample{Cwnd: 10 * 1460, Ssthresh: ^uint32(0), MSS: 1460, Timeout: true, Lost: tc.lost})
		if b.lt.bw != tc.wantBw {
			t.Errorf("a timeout that deemed %d of 100,000 bytes lost: the detector's rate %d, want %d", tc.lost, b.lt.bw, tc.wantBw)
		}
	}
}

// TestBBRTimeoutAgain: a retransmission timeout that continues an
// episode reaches BBR too (TimeoutFollower), as Linux's tcp_enter_loss
// calls bbr_set_state at every timeout: the first timeout's 10,000 bytes
// lost of 100,000 delivered are below the policer detector's 20%, and the
// second's 15,000 more make 25%, a rate sample of 1,000,000 bytes a
// second over the 100 ms interval. Heard only at the episode's first
// timeout, the detector sees no policer.
func TestBBRTimeoutAgain(t *testing.T) {
	b := &bbr{}
	b.lt.sampling = true
	b.lt.rounds = bbrLtMinRounds
	b.totalDelivered, b.deliveredAt = 100000, 100*time.Millisecond
	b.OnCongestion(CongestionSample{Cwnd: 10 * 1460, Ssthresh: ^uint32(0), MSS: 1460, Timeout: true, Lost: 10000})
	if b.lt.bw != 0 {
		t.Fatalf("after the first timeout (10%% lost): the detector's rate %d, want none", b.lt.bw)
	}
	var cc CongestionControl = b
	f, ok := cc.(TimeoutFollower)
	if !ok {
		t.Fatal("BBR does not follow each timeout")
	}
	f.OnTimeoutAgain(CongestionSample{Cwnd: 1460, MSS: 1460, Timeout: true, Lost: 15000})
	if b.lt.bw != 1000000 || b.lost != 25000 {
		t.Errorf("after the second timeout (25%% lost): the detector's rate %d, %d bytes lost; want 1000000 and 25000", b.lt.bw, b.lost)
	}
}

// TestBBRStartupExitNotes: startup ends after three round trips in which
// the bandwidth grew less than 25%, and drain ends when no more than a
// BDP (and the quantization budget) is in flight (bbr_check_drain). Both
// can happen on one ACK: then the model goes from startup to probe_bw at
// once, as Linux's does, and its event says it passed through drain and
// why, not a reason of the policer detector's, as it did before (CI's
// TestKernelBBR, when ACKs came in a bunch on a loaded machine). Each
// round here delivers 10,000 bytes in 10 ms: 1 MB/s, a BDP of 10,000
// bytes, 16,000 with the budget; startup ends on the fourth round's ACK.
func TestBBRStartupExitNotes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight []uint32 // after each round's ACK
		want     []string // the notes, in order
	}{
		{"a queue to drain, then drained", []uint32{50000, 50000, 50000, 40000, 20000, 16000}, []string{
			"BBR startup → drain: the bandwidth grew less than 25% in 3 round trips: the pipe is full",
			"BBR drain → probe_bw: the queue startup built is drained"}},
		{"no queue: both steps on one ACK", []uint32{50000, 50000, 50000, 16000}, []string{
			"BBR startup → drain → probe_bw: the bandwidth grew less than 25% in 3 round trips: " +
				"the pipe is full, and no more than a BDP is in flight: no queue to drain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &bbr{}
			var notes []string
			var total uint64
			for i, inFlight := range tc.inFlight {
				now := time.Duration(i+1) * 10 * time.Millisecond
				s := RateSample{Now: now, Delivered: 10000, Interval: 10 * time.Millisecond, PriorDelivered: total,
					TotalDelivered: total + 10000, DeliveredAt: now, AckedSacked: 10000, PriorInFlight: 50000,
					InFlight: inFlight, RTT: 10 * time.Millisecond, MinRTT: 10 * time.Millisecond,
					SRTT: 10 * time.Millisecond, Cwnd: 50000, MSS: 1000}
				total += 10000
				if out := b.Control(s); out.Note != "" {
					notes = append(notes, out.Note)
				}
			}
			if len(notes) != len(tc.want) {
				t.Fatalf("notes %q, want %d", notes, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(notes[i], w+" (") {
					t.Errorf("note %d: %q, want %q", i, notes[i], w)
				}
			}
			if b.mode != bbrProbeBW {
				t.Errorf("mode %v at the end, want probe_bw", b.mode)
			}
		})
	}
}
