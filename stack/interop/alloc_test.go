package interop

import (
	"net/netip"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestSteadyStateAllocs: data moving over an established connection
// between two tapstack stacks on tap.Pipe allocates nothing, whichever
// end, over IPv4 and IPv6, with and without the pipe's GSO, and through
// the fault middleware: the sender's segments, the
// receiver's ACKs, the timers armed and disarmed on the way, the pipe
// and gVisor's network layer, and package conn's blocking Read and Write.
// A round of 8 MiB (some 5,800 data segments and their ACKs) may cost at
// most a handful of allocations in the whole process, where one per
// segment would be thousands.
//
// Each round is counted on its own and the fewest allocations of a
// round are held to the limit, as in TestSteadyStateAllocsTAP. What a
// round may allocate beyond that is the pools' high-water mark rising:
// gVisor's packet buffers, views and chunks come from sync.Pools, so
// the number ever allocated is the most that were in use at once, and
// that depends on how far the reader fell behind the writer (pipe
// queue plus receive queue, bounded by the windows), which is the
// scheduler's doing on a 2-core machine. Profiled with every
// allocation sampled (runtime.MemProfileRate = 1) over 24 rounds of
// this test's connection: most rounds allocate 0-20 times, and one
// round in ten or twenty, at random and long after the windows stopped
// growing, 200-8,000 times, all of them in gVisor's pools' New functions
// (buffer views and chunks, PacketBuffers) and sync.Pool's chain
// growing. An allocation per segment, or per fifty (checked by adding
// one to sendPacket), shows in every round; a pool refilled once does
// not.
//
// The garbage collector is held off while the bytes move: a collection
// empties the sync.Pools, and refilling them is the collection's cost,
// not the segments'. (With nothing allocated per segment, a collection
// is not triggered by the transfer anyway.) Under the race detector
// sync.Pool drops a quarter of what it is given, on purpose, so the
// test skips.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	const (
		size   = 8 << 20
		warmup = 2    // rounds that open the windows and fill the pools
		rounds = 5    // rounds counted, each on its own
		limit  = 0.01 // allocations per wire segment, in the round that allocated least
	)
	// gVisor's IPv6 allocates 4 times for every packet it receives (its
	// header.IPv6PayloadIterator.Next boxes the payload header in an
	// interface, in parse.IPv6 and again in processExtensionHeaders), for
	// its own TCP as for tapstack's; IPv6 is allowed those, and nothing
	// more.
	const gVisorIPv6PerPacket = 4
	for _, tc := range []struct {
		name      string
		gso       bool
		ts, peer  netip.Prefix
		perPacket uint64 // allowed per packet received: gVisor's
		fault     bool   // the sender's frames pass tap.Fault (configured to do nothing)
	}{
		{"ipv4/nogso", false, tsPrefix4, peerPrefix4, 0, false},
		{"ipv4/gso", true, tsPrefix4, peerPrefix4, 0, false},
		{"ipv6/nogso", false, tsPrefix6, peerPrefix6, gVisorIPv6PerPacket, false},
		{"ipv6/gso", true, tsPrefix6, peerPrefix6, gVisorIPv6PerPacket, false},
		{"ipv4/fault", false, tsPrefix4, peerPrefix4, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa, pb := tap.Pipe(tap.WithPipeGSO(tc.gso), tap.WithPipeQueue(4096))
			opts := tcp.Options{Observer: func(event.Event) {}}
			var sndLink gstack.LinkEndpoint = pa
			if tc.fault {
				// What every frame a fault experiment does not hit
				// goes through: it must cost nothing either.
				sndLink = tap.NewFault(pa, tap.FaultConfig{Seed: 1})
			}
			snd, _ := newTapstack(t, sndLink, tc.ts, opts)
			rcv, _ := newTapstack(t, pb, tc.peer, opts)
			c, s := connectPair(t, snd, rcv, tc.peer)
			// Deadlines bound every call; they are set once, before the
			// count, as their timers allocate.
			setDeadlines(t, 2*time.Minute, c, s)
			move := mover(t, c, s, size)
			for range warmup {
				move()
			}
			segs := func() uint64 { return snd.TCP().Stats().SegmentsOut.Load() + rcv.TCP().Stats().SegmentsOut.Load() }
			// Packets received (a GSO packet is one), both stacks.
			pkts := func() uint64 { return snd.TCP().Stats().SegmentsIn.Load() + rcv.TCP().Stats().SegmentsIn.Load() }
			type round struct {
				segs, pkts uint64
				ours       int64 // allocations beyond gVisor's per packet received
			}
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			var counted []round
			for range rounds {
				s0, p0 := segs(), pkts()
				n := mallocsDuring(move)
				r := round{segs: segs() - s0, pkts: pkts() - p0}
				r.ours = int64(n) - int64(tc.perPacket*r.pkts)
				counted = append(counted, r)
			}
			least := counted[0]
			for _, r := range counted[1:] {
				if float64(r.ours)/float64(r.segs) < float64(least.ours)/float64(least.segs) {
					least = r
				}
			}
			t.Logf("%d rounds of %d MiB, {wire segments, packets received, allocations beyond gVisor's IPv6}: %v; fewest %.5f per segment", rounds, size>>20, counted, float64(least.ours)/float64(least.segs))
			if least.segs < 1000 {
				t.Fatalf("only %d segments moved in a round", least.segs)
			}
			if float64(least.ours) > limit*float64(least.segs) {
				t.Errorf("every round allocated, at least %d times for %d segments (%d packets received): the steady state allocates (at most %.0f allowed beyond %d per packet); see BenchmarkAllocsPerSegment with -memprofile", least.ours, least.segs, least.pkts, limit*float64(least.segs), tc.perPacket)
			}
		})
	}
}

// TestSteadyStateAllocsEcho: request and response over an established
// connection (BenchmarkAllocsPerEcho's pair) allocate nothing either: each
// exchange arms and disarms the retransmission timer at the client and
// the delayed ACK at the server, and blocks both ends' Read. 5,000
// exchanges, some 10,000 wire segments, may cost a handful of
// allocations, where one per exchange would be thousands.
func TestSteadyStateAllocsEcho(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	const exchanges, limit = 5000, 0.02
	echo, segs := echoPair(t)
	for range exchanges {
		echo() // pools filled
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	s0 := segs()
	for range exchanges {
		echo()
	}
	runtime.ReadMemStats(&m1)
	n, allocs := segs()-s0, m1.Mallocs-m0.Mallocs
	t.Logf("%d exchanges, %d wire segments: %d allocations (%.5f per segment)", exchanges, n, allocs, float64(allocs)/float64(n))
	if n < 2*exchanges {
		t.Fatalf("only %d segments for %d exchanges", n, exchanges)
	}
	if float64(allocs) > limit*float64(n) {
		t.Errorf("%d allocations for %d segments: a request and its response allocate (at most %.0f allowed); see BenchmarkAllocsPerEcho with -memprofile", allocs, n, limit*float64(n))
	}
}
