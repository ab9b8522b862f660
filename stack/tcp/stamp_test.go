package tcp_test

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// countingClock counts the stack's readings of the fake clock.
type countingClock struct {
	*faketime.ManualClock
	reads int
}

func (c *countingClock) Now() time.Time {
	c.reads++
	return c.ManualClock.Now()
}

func (c *countingClock) NowMonotonic() tcpip.MonotonicTime {
	c.reads++
	return c.ManualClock.NowMonotonic()
}

// TestClockReadOncePerSegment: one piece of the engine's work reads the
// clock once, as Linux stamps a segment's processing once (tcp_mstamp):
// a Write that sends a train of segments, the ACK that takes their RTT
// sample and rearms the timers, the peer's data and the ACK it draws,
// each with timestamps in force. Before the stamp (stamp.go) each
// segment that arrived read it five times; the Write read it once only
// thanks to a cache of the send train's own, which the stamp replaced.
func TestClockReadOncePerSegment(t *testing.T) {
	var clk *countingClock
	p, ep := tcptest.Established(t, tcptest.WithTimestamps(), tcptest.WithClock(func(m *faketime.ManualClock) tcpip.Clock {
		clk = &countingClock{ManualClock: m}
		return clk
	}))
	p.Advance(10 * time.Millisecond)
	reads := func(what string, do func()) {
		t.Helper()
		before := clk.reads
		do()
		if n := clk.reads - before; n != 1 {
			t.Errorf("%s: the clock was read %d times, want once", what, n)
		}
	}
	data := make([]byte, 4*1448)
	reads("Write of four segments", func() {
		if _, err := ep.Write(data); err != nil {
			t.Fatal(err)
		}
	})
	for i := range 4 {
		flags := "."
		if i == 3 {
			flags = "P."
		}
		p.Expect(tcptest.Seg{Flags: flags, Seq: 1 + uint32(i)*1448, Ack: 1, Payload: data[:1448]})
	}
	p.Advance(5 * time.Millisecond)
	reads("the ACK of all four", func() {
		p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1 + 4*1448})
	})
	p.ExpectNothing()
	reads("the peer's first segment of data", func() {
		p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1 + 4*1448, Payload: data[:1448]})
	})
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1 + 4*1448, Ack: 1 + 1448}) // quick ACKs at the start (delack.go)
	reads("its second", func() {
		p.Inject(tcptest.Seg{Flags: "P.", Seq: 1 + 1448, Ack: 1 + 4*1448, Payload: data[:1448]})
	})
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1 + 4*1448, Ack: 1 + 2*1448})
}
