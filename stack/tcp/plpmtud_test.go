package tcp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// mtuNotes collects the notes of the path MTU events an engine emits.
func mtuNotes(notes *[]string) tcp.Options {
	return tcp.Options{Observer: func(ev event.Event) {
		if ev.Kind == event.KindPathMTU {
			*notes = append(*notes, ev.Note)
		}
	}}
}

// wantNotes checks the path MTU notes, each against a part of it.
func wantNotes(t *testing.T, notes []string, want ...string) {
	t.Helper()
	if len(notes) != len(want) {
		t.Fatalf("notes %q, want %d", notes, len(want))
	}
	for k := range want {
		if !strings.Contains(notes[k], want[k]) {
			t.Errorf("note %d %q, want %q in it", k, notes[k], want[k])
		}
	}
}

// blackHole sends one full segment into a path MTU black hole (the peer
// never sees it, and no ICMP comes back) and lets the engine's timers
// fire n times; it returns the sizes of the segments each firing sent.
// The handshake measured rtt (10 ms), so the RTO is 210 ms: the tail loss
// probe goes first, 0.21 s after the segment (2·SRTT, clamped to the
// RTO), then the timeouts come at 0.42, 0.84, 1.68, 3.36 and 6.72 s, the
// RTO doubling.
func blackHole(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, n int) [][]int {
	t.Helper()
	sendSegments(t, p, ep, 1)
	var sizes [][]int
	for range n {
		p.Advance(ep.Info().RTO)
		var got []int
		for _, s := range p.Drain() {
			got = append(got, s.Len)
		}
		sizes = append(sizes, got)
	}
	return sizes
}

// TestBlackHoleDetection: a full segment that keeps timing out, with no
// ICMP error, is what a path MTU black hole looks like (RFC 2923 2.1).
// With probing off, as Linux's default, the engine sends the same 1,460
// bytes at every timeout. Once the retransmission timer has fired again
// after the data waited 15 minimum RTOs (3 s: the fourth timeout, at
// 3.36 s, as Linux's retransmits_timed_out with tcp_retries1), MTUProbingBlackHole
// drops the MSS to BaseMSS (1,024) and the timeout's retransmission goes
// in two pieces; the next timeout halves it. MTUProbingOn, searching from
// the handshake on, halves at once from BaseMSS's MTU.
func TestBlackHoleDetection(t *testing.T) {
	for _, tc := range []struct {
		mode tcp.MTUProbing
		want [][]int
		mss  int
	}{
		{tcp.MTUProbingOff, [][]int{{1460}, {1460}, {1460}, {1460}, {1460}, {1460}}, 1460},
		{tcp.MTUProbingBlackHole, [][]int{{1460}, {1460}, {1460}, {1460}, {1024, 436}, {512, 512, 436}}, 512},
		{tcp.MTUProbingOn, [][]int{{1460}, {1460}, {1460}, {1460}, {512, 512, 436}, {256, 256, 256, 256, 256, 180}}, 256},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			var notes []string
			o := mtuNotes(&notes)
			o.MTUProbing = tc.mode
			p, ep := rttPeer(t, o)
			got := blackHole(t, p, ep, 6)
			for k := range got {
				if !equalInts(got[k], tc.want[k]) {
					t.Errorf("firing %d (the probe, then timeouts) sent segments of %v bytes, want %v", k+1, got[k], tc.want[k])
				}
			}
			// The route's MTU stands, as Linux's tcpi_pmtu: the hole
			// shows as an MSS below it.
			if i := ep.Info(); i.SndMSS != tc.mss || i.PathMTU != 1500 {
				t.Errorf("MSS %d, path MTU %d; want %d, 1500", i.SndMSS, i.PathMTU, tc.mss)
			}
			holes := p.TCP.Stats().MTUBlackHoles.Load()
			if tc.mode == tcp.MTUProbingOff {
				if holes != 0 || len(notes) != 0 {
					t.Errorf("probing off: %d black holes, notes %q", holes, notes)
				}
				return
			}
			if holes != 2 || len(notes) != 2 || !strings.Contains(notes[0], "black hole suspected (4 timeouts") {
				t.Errorf("%d black holes, notes %q; want 2, the first at the fourth timeout", holes, notes)
			}
		})
	}
}

