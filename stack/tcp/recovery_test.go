package tcp_test

import (
	"slices"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Loss detection and recovery as packet traces: RACK-TLP (RFC 8985), PRR
// (RFC 6937), undo of spurious responses (RFC 2883, RFC 3522, RFC 5682).
// The peer offers SACK; the handshake's round trip is rtt, so SRTT and
// the minimum RTT start at rtt. Segments are 1460 bytes; segment k (from
// 1) starts at sb(k).

const rtt = 10 * time.Millisecond

func sb(k int) uint32 { return sbm(1460, k) }

// sbm is where segment k starts when segments are mss bytes (1448 with
// timestamps in force).
func sbm(mss, k int) uint32 { return 1 + uint32((k-1)*mss) }

// rttPeer is an established connection, opened passively, whose
// handshake took rtt, with the peer offering SACK (and timestamps with
// tcptest.WithTimestamps).
func rttPeer(t *testing.T, o tcp.Options, opts ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint) {
	t.Helper()
	return rttPeerAt(t, o, rtt, opts...)
}

// rttPeerAt is rttPeer with the handshake's RTT, and so SRTT, of rtt.
func rttPeerAt(t *testing.T, o tcp.Options, rtt time.Duration, opts ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint) {
	t.Helper()
	syn := seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true}
	p, l := tcptest.Listen(t, append(opts, tcptest.WithTCP(o))...)
	if p.Timestamps {
		syn.TS, syn.TSVal = true, p.TSClock()
	}
	p.Inject(syn)
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if i := ep.Info(); i.RTT != rtt || i.MinRTT != rtt || !i.SACK {
		t.Fatalf("after the handshake: SRTT %v, min RTT %v, SACK %v; want %v, %v, true", i.RTT, i.MinRTT, i.SACK, rtt, rtt)
	}
	return p, ep
}

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
	mss := ep.Info().SndMSS
	data := payload(0, n*mss)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= n; k++ {
		if k == n {
			p.Expect(seg{Flags: "P.", Seq: sbm(mss, k), Ack: 1, Len: mss})
			break
		}
		p.Expect(seg{Flags: ".", Seq: sbm(mss, k), Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	return data
}

func segData(data []byte, k int) []byte { return segDataM(data, 1460, k) }

func segDataM(data []byte, mss, k int) []byte { return data[(k-1)*mss : k*mss] }

// sackAckM is sackAck for segments of mss bytes.
func sackAckM(mss, ack int, blocks ...[2]int) seg {
	s := seg{Flags: ".", Seq: 1, Ack: sbm(mss, ack)}
	for _, b := range blocks {
		s.SACK = append(s.SACK, [2]uint32{sbm(mss, b[0]), sbm(mss, b[1])})
	}
	return s
}

// TestBurstRecordsSplitBySACK: the ten segments of one burst, sent at one
// instant, share one record of the retransmission queue (rtxqueue.go), and
// an ACK of its first two frees only those. The first SACK block splits
// the rest into eight records again before it is matched to them, so the
// recovery it starts sends the one segment lost, not the burst.
func TestBurstRecordsSplitBySACK(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	mss := ep.Info().SndMSS
	data := sendSegments(t, p, ep, 10)
	if r, n := ep.RtxRecords(); r != 1 || n != 10 {
		t.Fatalf("%d records for %d segments after a burst of 10, want 1", r, n)
	}
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 3))
	if r, n := ep.RtxRecords(); r != 1 || n != 8 {
		t.Fatalf("%d records for %d segments after an ACK of 2, want 1 for 8", r, n)
	}
	if got := ep.Info().RTT; got != rtt {
		t.Errorf("SRTT %v after the partial ACK, want %v", got, rtt)
	}
	p.Inject(sackAckM(mss, 3, [2]int{4, 8})) // segment 3 lost, 4-7 arrived
	if r, n := ep.RtxRecords(); r != 8 || n != 8 {
		t.Fatalf("%d records for %d segments after the SACK block, want 8", r, n)
	}
	if got := p.TCP.Stats().RecordSplits.Load(); got != 1 {
		t.Errorf("%d splits, want 1", got)
	}
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 3), Ack: 1, Payload: data[2*mss : 3*mss], Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 11))
	if in := ep.Info(); in.CAState != "open" || in.InFlight != 0 {
		t.Errorf("%s with %d bytes in flight after the last ACK, want open and none", in.CAState, in.InFlight)
	}
}

// TestTailLossProbe: the last two segments of a flight are lost. Nothing
// after them can be SACKed, so no ACK will ever show the loss; instead of
// the RTO (200 ms at least), the probe timer fires 2*SRTT after the
// last ACK (RFC 8985 7.2) and sends the last segment again; its SACK
// shows the other one lost, and RACK sends it at once (7.4).
func TestTailLossProbe(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 5)
	p.Advance(rtt)
	p.Inject(sackAck(4))
	p.ExpectNothing()
	pto := 2 * rtt
	p.Advance(pto - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: "P.", Seq: sb(5), Ack: 1, Payload: segData(data, 5)})
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(sackAck(4, [2]int{5, 6}))
	p.Expect(seg{Flags: ".", Seq: sb(4), Ack: 1, Payload: segData(data, 4)})
	p.Advance(rtt)
	p.Inject(sackAck(6))
	p.ExpectNothing()
	st := p.TCP.Stats()
	if n := st.TailLossProbes.Load(); n != 1 {
		t.Errorf("tail loss probes %d, want 1", n)
	}
	if n := st.Sent(event.SendRetransmit); n != 0 {
		t.Errorf("%d RTO retransmissions, want none", n)
	}
	if i := ep.Info(); i.CAState != "open" || i.InFlight != 0 {
		t.Errorf("after recovery: %s, %d in flight", i.CAState, i.InFlight)
	}
}

// TestTailLossProbeOff: with NoTLP (Linux's tcp_early_retrans=0) the
// same tail loss waits for the RTO, and RACK still finds the other
// segment lost from the retransmission's SACK.
func TestTailLossProbeOff(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoTLP: true})
	data := sendSegments(t, p, ep, 5)
	p.Advance(rtt)
	p.Inject(sackAck(4))
	rto := ep.Info().RTO
	p.Advance(rto - time.Microsecond)
	p.ExpectNothing() // no probe at 2*SRTT
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: ".", Seq: sb(4), Ack: 1, Payload: segData(data, 4), Check: tcptest.IgnorePSH})
	st := p.TCP.Stats()
	if n, m := st.TailLossProbes.Load(), st.Sent(event.SendRetransmit); n != 0 || m != 1 {
		t.Errorf("tail loss probes %d, RTO retransmissions %d; want 0, 1", n, m)
	}
}

