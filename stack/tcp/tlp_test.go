package tcp_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestTailLossProbeRepairsLoss: only the last segment of a flight is lost.
// With one segment in flight after the ACK of the others, the probe is due
// at PTO = 2*SRTT + 200 ms (RFC 8985 7.2, WCDelAckT), but never later than
// the RTO (SRTT + 200 ms here), so it goes when the RTO would have, and in
// its place (7.3): no new data waits, so it sends the last segment again.
// The peer's ACK covers it with no D-SACK: the probe plugged a hole. RFC
// 8985 7.4.2 (and Linux's tcp_process_tlp_ack) still waits for an ACK
// beyond TLP.end_seq before calling it a loss, because the ACK of the
// original and the D-SACK of the probe may yet follow; the next flight's
// ACK ends the episode: a loss repaired by the probe, a congestion event
// (TLPRecoveries), ssthresh from the congestion control (CUBIC: 0.7*cwnd,
// RFC 9438 4.6) and cwnd cut to it, in one step, without fast recovery.
func TestTailLossProbeRepairsLoss(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	data := sendSegments(t, p, ep, 5)
	p.Advance(rtt)
	p.Inject(sackAck(5)) // segments 1-4 arrived; 5 was lost
	p.ExpectNothing()

	i := ep.Info()
	rto := i.RTO
	pto := min(2*i.RTT+200*time.Millisecond, rto)
	if pto != rto {
		t.Fatalf("PTO %v, RTO %v: the test wants the probe capped by the RTO", 2*i.RTT+200*time.Millisecond, rto)
	}
	p.Advance(pto - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	p.Expect(seg{Flags: "P.", Seq: sb(5), Ack: 1, Payload: segData(data, 5)})
	p.ExpectNothing()
	st := p.TCP.Stats()
	if st.TailLossProbes.Load() != 1 || st.Sent(event.SendTLP) != 1 || st.RetransmitTimeouts.Load() != 0 {
		t.Fatalf("probes %d (sent %d), RTOs %d; want the probe, not the RTO", st.TailLossProbes.Load(), st.Sent(event.SendTLP), st.RetransmitTimeouts.Load())
	}
	// The probe's note comes just before its send, so that a capture
	// puts it on the probe's frame, not on the next frame (an ACK that
	// crossed the probe on the wire, in one run of pcap's oracle).
	p.TCP.SyncEvents()
	rec.mu.Lock()
	for k, ev := range rec.all {
		if ev.Kind == event.KindSend && ev.Send == event.SendTLP {
			if k == 0 || rec.all[k-1].Kind != event.KindRecovery || rec.all[k-1].Note != "tail loss probe" {
				t.Errorf("the probe's send event follows %v, want its recovery note", rec.all[max(k-1, 0)])
			}
		}
	}
	rec.mu.Unlock()

	// The probe's ACK: everything, no D-SACK.
	p.Advance(rtt)
	p.Inject(sackAck(6))
	p.ExpectNothing()
	before := ep.Info()
	if st.TLPRecoveries.Load() != 0 || before.Cwnd != i.Cwnd {
		t.Fatalf("ACK of TLP.end_seq itself: TLP recoveries %d, cwnd %d -> %d; want the episode still open (RFC 8985 7.4.2)",
			st.TLPRecoveries.Load(), i.Cwnd, before.Cwnd)
	}

	// The next flight's ACK passes TLP.end_seq.
	if _, err := ep.Write(payload(5*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sb(6), Ack: 1, Len: 1460})
	p.Advance(rtt)
	p.Inject(sackAck(7))
	p.ExpectNothing()

	after := ep.Info()
	wantSsthresh := uint32(float64(before.Cwnd) / 1460 * 0.7 * 1460)
	if n := st.TLPRecoveries.Load(); n != 1 {
		t.Errorf("TLP recoveries %d, want 1", n)
	}
	if math.Abs(float64(after.Ssthresh)-float64(wantSsthresh)) > 1 || after.Cwnd != after.Ssthresh || after.CAState != "open" {
		t.Errorf("after the episode: cwnd %d, ssthresh %d, %s; want both 0.7 * %d = %d, open",
			after.Cwnd, after.Ssthresh, after.CAState, before.Cwnd, wantSsthresh)
	}
	if st.FastRecoveries.Load() != 0 || st.RetransmitTimeouts.Load() != 0 {
		t.Errorf("fast recoveries %d, RTOs %d; want none", st.FastRecoveries.Load(), st.RetransmitTimeouts.Load())
	}
	p.TCP.SyncEvents()
	found := false
	for _, ev := range rec.of(event.KindRecovery) {
		if ev.Note == "tail loss probe repaired a loss: window reduced" {
			found = true
			if ev.Cwnd != after.Cwnd || ev.Ssthresh != after.Ssthresh {
				t.Errorf("recovery event cwnd %d ssthresh %d, Info %d %d", ev.Cwnd, ev.Ssthresh, after.Cwnd, after.Ssthresh)
			}
		}
	}
	if !found {
		t.Errorf("no recovery event for the repaired loss")
	}
}

// TestProbeWhileVerdictPending: a probe, a copy of the lost last segment,
// is acknowledged, no more and no D-SACK, so RFC 8985 7.4.2 waits for an
// ACK beyond it to call it a repaired loss; the next flight goes, and the
// path loses all of it (or all its ACKs). RFC 8985 and Linux send no
// probe while that verdict is pending, leaving the RTO, 200 ms at least;
// tapstack gives the verdict an ACK beyond the probe would have given (a
// loss repaired: the window reduced, in one step) and probes the new
// silence 2*SRTT after its last segment.
func TestProbeWhileVerdictPending(t *testing.T) {
	rec := &events{}
	p, ep := rttPeer(t, tcp.Options{Observer: rec.observe})
	sendSegments(t, p, ep, 5)
	p.Advance(rtt)
	p.Inject(sackAck(5)) // 5 is lost
	p.Advance(ep.Info().RTO)
	p.Expect(seg{Flags: "P.", Seq: sb(5), Ack: 1, Len: 1460}) // the probe, a copy
	p.Advance(rtt)
	p.Inject(sackAck(6)) // the probe's ACK: TLP.end_seq, no D-SACK
	before := ep.Info()
	st := p.TCP.Stats()
	if st.TLPRecoveries.Load() != 0 {
		t.Fatalf("TLP recoveries %d after the ACK of TLP.end_seq; want the verdict pending", st.TLPRecoveries.Load())
	}

	data := payload(5*1460, 3*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	for k := 6; k <= 8; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	// The flight is lost: nothing comes back.
	pto := 2 * ep.Info().RTT
	p.Advance(pto - time.Nanosecond)
	p.ExpectNothing()
	p.Advance(time.Nanosecond)
	p.Expect(seg{Flags: "P.", Seq: sb(8), Ack: 1, Payload: segData(data, 3)})
	after := ep.Info()
	wantSsthresh := uint32(float64(before.Cwnd) / 1460 * 0.7 * 1460)
	if st.TLPRecoveries.Load() != 1 || math.Abs(float64(after.Ssthresh)-float64(wantSsthresh)) > 1 || after.Cwnd != after.Ssthresh {
		t.Errorf("at the second probe: TLP recoveries %d, cwnd %d, ssthresh %d; want 1 and both 0.7 * %d = %d",
			st.TLPRecoveries.Load(), after.Cwnd, after.Ssthresh, before.Cwnd, wantSsthresh)
	}
	p.Advance(rtt)
	p.Inject(sackAck(6, [2]int{8, 9})) // 6 and 7 lost: RACK repairs them
	p.Expect(seg{Flags: ".", Seq: sb(6), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	if n := st.RetransmitTimeouts.Load(); n != 0 || st.TailLossProbes.Load() != 2 {
		t.Errorf("RTOs %d, probes %d; want 0, 2", n, st.TailLossProbes.Load())
	}
	// The verdict's note goes before the probe's, each on its own event.
	p.TCP.SyncEvents()
	var notes []string
	for _, ev := range rec.of(event.KindRecovery) {
		if strings.HasPrefix(ev.Note, "tail loss probe") {
			notes = append(notes, ev.Note)
		}
	}
	want := []string{"tail loss probe", "tail loss probe repaired a loss: window reduced", "tail loss probe"}
	if !slices.Equal(notes, want) {
		t.Errorf("probe notes %q, want %q", notes, want)
	}
}

// TestProbeAfterPartlyAcknowledgedProbe: a probe of two new segments
// draws an ACK of the first only (the second, or its ACK, was lost). A
// probe of new data repairs nothing, so its episode has no verdict to
// wait for: that ACK ends it, and when the data it lets out meets a
// silence in turn, a probe goes 2*SRTT later, where waiting for an ACK
// beyond the probe left the RTO, 200 ms at least.
func TestProbeAfterPartlyAcknowledgedProbe(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := writeInitialWindow(t, p, ep, 14)
	p.Advance(2 * rtt) // the flight's ACKs are lost: the probe, two new segments
	p.Expect(seg{Flags: ".", Seq: sb(11), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: sb(12), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.Advance(rtt / 10)
	p.Inject(sackAck(12)) // the first of them, not the second
	p.Expect(seg{Flags: ".", Seq: sb(13), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: "P.", Seq: sb(14), Ack: 1, Payload: segData(data, 14)})
	p.ExpectNothing()
	// Silence again: a probe, the last segment again, no new data being
	// left, 2*SRTT after it.
	pto := 2 * ep.Info().RTT
	p.Advance(pto - time.Nanosecond)
	p.ExpectNothing()
	p.Advance(time.Nanosecond)
	p.Expect(seg{Flags: "P.", Seq: sb(14), Ack: 1, Payload: segData(data, 14)})
	st := p.TCP.Stats()
	if st.TailLossProbes.Load() != 2 || st.RetransmitTimeouts.Load() != 0 {
		t.Errorf("probes %d, RTOs %d; want 2, 0", st.TailLossProbes.Load(), st.RetransmitTimeouts.Load())
	}
}

// TestProbeAgainAlternates: the whole flight and every probe go
// unanswered, with data to send. The first probe is new data, two
// segments; each probe after one that drew nothing is of the other kind:
// a copy of the last segment after new data, new data after a copy.
// Linux's receiver answers a copy at once, with a D-SACK, where it may
// hold its ACK of new data (it does while its window would shrink);
// gVisor's answers both at once, a copy without a D-SACK.
func TestProbeAgainAlternates(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := writeInitialWindow(t, p, ep, 20)
	pto := 2 * ep.Info().RTT
	for i, probe := range [][]int{{11, 12}, {12}, {13, 14}, {14}} {
		wait := pto << i
		p.Advance(wait - time.Nanosecond)
		p.ExpectNothing()
		p.Advance(time.Nanosecond)
		for _, k := range probe {
			p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Payload: segData(data, k), Check: tcptest.IgnorePSH})
		}
		p.ExpectNothing()
	}
	st := p.TCP.Stats()
	if st.TailLossProbes.Load() != 4 || st.Sent(event.SendTLP) != 6 || st.RetransmitTimeouts.Load() != 0 {
		t.Errorf("probes %d (segments %d), RTOs %d; want 4 (6), 0", st.TailLossProbes.Load(), st.Sent(event.SendTLP), st.RetransmitTimeouts.Load())
	}
}

// TestTailLossProbeWindowFull: the flight's ACKs are lost and the
// congestion window holds two more segments back. The probe is new data
// all the same, beyond the congestion window (RFC 8985 7.3, as Linux):
// by default the two segments, which a receiver that has everything
// acknowledges at once where it may hold the ACK of one for its
// delayed-ACK timer; with TailLossProbeSegments 1, Linux's one. A copy
// of the last segment, which tapstack sent here before, is one segment
// where new data is two, and gVisor's receiver answers it without a
// D-SACK. The ACK of everything ends the episode with nothing learned
// about a loss (7.4.2): no window reduction.
func TestTailLossProbeWindowFull(t *testing.T) {
	for _, tc := range []struct {
		name     string
		segments int // Options.TailLossProbeSegments
		probe    int // segments the probe sends
	}{
		{"two segments", 0, 2},
		{"one segment, as Linux", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := rttPeer(t, tcp.Options{TailLossProbeSegments: tc.segments})
			data := writeInitialWindow(t, p, ep, 12)
			p.ExpectNothing()
			before := ep.Info()
			p.Advance(2 * rtt) // PTO with more than one segment in flight
			for k := 11; k < 11+tc.probe; k++ {
				p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Payload: segData(data, k), Check: tcptest.IgnorePSH})
			}
			p.ExpectNothing()
			p.Inject(sackAck(11 + tc.probe))
			if tc.probe == 1 {
				p.Expect(seg{Flags: "P.", Seq: sb(12), Ack: 1, Len: 1460})
			}
			p.ExpectNothing()
			st := p.TCP.Stats()
			i := ep.Info()
			if st.TailLossProbes.Load() != 1 || st.Sent(event.SendTLP) != uint64(tc.probe) || st.TLPRecoveries.Load() != 0 || st.Retransmits.Load() != 0 {
				t.Errorf("probes %d (segments %d), TLP recoveries %d, retransmits %d; want 1 (%d), 0, 0",
					st.TailLossProbes.Load(), st.Sent(event.SendTLP), st.TLPRecoveries.Load(), st.Retransmits.Load(), tc.probe)
			}
			if i.Ssthresh != before.Ssthresh || i.Cwnd < before.Cwnd || i.CAState != "open" {
				t.Errorf("after the probe's ACK: cwnd %d, ssthresh %d, %s; want no reduction from %d, %d",
					i.Cwnd, i.Ssthresh, i.CAState, before.Cwnd, before.Ssthresh)
			}
		})
	}
}

// TestTailLossProbeNewData: the window has room, but Nagle holds a short
// segment back while full ones are unacknowledged (RFC 9293 3.7.4). When
// their ACKs do not come, the probe is that new segment (RFC 8985 7.3: a
// previously unsent segment when the windows allow it; Nagle does not
// hold a probe); when the ACK of everything covers it, the episode ends
// with nothing learned about a loss (7.4.2: a probe of new data repairs
// nothing): no window reduction, no TLPRecoveries.
func TestTailLossProbeNewData(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	if _, err := ep.Write(payload(0, 3*1460+100)); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 3; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	before := ep.Info()
	p.Advance(2 * rtt)
	p.Expect(seg{Flags: ".", Seq: sb(4), Ack: 1, Len: 100, Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(4) + 100})
	p.ExpectNothing()
	st := p.TCP.Stats()
	i := ep.Info()
	if st.TailLossProbes.Load() != 1 || st.TLPRecoveries.Load() != 0 || st.Retransmits.Load() != 0 {
		t.Errorf("probes %d, TLP recoveries %d, retransmits %d; want 1, 0, 0", st.TailLossProbes.Load(), st.TLPRecoveries.Load(), st.Retransmits.Load())
	}
	if i.Ssthresh != before.Ssthresh || i.Cwnd < before.Cwnd || i.CAState != "open" {
		t.Errorf("after the probe's ACK: cwnd %d, ssthresh %d, %s; want no reduction from %d, %d",
			i.Cwnd, i.Ssthresh, i.CAState, before.Cwnd, before.Ssthresh)
	}
}

// TestProbeTimeoutIsTwiceSRTT: with more than one segment in flight the
// probe goes 2*SRTT after the last transmission, RFC 8985 7.2's PTO, and
// not a moment before; Linux adds two jiffies (TCP_TIMEOUT_MIN) for its
// tick-counting timers, which ours are not. Table-driven over the flight
// and the RTT: a TAP's RTT of some 300 µs is where two milliseconds more
// made every probe wait four times as long.
func TestProbeTimeoutIsTwiceSRTT(t *testing.T) {
	for _, tc := range []struct {
		name string
		rtt  time.Duration
		n    int // segments in flight
	}{
		{"two segments, 10 ms", 10 * time.Millisecond, 2},
		{"five segments, 10 ms", 10 * time.Millisecond, 5},
		{"five segments, 300 µs", 300 * time.Microsecond, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := rttPeerAt(t, tcp.Options{}, tc.rtt)
			data := sendSegments(t, p, ep, tc.n)
			srtt := ep.Info().RTT
			p.Advance(2*srtt - time.Nanosecond)
			p.ExpectNothing()
			p.Advance(time.Nanosecond)
			p.Expect(seg{Flags: "P.", Seq: sb(tc.n), Ack: 1, Payload: segData(data, tc.n)})
			if st := p.TCP.Stats(); st.TailLossProbes.Load() != 1 {
				t.Errorf("probes %d; want 1", st.TailLossProbes.Load())
			}
		})
	}
}

