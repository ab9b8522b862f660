package tcp_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Segments the link refused, its queue full (refused.go): they never
// left. New data at the tail of what was sent is taken back and goes
// again as new data, the window down as in CWR; a refused segment that a
// later one overtook is deemed lost, fast recovery with nothing to undo;
// with nothing left in flight, one segment is tried again after an RTO,
// then every 500 ms, as Linux's probe0 does on local congestion.

// TestLinkRefusedTail: the link refuses the last four segments of a
// flight, the whole tail. Nothing sent after them left, so they are
// taken back: SND.NXT returns to the first of them, the retransmission
// queue holds the six that left, and the window comes down in CWR, as
// Linux leaves a segment its qdisc dropped in the write queue and enters
// CWR. The ACK of the six sends the four, as new data, not as
// retransmissions.
func TestLinkRefusedTail(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	sendSegments(t, p, ep, 6)
	before := ep.Info()

	p.RefuseNext(4)
	data := payload(6*1460, 4*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	st := p.TCP.Stats()
	i := ep.Info()
	if st.LinkRefused.Load() != 4 || st.FastRecoveries.Load() != 0 || i.CAState != "CWR" {
		t.Fatalf("refused %d, fast recoveries %d, %s; want 4, 0, CWR",
			st.LinkRefused.Load(), st.FastRecoveries.Load(), i.CAState)
	}
	if out := i.TCB.SndNxt - i.TCB.SndUna; out != 6*1460 || i.BytesSent != before.BytesSent || i.Lost != 0 || i.InFlight != 6*1460 {
		t.Errorf("SND.NXT - SND.UNA %d, bytes sent %d (before %d), lost %d, in flight %d; want the six that left, nothing more",
			out, i.BytesSent, before.BytesSent, i.Lost, i.InFlight)
	}
	if i.Ssthresh >= before.Cwnd {
		t.Errorf("ssthresh %d, cwnd before %d: want the window reduced", i.Ssthresh, before.Cwnd)
	}

	// The ACK of the six that left: the four go, as new data.
	p.Advance(rtt)
	p.Inject(sackAck(7))
	for k := 7; k <= 10; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Payload: data[(k-7)*1460 : (k-6)*1460], Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(sackAck(11))
	p.ExpectNothing()
	after := ep.Info()
	if after.CAState != "open" || after.Cwnd != after.Ssthresh || after.Cwnd >= before.Cwnd || st.Undos.Load() != 0 {
		t.Errorf("after the episode: %s, cwnd %d, ssthresh %d (cwnd before %d), undos %d; want open, cwnd = ssthresh, reduced, none undone",
			after.CAState, after.Cwnd, after.Ssthresh, before.Cwnd, st.Undos.Load())
	}
	if n := st.RetransmitTimeouts.Load() + st.TailLossProbes.Load() + st.Retransmits.Load() + st.ResourceProbes.Load(); n != 0 || after.Retransmits != 0 {
		t.Errorf("%d RTOs, probes and retransmissions, %d retransmitted; want none: the four were sent once", n, after.Retransmits)
	}
	p.TCP.SyncEvents()
	// The event names the refusal and is keyed to the first refused
	// segment, so that a capture puts it on that frame.
	iss, _ := p.StackISS()
	want := event.SegKey{Seq: iss + sb(7), Ack: tcptest.PeerISS + 1, Flags: event.Flags(header.TCPFlagAck), Len: 1460}
	found := false
	for _, ev := range rec.of(event.KindRecovery) {
		found = found || ev.Note == "CWR: the link refused 4 segments, its queue full: not sent, to go again (local congestion)" && ev.Key == want
	}
	if !found {
		t.Errorf("no recovery event names the refusal, keyed %+v: %v", want, rec.of(event.KindRecovery))
	}
}

// TestLinkRefusedNumbered: the link refuses the tail of a flight twice,
// the same data each time once it was taken back (segments 7 to 10, sent
// again after the ACK of the six that left: the same SEQ, ACK, flags and
// length on the wire). Each refusal's event is keyed to its first refused
// segment and says which of the connection's refused segments that was
// (Event.Attempt, counting those with data or a FIN): the first refusal
// is number 1, the second, after four, number 5, so that a capture, which
// numbers the frames the link refused the same way, tells the two refused
// copies of segment 7 apart and puts each note on its own.
func TestLinkRefusedNumbered(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	sendSegments(t, p, ep, 6)
	p.RefuseNext(4)
	if _, err := ep.Write(payload(6*1460, 4*1460)); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	// The ACK of the six: the four go again, and are refused again.
	p.RefuseNext(4)
	p.Advance(rtt)
	p.Inject(sackAck(7))
	p.ExpectNothing()
	if n := p.TCP.Stats().LinkRefused.Load(); n != 8 {
		t.Fatalf("the link refused %d segments, want 8\n%s", n, p.Trace())
	}
	p.TCP.SyncEvents()
	iss, _ := p.StackISS()
	seven := event.SegKey{Seq: iss + sb(7), Ack: tcptest.PeerISS + 1, Flags: event.Flags(header.TCPFlagAck), Len: 1460}
	var got []string
	for _, ev := range rec.of(event.KindRecovery) {
		if ev.Key != (event.SegKey{}) {
			got = append(got, fmt.Sprintf("#%d %+v", ev.Attempt, ev.Key))
		}
	}
	want := []string{fmt.Sprintf("#1 %+v", seven), fmt.Sprintf("#5 %+v", seven)}
	if !slices.Equal(got, want) {
		t.Errorf("refusal events %q, want %q", got, want)
	}
}

// TestLinkRefusedOvertaken: the link refuses segment 7 and takes segment
// 8 after it, its queue drained in between. Segment 7 cannot be taken
// back (SND.NXT is past 8, which left): it is deemed lost at once, fast
// recovery starts, and it goes again with the ACK that SACKs 8.
func TestLinkRefusedOvertaken(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	sendSegments(t, p, ep, 6)
	p.RefuseNext(1)
	data := payload(6*1460, 2*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sb(8), Ack: 1, Payload: data[1460:]})
	p.ExpectNothing()
	st := p.TCP.Stats()
	i := ep.Info()
	if st.LinkRefused.Load() != 1 || st.FastRecoveries.Load() != 1 || i.CAState != "fast recovery" || i.Lost != 1460 {
		t.Fatalf("refused %d, fast recoveries %d, %s, lost %d; want 1, 1, fast recovery, 1460",
			st.LinkRefused.Load(), st.FastRecoveries.Load(), i.CAState, i.Lost)
	}
	p.Advance(rtt)
	p.Inject(sackAck(7, [2]int{8, 9}))
	p.Expect(seg{Flags: ".", Seq: sb(7), Ack: 1, Payload: data[:1460], Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.TCP.SyncEvents()
	found := false
	for _, ev := range rec.of(event.KindRecovery) {
		found = found || ev.Note == "fast recovery: the link refused 1 segment, its queue full: deemed lost"
	}
	if !found {
		t.Errorf("no recovery event names the refusal: %v", rec.of(event.KindRecovery))
	}
}

// TestLinkRefusedOvertakenByAck: a bare ACK overtakes refused data too.
// Data written in SYN-RECEIVED leaves when the peer's ACK completes the
// handshake; that segment carries a full segment of the peer's text and
// its FIN, whose ACK is built at once, after the data, with SND.NXT past it. The link refuses the two data
// segments and takes the ACK: the peer saw sequence number 2921, so the
// data cannot be taken back (it would then arrive as if sent first, with
// ECT(0), FuzzConnection found: testdata/fuzz/FuzzConnection/f329ed9dbb5a28c5).
// It is deemed lost and goes again as retransmissions.
func TestLinkRefusedOvertakenByAck(t *testing.T) {
	p, ep := tcptest.SynReceived(t)
	data := payload(0, 2*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	p.RefuseNext(2)
	// A full segment of text and the FIN: more than a full frame
	// unacknowledged, so the ACK goes at once (finAckPolicy).
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1462})
	p.ExpectNothing()
	i := ep.Info()
	if i.TCB.SndNxt-i.TCB.SndUna != 2*1460 || i.Lost != 2*1460 {
		t.Fatalf("SND.NXT - SND.UNA %d, lost %d; want both segments outstanding and deemed lost", i.TCB.SndNxt-i.TCB.SndUna, i.Lost)
	}
	// Nothing draws an ACK (the peer has nothing to acknowledge): the
	// RTO sends them again, as retransmissions, as before refusals
	// were taken back.
	p.Advance(time.Second)
	resent := 0
	for _, s := range p.Drain() {
		if s.Len > 0 && s.Seq == sb(1) {
			resent++
		}
	}
	st := p.TCP.Stats()
	if resent == 0 || st.Retransmits.Load() != uint64(resent) || st.ResourceProbes.Load() != 0 {
		t.Errorf("segment 1 sent again %d times, %d retransmissions, %d tries; want it sent again as a retransmission\n%s",
			resent, st.Retransmits.Load(), st.ResourceProbes.Load(), p.Trace())
	}
}

// TestLinkRefusedResourceProbes: the link refuses everything (a qdisc
// that holds nothing) and nothing is in flight. As Linux's probe0 on
// local congestion, one segment is tried again after an RTO, then every
// 500 ms, with no backoff, each try counted (tcpi_probes); the user
// timeout counts from the first try, and ends the connection with
// ETIMEDOUT (packetdrill's user-timeout-probe.pkt).
func TestLinkRefusedResourceProbes(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	ep.SetUserTimeout(3 * time.Second)
	p.RefuseAll(true)
	if _, err := ep.Write(payload(0, 100)); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	i := ep.Info()
	if i.CAState != "CWR" || i.TCB.SndNxt != i.TCB.SndUna || i.Probes != 0 {
		t.Fatalf("%s, SND.NXT - SND.UNA %d, probes %d; want CWR, nothing sent, no probe", i.CAState, i.TCB.SndNxt-i.TCB.SndUna, i.Probes)
	}
	rto := i.RTO
	st := p.TCP.Stats()
	tries := func(want int) {
		t.Helper()
		p.ExpectNothing()
		i := ep.Info()
		if int(st.ResourceProbes.Load()) != want || i.Probes != want || i.Backoff != 0 || i.RTO != rto || i.State != event.Established {
			t.Fatalf("%v in: %d tries, probes %d, backoff %d, RTO %v, %v; want %d, %d, 0, %v, ESTABLISHED",
				p.Elapsed(), st.ResourceProbes.Load(), i.Probes, i.Backoff, i.RTO, i.State, want, want, rto)
		}
	}
	p.Advance(rto - time.Millisecond)
	tries(0)
	p.Advance(time.Millisecond) // the first try: an RTO after the refusal
	tries(1)
	for k := 2; k <= 6; k++ {
		p.Advance(500 * time.Millisecond)
		tries(k)
	}
	// The user timeout ends 3 s after the first try, 500 ms after the
	// sixth; the write before it is taken, the one after it fails.
	p.Advance(499 * time.Millisecond)
	tries(6)
	if _, err := ep.Write(payload(100, 10)); err != nil {
		t.Fatalf("write before the user timeout: %v", err)
	}
	p.Advance(time.Millisecond)
	if _, err := ep.Write(payload(110, 10)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("write after the user timeout: %v, want ETIMEDOUT", err)
	}
	if i := ep.Info(); i.Probes != 6 || i.Backoff != 0 || i.State != event.Closed {
		t.Errorf("probes %d, backoff %d, %v; want 6, 0, CLOSED", i.Probes, i.Backoff, i.State)
	}
	p.TCP.SyncEvents()
	found := false
	for _, ev := range rec.of(event.KindRecovery) {
		found = found || strings.HasPrefix(ev.Note, "local congestion: try #6 of what the link refused")
	}
	if !found {
		t.Errorf("no event names the sixth try: %v", rec.of(event.KindRecovery))
	}
}

// TestLinkRefusedResourceProbeLeaves: the link takes frames again before
// the second try; that try's segment leaves, its ACK ends the tries and
// the window reduction, and the rest follows.
func TestLinkRefusedResourceProbeLeaves(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	p.RefuseAll(true)
	data := payload(0, 3*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	p.Advance(ep.Info().RTO)
	p.ExpectNothing()
	p.RefuseAll(false)
	p.Advance(500 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	if i := ep.Info(); i.Probes != 2 || i.InFlight != 1460 {
		t.Fatalf("probes %d, in flight %d; want 2, 1460", i.Probes, i.InFlight)
	}
	p.Advance(rtt)
	p.Inject(sackAck(2))
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Payload: segData(data, 2), Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: "P.", Seq: sb(3), Ack: 1, Payload: segData(data, 3)})
	p.ExpectNothing()
	if i := ep.Info(); i.Probes != 0 || p.TCP.Stats().ResourceProbes.Load() != 2 {
		t.Errorf("probes %d, tries %d; want 0 once the peer answered, 2 in all", i.Probes, p.TCP.Stats().ResourceProbes.Load())
	}
}

// TestLinkRefusedRTORetransmission: the peer goes silent, and by the time
// the RTO fires the link refuses everything. The RTO's retransmission is
// refused: as Linux's tcp_retransmit_timer, the next try comes 500 ms
// later, not after the doubled RTO, and the one after that too; once the
// link takes frames again, the try leaves.
func TestLinkRefusedRTORetransmission(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true}) // no tail loss probe before the RTO
	data := sendSegments(t, p, ep, 2)
	rto := ep.Info().RTO
	p.RefuseAll(true)
	p.Advance(rto) // the RTO: its retransmission of segment 1 is refused
	p.ExpectNothing()
	st := p.TCP.Stats()
	if st.RetransmitTimeouts.Load() != 1 || st.LinkRefused.Load() != 1 {
		t.Fatalf("%d RTOs, %d refused; want 1, 1", st.RetransmitTimeouts.Load(), st.LinkRefused.Load())
	}
	p.Advance(500*time.Millisecond - time.Millisecond)
	if n := st.ResourceProbes.Load(); n != 0 {
		t.Fatalf("%d tries before 500 ms", n)
	}
	p.Advance(time.Millisecond)
	p.Advance(500 * time.Millisecond)
	p.ExpectNothing()
	if n, r := st.ResourceProbes.Load(), st.RetransmitTimeouts.Load(); n != 2 || r != 1 {
		t.Fatalf("%d tries, %d RTOs; want 2 tries 500 ms apart after the refused retransmission, no second RTO", n, r)
	}
	p.RefuseAll(false)
	p.Advance(500 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
}

