package tcp_test

import (
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// bottleneck is a path on the fake clock between the engine and the
// scripted peer: each data segment the engine sends waits its turn at
// rate bytes a second, then delay; the peer acknowledges every segment as
// it arrives, the ACK taking delay back. drop, if set, loses a segment
// the first time it crosses (by its index among the data segments); the
// peer then SACKs what arrives above the hole.
type bottleneck struct {
	p     *tcptest.Peer
	ep    *tcp.Endpoint
	rate  float64 // bytes a second
	delay time.Duration
	drop  func(n int) bool
	// police, if set, is a token bucket policer before the bottleneck:
	// a segment finding fewer tokens than its bytes is dropped.
	police *policer

	now, linkFree time.Duration
	sent          int      // data segments that crossed or were dropped
	acks          []ackDue // ACKs on their way back, in order
	rcvNxt        uint32   // the receiver's next expected (relative)
	ooo           [][2]uint32
	written       int
	delivered     uint32
}

type policer struct {
	rate, depth, tokens float64 // bytes a second, bytes, bytes
	last                time.Duration
}

// admit takes n bytes' tokens at now, if the bucket has them.
func (p *policer) admit(now time.Duration, n int) bool {
	p.tokens = min(p.depth, p.tokens+p.rate*(now-p.last).Seconds())
	p.last = now
	if p.tokens < float64(n) {
		return false
	}
	p.tokens -= float64(n)
	return true
}

type ackDue struct {
	at       time.Duration
	seq, end uint32
	lost     bool
}

// run moves the clock on for d, in steps of step, keeping the send
// buffer full; each step calls watch.
func (b *bottleneck) run(t *testing.T, d, step time.Duration, watch func(now time.Duration)) {
	t.Helper()
	for end := b.now + d; b.now < end; {
		for {
			n, err := b.ep.Write(payload(b.written, 64<<10))
			b.written += n
			if err != nil || n < 64<<10 {
				break
			}
		}
		for _, s := range b.p.Drain() {
			if s.Len == 0 {
				continue
			}
			at := max(b.now, b.linkFree) + time.Duration(float64(s.Len)/b.rate*float64(time.Second))
			b.linkFree = at
			lost := b.drop != nil && b.drop(b.sent) || b.police != nil && !b.police.admit(b.now, s.Len)
			b.sent++
			b.acks = append(b.acks, ackDue{at: at + 2*b.delay, seq: s.Seq, end: s.Seq + uint32(s.Len), lost: lost})
		}
		for len(b.acks) > 0 && b.acks[0].at <= b.now {
			a := b.acks[0]
			b.acks = b.acks[1:]
			if a.lost {
				continue
			}
			b.receive(a.seq, a.end)
		}
		if watch != nil && b.now%(2*step) == 0 {
			watch(b.now)
		}
		b.p.Advance(step)
		b.now += step
	}
}

// receive takes a segment at the receiver and acknowledges it, with
// SACK blocks for what is held above a hole.
func (b *bottleneck) receive(seq, end uint32) {
	switch {
	case seq == b.rcvNxt:
		b.rcvNxt = end
		for again := true; again; {
			again = false
			for i, blk := range b.ooo {
				if blk[0] <= b.rcvNxt {
					b.rcvNxt = max(b.rcvNxt, blk[1])
					b.ooo = append(b.ooo[:i], b.ooo[i+1:]...)
					again = true
					break
				}
			}
		}
	case seq > b.rcvNxt:
		merged := false
		for i := range b.ooo {
			if b.ooo[i][1] == seq {
				b.ooo[i][1], merged = end, true
			}
		}
		if !merged {
			b.ooo = append(b.ooo, [2]uint32{seq, end})
		}
	}
	ack := seg{Flags: ".", Seq: 1, Ack: b.rcvNxt}
	for i := len(b.ooo) - 1; i >= 0 && len(ack.SACK) < 4; i-- {
		ack.SACK = append(ack.SACK, b.ooo[i])
	}
	b.p.Inject(ack)
	b.delivered = b.rcvNxt
}

// newBottleneck connects to the peer over the path, the handshake taking
// its round trip.
func newBottleneck(t *testing.T, cc string, rate float64, delay time.Duration) *bottleneck {
	t.Helper()
	p, l := tcptest.Listen(t, tcptest.WithTCP(tcp.Options{CongestionControl: cc, SendBufferSize: 1 << 20}))
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Advance(2 * delay)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return &bottleneck{p: p, ep: ep, rate: rate, delay: delay, rcvNxt: 1}
}

// TestBBRModel: BBR over a bottleneck of 1,460,000 bytes a second (one
// segment a millisecond) with a round trip of 20 ms, 20 segments in the
// pipe, and the peer's 64 KiB window above twice that. Startup finds
// the rate and leaves after three rounds without 25% more; drain empties
// the queue startup built; probe_bw cycles its pacing gain through 1.25,
// 0.75 and 1, pacing at the bottleneck's rate less 1%; the window is
// twice the BDP and a little, so the queue stays below a BDP and the
// smoothed RTT below twice the path's; ten seconds without a lower RTT
// bring probe_rtt, four segments in flight for 200 ms, and then
// probe_bw again. The events say each change of mode.
func TestBBRModel(t *testing.T) {
	const rate, delay = 1460e3, 10 * time.Millisecond
	b := newBottleneck(t, "bbr", rate, delay)
	var modes []string
	gains := map[float64]bool{}
	var probeRTTCwnd uint32
	probeRTTFlight := ^uint32(0)
	maxRTT := time.Duration(0)
	b.run(t, 12*time.Second, time.Millisecond, func(now time.Duration) {
		i := b.ep.Info()
		m := i.BBR
		if m == nil {
			t.Fatalf("%v: no BBR model in Info (congestion control %q)", now, i.CongestionControl)
		}
		if len(modes) == 0 || modes[len(modes)-1] != m.Mode {
			modes = append(modes, m.Mode)
			b.p.Logf("BBR %s at %v: bw %d, min RTT %v, cwnd %d, in flight %d", m.Mode, now, m.Bandwidth, m.MinRTT, i.Cwnd, i.InFlight)
		}
		switch m.Mode {
		case "probe_bw":
			gains[m.PacingGain] = true
			if now > 2*time.Second && now < 9*time.Second {
				maxRTT = max(maxRTT, i.RTT)
			}
		case "probe_rtt":
			probeRTTCwnd = max(probeRTTCwnd, i.Cwnd)
			probeRTTFlight = min(probeRTTFlight, i.InFlight)
		}
	})
	i := b.ep.Info()
	want := "startup drain probe_bw probe_rtt probe_bw"
	if got := strings.Join(modes, " "); got != want {
		t.Errorf("modes %s; want %s", got, want)
	}
	if bw := float64(i.BBR.Bandwidth); bw < rate*0.98 || bw > rate*1.02 {
		t.Errorf("bandwidth estimate %.0f bytes/s, want the bottleneck's %.0f", bw, rate)
	}
	if pr := float64(i.PacingRate); i.BBR.PacingGain == 1 && (pr < rate*0.97 || pr > rate) {
		t.Errorf("pacing rate %.0f at gain 1; want the bottleneck's less 1%%, %.0f", pr, rate*0.99)
	}
	for _, g := range []float64{1.25, 0.75, 1} {
		if !gains[g] {
			t.Errorf("probe_bw never paced at gain %v (gains seen %v)", g, gains)
		}
	}
	if base := 2*delay + time.Millisecond; maxRTT > 2*base {
		t.Errorf("smoothed RTT up to %v in probe_bw; the path's is %v: the queue grew past a BDP", maxRTT, base)
	}
	if probeRTTCwnd == 0 || probeRTTCwnd > 4*1460 || probeRTTFlight > 4*1460 {
		t.Errorf("in probe_rtt a window up to %d bytes and in flight down to %d; want four segments", probeRTTCwnd, probeRTTFlight)
	}
	if i.Retransmits != 0 {
		t.Errorf("%d retransmissions on a path that lost nothing", i.Retransmits)
	}
}

// TestBBRLoss: 2% of the segments are lost, one in fifty, on the same
// path. CUBIC halves its window at each loss (well, by 30%) and keeps
// the pipe far from full; BBR takes a segment off its window per loss
// and conserves packets for a round, but its model of the path stands,
// so it keeps sending near the bottleneck's rate: over 10 seconds it
// delivers more than 80% of what the bottleneck carries (86% when
// written), CUBIC less than half (36%). The fake clock and the fixed
// drops make the run repeat exactly.
func TestBBRLoss(t *testing.T) {
	const rate, delay, span = 1460e3, 10 * time.Millisecond, 10 * time.Second
	share := map[string]float64{}
	for _, cc := range []string{"bbr", "cubic"} {
		b := newBottleneck(t, cc, rate, delay)
		b.drop = func(n int) bool { return n%50 == 49 }
		b.run(t, span, time.Millisecond, nil)
		i := b.ep.Info()
		share[cc] = float64(b.delivered) / (rate * span.Seconds())
		t.Logf("%s: %.0f%% of the bottleneck's capacity delivered; %d retransmitted, cwnd %d, model %+v",
			cc, 100*share[cc], i.Retransmits, i.Cwnd, i.BBR)
	}
	if share["bbr"] < 0.8 || share["cubic"] > 0.5 {
		t.Errorf("delivered %.0f%% of the capacity with BBR, %.0f%% with CUBIC; want more than 80%% and less than 50%%",
			100*share["bbr"], 100*share["cubic"])
	}
}

// TestSetCongestionControl: a connection changes its congestion control
// as a Linux socket does with TCP_CONGESTION. From CUBIC to BBR it keeps
// its window, is paced, and BBR's model takes the next ACK; back to CUBIC
// it is no longer paced, the window stays, and CUBIC grows it again. An
// unknown name is ENOENT and changes nothing.
func TestSetCongestionControl(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	if err := ep.SetCongestionControl("vegas"); err != syscall.ENOENT {
		t.Errorf("an unknown name: %v, want ENOENT", err)
	}
	if _, err := ep.Write(payload(0, 30*1460)); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Drain()); got != 10 {
		t.Fatalf("%d segments in the initial window, want 10", got)
	}
	p.Advance(rtt)
	p.Inject(sackAck(11))
	before := ep.Info()
	if before.CongestionControl != "cubic" || before.Paced || before.BBR != nil {
		t.Fatalf("at first: %q, paced %v, model %v", before.CongestionControl, before.Paced, before.BBR)
	}
	if err := ep.SetCongestionControl("bbr"); err != nil {
		t.Fatal(err)
	}
	i := ep.Info()
	if i.CongestionControl != "bbr" || !i.Paced || i.BBR == nil || i.Cwnd != before.Cwnd || i.Ssthresh < 1<<30 {
		t.Fatalf("BBR: %q, paced %v, model %v, cwnd %d (was %d), ssthresh %d", i.CongestionControl, i.Paced, i.BBR, i.Cwnd, before.Cwnd, i.Ssthresh)
	}
	p.Drain()
	p.Advance(rtt)
	p.Inject(sackAck(31))
	if i := ep.Info(); i.BBR.Mode != "startup" || i.BBR.Bandwidth == 0 || i.PacingRate == 0 {
		t.Errorf("BBR after an ACK: model %+v, pacing rate %d", i.BBR, i.PacingRate)
	}
	if err := ep.SetCongestionControl("cubic"); err != nil {
		t.Fatal(err)
	}
	if i := ep.Info(); i.CongestionControl != "cubic" || i.Paced || i.BBR != nil {
		t.Errorf("back to CUBIC: %q, paced %v, model %v", i.CongestionControl, i.Paced, i.BBR)
	}
}

