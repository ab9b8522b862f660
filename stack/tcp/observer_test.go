package tcp_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

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

// heldObserver holds the first event of kind it is handed once hold is
// set, on whichever goroutine delivers it, until release; it counts
// every event, and those of kind alone.
type heldObserver struct {
	hold     atomic.Bool
	entered  chan struct{}
	gate     chan struct{}
	events   atomic.Int64
	kind     event.Kind
	counted  atomic.Int64
	released atomic.Bool
}

func newHeldObserver(kind event.Kind) *heldObserver {
	return &heldObserver{entered: make(chan struct{}), gate: make(chan struct{}), kind: kind}
}

func (h *heldObserver) observe(ev event.Event) {
	h.events.Add(1)
	if ev.Kind != h.kind {
		return
	}
	h.counted.Add(1)
	if h.hold.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.gate
	}
}

// waitHeld returns once a goroutine is held in the observer.
func (h *heldObserver) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no goroutine reached the observer")
	}
}

func (h *heldObserver) release() {
	if h.released.CompareAndSwap(false, true) {
		close(h.gate)
	}
}

// TestObserverBehindPacketsLeave: a user's Write is held in the observer
// (a trace written to a slow disk) while the peer floods the connection
// with segments far out of the window, each dropped and answered by an
// ACK (RFC 9293 3.10.7.4; text, so not rate limited) and each making
// two events, the drop and the ACK's send. The ACKs, and the data the
// Write queued, reach the link while the observer is still held: packets
// are written by whichever goroutine made them when another is
// delivering (Endpoint.flush), so they may come before their events, as
// event.Observer allows. The connection holds at most maxQueuedEvents
// (2,048) events for the observer behind those it is delivering; the
// rest are dropped and counted in
// LimitStats.EventsDropped, as stack.EventQueue drops when full. Before,
// the held goroutine kept the connection's output lock: no ACK left
// during the flood, and every event and ACK queued, unbounded (an audit
// measured +71 MB of heap for 50,000 segments with a 200 µs observer).
func TestObserverBehindPacketsLeave(t *testing.T) {
	const flood = 10_000
	h := newHeldObserver(event.KindSend)
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: h.observe}))
	defer h.release()
	tcb := ep.Info().TCB
	raw := &rawPeer{p: p, peerPort: p.PeerPort, stackPort: p.StackPort}

	h.hold.Store(true)
	wrote := make(chan error, 1)
	go func() {
		_, err := ep.Write([]byte("x")) // its flush stops in the observer
		wrote <- err
	}()
	h.waitHeld(t)
	seen := h.events.Load()
	text := []byte{1} // text out of the window is answered, not rate limited as bare ACKs are (RFC 5961 5)
	for i := range flood {
		raw.inject(uint32(tcb.IRS)+1+1<<30+uint32(i), uint32(tcb.ISS)+1, header.TCPFlagAck, 0xffff, text)
		if i%512 == 0 {
			raw.discard()
		}
	}
	raw.discard()
	if raw.replies < flood+1 {
		t.Errorf("%d segments reached the link with the observer held, want the %d ACKs and the data", raw.replies, flood)
	}
	st := p.TCP.Stats()
	wantCount(t, "dropped (out of window)", st.Dropped(event.DropOutOfWindow), flood)
	dropped := p.TCP.Limits().EventsDropped.Load()
	if dropped < 2*flood-2048 {
		t.Errorf("LimitStats.EventsDropped = %d, want at least %d: 2 events a segment beyond 2,048", dropped, 2*flood-2048)
	}

	h.release()
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	ep.SyncEvents()
	late := h.events.Load() - seen
	t.Logf("%d segments: %d replies with the observer held; then %d events delivered, %d dropped", flood, raw.replies, late, dropped)
	if late > 2048 {
		t.Errorf("%d events delivered once the observer was let go, want at most 2,048 queued", late)
	}
	if got := int64(2*flood) - int64(dropped); late < got {
		t.Errorf("%d events delivered, want the %d neither dropped nor lost", late, got)
	}
	// Once the observer keeps up, nothing is dropped.
	p.Inject(seg{Flags: ".", Seq: 1 + 1<<30, Ack: 1, Payload: text})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 1})
	p.TCP.SyncEvents()
	if d := p.TCP.Limits().EventsDropped.Load(); d != dropped {
		t.Errorf("EventsDropped rose from %d to %d with the observer keeping up", dropped, d)
	}
}
