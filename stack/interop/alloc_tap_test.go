//go:build linux

package interop

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestSteadyStateAllocsTAP is TestSteadyStateAllocs over a TAP, the
// kernel as the peer: the tap device's read and write paths (virtio-net
// headers, super-frames split or whole, coalesced writes) allocate nothing
// per frame either, in either direction. A round of 8 MiB (some 5,800
// data segments) may cost at most 0.01 allocations per data segment in
// the whole process; the collector is held off as in
// TestSteadyStateAllocs. It skips without CAP_NET_ADMIN.
func TestSteadyStateAllocsTAP(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	const (
		size   = 8 << 20
		rounds = 4
		limit  = 0.01 // allocations per full-sized data segment moved
		mss    = 1448 // at MTU 1500 with timestamps
	)
	tapAllocCases(t, "tsalloc1", size, func(t *testing.T, _ *offloadNet, move func()) {
		for range rounds {
			move() // windows open, pools filled
		}
		// Each round is counted on its own, and the fewest
		// allocations of a round are held to the limit: an
		// allocation per segment, or per few segments, shows in
		// every round, while a round in which the kernel's burst
		// left more bytes queued than ever before fills the
		// pools further (gVisor's buffers), once.
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		segs := float64(size) / mss
		fewest := uint64(math.MaxUint64)
		var counts []uint64
		for range rounds {
			n := mallocsDuring(move)
			counts = append(counts, n)
			fewest = min(fewest, n)
		}
		t.Logf("%d rounds of %d MiB (%.0f data segments each): %v allocations; fewest %.5f per data segment", rounds, size>>20, segs, counts, float64(fewest)/segs)
		if float64(fewest) > limit*segs {
			t.Errorf("every round allocated, at least %d times for %.0f data segments: the TAP's steady state allocates (at most %.0f allowed); see BenchmarkAllocsPerSegmentTAP with -memprofile", fewest, segs, limit*segs)
		}
	})
}