// TestTailLossProbeTwoNewSegments: the peer has every segment of the
// flight and its one ACK of them is lost; the congestion window has room
// for less than a segment, and the send buffer holds more. The probe is
// new data, as RFC 8985 7.3 asks, but two full segments where the RFC
// sends one: a Linux receiver that has acknowledged everything before
// holds the ACK of one new in-order segment for its delayed-ACK timer
// (RFC 5681 4.2 lets it), so a one-segment probe drew nothing and the
// next probe came 2*PTO later; two oblige an immediate ACK. That ACK
// covers everything, and the episode ends with nothing learned about a
// loss (7.4.2): no window reduction. A probe whose first new segment is
// short (the buffer's last bytes) stays one segment: TestTailLossProbeNewData.
func TestTailLossProbeTwoNewSegments(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := writeInitialWindow(t, p, ep, 16)
	p.ExpectNothing()
	// 300 bytes acknowledged: slow start opens the window by as much
	// (RFC 5681 3.1, bytes acknowledged), which leaves room for 600.
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(1) + 300})
	p.ExpectNothing()
	before := ep.Info()
	if room := int(before.Cwnd) - int(before.InFlight); room <= 0 || room >= 1460 {
		t.Fatalf("cwnd %d, %d in flight: want room for less than a segment", before.Cwnd, before.InFlight)
	}
	// The ACK of the rest of the flight is lost.
	p.Advance(2 * ep.Info().RTT)
	p.Expect(seg{Flags: ".", Seq: sb(11), Ack: 1, Payload: segData(data, 11), Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: sb(12), Ack: 1, Payload: segData(data, 12), Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.Advance(rtt / 10)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(13)})
	st := p.TCP.Stats()
	i := ep.Info()
	if st.TailLossProbes.Load() != 1 || st.Sent(event.SendTLP) != 2 || st.TLPRecoveries.Load() != 0 || st.Retransmits.Load() != 0 {
		t.Errorf("probes %d (segments %d), TLP recoveries %d, retransmits %d; want 1 (2), 0, 0",
			st.TailLossProbes.Load(), st.Sent(event.SendTLP), st.TLPRecoveries.Load(), st.Retransmits.Load())
	}
	if i.Ssthresh != before.Ssthresh || i.Cwnd < before.Cwnd || i.CAState != "open" {
		t.Errorf("after the probe's ACK: cwnd %d, ssthresh %d, %s; want no reduction from %d, %d",
			i.Cwnd, i.Ssthresh, i.CAState, before.Cwnd, before.Ssthresh)
	}
}