// recoveryWithRefusal is the start of the undo tests: segment 3 is lost
// on the wire and retransmitted in fast recovery; then the user writes
// segments 7 and 8, and the link refuses the first refuse of them. It
// returns what the wire carried of the two.
func recoveryWithRefusal(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, refuse int) []seg {
	t.Helper()
	data := sendSegments(t, p, ep, 6)
	p.Advance(rtt)
	// 1-2 and 4-6 arrive; RACK waits its reordering window, then
	// deems 3 lost.
	p.Inject(sackAck(3, [2]int{4, 7}))
	p.Advance(rtt)
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 1, Payload: segData(data, 3), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	if i := ep.Info(); i.CAState != "fast recovery" {
		t.Fatalf("%s, want fast recovery", i.CAState)
	}
	p.RefuseNext(refuse)
	if _, err := ep.Write(payload(6*1460, 2*1460)); err != nil {
		t.Fatal(err)
	}
	out := p.Drain()
	if n := p.TCP.Stats().LinkRefused.Load(); n != uint64(refuse) {
		t.Fatalf("refused %d, want %d", n, refuse)
	}
	return out
}

// TestLinkRefusedNotUndone: a D-SACK that shows every retransmission of
// an episode spurious undoes its window reduction, unless a segment the
// link refused was deemed lost in it: that loss was real. The link
// refuses segment 7 and takes 8; then the peer D-SACKs segment 3 (the
// original was only late). The window stays reduced, and 7 goes again.
func TestLinkRefusedNotUndone(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	if out := recoveryWithRefusal(t, p, ep, 1); len(out) != 1 || out[0].Seq != sb(8) {
		t.Fatalf("the wire carried %v, want segment 8", out)
	}
	p.Advance(rtt)
	dsack := sackAck(7, [2]int{8, 9})
	dsack.SACK = append([][2]uint32{{sb(3), sb(4)}}, dsack.SACK...)
	p.Inject(dsack)
	p.Expect(seg{Flags: ".", Seq: sb(7), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	if n := p.TCP.Stats().Undos.Load(); n != 0 {
		t.Errorf("%d undos: the episode held a real loss, the refused segment", n)
	}
}

// TestLinkRefusedTakenBackUndone: when the link refuses the tail, 7 and
// 8, during the recovery, they are taken back and nothing is lost: Linux
// changes nothing of a recovery under way for a local drop
// (tcp_enter_cwr acts from open only), and the D-SACK undoes the
// episode. 7 and 8 go as new data.
func TestLinkRefusedTakenBackUndone(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	if out := recoveryWithRefusal(t, p, ep, 2); len(out) != 0 {
		t.Fatalf("the wire carried %v, want nothing", out)
	}
	if i := ep.Info(); i.Lost != 1460 || i.TCB.SndNxt-i.TCB.SndUna != 4*1460 {
		t.Fatalf("lost %d, SND.NXT - SND.UNA %d; want segment 3 alone, and 3-6", i.Lost, i.TCB.SndNxt-i.TCB.SndUna)
	}
	p.Advance(rtt)
	dsack := sackAck(7)
	dsack.SACK = [][2]uint32{{sb(3), sb(4)}}
	p.Inject(dsack)
	p.Expect(seg{Flags: ".", Seq: sb(7), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: "P.", Seq: sb(8), Ack: 1, Len: 1460})
	p.ExpectNothing()
	st := p.TCP.Stats()
	if st.Undos.Load() != 1 || st.Retransmits.Load() != 1 {
		t.Errorf("%d undos, %d retransmissions; want 1 (the episode was spurious), 1 (segment 3's)", st.Undos.Load(), st.Retransmits.Load())
	}
}

// TestLinkRefusedControl: a refused segment with no sequence space, a
// bare ACK, is counted and nothing more: the next segment carries the
// same news.
func TestLinkRefusedControl(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	p.RefuseNext(1)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hello")})
	p.Advance(200 * rtt) // the delayed ACK's time, and more
	p.ExpectNothing()
	st := p.TCP.Stats()
	if st.LinkRefused.Load() != 1 || st.FastRecoveries.Load() != 0 || ep.Info().CAState != "open" {
		t.Errorf("refused %d, fast recoveries %d, %s; want 1, 0, open", st.LinkRefused.Load(), st.FastRecoveries.Load(), ep.Info().CAState)
	}
	if !strings.Contains(p.Trace(), "refused by the link") {
		t.Errorf("the trace does not show the refusal:\n%s", p.Trace())
	}
}

// TestLinkRefusedNotUndoneEifel is TestLinkRefusedNotUndone with the
// other evidence of a spurious episode: a partial ACK echoing the TSval
// of segment 3's original transmission (Eifel, RFC 3522), which says the
// original arrived. The refused segment 7, overtaken by 8, was lost all
// the same, and goes again; an undo would have deemed it in flight.
func TestLinkRefusedNotUndoneEifel(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{}, tcptest.WithTimestamps())
	mss := ep.Info().SndMSS
	if _, err := ep.Write(payload(0, 6*mss)); err != nil {
		t.Fatal(err)
	}
	var orig3 uint32
	for _, s := range p.Drain() {
		if s.Seq == sbm(mss, 3) {
			orig3 = s.TSVal
		}
	}
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 3, [2]int{4, 7}))
	p.Advance(rtt)
	if got := p.Drain(); len(got) != 1 || got[0].Seq != sbm(mss, 3) || got[0].TSVal == orig3 {
		t.Fatalf("after RACK's reordering window: %v, want segment 3 again with a new TSval", got)
	}
	p.RefuseNext(1)
	if _, err := ep.Write(payload(6*mss, 2*mss)); err != nil {
		t.Fatal(err)
	}
	if got := p.Drain(); len(got) != 1 || got[0].Seq != sbm(mss, 8) {
		t.Fatalf("the wire carried %v, want segment 8", got)
	}
	p.Advance(rtt)
	ack := sackAckM(mss, 4, [2]int{4, 7}, [2]int{8, 9})
	ack.TS, ack.TSVal, ack.TSEcr = true, p.TSClock(), orig3
	p.Inject(ack)
	resent := false
	for _, s := range p.Drain() {
		resent = resent || s.Seq == sbm(mss, 7)
	}
	if n := p.TCP.Stats().Undos.Load(); n != 0 || !resent {
		t.Errorf("%d undos, segment 7 sent again: %v; want no undo, 7 sent again", n, resent)
	}
}

