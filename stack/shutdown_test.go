package stack_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Stack.Shutdown and Stack.Close on the wire. Close removes the interface
// at its end, and the fixture's channel link discards what it still holds
// then; so these tests take every segment off the link the moment it is
// written (capture) and read them from there.

// guard bounds every wait of these tests, so that a bug hangs nothing.
const guard = 10 * time.Second

type wireSeg struct {
	dst      uint16
	flags    header.TCPFlags
	seq, ack uint32
	n        int
}

func (s wireSeg) String() string {
	return fmt.Sprintf("> %d [%s] seq %d ack %d len %d", s.dst, tcptest.FlagString(s.flags), s.seq, s.ack, s.n)
}

// capture takes every segment off the fixture's link as it is written.
type capture struct {
	link *channel.Endpoint
	mu   sync.Mutex
	segs []wireSeg
	wake chan struct{}
}

func newCapture(p *tcptest.Peer) *capture {
	c := &capture{link: p.Link, wake: make(chan struct{}, 1)}
	p.Link.AddNotify(c)
	return c
}

// WriteNotify implements channel.Notification; it runs on the writer's
// goroutine.
func (c *capture) WriteNotify() {
	for range 1 << 16 {
		pkt := c.link.Read()
		if pkt == nil {
			break
		}
		v := pkt.ToView()
		pkt.DecRef()
		b := v.AsSlice()
		h := header.TCP(b[header.IPv4(b).HeaderLength():])
		s := wireSeg{dst: h.DestinationPort(), flags: h.Flags(), seq: h.SequenceNumber(), ack: h.AckNumber(), n: len(h) - int(h.DataOffset())}
		v.Release()
		c.mu.Lock()
		c.segs = append(c.segs, s)
		c.mu.Unlock()
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// wait returns the segments captured once there are at least n, and
// forgets them.
func (c *capture) wait(t *testing.T, n int) []wireSeg {
	t.Helper()
	timeout := time.After(guard)
	for {
		c.mu.Lock()
		if len(c.segs) >= n {
			out := c.segs
			c.segs = nil
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-timeout:
			t.Fatalf("%d segments captured in %v, want %d", len(c.take()), guard, n)
		}
	}
}

func (c *capture) take() []wireSeg {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.segs
	c.segs = nil
	return out
}

// want fails unless got is exactly the segments in want, in order.
func want(t *testing.T, got []wireSeg, want ...wireSeg) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("on the wire:\n\t%v\nwant\n\t%v", got, want)
	}
}

// accepted opens a connection from port through the fixture's listener
// and accepts it; it returns the stack's ISS for it.
func accepted(t *testing.T, p *tcptest.Peer, port uint16) (*tcp.Endpoint, uint32) {
	t.Helper()
	p.PeerPort = port
	p.SetStackISS(0, false)
	p.Inject(tcptest.Seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := p.Listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := p.StackISS()
	return ep, iss
}

func shutdown(s *stack.Stack, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(guard):
		t.Fatal("Shutdown did not return")
	}
	return nil
}

// TestShutdownGraceful: Shutdown sends the FIN, waits for the peer's,
// and returns nil once every connection is CLOSED or in TIME-WAIT; the
// stack is closed then.
func TestShutdownGraceful(t *testing.T) {
	p, _ := tcptest.Listen(t)
	ep, iss := accepted(t, p, 40000)
	c := newCapture(p)
	done := shutdown(p.Stack, context.Background())
	want(t, c.wait(t, 1), wireSeg{40000, header.TCPFlagFin | header.TCPFlagAck, iss + 1, tcptest.PeerISS + 1, 0})
	p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 2})
	if err := result(t, done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	want(t, c.take(), wireSeg{40000, header.TCPFlagAck, iss + 2, tcptest.PeerISS + 2, 0})
	p.WantState(ep, event.Closed) // TIME-WAIT ends with the stack
	if err := p.Stack.Shutdown(context.Background()); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("second Shutdown: %v, want ErrClosed", err)
	}
}

