package interop

import "testing"

// TestChunkReuseGVisor sends 16 MiB from tapstack to gVisor's TCP in
// 64 KiB writes, each a chunk's worth, over a GSO cable, and checks every
// byte: the send buffer's chunks are copied into again once gVisor's
// reader lets go of their segments, for most of the writes (201-235 of
// 256 in this session's runs, beside two CPU hogs and under -race too).
// A chunk written while gVisor still held it would show as a digest that
// differs.
func TestChunkReuseGVisor(t *testing.T) {
	const size = 16 * MiB
	p := newGVPair(t, cable{gso: true})
	ts, peer := p.connect(t, "tapstack-dials", 80)
	sent, got := flow(ts, peer, size, 7)
	checkFlow(t, "tapstack to gVisor", sent, got)
	reused := p.ts.TCP().Stats().ChunksReused.Load()
	t.Logf("%d of the %d 64 KiB pieces copied into a chunk reused", reused, size/(64<<10))
	if reused < size/(64<<10)/2 {
		t.Errorf("%d chunks reused, want at least half of %d", reused, size/(64<<10))
	}
}
