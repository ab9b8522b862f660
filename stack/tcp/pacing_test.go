package tcp_test

import (
	"math"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestMaxPacingRate: with SetMaxPacingRate at one 1,460-byte segment per
// 2 ms, the initial window's ten segments leave at once (nothing is paced
// before ten), and each later one at its time: the tenth set the next
// departure 2 ms after it. The ACK of the ten, 10 ms later, finds the
// sender 8 ms late: the eleventh leaves at once, and half its 2 ms is
// credited for the lateness (Linux tcp_update_skb_after_send), so the
// twelfth leaves 1 ms later, and every one after 2 ms after the one
// before, while the congestion window (20) would let them all go. Turned
// off, the rest go at once.
func TestMaxPacingRate(t *testing.T) {
	const rate = 730000 // bytes a second: 2 ms per 1,460-byte segment
	p, ep := rttPeer(t, tcp.Options{})
	ep.SetMaxPacingRate(rate)
	if _, err := ep.Write(payload(0, 40*1460)); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Drain()); got != 10 {
		t.Fatalf("%d segments in the initial window, want 10", got)
	}
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
	p.Expect(seg{Flags: ".", Seq: sb(11), Ack: 1, Payload: payload(10*1460, 1460)})
	p.ExpectNothing()
	if i := ep.Info(); !i.Paced || i.PacingRate != rate || i.MaxPacingRate != rate || i.Cwnd != 20*1460 {
		t.Fatalf("paced %v at %d bytes/s, at most %d, cwnd %d; want true, %d, %d, %d", i.Paced, i.PacingRate, i.MaxPacingRate, i.Cwnd, rate, rate, 20*1460)
	}
	p.Advance(time.Millisecond - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: ".", Seq: sb(12), Ack: 1, Payload: payload(11*1460, 1460)})
	for k := 12; k < 18; k++ {
		p.Advance(2*time.Millisecond - time.Microsecond)
		p.ExpectNothing()
		p.Advance(time.Microsecond)
		p.Expect(seg{Flags: ".", Seq: sb(k + 1), Ack: 1, Payload: payload(k*1460, 1460)})
	}
	if w := ep.Info().PacingWaits; w < 7 {
		t.Errorf("PacingWaits %d, want at least 7", w)
	}
	// Off: what the window allows goes at once (segments 18 to 29).
	ep.SetMaxPacingRate(0)
	if got := len(p.Drain()); got != 12 {
		t.Errorf("%d segments once pacing was turned off, want the window's remaining 12", got)
	}
	if i := ep.Info(); i.Paced || i.MaxPacingRate != math.MaxUint64 {
		t.Errorf("after SetMaxPacingRate(0): paced %v, at most %d; want false, none", i.Paced, i.MaxPacingRate)
	}
}

// TestPacingOption: Options.Pacing paces every connection at the
// computed rate, twice the window per SRTT in slow start: 20 segments per
// 10 ms doubled, one per 0.25 ms, with no cap.
func TestPacingOption(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{Pacing: true})
	if _, err := ep.Write(payload(0, 40*1460)); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Drain()); got != 10 {
		t.Fatalf("%d segments in the initial window, want 10", got)
	}
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
	// The tenth set the next departure by the window then (10 segments,
	// 0.5 ms each); 10 ms late, the eleventh goes at once, and the next
	// after half of its 0.25 ms at the new rate.
	p.Expect(seg{Flags: ".", Seq: sb(11), Ack: 1, Payload: payload(10*1460, 1460)})
	p.ExpectNothing()
	i := ep.Info()
	if want := uint64(20 * 1460 * 2 * 100); !i.Paced || i.PacingRate != want || i.MaxPacingRate != math.MaxUint64 {
		t.Fatalf("paced %v at %d bytes/s, at most %d; want true, %d, none", i.Paced, i.PacingRate, i.MaxPacingRate, want)
	}
	p.Advance(125 * time.Microsecond)
	p.Expect(seg{Flags: ".", Seq: sb(12), Ack: 1, Payload: payload(11*1460, 1460)})
	p.Advance(250*time.Microsecond - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: ".", Seq: sb(13), Ack: 1, Payload: payload(12*1460, 1460)})
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
