package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// The receive buffer's auto-tuning (rcvbuf.go): once a round trip, the
// bytes the user read in it are measured, and the buffer, which bounds
// the window, grows for them, unless the user set it.

// TestReceiveBufferMaxAlone: ReceiveBufferMax set without
// ReceiveBufferSize, below its default, bounds the buffer from the start:
// the SYN-ACK offers no more, and a reader who keeps up grows it no
// further. It used to start at the default 1 MiB, above the maximum.
func TestReceiveBufferMaxAlone(t *testing.T) {
	const limit = 32 << 10
	p, ep := tcptest.Established(t, tcptest.ActiveOpen(), tcptest.WithSynOptions(seg{MSS: 1460, WS: 7}),
		tcptest.WithTCP(tcp.Options{ReceiveBufferMax: limit}))
	next := uint32(1)
	for range 3 {
		for range 10 {
			p.Inject(seg{Flags: ".", Seq: next, Ack: 1, Payload: payload(int(next-1), 1460)})
			next += 1460
			readAll(t, ep)
		}
		p.Advance(time.Millisecond)
		for _, s := range p.Drain() {
			if w := int(s.Win) << ep.Info().RcvWndScale; w > limit {
				t.Fatalf("window %d advertised, over the maximum %d", w, limit)
			}
		}
	}
	if got := ep.Info().RecvBuffer; got != limit {
		t.Errorf("RecvBuffer %d, want %d", got, limit)
	}
}

// TestReceiveBufferGrowsWithReading: a 64 KiB buffer, a peer that sends
// and a user who reads as fast as it comes. The first window's worth
// takes 1 ms to arrive (the receiver's RTT); the reading measured at
// that round trip's end, 65,700 bytes against the first guess of ten
// segments (14,600), grows the buffer to 2 * 65,700 + 16 * 1,460 =
// 154,760, plus twice that times the growth (3.5): 1,238,080 bytes,
// which the window update after the read advertises (>> 7: 9,672).
// With the buffer set by the user, nothing grows.
func TestReceiveBufferGrowsWithReading(t *testing.T) {
	for _, tc := range []struct {
		name   string
		locked bool
		want   int
		grown  uint64
	}{
		{"tuned", false, 1238080, 1},
		{"set by the user", true, 64 << 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.ActiveOpen(), tcptest.WithSynOptions(seg{MSS: 1460, WS: 7}),
				tcptest.WithTCP(tcp.Options{ReceiveBufferSize: 64 << 10, ReceiveBufferMax: 4 << 20}))
			if tc.locked {
				ep.SetBuffers(0, 64<<10)
			}
			next := uint32(1)
			send := func(n int) []seg {
				var out []seg
				for range n {
					p.Inject(seg{Flags: ".", Seq: next, Ack: 1, Payload: payload(int(next-1), 1460)})
					next += 1460
					readAll(t, ep)
					out = p.Drain()
				}
				return out
			}
			// 45 segments, 65,700 bytes, at once: the window's edge when
			// the first arrived (1 + 1,460 + 65,536) is not passed yet,
			// so there is no RTT, and no growth.
			send(45)
			if got := ep.Info().RecvBuffer; got != 64<<10 {
				t.Fatalf("RecvBuffer %d before a round trip, want %d", got, 64<<10)
			}
			// 1 ms later the 46th passes it: a round trip of 1 ms, and
			// the first round's reading.
			p.Advance(time.Millisecond)
			last := send(1)
			if got := ep.Info().RecvBuffer; got != tc.want {
				t.Errorf("RecvBuffer %d, want %d", got, tc.want)
			}
			if n := p.TCP.Stats().RecvBufferGrown.Load(); n != tc.grown {
				t.Errorf("RecvBufferGrown %d, want %d", n, tc.grown)
			}
			if tc.locked {
				return
			}
			if len(last) == 0 || last[len(last)-1].Win != uint16(tc.want>>7) {
				t.Fatalf("after the read the stack sent %v, want a window update of %d (%d bytes >> 7)", last, tc.want>>7, tc.want)
			}
		})
	}
}
