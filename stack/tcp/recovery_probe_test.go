package tcp_test

import (
	"testing"

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
	p.Advance(2 * ep.Info().RTT)
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	probeEndsRecovery(t, p, ep, 7)
}

// probeEndsRecovery checks that the probe just seen was the one sent and
// no RTO fired, then answers it with an ACK of everything up to segment
// ack, which ends the recovery.
func probeEndsRecovery(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, ack int) {
	t.Helper()
	st := p.TCP.Stats()
	if n := st.Sent(event.SendTLP); n != 1 || st.RetransmitTimeouts.Load() != 0 {
		t.Fatalf("%d probes sent, %d RTOs; want the probe, no RTO", n, st.RetransmitTimeouts.Load())
	}
	p.Advance(rtt)
	p.Inject(sackAck(ack))
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "open" || st.RetransmitTimeouts.Load() != 0 {
		t.Errorf("after the probe's answer: %s, %d RTOs; want open, none", i.CAState, st.RetransmitTimeouts.Load())
	}
}

// TestRecoveryProbeLoneRetransmission: in fast recovery PRR may leave a
// single retransmission in flight (RFC 9937: the ACK that marked it lost
// lets nothing more out). If it is lost too, nothing but a timer finds
// it. The probe for it waits 2·SRTT, not RFC 8985's allowance for
// a receiver that delays the ACK of a lone segment (WCDelAckT, 200 ms, as
// long as the RTO): the receiver has just seen a hole and acknowledges at
// once (RFC 5681 4.2; tapstack's receiver and, measured, Linux's do), and
// one that does not costs one spurious copy, which it answers at once.
func TestRecoveryProbeLoneRetransmission(t *testing.T) {
	// The retransmission arrives, 6 does not: RACK marks 6 lost, sent
	// before the delivered retransmission, and it goes again, alone.
	p, ep, data := holeRepaired(t, 6)
	p.Expect(seg{Flags: "P.", Seq: sb(6), Ack: 1, Payload: segData(data, 6), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "fast recovery" || i.InFlight != 1460 {
		t.Fatalf("after the ACK: %s, %d bytes in flight; want fast recovery, one segment", i.CAState, i.InFlight)
	}
	// That copy is lost too. The probe sends it once more.
	p.Advance(2*ep.Info().RTT - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: "P.", Seq: sb(6), Ack: 1, Payload: segData(data, 6), Check: tcptest.IgnorePSH})
	probeEndsRecovery(t, p, ep, 7)
}

// TestRecoveryProbeEachSilence: the probe in fast recovery is one per
// silence, not one per recovery. Here the first probe's answer shows
// progress and the probe itself is lost: a second silence, and a second
// probe 2·SRTT into it, where the RTO would wait 200 ms.
func TestRecoveryProbeEachSilence(t *testing.T) {
	// The retransmission arrives, 6 and 7 do not: RACK marks both lost,
	// and both go again.
	p, ep, data := holeRepaired(t, 7)
	p.Expect(seg{Flags: ".", Seq: sb(6), Ack: 1, Payload: segData(data, 6), Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: "P.", Seq: sb(7), Ack: 1, Payload: segData(data, 7), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	// 6's copy is held up on the path, 7's is lost: a silence, and the
	// first probe, the last segment, which is lost too.
	p.Advance(2 * ep.Info().RTT)
	p.Expect(seg{Flags: "P.", Seq: sb(7), Ack: 1, Payload: segData(data, 7), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	// 6's copy arrives: progress, then a second silence.
	p.Advance(rtt)
	p.Inject(sackAck(7))
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "fast recovery" {
		t.Fatalf("after the first probe's answer: %s, want fast recovery", i.CAState)
	}
	p.Advance(2 * ep.Info().RTT)
	p.Expect(seg{Flags: "P.", Seq: sb(7), Ack: 1, Payload: segData(data, 7), Check: tcptest.IgnorePSH})
	st := p.TCP.Stats()
	if n := st.Sent(event.SendTLP); n != 2 || st.RetransmitTimeouts.Load() != 0 {
		t.Fatalf("%d probes sent, %d RTOs; want two probes, no RTO", n, st.RetransmitTimeouts.Load())
	}
	p.Advance(rtt)
	p.Inject(sackAck(8))
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "open" {
		t.Errorf("after the second probe's answer: %s, want open", i.CAState)
	}
}

// holeRepaired sends n segments (n > 5) and starts a fast recovery for
// segment 1, lost with 2-5 SACKed; 6 and after stay in flight. Then the
// retransmission's ACK comes, and nothing for 6 and after.
func holeRepaired(t *testing.T, n int) (*tcptest.Peer, *tcp.Endpoint, []byte) {
	t.Helper()
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, n)
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 6}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(sackAck(6))
	return p, ep, data
}