// TestTailLossProbeLostACK: the whole flight arrived but its ACK was lost.
// The probe resends the last segment; the peer's ACK of everything
// carries a D-SACK for it, so the probe was not needed and there was no
// loss: no congestion response at all (RFC 8985 7.4), and no RTO.
func TestTailLossProbeLostACK(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 5)
	before := ep.Info()
	p.Advance(2 * rtt)
	p.Expect(seg{Flags: "P.", Seq: sb(5), Ack: 1, Payload: segData(data, 5)})
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(6), SACK: [][2]uint32{{sb(5), sb(6)}}})
	p.ExpectNothing()
	i := ep.Info()
	if i.CAState != "open" || i.Cwnd < before.Cwnd || i.Ssthresh != before.Ssthresh {
		t.Errorf("after the probe's D-SACK: %s, cwnd %d, ssthresh %d; want open, >= %d, %d", i.CAState, i.Cwnd, i.Ssthresh, before.Cwnd, before.Ssthresh)
	}
	st := p.TCP.Stats()
	if st.TLPRecoveries.Load() != 0 || st.Sent(event.SendRetransmit) != 0 {
		t.Errorf("TLP recoveries %d, RTO retransmissions %d; want 0, 0", st.TLPRecoveries.Load(), st.Sent(event.SendRetransmit))
	}
}

// TestRACKReorderWindow: a SACK for segment 2 alone does not make segment
// 1 lost at once: the network may have reordered them. RACK waits a
// reordering window of min RTT/4 (RFC 8985 6.2 step 4) past the RTT of
// the latest delivered segment, then calls segment 1 lost, on its timer,
// without any further ACK.
func TestRACKReorderWindow(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 4)
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 3}))
	p.ExpectNothing()
	reo := rtt / 4
	p.Advance(reo - time.Microsecond)
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "open" || i.Lost != 0 {
		t.Fatalf("before the reordering window ends: %s, %d bytes lost", i.CAState, i.Lost)
	}
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "fast recovery" {
		t.Fatalf("after the reordering window: %s", i.CAState)
	}
}

// TestRACKDupThresh: once three segments are SACKed above a hole, RACK's
// reordering window is zero (RFC 8985 6.2 step 4) and the hole is lost at
// once, as the three duplicate ACKs rule would have it.
func TestRACKDupThresh(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 6)
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 3}))
	p.Inject(sackAck(1, [2]int{2, 4}))
	p.ExpectNothing()
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	_ = ep
}