// probing drives a connection past a black hole at the fourth timeout
// (MSS 1,024) and acknowledges it, then moves data in rounds, each
// acknowledging everything sent, until a segment larger than the MSS
// leaves: the probe (RFC 4821 7.4). It returns the probe and the segments
// sent with it.
func probing(t *testing.T, o tcp.Options, opts ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint, seg, []seg) {
	t.Helper()
	o.MTUProbing = tcp.MTUProbingBlackHole
	p, ep := rttPeer(t, o, opts...)
	blackHole(t, p, ep, 5)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	if i := ep.Info(); i.SndMSS != 1024 || i.SendQueued != 0 {
		t.Fatalf("after the black hole: MSS %d, %d bytes queued; want 1024, 0", i.SndMSS, i.SendQueued)
	}
	next := sb(2)
	for range 20 {
		if _, err := ep.Write(payload(0, 64<<10)); err != nil {
			t.Fatal(err)
		}
		out := p.Drain()
		for k, s := range out {
			if s.Len > 1024 {
				return p, ep, s, out[k:]
			}
			next = s.Seq + uint32(s.Len)
		}
		p.Advance(rtt)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: next})
	}
	t.Fatalf("no probe after 20 rounds: cwnd %d", ep.Info().Cwnd)
	return nil, nil, seg{}, nil
}

// TestMTUProbeSuccess: after a black hole cut the MSS to 1,024, the
// window grows to 11 segments and a probe leaves: one segment of the size
// halfway between the MTU known to pass (1,064) and the handshake's
// (1,500), 1,282 bytes, a payload of 1,242, followed by at least four
// segments of the MSS so that loss detection could judge it. Its ACK
// raises the MSS to 1,242; the window keeps its bytes.
func TestMTUProbeSuccess(t *testing.T) {
	var notes []string
	p, ep, probe, after := probing(t, mtuNotes(&notes))
	if probe.Len != 1242 {
		t.Fatalf("probe of %d bytes, want 1242", probe.Len)
	}
	if len(after) < 5 {
		t.Errorf("the probe was followed by %d segments, want at least 4", len(after)-1)
	}
	cwnd := ep.Info().Cwnd
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: probe.Seq + uint32(probe.Len)})
	i := ep.Info()
	if i.SndMSS != 1242 || i.Cwnd < cwnd {
		t.Errorf("after the probe's ACK: MSS %d, cwnd %d; want 1242, at least %d", i.SndMSS, i.Cwnd, cwnd)
	}
	st := p.TCP.Stats()
	if st.MTUProbeSuccesses.Load() != 1 || st.MTUProbeFailures.Load() != 0 {
		t.Errorf("successes %d, failures %d; want 1, 0", st.MTUProbeSuccesses.Load(), st.MTUProbeFailures.Load())
	}
	// The ACK lets the next probe go at once, halfway between 1,282
	// and 1,500.
	wantNotes(t, notes, "black hole suspected", "MTU probe: 1282 bytes", "MTU probe of 1282 bytes acknowledged (RFC 4821): MSS 1024 → 1242", "MTU probe: 1391 bytes")
}

