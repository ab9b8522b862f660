package interop

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestRouteMetricsWhileSending: tapstack to tapstack over tap.Pipe, 16 MiB
// each way while another goroutine changes the metrics of both ends'
// routes 200 times (the MTU between 576 and 1500, locked or not, the
// initial window, rto_min, quickack): every change resets live
// connections' MSS under their lock, a fall cuts what is in flight, and
// every byte arrives in order (run with -race, it also checks the
// metrics' table is read safely from the engine's goroutines).
func TestRouteMetricsWhileSending(t *testing.T) {
	a, b := tap.Pipe(tap.WithPipeQueue(cableQueue))
	pa, pb := netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24")
	dialer, _ := newTapstack(t, a, pa, tcp.Options{})
	listener, _ := newTapstack(t, b, pb, tcp.Options{})
	c, s := connectPair(t, dialer, listener, pb)
	done := make(chan struct{})
	changed := make(chan int, 1)
	go func() {
		n := 0
		defer func() { changed <- n }()
		mtus := []uint32{576, 1500, 1000, 1280, 700, 1500}
		for ; n < 200; n++ {
			select {
			case <-done:
				return
			default:
			}
			m := stack.RouteMetrics{MTU: mtus[n%len(mtus)], LockMTU: n%3 == 0, InitCwnd: uint32(2 + n%20),
				RTOMin: time.Duration(5+n%50) * time.Millisecond, QuickAck: n%2 == 0}
			for _, st := range []*stack.Stack{dialer, listener} {
				if err := st.SetRouteMetrics(pa.Masked(), stackNIC(t, st), m); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	exchange(t, c, s, 16*MiB, both, bulkTimeout())
	close(done)
	n := <-changed
	t.Logf("the routes' metrics changed %d times during the exchange; MSS at the end %d and %d", n, c.Endpoint().Info().SndMSS, s.Endpoint().Info().SndMSS)
	if n == 0 {
		t.Error("no change came during the exchange")
	}
}

// stackNIC is the interface of s that is not its loopback.
func stackNIC(t *testing.T, s *stack.Stack) tcpip.NICID {
	t.Helper()
	for id := range s.Netstack().NICInfo() {
		if id != stack.LoopbackNIC {
			return id
		}
	}
	t.Fatal("the stack has no interface but its loopback")
	return 0
}
