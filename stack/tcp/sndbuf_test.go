package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestSendBufferGrows: a writer with more to send than a 16 KiB send
// buffer holds, and a peer that acknowledges each flight a round trip
// later. When an ACK finds that the buffer was the limit (the writer
// waited for room, all it wrote was sent, and neither window was full),
// the buffer doubles, up to twice the congestion window and SendBufferMax
// (expandSendBuffer; Linux's tcp_sndbuf_expand). It does not grow when
// the peer's window is what holds the sender back, when the user set the
// buffer (SO_SNDBUF), or when the maximum is no larger than the buffer.
func TestSendBufferGrows(t *testing.T) {
	const small = 16 << 10
	for _, tc := range []struct {
		name string
		o    tcp.Options
		set  bool   // the user sets the buffer
		win  uint16 // the peer's window (0: the default, 65535)
		want int    // the buffer after eight round trips
	}{
		// The peer's window of 65535 bytes (no scaling) stops the
		// growth at 64 KiB: beyond it, data would wait for the window.
		{"grows", tcp.Options{SendBufferSize: small}, false, 0, 64 << 10},
		{"grows to the maximum", tcp.Options{SendBufferSize: small, SendBufferMax: 24 << 10}, false, 0, 24 << 10},
		{"peer's window the limit", tcp.Options{SendBufferSize: small}, false, 8 << 10, small},
		{"set by the user", tcp.Options{SendBufferSize: small}, true, 0, small},
		{"maximum below the size", tcp.Options{SendBufferSize: small, SendBufferMax: 8 << 10}, false, 0, small},
		// A maximum alone, below the default start: the buffer starts
		// there (it used to start at 1 MiB, the maximum raised to it).
		{"maximum alone", tcp.Options{SendBufferMax: 8 << 10}, false, 0, 8 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := rttPeer(t, tc.o)
			if tc.set {
				ep.SetBuffers(small, 0)
			}
			if tc.win != 0 {
				p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: tc.win})
			}
			data := payload(0, 1<<20)
			sent, acked := 0, 0
			for round := 0; round < 8; round++ {
				n, _ := ep.Write(data[sent:])
				sent += n
				for _, s := range p.Drain() {
					acked += len(s.Payload)
				}
				p.Advance(rtt)
				p.Inject(seg{Flags: ".", Seq: 1, Ack: uint32(1 + acked), Win: tc.win})
				if i := ep.Info(); i.SendBuffer > max(small, 2*int(i.Cwnd)) {
					t.Fatalf("round %d: send buffer %d over twice the window %d", round, i.SendBuffer, i.Cwnd)
				}
			}
			if got := ep.Info().SendBuffer; got != tc.want {
				t.Errorf("send buffer %d, want %d", got, tc.want)
			}
		})
	}
}

// TestSendBufferGrowsTailHeld: a writer that keeps a 16 KiB send buffer
// full, and a peer whose ACKs come while data is still in flight (each
// covers all but the last segment sent), as on any path longer than a
// burst. 16 KiB is not a multiple of the MSS, so the full buffer always
// ends in a short tail that Nagle holds while data is in flight (RFC
// 9293 3.7.4), and that cannot grow into a full segment: the buffer has
// no room for the writer to add to it. The buffer is still the limit
// (the congestion window and the peer's 65,535 bytes admit more), so it
// must grow, to the peer's window; read strictly, "everything written
// was sent" kept it at 16 KiB for good.
func TestSendBufferGrowsTailHeld(t *testing.T) {
	const small = 16 << 10
	p, ep := rttPeer(t, tcp.Options{SendBufferSize: small})
	data := payload(0, 1<<20)
	sent := 0
	var ends []int // where each segment sent ends, in data bytes from the first
	for round := 0; round < 8; round++ {
		n, _ := ep.Write(data[sent:])
		sent += n
		for _, s := range p.Drain() {
			ends = append(ends, int(s.Seq)-1+len(s.Payload))
		}
		if len(ends) < 2 {
			t.Fatalf("round %d: %d segments sent in all, want at least 2", round, len(ends))
		}
		p.Advance(rtt)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: uint32(1 + ends[len(ends)-2])})
		if i := ep.Info(); i.SendQueued-int(i.InFlight) >= 1460 && i.SendBuffer == small {
			t.Fatalf("round %d: %d bytes unsent with %d in flight: the test wants only a short tail held", round, i.SendQueued-int(i.InFlight), i.InFlight)
		}
	}
	if got, want := ep.Info().SendBuffer, 64<<10; got != want {
		t.Errorf("send buffer %d after eight round trips, want %d (the peer's window)", got, want)
	}
}

// TestWriteWakesAtAThirdFree: a writer waiting for room in a full send
// buffer is woken, and Changed closed, only once an ACK leaves at most
// two thirds of the buffer full (free space at least half of what it
// holds), as Linux's sk_stream_write_space wakes it, not at every ACK
// that frees a segment: woken so, a writer over a lossy path to gVisor's
// TCP copied 16 MiB in 2,300 pieces of 7 KiB on average, not 300 of up
// to 64 KiB (TestChunkReuseGVisor).
func TestWriteWakesAtAThirdFree(t *testing.T) {
	const size = 30000
	p, ep := tcptest.Established(t)
	ep.SetBuffers(size, 0) // set by the user: it does not grow
	if n, err := ep.Write(payload(0, size)); n != size || err != nil {
		t.Fatalf("Write = %d, %v; want %d", n, err, size)
	}
	if n, err := ep.Write(payload(size, 1)); err != tcp.ErrWouldBlock {
		t.Fatalf("Write to a full buffer = %d, %v; want ErrWouldBlock", n, err)
	}
	wake, changed := ep.WriteWakeup(), ep.Changed()
	select {
	case <-wake: // a token from before the buffer filled
	default:
	}
	sent := 0
	for _, s := range p.Drain() {
		sent += len(s.Payload)
	}
	if sent < 7*1460 {
		t.Fatalf("%d bytes sent in the first flight, want at least 7 segments", sent)
	}
	woken := func() bool {
		select {
		case <-wake:
			return true
		default:
			return false
		}
	}
	// 6 segments acknowledged: 21,240 bytes held, 8,760 free.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 6*1460})
	select {
	case <-changed:
		t.Error("Changed closed with 8,760 of 30,000 bytes free")
	default:
	}
	if woken() {
		t.Error("the writer woken with 8,760 of 30,000 bytes free, less than half of the 21,240 held")
	}
	// One more: 19,780 held, 10,220 free.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 7*1460})
	if !woken() {
		t.Error("the writer not woken with 10,220 of 30,000 bytes free, more than half of the 19,780 held")
	}
	select {
	case <-changed:
	default:
		t.Error("Changed not closed with 10,220 of 30,000 bytes free")
	}
	if n, err := ep.Write(payload(size, size)); n != 7*1460 || err != nil {
		t.Errorf("Write = %d, %v; want the 10,220 bytes free", n, err)
	}
}