// TestShutdownDeadline: a peer that never answers the FIN keeps Shutdown
// waiting until ctx ends; then the stack closes and resets the connection
// (one RST, at SND.NXT after the FIN, with ACK as Linux's active reset),
// and Shutdown returns ctx's error.
func TestShutdownDeadline(t *testing.T) {
	p, _ := tcptest.Listen(t)
	ep, iss := accepted(t, p, 40000)
	c := newCapture(p)
	ctx, cancel := context.WithCancel(context.Background())
	done := shutdown(p.Stack, ctx)
	want(t, c.wait(t, 1), wireSeg{40000, header.TCPFlagFin | header.TCPFlagAck, iss + 1, tcptest.PeerISS + 1, 0})
	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	want(t, c.take(), wireSeg{40000, header.TCPFlagRst | header.TCPFlagAck, iss + 2, tcptest.PeerISS + 1, 0})
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("Read after the reset: %v, want ECONNABORTED", err)
	}
}

// TestShutdownHandshakeFinishes: a dial in SYN-SENT when Shutdown starts
// completes its handshake and closes with a FIN.
func TestShutdownHandshakeFinishes(t *testing.T) {
	p, ep := tcptest.SynSent(t)
	iss, _ := p.StackISS()
	c := newCapture(p)
	changed := ep.Changed()
	done := shutdown(p.Stack, context.Background())
	select {
	case <-changed: // the FIN is queued behind the handshake
	case <-time.After(guard):
		t.Fatal("Shutdown did not reach the connection")
	}
	p.Inject(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
	want(t, c.wait(t, 2),
		wireSeg{p.PeerPort, header.TCPFlagAck, iss + 1, tcptest.PeerISS + 1, 0},
		wireSeg{p.PeerPort, header.TCPFlagFin | header.TCPFlagAck, iss + 1, tcptest.PeerISS + 1, 0})
	p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 2})
	if err := result(t, done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestCloseResets: Close resets every connection whose peer still
// believes in it, one RST each at SND.NXT, and sends nothing for the
// others: a half-open entry of the listener, a connection in TIME-WAIT, one
// in LAST-ACK (RFC 9293 3.10.5). The connection still in the accept queue
// is reset by its listener's close.
func TestCloseResets(t *testing.T) {
	p, _ := tcptest.Listen(t)
	est, issEst := accepted(t, p, 40000)
	closeWait, issCW := accepted(t, p, 40001)
	p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Advance(p.TCP.Options().DelayedAck) // the FIN's ACK waits a tick
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 2})
	lastAck, _ := accepted(t, p, 40002)
	p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Advance(p.TCP.Options().DelayedAck)
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 2})
	lastAck.Close()
	p.Expect(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 2})
	timeWait, _ := accepted(t, p, 40003)
	timeWait.Close()
	p.Expect(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 2})
	p.Expect(tcptest.Seg{Flags: ".", Seq: 2, Ack: 2})
	// In the accept queue, never accepted.
	p.PeerPort = 40004
	p.SetStackISS(0, false)
	p.Inject(tcptest.Seg{Flags: "S", Seq: 0})
	p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
	issQueued, _ := p.StackISS()
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	// Half-open.
	p.PeerPort = 40005
	p.SetStackISS(0, false)
	p.Inject(tcptest.Seg{Flags: "S", Seq: 0})
	p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
	p.ExpectNothing()

	c := newCapture(p)
	p.Stack.Close()
	got := map[uint16][]wireSeg{}
	for _, s := range c.take() {
		got[s.dst] = append(got[s.dst], s)
	}
	for port, w := range map[uint16][]wireSeg{
		40000: {{40000, header.TCPFlagRst | header.TCPFlagAck, issEst + 1, tcptest.PeerISS + 1, 0}},
		40001: {{40001, header.TCPFlagRst | header.TCPFlagAck, issCW + 1, tcptest.PeerISS + 2, 0}},
		40004: {{40004, header.TCPFlagRst | header.TCPFlagAck, issQueued + 1, tcptest.PeerISS + 1, 0}},
	} {
		want(t, got[port], w...)
		delete(got, port)
	}
	if len(got) != 0 {
		t.Errorf("also sent: %v", got)
	}
	for _, ep := range []*tcp.Endpoint{est, closeWait, lastAck, timeWait} {
		p.WantState(ep, event.Closed)
	}
	if _, err := est.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("Read after Close: %v, want ECONNABORTED", err)
	}
}

