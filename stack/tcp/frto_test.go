package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// F-RTO (RFC 5682): after a retransmission timeout, the sender holds back
// further retransmissions for two ACKs and sends new data instead; if
// those ACKs acknowledge data that was never retransmitted, the original
// transmissions got through and the timeout was spurious: the congestion
// response is undone (RFC 4015). These traces run with RACK off (NoRACK)
// and without timestamps, so that neither a tail loss probe nor Eifel
// detection (RFC 3522) can decide first: F-RTO alone judges the timeout.
// The flight is ten segments (the initial window, RFC 6928) with two
// more queued behind it: the new data that step 2.b sends.

// frtoFlight writes twelve segments, expects the ten of the initial
// window and lets the retransmission timer fire: segment 1 is sent again
// with a window of one segment (RFC 5681 3.1, RFC 6298 5.4). It returns
// the window before the timeout.
func frtoFlight(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) uint32 {
	t.Helper()
	if _, err := ep.Write(payload(0, 12*1460)); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 10; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	prior := ep.Info().Cwnd
	p.Advance(ep.Info().RTO)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460})
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "RTO recovery" || i.Cwnd != 1460 {
		t.Fatalf("after the timeout: %s, cwnd %d; want RTO recovery, one segment", i.CAState, i.Cwnd)
	}
	return prior
}

// newData reports whether out holds a segment of the data that was never
// sent before the timeout (segments 11 and 12).
func newData(out []seg) bool {
	for _, s := range out {
		if s.Seq >= sb(11) && s.Len > 0 {
			return true
		}
	}
	return false
}

// TestFRTOSpuriousTimeout is RFC 5682 2.1 without SACK: the whole flight
// arrived, but its ACKs were held up past the RTO. The first ACK after the
// timeout (step 2) acknowledges segments 1 and 2, not everything sent, so
// F-RTO sends new data (2.b) rather than retransmitting; the second (step
// 3), a stretch ACK of the rest, acknowledges segments never
// retransmitted (3.b): the timeout was spurious, and cwnd returns to what
// it was (RFC 4015). With F-RTO off (NoFRTO) the same ACKs prove nothing
// (no timestamps, no D-SACK): conventional recovery goes on from one
// segment, in slow start.
func TestFRTOSpuriousTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  bool
	}{{"F-RTO", false}, {"NoFRTO", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoRACK: true, NoFRTO: tc.off}))
			prior := frtoFlight(t, p, ep)
			p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(3)})
			out := p.Drain()
			if newData(out) == tc.off {
				t.Errorf("first ACK after the timeout: new data sent %v, want %v (step 2.b)", newData(out), !tc.off)
			}
			p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
			p.Drain()
			st := p.TCP.Stats()
			i := ep.Info()
			if tc.off {
				if st.SpuriousRTOs.Load() != 0 || st.Undos.Load() != 0 || i.Cwnd >= prior {
					t.Errorf("without F-RTO: spurious RTOs %d, undos %d, cwnd %d; want 0, 0, below %d",
						st.SpuriousRTOs.Load(), st.Undos.Load(), i.Cwnd, prior)
				}
				return
			}
			if st.SpuriousRTOs.Load() != 1 || st.Undos.Load() != 1 {
				t.Errorf("spurious RTOs %d, undos %d; want 1, 1", st.SpuriousRTOs.Load(), st.Undos.Load())
			}
			if i.CAState != "open" || i.Cwnd < prior {
				t.Errorf("after the second ACK: %s, cwnd %d; want open, cwnd restored to %d", i.CAState, i.Cwnd, prior)
			}
		})
	}
}

// TestFRTOStep2bNewDataOnly is the same spurious timeout with the ACKs a
// receiver that acknowledges every second segment sends: 1-2, then 3-4.
// Step 2.b sends up to two new segments and nothing else (RFC 5682 2.1;
// Linux REXMIT_NEW sends new data only); the ACK of 3-4, never
// retransmitted, then shows the timeout spurious (3.b).
func TestFRTOStep2bNewDataOnly(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoRACK: true}))
	prior := frtoFlight(t, p, ep)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(3)})
	out := p.Drain()
	if len(out) == 0 || len(out) > 2 {
		t.Errorf("step 2.b sent %d segments, want one or two", len(out))
	}
	for _, s := range out {
		if s.Seq < sb(11) {
			t.Errorf("step 2.b retransmitted %d:%d; RFC 5682 2.1 sends only new data", s.Seq, s.Seq+uint32(s.Len))
		}
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(5)})
	if st := p.TCP.Stats(); st.SpuriousRTOs.Load() != 1 || ep.Info().Cwnd < prior {
		t.Errorf("spurious RTOs %d, cwnd %d; want 1, %d", st.SpuriousRTOs.Load(), ep.Info().Cwnd, prior)
	}
}