// TestTailLossProbeDupAck: the last segment and its probe both arrived,
// at a receiver that sends no D-SACK: the ACK of the original comes, then
// a duplicate ACK, with no SACK blocks, for the probe. The duplicate ends
// the episode (RFC 8985 7.4.2: both copies arrived), so a later ACK beyond
// TLP.end_seq does not count as a repaired loss: no window reduction.
func TestTailLossProbeDupAck(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	data := sendSegments(t, p, ep, 5)
	p.Advance(rtt)
	p.Inject(sackAck(5))
	p.Advance(ep.Info().RTO) // the probe, capped by the RTO, as in TestTailLossProbeRepairsLoss
	p.Expect(seg{Flags: "P.", Seq: sb(5), Ack: 1, Payload: segData(data, 5)})
	p.Advance(rtt)
	p.Inject(sackAck(6)) // the original's ACK
	p.Inject(sackAck(6)) // the probe's: a duplicate, no D-SACK
	p.ExpectNothing()
	before := ep.Info()
	if _, err := ep.Write(payload(5*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sb(6), Ack: 1, Len: 1460})
	p.Advance(rtt)
	p.Inject(sackAck(7))
	st := p.TCP.Stats()
	i := ep.Info()
	if st.TLPRecoveries.Load() != 0 || i.Ssthresh != before.Ssthresh || i.Cwnd < before.Cwnd {
		t.Errorf("TLP recoveries %d, cwnd %d, ssthresh %d; want 0 and no reduction from %d, %d",
			st.TLPRecoveries.Load(), i.Cwnd, i.Ssthresh, before.Cwnd, before.Ssthresh)
	}
}

