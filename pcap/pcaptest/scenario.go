package pcaptest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	gtcp "gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// The scripted scenarios that pcap's oracle (pcap/oracle_test.go) checks
// against Wireshark and the plot (plot/golden_test.go) draws: tapstack
// (captured, 192.0.2.1) and gVisor's TCP (192.0.2.2, an independent
// implementation) over tap.Pipe, a clean close each way, 5% loss with
// SACK, zero windows with probes, a full accept queue. Each phase of a
// scenario waits for what the engine did (World.WaitFor), not for the
// wall clock, so a capture tells the same story on a loaded machine.

// TapstackAddr and PeerAddr are the addresses of the scenarios' two ends.
func TapstackAddr() netip.Prefix { return netip.MustParsePrefix("192.0.2.1/24") }
func PeerAddr() netip.Prefix     { return netip.MustParsePrefix("192.0.2.2/24") }

// maxSeen bounds the send and drop events a World keeps for WaitFor: a
// 64 MiB lossy transfer makes about 50,000.
const maxSeen = 1 << 20

// World is one scenario's network: a tapstack stack whose link is
// captured, the gVisor peer on the other end of the cable, and what the
// engine reported.
type World struct {
	TS      *stack.Stack
	Peer    *gvpeer.Peer
	Capture *pcap.Writer
	Path    string // the capture file

	a, b   *tap.PipeEnd
	mu     sync.Mutex
	states []event.Event // state changes of connections, in delivery order
	seen   []event.Event // sends and drops, for WaitFor; at most maxSeen
}

// Scenario is a scripted exchange between tapstack and the peer.
type Scenario struct {
	Name  string
	Opts  tcp.Options      // the engine's options; the Observer is the World's
	Fault *tap.FaultConfig // on tapstack's link, below the capture
	// PipeQueue is the frames each direction of the cable holds
	// (tap.WithPipeQueue); 0 is the pipe's default.
	PipeQueue int
	Peer      func(p *gvpeer.Peer)
	Run       func(ctx context.Context, w *World) error
	// Must lists words that some frame's comment must hold: the feature
	// the scenario is there to show (a run that turned into a clean
	// transfer under load would otherwise pass and show nothing).
	Must []string
}

// Capture runs sc in a new World whose capture is dir/<sc.Name>.pcapng,
// written with o (Description defaults to "scenario <name>"), and closes
// the World when sc.Run returns or ctx ends. It fails t if the World
// cannot be made; the error is sc.Run's.
func (sc Scenario) Capture(ctx context.Context, t testing.TB, dir string, o pcap.Options) (*World, error) {
	t.Helper()
	w := &World{Path: filepath.Join(dir, sc.Name+".pcapng")}
	var popts []tap.PipeOption
	if sc.PipeQueue > 0 {
		popts = append(popts, tap.WithPipeQueue(sc.PipeQueue))
	}
	w.a, w.b = tap.Pipe(popts...)
	var link gstack.LinkEndpoint = w.a
	var fault *tap.Fault
	var faultObs func(tap.FaultEvent) // set before any frame moves
	if sc.Fault != nil {
		cfg := *sc.Fault
		cfg.Observer = func(ev tap.FaultEvent) { faultObs(ev) }
		fault = tap.NewFault(w.a, cfg)
		link = fault
	}
	if o.Description == "" {
		o.Description = "scenario " + sc.Name
	}
	if o.LinkDrops == nil {
		o.LinkDrops = func() uint64 { return w.a.Stats().DroppedQueueFull }
		if fault != nil {
			o.LinkDrops = fault.LinkDrops(o.LinkDrops)
		}
	}
	pw, err := pcap.Create(w.Path, link, o)
	if err != nil {
		t.Fatal(err)
	}
	w.Capture = pw
	if sc.Fault != nil {
		faultObs = pw.FaultObserver(nil)
	}
	opts := sc.Opts
	opts.Observer = pw.Observer(w.record)
	w.TS = stack.New(stack.Options{TCP: opts})
	if _, err := w.TS.AddNIC(pw, TapstackAddr()); err != nil {
		t.Fatal(err)
	}
	if w.Peer, err = gvpeer.New(w.b, PeerAddr(), nil); err != nil {
		t.Fatal(err)
	}
	if sc.Peer != nil {
		sc.Peer(w.Peer)
	}
	runErr := sc.Run(ctx, w)
	w.TS.TCP().SyncEvents()
	// Cut the cable first: gVisor's Stack.Wait holds the stack's lock
	// while it waits for the pipe's pumps.
	w.a.Close()
	w.b.Close()
	w.Peer.Close()
	w.TS.Close()
	if err := pw.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	return w, runErr
}

