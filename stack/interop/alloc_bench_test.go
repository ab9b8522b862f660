package interop

import (
	"runtime"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// BenchmarkAllocsPerSegment is the engine and tap.Pipe together in steady
// state: tapstack to tapstack, 16 MiB one way per iteration over one
// connection that stays open (so no handshake, buffer growth or pool
// warm-up is counted), with and without the pipe's GSO. It reports the
// heap allocations of the whole process per wire segment either stack
// sent (data and ACKs), read from runtime.MemStats.Mallocs, and the
// garbage collections that ran meanwhile.
//
//	go test ./stack/interop -run '^$' -bench AllocsPerSegment
func BenchmarkAllocsPerSegment(b *testing.B) {
	const size = 16 << 20
	for _, gso := range []bool{false, true} {
		name := "nogso"
		if gso {
			name = "gso"
		}
		b.Run(name, func(b *testing.B) {
			pa, pb := tap.Pipe(tap.WithPipeGSO(gso), tap.WithPipeQueue(4096))
			opts := tcp.Options{Observer: func(event.Event) {}}
			snd, _ := newTapstack(b, pa, tsPrefix4, opts)
			rcv, _ := newTapstack(b, pb, peerPrefix4, opts)
			c, s := connectPair(b, snd, rcv, peerPrefix4)
			move := mover(b, c, s, size)
			// Warm-up: windows open, pools filled. One transfer left
			// about 500 allocations to the measured ones, all sync.Pool
			// refills in gVisor's buffer package as the number of
			// buffers in flight reached its peak; ten left tens, and
			// without GSO a hundred more still left a few hundred. So
			// it runs until ten transfers in a row allocate nothing
			// (steady state), at most 300.
			for i, quiet := 0, 0; i < 300 && quiet < 10; i++ {
				if mallocsDuring(move) == 0 {
					quiet++
				} else {
					quiet = 0
				}
			}
			segs := func() uint64 { return snd.TCP().Stats().SegmentsOut.Load() + rcv.TCP().Stats().SegmentsOut.Load() }
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			s0 := segs()
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				move()
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(segs()-s0), "allocs/segment")
			// What is left comes from gVisor's buffer pools: their
			// population grows to the most buffers ever in flight,
			// and a garbage collection empties them (sync.Pool), so
			// the count says whether one ran. Between collections
			// the allocations fall to none: 500 transfers of 16 MiB
			// with GSO and no collection made 0.
			b.ReportMetric(float64(m1.NumGC-m0.NumGC), "GCs")
		})
	}
}
