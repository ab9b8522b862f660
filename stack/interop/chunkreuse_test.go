package interop

import "testing"

// TestChunkReuseGVisor sends 16 MiB from tapstack to gVisor's TCP in
// 64 KiB writes, each a chunk's worth, over a GSO cable, and checks every
// byte: the send buffer's chunks are copied into again once gVisor's
// reader lets go of their segments. How many depends on how far the
// reader lags: 201-235 of 256 here, beside two CPU hogs and under -race
// too, but 99 in a CI run under -race beside the rest of the suite,
// where the reader fell further behind. An eighth shows that reuse works
// against a real peer; TestChunkReuse traces its rule.
//
// Over a faulty cable (loss, duplication, reordering, corruption and 1 ms
// of delay both ways) the writer is held back by the path, and reuse
// depends on how it is woken: at every ACK (as before
// TestWriteWakesAtAThirdFree's rule) it copied what one ACK freed, a
// segment or two, each piece in a new chunk: 1 of 256 reused; woken once
// a third of the buffer is free, as Linux wakes it, 195.
// A chunk written while gVisor still held it would show as a digest that
// differs.
func TestChunkReuseGVisor(t *testing.T) {
	const size = 16 * MiB
	for _, tc := range []struct {
		name string
		c    cable
	}{
		{"clean", cable{gso: true}},
		{"faulty", cable{gso: true, tsFault: faulty(7), peerFault: faulty(8)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newGVPair(t, tc.c)
			ts, peer := p.connect(t, "tapstack-dials", 80)
			sent, got := flow(ts, peer, size, 7)
			checkFlow(t, "tapstack to gVisor", sent, got)
			pieces := uint64(size / (64 << 10))
			reused := p.ts.TCP().Stats().ChunksReused.Load()
			t.Logf("%d of the %d 64 KiB pieces copied into a chunk reused", reused, pieces)
			if reused < pieces/8 {
				t.Errorf("%d chunks reused, want at least an eighth of %d", reused, pieces)
			}
		})
	}
}
