package tcp_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestPacketRestSameWire: output sends the full segments that follow the
// first of a packet in one step (sendPacketRest), and the wire sees what
// it saw when every segment went through sendNewData on its own: the same
// segments, cut into the same GSO packets at the same instants, and the
// same events and counters. A seeded peer drives the connection through
// slow start, windows it narrows and opens, segments it loses and SACKs
// around, retransmission timeouts, a link queue that fills (TCP small
// queues) or refuses packets, ECN's echoes, and the FIN, under CUBIC, Reno
// or BBR, paced or not; each seed runs both ways and the transcripts must
// match line for line.
func TestPacketRestSameWire(t *testing.T) {
	for seed := range 32 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			one, gsoOne := packetRestRun(t, uint64(seed), true)
			batched, gso := packetRestRun(t, uint64(seed), false)
			if gso == 0 {
				t.Fatal("the program sent no GSO packet: it tests nothing")
			}
			if one == batched {
				return
			}
			a, b := strings.Split(one, "\n"), strings.Split(batched, "\n")
			i := 0
			for i < min(len(a), len(b)) && a[i] == b[i] {
				i++
			}
			lo := max(i-5, 0)
			t.Fatalf("the transcripts part at line %d (%d GSO packets one segment at a time, %d batched)\none segment at a time:\n%s\nbatched:\n%s",
				i+1, gsoOne, gso, strings.Join(a[lo:min(i+5, len(a))], "\n"), strings.Join(b[lo:min(i+5, len(b))], "\n"))
		})
	}
}

// packetRestRun runs the program of seed and returns its transcript: the
// peer's trace of every segment each way, the engine's events and its
// counters; and the number of GSO packets the engine sent.
func packetRestRun(t *testing.T, seed uint64, onePerSegment bool) (string, int) {
	var mu sync.Mutex
	var evs []string
	obs := func(ev event.Event) {
		// Each connection draws its ISS and its timestamps' offset at
		// random: the segment an event quotes, in absolute numbers, is
		// left out (the peer's trace has it in relative ones).
		s := quotedSegment.ReplaceAllString(ev.String(), "")
		mu.Lock()
		evs = append(evs, s)
		mu.Unlock()
	}
	// The seed also picks the congestion control, pacing and ECN, whose
	// rules have a say in what a packet carries.
	opts := tcp.Options{Observer: obs, SendBufferSize: 4 << 20,
		CongestionControl: []string{"cubic", "reno", "bbr"}[seed%3], Pacing: seed%4 == 1}
	syn := seg{MSS: 1460, SACKPerm: true, WS: 7}
	ecn := seed%5 == 2
	if ecn {
		opts.ECN = tcp.ECNOn
		syn.Flags = "EW" // the peer's SYN asks (RFC 3168 6.1.1)
	}
	p, ep := tcptest.Established(t, tcptest.WithGSO(), tcptest.WithTimestamps(),
		tcptest.WithSynOptions(syn), tcptest.WithTCP(opts))
	tcp.SendOnePerSegment(p.TCP, onePerSegment)
	rng := rand.New(rand.NewPCG(seed, 0x7ac7))

	// What the peer holds, relative to tapstack's ISS: every byte below
	// ack, and the ranges above it it SACKs.
	ack := uint32(1)
	var held [][2]uint32
	written, closed := 0, false
	lossEvery := 4 + rng.IntN(30)        // about one segment in lossEvery is lost
	aligned := seed%2 == 0               // every write full segments: the FIN rides on a full one
	total := (100 + rng.IntN(400)) << 10 // written in all, then the FIN
	for range 600 {
		switch op := rng.IntN(12); {
		case op < 2 && !closed:
			n := 1 + rng.IntN(100<<10)
			if aligned {
				n = 1448 * (1 + rng.IntN(70)) // full segments, to the FIN
			}
			w, _ := ep.Write(payload(written, n))
			written += w
			if written >= total {
				ep.Close() // its FIN queued behind data not yet sent
				closed = true
			}
		case op < 7:
			for _, s := range p.Drain() {
				n := uint32(s.Len)
				if strings.Contains(s.Flags, "F") {
					n++
				}
				if n == 0 || rng.IntN(lossEvery) == 0 {
					continue // a bare ACK, or a lost segment
				}
				held = addRange(held, [2]uint32{s.Seq, s.Seq + n})
			}
			for len(held) > 0 && held[0][0] <= ack {
				ack = max(ack, held[0][1])
				held = held[1:]
			}
			var sack [][2]uint32
			for i := len(held) - 1; i >= 0 && len(sack) < 3; i-- {
				sack = append(sack, held[i])
			}
			// A window of 2 KiB to 256 KiB (the peer's shift is 7),
			// narrowed and opened at random; of 256 KiB while the
			// writes are full segments, as a window that cuts a
			// segment short shifts the rest off the MSS.
			win := uint16(16 << rng.IntN(8))
			if aligned {
				win = 16 << 7
			}
			flags := "."
			if ecn && rng.IntN(8) == 0 {
				flags = "E." // a router marked CE: the peer echoes it
			}
			p.Inject(seg{Flags: flags, Seq: 1, Ack: ack, Win: win, SACK: sack})
		case op == 7:
			// The link's queue: busy after a few more frames (TCP
			// small queues hold new data back), or not at all.
			room := 1 << 20
			if rng.IntN(3) == 0 {
				room = rng.IntN(6)
			}
			p.SetLinkRoom(room)
		case op == 8 && rng.IntN(4) == 0:
			p.RefuseNext(1 + rng.IntN(2)) // the link refuses (refused.go)
		default:
			p.Advance(time.Duration(1+rng.IntN(400)) * time.Millisecond)
		}
	}
	p.Drain()
	ep.SyncEvents()
	mu.Lock()
	defer mu.Unlock()
	st := p.TCP.Stats()
	counters := fmt.Sprintf("segments out %d, retransmitted %d, GSO packets %d",
		st.SegmentsOut.Load(), st.Retransmits.Load(), st.GSOPackets.Load())
	trace := tsOption.ReplaceAllString(p.Trace(), "TS")
	return trace + "\n" + strings.Join(evs, "\n") + "\n" + counters, p.GSOPackets
}

var (
	tsOption      = regexp.MustCompile(`TS val \d+ ecr \d+`)
	quotedSegment = regexp.MustCompile(`\d+ > \d+: Flags [^)]*`)
)

// addRange adds r to the sorted, disjoint ranges rs, merging where they
// touch.
func addRange(rs [][2]uint32, r [2]uint32) [][2]uint32 {
	rs = append(rs, r)
	slices.SortFunc(rs, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
	out := rs[:1]
	for _, x := range rs[1:] {
		if last := &out[len(out)-1]; x[0] <= last[1] {
			last[1] = max(last[1], x[1])
		} else {
			out = append(out, x)
		}
	}
	return out
}
