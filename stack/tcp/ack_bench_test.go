package tcp_test

import (
	"fmt"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// BenchmarkAckCost is the cost of one ACK as the window grows from 100 to
// 10,000 segments in flight, the per-ACK work RFC 8985's loss detection
// and the SACK scoreboard must keep flat (gVisor's RACK walks the whole
// in-flight list on every ACK). Each op is one ACK injected through the
// network layer (its encoding, checksum and IP processing included) and
// the segment it lets out.
//
//   - steady: each ACK moves SND.UNA by one segment and one new segment
//     goes out.
//
//   - sack: every other segment of the window was lost; each ACK SACKs the
//     next delivered one (a new range each time), so RACK marks the hole
//     below it lost and it is sent again.
//
//   - sackrun: the segment at SND.UNA was lost; each ACK carries one block
//     from the segment after it to the latest delivered, as receivers
//     send them, so every ACK repeats everything SACKed before (the
//     union-find skip keeps that from costing a walk).
//
//     go test ./stack/tcp -run '^$' -bench AckCost
func BenchmarkAckCost(b *testing.B) {
	for _, mode := range []string{"steady", "sack", "sackrun"} {
		for _, n := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/inflight=%d", mode, n), func(b *testing.B) {
				benchAckCost(b, mode, n)
			})
		}
	}
}

func benchAckCost(b *testing.B, mode string, n int) {
	const mss = 1460
	p, ep := tcptest.Established(b,
		tcptest.WithTCP(tcp.Options{SendBufferSize: 64 << 20, ReceiveBufferSize: 64 << 20}),
		tcptest.WithSynOptions(seg{MSS: mss, SACKPerm: true, WS: 14}))
	ep.SetCwnd(uint32(4*n*mss), uint32(4*n*mss))
	chunk := payload(0, 1<<20)
	written := 0
	fill := func(segs int) {
		for written < segs*mss {
			k, err := ep.Write(chunk)
			if err != nil {
				b.Fatal(err)
			}
			written += k
		}
	}
	fill(2 * n)
	// Let exactly n segments out: the peer's window is n segments.
	p.Win = uint16(min(n*mss>>14+1, 0xffff))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Drain()
	una := 1 // segment number of SND.UNA
	next := una + 1
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		switch mode {
		case "steady":
			una++
			p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(una)})
		case "sack":
			if next >= una+n-2 {
				// The window is used up: acknowledge it all and start
				// over (not timed).
				b.StopTimer()
				una += n
				p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(una)})
				p.Drain()
				next = una + 1
				b.StartTimer()
			}
			p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(una), SACK: [][2]uint32{{sb(next), sb(next + 1)}}})
			next += 2
		case "sackrun":
			if next >= una+n-1 {
				b.StopTimer()
				una += n
				p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(una)})
				p.Drain()
				next = una + 1
				b.StartTimer()
			}
			p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(una), SACK: [][2]uint32{{sb(una + 1), sb(next + 1)}}})
			next++
		}
		for range 4 { // what the ACK let out, unread
			pkt := p.Link.Read()
			if pkt == nil {
				break
			}
			pkt.DecRef()
		}
		if written < (una+2*n)*mss {
			b.StopTimer()
			fill(una + 2*n)
			b.StartTimer()
		}
	}
	if st := p.TCP.Stats(); mode != "steady" && b.N > 10 && st.Retransmits.Load() == 0 {
		b.Fatalf("no retransmission: the benchmark did not exercise loss detection")
	}
}