// PipeRefused is how many frames tapstack's end of the cable refused,
// its queue full (tap.PipeStats.DroppedQueueFull).
func (w *World) PipeRefused() uint64 { return w.a.Stats().DroppedQueueFull }

// record is the engine's observer, behind the capture's.
func (w *World) record(ev event.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case ev.Kind == event.KindState && ev.Conn.Remote.IsValid():
		w.states = append(w.states, ev)
	case (ev.Kind == event.KindSend || ev.Kind == event.KindDrop) && len(w.seen) < maxSeen:
		w.seen = append(w.seen, ev)
	}
}

// States returns the state changes of tapstack's connections, in the
// order the engine reported them.
func (w *World) States() []event.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event.Event(nil), w.states...)
}

// WaitFor waits until the engine has reported n sends or drops that
// match, or ctx ends.
func (w *World) WaitFor(ctx context.Context, what string, n int, match func(event.Event) bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		got := 0
		for _, ev := range w.seen {
			if match(ev) {
				got++
			}
		}
		last := w.seen[max(0, len(w.seen)-8):]
		w.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d %s (saw %d; the last events: %v): %w", n, what, got, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitClosed waits until every connection of the tapstack stack is gone.
func (w *World) WaitClosed(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for len(w.TS.TCP().Connections()) > 0 {
		select {
		case <-ctx.Done():
			var s []string
			for _, c := range w.TS.TCP().Connections() {
				s = append(s, c.Info().ID.String()+" "+c.Info().State.String())
			}
			return fmt.Errorf("connections left: %v", s)
		case <-tick.C:
		}
	}
	return nil
}

// DialPeer connects tapstack to a gVisor listener on port 80 and returns
// both ends, tapstack's first; done closes the listener.
func (w *World) DialPeer(ctx context.Context) (ts, peer net.Conn, done func(), err error) {
	ln, err := w.Peer.Listen(80)
	if err != nil {
		return nil, nil, nil, err
	}
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	ts, err = conn.DialContext(ctx, w.TS, "tcp", netip.AddrPortFrom(PeerAddr().Addr(), 80).String())
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	if peer = <-acc; peer == nil {
		ln.Close()
		return nil, nil, nil, errors.New("accept failed")
	}
	return ts, peer, func() { ln.Close() }, nil
}

// PeerDialsTapstack has the peer connect to a tapstack listener on port
// 80 and returns both ends, tapstack's first; done closes the listener.
// It takes a context only to match DialPeer: the peer's Dial has a
// timeout of its own.
func (w *World) PeerDialsTapstack(context.Context) (ts, peer net.Conn, done func(), err error) {
	ln, err := conn.Listen(w.TS, "tcp", ":80")
	if err != nil {
		return nil, nil, nil, err
	}
	acc := AcceptOne(ln)
	peer, err = w.Peer.Dial(netip.AddrPortFrom(TapstackAddr().Addr(), 80))
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	c := <-acc // a nil *conn.Conn must not become a non-nil net.Conn
	if c == nil {
		ln.Close()
		return nil, nil, nil, errors.New("accept failed")
	}
	return c, peer, func() { ln.Close() }, nil
}

// AcceptOne accepts one connection on ln in the background; the channel
// yields it, or nil if Accept failed.
func AcceptOne(ln *conn.Listener) <-chan *conn.Conn {
	ch := make(chan *conn.Conn, 1)
	go func() { c, _ := ln.AcceptTCP(); ch <- c }() // c is nil on error
	return ch
}

// Payload returns n bytes of a pseudo-random sequence chosen by seed.
func Payload(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Transfer sends data on w and checks that r reads exactly it, then
// closes both (w first).
func Transfer(ctx context.Context, w, r net.Conn, data []byte) error {
	sent := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		if err == nil {
			err = w.Close()
		}
		sent <- err
	}()
	stop := context.AfterFunc(ctx, func() { w.Close(); r.Close() })
	defer stop()
	got, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return fmt.Errorf("read %d bytes, sent %d: data differs", len(got), len(data))
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return r.Close()
}

// exchange is a scenario's run that opens a connection (tapstack dials
// the peer, or the peer dials tapstack), sends size bytes of
// Payload(size, seed) from the end that opened it, closes that end first
// and waits until tapstack's connection is gone.
func exchange(peerOpens bool, size int, seed uint64) func(context.Context, *World) error {
	return func(ctx context.Context, w *World) error {
		open := w.DialPeer
		if peerOpens {
			open = w.PeerDialsTapstack
		}
		ts, peer, done, err := open(ctx)
		if err != nil {
			return err
		}
		defer done()
		from, to := ts, peer
		if peerOpens {
			from, to = peer, ts
		}
		if err := Transfer(ctx, from, to, Payload(size, seed)); err != nil {
			return err
		}
		return w.WaitClosed(ctx)
	}
}

// Lossy is tapstack sending size bytes (Payload(size, seed)) to the peer
// at 5% loss in both directions, the faults' decisions from seed, SACK on
// both sides: fast retransmissions, SACK blocks, dup ACKs, RTOs.
func Lossy(name string, size int, seed uint64) Scenario {
	return Scenario{
		Name:  name,
		Must:  []string{"retransmit", "SACK", "fault: dropped"},
		Opts:  tcp.Options{TimeWait: 100 * time.Millisecond},
		Fault: &tap.FaultConfig{Loss: 0.05, Seed: seed, Inbound: &tap.FaultConfig{Loss: 0.05}},
		Peer: func(p *gvpeer.Peer) {
			opt := tcpip.TCPSACKEnabled(true)
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &opt)
		},
		Run: exchange(false, size, seed),
	}
}

