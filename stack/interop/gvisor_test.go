package interop

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// bulkSize is the size of each direction of the clean-cable transfers:
// 16 MiB, also under the race detector.
const bulkSize = 16 * MiB

// bulkTimeout bounds one clean-cable exchange of bulkSize; it catches a
// hang, not a slow machine. Under the race detector, two at a time beside
// the other packages' tests, one with both directions sending took 11-33
// s here (0.5-1.4 MB/s each way). Every frame in the pipe's queues
// (1,024 each way; a direction's ACKs wait behind the other's data) is
// then part of the round trip, so SRTT reached 6 s, and CI once saw 23 s
// and an RTO of 30 s: one retransmission timeout then takes half a minute.
// Without the race detector, a minute.
func bulkTimeout() time.Duration {
	if raceEnabled {
		return 3 * time.Minute
	}
	return time.Minute
}

// TestGVisorBulk moves 16 MiB each way between tapstack and gVisor's TCP,
// with either side dialing, one direction at a time and both at once on
// one connection; every byte is checked by SHA-256. Then both close and
// tapstack's side must reach CLOSED and leave the engine.
func TestGVisorBulk(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, dialer := range []string{"tapstack-dials", "gvisor-dials"} {
			for _, dir := range []struct {
				name string
				dir  direction
			}{{"ts-to-gv", aToB}, {"gv-to-ts", bToA}, {"both", both}} {
				name := dialer + "/" + dir.name
				if v6 {
					name = "ipv6/" + name
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					p := newGVPair(t, cable{v6: v6})
					tc, b := p.connect(t, dialer, 80)
					ts, a := tc.Endpoint(), tc
					d := exchange(t, a, b, bulkSize, dir.dir, bulkTimeout())
					t.Logf("%d MiB %s in %v (%.1f MB/s per direction); tapstack %+v",
						bulkSize/MiB, dir.name, d.Round(time.Millisecond), float64(bulkSize)/d.Seconds()/1e6, summary(ts.Info()))
					// gVisor's TCP offers RFC 7323 timestamps by default.
					if !ts.Info().Timestamps {
						t.Error("timestamps not in force with gVisor")
					}
					a.Close()
					b.Close()
					waitState(t, ts, 10*time.Second, event.Closed)
					waitNoConnections(t, p.ts, 10*time.Second)
				})
			}
		}
	}
}

// summary is the part of Info worth logging after a transfer.
type infoSummary struct {
	RTT, RTO    time.Duration
	Cwnd        uint32
	Retransmits uint64
	SndMSS      int
	WScale      [2]int // send, receive; -1 when off
	Timestamps  bool   // RFC 7323 timestamps in force
}

func summary(i tcp.Info) infoSummary {
	return infoSummary{RTT: i.RTT, RTO: i.RTO, Cwnd: i.Cwnd, Retransmits: i.Retransmits,
		SndMSS: i.SndMSS, WScale: [2]int{i.SndWndScale, i.RcvWndScale}, Timestamps: i.Timestamps}
}
