package tcp_test

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// windowAcked writes 40 segments, expects the initial window's ten at
// once (nothing is paced before ten), and acknowledges them an RTT later:
// the congestion window opens to 20.
func windowAcked(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
	t.Helper()
	if _, err := ep.Write(payload(0, 40*1460)); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Drain()); got != 10 {
		t.Fatalf("%d segments in the initial window, want 10", got)
	}
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
}

// expectSegs expects segments k to k+n-1 (from 1) of 1,460 bytes, a
// train with PSH on its last (send.go), and nothing after them.
func expectSegs(t *testing.T, p *tcptest.Peer, k, n int) {
	t.Helper()
	expectTrains(t, p, k, n, 1)
}

// expectTrains expects trains trains of n segments from segment k, back
// to back, and nothing after them.
func expectTrains(t *testing.T, p *tcptest.Peer, k, n, trains int) {
	t.Helper()
	for i := k; i < k+n*trains; i++ {
		flags := "."
		if (i-k)%n == n-1 && n > 1 {
			flags = "P."
		}
		p.Expect(seg{Flags: flags, Seq: sb(i), Ack: 1, Payload: payload((i-1)*1460, 1460)})
	}
	p.ExpectNothing()
}

// TestMaxPacingRate: with SetMaxPacingRate at one 1,460-byte segment per
// 2 ms, the initial window's ten segments leave at once (nothing is paced
// before ten), and then each train of segments (two here, the least a
// GSO packet holds: Linux's skb, paced whole whether the device segments
// it or not) at its time: the tenth set the next departure 2 ms after it.
// The ACK of the ten, 10 ms later, finds the sender 8 ms late: the
// eleventh leaves at once with half its 2 ms credited for the lateness
// (Linux tcp_update_skb_after_send), the twelfth rides with it, so the
// next train leaves 3 ms later, and every one after 4 ms after the one
// before, while the congestion window (20) would let them all go. Turned
// off, the rest go at once.
func TestMaxPacingRate(t *testing.T) {
	const rate = 730000 // bytes a second: 2 ms per 1,460-byte segment
	type note struct {
		seq  uint32
		text string
	}
	var notes []note // the send events' notes
	var mu sync.Mutex
	p, ep := rttPeer(t, tcp.Options{Observer: func(ev event.Event) {
		if ev.Kind == event.KindSend && ev.Note != "" {
			mu.Lock()
			notes = append(notes, note{ev.Segment.Seq, ev.Note})
			mu.Unlock()
		}
	}})
	ep.SetMaxPacingRate(rate)
	windowAcked(t, p, ep)
	expectSegs(t, p, 11, 2)
	if i := ep.Info(); !i.Paced || i.PacingRate != rate || i.MaxPacingRate != rate || i.Cwnd != 20*1460 {
		t.Fatalf("paced %v at %d bytes/s, at most %d, cwnd %d; want true, %d, %d, %d", i.Paced, i.PacingRate, i.MaxPacingRate, i.Cwnd, rate, rate, 20*1460)
	}
	p.Advance(3*time.Millisecond - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	expectSegs(t, p, 13, 2)
	for k := 15; k < 21; k += 2 {
		p.Advance(4*time.Millisecond - time.Microsecond)
		p.ExpectNothing()
		p.Advance(time.Microsecond)
		expectSegs(t, p, k, 2)
	}
	if w := ep.Info().PacingWaits; w < 4 {
		t.Errorf("PacingWaits %d, want at least the 4 trains held", w)
	}
	// The first segment of each train that waited says so, for the
	// capture's comment on its frame.
	iss := ep.Info().TCB.ISS
	var lines []string
	mu.Lock()
	for _, n := range notes {
		lines = append(lines, fmt.Sprintf("%d: %s", (n.seq-iss-1)/1460+1, n.text))
	}
	mu.Unlock()
	got := strings.Join(lines, "\n")
	want := strings.Join([]string{
		"13: paced: held 3ms, 5.84 Mbit/s",
		"15: paced: held 4ms, 5.84 Mbit/s",
		"17: paced: held 4ms, 5.84 Mbit/s",
		"19: paced: held 4ms, 5.84 Mbit/s",
	}, "\n")
	if got != want {
		t.Errorf("send notes:\n%s\nwant:\n%s", got, want)
	}
	// Off: what the window allows goes at once (segments 21 to 30).
	ep.SetMaxPacingRate(0)
	if got := len(p.Drain()); got != 10 {
		t.Errorf("%d segments once pacing was turned off, want the window's remaining 10", got)
	}
	if i := ep.Info(); i.Paced || i.MaxPacingRate != math.MaxUint64 {
		t.Errorf("after SetMaxPacingRate(0): paced %v, at most %d; want false, none", i.Paced, i.MaxPacingRate)
	}
}

// TestMaxPacingRateBeforeRTT: before any RTT sample the rate is the
// cap SetMaxPacingRate gave, as Linux's sk_pacing_rate is once
// SO_MAX_PACING_RATE has lowered it from ~0: at 100,000 bytes a second
// the first flight leaves in packets of two segments (tcp_tso_autosize's
// floor, tcp_min_tso_segs), not in one of all ten.
func TestMaxPacingRateBeforeRTT(t *testing.T) {
	// A handshake whose SYN-ACK went twice gives no RTT sample (Karn).
	p, l := tcptest.Listen(t, tcptest.WithGSO())
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Advance(time.Second)
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if i := ep.Info(); i.RTT != 0 {
		t.Fatalf("smoothed RTT %v after a retransmitted SYN-ACK; the test wants none", i.RTT)
	}
	ep.SetMaxPacingRate(100000)
	if i := ep.Info(); i.PacingRate != 100000 {
		t.Errorf("pacing rate %d before an RTT sample, want the cap 100000", i.PacingRate)
	}
	if _, err := ep.Write(payload(0, 10*1460)); err != nil {
		t.Fatal(err)
	}
	if n := len(p.Drain()); n != 10 {
		t.Fatalf("%d segments of the first flight, want 10 (the first ten are not paced)", n)
	}
	if p.GSOPackets != 5 {
		t.Errorf("%d GSO packets for the first ten segments, want 5 of two", p.GSOPackets)
	}
}

// TestPacingOption: Options.Pacing paces every connection at the
// computed rate, twice the window per SRTT in slow start: after the ACK
// of the initial window, 20 segments per 10 ms doubled, 0.25 ms each,
// with no cap, in trains of three (a millisecond of that rate, 5,703
// bytes: tcp_tso_autosize).
func TestPacingOption(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{Pacing: true})
	windowAcked(t, p, ep)
	// The tenth set the next departure by the window then (10 segments
	// doubled, 0.5 ms each); 9.5 ms late, the eleventh goes at once,
	// half its 0.25 ms credited, and the train's two others follow: the
	// next train is due 0.625 ms later, and then every 0.75 ms.
	expectSegs(t, p, 11, 3)
	i := ep.Info()
	if want := uint64(20 * 1460 * 2 * 100); !i.Paced || i.PacingRate != want || i.MaxPacingRate != math.MaxUint64 {
		t.Fatalf("paced %v at %d bytes/s, at most %d; want true, %d, none", i.Paced, i.PacingRate, i.MaxPacingRate, want)
	}
	p.Advance(625*time.Microsecond - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	expectSegs(t, p, 14, 3)
	p.Advance(750*time.Microsecond - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	expectSegs(t, p, 17, 3)
}

// lateClock is the fake clock with timers that fire late by late, as
// Go's runtime fires a timer armed for a fraction of a millisecond when
// the process sleeps in netpoll.
type lateClock struct {
	*faketime.ManualClock
	late time.Duration
}

func (c *lateClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	return &lateTimer{c.ManualClock.AfterFunc(d+c.late, f), c.late}
}

type lateTimer struct {
	tcpip.Timer
	late time.Duration
}

func (t *lateTimer) Reset(d time.Duration) { t.Timer.Reset(d + t.late) }

// TestPacingLateTimer: a pacing timer that fires late (0.9 ms here, on a
// clock whose every timer does) is credited the lateness, up to a
// millisecond, not half the train's length as Linux's hrtimer-precise
// rule allows: the train it held leaves and the next, already due, goes
// with it, so the sender keeps its rate, two trains of 0.75 ms every 1.5
// ms. With Linux's credit it sent one train per 1.275 ms, 59% of the
// rate (Go's runtime sleeps in whole milliseconds, and a paced sender in
// examples/pacing averaged 54-56 Mbit/s for 80).
func TestPacingLateTimer(t *testing.T) {
	const late = 900 * time.Microsecond
	p, ep := rttPeer(t, tcp.Options{Pacing: true}, tcptest.WithClock(func(m *faketime.ManualClock) tcpip.Clock {
		return &lateClock{ManualClock: m, late: late}
	}))
	windowAcked(t, p, ep)
	// As in TestPacingOption: the eleventh, held by the window, leaves
	// as the ACK arrives with its train; the next is due 0.625 ms later.
	expectSegs(t, p, 11, 3)
	p.Advance(625*time.Microsecond + late - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	// 0.9 ms late: the held train and the one due 0.15 ms ago go now;
	// the next is due 0.6 ms after, and its timer fires 0.9 ms late.
	expectTrains(t, p, 14, 3, 2)
	p.Advance(600*time.Microsecond + late - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	expectTrains(t, p, 20, 3, 2)
}

// TestMaxPacingRateOption: Options.MaxPacingRate paces every connection
// at most at its rate, as fq's maxrate; SetMaxPacingRate(0) then leaves
// the connection paced as the options say, not unpaced.
func TestMaxPacingRateOption(t *testing.T) {
	const rate = 730000
	_, ep := rttPeer(t, tcp.Options{MaxPacingRate: rate})
	if i := ep.Info(); !i.Paced || i.MaxPacingRate != rate || i.PacingRate != rate {
		t.Fatalf("paced %v at %d bytes/s, at most %d; want true, %d, %d", i.Paced, i.PacingRate, i.MaxPacingRate, rate, rate)
	}
	ep.SetMaxPacingRate(2 * rate)
	if i := ep.Info(); i.MaxPacingRate != 2*rate {
		t.Errorf("after SetMaxPacingRate(%d): at most %d", 2*rate, i.MaxPacingRate)
	}
	ep.SetMaxPacingRate(0)
	if i := ep.Info(); !i.Paced || i.MaxPacingRate != rate {
		t.Errorf("after SetMaxPacingRate(0): paced %v at most %d; want true, the options' %d", i.Paced, i.MaxPacingRate, rate)
	}
}
