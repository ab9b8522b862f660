package interop

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
)

// TestSoak moves data both ways at once between tapstack and gVisor's TCP
// with faults on both ends, every byte checked by hash: mixed faults (5%
// loss, 5% reordering, 2% duplication, 1% corruption) and 20% loss. It is
// long (64 MiB each way by default), so it runs only with TAPSTACK_SOAK
// set to the MiB to move each way (CI runs the short TestLossRecovery and
// TestGVisorFaults instead); the kernel's counterpart is
// BenchmarkLossyKernel and TestKernelLossy.
func TestSoak(t *testing.T) {
	mib, err := strconv.Atoi(os.Getenv("TAPSTACK_SOAK"))
	if err != nil || mib <= 0 {
		t.Skip("set TAPSTACK_SOAK=64 (MiB each way) to run the soak")
	}
	for _, name := range []string{"mixed", "loss20"} {
		t.Run(name, func(t *testing.T) {
			var prof lossProfile
			for _, p := range lossProfiles {
				if p.name == name {
					prof = p
				}
			}
			a, b := prof.cfg(31), prof.cfg(32)
			p := newGVPair(t, cable{tsFault: &a, peerFault: &b, frames: 400})
			c, peer := p.tapstackDials(t, 80)
			// A line a minute says how far each way has come and how
			// fast: a soak runs for tens of minutes at 20% loss.
			stop := make(chan struct{})
			go func() {
				tick := time.NewTicker(time.Minute)
				defer tick.Stop()
				start := time.Now()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						in := c.Endpoint().Info()
						st := p.ts.TCP().Stats()
						el := time.Since(start)
						t.Logf("%s: %v: tapstack sent %.1f MiB (acknowledged), received %.1f MiB, %.2f MB/s each way; %d retransmissions, %d RTOs",
							name, el.Round(time.Second), float64(in.BytesAcked)/MiB, float64(in.BytesReceived)/MiB,
							float64(in.BytesAcked+in.BytesReceived)/2/el.Seconds()/1e6,
							st.Retransmits.Load(), st.RetransmitTimeouts.Load())
					}
				}
			}()
			d := exchange(t, c, peer, int64(mib)*MiB, both, 90*time.Minute)
			close(stop)
			st := p.ts.TCP().Stats()
			t.Logf("%s: %d MiB each way in %v; tapstack: %d retransmissions, %d RTOs, %d tail loss probes, %d fast recoveries, %d undone, %d bad checksums dropped",
				name, mib, d.Round(time.Millisecond), st.Retransmits.Load(), st.RetransmitTimeouts.Load(),
				st.TailLossProbes.Load(), st.FastRecoveries.Load(), st.Undos.Load(), st.Dropped(event.DropBadChecksum))
			c.Close()
			peer.Close()
		})
	}
}
