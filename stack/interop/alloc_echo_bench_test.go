package interop

import (
	"io"
	"runtime"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// echoPair connects two tapstack stacks over tap.Pipe, with Nagle off
// at both ends and the accepted end echoing whatever arrives from a
// goroutine that lives as long as the connection. It returns one round
// trip of 64 bytes (each call allocates nothing itself) and the count of
// wire segments both stacks have sent.
func echoPair(tb testing.TB) (echo func(), segs func() uint64) {
	tb.Helper()
	pa, pb := tap.Pipe()
	opts := tcp.Options{Observer: func(event.Event) {}}
	cli, _ := newTapstack(tb, pa, tsPrefix4, opts)
	srv, _ := newTapstack(tb, pb, peerPrefix4, opts)
	c, sc := connectPair(tb, cli, srv, peerPrefix4)
	if err := c.SetNoDelay(true); err != nil {
		tb.Fatal(err)
	}
	if err := sc.SetNoDelay(true); err != nil {
		tb.Fatal(err)
	}
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(sc, buf); err != nil {
				return
			}
			if _, err := sc.Write(buf); err != nil {
				return
			}
		}
	}()
	req, resp := make([]byte, 64), make([]byte, 64)
	echo = func() {
		if _, err := c.Write(req); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			tb.Fatal(err)
		}
	}
	segs = func() uint64 { return cli.TCP().Stats().SegmentsOut.Load() + srv.TCP().Stats().SegmentsOut.Load() }
	return echo, segs
}

// BenchmarkAllocsPerEcho is request and response over one established
// connection between two tapstack stacks on tap.Pipe: 64 bytes each way
// per iteration, the server echoing from a goroutine that lives as long
// as the connection. It reports the heap allocations of the whole
// process per round trip (allocs/op) and per wire segment either stack
// sent; the delayed ACK and the retransmission timer are armed and
// disarmed on every exchange.
//
//	go test ./stack/interop -run '^$' -bench AllocsPerEcho -benchmem
func BenchmarkAllocsPerEcho(b *testing.B) {
	echo, segs := echoPair(b)
	for range 1000 {
		echo() // warm-up
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	s0 := segs()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		echo()
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(segs()-s0), "allocs/segment")
}
