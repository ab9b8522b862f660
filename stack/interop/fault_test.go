package interop

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/tap"
)

// faultSize is the size of each direction of a transfer on a faulty
// cable: every loss costs at least a round trip and often an RTO.
const faultSize = 4 * MiB

// faulty is the impairment of the fault tests, on the frames of one side,
// seeded for reproducible runs (the seed only fixes the fault decisions;
// the scheduling of goroutines still varies).
func faulty(seed uint64) *tap.FaultConfig {
	return &tap.FaultConfig{
		Loss:      0.02,
		Duplicate: 0.02,
		Reorder:   0.02,
		Corrupt:   0.01,
		Delay:     time.Millisecond,
		Source:    rand.NewPCG(seed, 0x7a9),
	}
}

// TestGVisorFaults moves data between tapstack and gVisor's TCP over a
// cable that loses, duplicates, reorders, corrupts and delays frames, on
// one side or both, with the default RTO bounds; every byte is checked.
func TestGVisorFaults(t *testing.T) {
	sides := []struct {
		name string
		ts   bool // faults on frames tapstack sends
		peer bool // faults on frames gVisor sends
	}{{"faults-both-ways", true, true}, {"faults-from-tapstack", true, false}, {"faults-from-gvisor", false, true}}
	for i, side := range sides {
		for j, dialer := range []string{"tapstack-dials", "gvisor-dials"} {
			for k, dir := range []struct {
				name string
				dir  direction
			}{{"ts-to-gv", aToB}, {"gv-to-ts", bToA}, {"both", both}} {
				seed := uint64(100*i + 10*j + k)
				t.Run(side.name+"/"+dialer+"/"+dir.name, func(t *testing.T) {
					t.Parallel()
					c := cable{frames: 400}
					if side.ts {
						c.tsFault = faulty(seed)
					}
					if side.peer {
						c.peerFault = faulty(seed + 1000)
					}
					p := newGVPair(t, c)
					tc, b := p.connect(t, dialer, 80)
					ts, a := tc.Endpoint(), tc
					d := exchange(t, a, b, faultSize, dir.dir, 30*time.Second)
					st := p.ts.TCP().Stats()
					t.Logf("seed %d: %d MiB %s in %v; tapstack %+v; engine retransmits %d, bad checksums dropped %d, ACKs of unsent data dropped %d",
						seed, faultSize/MiB, dir.name, d.Round(time.Millisecond), summary(ts.Info()),
						st.Retransmits.Load(), st.Dropped(event.DropBadChecksum), st.Dropped(event.DropAckUnsent))
					a.Close()
					b.Close()
					waitState(t, ts, 15*time.Second, event.Closed)
					waitNoConnections(t, p.ts, 10*time.Second)
				})
			}
		}
	}
}
