package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// The SACK sender (RFC 6675). Segments are 1460 bytes; seg k (from 1)
// starts at sb(k).
func sb(k int) uint32 { return 1 + uint32(k-1)*1460 }

// sackAck is an ACK from the peer for ack with the given SACK blocks,
// each {first segment, segment after the last}.
func sackAck(ack int, blocks ...[2]int) seg {
	s := seg{Flags: ".", Seq: 1, Ack: sb(ack)}
	for _, b := range blocks {
		s.SACK = append(s.SACK, [2]uint32{sb(b[0]), sb(b[1])})
	}
	return s
}

// sendSegments writes n full segments and expects them all at once.
func sendSegments(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, n int) []byte {
	t.Helper()
	data := payload(0, n*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= n; k++ {
		flags := "."
		if k == n {
			flags = "P."
		}
		p.Expect(seg{Flags: flags, Seq: sb(k), Ack: 1, Len: 1460})
	}
	p.ExpectNothing()
	return data
}

func segData(data []byte, k int) []byte { return data[(k-1)*1460 : k*1460] }

// TestSACKRecoveryTwoHoles: segments 1 and 3 of a window of ten are lost.
// With the peer's SACK blocks both holes are retransmitted before the
// first retransmission can be acknowledged: one round trip, where
// NewReno needs a partial ACK, and so a second round trip, for the second
// hole. SACKed segments are never sent again; recovery ends when SND.UNA
// passes RecoveryPoint, with cwnd = ssthresh = FlightSize/2 (RFC 6675 5).
func TestSACKRecoveryTwoHoles(t *testing.T) {
	p, ep := sackPeer(t)
	data := sendSegments(t, p, ep, 10)
	p.Inject(sackAck(1, [2]int{2, 3}))
	p.ExpectNothing()
	p.Inject(sackAck(1, [2]int{4, 5}, [2]int{2, 3}))
	p.ExpectNothing()
	// The third duplicate ACK (DupThresh): recovery, segment 1 again.
	p.Inject(sackAck(1, [2]int{4, 6}, [2]int{2, 3}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
	if i := ep.Info(); i.Cwnd != 5*1460 || i.Ssthresh != 5*1460 {
		t.Fatalf("in recovery: cwnd %d, ssthresh %d; want both FlightSize/2 = %d (no inflation)", i.Cwnd, i.Ssthresh, 5*1460)
	}
	// Segment 3 is now lost too (three segments SACKed above it), but
	// pipe (segments 7-10 and the retransmission) fills cwnd.
	p.Inject(sackAck(1, [2]int{4, 7}, [2]int{2, 3}))
	p.ExpectNothing()
	// One more segment leaves the network: pipe 4 < cwnd 5.
	p.Inject(sackAck(1, [2]int{4, 8}, [2]int{2, 3}))
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3)})
	p.ExpectNothing()
	p.Inject(sackAck(1, [2]int{4, 9}, [2]int{2, 3}))
	p.Inject(sackAck(1, [2]int{4, 11}, [2]int{2, 3}))
	p.ExpectNothing() // no hole left above HighRxt: nothing SACKed is resent
	// The retransmission of segment 1 arrives: a partial ACK.
	p.Inject(sackAck(3, [2]int{4, 11}))
	p.ExpectNothing()
	if i := ep.Info(); i.Cwnd != 5*1460 {
		t.Fatalf("after a partial ACK: cwnd %d, want %d", i.Cwnd, 5*1460)
	}
	// Segment 3 arrives: SND.UNA passes RecoveryPoint.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
	p.ExpectNothing()
	i := ep.Info()
	if i.Cwnd != 5*1460 || i.Ssthresh != 5*1460 || i.Retransmits != 2 {
		t.Errorf("after recovery: cwnd %d, ssthresh %d, retransmits %d; want %d, %d, 2", i.Cwnd, i.Ssthresh, i.Retransmits, 5*1460, 5*1460)
	}
	if n := p.TCP.Stats().Sent(tcp.SendFastRetransmit); n != 2 {
		t.Errorf("fast retransmits %d, want 2", n)
	}
	// Out of recovery, an ACK of new data grows cwnd again.
	if _, err := ep.Write(payload(0, 1460)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sb(11), Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(12)})
	if i := ep.Info(); i.Cwnd <= 5*1460 {
		t.Errorf("cwnd %d did not grow after recovery", i.Cwnd)
	}
}

// TestNewRenoTwoHoles is the same loss without SACK: the second hole is
// only retransmitted on the partial ACK, a round trip later (RFC 6582).
func TestNewRenoTwoHoles(t *testing.T) {
	p, ep := tcptest.Established(t)
	data := sendSegments(t, p, ep, 10)
	for range 3 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	}
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	for range 5 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	}
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(3)})
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3)})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
	p.ExpectNothing()
}

// TestSACKIsLostEntersRecovery: one ACK that SACKs three segments at once
// (its predecessors were lost) shows SND.UNA lost; recovery starts on that
// first duplicate ACK (RFC 6675 5 step (2)) rather than waiting for three.
func TestSACKIsLostEntersRecovery(t *testing.T) {
	p, ep := sackPeer(t)
	data := sendSegments(t, p, ep, 10)
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
	p.ExpectNothing()
	if i := ep.Info(); i.Cwnd != 5*1460 || i.Retransmits != 1 {
		t.Errorf("cwnd %d, retransmits %d; want %d, 1", i.Cwnd, i.Retransmits, 5*1460)
	}
}