// TestMTUProbeLost: the probe is lost, and the segments after it arrive.
// RACK finds it lost, but a probe's loss says its size does not get
// through, not that the network is congested (RFC 4821 7.6.2; Linux's
// tcp_fastretrans_alert): no fast recovery, the window stays, the
// search's upper end drops below the probe, and its data goes again at
// the MSS, in two segments.
func TestMTUProbeLost(t *testing.T) {
	var notes []string
	p, ep, probe, after := probing(t, mtuNotes(&notes))
	last := after[len(after)-1]
	cwnd := ep.Info().Cwnd
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: probe.Seq, SACK: [][2]uint32{{after[1].Seq, last.Seq + uint32(last.Len)}}})
	p.Advance(rtt) // RACK's reordering window passes
	var resent []int
	for _, s := range p.Drain() {
		if s.Seq >= probe.Seq && s.Seq < probe.Seq+uint32(probe.Len) {
			resent = append(resent, s.Len)
		}
	}
	if !equalInts(resent, []int{1024, 218}) {
		t.Errorf("the probe's data went again as %v, want [1024 218]", resent)
	}
	i := ep.Info()
	st := p.TCP.Stats()
	if i.CAState != "open" || i.Cwnd < cwnd || st.FastRecoveries.Load() != 0 {
		t.Errorf("after the probe's loss: %s, cwnd %d (was %d), %d fast recoveries; want open, no reduction, none",
			i.CAState, i.Cwnd, cwnd, st.FastRecoveries.Load())
	}
	if st.MTUProbeFailures.Load() != 1 || i.SndMSS != 1024 {
		t.Errorf("failures %d, MSS %d; want 1, 1024", st.MTUProbeFailures.Load(), i.SndMSS)
	}
	// The next probe goes at once, halfway between 1,064 and 1,281.
	wantNotes(t, notes, "black hole suspected", "MTU probe: 1282 bytes", "MTU probe of 1282 bytes lost (RFC 4821): no congestion, the search is between 1064 and 1281", "MTU probe: 1172 bytes")
	p.Inject(seg{Flags: ".", Seq: 1, Ack: last.Seq + uint32(last.Len)})
	if i := ep.Info(); i.CAState != "open" {
		t.Errorf("after the repair: %s", i.CAState)
	}
}

// probingBehind is probing, but each round leaves its last segment
// unacknowledged, so that the probe goes with data in flight ahead of
// it. It returns the round the probe left in, the probe's index in it,
// and SND.UNA.
func probingBehind(t *testing.T, o tcp.Options) (*tcptest.Peer, *tcp.Endpoint, []seg, int, uint32) {
	t.Helper()
	o.MTUProbing = tcp.MTUProbingBlackHole
	p, ep := rttPeer(t, o)
	blackHole(t, p, ep, 5)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	una := sb(2)
	for range 20 {
		if _, err := ep.Write(payload(0, 64<<10)); err != nil {
			t.Fatal(err)
		}
		out := p.Drain()
		for k, s := range out {
			if s.Len > 1024 {
				return p, ep, out, k, una
			}
			if k < len(out)-1 {
				una = s.Seq + uint32(s.Len)
			}
		}
		p.Advance(rtt)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: una})
	}
	t.Fatalf("no probe after 20 rounds: cwnd %d", ep.Info().Cwnd)
	return nil, nil, nil, 0, 0
}

// TestMTUProbeLostInRecovery: a segment in flight before the probe and
// the probe (1,282 bytes, more than the path carries) are lost, the rest
// arrives. Fast recovery sends both again, the probe's data in pieces of
// the MSS (1,024), and they arrive. A probe succeeds only when the probe
// itself is delivered (RFC 4821 7.5, 7.6): the acknowledgment of its data
// resent in pieces must not raise the MSS to 1,242 (retransmitSeg ends
// the probe when its data goes again).
func TestMTUProbeLostInRecovery(t *testing.T) {
	var notes []string
	p, ep, out, k, una := probingBehind(t, mtuNotes(&notes))
	probe := out[k]
	if una >= probe.Seq {
		t.Fatalf("nothing in flight before the probe %v (SND.UNA %d)", probe, una)
	}
	last := out[len(out)-1]
	end := last.Seq + uint32(last.Len)
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: una, SACK: [][2]uint32{{probe.Seq + uint32(probe.Len), end}}})
	p.Advance(rtt)
	for _, s := range p.Drain() {
		if s.Seq >= probe.Seq && s.Seq < probe.Seq+uint32(probe.Len) && s.Len > 1024 {
			t.Fatalf("the probe went again whole: %v", s)
		}
	}
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: end})
	if i, n := ep.Info(), p.TCP.Stats().MTUProbeSuccesses.Load(); i.SndMSS != 1024 || n != 0 {
		t.Errorf("after the probe's data arrived in pieces of the MSS: MSS %d, %d probe successes; want 1024, 0 (notes %q)", i.SndMSS, n, notes)
	}
}

