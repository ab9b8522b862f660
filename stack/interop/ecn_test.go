package interop

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestECNGVisorFallback: gVisor's TCP has no ECN. tapstack asks for it
// on its SYN (ECNOn) and gets no agreement on gVisor's SYN-ACK; gVisor's
// SYN does not ask, and tapstack's SYN-ACK does not offer. Either way the
// connection runs without ECN, its data not ECN-capable, and the bytes
// arrive intact (RFC 3168 6.1.1: a peer that does not understand ECN
// costs nothing but ECN).
func TestECNGVisorFallback(t *testing.T) {
	for _, dialer := range []string{"tapstack-dials", "gvisor-dials"} {
		t.Run(dialer, func(t *testing.T) {
			t.Parallel()
			p := newGVPair(t, cable{tcp: tcp.Options{ECN: tcp.ECNOn}})
			tc, b := p.connect(t, dialer, 80)
			ts, a := tc.Endpoint(), tc
			exchange(t, a, b, 4*MiB, both, bulkTimeout())
			if i := ts.Info(); i.ECN || i.ECNSeen {
				t.Errorf("ECN %v, ECN seen %v with gVisor; want neither", i.ECN, i.ECNSeen)
			}
			if n := p.ts.TCP().Stats().ECNConnections.Load(); n != 0 {
				t.Errorf("%d connections agreed to ECN", n)
			}
			a.Close()
			b.Close()
			waitState(t, ts, 10*time.Second, event.Closed)
		})
	}
}

// TestECNMarkedPipe: two tapstack stacks, one asking for ECN and one
// agreeing, over a tap.Pipe whose fault middleware marks 2% of the
// ECN-capable frames CE both ways and drops none, IPv4 and IPv6 (the
// traffic class carries the ECN field there). 4 MiB each way: every
// mark is seen by the receiver, echoed, and answered with a CWR episode
// at the sender, with nothing deemed lost, and every byte arrives.
func TestECNMarkedPipe(t *testing.T) {
	eachFamily(t, func(t *testing.T, _ bool, a, b netip.Prefix) {
		pa, pb := tap.Pipe(tap.WithPipeQueue(cableQueue))
		fault := tap.NewFault(pa, tap.FaultConfig{Mark: 0.02, Seed: 5, Inbound: &tap.FaultConfig{Mark: 0.02}})
		dialer, _ := newTapstack(t, fault, a, tcp.Options{ECN: tcp.ECNOn})
		listener, _ := newTapstack(t, pb, b, tcp.Options{})
		c, s := connectPair(t, dialer, listener, b)
		exchange(t, c, s, 4*MiB, both, bulkTimeout())
		out, in := fault.Stats(), fault.InboundStats()
		ds, ls := dialer.TCP().Stats(), listener.TCP().Stats()
		t.Logf("marked %d out, %d in; dialer: %d CE in, %d CWR episodes; listener: %d CE in, %d CWR episodes; fast recoveries %d, %d; RTOs %d, %d; tail loss probes %d, %d",
			out.Marked, in.Marked, ds.CEReceived.Load(), ds.ECNReductions.Load(), ls.CEReceived.Load(), ls.ECNReductions.Load(),
			ds.FastRecoveries.Load(), ls.FastRecoveries.Load(), ds.RetransmitTimeouts.Load(), ls.RetransmitTimeouts.Load(),
			ds.TailLossProbes.Load(), ls.TailLossProbes.Load())
		if !c.Endpoint().Info().ECN || !s.Endpoint().Info().ECN {
			t.Fatal("ECN not in force on both ends")
		}
		if out.Marked == 0 || in.Marked == 0 {
			t.Fatalf("marked %d out, %d in: the data was not ECN-capable both ways", out.Marked, in.Marked)
		}
		// A mark on a GSO super-frame marks its every segment, and a
		// receiver counts the marked segments it takes in.
		if ls.CEReceived.Load() < out.Marked || ds.CEReceived.Load() < in.Marked {
			t.Errorf("CE received %d and %d, marked %d and %d: marks went unseen", ls.CEReceived.Load(), ds.CEReceived.Load(), out.Marked, in.Marked)
		}
		if ds.ECNReductions.Load() == 0 || ls.ECNReductions.Load() == 0 {
			t.Error("a sender never reduced its window for the echoes")
		}
		// Nothing is lost: no fast recovery, no timeout. (A tail
		// loss probe may still go when the host is busy: a timer's
		// guess, not a loss.)
		if n := ds.FastRecoveries.Load() + ls.FastRecoveries.Load() + ds.RetransmitTimeouts.Load() + ls.RetransmitTimeouts.Load(); n != 0 {
			t.Errorf("%d fast recoveries and timeouts on a path that drops nothing", n)
		}
	})
}