// TestRACKLostRetransmission: the fast retransmission of segment 1 is lost
// too. A segment sent after it is SACKed, so RACK knows the retransmission
// should have arrived by then (RFC 8985 2.3) and sends it a third time,
// without waiting for the RTO.
func TestRACKLostRetransmission(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{CongestionControl: "reno"})
	data := sendSegments(t, p, ep, 6)
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	// New data after the retransmission.
	if _, err := ep.Write(payload(6*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.Inject(sackAck(1, [2]int{2, 6}))
	p.Expect(seg{Flags: "P.", Seq: sb(7), Ack: 1, Len: 1460})
	p.Advance(rtt)
	// Segment 7, sent after the retransmission, is SACKed; the
	// retransmission is not.
	p.Inject(sackAck(1, [2]int{2, 8}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.Advance(rtt)
	p.Inject(sackAck(8))
	p.ExpectNothing()
	if n := p.TCP.Stats().Sent(event.SendRetransmit); n != 0 {
		t.Errorf("%d RTO retransmissions, want none", n)
	}
}

// TestPRROneLoss: one segment of a full window is lost and the others
// are SACKed one ACK at a time. Before recovery, each SACK lets one new
// segment out (pipe fell by one: RFC 6675's limited transmit). Once the
// third SACK starts recovery, PRR (RFC 6937 3.1) paces sending: with pipe
// above ssthresh (Reno: FlightSize/2), ssthresh/RecoverFS of what is
// delivered, about every second ACK, the first being the retransmission;
// once pipe is down to ssthresh, what is delivered (PRR-SSRB). The test
// follows the RFC's pseudo-code in a model of its own and compares what
// each ACK let out; recovery ends with cwnd = ssthresh.
func TestPRROneLoss(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{CongestionControl: "reno", SendBufferSize: 1 << 20})
	grow(t, p, ep, 20)
	const mss = 1460
	w := int(ep.Info().Cwnd / mss)
	base := int(ep.Info().BytesAcked/mss) + 1 // the first segment of the window
	if _, err := ep.Write(payload(0, (w+40)*mss)); err != nil {
		t.Fatal(err)
	}
	for k := range w {
		p.Expect(seg{Flags: ".", Seq: sb(base + k), Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	p.Advance(rtt)

	// The model, in bytes as the engine counts, in the RFC's names.
	flight, sacked, lost, retrans := w*mss, 0, 0, 0
	recovering := false
	var ssthresh, recoverFS, prrDelivered, prrOut int
	var got, want []int
	for k := 1; k < w; k++ {
		p.Inject(sackAck(base, [2]int{base + 1, base + 1 + k}))
		got = append(got, len(p.Drain()))

		sacked += mss
		delivered := mss
		pipe := flight - sacked - lost + retrans
		sndcnt := 0
		if !recovering {
			if sacked < 3*mss {
				// Open: send what fits in cwnd (w segments).
				sndcnt = w*mss - pipe
			} else {
				recovering = true
				lost = mss // RACK: the hole is lost at once
				ssthresh = flight / 2
				recoverFS = flight
				pipe -= mss
			}
		}
		if recovering {
			prrDelivered += delivered
			if pipe > ssthresh {
				// The quotient in whole segments, as Linux counts.
				due := (prrDelivered*ssthresh + recoverFS - 1) / recoverFS
				sndcnt = (due+mss-1)/mss*mss - prrOut
			} else {
				// PRR-SSRB; these ACKs only SACK, so no extra segment
				// (RFC 6937bis, Linux).
				sndcnt = min(ssthresh-pipe, max(prrDelivered-prrOut, delivered))
			}
			if prrOut == 0 {
				sndcnt = max(sndcnt, mss)
			}
			sndcnt = max(sndcnt, 0)
		}
		n := sndcnt / mss // a segment leaves only if all of it fits
		want = append(want, n)
		for range n {
			if recovering && retrans == 0 {
				retrans = mss // the retransmission first
			} else {
				flight += mss
			}
			prrOut += mss
		}
		if !recovering {
			prrOut = 0
		}
	}
	if !equalInts(got, want) {
		t.Errorf("segments sent per ACK\n got %v\nwant %v", got, want)
	}
	if want[2] != 1 || want[3] != 0 || want[4] != 1 {
		t.Errorf("the model itself: %v; want 1, 0, 1 from the third ACK (one segment for two delivered)", want)
	}
	p.Advance(rtt)
	p.Inject(sackAck(int(ep.Info().TCB.SndNxt-ep.Info().TCB.ISS-1)/mss + 1))
	p.Drain()
	if i := ep.Info(); i.CAState != "open" || i.Cwnd != i.Ssthresh || i.Ssthresh != uint32(ssthresh) {
		t.Errorf("after recovery: %s, cwnd %d, ssthresh %d; want open, both %d", i.CAState, i.Cwnd, i.Ssthresh, ssthresh)
	}
}

// TestPRRFourLosses: four segments of a flight of 20 are lost at once.
// Pipe falls below ssthresh early, and PRR's slow-start reduction bound
// takes over (RFC 6937 3.1, PRR-SSRB): each ACK may send what it
// delivered plus one segment, up to ssthresh, so the window comes back to
// ssthresh within the recovery, with no burst larger than that, and all
// four losses are repaired in the one recovery.
func TestPRRFourLosses(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{CongestionControl: "reno", SendBufferSize: 1 << 20})
	const flight = 20
	grow(t, p, ep, flight)
	data := payload(0, 40*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	base := int(ep.Info().BytesAcked/1460) + 1
	for k := range flight {
		p.Expect(seg{Flags: ".", Seq: sb(base + k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.Advance(rtt)
	lost := map[int]bool{base: true, base + 1: true, base + 2: true, base + 3: true}
	var blocks [2]int
	retransmitted := map[uint32]bool{}
	for k := 4; k < flight; k++ {
		blocks = [2]int{base + 4, base + k + 1}
		p.Inject(sackAck(base, blocks))
		out := p.Drain()
		if len(out) > 2 {
			t.Errorf("ACK %d: %d segments sent at once; PRR-SSRB allows delivered+1 = 2", k, len(out))
		}
		for _, s := range out {
			if s.Seq < sb(base+flight) {
				retransmitted[s.Seq] = true
			}
		}
	}
	for k := range lost {
		if !retransmitted[sb(k)] {
			t.Errorf("segment %d not retransmitted during recovery", k)
		}
	}
	i := ep.Info()
	if i.CAState != "fast recovery" || i.Cwnd > i.Ssthresh+1460 || i.Cwnd+1460 < i.Ssthresh {
		t.Errorf("late in recovery: %s, cwnd %d, ssthresh %d; want cwnd within a segment of ssthresh", i.CAState, i.Cwnd, i.Ssthresh)
	}
}

// grow runs a few round trips so that cwnd holds n segments.
func grow(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, n int) {
	t.Helper()
	next := 1
	for range 10 {
		if ep.Info().Cwnd >= uint32(n*1460) {
			return
		}
		w := int(ep.Info().Cwnd / 1460)
		if _, err := ep.Write(payload(0, w*1460)); err != nil {
			t.Fatal(err)
		}
		p.Drain()
		next += w
		p.Advance(rtt)
		p.Inject(sackAck(next))
		p.Drain()
	}
	t.Fatalf("cwnd %d after 10 round trips, want %d segments", ep.Info().Cwnd, n)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestUndoSpuriousFastRetransmit: segment 1 was only delayed, not lost:
// after its fast retransmission, the original arrives, and the peer's
// ACK carries a D-SACK for the retransmission (RFC 2883). Every
// retransmission of the recovery was needless, so the congestion response
// is undone: cwnd and ssthresh return to what they were, and RACK widens
// its reordering window (RFC 8985 6.2 step 4).
func TestUndoSpuriousFastRetransmit(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 8)
	before := ep.Info()
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	if i := ep.Info(); i.Ssthresh >= before.Ssthresh {
		t.Fatalf("in recovery: ssthresh %d, want below %d", i.Ssthresh, before.Ssthresh)
	}
	// The original arrives, then the retransmission: a D-SACK for it.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(9), SACK: [][2]uint32{{sb(1), sb(2)}}})
	i := ep.Info()
	if i.CAState != "open" || i.Cwnd < before.Cwnd || i.Ssthresh != before.Ssthresh || !i.ReorderingSeen {
		t.Errorf("after the D-SACK: %s, cwnd %d, ssthresh %d, reordering %v; want open, cwnd >= %d, ssthresh %d, reordering seen",
			i.CAState, i.Cwnd, i.Ssthresh, i.ReorderingSeen, before.Cwnd, before.Ssthresh)
	}
	st := p.TCP.Stats()
	if st.Undos.Load() != 1 || st.DSACKsReceived.Load() != 1 {
		t.Errorf("undos %d, D-SACKs %d; want 1, 1", st.Undos.Load(), st.DSACKsReceived.Load())
	}
}

// TestDSACKOfOriginalNoUndo: a D-SACK shows a retransmission spurious
// only when it reports a segment that was retransmitted (RFC 3708 2; Linux
// counts undo_retrans down only for TCPCB_RETRANS segments,
// tcp_sacktag_one). Segment 1 is really lost and sent again; the network
// then duplicates segment 6, never retransmitted, and the receiver
// D-SACKs the copy. That says nothing of the retransmission of 1: the
// recovery's reduction stands. When the retransmission's own copy is
// D-SACKed in turn, every retransmission was needless, and it is undone.
func TestDSACKOfOriginalNoUndo(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 8)
	before := ep.Info()
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	// The copy of 6 the network made: a D-SACK within the SACKed range.
	p.Inject(sackAck(1, [2]int{6, 7}, [2]int{2, 9}))
	p.Drain()
	st := p.TCP.Stats()
	if i := ep.Info(); st.Undos.Load() != 0 || i.CAState != "fast recovery" || i.Ssthresh >= before.Ssthresh {
		t.Errorf("after a D-SACK of segment 6, sent once: undos %d, %s, ssthresh %d; want 0, fast recovery, below %d",
			st.Undos.Load(), i.CAState, i.Ssthresh, before.Ssthresh)
	}
	// Now the retransmission of 1 arrives twice after all.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(9), SACK: [][2]uint32{{sb(1), sb(2)}}})
	if i := ep.Info(); st.Undos.Load() != 1 || i.Ssthresh != before.Ssthresh {
		t.Errorf("after a D-SACK of the retransmission: undos %d, ssthresh %d; want 1, %d", st.Undos.Load(), i.Ssthresh, before.Ssthresh)
	}
}

// TestUndoByTimestamps: the same delay with timestamps: the ACK that
// covers segment 1 echoes the TSval of its original transmission, older
// than the retransmission, so the original arrived (Eifel detection, RFC
// 3522) and the response is undone when the recovery ends, without
// waiting for a D-SACK.
func TestUndoByTimestamps(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{}, tcptest.WithTimestamps())
	const mss = 1448
	data := sendSegments(t, p, ep, 8)
	original := p.LastTSVal
	before := ep.Info()
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 1), Ack: 1, Payload: segDataM(data, mss, 1)})
	ack := sackAckM(mss, 9)
	ack.TS, ack.TSVal, ack.TSEcr = true, p.TSClock(), original
	p.Inject(ack)
	if i := ep.Info(); i.CAState != "open" || i.Ssthresh != before.Ssthresh {
		t.Errorf("after the ACK of the original: %s, ssthresh %d; want open, %d", i.CAState, i.Ssthresh, before.Ssthresh)
	}
	if n := p.TCP.Stats().Undos.Load(); n != 1 {
		t.Errorf("undos %d, want 1", n)
	}
}

// TestDSACKBelowUnaMoreThanRetransmitted: below SND.UNA the records are
// gone, and a D-SACK block there is counted by the segments it spans; a
// block that spans more segments than retransmissions still stand
// unexplained is not about them alone (the network copied segments sent
// once), and proves nothing: Linux skips a D-SACK that reports more
// copies than it retransmitted (tcp_dsack_seen). Segments 1 and 5 are
// lost and sent again; a partial ACK covers 1-4, then a D-SACK reports
// 1-4 received twice: four copies for two retransmissions. The recovery's
// reduction stands.
func TestDSACKBelowUnaMoreThanRetransmitted(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 10)
	before := ep.Info()
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460})
	p.Inject(sackAck(1, [2]int{6, 9}, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(5), Ack: 1, Len: 1460})
	p.Advance(rtt)
	p.Inject(sackAck(5, [2]int{6, 11}))
	p.Drain()
	p.Inject(sackAck(5, [2]int{1, 5}, [2]int{6, 11}))
	p.Drain()
	st := p.TCP.Stats()
	if i := ep.Info(); st.Undos.Load() != 0 || i.CAState != "fast recovery" || i.Ssthresh >= before.Ssthresh {
		t.Errorf("after a D-SACK of four segments below SND.UNA: undos %d, %s, ssthresh %d; want 0, fast recovery, below %d",
			st.Undos.Load(), i.CAState, i.Ssthresh, before.Ssthresh)
	}
}

// TestNoPartialUndoWithRetransmissionsOut: a partial ACK that echoes a
// transmission older than the recovery's retransmissions shows that one
// hole was filled by a delayed original (Eifel, RFC 3522), not that every
// loss was spurious: Linux undoes there only when no retransmission is
// still in flight (tcp_try_undo_partial, retrans_out). Here segment 1 was
// delayed and segment 5 really lost; both are sent again. The delayed
// original of 1 brings a partial ACK echoing its TSval while 5's
// retransmission is out: nothing is undone, and when that retransmission's
// ACK ends the recovery, echoing its own TSval, the reduction stands.
func TestNoPartialUndoWithRetransmissionsOut(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{}, tcptest.WithTimestamps())
	const mss = 1448
	sendSegments(t, p, ep, 10)
	original := p.LastTSVal
	before := ep.Info()
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 1), Ack: 1, Len: mss})
	p.Inject(sackAckM(mss, 1, [2]int{6, 9}, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 5), Ack: 1, Len: mss})
	p.Inject(sackAckM(mss, 1, [2]int{6, 10}, [2]int{2, 5}))
	p.ExpectNothing()
	p.Advance(rtt / 2)
	ack := sackAckM(mss, 5, [2]int{6, 10}) // the original of 1, delayed
	ack.TS, ack.TSVal, ack.TSEcr = true, p.TSClock(), original
	p.Inject(ack)
	st := p.TCP.Stats()
	if i := ep.Info(); st.Undos.Load() != 0 || i.CAState != "fast recovery" || i.Ssthresh >= before.Ssthresh {
		t.Errorf("after the partial ACK: undos %d, %s, ssthresh %d; want 0, fast recovery, below %d",
			st.Undos.Load(), i.CAState, i.Ssthresh, before.Ssthresh)
	}
	p.Advance(rtt / 2)
	ack = sackAckM(mss, 11) // 5's retransmission
	ack.TS, ack.TSVal, ack.TSEcr = true, p.TSClock(), p.LastTSVal
	p.Inject(ack)
	if i := ep.Info(); st.Undos.Load() != 0 || i.CAState != "open" || i.Ssthresh >= before.Ssthresh || i.Cwnd != i.Ssthresh {
		t.Errorf("after the recovery: undos %d, %s, ssthresh %d, cwnd %d; want 0, open, below %d, cwnd = ssthresh",
			st.Undos.Load(), i.CAState, i.Ssthresh, i.Cwnd, before.Ssthresh)
	}
}