// TestBlackHoleSearchConverges: a peer behind a 1,400-byte black hole,
// on the fake clock: every segment whose packet is longer than 1,400
// bytes vanishes, the peer acknowledges the others with SACK blocks for
// what arrived out of order, one round trip at a time. 2 MiB go through
// whole. The black hole is found at the fourth timeout, and the search
// (RFC 4821 7.2) ends with packets within tcp_probe_threshold (8 bytes)
// of the hole, never above it. The probes the hole swallows cost no
// fast recovery: only the timeouts before the hole was found reduced
// the window.
func TestBlackHoleSearchConverges(t *testing.T) {
	const hole = 1400
	o := tcp.Options{MTUProbing: tcp.MTUProbingBlackHole}
	p, ep := rttPeer(t, o)
	const size = 2 << 20
	data := payload(0, size)
	written := 0
	// What arrived, relative to the stack's ISS: [start, end) ranges in
	// order, the first from 1.
	var got [][2]uint32
	arrive := func(s, e uint32) { got = addRange(got, [2]uint32{s, e}) }
	largest := 0
	for round := 0; round < 2000; round++ {
		if written < size {
			n, _ := ep.Write(data[written:])
			written += n
		}
		for _, s := range p.Drain() {
			if s.Len == 0 {
				continue
			}
			if s.Len+40 > hole {
				continue // swallowed, no ICMP
			}
			largest = max(largest, s.Len)
			arrive(s.Seq, s.Seq+uint32(s.Len))
		}
		p.Advance(rtt)
		if len(got) == 0 || got[0][0] != 1 {
			// Nothing new at the left edge: no ACK, the timers run.
			p.Advance(100 * time.Millisecond)
			continue
		}
		ack := seg{Flags: ".", Seq: 1, Ack: got[0][1]}
		for k := len(got) - 1; k >= 1 && len(ack.SACK) < 3; k-- {
			ack.SACK = append(ack.SACK, got[k])
		}
		p.Inject(ack)
		if got[0][1] == 1+size {
			break
		}
	}
	i, st := ep.Info(), p.TCP.Stats()
	t.Logf("MSS %d; %d black holes, %d probes, %d acknowledged, %d lost; %d timeouts, %d fast recoveries; largest segment through %d",
		i.SndMSS, st.MTUBlackHoles.Load(), st.MTUProbes.Load(), st.MTUProbeSuccesses.Load(), st.MTUProbeFailures.Load(),
		st.RetransmitTimeouts.Load(), st.FastRecoveries.Load(), largest)
	if len(got) != 1 || got[0] != [2]uint32{1, 1 + size} {
		t.Fatalf("the peer has %v, want all %d bytes", got, size)
	}
	if mtu := i.SndMSS + 40; mtu > hole || mtu <= hole-8 {
		t.Errorf("MTU %d at the end, want (%d, %d]", mtu, hole-8, hole)
	}
	if st.MTUBlackHoles.Load() != 1 || st.MTUProbeFailures.Load() == 0 || st.FastRecoveries.Load() != 0 {
		t.Errorf("%d black holes, %d probes lost, %d fast recoveries; want 1, some, none", st.MTUBlackHoles.Load(), st.MTUProbeFailures.Load(), st.FastRecoveries.Load())
	}
}