// TestTailLossProbeAgain: the whole flight goes unanswered, and so do
// the tail loss probes (they, or the ACKs they drew, were lost). By
// default up to four probes go, 2·PTO, 4·PTO and 8·PTO after the one
// before, each only if it comes before the RTO, and only then does the
// RTO wait (probeAgain; QUIC's consecutive probes with the timeout
// doubled, RFC 9002 6.2.4); with TailLossProbes 1, as RFC 8985 7 and
// Linux, the RTO follows the single probe. Any ACK after the first probe
// ends the silence a further one is for: the path is alive, and RACK or
// the recovery acts on it.
func TestTailLossProbeAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int  // segments in flight
		probes int  // Options.TailLossProbes
		ack    bool // an ACK of segments 1-4 comes after the first probe
		want   int  // probes before the RTO
	}{
		{"four probes", 5, 0, false, 4},
		{"two probes", 5, 2, false, 2},
		{"single probe", 5, 1, false, 1},
		{"ACK ends the silence", 5, 0, true, 1},
		// One segment: the PTO (2*SRTT + 200 ms) is capped by the RTO,
		// so the probe goes in its place; a second could not come
		// before the RTO restarted with it, and is not armed.
		{"one segment", 1, 0, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := rttPeer(t, tcp.Options{TailLossProbes: tc.probes})
			data := sendSegments(t, p, ep, tc.n)
			pto := 2 * rtt // more than one segment in flight (RFC 8985 7.2)
			if tc.n == 1 {
				pto = min(2*rtt+200*time.Millisecond, ep.Info().RTO)
			}
			p.Advance(pto)
			p.Expect(seg{Flags: "P.", Seq: sb(tc.n), Ack: 1, Payload: segData(data, tc.n)})
			p.ExpectNothing()
			if tc.ack {
				p.Advance(rtt)
				p.Inject(sackAck(5))
				p.ExpectNothing()
			}
			for k := 1; k < tc.want; k++ {
				wait := pto << k // twice the last wait
				p.Advance(wait - time.Microsecond)
				p.ExpectNothing()
				p.Advance(time.Microsecond)
				p.Expect(seg{Flags: "P.", Seq: sb(tc.n), Ack: 1, Payload: segData(data, tc.n)})
				p.ExpectNothing()
			}
			// The RTO, restarted just now by the last probe (RFC 8985
			// 7.3) or by the ACK of new data (RFC 6298 5.3).
			p.Advance(ep.Info().RTO - time.Microsecond)
			p.ExpectNothing()
			st := p.TCP.Stats()
			if n := st.TailLossProbes.Load(); n != uint64(tc.want) {
				t.Errorf("probes %d, want %d", n, tc.want)
			}
			p.Advance(time.Microsecond)
			una := 1
			if tc.ack {
				una = 5
			}
			p.Expect(seg{Flags: ".", Seq: sb(una), Ack: 1, Payload: segData(data, una), Check: tcptest.IgnorePSH})
			if n := st.RetransmitTimeouts.Load(); n != 1 {
				t.Errorf("RTOs %d, want 1", n)
			}
		})
	}
}

// writeInitialWindow writes segs full segments on ep and expects the
// initial window's ten to leave at once, the rest held back.
func writeInitialWindow(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, segs int) []byte {
	t.Helper()
	data := payload(0, segs*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 10; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	return data
}