// TestSpuriousRTOLostACK is the lost ACK that cost most of the time on a
// lossy wire: the whole flight arrived but its ACK was lost, so the RTO
// fires and resends segment 1 with a window of one segment. The peer
// answers the duplicate with an ACK of everything and a D-SACK; its TSecr
// is the original flight's. The timeout was spurious: the window returns
// (RFC 4015), the other segments are not sent again, and no RTT sample is
// taken from that ACK, whose TSecr predates the retransmission: now-TSecr
// would be the whole RTO wait (RFC 3522), inflating the next RTO. With
// RACK-TLP the probe would have come first (TestTailLossProbeLostACK):
// here it is off, so the RTO and its undo are what is tested.
func TestSpuriousRTOLostACK(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true}, tcptest.WithTimestamps())
	const mss = 1448
	data := sendSegments(t, p, ep, 5)
	original := p.LastTSVal
	before := ep.Info()
	p.Advance(before.RTO)
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 1), Ack: 1, Payload: segDataM(data, mss, 1)})
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "RTO recovery" || i.Cwnd != mss {
		t.Fatalf("after the timeout: %s, cwnd %d", i.CAState, i.Cwnd)
	}
	p.Advance(rtt)
	ack := seg{Flags: ".", Seq: 1, Ack: sbm(mss, 6), SACK: [][2]uint32{{sbm(mss, 1), sbm(mss, 2)}}, TS: true, TSVal: p.TSClock(), TSEcr: original}
	p.Inject(ack)
	p.ExpectNothing()
	i := ep.Info()
	if i.CAState != "open" || i.Cwnd < before.Cwnd || i.Retransmits != 1 {
		t.Errorf("after the ACK: %s, cwnd %d, retransmits %d; want open, >= %d, 1", i.CAState, i.Cwnd, i.Retransmits, before.Cwnd)
	}
	if i.RTT != before.RTT {
		t.Errorf("SRTT %v after the ACK of the original flight, want %v unchanged", i.RTT, before.RTT)
	}
	if n := p.TCP.Stats().Undos.Load(); n != 1 {
		t.Errorf("undos %d, want 1", n)
	}
}

