//go:build linux

package interop

import (
	"runtime"
	"testing"
)

// BenchmarkAllocsPerSegmentTAP is BenchmarkAllocsPerSegment over a TAP
// with the kernel as the peer: 16 MiB per iteration one way over one
// connection that stays open, with the TAP's offloads off (a frame is a
// wire segment), on with the kernel's super-frames split into segments
// for the stack, and on (the default: super-frames both ways). It reports
// the heap allocations of the whole process (tapstack, the tap device's
// read and write paths, and the kernel socket's Go side) per frame the
// device carried and per wire segment tapstack sent or took in, read
// from runtime.MemStats.Mallocs. It skips without CAP_NET_ADMIN.
//
//	go test ./stack/interop -run '^$' -bench AllocsPerSegmentTAP -benchtime 20x
func BenchmarkAllocsPerSegmentTAP(b *testing.B) {
	const size = 16 << 20
	tapAllocCases(b, "tsalloc0", size, func(b *testing.B, k *offloadNet, move func()) {
		// Warm-up: windows open, pools filled (ten transfers, as
		// BenchmarkAllocsPerSegment: one left the pools' refills
		// among the measured allocations).
		for range 10 {
			move()
		}
		st := k.ts.TCP().Stats()
		segs := func() uint64 { return st.SegmentsOut.Load() + st.SegmentsIn.Load() }
		frames := func() uint64 { d := k.dev.Stats(); return d.RxFrames + d.TxFrames }
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		s0, f0 := segs(), frames()
		b.SetBytes(size)
		b.ResetTimer()
		for b.Loop() {
			move()
		}
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		mallocs := float64(m1.Mallocs - m0.Mallocs)
		b.ReportMetric(mallocs/float64(segs()-s0), "allocs/segment")
		b.ReportMetric(mallocs/float64(frames()-f0), "allocs/frame")
	})
}