// TestLinkRefusedAnswerLate: the answer to a refusal comes once the write
// pass is over (writeAfterRefusal), and by then a newer copy of the
// refused segment may have been built. The link refuses segment 7 and
// takes 8-12 after it; while the engine is still writing them, the
// peer's SACK of 8-10 arrives and RACK, a reordering window later,
// retransmits 7. Then the engine learns that the link refused 7: the
// first copy, not the retransmission waiting to go. Linux transmits
// under the socket lock, so a qdisc's drop is answered before any newer
// copy exists (__tcp_transmit_skb, tcp_retransmit_skb); the late answer
// must leave the newer copy alone. It deemed 7 lost again: the
// retransmission, which left, was no longer counted in flight, and the
// SACK of 11 and 12, sent before it, sent 7 a second time.
func TestLinkRefusedAnswerLate(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 6)
	p.Advance(rtt)
	p.Inject(sackAck(7))
	p.ExpectNothing()

	p.RefuseNext(1)
	p.WhileWriting(6, func() { // segment 12's write, the pass's last
		p.Advance(rtt)
		p.Inject(sackAck(7, [2]int{8, 11}))
		p.Advance(rtt) // RACK's reordering window: 7 goes again
	})
	data := payload(6*1460, 6*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	for k := 8; k <= 12; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.Expect(seg{Flags: ".", Seq: sb(7), Ack: 1, Payload: data[:1460], Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	st := p.TCP.Stats()
	if i := ep.Info(); st.LinkRefused.Load() != 1 || i.InFlight != 3*1460 {
		t.Errorf("refused %d, in flight %d; want 1, 3 segments (7's retransmission, 11, 12)", st.LinkRefused.Load(), i.InFlight)
	}
	// The SACK of 11 and 12, sent before 7's retransmission: nothing
	// to send; then 7's ACK.
	p.Inject(sackAck(7, [2]int{8, 13}))
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(sackAck(13))
	p.ExpectNothing()
	if n := st.Retransmits.Load(); n != 1 {
		t.Errorf("%d retransmissions, want 1 (7's)", n)
	}
}

// TestLinkRefusedAnswerAfterRTO is TestLinkRefusedAnswerLate with the
// RTO's retransmission as the newer copy: the link refuses segment 1 and
// takes 2; while the engine writes 2, the RTO fires, deems both lost and
// sends 1 again. The refusal's answer, which comes after, is the first
// copy's: the RTO's retransmission left and is in flight. It deemed 1
// lost again, with nothing in flight, as if the RTO's copy had not left.
func TestLinkRefusedAnswerAfterRTO(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{NoRACK: true, Observer: rec.observe}) // no tail loss probe before the RTO
	rto := ep.Info().RTO
	p.RefuseNext(1)
	p.WhileWriting(2, func() { p.Advance(rto) })
	data := payload(0, 2*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sb(2), Ack: 1, Payload: segData(data, 2)})
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Payload: segData(data, 1), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	st := p.TCP.Stats()
	if i := ep.Info(); st.RetransmitTimeouts.Load() != 1 || i.InFlight != 1460 || i.CAState != "RTO recovery" {
		t.Errorf("%d RTOs, in flight %d, %s; want 1, 1460 (the RTO's retransmission of 1), RTO recovery", st.RetransmitTimeouts.Load(), i.InFlight, i.CAState)
	}
	p.TCP.SyncEvents()
	for _, ev := range rec.of(event.KindRecovery) {
		if strings.HasPrefix(ev.Note, "the link refused") {
			t.Errorf("the refusal of the first copy deemed its retransmission lost: %q", ev.Note)
		}
	}
	p.Advance(rtt)
	p.Inject(sackAck(3))
	p.Advance(time.Second)
	p.ExpectNothing()
	if n := st.Retransmits.Load(); n != 1 {
		t.Errorf("%d retransmissions, want 1", n)
	}
}

