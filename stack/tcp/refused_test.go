package tcp_test

import (
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Segments the link refused, its queue full (refused.go): they never
// left, so they are deemed lost at once, fast recovery starts with
// nothing to undo, and they go again as PRR lets them.

// TestLinkRefusedTail: the link refuses the last four segments of a
// flight, the whole tail. No ACK can show them lost (nothing after them
// was delivered), and RACK never would; the probe timer found them
// 2·SRTT later. Now the ACK of the six that left sends all four again,
// and the episode ends like any fast recovery, its window reduced.
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
	if st.LinkRefused.Load() != 4 || st.FastRecoveries.Load() != 1 || i.CAState != "fast recovery" {
		t.Fatalf("refused %d, fast recoveries %d, %s; want 4, 1, fast recovery",
			st.LinkRefused.Load(), st.FastRecoveries.Load(), i.CAState)
	}
	if i.Ssthresh >= before.Cwnd {
		t.Errorf("ssthresh %d, cwnd before %d: want the window reduced", i.Ssthresh, before.Cwnd)
	}

	// The ACK of the six that left: the four go again at once.
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
	if n := st.RetransmitTimeouts.Load() + st.TailLossProbes.Load(); n != 0 {
		t.Errorf("%d RTOs and probes; want none", n)
	}
	p.TCP.SyncEvents()
	// The event names the refusal and is keyed to the first refused
	// segment, so that a capture puts it on that frame.
	iss, _ := p.StackISS()
	want := event.SegKey{Seq: iss + sb(7), Ack: tcptest.PeerISS + 1, Flags: event.Flags(header.TCPFlagAck), Len: 1460}
	found := false
	for _, ev := range rec.of(event.KindRecovery) {
		found = found || ev.Note == "fast recovery: the link refused 4 segments, its queue full: deemed lost" && ev.Key == want
	}
	if !found {
		t.Errorf("no recovery event names the refusal, keyed %+v: %v", want, rec.of(event.KindRecovery))
	}
}

// TestLinkRefusedNotUndone: a D-SACK that shows every retransmission of
// an episode spurious undoes its window reduction, unless the link
// refused a segment in it: that loss was real. Segment 3 is lost on the
// wire and retransmitted; the link refuses segment 7, written during the
// recovery; then the peer D-SACKs segment 3 (the original was only
// late). The window stays reduced.
func TestLinkRefusedNotUndone(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
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
	p.RefuseNext(1)
	if _, err := ep.Write(payload(6*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	if n := p.TCP.Stats().LinkRefused.Load(); n != 1 {
		t.Fatalf("refused %d, want 1", n)
	}
	// The original 3 arrives after all: the peer D-SACKs the
	// retransmission and acknowledges 1-6.
	p.Advance(rtt)
	dsack := sackAck(7)
	dsack.SACK = [][2]uint32{{sb(3), sb(4)}}
	p.Inject(dsack)
	p.Expect(seg{Flags: "P.", Seq: sb(7), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	if n := p.TCP.Stats().Undos.Load(); n != 0 {
		t.Errorf("%d undos: the episode held a real loss, the refused segment", n)
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
// original arrived. The refused segment 7 was lost all the same, and
// goes again; an undo would have deemed it in flight.
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
	if _, err := ep.Write(payload(6*mss, mss)); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	p.Advance(rtt)
	ack := sackAckM(mss, 4, [2]int{4, 7})
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
