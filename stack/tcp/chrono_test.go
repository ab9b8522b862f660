package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestChronoTimes: Info's BusyTime, RwndLimited and SndbufLimited, Linux's
// tcpi_busy_time, tcpi_rwnd_limited and tcpi_sndbuf_limited. Busy runs
// while data is queued or in flight; the peer's closed window, then a
// window too small for a segment, hold new data back (window-limited,
// which counts as busy too); idle time between counts for nothing.
func TestChronoTimes(t *testing.T) {
	const mss = 1000
	p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: mss}))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
	want := func(busy, rwnd time.Duration) {
		t.Helper()
		if in := ep.Info(); in.BusyTime != busy || in.RwndLimited != rwnd || in.SndbufLimited != 0 {
			t.Fatalf("busy %v, window-limited %v, buffer-limited %v; want %v, %v, 0", in.BusyTime, in.RwndLimited, in.SndbufLimited, busy, rwnd)
		}
	}
	p.Advance(50 * time.Millisecond) // idle: nothing counts
	want(0, 0)
	ep.Write(payload(0, mss))
	p.Advance(100 * time.Millisecond)
	want(100*time.Millisecond, 100*time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 2000}) // the window opens
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: mss})
	p.Advance(30 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + mss, Win: 10}) // all acknowledged: idle
	want(130*time.Millisecond, 100*time.Millisecond)
	p.Advance(time.Second)
	ep.Write(payload(0, mss)) // 10 bytes of window: sender SWS avoidance holds the segment
	p.ExpectNothing()
	p.Advance(100 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + mss, Win: 2000})
	p.Expect(seg{Flags: "P.", Seq: 1 + mss, Ack: 1, Len: mss})
	want(230*time.Millisecond, 200*time.Millisecond)
	p.Advance(20 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 2*mss, Win: 2000})
	p.Advance(time.Second)
	want(250*time.Millisecond, 200*time.Millisecond)
}

// TestChronoSndbufLimited: a Write the send buffer cannot take whole
// starts the buffer-limited time, which an ACK that makes room ends.
func TestChronoSndbufLimited(t *testing.T) {
	const mss = 1000
	p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: mss}), tcptest.WithTCP(tcp.Options{SendBufferSize: 4 * mss}))
	if n, _ := ep.Write(payload(0, 6*mss)); n != 4*mss {
		t.Fatalf("Write took %d, want the buffer's %d", n, 4*mss)
	}
	p.Drain()
	p.Advance(40 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 2*mss})
	p.Advance(10 * time.Millisecond)
	if in := ep.Info(); in.SndbufLimited != 40*time.Millisecond || in.BusyTime != 50*time.Millisecond {
		t.Fatalf("buffer-limited %v, busy %v; want 40ms, 50ms", in.SndbufLimited, in.BusyTime)
	}
}