// TestFRTORealLoss is the opposite case (RFC 5682 2.1 step 3.a): the
// whole flight was lost. The first ACK after the timeout acknowledges the
// retransmission only; F-RTO sends new data (2.b), which arrives above the
// hole and draws a duplicate ACK: the loss was real, nothing is undone,
// and recovery goes on from one segment until the peer has everything.
func TestFRTORealLoss(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoRACK: true}))
	prior := frtoFlight(t, p, ep)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	out := p.Drain()
	if !newData(out) {
		t.Errorf("first ACK after the timeout sent %v, want new data (step 2.b)", out)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	out = append(out, p.Drain()...)
	st := p.TCP.Stats()
	i := ep.Info()
	if st.SpuriousRTOs.Load() != 0 || st.Undos.Load() != 0 {
		t.Errorf("spurious RTOs %d, undos %d; want none", st.SpuriousRTOs.Load(), st.Undos.Load())
	}
	if i.CAState != "RTO recovery" || i.Cwnd >= prior {
		t.Errorf("after the duplicate ACK: %s, cwnd %d; want RTO recovery, below %d", i.CAState, i.Cwnd, prior)
	}
	// Recovery goes on: the peer, holding 1 and what came since,
	// acknowledges what it holds in order, each round trip, until everything is in.
	have := map[uint32]bool{sb(1): true}
	for _, s := range out {
		have[s.Seq] = true
	}
	ack := sb(2)
	for range 20 {
		if ack == sb(13) {
			break
		}
		p.Advance(rtt)
		for _, s := range p.Drain() {
			have[s.Seq] = true
		}
		for have[ack] {
			ack += 1460
		}
		p.Inject(seg{Flags: ".", Seq: 1, Ack: ack})
	}
	p.Drain()
	if ack != sb(13) || ep.Info().CAState != "open" {
		t.Errorf("recovery ended at %d, %s; want all 12 segments acknowledged, open", ack, ep.Info().CAState)
	}
	if st.SpuriousRTOs.Load() != 0 || st.Undos.Load() != 0 {
		t.Errorf("at the end: spurious RTOs %d, undos %d; want none", st.SpuriousRTOs.Load(), st.Undos.Load())
	}
}

// TestFRTOSACKSpuriousTimeout is the SACK-enhanced F-RTO (RFC 5682 3.1),
// as Linux applies it (FLAG_ORIG_SACK_ACKED: a SACK for data sent before
// the timeout and never retransmitted ends the judgement at once): segment
// 1 was reordered behind the others, and the ACKs SACKing 2-10 were held
// up past the RTO. The first ACK after the timeout SACKs them: the
// timeout was spurious, cwnd returns, and none of 2-10 is sent again; the
// peer's next ACK D-SACKs the needless retransmission of 1 (RFC 2883).
func TestFRTOSACKSpuriousTimeout(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true})
	prior := frtoFlight(t, p, ep)
	p.Inject(sackAck(1, [2]int{2, 11}))
	var out []seg
	out = append(out, p.Drain()...)
	st := p.TCP.Stats()
	if st.SpuriousRTOs.Load() != 1 || st.Undos.Load() != 1 {
		t.Errorf("spurious RTOs %d, undos %d; want 1, 1", st.SpuriousRTOs.Load(), st.Undos.Load())
	}
	if i := ep.Info(); i.CAState != "open" || i.Cwnd < prior {
		t.Errorf("after the SACK: %s, cwnd %d; want open, restored to %d", i.CAState, i.Cwnd, prior)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11), SACK: [][2]uint32{{sb(1), sb(2)}}})
	out = append(out, p.Drain()...)
	for _, s := range out {
		if s.Seq < sb(11) {
			t.Errorf("segment %d:%d, delivered before the timeout, sent again", s.Seq, s.Seq+uint32(s.Len))
		}
	}
	if n := st.Sent(event.SendRetransmit); n != 1 {
		t.Errorf("%d RTO retransmissions, want the one of segment 1", n)
	}
}

// TestFRTOSACKRealLoss is the opposite case with SACK (RFC 5682 3.1 step
// 3.a): the whole flight was lost; the retransmission of 1 is
// acknowledged, new data goes out (2.b) and is SACKed above the hole. That
// new data was sent after the timeout: its SACK shows nothing about the
// flight the timeout judged (Linux: FLAG_ORIG_SACK_ACKED only below
// high_seq, which step 2.b moves to SND.NXT before sending), so the loss
// stands and nothing is undone.
func TestFRTOSACKRealLoss(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true})
	prior := frtoFlight(t, p, ep)
	p.Inject(sackAck(2))
	if out := p.Drain(); !newData(out) {
		t.Errorf("first ACK after the timeout sent %v, want new data (step 2.b)", out)
	}
	p.Inject(sackAck(2, [2]int{11, 12}))
	p.Drain()
	st := p.TCP.Stats()
	if st.SpuriousRTOs.Load() != 0 || st.Undos.Load() != 0 || ep.Info().Cwnd >= prior {
		t.Errorf("spurious RTOs %d, undos %d, cwnd %d; want 0, 0, below %d", st.SpuriousRTOs.Load(), st.Undos.Load(), ep.Info().Cwnd, prior)
	}
}

