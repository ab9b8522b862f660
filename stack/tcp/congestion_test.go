package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestLimitedTransmit: the first two duplicate ACKs each let one new
// segment out beyond cwnd (RFC 3042), so the third duplicate, and fast
// retransmit, come even when the window is nearly all in flight.
func TestLimitedTransmit(t *testing.T) {
	p, ep := tcptest.Established(t)
	data := payload(0, 12*1460) // two segments more than the initial window
	ep.Write(data)
	for i := range 10 {
		p.Expect(seg{Flags: trainFlags(i, 10), Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460})
	}
	p.ExpectNothing() // cwnd is full
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1 + 10*1460, Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: "P.", Seq: 1 + 11*1460, Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.ExpectNothing()
}

// TestEarlyRetransmit: with fewer than four segments outstanding and
// nothing new to send, fast retransmit fires after oseg-1 duplicate ACKs
// (RFC 5827), instead of waiting for an RTO that three duplicates could
// never prevent.
func TestEarlyRetransmit(t *testing.T) {
	p, ep := tcptest.Established(t)
	data := payload(0, 3*1460)
	ep.Write(data)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1}) // oseg 3: the second duplicate is enough
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	if n := p.TCP.Stats().Sent(event.SendFastRetransmit); n != 1 {
		t.Errorf("fast retransmits %d, want 1", n)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.ExpectNothing()
	p.WantState(ep, event.Established)
}

// TestNoEarlyRetransmitOnPlainDupAck: with SACK in force, a lone
// duplicate ACK without SACK blocks for the last, short segment of a
// transfer is no sign of loss: the network's copy of an ACK, or the
// peer's answer to a segment the network duplicated. Early Retransmit's
// threshold of oseg-1 counts SACKed segments on a SACK connection (RFC
// 5827 3.2), so plain duplicates fall back to RFC 5681's three; one
// retransmitted the segment at once.
func TestNoEarlyRetransmitOnPlainDupAck(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	mss := ep.Info().SndMSS
	sendSegments(t, p, ep, 4)
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 5))
	if _, err := ep.Write(payload(4*mss, 100)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sbm(mss, 5), Ack: 1, Len: 100})
	p.Advance(time.Millisecond)
	p.Inject(sackAckM(mss, 5)) // a duplicate, no SACK blocks
	p.ExpectNothing()
	if st := p.TCP.Stats(); st.FastRecoveries.Load() != 0 || st.Retransmits.Load() != 0 {
		t.Errorf("fast recoveries %d, retransmits %d; want none", st.FastRecoveries.Load(), st.Retransmits.Load())
	}
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 5)) // three in all: RFC 5681's rule
	p.Inject(sackAckM(mss, 5))
	p.Expect(seg{Flags: "P.", Seq: sbm(mss, 5), Ack: 1, Len: 100})
}

// TestLimitedTransmitPlainDupAcks: SACK was agreed, but the duplicate
// ACKs come without SACK blocks, as gVisor's TCP sends them once it has
// closed its side. Each still stands for a segment that left the
// network, so the first two let a new segment out (RFC 3042), and the
// third brings fast retransmit. Counted only for SACK, they let nothing
// out: with a window of a few segments at 20% loss the third rarely came,
// and nearly every loss waited for the RTO (TestSoak/loss20 sent 2 MiB
// to a half-closed gVisor in 45 s). Once a SACK block arrives, the
// scoreboard, not the count, says what left.
func TestLimitedTransmitPlainDupAcks(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	mss := ep.Info().SndMSS
	data := payload(0, 14*mss)
	ep.Write(data)
	for i := range 10 {
		p.Expect(seg{Flags: ".", Seq: sbm(mss, i+1), Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing() // the initial window is in flight
	p.Advance(time.Millisecond)
	p.Inject(sackAckM(mss, 1)) // segment 1 lost: no SACK blocks
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 11), Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
	p.Inject(sackAckM(mss, 1))
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 12), Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
	p.Inject(sackAckM(mss, 1))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:mss]})
	if st := p.TCP.Stats(); st.FastRecoveries.Load() != 1 {
		t.Errorf("fast recoveries %d, want 1", st.FastRecoveries.Load())
	}
	if in := ep.Info(); in.InFlight != 9*uint32(mss) {
		// RFC 6675 4's pipe: 12 sent, 3 left the network, 1 lost, 1
		// retransmitted.
		t.Errorf("pipe %d after three duplicates and a retransmission, want 12-3-1+1 segments, %d", in.InFlight, 9*mss)
	}
	// A SACK block for segments 2-6: the scoreboard counts five where
	// the duplicates counted three.
	p.Inject(sackAckM(mss, 1, [2]int{2, 7}))
	if in := ep.Info(); in.Sacked != 5*uint32(mss) || in.InFlight != 7*uint32(mss) {
		t.Errorf("SACKed %d, pipe %d; want 5 segments SACKed and 12-5-1+1 in flight (%d, %d)", in.Sacked, in.InFlight, 5*mss, 7*mss)
	}
}