// TestLinkRefusedTLPCopy: the link refuses a tail loss probe that is a
// copy of the last segment. The probe never left, and the segment's
// first copy is in flight as before: nothing is lost. Linux's
// tcp_send_loss_probe, when __tcp_retransmit_skb fails, leaves the
// segment as it was (no TCPCB_SACKED_RETRANS, retrans_out unchanged),
// records no probe (tlp_high_seq stays 0) and rearms the RTO; the drop
// itself enters CWR (__tcp_transmit_skb's tcp_enter_cwr). The engine
// deemed the segment lost, as for a refused retransmission of a lost
// one, started fast recovery and sent it again.
func TestLinkRefusedTLPCopy(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	sendSegments(t, p, ep, 2)
	p.RefuseNext(1)
	p.Advance(2 * rtt) // the probe timeout: 2·SRTT, no new data, so a copy of 2
	p.ExpectNothing()
	st := p.TCP.Stats()
	i := ep.Info()
	if st.LinkRefused.Load() != 1 || st.TailLossProbes.Load() != 1 {
		t.Fatalf("refused %d, probes %d; want the probe, refused\n%s", st.LinkRefused.Load(), st.TailLossProbes.Load(), p.Trace())
	}
	if i.Lost != 0 || i.InFlight != 2*1460 || i.CAState != "CWR" || st.FastRecoveries.Load() != 0 {
		t.Errorf("lost %d, in flight %d, %s, %d fast recoveries; want 0, both first copies, CWR, none",
			i.Lost, i.InFlight, i.CAState, st.FastRecoveries.Load())
	}
	p.TCP.SyncEvents()
	want := "CWR: the link refused 1 segment, its queue full: a copy, not sent: the first is still in flight (local congestion)"
	var notes []string
	for _, ev := range rec.of(event.KindRecovery) {
		if strings.Contains(ev.Note, "the link refused") {
			notes = append(notes, ev.Note)
		}
	}
	if len(notes) != 1 || notes[0] != want {
		t.Errorf("the refusal's answer: %q, want %q", notes, want)
	}
	// The first copies arrive: their ACK says nothing of the probe,
	// which never left, nor does the ACK of the next segment, beyond
	// the probe (RFC 8985 7.4.2 calls a probe that a copy carried a
	// repaired loss then); nothing goes again.
	p.Inject(sackAck(3))
	p.ExpectNothing()
	if _, err := ep.Write(payload(2*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sb(3), Ack: 1, Len: 1460})
	p.Advance(rtt)
	p.Inject(sackAck(4))
	p.Advance(time.Second)
	p.ExpectNothing()
	if st.TLPRecoveries.Load() != 0 || st.Retransmits.Load() != 1 {
		t.Errorf("%d losses a probe repaired, %d retransmissions; want none, the probe only\n%s",
			st.TLPRecoveries.Load(), st.Retransmits.Load(), p.Trace())
	}
}