// TestFRTONotInRecovery: F-RTO judges a timeout only when no loss
// recovery was under way before it, or when the timeout recurs with
// SND.UNA unmoved (RFC 5682 3.1 step 1: not while RecoveryPoint >=
// SND.UNA; Linux's tcp_enter_loss: new_recovery || icsk_retransmits).
// A timeout in fast recovery means the fast retransmission was lost: a
// loss already proven, so a SACK of data never retransmitted shows only
// that the rest of the flight got through, not that the timeout was
// spurious, and step 2.b's new data would hold back the repair of the
// holes. Likewise a timeout in RTO recovery after the previous one's
// retransmission was answered (Linux f82b681a, "don't use F-RTO on
// non-recurring timeouts"). In each case the ACK after the timeout sends
// the next hole again, and nothing is undone.
func TestFRTONotInRecovery(t *testing.T) {
	// fastRecovery: segment 1 of ten is lost, 2-4 are SACKed (RFC 6675
	// IsLost), 11 and 12 go as limited transmit, 1 is sent again, and
	// that retransmission is lost too: the timeout comes in fast
	// recovery.
	fastRecovery := func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
		p.Advance(rtt)
		for k := 3; k <= 5; k++ {
			p.Inject(sackAck(1, [2]int{2, k}))
		}
		if out := p.Drain(); len(out) == 0 || out[len(out)-1].Seq != sb(1) {
			t.Fatalf("after three SACKs: %v, want segment 1 sent again last", out)
		}
		if s := ep.Info().CAState; s != "fast recovery" {
			t.Fatalf("after three SACKs: %s, want fast recovery", s)
		}
		p.Advance(ep.Info().RTO)
		p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
		p.Advance(rtt)
	}
	for _, tc := range []struct {
		name string
		// before: from the ten segments sent to the timeout judged.
		before func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint)
		ack    seg // the ACK after the timeout
		hole   int // the segment it should send again first
	}{{
		// 5-7, never retransmitted, SACKed: F-RTO would call the
		// timeout spurious and undo fast recovery's reduction too.
		name: "fast recovery, originals SACKed", before: fastRecovery,
		ack: sackAck(2, [2]int{2, 8}), hole: 8,
	}, {
		// The retransmission of 1 arrived: step 2.b would send new
		// data, not the hole at 5.
		name: "fast recovery, retransmission acknowledged", before: fastRecovery,
		ack: sackAck(2, [2]int{2, 5}), hole: 5,
	}, {
		// The first timeout's retransmission of 1 is acknowledged, then
		// the timer fires again for 2: not a recurring timeout on the
		// same SND.UNA.
		name: "RTO recovery, previous timeout answered",
		before: func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Advance(ep.Info().RTO)
			p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
			p.Advance(rtt)
			p.Inject(sackAck(2))
			p.Drain() // step 2.b's new data
			p.Advance(ep.Info().RTO)
			p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
			p.Advance(rtt)
		},
		ack: sackAck(3), hole: 3,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := rttPeer(t, tcp.Options{NoRACK: true})
			if _, err := ep.Write(payload(0, 16*1460)); err != nil {
				t.Fatal(err)
			}
			for k := 1; k <= 10; k++ {
				p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
			}
			prior := ep.Info().Cwnd
			tc.before(t, p, ep)
			if s := ep.Info().CAState; s != "RTO recovery" {
				t.Fatalf("after the timeout: %s, want RTO recovery", s)
			}
			p.Inject(tc.ack)
			out := p.Drain()
			if len(out) == 0 || out[0].Seq != sb(tc.hole) {
				t.Errorf("the ACK after the timeout sent %v, want segment %d again first", out, tc.hole)
			}
			st := p.TCP.Stats()
			if i := ep.Info(); st.SpuriousRTOs.Load() != 0 || st.Undos.Load() != 0 || i.CAState != "RTO recovery" || i.Cwnd >= prior {
				t.Errorf("spurious RTOs %d, undos %d, %s, cwnd %d; want 0, 0, RTO recovery, below %d",
					st.SpuriousRTOs.Load(), st.Undos.Load(), i.CAState, i.Cwnd, prior)
			}
		})
	}
}