// TestPartialAckPlainDupAcks: a recovery that bare duplicate ACKs
// started (SACK agreed, no blocks sent) goes on by NewReno's partial ACK
// (RFC 6582 3.2 step 3): the ACK of the retransmission that stops short
// of the recovery point says the segment after it was lost too, and it
// goes at once. RACK alone does not see it when that ACK came sooner
// than the minimum RTT after the retransmission (1 ms against 10 here;
// in memory a first flight's RTT of 1.8 ms, against 0.3 ms later): the
// ACK may be the original's (RFC 8985 6.2 step 2), so the retransmission
// counts as delivered at no time, and the hole waited for the RTO.
func TestPartialAckPlainDupAcks(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	mss := ep.Info().SndMSS
	data := sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	for range 3 { // segments 1 and 5 lost
		p.Inject(sackAckM(mss, 1))
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:mss]})
	p.Advance(time.Millisecond)
	p.Inject(sackAckM(mss, 5))
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 5), Ack: 1, Payload: data[4*mss : 5*mss]})
	p.ExpectNothing()
	if in := ep.Info(); in.CAState != "fast recovery" || in.Lost != uint32(mss) {
		t.Errorf("%s, %d bytes deemed lost; want fast recovery, segment 5's %d", in.CAState, in.Lost, mss)
	}
	p.Advance(time.Millisecond)
	p.Inject(sackAckM(mss, 11))
	if in := ep.Info(); in.CAState != "open" {
		t.Errorf("%s after the ACK of everything, want open", in.CAState)
	}
}

// TestProbeBareRecovery: the fast retransmission that bare duplicate ACKs
// started (SACK agreed, no blocks sent) is lost too. More bare duplicates
// come, for the segments after the hole, and then nothing: the probe
// 2·SRTT later sends SND.UNA's segment again, the one the recovery waits
// for, not the last segment, whose duplicate ACK would be as bare as the
// rest; without it the RTO, 200 ms on, would resend every segment. Its
// ACK then ends the recovery.
func TestProbeBareRecovery(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	mss := ep.Info().SndMSS
	data := sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	for range 3 {
		p.Inject(sackAckM(mss, 1))
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:mss]}) // lost
	for range 4 {
		p.Inject(sackAckM(mss, 1))
	}
	p.ExpectNothing()
	var probe []tcptest.Seg
	for i := 0; i < 100 && len(probe) == 0; i++ {
		p.Advance(time.Millisecond)
		probe = p.Drain()
	}
	if len(probe) != 1 || probe[0].Seq != 1 {
		t.Fatalf("probe %v, want segment 1 again", probe)
	}
	if n := p.TCP.Stats().TailLossProbes.Load(); n != 1 || p.TCP.Stats().RetransmitTimeouts.Load() != 0 {
		t.Errorf("%d probes, %d RTOs; want 1 and none", n, p.TCP.Stats().RetransmitTimeouts.Load())
	}
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 11))
	if in := ep.Info(); in.CAState != "open" {
		t.Errorf("%s after the probe's ACK, want open", in.CAState)
	}
}

