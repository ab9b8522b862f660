package interop

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestKernelDuplicatesNoRecovery: tapstack sends to the kernel over a TAP
// that duplicates 5% of the frames both ways, and loses none. Nothing is
// lost, so nothing may start a fast recovery. The kernel answers each
// duplicated super-frame with a D-SACK and, at times, a duplicate ACK
// without SACK blocks; one of those for the short last segment of a
// write was taken for Early Retransmit's single duplicate and sent the
// segment again (2-8 fast recoveries per 64 MiB). Plain duplicates on a
// SACK connection now count as RFC 5681's three (recovery.go).
func TestKernelDuplicatesNoRecovery(t *testing.T) {
	k := newLossyKernelWith(t, "tsdup0", tap.FaultConfig{Duplicate: 0.05, Seed: 3}, tcp.Options{})
	for seed := range 2 {
		k.transfer(t, 16*MiB, false, uint64(seed))
	}
	st := k.ts.TCP().Stats()
	t.Logf("32 MiB: %d fast recoveries, %d retransmissions, %d RTOs", st.FastRecoveries.Load(), st.Retransmits.Load(), st.RetransmitTimeouts.Load())
	if n := st.FastRecoveries.Load(); n != 0 {
		t.Errorf("%d fast recoveries on a path that loses nothing", n)
	}
}
