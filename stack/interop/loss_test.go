package interop

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
)

// TestLossRecovery moves data from tapstack to gVisor's TCP with the
// fault middleware on both ends, every byte checked by hash, and checks
// that loss recovery, not the retransmission timer, repaired the losses:
// at 5% loss and with reordering, duplication and corruption on top,
// fewer than one retransmission in ten waited for an RTO; at 20% loss
// each way (gVisor's own sender barely moves at that rate:
// BenchmarkLossy), the transfer completes.
func TestLossRecovery(t *testing.T) {
	for _, tc := range []struct {
		profile string
		size    int64
		rtoFrac uint64 // at most one RTO per rtoFrac retransmissions; 0: only completion
	}{
		{"loss5", 4 * MiB, 10},
		{"mixed", 4 * MiB, 10},
		{"loss20", 256 << 10, 0},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			t.Parallel()
			var prof lossProfile
			for _, p := range lossProfiles {
				if p.name == tc.profile {
					prof = p
				}
			}
			a, b := prof.cfg(21), prof.cfg(22)
			p := newGVPair(t, cable{tsFault: &a, peerFault: &b, frames: 400})
			c, peer := p.tapstackDials(t, 80)
			d := exchange(t, c, peer, tc.size, aToB, 90*time.Second)
			st := p.ts.TCP().Stats()
			rx, rto := st.Retransmits.Load(), st.RetransmitTimeouts.Load()
			t.Logf("%s: %d KiB in %v; %d retransmissions, %d RTOs, %d tail loss probes, %d fast recoveries, %d undone",
				tc.profile, tc.size>>10, d.Round(time.Millisecond), rx, rto, st.TailLossProbes.Load(), st.FastRecoveries.Load(), st.Undos.Load())
			if tc.rtoFrac > 0 && rto*tc.rtoFrac > rx {
				t.Errorf("%d RTOs for %d retransmissions: more than one in %d losses waited for the timer", rto, rx, tc.rtoFrac)
			}
			c.Close()
			peer.Close()
			// The teardown takes the peer's retransmission timer: at
			// 20% loss gVisor's SRTT can start at 3 s from a lost
			// SYN-ACK (RTO 9 s, then 18 s), and its FIN may be lost
			// twice (4%). Wait out three of its timeouts there.
			closeWait := 15 * time.Second
			if tc.profile == "loss20" {
				closeWait = 90 * time.Second
			}
			waitState(t, c.Endpoint(), closeWait, event.Closed)
		})
	}
}
