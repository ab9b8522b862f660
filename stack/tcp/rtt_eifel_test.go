package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestNoRTTSampleFromStaleEcho: segments 1 and 2 are lost; fast
// retransmission sends both again (TSval T1); they arrive, but the ACK
// they cause is lost, so the RTO fires and sends segment 1 a third time
// (TSval T2). The receiver takes that copy as a duplicate, leaves
// TS.Recent at T1 (RFC 7323 4.3) and answers with an ACK of everything
// echoing T1. now - T1 is the RTO's wait, not a round trip: the ACK covers
// data retransmitted after T1, so the echo is older than the transmission
// that caused the ACK, and it gives no sample (Eifel, RFC 3522, widened
// from the first retransmission to the latest). At 20% loss such samples
// drove SRTT from 0.5 ms to 180 ms and the RTO to 2.4 s on a link whose
// round trip is under a millisecond.
func TestNoRTTSampleFromStaleEcho(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true}, tcptest.WithTimestamps())
	mss := ep.Info().SndMSS
	sendSegments(t, p, ep, 6)
	before := ep.Info()
	p.Advance(rtt)
	for _, top := range []int{5, 6, 7} {
		p.Inject(sackAckM(mss, 1, [2]int{3, top}))
	}
	var t1 uint32
	var fr []uint32
	for _, s := range p.Drain() {
		if s.Seq == sbm(mss, 1) || s.Seq == sbm(mss, 2) {
			fr = append(fr, s.Seq)
			t1 = s.TSVal
		}
	}
	if len(fr) != 2 {
		t.Fatalf("fast retransmissions of %v, want segments 1 and 2", fr)
	}
	p.Advance(ep.Info().RTO) // their ACK was lost
	var rto []tcptest.Seg
	for _, s := range p.Drain() {
		if s.Seq == sbm(mss, 1) {
			rto = append(rto, s)
		}
	}
	if len(rto) != 1 || rto[0].TSVal == t1 {
		t.Fatalf("after the timeout: %v, want segment 1 again with a new TSval", rto)
	}
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sbm(mss, 7), TS: true, TSVal: p.TSClock(), TSEcr: t1})
	p.Drain()
	if i := ep.Info(); i.RTT != before.RTT {
		t.Errorf("SRTT %v after an ACK echoing the fast retransmission (sent %v before the RTO), want %v unchanged",
			i.RTT, ep.Info().RTO, before.RTT)
	}
}

// TestNoRTTSampleFromSACKAfterTimeout: segments 1 and 2 are lost and the
// ACKs of 3 and 4 too, so the RTO sends segment 1 again; the ACK it
// causes acknowledges 1 and newly SACKs 3-4, sent once, an RTO ago. That
// SACK was late because the ACKs before it were lost, not because the
// path is slow: like the segments it covers cumulatively, an ACK that
// covers a retransmission times nothing by the segments it SACKs (Karn,
// RFC 6298 3). Linux times it (tcp_ack_update_rtt takes sack_rtt_us); at
// 20% loss such samples of 600 ms and 1.4 s took SRTT from under 1 ms to
// 180 ms. The TSecr of the retransmission, echoed, still gives a sample.
func TestNoRTTSampleFromSACKAfterTimeout(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true}, tcptest.WithTimestamps())
	mss := ep.Info().SndMSS
	sendSegments(t, p, ep, 4)
	before := ep.Info()
	p.Advance(before.RTO) // no ACK: 1 and 2 lost, the ACKs of 3 and 4 too
	var retx []tcptest.Seg
	for _, s := range p.Drain() {
		if s.Seq == sbm(mss, 1) {
			retx = append(retx, s)
		}
	}
	if len(retx) != 1 {
		t.Fatalf("after the timeout: %v, want segment 1 again", retx)
	}
	p.Advance(rtt)
	ack := sackAckM(mss, 2, [2]int{3, 5})
	ack.TS, ack.TSVal, ack.TSEcr = true, p.TSClock(), retx[0].TSVal
	p.Inject(ack)
	p.Drain()
	if i := ep.Info(); i.RTT > 2*before.RTT {
		t.Errorf("SRTT %v after the ACK of the retransmission (round trip %v), want about %v: the late SACK of 3-4 timed",
			i.RTT, rtt, before.RTT)
	}
}