// TestSACKInvalidBlocksIgnored: blocks beyond SND.MAX, D-SACK blocks
// below SND.UNA and blocks with Start >= End are not taken; ACKs carrying
// only such blocks report nothing new, so they are no duplicate ACKs
// (RFC 6675 2) and trigger no retransmission.
func TestSACKInvalidBlocksIgnored(t *testing.T) {
	p, ep := sackPeer(t)
	sendSegments(t, p, ep, 10)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	bad := [][][2]uint32{
		{{sb(11), sb(12)}},     // never sent
		{{sb(10), sb(11) + 1}}, // ends past SND.MAX
		{{sb(1), sb(2)}},       // D-SACK, below SND.UNA
		{{sb(5), sb(4)}},       // Start > End
		{{sb(5), sb(5)}},       // empty
		{{sb(1), sb(2)}, {sb(12), sb(13)}, {sb(6), sb(5)}}, // all at once
	}
	for _, blocks := range bad {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2), SACK: blocks})
	}
	p.ExpectNothing()
	if i := ep.Info(); i.Retransmits != 0 || i.Cwnd < 10*1460 {
		t.Fatalf("after invalid blocks: retransmits %d, cwnd %d", i.Retransmits, i.Cwnd)
	}
	// A valid block in the same ACK as invalid ones still counts: with
	// segments 3 to 5 SACKed, segment 2 is lost.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2), SACK: [][2]uint32{{sb(12), sb(13)}, {sb(3), sb(6)}}})
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Len: 1460})
}

// TestSACKScoreboardClearedOnRTO: a timeout forgets the scoreboard (the
// receiver may have reneged, RFC 2018 8; Linux does the same), so
// go-back-N resends a segment SACKed before the timeout; a segment
// SACKed after it is skipped.
func TestSACKScoreboardClearedOnRTO(t *testing.T) {
	p, ep := sackPeer(t)
	rto := ep.Info().RTO
	data := sendSegments(t, p, ep, 5)
	p.Inject(sackAck(1, [2]int{3, 4})) // one duplicate: no recovery
	p.ExpectNothing()
	p.Advance(rto)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
	// cwnd 2: segments 2 and 3 go again, 3 though it was SACKed.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Payload: segData(data, 2)})
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3)})
	p.ExpectNothing()
	// Segment 4 SACKed now: go-back-N skips it and sends 5.
	p.Inject(sackAck(3, [2]int{4, 5}))
	p.Expect(seg{Flags: "P.", Seq: sb(5), Ack: 1, Payload: segData(data, 5)})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(6)})
	p.ExpectNothing()
	if i := ep.Info(); i.Retransmits != 4 || i.SendQueued != 0 {
		t.Errorf("retransmits %d, queued %d; want 4, 0", i.Retransmits, i.SendQueued)
	}
}

// TestSACKLimitedTransmit: with SACK, an ACK that SACKs new data is a
// duplicate (RFC 6675 2), and the first two let new segments out (RFC
// 3042).
func TestSACKLimitedTransmit(t *testing.T) {
	p, ep := sackPeer(t)
	data := payload(0, 12*1460)
	ep.Write(data)
	for k := 1; k <= 10; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460})
	}
	p.ExpectNothing()
	p.Inject(sackAck(1, [2]int{2, 3}))
	p.Expect(seg{Flags: ".", Seq: sb(11), Ack: 1, Len: 1460})
	p.Inject(sackAck(1, [2]int{2, 3})) // nothing new: not a duplicate
	p.ExpectNothing()
	p.Inject(sackAck(1, [2]int{2, 4}))
	p.Expect(seg{Flags: "P.", Seq: sb(12), Ack: 1, Len: 1460})
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
}

// TestSACKScoreboardBounded: forty disjoint SACKed ranges, more than the
// scoreboard keeps (32). The ranges beyond the bound are forgotten, never
// invented: no retransmission overlaps a range that was kept, and the
// connection finishes normally.
func TestSACKScoreboardBounded(t *testing.T) {
	p, ep := sackPeer(t)
	sendSegments(t, p, ep, 10)
	block := func(k int) [2]uint32 { return [2]uint32{1 + 300*uint32(k) + 100, 1 + 300*uint32(k) + 110} }
	var sent []seg
	for k := 0; k < 40; k += 4 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{block(k + 3), block(k + 2), block(k + 1), block(k)}})
		sent = append(sent, p.Drain()...)
	}
	if len(sent) == 0 {
		t.Fatal("no retransmission at all")
	}
	t.Logf("%d retransmissions", len(sent))
	for _, s := range sent {
		for k := range 32 {
			b := block(k)
			if s.Seq < b[1] && b[0] < s.Seq+uint32(len(s.Payload)) {
				t.Errorf("retransmitted %d:%d overlaps SACKed %d:%d", s.Seq, s.Seq+uint32(len(s.Payload)), b[0], b[1])
			}
		}
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
	p.Drain()
	if i := ep.Info(); i.SendQueued != 0 || i.State != tcp.Established || i.Cwnd != i.Ssthresh {
		t.Errorf("after the full ACK: queued %d, state %v, cwnd %d, ssthresh %d", i.SendQueued, i.State, i.Cwnd, i.Ssthresh)
	}
}