// TestBBRPolicer: a token bucket policer at half the bottleneck's rate
// (730,000 bytes a second, 20 segments deep) drops what BBR sends above
// it. Two intervals of four round trips or more, each ending in a loss
// and losing 20% of what it delivered, at rates within an eighth of each
// other, are the policer's (lt_bw): BBR paces at their mean, at gain 1,
// for 48 round trips (about 1.2 s here), and then lets its own filter
// take over again, which by then holds the policer's rate too, so the
// losses stay below the 20% that would find the policer again (as in
// Linux). Over 8 s it delivers the policer's rate and retransmits less
// than a seventh of what it sends.
func TestBBRPolicer(t *testing.T) {
	const rate, delay, police = 1460e3, 10 * time.Millisecond, 730e3
	b := newBottleneck(t, "bbr", rate, delay)
	b.police = &policer{rate: police, depth: 20 * 1460, tokens: 20 * 1460}
	var from, to time.Duration
	b.run(t, 8*time.Second, time.Millisecond, func(now time.Duration) {
		m := b.ep.Info().BBR
		switch {
		case m.Policed && from == 0:
			from = now
			b.p.Logf("policed at %v: %+v", now, m)
			if bw := float64(m.Bandwidth); bw < police*0.85 || bw > police*1.15 {
				t.Errorf("policed at %v at %.0f bytes/s; the policer's rate is %.0f", now, bw, police)
			}
		case m.Policed && m.Mode == "probe_bw" && m.PacingGain != 1:
			t.Errorf("policed at %v, in probe_bw at gain %v, want 1", now, m.PacingGain)
		case !m.Policed && from != 0 && to == 0:
			to = now
			b.p.Logf("no longer policed at %v: %+v", now, m)
		}
	})
	i := b.ep.Info()
	delivered := float64(b.delivered) / 8
	t.Logf("policed from %v to %v; at the end %+v; %d retransmitted of %d sent; %.0f bytes/s delivered",
		from, to, i.BBR, i.Retransmits, b.sent, delivered)
	if from == 0 || from > 2*time.Second || to-from < time.Second || to-from > 2*time.Second {
		t.Errorf("policed from %v to %v; want from the first 2 s, for 48 round trips of about 25 ms", from, to)
	}
	if delivered < police*0.9 || i.Retransmits*7 > uint64(b.sent) {
		t.Errorf("%.0f bytes/s delivered, %d of %d segments retransmitted; want the policer's %.0f, less than a seventh",
			delivered, i.Retransmits, b.sent, police)
	}
}