// Scenarios returns the scripted scenarios, each in a fresh value.
func Scenarios() []Scenario {
	return []Scenario{
		{
			// The peer sends and closes first: tapstack goes through
			// CLOSE-WAIT and LAST-ACK.
			Name: "close-peer-first",
			Must: []string{"ESTABLISHED → CLOSE-WAIT", "LAST-ACK → CLOSED"},
			Opts: tcp.Options{TimeWait: 100 * time.Millisecond},
			Run:  exchange(true, 64<<10, 1),
		},
		{
			// tapstack sends and closes first: FIN-WAIT-1, FIN-WAIT-2,
			// TIME-WAIT, and the TIME-WAIT expiry that no frame carries.
			Name: "close-tapstack-first",
			Must: []string{"ESTABLISHED → FIN-WAIT-1", "→ TIME-WAIT"},
			Opts: tcp.Options{TimeWait: 100 * time.Millisecond},
			Run:  exchange(false, 64<<10, 2),
		},
		Lossy("loss-sack", 256<<10, 7),
		zeroWindow(),
		acceptQueueFull(),
	}
}

// zeroWindow: the peer fills tapstack's small receive buffer while nobody
// reads: zero window, the peer's probes, then the window update. Then
// tapstack fills the peer's: tapstack's own probes.
func zeroWindow() Scenario {
	return Scenario{
		Name: "zero-window",
		Must: []string{"zero window probe", "zero window;", "window update"},
		Opts: tcp.Options{TimeWait: 100 * time.Millisecond, ReceiveBufferSize: 16 << 10},
		Peer: func(p *gvpeer.Peer) {
			rb := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: 16 << 10, Max: 16 << 10}
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &rb)
			mod := tcpip.TCPModerateReceiveBufferOption(false)
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &mod)
		},
		Run: func(ctx context.Context, w *World) error {
			sc, c, done, err := w.PeerDialsTapstack(ctx)
			if err != nil {
				return err
			}
			defer done()
			data := Payload(48<<10, 4)
			// Phase 1: the peer writes, tapstack does not read yet,
			// until the peer has probed the zero window twice.
			go c.Write(data)
			// gVisor probes with one byte already acknowledged (SEQ =
			// SND.UNA-1, as Linux's tcp_xmit_probe_skb but with a byte):
			// an old sequence to tapstack, answered with an ACK (RFC
			// 9293 3.10.7.4). A probe of new data would meet the zero
			// window.
			if err := w.WaitFor(ctx, "probes of tapstack's zero window", 2, func(ev event.Event) bool {
				return ev.Kind == event.KindDrop && (ev.Drop == event.DropZeroWindow || ev.Drop == event.DropOldSequence)
			}); err != nil {
				return err
			}
			got := make([]byte, len(data))
			if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, data) {
				return fmt.Errorf("phase 1: %v", err)
			}
			// Phase 2: tapstack writes, the peer does not read yet,
			// until tapstack has probed the peer's zero window twice.
			go sc.Write(data)
			if err := w.WaitFor(ctx, "probes of the peer's zero window", 2, func(ev event.Event) bool {
				return ev.Kind == event.KindSend && ev.Send == event.SendWindowProbe
			}); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
				return fmt.Errorf("phase 2: %v", err)
			}
			c.Close()
			if _, err := io.ReadAll(sc); err != nil {
				return err
			}
			sc.Close()
			return w.WaitClosed(ctx)
		},
	}
}

