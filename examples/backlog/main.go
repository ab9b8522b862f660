// Command backlog shows what a full accept queue does, in memory, with no
// privileges, and the same way every run.
//
// A server listens with backlog 2, so its accept queue holds 3 (Linux's
// meaning of listen(2)'s backlog: backlog+1). Nobody accepts. Five clients
// dial; a gate on the clients' side of the cable holds their segments and
// lets them through one at a time, so the story is the same every run:
//
//  1. The five SYNs reach the server: five half-open connections in the SYN
//     queue. Each client gets its SYN-ACK and believes it is connected.
//  2. The five final ACKs: the first three move their connections to the
//     accept queue (3/3); the last two find it full and are dropped.
//  3. The server's SYN-ACK timer fires (time is a fake clock): it
//     retransmits to the two clients; their ACKs are dropped again.
//  4. A latecomer dials: its SYN finds the accept queue full and is
//     dropped, as Linux drops it.
//  5. The server accepts three connections. Its next SYN-ACK
//     retransmissions and the latecomer's SYN retransmission now find room:
//     every client gets in.
//
// Each queue decision is printed as the server's engine reports it, then
// the counters:
//
//	go run ./examples/backlog
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"sync"
	"time"

	gtcpip "gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

func main() {
	flag.Parse() // -h tells what the program does; it takes nothing else
	if flag.NArg() > 0 {
		log.Fatalf("backlog: unexpected argument %q", flag.Arg(0))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := story(ctx, os.Stdout); err != nil {
		log.Fatalf("backlog: %v", err)
	}
}

const (
	backlog = 2
	clients = 5
	rto     = time.Second // the initial RTO of SYN and SYN-ACK (Linux: 1s)
)

// story runs the five steps of the doc comment and prints them.
func story(ctx context.Context, w io.Writer) error {
	clock := faketime.NewManualClock()
	out := &printer{w: w, clock: clock, names: map[uint16]string{}}

	var g *gate
	p, err := stack.NewPair(stack.PairOptions{
		Server:     stack.Options{Clock: clock, TCP: tcp.Options{InitialRTO: rto, Observer: out.observe}},
		Client:     stack.Options{Clock: clock, TCP: tcp.Options{InitialRTO: rto}},
		ClientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint { g = newGate(l); return g },
	})
	if err != nil {
		return err
	}
	defer p.Close()
	server, client := p.Server, p.Client
	ln, err := (&conn.ListenConfig{Backlog: backlog}).Listen(server, "tcp", "192.0.2.1:80")
	if err != nil {
		return err
	}
	defer ln.Close()
	st := server.TCP().Stats()
	out.say("listening with backlog %d: the accept queue holds %d; nobody accepts yet", backlog, ln.Endpoint().Queues().AcceptQueueLimit)

	// The clients dial; the gate holds their SYNs.
	// Connections stay open to the end: a client's FIN would be one more
	// segment at the gate.
	dials := make(chan error, clients+1)
	var connsMu sync.Mutex
	var conns []*conn.Conn
	defer func() {
		connsMu.Lock()
		defer connsMu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() {
		c, err := conn.DialContext(ctx, client, "tcp", "192.0.2.1:80")
		if err == nil {
			connsMu.Lock()
			conns = append(conns, c.(*conn.Conn))
			connsMu.Unlock()
		}
		dials <- err
	}
	for range clients {
		go dial()
	}
	syns, err := g.waitHeld(ctx, clients)
	if err != nil {
		return err
	}
	// Name the clients by port, lowest first, so every run reads alike.
	slices.SortFunc(syns, func(x, y heldFrame) int { return int(x.port) - int(y.port) })
	for i, s := range syns {
		out.name(s.port, fmt.Sprintf("client %d", i))
	}

	out.say("--- 1. the five SYNs reach the server")
	for _, s := range syns {
		held := g.count()
		if err := g.release(ctx, out, s, 1); err != nil { // SYN queued
			return err
		}
		// The client answers the SYN-ACK at once: wait for its ACK.
		if _, err := g.waitHeld(ctx, held); err != nil {
			return err
		}
		// A millisecond between SYN-ACKs gives their retransmission
		// timers distinct deadlines, so they fire in client order.
		clock.Advance(time.Millisecond)
	}
	out.say("every client has its SYN-ACK and believes it is connected")

	out.say("--- 2. the five final ACKs")
	// Each is two decisions: the state change and the accept queue add,
	// or the overflow and the drop.
	if err := releaseAll(ctx, g, out, 2); err != nil {
		return err
	}

	// synAckTimer fires the SYN-ACK timer: the server retransmits to
	// the two clients whose final ACKs it dropped, and the gate lets
	// their answers through.
	synAckTimer := func() error {
		clock.Advance(rto)
		if err := out.expect(ctx, 2); err != nil { // two retransmissions
			return err
		}
		if _, err := g.waitHeld(ctx, 2); err != nil {
			return err
		}
		return releaseAll(ctx, g, out, 2)
	}
	// accept accepts n connections, each a decision the server prints.
	accept := func(n int) error {
		for range n {
			c, err := ln.AcceptTCP()
			if err != nil {
				return err
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			if err := out.expect(ctx, 1); err != nil {
				return err
			}
		}
		return nil
	}

	out.say("--- 3. the SYN-ACK timer fires")
	if err := synAckTimer(); err != nil {
		return err
	}

	out.say("--- 4. a latecomer dials")
	go dial()
	late, err := g.waitHeld(ctx, 1)
	if err != nil {
		return err
	}
	out.name(late[0].port, "latecomer")
	if err := g.release(ctx, out, late[0], 2); err != nil { // the decision and the drop
		return err
	}

	out.say("--- 5. the server accepts three connections")
	if err := accept(backlog + 1); err != nil {
		return err
	}
	// The SYN-ACK timer (backed off to 2s) and the latecomer's SYN
	// timer (1s) fire; the gate lets each answer through in turn.
	clock.Advance(rto)
	if _, err := g.waitHeld(ctx, 1); err != nil { // the latecomer's SYN
		return err
	}
	if err := releaseAll(ctx, g, out, 1); err != nil {
		return err
	}
	if _, err := g.waitHeld(ctx, 1); err != nil { // its final ACK
		return err
	}
	if err := releaseAll(ctx, g, out, 2); err != nil {
		return err
	}
	if err := synAckTimer(); err != nil {
		return err
	}
	if err := accept(3); err != nil {
		return err
	}
	for range clients + 1 {
		if err := <-dials; err != nil {
			return err
		}
	}
	out.say("--- every client accepted; server counters:")
	for _, c := range []struct {
		name string
		n    uint64
	}{
		{"SYN queued", st.Listen.SynQueued.Load()},
		{"SYN-ACK retransmitted", st.Sent(event.SendSynAckRetransmit)},
		{"SYN dropped: accept queue full", st.Listen.SynAcceptQueueFull.Load()},
		{"SYN queue overflow", st.Listen.SynQueueOverflows.Load()},
		{"SYN cookies sent", st.Listen.CookiesSent.Load()},
		{"accept queue add", st.Listen.AcceptQueueAdds.Load()},
		{"accept queue overflow: ACK dropped", st.Listen.AcceptOverflowDrops.Load()},
		{"accept queue overflow: RST sent", st.Listen.AcceptOverflowResets.Load()},
		{"accepted", st.Listen.Accepted.Load()},
		{"half-open expired", st.Listen.HalfOpenExpired.Load()},
		{"half-open unreachable (ICMP)", st.Listen.HalfOpenUnreachable.Load()},
		{"ListenOverflows", st.ListenOverflows.Load()},
		{"ListenDrops", st.ListenDrops.Load()},
	} {
		fmt.Fprintf(w, "  %-36s %d\n", c.name, c.n)
	}
	return nil
}

// releaseAll lets every held frame through, one at a time in client
// order, each once the server has printed the lines decisions about the
// one before.
func releaseAll(ctx context.Context, g *gate, out *printer, lines int) error {
	held := g.take()
	slices.SortFunc(held, func(x, y heldFrame) int { return int(x.port) - int(y.port) })
	for _, h := range held {
		if err := g.release(ctx, out, h, lines); err != nil {
			return err
		}
	}
	return nil
}

// printer prints lines stamped with the fake clock's time, naming the
// clients instead of their random ports.
type printer struct {
	mu    sync.Mutex
	lines int // decisions the observer printed
	want  int // decisions the story expects by now
	w     io.Writer
	clock *faketime.ManualClock
	start time.Time
	names map[uint16]string
}

// expect waits until the server has printed n more decisions, so that the
// story's own lines never overtake the engine's, however the observer is
// scheduled.
func (p *printer) expect(ctx context.Context, n int) error {
	p.mu.Lock()
	p.want += n
	want := p.want
	p.mu.Unlock()
	for {
		p.mu.Lock()
		got := p.lines
		p.mu.Unlock()
		if got >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the server's decisions (%d of %d): %w", got, want, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

func (p *printer) name(port uint16, n string) {
	p.mu.Lock()
	p.names[port] = n
	p.mu.Unlock()
}

func (p *printer) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sayLocked(format, args...)
}

func (p *printer) sayLocked(format string, args ...any) {
	if p.start.IsZero() {
		p.start = p.clock.Now()
	}
	fmt.Fprintf(p.w, "%6.3fs  %s\n", p.clock.Now().Sub(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// observe prints the server's listen decisions: queue events, the drops
// they cause, SYN-ACK retransmissions. It must not block.
func (p *printer) observe(ev event.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	who := p.names[ev.Conn.Remote.Port()]
	q := ev.Queue
	p.lines++ // undone below for an event this story does not print
	switch {
	case ev.Kind == event.KindQueue && ev.Note != "accepted" && ev.Note != "accept queue remove" && !startsWith(ev.Note, "listener closed"):
		p.sayLocked("server: %s (SYN queue %d/%d, accept queue %d/%d)", ev.Note, q.SynQueueLen, q.SynQueueLimit, q.AcceptQueueLen, q.AcceptQueueLimit)
	case ev.Kind == event.KindQueue && ev.Note == "accepted":
		p.sayLocked("server: accepted (accept queue %d/%d)", q.AcceptQueueLen, q.AcceptQueueLimit)
	case ev.Kind == event.KindDrop && (ev.Drop == event.DropAcceptQueueFull || ev.Drop == event.DropSynQueueFull):
		what := "final ACK"
		if header.TCPFlags(ev.Key.Flags)&header.TCPFlagSyn != 0 {
			what = "SYN"
		}
		p.sayLocked("server: %s of %s dropped: %s", what, who, ev.Drop)
	case ev.Kind == event.KindSend && ev.Send == event.SendSynAckRetransmit:
		p.sayLocked("server: SYN-ACK retransmit #%d to %s", ev.Attempt, who)
	case ev.Kind == event.KindState && ev.To == event.Established:
		p.sayLocked("server: %s %s → %s", who, ev.From, ev.To)
	default:
		p.lines-- // not a decision this story prints
	}
}

func startsWith(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// gate is link middleware on the clients' side: it holds their TCP
// segments until released, one at a time, so the server sees them in an
// order chosen by the program rather than by the scheduler. ARP passes.
type gate struct {
	nested.Endpoint
	mu      sync.Mutex
	held    []heldFrame
	changed chan struct{}
}

type heldFrame struct {
	pkt  *gstack.PacketBuffer
	port uint16 // the client's port
}

func newGate(inner gstack.LinkEndpoint) *gate {
	g := &gate{changed: make(chan struct{})}
	g.Endpoint.Init(inner, g)
	return g
}

// WritePackets holds TCP segments and passes the rest.
func (g *gate) WritePackets(pkts gstack.PacketBufferList) (int, gtcpip.Error) {
	var pass gstack.PacketBufferList
	for _, pkt := range pkts.AsSlice() {
		if port, ok := tcpPort(pkt); ok {
			pkt.IncRef()
			g.mu.Lock()
			g.held = append(g.held, heldFrame{pkt: pkt, port: port})
			close(g.changed)
			g.changed = make(chan struct{})
			g.mu.Unlock()
			continue
		}
		pass.PushBack(pkt)
	}
	if pass.Len() > 0 {
		if _, err := g.Endpoint.WritePackets(pass); err != nil {
			return 0, err
		}
	}
	return pkts.Len(), nil
}

// tcpPort returns the source port of an IPv4 TCP frame.
func tcpPort(pkt *gstack.PacketBuffer) (uint16, bool) {
	b := pkt.ToView().AsSlice()
	if len(b) < header.EthernetMinimumSize+header.IPv4MinimumSize+header.TCPMinimumSize ||
		header.Ethernet(b).Type() != header.IPv4ProtocolNumber {
		return 0, false
	}
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	if ip.Protocol() != uint8(header.TCPProtocolNumber) {
		return 0, false
	}
	return header.TCP(ip[ip.HeaderLength():]).SourcePort(), true
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// waitHeld waits until n frames are held and returns them (still held).
func (g *gate) waitHeld(ctx context.Context, n int) ([]heldFrame, error) {
	for {
		g.mu.Lock()
		if len(g.held) >= n {
			h := slices.Clone(g.held)
			g.mu.Unlock()
			return h, nil
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d held segments: %w", n, ctx.Err())
		}
	}
}

// take removes every held frame and returns them.
func (g *gate) take() []heldFrame {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := g.held
	g.held = nil
	return h
}

// release sends h on and waits until the server has printed the lines
// decisions it causes.
func (g *gate) release(ctx context.Context, out *printer, h heldFrame, lines int) error {
	g.mu.Lock()
	if i := slices.IndexFunc(g.held, func(x heldFrame) bool { return x.pkt == h.pkt }); i >= 0 {
		g.held = slices.Delete(g.held, i, i+1)
	}
	g.mu.Unlock()
	var l gstack.PacketBufferList
	l.PushBack(h.pkt)
	_, err := g.Endpoint.WritePackets(l)
	h.pkt.DecRef()
	if err != nil {
		return fmt.Errorf("release: %v", err)
	}
	return out.expect(ctx, lines)
}