// attachedObserver records the state changes it hears of once watch is
// set, each with whether the fixture's link was still attached to the
// stack then: a capture is link middleware (pcap.Writer), closed when
// the stack takes its interface away, and what reaches the observer
// after that is not in the capture. It holds the goroutine that hands it
// the change to hold, until release.
type attachedObserver struct {
	watch   atomic.Pointer[channel.Endpoint]
	hold    event.State
	held    chan struct{} // closed when a goroutine is held
	release chan struct{}
	mu      sync.Mutex
	seen    []string
}

func (o *attachedObserver) observe(ev event.Event) {
	link := o.watch.Load()
	if link == nil || ev.Kind != event.KindState {
		return
	}
	if ev.To == o.hold {
		close(o.held)
		<-o.release
	}
	where := "attached"
	if !link.IsAttached() {
		where = "detached"
	}
	o.mu.Lock()
	o.seen = append(o.seen, fmt.Sprintf("%v (link %s)", ev.To, where))
	o.mu.Unlock()
}

// TestCloseDeliversEventsBeforeLinks: the goroutine that took the peer's
// FIN moved the connection to TIME-WAIT and is still handing the change
// to the observer (preempted, or waiting for a capture's lock) when the
// user, who already sees TIME-WAIT, closes the stack: tapstack dial
// waits for TIME-WAIT and then closes its stack, and its capture is in
// the link. Events are delivered after the engine's locks are released,
// maybe by another goroutine; Close must let them reach the observer
// before it takes the interfaces away, so that a capture in the link
// holds every state the connection went through, and the ACK of the FIN
// leaves. Before, Close waited for events only at its end, after the
// links were closed: cmd/tapstack's TestDialPlotProgress once drew a
// page without the TIME-WAIT.
func TestCloseDeliversEventsBeforeLinks(t *testing.T) {
	o := &attachedObserver{hold: event.TimeWait, held: make(chan struct{}), release: make(chan struct{})}
	p, ep := tcptest.FinWait2(t, tcptest.WithTCP(tcp.Options{Observer: o.observe}))
	iss, _ := p.StackISS()
	c := newCapture(p)
	o.watch.Store(p.Link)

	arrived := make(chan struct{})
	go func() {
		defer close(arrived)
		p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 2})
	}()
	select {
	case <-o.held:
	case <-time.After(guard):
		t.Fatal("the FIN's TIME-WAIT never reached the observer")
	}
	p.WantState(ep, event.TimeWait) // what the user sees
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		p.Stack.Close()
	}()
	// The observer goes on once Close has taken the interface away, or
	// once Close has had long enough to get there, if it would.
	for range 100 {
		if !p.Link.IsAttached() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(o.release)
	for _, done := range []chan struct{}{arrived, closed} {
		select {
		case <-done:
		case <-time.After(guard):
			t.Fatal("Close or the FIN's delivery did not return")
		}
	}
	o.mu.Lock()
	got := strings.Join(o.seen, ", ")
	o.mu.Unlock()
	if want := "TIME-WAIT (link attached), CLOSED (link attached)"; got != want {
		t.Errorf("the observer heard of %s; want %s", got, want)
	}
	want(t, c.take(), wireSeg{p.PeerPort, header.TCPFlagAck, iss + 2, tcptest.PeerISS + 2, 0})
}