// TestDupAcksDeliveredOnce: without SACK, each duplicate ACK stands for
// a segment that left the network (RFC 5681 3.2), counted as delivered
// when it comes. The ACK that then covers the hole and those segments
// delivers only the rest: at least the hole's segment (RFC 6937 3, Linux's
// tcp_remove_reno_sacks). After two duplicates, an ACK of three segments
// grows slow start's window by one, from 10 to 11 segments, not by three:
// with 9 in flight, 2 new segments go.
func TestDupAcksDeliveredOnce(t *testing.T) {
	const mss = 1000
	p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: mss}))
	ep.Write(payload(0, 15*mss))
	if n := len(p.Drain()); n != 10 {
		t.Fatalf("%d segments, want the initial window of 10", n)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1 + 10*mss, Ack: 1, Len: mss}) // limited transmit (RFC 3042)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1 + 11*mss, Ack: 1, Len: mss})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 3*mss}) // reordering, not loss
	p.Expect(seg{Flags: ".", Seq: 1 + 12*mss, Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: "P.", Seq: 1 + 13*mss, Ack: 1, Len: mss})
	p.ExpectNothing()
	if c := ep.Info().Cwnd; c != 11*mss {
		t.Errorf("cwnd %d, want 11 segments", c)
	}
}

// TestCwndWholeSegments: a segment leaves only if all of it fits in the
// congestion window (RFC 5681 2: no data past SND.UNA + min(cwnd, rwnd);
// RFC 6675 5 (C): cwnd - pipe >= 1 SMSS). With a window of 7.5 segments,
// 7 go and the eighth waits for an ACK, where sending while pipe < cwnd
// put 8 in flight, half a segment past the window. Linux's whole-packet
// window does the same (packetdrill's cubic-rto-ss-ca-cwnd-bump).
func TestCwndWholeSegments(t *testing.T) {
	p, ep := tcptest.Established(t)
	const mss = 1460
	ep.SetCwnd(7*mss+mss/2, 2*mss) // congestion avoidance: an ACK adds a sliver
	data := payload(0, 12*mss)
	ep.Write(data)
	sent := p.Drain()
	if len(sent) != 7 {
		t.Fatalf("%d segments in flight with a window of 7.5, want 7", len(sent))
	}
	for i, s := range sent {
		if s.Seq != 1+uint32(i*mss) || len(s.Payload) != mss {
			t.Fatalf("segment %d: seq %d len %d, want %d len %d", i, s.Seq, len(s.Payload), 1+i*mss, mss)
		}
	}
	// Each ACK of one segment makes room for one: the window grew by
	// less than a segment, so never two.
	for i := range 3 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + uint32((i+1)*mss)})
		sent = p.Drain()
		if len(sent) != 1 || sent[0].Seq != 1+uint32((7+i)*mss) {
			t.Fatalf("after ACK %d: sent %v, want the segment at %d", i+1, sent, 1+(7+i)*mss)
		}
		if info := ep.Info(); info.TCB.SndNxt-info.TCB.SndUna > info.Cwnd {
			t.Fatalf("after ACK %d: %d bytes in flight, cwnd %d", i+1, info.TCB.SndNxt-info.TCB.SndUna, info.Cwnd)
		}
	}
}

// TestCwndBelowOneSegment: with nothing in flight a full segment leaves
// even when the window is smaller than one (as after the MSS grew back
// past it), since no ACK and no timer would come to release it; the next
// waits for the ACK.
func TestCwndBelowOneSegment(t *testing.T) {
	p, ep := tcptest.Established(t)
	const mss = 1460
	ep.SetCwnd(1000, 1000)
	ep.Write(payload(0, 2*mss))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: mss})
	p.ExpectNothing()
}
