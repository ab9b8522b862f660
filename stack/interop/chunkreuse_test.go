package interop

import (
	"testing"
)

// TestChunkReuseGVisor sends 16 MiB from tapstack to gVisor's TCP in
// 64 KiB writes, each a chunk's worth, and checks every byte: on a clean
// GSO cable the send buffer's chunks are copied into again once gVisor's
// reader lets go of its segments (most of them).
func TestChunkReuseGVisor(t *testing.T) {
	const size = 16 * MiB
	for _, tc := range []struct {
		name    string
		cable   cable
		atLeast uint64 // chunks reused, of the 256 the transfer's writes fill
	}{
		{"clean", cable{gso: true}, 128},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newGVPair(t, tc.cable)
			ts, peer := p.connect(t, "tapstack-dials", 80)
			sent, got := flow(ts, peer, size, 7)
			checkFlow(t, "tapstack to gVisor", sent, got)
			reused := p.ts.TCP().Stats().ChunksReused.Load()
			t.Logf("%d of the %d 64 KiB pieces copied into a chunk reused", reused, size/(64<<10))
			if reused < tc.atLeast {
				t.Errorf("%d chunks reused, want at least %d", reused, tc.atLeast)
			}
		})
	}
}
