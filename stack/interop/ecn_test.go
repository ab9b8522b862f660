package interop

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
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
			var ts *tcp.Endpoint
			var a, b halfCloser
			if dialer == "tapstack-dials" {
				c, peer := p.tapstackDials(t, 80)
				ts, a, b = c.Endpoint(), c, peer
			} else {
				c, peer := p.peerDials(t, 80)
				ts, a, b = c.Endpoint(), c, peer
			}
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
