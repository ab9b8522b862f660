//go:build linux

package interop

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap/taptest"
)

// finAcks follows, per connection, how tapstack acknowledged the peer's
// FIN: the first segment it sent that acknowledged the last sequence
// number it received (the FIN's), and why it sent it.
type finAcks struct {
	mu     sync.Mutex
	sends  map[event.ConnID][]sent
	dupFin map[event.ConnID]int      // sends made before the peer's FIN first came again
	trace  map[event.ConnID][]string // every event, to show a connection that fails
}

type sent struct {
	cause event.SendCause
	ack   uint32
}

func (f *finAcks) observe(ev event.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trace[ev.Conn] = append(f.trace[ev.Conn], ev.Time.Format("05.000000")+" "+ev.String())
	switch {
	case ev.Kind == event.KindSend:
		f.sends[ev.Conn] = append(f.sends[ev.Conn], sent{ev.Send, ev.Segment.Ack})
	case ev.Kind == event.KindDrop && ev.Drop == event.DropOldSequence && header.TCPFlags(ev.Key.Flags)&header.TCPFlagFin != 0:
		if _, ok := f.dupFin[ev.Conn]; !ok {
			f.dupFin[ev.Conn] = len(f.sends[ev.Conn])
		}
	}
}

// how returns, per connection whose last segment acknowledged more than
// its first, the cause of the first segment with the last's ACK number;
// and the connections whose peer sent its FIN again before that segment.
// Such a copy is answered at once (RFC 9293 3.10.7.4, as Linux's
// tcp_send_dupack): the peer's probe timer ran out (2·SRTT when
// the FIN followed text still in flight, RFC 8985 7.2), which happens
// when this machine starves tapstack of CPU for milliseconds.
func (f *finAcks) how() (map[event.ConnID]event.SendCause, map[event.ConnID]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out, probed := map[event.ConnID]event.SendCause{}, map[event.ConnID]bool{}
	for id, ss := range f.sends {
		last := ss[len(ss)-1].ack
		if last == ss[0].ack {
			continue // nothing beyond the handshake acknowledged yet
		}
		for i, s := range ss {
			if s.ack == last {
				out[id] = s.cause
				at, dup := f.dupFin[id]
				probed[id] = dup && at <= i
				break
			}
		}
	}
	return out, probed
}

// TestKernelPassiveClose: Linux's clients close, and tapstack's server
// reads to EOF and closes at once. As between two kernels (tcp_fin's
// ping-pong mode), tapstack's ACK of the client's FIN waits on the
// delayed-ACK timer, and the server's close carries it on its FIN: the
// close is three segments, not four. An ACK sent at once (SendAck) fails
// the test; one the timer sent (an application slower than the timer,
// on a loaded machine) is counted and allowed, and so is the ACK that
// answers at once a copy of the FIN the kernel sent before our ACK came
// (finAcks.how). (The kernel does the
// same the other way: its ACK of a FIN waited 3.4 ms on a connection
// without text and 44 ms after text, measured on this machine's 6.18.)
//
// On a route with quickack (stack.RouteMetrics.QuickAck, Linux's `ip
// route change ... quickack 1`), every FIN is acknowledged at once.
func TestKernelPassiveClose(t *testing.T) {
	const conns = 20
	t.Run("delayed", func(t *testing.T) {
		counts, n, dups := passiveCloses(t, conns, false)
		if n != 2*conns {
			t.Fatalf("%d connections acknowledged a FIN, want %d", n, 2*conns)
		}
		if counts[event.SendAck] > 0 || counts[event.SendFin]+counts[event.SendDelayedAck]+dups != 2*conns {
			t.Errorf("the peer's FIN acknowledged by %v, want only on our FIN or by the delayed-ACK timer", counts)
		}
		if counts[event.SendFin] == 0 {
			t.Errorf("no close carried the FIN's ACK: %v", counts)
		}
	})
	t.Run("quickack", func(t *testing.T) {
		counts, n, dups := passiveCloses(t, conns, true)
		if n != 2*conns || counts[event.SendAck]+dups != 2*conns {
			t.Errorf("%d connections acknowledged a FIN, by %v; want %d, all at once", n, counts, 2*conns)
		}
	})
}

// passiveCloses runs conns connections of Linux's clients with no text
// and conns with a request to tapstack's server, with the route's
// quickack as quick, and returns how tapstack acknowledged the clients'
// FINs, how many it acknowledged, and how many of those it answered at
// once because the peer sent its FIN again first (finAcks.how); these
// are not in the map.
func passiveCloses(t *testing.T, conns int, quick bool) (map[event.SendCause]int, int, int) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack0", kernelAddr+"/24")
	f := &finAcks{sends: map[event.ConnID][]sent{}, dupFin: map[event.ConnID]int{}, trace: map[event.ConnID][]string{}}
	ts, _ := newTapstack(t, dev.LinkEndpoint(), netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{Observer: f.observe})
	if quick {
		if err := ts.SetRouteMetrics(netip.MustParsePrefix(kernelAddr+"/24").Masked(), stackNIC(t, ts), stack.RouteMetrics{QuickAck: true}); err != nil {
			t.Fatal(err)
		}
	}
	k := &kernelNet{ns: ns, ts: ts}
	ln := k.listen(t, 9001)
	var served sync.WaitGroup
	accepted := make(chan struct{}, 2*conns)
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			served.Add(1)
			go func() {
				defer served.Done()
				c.SetDeadline(time.Now().Add(kernelTimeout))
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	for _, text := range []string{"", "a request"} {
		for range conns {
			if err := ns.Do(func() error {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:9001", tapAddr), kernelTimeout)
				if err != nil {
					return err
				}
				if text != "" {
					if _, err := c.Write([]byte(text)); err != nil {
						return err
					}
				}
				return c.Close()
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 * conns {
		select {
		case <-accepted:
		case <-time.After(closeTimeout):
			t.Fatalf("%d of %d connections accepted", i, 2*conns)
		}
	}
	ln.Close()
	served.Wait() // every server has closed: its FIN, or its ACK, is out
	// The events of that are delivered after the engine's locks are
	// released, maybe by another goroutine: without waiting for them, a
	// server's FIN was missing from what the observer had seen (about 1
	// run in 5 under -race here), and the ACK of the request's text,
	// sent at once, was taken for the FIN's.
	ts.TCP().SyncEvents()
	how, probed := f.how()
	counts := map[event.SendCause]int{}
	dups := 0
	for id, c := range how {
		switch {
		case probed[id] && c == event.SendAck:
			dups++ // the answer to the peer's copy of its FIN: at once, rightly
			continue
		case c == event.SendAck && !quick:
			f.mu.Lock()
			t.Logf("%v acknowledged the FIN at once:\n%s", id, strings.Join(f.trace[id], "\n"))
			f.mu.Unlock()
		}
		counts[c]++
	}

	t.Logf("%d passive closes: the FIN's ACK rode on tapstack's FIN %d times, went on the delayed-ACK timer %d times, at once %d times; "+
		"%d FINs came again before their ACK (tapstack starved of CPU) and were answered at once",
		len(how), counts[event.SendFin], counts[event.SendDelayedAck], counts[event.SendAck], dups)
	return counts, len(how), dups
}