// TestRACKRTTAfterHoleFilled: SACK was agreed but no SACK blocks come,
// as from gVisor's TCP once it has closed its side. Segment 1 is lost,
// and its retransmission after the first RTO too; the second gets
// through, and the ACK that covers it covers segments 2-4 too, which
// arrived long before and waited for it. Their age is the repair, not
// the path: neither segments 2 and 3, sent once 600 ms ago, nor segment 4,
// sent again as a tail loss probe, set RACK's RTT, and the retransmission
// that filled the hole came back 1 ms after it left, sooner than the
// minimum RTT of 10 ms, so it may be the original's ACK and sets nothing
// either: RACK's RTT stays 10 ms. So when the whole next flight is lost,
// the next RTO deems every segment of it lost, not only SND.UNA's, the
// others "sent too recently" for an RTT of 600 ms (RFC 8985 6.3,
// enterLoss), and the ACK of each retransmission brings the next at once
// instead of another RTO.
func TestRACKRTTAfterHoleFilled(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	mss := ep.Info().SndMSS
	sendSegments(t, p, ep, 4)
	// Nothing comes back: a tail loss probe, then the RTO's retransmission
	// of segment 1 (lost as well), then the backed-off RTO's.
	timeouts := 0
	for i := 0; i < 300 && timeouts < 2; i++ {
		p.Advance(10 * time.Millisecond)
		for _, s := range p.Drain() {
			if s.Seq == 1 {
				timeouts++
			}
		}
	}
	if timeouts != 2 {
		t.Fatalf("segment 1 sent again %d times in 3 s, want 2", timeouts)
	}
	p.Advance(time.Millisecond)
	p.Inject(sackAckM(mss, 5)) // the hole filled: everything arrived
	if _, err := ep.Write(payload(4*mss, 4*mss)); err != nil {
		t.Fatal(err)
	}
	flight := len(p.Drain())
	if flight < 2 {
		t.Fatalf("%d segments sent after the hole was filled, want at least 2", flight)
	}
	// The whole flight is lost: wait for the RTO's retransmission of its
	// first segment (a probe of its last may come before). The RTO is
	// still backed off twice, 840 ms: the hole's ACK gave no RTT sample
	// (Karn, RFC 6298 5.5; TestRTOKeepsBackoffWithoutSample).
	rto := false
	for i := 0; i < 300 && !rto; i++ {
		p.Advance(10 * time.Millisecond)
		for _, s := range p.Drain() {
			rto = rto || s.Seq == sbm(mss, 5)
		}
	}
	if !rto {
		t.Fatal("no retransmission of the flight's first segment in 3 s")
	}
	if in := ep.Info(); in.Lost != uint32(flight*mss) {
		t.Errorf("after the RTO %d bytes deemed lost, want the flight of %d segments, %d", in.Lost, flight, flight*mss)
	}
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 6))
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 6), Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
}

// TestRTONoteNotYetLost: a timeout deems lost every segment in flight but
// those sent within RACK's RTT and reordering window (RFC 8985 6.3), and
// its note says how many it spared and why, so that a capture shows an
// RTO that resends one segment of many for what it is (a RACK RTT of
// 200 ms did that eleven times in a row: TestRACKRTTAfterHoleFilled).
// Segment 3 leaves 203 ms after segment 2; the RTO fires 7 ms later,
// within RACK's RTT of 10 ms and window of 2.5.
func TestRTONoteNotYetLost(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{NoTLP: true, Observer: rec.observe})
	mss := ep.Info().SndMSS
	sendSegments(t, p, ep, 1)
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 2)) // RACK's RTT: 10 ms
	ep.Write(payload(0, mss))
	p.Expect(seg{Flags: "P.", Seq: sbm(mss, 2), Ack: 1, Len: mss})
	p.Advance(203 * time.Millisecond)
	ep.Write(payload(mss, mss))
	p.Expect(seg{Flags: "P.", Seq: sbm(mss, 3), Ack: 1, Len: mss})
	p.Advance(7 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: sbm(mss, 2), Ack: 1, Len: mss, Check: tcptest.IgnorePSH})
	if in := ep.Info(); in.Lost != uint32(mss) {
		t.Errorf("%d bytes deemed lost, want segment 2's %d", in.Lost, mss)
	}
	p.TCP.SyncEvents()
	const want = "retransmission timeout: 1 segment deemed lost, 1 sent within RACK's RTT and reordering window (12.5ms) not yet, window one segment"
	var notes []string
	for _, ev := range rec.of(event.KindRecovery) {
		notes = append(notes, ev.Note)
	}
	if !slices.Contains(notes, want) {
		t.Errorf("recovery notes %q, want one %q", notes, want)
	}
}

// TestRTOKeepsSACKs: a timeout does not forget what the peer SACKed (RFC
// 6675 5.1; Linux forgets only when SND.UNA's own segment was SACKed,
// which means the receiver reneged): segments SACKed before it are not
// sent again, only the holes.
func TestRTOKeepsSACKs(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 5)
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{3, 4}))
	p.Drain() // RACK's reordering timer may fire; so may the RTO below
	p.Advance(ep.Info().RTO)
	out := p.Drain()
	for _, s := range out {
		if s.Seq == sb(3) {
			t.Errorf("segment 3, SACKed before the timeout, sent again")
		}
	}
	if len(out) == 0 || out[0].Seq != sb(1) {
		t.Fatalf("after the timeout: %v, want segment 1 first", out)
	}
	p.Inject(sackAck(6))
	if i := ep.Info(); i.SendQueued != 0 {
		t.Errorf("%d bytes queued", i.SendQueued)
	}
	_ = data
}