// TestLinkRefusedTLPCopyOfFIN is TestLinkRefusedTLPCopy with the FIN as
// the last segment: the probe's copy of it is refused, and the FIN's
// first copy is in flight as before. Its ACK ends FIN-WAIT-1, and
// nothing goes again.
func TestLinkRefusedTLPCopyOfFIN(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 1)
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "F.", Seq: sb(2), Ack: 1})
	p.RefuseNext(1)
	p.Advance(2 * rtt) // the probe timeout: a copy of the FIN
	p.ExpectNothing()
	st := p.TCP.Stats()
	if i := ep.Info(); st.LinkRefused.Load() != 1 || st.TailLossProbes.Load() != 1 || i.Lost != 0 || i.CAState != "CWR" || st.FastRecoveries.Load() != 0 {
		t.Fatalf("refused %d, probes %d, lost %d, %s, %d fast recoveries; want 1, 1, 0, CWR, none\n%s",
			st.LinkRefused.Load(), st.TailLossProbes.Load(), i.Lost, i.CAState, st.FastRecoveries.Load(), p.Trace())
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2) + 1})
	p.Advance(time.Second)
	p.ExpectNothing()
	p.WantState(ep, event.FinWait2)
}

// TestLinkRefusedFIN: the link refuses a FIN sent alone, with nothing in
// flight. It is the tail of what was sent, so it is taken back, as
// Linux's stays unsent in its write queue: SND.NXT returns to it, the
// connection stays in FIN-WAIT-1, and with nothing in flight to draw an
// ACK the FIN is tried again an RTO later (Linux's probe0), once; its
// ACK ends FIN-WAIT-1.
func TestLinkRefusedFIN(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	p.RefuseNext(1)
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	i := ep.Info()
	if i.State != event.FinWait1 || i.TCB.SndNxt != i.TCB.SndUna || i.Lost != 0 || i.CAState != "CWR" {
		t.Fatalf("%v, SND.NXT - SND.UNA %d, lost %d, %s; want FIN-WAIT-1, the FIN taken back, nothing lost, CWR",
			i.State, i.TCB.SndNxt-i.TCB.SndUna, i.Lost, i.CAState)
	}
	p.Advance(i.RTO)
	p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	p.Advance(time.Second)
	p.ExpectNothing()
	p.WantState(ep, event.FinWait2)
	if st := p.TCP.Stats(); st.ResourceProbes.Load() != 1 || st.Retransmits.Load() != 0 {
		t.Errorf("%d tries, %d retransmissions; want the one try, no retransmission", st.ResourceProbes.Load(), st.Retransmits.Load())
	}
}

