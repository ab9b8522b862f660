package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestPipeGSO: over a pipe that offers segmentation offload
// (tap.WithPipeGSO), tapstack sends its trains as GSO packets that the
// pipe carries whole to gVisor's TCP, and takes gVisor's GSO packets
// whole; data arrive intact both ways, with and without timestamps and
// SACK, and the engine reports every wire segment it sent.
func TestPipeGSO(t *testing.T) {
	// Frames corrupted on their way in: each end then vouches for no
	// checksum and its stack catches them (tap.WithPipeGSO).
	corrupt := &tap.FaultConfig{Seed: 7, Inbound: &tap.FaultConfig{Corrupt: 0.01}}
	for _, tc := range []struct {
		name  string
		opts  tcp.Options
		fault *tap.FaultConfig
	}{
		{"default", tcp.Options{}, nil},
		{"no-timestamps-no-sack", tcp.Options{NoTimestamps: true, NoSACK: true}, nil},
		{"corrupt-inbound", tcp.Options{}, corrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newGVPair(t, cable{gso: true, tcp: tc.opts, tsFault: tc.fault, peerFault: tc.fault})
			for i, dials := range []func(testing.TB, uint16) (*conn.Conn, halfCloser){p.tapstackDials, p.peerDials} {
				for _, fromTapstack := range []bool{true, false} {
					ts, peer := dials(t, uint16(8000+2*i+boolInt(fromTapstack)))
					var from, to halfCloser = ts, peer
					if !fromTapstack {
						from, to = peer, ts
					}
					dl := time.Now().Add(time.Minute)
					ts.SetDeadline(dl)
					peer.SetDeadline(dl)
					sent, got := flow(from, to, 8*MiB, uint64(i))
					checkFlow(t, fmt.Sprintf("dialer %d, from tapstack %v", i, fromTapstack), sent, got)
					ts.Close()
					peer.Close()
				}
			}
			st := p.ts.TCP().Stats()
			if st.GSOPackets.Load() == 0 {
				t.Errorf("tapstack sent no GSO packet over a pipe that offers GSO")
			}
			if f := p.faults[0]; f != nil && f.InboundStats().Corrupted == 0 {
				t.Errorf("no frame was corrupted: %+v", f.InboundStats())
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
