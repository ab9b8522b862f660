package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestRACKSackedFin: the last two segments before our FIN are lost and
// the FIN arrives; the peer, as Linux does, SACKs the FIN's sequence
// number. The SACK says everything sent after the holes arrived, so RACK
// (RFC 8985 6.2) deems the two lost once the reordering window has passed
// and they are sent again without waiting for the RTO, the second on the
// ACK of the first (PRR, RFC 6937, counts the FIN as the one byte it
// occupies); the peer's ACK of everything then finds our FIN acknowledged
// (FIN-WAIT-2).
func TestRACKSackedFin(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 2)
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	fin := sb(3)
	p.Expect(seg{Flags: "F.", Seq: fin, Ack: 1})
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(1), SACK: [][2]uint32{{fin, fin + 1}}})
	p.ExpectNothing()
	p.Advance(rtt / 4)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2), SACK: [][2]uint32{{fin, fin + 1}}})
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Payload: segData(data, 2), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: fin + 1})
	p.WantState(ep, event.FinWait2)
	st := p.TCP.Stats()
	if st.RetransmitTimeouts.Load() != 0 || st.TailLossProbes.Load() != 0 {
		t.Errorf("RTOs %d, tail loss probes %d; want the SACK of the FIN to repair the holes", st.RetransmitTimeouts.Load(), st.TailLossProbes.Load())
	}
}