// TestBBRMinGSOSegments: below 1.2 Mbit/s BBR puts one segment in a
// packet, as Linux's bbr_min_tso_segs overrides tcp_min_tso_segs: a
// packet of two at 100,000 bytes a second would be a burst of 29 ms.
// CUBIC on the same link and cap keeps Options.MinGSOSegments, two.
func TestBBRMinGSOSegments(t *testing.T) {
	for _, tc := range []struct {
		cc      string
		packets int
	}{{"bbr", 0}, {"cubic", 2}} {
		p, ep := rttPeer(t, tcp.Options{CongestionControl: tc.cc}, tcptest.WithGSO())
		ep.SetMaxPacingRate(100000)
		if _, err := ep.Write(payload(0, 4*1460)); err != nil {
			t.Fatal(err)
		}
		for k := range 4 {
			p.Expect(seg{Flags: ".", Seq: sb(k + 1), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
			p.Advance(30 * time.Millisecond) // the pacing timer
		}
		if p.GSOPackets != tc.packets {
			t.Errorf("%s at 100,000 bytes/s: %d GSO packets for 4 segments, want %d", tc.cc, p.GSOPackets, tc.packets)
		}
	}
}

// TestSetCongestionControlKeepsUserPacing: pacing the user asked for
// (SetMaxPacingRate, here uncapped) stays when BBR, which paces too,
// gives way to CUBIC; only pacing made for BBR goes with it.
func TestSetCongestionControlKeepsUserPacing(t *testing.T) {
	_, ep := rttPeer(t, tcp.Options{})
	ep.SetMaxPacingRate(math.MaxUint64)
	for _, cc := range []string{"bbr", "cubic"} {
		if err := ep.SetCongestionControl(cc); err != nil {
			t.Fatal(err)
		}
	}
	if i := ep.Info(); !i.Paced || i.MaxPacingRate != math.MaxUint64 {
		t.Errorf("after bbr and back to cubic: paced %v, cap %d; want the user's uncapped pacing", i.Paced, i.MaxPacingRate)
	}
}