// TestLinkRefusedFINRetransmission: the RTO's retransmission of a FIN is
// refused. The FIN was deemed lost by the RTO and stays so, waiting to
// go: tried again every 500 ms (Linux's tcp_retransmit_timer on local
// congestion), and it leaves once the link takes frames again.
func TestLinkRefusedFINRetransmission(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{NoRACK: true}) // no tail loss probe before the RTO
	sendSegments(t, p, ep, 1)
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "F.", Seq: sb(2), Ack: 1})
	p.Advance(rtt)
	p.Inject(sackAck(2)) // the data's ACK; the FIN's is lost
	rto := ep.Info().RTO
	p.RefuseAll(true)
	p.Advance(rto)
	p.ExpectNothing()
	if i := ep.Info(); i.Lost != 1 || i.InFlight != 0 || i.CAState != "RTO recovery" {
		t.Fatalf("lost %d, in flight %d, %s; want the FIN lost, nothing in flight, RTO recovery", i.Lost, i.InFlight, i.CAState)
	}
	p.Advance(500 * time.Millisecond)
	p.ExpectNothing()
	p.RefuseAll(false)
	p.Advance(500 * time.Millisecond)
	p.Expect(seg{Flags: "F.", Seq: sb(2), Ack: 1})
	p.ExpectNothing()
	if st := p.TCP.Stats(); st.LinkRefused.Load() != 2 || st.ResourceProbes.Load() != 2 || st.RetransmitTimeouts.Load() != 1 {
		t.Errorf("refused %d, tries %d, RTOs %d; want 2, 2, 1", st.LinkRefused.Load(), st.ResourceProbes.Load(), st.RetransmitTimeouts.Load())
	}
	p.Advance(rtt)
	p.Inject(sackAck(2))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2) + 1})
	p.WantState(ep, event.FinWait2)
}