// TestSACKInvalidBlocksIgnored: blocks beyond SND.NXT and blocks with
// Start >= End are not taken; ACKs carrying only such blocks report
// nothing new, so they are no duplicate ACKs (RFC 6675 2) and trigger no
// retransmission.
func TestSACKInvalidBlocksIgnored(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	bad := [][][2]uint32{
		{{sb(11), sb(12)}},     // never sent
		{{sb(10), sb(11) + 1}}, // ends past SND.NXT
		{{sb(5), sb(4)}},       // Start > End
		{{sb(5), sb(5)}},       // empty
		{{sb(12), sb(13)}, {sb(6), sb(5)}},
	}
	for _, blocks := range bad {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2), SACK: blocks})
	}
	p.ExpectNothing()
	if i := ep.Info(); i.Retransmits != 0 || i.Sacked != 0 {
		t.Fatalf("after invalid blocks: retransmits %d, %d bytes SACKed", i.Retransmits, i.Sacked)
	}
	// A valid block in the same ACK as invalid ones still counts.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2), SACK: [][2]uint32{{sb(12), sb(13)}, {sb(3), sb(6)}}})
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Len: 1460})
}

// TestSACKNeverResendsSACKed: forty disjoint SACKed ranges, most of them
// smaller than a segment. No retransmission overlaps a range of a segment
// the peer SACKed whole, and the connection finishes normally.
func TestSACKNeverResendsSACKed(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	var sent []seg
	for k := 2; k <= 10; k += 2 {
		p.Inject(sackAck(1, [2]int{k, k + 1}))
		sent = append(sent, p.Drain()...)
	}
	for _, s := range sent {
		k := int((s.Seq-1)/1460) + 1
		if k%2 == 0 {
			t.Errorf("SACKed segment %d sent again", k)
		}
	}
	p.Advance(rtt)
	p.Inject(sackAck(11))
	p.Drain()
	if i := ep.Info(); i.SendQueued != 0 || i.State != event.Established {
		t.Errorf("after the full ACK: queued %d, state %v", i.SendQueued, i.State)
	}
}

// TestNewRenoTwoHoles: without SACK, segments 1 and 3 of ten are lost.
// Three duplicate ACKs retransmit segment 1 (RFC 5681 3.2); further
// duplicates send nothing, as no new data waits; the partial ACK that
// covers segment 1 shows segment 3 lost and retransmits it at once (RFC
// 6582 3.2 step 3), a round trip after the first.
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
	if i := ep.Info(); i.CAState != "open" || i.Retransmits != 2 {
		t.Errorf("after the full ACK: %s, %d retransmits", i.CAState, i.Retransmits)
	}
}

// TestPartialAckRestartsRTO: without SACK, segments 1 to 3 of six are
// lost. Each partial ACK restarts the retransmission timer, NewReno's
// "Slow-but-Steady" variant, as RFC 6298 5.3 restarts it for every ACK of
// new data and Linux re-arms it on each (tcp_rearm_rto), not only the
// first, as RFC 6582 3.2 step 3 (the "Impatient" variant) would: the
// second partial ACK comes more than an RTO after the first, and the
// timer, restarted by it, fires a whole RTO after it.
func TestPartialAckRestartsRTO(t *testing.T) {
	p, ep := tcptest.Established(t)
	data := sendSegments(t, p, ep, 6)
	for range 3 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	}
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	rto := ep.Info().RTO
	p.Advance(rto * 3 / 4)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)}) // the first partial ACK
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Payload: segData(data, 2)})
	p.Advance(rto * 3 / 4)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(3)}) // the second, 1.5 RTO after fast retransmit
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3)})
	if i := ep.Info(); i.CAState != "fast recovery" || i.RTO != rto {
		t.Fatalf("after the second partial ACK: %s, RTO %v; want fast recovery, %v", i.CAState, i.RTO, rto)
	}
	p.Advance(rto - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3)}) // the RTO's
	if n := p.TCP.Stats().RetransmitTimeouts.Load(); n != 1 {
		t.Errorf("%d retransmission timeouts, want 1", n)
	}
}

// TestNewRenoNoFalseFastRetransmitAfterTimeout: without SACK, duplicate
// ACKs that do not acknowledge more than the RecoveryPoint ("recover")
// start no fast retransmit (RFC 6582 3.2 step 2, the careful variant of
// its section 4.1; Linux holds the recovery state until something above
// high_seq is acknowledged, tcp_is_non_sack_preventing_reopen). The
// timeout here was spurious: the four segments and their ACKs were only
// late, so the go-back-N retransmissions after it arrive twice and each
// draws a duplicate ACK once SND.UNA has reached the RecoveryPoint. Three
// of them must not send segment 5 again, which the peer holds: only an
// ACK above the RecoveryPoint tells of a loss of the new data.
func TestNewRenoNoFalseFastRetransmitAfterTimeout(t *testing.T) {
	p, ep := tcptest.Established(t)
	sendSegments(t, p, ep, 4)
	p.Advance(ep.Info().RTO)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	// The originals' ACKs, late; slow start sends 2-4 again.
	for k := 2; k <= 5; k++ {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(k)})
	}
	if got := p.Drain(); len(got) != 3 || got[0].Seq != sb(2) || got[2].Seq != sb(4) {
		t.Fatalf("after the late ACKs: %v, want 2-4 sent again", got)
	}
	if _, err := ep.Write(payload(0, 4*1460)); err != nil {
		t.Fatal(err)
	}
	if got := p.Drain(); len(got) != 4 || got[0].Seq != sb(5) {
		t.Fatalf("after the write: %v, want 5-8", got)
	}
	// The needless retransmissions of 1-4 arrive: a duplicate ACK each.
	for range 4 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(5)})
	}
	p.ExpectNothing()
	if n := p.TCP.Stats().FastRecoveries.Load(); n != 0 {
		t.Errorf("%d fast recoveries on duplicates of the RecoveryPoint's ACK, want none", n)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(9)})
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "open" || i.InFlight != 0 {
		t.Errorf("after the ACK of 5-8: %s, %d in flight; want open, none", i.CAState, i.InFlight)
	}
}

