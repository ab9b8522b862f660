package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestSlowStartAfterIdle: a sender that sent nothing for longer than an
// RTO, with nothing in flight, restarts from the restart window RW =
// min(IW, cwnd) (RFC 5681 4.1), as Linux with tcp_slow_start_after_idle=1
// (tcp_cwnd_restart: halving once per idle RTO, never below RW; ssthresh
// keeps at least 3/4 of the old window). The window grows first to 36 segments:
// 10, then 20 by one ACK of 10, then 36 by an ACK of 16.
func TestSlowStartAfterIdle(t *testing.T) {
	const mss = 1000
	for _, tc := range []struct {
		name     string
		opts     tcp.Options
		idle     time.Duration
		zeroWnd  bool   // the peer's window is closed across the idle spell
		segments int    // sent after the idle spell, in one go
		cwnd     uint32 // segments
	}{
		{"idle 2 s", tcp.Options{}, 2 * time.Second, false, 10, 10},
		{"idle below the RTO", tcp.Options{}, 100 * time.Millisecond, false, 20, 36},
		{"NoSlowStartAfterIdle", tcp.Options{NoSlowStartAfterIdle: true}, 2 * time.Second, false, 20, 36},
		{"window opens after 2 s", tcp.Options{}, 2 * time.Second, true, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.WithTCP(tc.opts), tcptest.WithSynOptions(seg{MSS: mss}))
			p.Advance(100 * time.Millisecond)
			ep.Write(payload(0, 26*mss))
			if n := len(p.Drain()); n != 10 {
				t.Fatalf("first flight: %d segments, want IW = 10", n)
			}
			p.Advance(100 * time.Millisecond)
			p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 10*mss})
			if n := len(p.Drain()); n != 16 {
				t.Fatalf("second flight: %d segments, want the 16 left", n)
			}
			p.Advance(100 * time.Millisecond)
			if tc.zeroWnd {
				p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 26*mss, Win: 0, Check: tcptest.CheckWin})
			} else {
				p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 26*mss})
			}
			before := ep.Info()
			if before.Cwnd != 36*mss {
				t.Fatalf("cwnd %d before the idle spell, want 36 segments", before.Cwnd)
			}
			if tc.zeroWnd {
				ep.Write(payload(0, 20*mss))
			}
			p.Advance(tc.idle)
			for _, s := range p.Drain() {
				if s.Len > 0 {
					t.Fatalf("data sent into a closed window: %v", s)
				}
			}
			if c := ep.Info().Cwnd; c != 36*mss {
				t.Fatalf("cwnd %d after idling with nothing to send, want 36 segments still (window probes are no data)", c)
			}
			if tc.zeroWnd {
				p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 26*mss}) // the window opens
			} else {
				ep.Write(payload(0, 20*mss))
			}
			n := 0
			for _, s := range p.Drain() {
				if s.Len > 0 {
					n++
				}
			}
			in := ep.Info()
			if n != tc.segments || in.Cwnd != tc.cwnd*mss {
				t.Fatalf("after %v idle: %d segments sent, cwnd %d; want %d segments, cwnd %d segments", tc.idle, n, in.Cwnd, tc.segments, tc.cwnd)
			}
			if want := max(before.Ssthresh, 27*mss); tc.cwnd < 36 && in.Ssthresh != want {
				t.Errorf("ssthresh %d after the restart, want max(ssthresh, 3/4 of the old window) = %d", in.Ssthresh, want)
			}
		})
	}
}