// TestLinkRefusedWindowProbe: the link refuses a zero-window probe. The
// probe (an ACK carrying SND.UNA-1, no data) has no sequence space of
// its own: the answer marks nothing lost and moves nothing (the data
// waiting for the window was never sent). As Linux's tcp_send_probe0
// when tcp_write_wakeup reports local congestion, the probe counts
// (icsk_probes_out), the timer does not back off (icsk_backoff), and the
// next probe goes 500 ms later (TCP_RESOURCE_PROBE_INTERVAL); that one
// leaves, and backs off as usual, and its answer opens the window.
func TestLinkRefusedWindowProbe(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	sendSegments(t, p, ep, 1)
	p.Advance(rtt)
	closed := sackAck(2)
	closed.Check = tcptest.CheckWin // a zero window
	p.Inject(closed)
	data := payload(1460, 100)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	rto := ep.Info().RTO
	p.RefuseNext(1)
	p.Advance(rto) // the persist timer: the probe, refused
	p.ExpectNothing()
	st := p.TCP.Stats()
	i := ep.Info()
	if st.LinkRefused.Load() != 1 || i.Lost != 0 || i.InFlight != 0 || i.CAState != "open" || i.TCB.SndNxt != i.TCB.SndUna {
		t.Fatalf("refused %d, lost %d, in flight %d, %s, SND.NXT - SND.UNA %d; want 1, 0, 0, open, 0",
			st.LinkRefused.Load(), i.Lost, i.InFlight, i.CAState, i.TCB.SndNxt-i.TCB.SndUna)
	}
	if i.Probes != 1 || i.Backoff != 0 || i.RTO != rto {
		t.Errorf("after the refused probe: probes %d, backoff %d, RTO %v; want 1, 0, %v (counted, not backed off)", i.Probes, i.Backoff, i.RTO, rto)
	}
	p.Advance(500*time.Millisecond - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond) // the next probe, 500 ms after the refused one
	p.Expect(seg{Flags: ".", Seq: sb(2) - 1, Ack: 1})
	p.ExpectNothing()
	if i := ep.Info(); i.Probes != 2 || i.Backoff != 1 || i.RTO != 2*rto {
		t.Errorf("after the probe that left: probes %d, backoff %d, RTO %v; want 2, 1, %v", i.Probes, i.Backoff, i.RTO, 2*rto)
	}
	p.Inject(sackAck(2)) // the window opens
	p.Expect(seg{Flags: "P.", Seq: sb(2), Ack: 1, Payload: data})
	p.ExpectNothing()
	p.TCP.SyncEvents()
	found := false
	for _, ev := range rec.of(event.KindRecovery) {
		found = found || strings.Contains(ev.Note, "refused the zero-window probe") && ev.Key == (event.SegKey{})
	}
	if !found {
		t.Errorf("no recovery event names the refused probe: %v", rec.of(event.KindRecovery))
	}
}

