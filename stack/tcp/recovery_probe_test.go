package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestRecoveryProbeSackedTail: in fast recovery with two holes, both
// sent again, the ACKs stop, and the last segment of the flight is
// already SACKed, so the probe cannot be a copy of it (RFC 8985 7.3).
// The probe (rack.go probeSegment) resends the highest segment not yet
// SACKed, segment 3, 2·SRTT after the last ACK, instead of leaving the
// recovery to the RTO; its answer completes the recovery.
func TestRecoveryProbeSackedTail(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 6)
	p.Advance(rtt)
	// Segments 1 and 3 lost: RACK marks both (three SACKed above each).
	p.Inject(sackAck(1, [2]int{2, 3}, [2]int{4, 7}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "fast recovery" {
		t.Fatalf("after the SACKs: %s", i.CAState)
	}
	p.Advance(2*ep.Info().RTT + 2*time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	st := p.TCP.Stats()
	if n := st.Sent(event.SendTLP); n != 1 || st.RetransmitTimeouts.Load() != 0 {
		t.Fatalf("%d probes sent, %d RTOs; want the probe, no RTO", n, st.RetransmitTimeouts.Load())
	}
	p.Advance(rtt)
	p.Inject(sackAck(7))
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "open" || st.RetransmitTimeouts.Load() != 0 {
		t.Errorf("after the probe's answer: %s, %d RTOs; want open, none", i.CAState, st.RetransmitTimeouts.Load())
	}
}
