//go:build linux

package interop

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap/taptest"
)

// finAcks follows, per connection, how tapstack acknowledged the peer's
// FIN: the first segment it sent that acknowledged the last sequence
// number it received (the FIN's), and why it sent it.
type finAcks struct {
	mu    sync.Mutex
	sends map[event.ConnID][]sent
}

type sent struct {
	cause event.SendCause
	ack   uint32
}

func (f *finAcks) observe(ev event.Event) {
	if ev.Kind != event.KindSend {
		return
	}
	f.mu.Lock()
	f.sends[ev.Conn] = append(f.sends[ev.Conn], sent{ev.Send, ev.Segment.Ack})
	f.mu.Unlock()
}

// how returns, per connection whose last segment acknowledged more than
// its first, the cause of the first segment with the last's ACK number.
func (f *finAcks) how() map[event.ConnID]event.SendCause {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[event.ConnID]event.SendCause{}
	for id, ss := range f.sends {
		last := ss[len(ss)-1].ack
		if last == ss[0].ack {
			continue // nothing beyond the handshake acknowledged yet
		}
		for _, s := range ss {
			if s.ack == last {
				out[id] = s.cause
				break
			}
		}
	}
	return out
}

// TestKernelPassiveClose: Linux's clients close, and tapstack's server
// reads to EOF and closes at once. As between two kernels (tcp_fin's
// ping-pong mode), tapstack's ACK of the client's FIN waits on the
// delayed-ACK timer, and the server's close carries it on its FIN: the
// close is three segments, not four. An ACK sent at once (SendAck) fails
// the test; one the timer sent (an application slower than the timer,
// on a loaded machine) is counted and allowed. (The kernel does the
// same the other way: its ACK of a FIN waited 3.4 ms on a connection
// without text and 44 ms after text, measured on this machine's 6.18.)
//
// On a route with quickack (stack.RouteMetrics.QuickAck, Linux's `ip
// route change ... quickack 1`), every FIN is acknowledged at once.
func TestKernelPassiveClose(t *testing.T) {
	const conns = 20
	t.Run("delayed", func(t *testing.T) {
		counts, n := passiveCloses(t, conns, false)
		if n != 2*conns {
			t.Fatalf("%d connections acknowledged a FIN, want %d", n, 2*conns)
		}
		if counts[event.SendAck] > 0 || counts[event.SendFin]+counts[event.SendDelayedAck] != 2*conns {
			t.Errorf("the peer's FIN acknowledged by %v, want only on our FIN or by the delayed-ACK timer", counts)
		}
		if counts[event.SendFin] == 0 {
			t.Errorf("no close carried the FIN's ACK: %v", counts)
		}
	})
	t.Run("quickack", func(t *testing.T) {
		counts, n := passiveCloses(t, conns, true)
		if n != 2*conns || counts[event.SendAck] != 2*conns {
			t.Errorf("%d connections acknowledged a FIN, by %v; want %d, all at once", n, counts, 2*conns)
		}
	})
}

// passiveCloses runs conns connections of Linux's clients with no text
// and conns with a request to tapstack's server, with the route's
// quickack as quick, and returns how tapstack acknowledged the clients'
// FINs, and how many it acknowledged.
func passiveCloses(t *testing.T, conns int, quick bool) (map[event.SendCause]int, int) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack0", kernelAddr+"/24")
	f := &finAcks{sends: map[event.ConnID][]sent{}}
	ts, _ := newTapstack(t, dev.LinkEndpoint(), netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{Observer: f.observe})
	if quick {
		if err := ts.SetRouteMetrics(netip.MustParsePrefix(kernelAddr+"/24"), stackNIC(t, ts), stack.RouteMetrics{QuickAck: true}); err != nil {
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
	how := f.how()
	counts := map[event.SendCause]int{}
	for _, c := range how {
		counts[c]++
	}
	t.Logf("%d passive closes: the FIN's ACK rode on tapstack's FIN %d times, went on the delayed-ACK timer %d times, at once %d times",
		len(how), counts[event.SendFin], counts[event.SendDelayedAck], counts[event.SendAck])
	return counts, len(how)
}