// acceptQueueFull: backlog 0 (an accept queue of one) and nobody
// accepting while three peers connect: SYNs dropped while the queue is
// full, retransmitted, then every connection accepted.
func acceptQueueFull() Scenario {
	return Scenario{
		Name: "accept-queue-full",
		Must: []string{"accept queue full", "SYN-RECEIVED → ESTABLISHED"},
		Opts: tcp.Options{TimeWait: 100 * time.Millisecond, InitialRTO: 100 * time.Millisecond},
		Run: func(ctx context.Context, w *World) error {
			lc := conn.ListenConfig{Backlog: -1}
			ln, err := lc.Listen(w.TS, "tcp", ":80")
			if err != nil {
				return err
			}
			defer ln.Close()
			const n = 3
			dialed := make(chan net.Conn, n)
			for range n {
				go func() {
					c, err := w.Peer.Dial(netip.AddrPortFrom(TapstackAddr().Addr(), 80))
					if err != nil {
						c = nil
					}
					dialed <- c
				}()
				time.Sleep(20 * time.Millisecond) // one at a time on the wire
			}
			// Nobody accepts until the full queue has turned away the
			// two later dialers' SYNs and a retransmission of one (as
			// Linux does, a SYN meeting a full accept queue is dropped
			// and the peer's SYN timer asks again).
			if err := w.WaitFor(ctx, "SYNs dropped for a full accept queue", 3, func(ev event.Event) bool {
				return ev.Kind == event.KindDrop && ev.Drop == event.DropAcceptQueueFull
			}); err != nil {
				return err
			}
			for i := range n {
				sc, err := ln.AcceptTCP()
				if err != nil {
					return fmt.Errorf("accept %d: %w", i, err)
				}
				sc.Close()
			}
			for range n {
				c := <-dialed
				if c == nil {
					return errors.New("dial failed")
				}
				io.Copy(io.Discard, c)
				c.Close()
			}
			return w.WaitClosed(ctx)
		},
	}
}