// TestSACKRecoveryIsLost: without RACK (NoRACK), SACK recovery follows
// RFC 6675, where every hole with more than (DupThresh-1)*SMSS bytes
// SACKed above it is lost (IsLost), not only the first: segments 1 and 3
// of ten are lost, and 11 and 12 went as limited transmit (RFC 3042). The
// third SACK starts recovery and sends 1 again; the next, SACKing 4-6,
// makes 3 lost as well, and pipe (SetPipe) leaves it out. When PRR lets
// the next segment go, NextSeg's rule (1) sends 3 before new data (rule
// 2), in the first round trip of the recovery, not a round trip later on
// the partial ACK.
func TestSACKRecoveryIsLost(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true})
	if _, err := ep.Write(payload(0, 20*1460)); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 10; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 3}))
	p.Inject(sackAck(1, [2]int{4, 5}, [2]int{2, 3}))
	p.Drain() // limited transmit: 11 and 12
	p.Inject(sackAck(1, [2]int{4, 6}, [2]int{2, 3}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460})
	p.ExpectNothing()
	p.Inject(sackAck(1, [2]int{4, 7}, [2]int{2, 3}))
	if i := ep.Info(); i.CAState != "fast recovery" || i.Lost != 2*1460 || i.InFlight != 7*1460 {
		t.Errorf("after SACK 4-6: %s, %d bytes lost, %d in flight; want fast recovery, 2 segments lost (1 and 3), 7 in flight (1 again, 7-12)",
			i.CAState, i.Lost, i.InFlight)
	}
	var out []seg
	for k := 8; k <= 11 && len(out) == 0; k++ {
		p.Inject(sackAck(1, [2]int{4, k}, [2]int{2, 3}))
		out = p.Drain()
	}
	if len(out) == 0 || out[0].Seq != sb(3) {
		t.Errorf("the first segment PRR let go after 3 was lost: %v, want 3 again", out)
	}
}

// TestRescueRetransmission: without RACK (NoRACK), SACK recovery follows
// RFC 6675, whose NextSeg rule (4) sends the highest segment not SACKed
// once per recovery when nothing else may go: here the last segment of
// the flight was lost as well as the first, and it is sent again in the
// same recovery, not after the RTO. The partial ACK of the first one's
// retransmission, which left before the rescue, does not send the last
// a third time: the rescue's copy is in flight (RFC 6675 sends nothing
// at or below HighRxt again; Linux's tcp_xmit_retransmit_queue skips a
// segment whose retransmission is out).
func TestRescueRetransmission(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true})
	data := sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 3}))
	p.Inject(sackAck(1, [2]int{2, 4}))
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	for k := 6; k <= 10; k++ {
		p.Inject(sackAck(1, [2]int{2, k}))
	}
	got := p.Drain()
	found := false
	for _, s := range got {
		if s.Seq == sb(10) {
			found = true
		}
	}
	if !found {
		t.Fatalf("segment 10 not rescued in recovery; sent %v", got)
	}
	p.Advance(rtt / 2)
	p.Inject(sackAck(10)) // 1's retransmission arrived: a partial ACK
	p.ExpectNothing()
	p.Advance(rtt / 2)
	p.Inject(sackAck(11)) // the rescue's copy arrived
	p.ExpectNothing()
	wantRecoveredBy(t, p, ep, 2) // 1, 10
}

// TestNextSegRule3: without RACK (NoRACK), SACK recovery follows RFC
// 6675, whose NextSeg sends, once nothing is deemed lost (rule 1) and no
// new data may go (rule 2), the first segment not SACKed above HighRxt
// and below the highest SACKed one, though IsLost does not hold for it
// yet (rule 3, a SHOULD), and only after that the rescue retransmission
// of the highest segment not SACKed (rule 4). Of ten segments, all the
// data written, 1, 8 and 10 are lost; the ACKs of 5 to 7 are lost too,
// and the one of 9 SACKs 2-7 and 9: 8 has one segment SACKed above it,
// not the DupThresh IsLost wants. PRR lets four segments go: 8 by rule
// 3, then 10 by rule 4, and nothing more. The partial ACK of 1's
// retransmission leaves 8 alone: its copy is in flight (RFC 6675 rule
// (1.a), S2 above HighRxt; Linux's tcp_xmit_retransmit_queue skips a
// segment retransmitted and in flight), so it is not sent a third time.
func TestNextSegRule3(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true})
	data := sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 3}))
	p.Inject(sackAck(1, [2]int{2, 4}))
	p.Inject(sackAck(1, [2]int{2, 5}))
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1)})
	p.ExpectNothing()
	p.Inject(sackAck(1, [2]int{9, 10}, [2]int{2, 8}))
	if i := ep.Info(); i.Lost != 1460 {
		t.Errorf("after the SACK of 9: %d bytes lost, want 1460 (1; 8 is not lost by IsLost)", i.Lost)
	}
	p.Expect(seg{Flags: ".", Seq: sb(8), Ack: 1, Payload: segData(data, 8), Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: "P.", Seq: sb(10), Ack: 1, Payload: segData(data, 10), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.Advance(rtt / 2)
	p.Inject(sackAck(8, [2]int{9, 10})) // 1's retransmission arrived
	p.ExpectNothing()
	p.Advance(rtt / 2)
	p.Inject(sackAck(11)) // 8's and 10's
	p.ExpectNothing()
	wantRecoveredBy(t, p, ep, 3) // 1, 8, 10
}

// wantRecoveredBy checks that a recovery whose every segment is now
// acknowledged took fast retransmissions and no timeout: the connection
// is open again with nothing in flight.
func wantRecoveredBy(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, fast uint64) {
	t.Helper()
	st := p.TCP.Stats()
	if n, rto := st.Sent(event.SendFastRetransmit), st.Sent(event.SendRetransmit); n != fast || rto != 0 {
		t.Errorf("%d fast retransmissions, %d after an RTO; want %d, none", n, rto, fast)
	}
	if i := ep.Info(); i.CAState != "open" || i.InFlight != 0 {
		t.Errorf("after the ACK of everything: %s, %d in flight; want open, none", i.CAState, i.InFlight)
	}
}

// TestProbeNotPushedBack: an ACK that acknowledges and SACKs no whole
// segment (here a SACK of the last byte alone) leaves the probe timer
// where it was: it is armed when data leaves and re-armed by ACKs that
// deliver data (RFC 8985 7.2; Linux tcp_schedule_loss_probe runs only
// after tcp_write_xmit sent something). Re-arming it on every such ACK
// would let a peer's uninformative ACKs push the probe past the RTO.
func TestProbeNotPushedBack(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 4)
	pto := 2 * rtt
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(1), SACK: sackBlocks{{sb(5) - 1, sb(5)}}})
	p.ExpectNothing()
	p.Advance(pto - rtt - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: "P.", Seq: sb(4), Ack: 1, Payload: segData(data, 4)})
}

// timeoutRecorder is a plain window, slow start and halving, that
// remembers the congestion samples it was given.
type timeoutRecorder struct{ samples, again []tcp.CongestionSample }

