package tcp_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestObserverCallsBack: the observer runs outside the engine's locks, so
// it may call back into the engine from inside any event. Here it calls
// Info on the connection the event is about, Queues on the listener, and
// Stats, for every event of a life that has them all: a listener's queue
// decisions, a handshake, received data, a drop, an RTO with its
// retransmission and recovery, a path MTU change, ACKs, and a close. Under the old synchronous observer
// this deadlocked on the first event.
func TestObserverCallsBack(t *testing.T) {
	var (
		mu    sync.Mutex
		kinds = map[event.Kind]int{}
		proto *tcp.Protocol
	)
	obs := func(ev event.Event) {
		mu.Lock()
		kinds[ev.Kind]++
		p := proto
		mu.Unlock()
		if p == nil {
			return
		}
		_ = p.Stats().SegmentsIn.Load()
		for _, l := range p.Listeners() {
			_ = l.Queues()
			_ = l.State()
		}
		for _, c := range p.Connections() {
			if c.ID() == ev.Conn {
				_ = c.Info()
				_ = c.State()
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: obs}))
		mu.Lock()
		proto = p.TCP
		mu.Unlock()
		// A second handshake on the listener, with the observer calling
		// back: SYN queued, accept queue add.
		p.PeerPort++
		p.Inject(tcptest.Seg{Flags: "S", Seq: 0, MSS: 1460})
		p.DrainAny()
		p.PeerPort--
		p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hi")})
		p.Inject(tcptest.Seg{Flags: ".", Seq: 1 << 30, Ack: 1}) // out of window: dropped, ACKed
		if _, err := ep.Write([]byte("hello")); err != nil {
			t.Error(err)
			return
		}
		p.Advance(2 * time.Second) // the RTO: retransmission, RTO recovery
		// A router's "fragmentation needed" for the data in flight: the
		// path MTU falls.
		p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
		p.Inject(tcptest.Seg{Flags: ".", Seq: 3, Ack: 6})
		ep.Close()
		p.Inject(tcptest.Seg{Flags: "F.", Seq: 3, Ack: 7})
		p.DrainAny()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the engine deadlocked: an observer calling Info, Queues or Stats never returned")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []event.Kind{event.KindState, event.KindSend, event.KindDrop, event.KindQueue,
		event.KindRetransmitTimeout, event.KindReceive, event.KindAck, event.KindRecovery, event.KindPathMTU} {
		if kinds[k] == 0 {
			t.Errorf("no event of kind %d reached the observer; got %v", k, kinds)
		}
	}
}
