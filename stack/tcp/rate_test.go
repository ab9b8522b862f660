package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestDeliveryRate traces delivery rate samples (rate.go; Linux's
// tcp_rate.c) on a fake clock, a round trip of 10 ms.
//
//   - The first write finds nothing in flight: the initial window's ten
//     segments leave app-limited, and their ACK, an RTT later, gives
//     14,600 bytes in 10 ms, 1,460,000 bytes/s, app-limited.
//   - The next twenty leave as that ACK arrives, the window full: their
//     ACK gives 29,200 bytes in 10 ms, 2,920,000 bytes/s, not
//     app-limited, and replaces the first.
//   - Four segments with nothing more to send, and an ACK that SACKs the
//     last two after 10 ms: 2,920 bytes in 10 ms. App-limited and lower
//     than the sample kept: not kept. The ACK of the first two 2 ms later
//     covers all four, 5,840 bytes in 12 ms: lower again, not kept.
//   - Delivered counts every segment once, SACKed or not, and the
//     SYN-ACK, as Linux's tcpi_delivered: 35.
func TestDeliveryRate(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	if _, err := ep.Write(payload(0, 30*1460)); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Drain()); got != 10 {
		t.Fatalf("%d segments in the initial window, want 10", got)
	}
	if i := ep.Info(); i.DeliveryRate != 0 || i.Delivered != 1 {
		t.Fatalf("before an ACK: rate %d, delivered %d; want none, the SYN-ACK", i.DeliveryRate, i.Delivered)
	}
	want := func(step string, rate uint64, appLimited bool, delivered uint64) {
		t.Helper()
		i := ep.Info()
		if i.DeliveryRate != rate || i.DeliveryRateAppLimited != appLimited || i.Delivered != delivered {
			t.Errorf("%s: delivery rate %d bytes/s, app-limited %v, %d delivered; want %d, %v, %d",
				step, i.DeliveryRate, i.DeliveryRateAppLimited, i.Delivered, rate, appLimited, delivered)
		}
	}
	p.Advance(rtt)
	p.Inject(sackAck(11))
	want("initial window", 1460000, true, 11)
	if got := len(p.Drain()); got != 20 {
		t.Fatalf("%d segments after the first ACK, want 20", got)
	}
	p.Advance(rtt)
	p.Inject(sackAck(31))
	want("a full window", 2920000, false, 31)

	// App-limited: four segments and nothing after them.
	if _, err := ep.Write(payload(30*1460, 4*1460)); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Drain()); got != 4 {
		t.Fatalf("%d segments of the short write, want 4", got)
	}
	p.Advance(rtt)
	p.Inject(sackAck(31, [2]int{33, 35}))
	want("app-limited SACK", 2920000, false, 33)
	p.Advance(2 * time.Millisecond)
	p.Inject(sackAck(35))
	want("app-limited ACK", 2920000, false, 35)
}

// TestDeliveryRateSendBufferFull: a write that found the send buffer
// full and is tried again once an ACK made room resumes, as Linux's
// sendmsg sleeps and goes on: it does not mark the connection
// app-limited, though everything it had was in flight and acknowledged.
// A send buffer of ten segments: the first write takes ten, which leave
// app-limited (a fresh connection); the second finds no room; their ACK
// makes room, and the second, tried again, takes ten more, which leave
// not app-limited: their ACK's sample, 14,600 bytes in 10 ms, is not
// app-limited. Checking at every try marked them (the sample then
// app-limited), and a sender whose whole buffer was in flight was
// app-limited all along (TestKernelDeliveryRate).
func TestDeliveryRateSendBufferFull(t *testing.T) {
	const buf = 10 * 1460
	p, ep := rttPeer(t, tcp.Options{SendBufferSize: buf, SendBufferMax: buf})
	data := payload(0, 30*1460)
	if n, err := ep.Write(data); n != buf || err != nil {
		t.Fatalf("first write: %d, %v; want %d", n, err, buf)
	}
	if got := len(p.Drain()); got != 10 {
		t.Fatalf("%d segments, want 10", got)
	}
	if _, err := ep.Write(data[buf:]); err != tcp.ErrWouldBlock {
		t.Fatalf("second write: %v; want ErrWouldBlock", err)
	}
	p.Advance(rtt)
	p.Inject(sackAck(11))
	if i := ep.Info(); i.DeliveryRate != 1460000 || !i.DeliveryRateAppLimited {
		t.Errorf("initial window: %d bytes/s, app-limited %v; want 1460000, true", i.DeliveryRate, i.DeliveryRateAppLimited)
	}
	if n, err := ep.Write(data[buf:]); n != buf || err != nil {
		t.Fatalf("second write again: %d, %v; want %d", n, err, buf)
	}
	if got := len(p.Drain()); got != 10 {
		t.Fatalf("%d segments, want 10", got)
	}
	p.Advance(rtt)
	p.Inject(sackAck(21))
	if i := ep.Info(); i.DeliveryRate != 1460000 || i.DeliveryRateAppLimited {
		t.Errorf("the resumed write's segments: %d bytes/s, app-limited %v; want 1460000, false", i.DeliveryRate, i.DeliveryRateAppLimited)
	}
}

// TestDeliveryRateFin: a FIN alone gives no sample. The request's 100
// bytes leave app-limited and their ACK gives 100 bytes in 10 ms; the
// FIN's ACK, another 10 ms later, delivers one sequence number and leaves
// that sample standing (as a sample of its own it would be 100 bytes/s,
// not app-limited, and replace it), while Delivered counts the FIN.
func TestDeliveryRateFin(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	if _, err := ep.Write(payload(0, 100)); err != nil {
		t.Fatal(err)
	}
	p.Drain()
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 101})
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "F.", Seq: 101, Ack: 1})
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 102})
	if i := ep.Info(); i.DeliveryRate != 10000 || !i.DeliveryRateAppLimited || i.Delivered != 3 {
		t.Errorf("after the FIN's ACK: %d bytes/s, app-limited %v, %d delivered; want 10000, true, 3 (SYN-ACK, data, FIN)",
			i.DeliveryRate, i.DeliveryRateAppLimited, i.Delivered)
	}
}