func (*timeoutRecorder) Name() string { return "recorder" }
func (*timeoutRecorder) OnAck(a tcp.AckSample) (uint32, uint32) {
	return a.Cwnd + a.Acked, a.Ssthresh
}
func (r *timeoutRecorder) OnCongestion(c tcp.CongestionSample) uint32 {
	r.samples = append(r.samples, c)
	return max(c.InFlight/2, 2*c.MSS)
}
func (*timeoutRecorder) OnUndo() {}
func (r *timeoutRecorder) OnTimeoutAgain(c tcp.CongestionSample) {
	r.again = append(r.again, c)
}

// TestTimeoutTellsLost: the congestion control hears of a retransmission
// timeout after the engine has marked what it deems lost, with their
// bytes (CongestionSample.Lost), as Linux's tcp_enter_loss calls ssthresh
// after tcp_timeout_mark_lost: here the five segments of the flight. A
// second timeout in the same episode leaves ssthresh alone and reaches a
// TimeoutFollower only, as Linux's set_state hears every timeout.
func TestTimeoutTellsLost(t *testing.T) {
	rec := &timeoutRecorder{}
	p, ep := rttPeer(t, tcp.Options{NoTLP: true, NewCongestionControl: func() tcp.CongestionControl { return rec }})
	sendSegments(t, p, ep, 5)
	p.Advance(ep.Info().RTO)
	p.Drain()
	if len(rec.samples) != 1 || !rec.samples[0].Timeout || rec.samples[0].Lost != 5*1460 {
		t.Fatalf("congestion samples %+v, want one timeout that deemed 5 segments (7300 bytes) lost", rec.samples)
	}
	if len(rec.again) != 0 {
		t.Fatalf("OnTimeoutAgain heard %+v at the episode's first timeout", rec.again)
	}
	// The retransmission times out in its turn: the same episode. The
	// threshold stays; a TimeoutFollower hears of it, with the segment
	// the timeout deemed lost again.
	ssthresh := ep.Info().Ssthresh
	p.Advance(ep.Info().RTO)
	p.Drain()
	if len(rec.samples) != 1 || len(rec.again) != 1 || !rec.again[0].Timeout || rec.again[0].Lost != 1460 || ep.Info().Ssthresh != ssthresh {
		t.Errorf("after the second timeout: OnCongestion %d times, OnTimeoutAgain %+v, ssthresh %d (was %d); want once, one timeout of 1460 bytes lost, the same",
			len(rec.samples), rec.again, ep.Info().Ssthresh, ssthresh)
	}
}

// TestTimeoutAfterAnsweredRetransmission: in RTO recovery, a timeout
// after the previous one's retransmission was answered (SND.UNA moved,
// though not to the end of the episode) is a new episode with a new
// ssthresh, as in Linux's tcp_enter_loss, which reduces again in
// TCP_CA_Loss once icsk_retransmits is 0; without that answer it
// continues the episode (TestTimeoutTellsLost).
func TestTimeoutAfterAnsweredRetransmission(t *testing.T) {
	rec := &timeoutRecorder{}
	p, ep := rttPeer(t, tcp.Options{NoTLP: true, NoFRTO: true, NewCongestionControl: func() tcp.CongestionControl { return rec }})
	sendSegments(t, p, ep, 5)
	p.Advance(ep.Info().RTO)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	p.Advance(rtt)
	p.Inject(sackAck(2)) // the retransmission arrived; 2 to 5 are still missing
	p.Drain()
	if i := ep.Info(); i.CAState != "RTO recovery" || len(rec.samples) != 1 {
		t.Fatalf("after the ACK of the retransmission: %s, OnCongestion %d times; want RTO recovery, once", i.CAState, len(rec.samples))
	}
	p.Advance(ep.Info().RTO)
	p.Drain()
	if len(rec.samples) != 2 || !rec.samples[1].Timeout || len(rec.again) != 0 {
		t.Errorf("after the second timeout: OnCongestion %d times, OnTimeoutAgain %d; want twice (a new episode), never", len(rec.samples), len(rec.again))
	}
}

// ackRecorder is a timeoutRecorder that also sees every ACK
// (AckObserver), and counts the ACKs that grew its window.
type ackRecorder struct {
	timeoutRecorder
	acked []tcp.AckSample
	grew  int
}

func (r *ackRecorder) OnAck(a tcp.AckSample) (uint32, uint32) {
	r.grew++
	return r.timeoutRecorder.OnAck(a)
}
func (r *ackRecorder) OnAcked(a tcp.AckSample) uint32 {
	r.acked = append(r.acked, a)
	return a.Ssthresh
}

// TestAckObserverSeesEveryAck: an AckObserver sees an ACK that delivers
// data with a sample whatever limits sending, as Linux's pkts_acked hook
// does, with the newest delivered segment's RTT (ca_rtt_us): two full
// segments written 10 ms apart, far below the window, and one ACK for
// both 20 ms after the second give OnAcked a 20 ms sample, where the
// estimator times the oldest (30 ms), and OnAck, for ACKs that find the
// window the limit, is not called. An ACK that covers a retransmission
// gives no sample (Karn), and OnAcked does not hear of it.
func TestAckObserverSeesEveryAck(t *testing.T) {
	rec := &ackRecorder{}
	p, ep := rttPeer(t, tcp.Options{NewCongestionControl: func() tcp.CongestionControl { return rec }})
	ep.Write(payload(0, 1460))
	p.Expect(seg{Flags: "P.", Seq: sb(1), Ack: 1, Len: 1460})
	p.Advance(10 * time.Millisecond)
	ep.Write(payload(0, 1460))
	p.Expect(seg{Flags: "P.", Seq: sb(2), Ack: 1, Len: 1460})
	p.Advance(15 * time.Millisecond) // before the probe, 2·SRTT after the second segment
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(3)})
	if len(rec.acked) != 1 || rec.acked[0].RTT != 15*time.Millisecond || rec.grew != 0 {
		t.Fatalf("OnAcked %+v, OnAck %d times; want one sample of 15ms, OnAck none", rec.acked, rec.grew)
	}
	ep.Write(payload(0, 1460))
	p.Expect(seg{Flags: "P.", Seq: sb(3), Ack: 1, Len: 1460})
	p.Advance(ep.Info().RTO)
	p.Expect(seg{Flags: "P.", Seq: sb(3), Ack: 1, Len: 1460}) // the timeout's retransmission
	p.Advance(time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(4)})
	if len(rec.acked) != 1 {
		t.Errorf("OnAcked heard %d ACKs; want the retransmission's none (Karn)", len(rec.acked)-1)
	}
}
