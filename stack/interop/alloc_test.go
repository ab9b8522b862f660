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
// 8 MiB (some 5,800 data segments and their ACKs) may cost at most a
// handful of allocations in the whole process, where one per segment
// would be thousands.
//
// The garbage collector is held off while the bytes move: a collection
// empties the sync.Pools that gVisor's buffers and the engine's timers
// come from, and refilling them is the collection's cost, not the
// segments'. (With nothing allocated per segment, a collection is not
// triggered by the transfer anyway.) Under the race detector sync.Pool
// drops a quarter of what it is given, on purpose, so the test skips.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	const (
		size   = 8 << 20
		rounds = 4    // warm-up rounds, then measured rounds, of size each
		limit  = 0.01 // allocations per wire segment, over the measured rounds
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
			dl := time.Now().Add(2 * time.Minute)
			if err := c.SetDeadline(dl); err != nil {
				t.Fatal(err)
			}
			if err := s.SetDeadline(dl); err != nil {
				t.Fatal(err)
			}
			move := mover(t, c, s, size)
			for range rounds {
				move() // windows open, pools filled
			}
			segs := func() uint64 { return snd.TCP().Stats().SegmentsOut.Load() + rcv.TCP().Stats().SegmentsOut.Load() }
			// Packets received (a GSO packet is one), both stacks.
			pkts := func() uint64 { return snd.TCP().Stats().SegmentsIn.Load() + rcv.TCP().Stats().SegmentsIn.Load() }
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			s0, p0 := segs(), pkts()
			for range rounds {
				move()
			}
			runtime.ReadMemStats(&m1)
			n, in, allocs := segs()-s0, pkts()-p0, m1.Mallocs-m0.Mallocs
			ours := int64(allocs) - int64(tc.perPacket*in)
			t.Logf("%d MiB, %d wire segments, %d packets received: %d allocations, %d beyond gVisor's IPv6 (%.5f per segment)", rounds*size>>20, n, in, allocs, ours, float64(ours)/float64(n))
			if n < 1000 {
				t.Fatalf("only %d segments moved", n)
			}
			if float64(ours) > limit*float64(n) {
				t.Errorf("%d allocations for %d segments (%d packets received): the steady state allocates (at most %.0f allowed beyond %d per packet); see BenchmarkAllocsPerSegment with -memprofile", allocs, n, in, limit*float64(n), tc.perPacket)
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