// TestLinkRefusedWindowProbesGiveUp: a link that refuses every
// zero-window probe does not hold the connection for ever: each refused
// probe counts, 500 ms apart, and MaxRetries of them end it with
// ETIMEDOUT, as Linux's tcp_probe_timer counts icsk_probes_out, locally
// dropped probes included, against tcp_retries2.
func TestLinkRefusedWindowProbesGiveUp(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{MaxRetries: 3})
	sendSegments(t, p, ep, 1)
	p.Advance(rtt)
	closed := sackAck(2)
	closed.Check = tcptest.CheckWin // a zero window
	p.Inject(closed)
	if _, err := ep.Write(payload(1460, 100)); err != nil {
		t.Fatal(err)
	}
	rto := ep.Info().RTO
	p.RefuseAll(true)
	p.Advance(rto) // probe 1, refused
	for k := 2; k <= 3; k++ {
		p.Advance(500 * time.Millisecond) // probe k, refused
		if i := ep.Info(); i.Probes != k || i.RTO != rto || i.State != event.Established {
			t.Fatalf("%v in: probes %d, RTO %v, %v; want %d, %v, ESTABLISHED", p.Elapsed(), i.Probes, i.RTO, i.State, k, rto)
		}
	}
	p.ExpectNothing()
	p.Advance(500 * time.Millisecond) // the fourth would exceed MaxRetries
	if st := p.TCP.Stats(); st.LinkRefused.Load() != 3 || st.Timeouts.Load() != 1 {
		t.Errorf("refused %d, timeouts %d; want 3, 1", st.LinkRefused.Load(), st.Timeouts.Load())
	}
	if _, err := ep.Write(payload(1560, 10)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("write after the refused probes: %v, want ETIMEDOUT", err)
	}
}
