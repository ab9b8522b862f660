package plot_test

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
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	gtcp "gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// The scripted scenarios of pcap's oracle (pcap/oracle_test.go), between
// tapstack (captured, 192.0.2.1) and gVisor's TCP (192.0.2.2) over
// tap.Pipe: a clean close, 5% loss with SACK, zero windows, a full accept
// queue. Each writes a capture for the plot to draw.

type world struct {
	ts   *stack.Stack
	peer *gvpeer.Peer
	w    *pcap.Writer
	a, b *tap.PipeEnd
}

type scenario struct {
	name  string
	opts  tcp.Options
	fault *tap.FaultConfig // on tapstack's link, below the capture
	peer  func(p *gvpeer.Peer)
	run   func(ctx context.Context, w *world) error
	// snapLen, if set, cuts captured frames to that many bytes.
	snapLen int
}

// capture runs sc and returns the path of its capture.
func (sc scenario) capture(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, sc.name+".pcapng")
	w := &world{}
	w.a, w.b = tap.Pipe()
	var link gstack.LinkEndpoint = w.a
	var faultObs func(tap.FaultEvent)
	if sc.fault != nil {
		cfg := *sc.fault
		cfg.Observer = func(ev tap.FaultEvent) { faultObs(ev) }
		link = tap.NewFault(w.a, cfg)
	}
	pw, err := pcap.Create(path, link, pcap.Options{
		Description: "plot scenario " + sc.name,
		SnapLen:     sc.snapLen,
		LinkDrops:   func() uint64 { return w.a.Stats().DroppedQueueFull },
	})
	if err != nil {
		t.Fatal(err)
	}
	w.w = pw
	if sc.fault != nil {
		faultObs = pw.FaultObserver(nil)
	}
	opts := sc.opts
	opts.Observer = pw.Observer(nil)
	w.ts = stack.New(stack.Options{TCP: opts})
	if _, err := w.ts.AddNIC(pw, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	if w.peer, err = gvpeer.New(w.b, netip.MustParsePrefix("192.0.2.2/24"), nil); err != nil {
		t.Fatal(err)
	}
	if sc.peer != nil {
		sc.peer(w.peer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	runErr := sc.run(ctx, w)
	w.ts.TCP().SyncEvents()
	// Cut the cable first: gVisor's Stack.Wait holds the stack's lock
	// while it waits for the pipe's pumps.
	w.a.Close()
	w.b.Close()
	w.peer.Close()
	w.ts.Close()
	if err := pw.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	if runErr != nil {
		t.Fatalf("scenario %s: %v", sc.name, runErr)
	}
	return path
}

func (w *world) waitClosed(ctx context.Context) error {
	for len(w.ts.TCP().Connections()) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("connections left: %d", len(w.ts.TCP().Connections()))
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func payload(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// transfer sends data on w and checks that r reads exactly it, then
// closes both (w first).
func transfer(ctx context.Context, w, r net.Conn, data []byte) error {
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

func acceptTS(ln *conn.Listener) <-chan *conn.Conn {
	ch := make(chan *conn.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			c = nil
		}
		ch <- c
	}()
	return ch
}

// dialPeer connects tapstack to a gVisor listener on port 80.
func dialPeer(ctx context.Context, w *world) (net.Conn, net.Conn, func(), error) {
	ln, err := w.peer.Listen(80)
	if err != nil {
		return nil, nil, nil, err
	}
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	c, err := conn.DialContext(ctx, w.ts, "tcp", "192.0.2.2:80")
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	pc := <-acc
	if pc == nil {
		ln.Close()
		return nil, nil, nil, errors.New("accept failed")
	}
	return c, pc, func() { ln.Close() }, nil
}

func sackPeer(p *gvpeer.Peer) {
	opt := tcpip.TCPSACKEnabled(true)
	p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &opt)
}

// lossy is tapstack sending size bytes to gVisor at 5% loss both ways,
// SACK on both sides.
func lossy(name string, size int, seed uint64) scenario {
	return scenario{
		name:  name,
		opts:  tcp.Options{TimeWait: 100 * time.Millisecond},
		fault: &tap.FaultConfig{Loss: 0.05, Seed: seed, Inbound: &tap.FaultConfig{Loss: 0.05}},
		peer:  sackPeer,
		run: func(ctx context.Context, w *world) error {
			c, pc, done, err := dialPeer(ctx, w)
			if err != nil {
				return err
			}
			defer done()
			if err := transfer(ctx, c, pc, payload(size, seed)); err != nil {
				return err
			}
			return w.waitClosed(ctx)
		},
	}
}

var scenarios = []scenario{
	{
		// tapstack sends and closes first: FIN-WAIT-1, FIN-WAIT-2,
		// TIME-WAIT, and the TIME-WAIT expiry that no frame carries.
		name: "clean-close",
		opts: tcp.Options{TimeWait: 100 * time.Millisecond},
		run: func(ctx context.Context, w *world) error {
			c, pc, done, err := dialPeer(ctx, w)
			if err != nil {
				return err
			}
			defer done()
			if err := transfer(ctx, c, pc, payload(64<<10, 2)); err != nil {
				return err
			}
			return w.waitClosed(ctx)
		},
	},
	lossy("loss-sack", 256<<10, 7),
	{
		// The peer fills tapstack's small receive buffer while nobody
		// reads: zero window, the peer's probes, then the window update.
		// Then tapstack fills the peer's: tapstack's own probes.
		name: "zero-window",
		opts: tcp.Options{TimeWait: 100 * time.Millisecond, ReceiveBufferSize: 16 << 10},
		peer: func(p *gvpeer.Peer) {
			rb := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: 16 << 10, Max: 16 << 10}
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &rb)
			mod := tcpip.TCPModerateReceiveBufferOption(false)
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &mod)
		},
		run: func(ctx context.Context, w *world) error {
			ln, err := conn.Listen(w.ts, "tcp", ":80")
			if err != nil {
				return err
			}
			defer ln.Close()
			acc := acceptTS(ln)
			c, err := w.peer.Dial(netip.MustParseAddrPort("192.0.2.1:80"))
			if err != nil {
				return err
			}
			sc := <-acc
			if sc == nil {
				return errors.New("accept failed")
			}
			data := payload(48<<10, 4)
			go c.Write(data)
			time.Sleep(1200 * time.Millisecond)
			got := make([]byte, len(data))
			if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, data) {
				return fmt.Errorf("phase 1: %v", err)
			}
			go sc.Write(data)
			time.Sleep(1200 * time.Millisecond)
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
				return fmt.Errorf("phase 2: %v", err)
			}
			c.Close()
			if _, err := io.ReadAll(sc); err != nil {
				return err
			}
			sc.Close()
			return w.waitClosed(ctx)
		},
	},
	{
		// Backlog 0 (an accept queue of one) and nobody accepting while
		// three peers connect: final ACKs dropped while the queue is
		// full, retransmitted, then every connection accepted.
		name: "accept-queue-full",
		opts: tcp.Options{TimeWait: 100 * time.Millisecond, InitialRTO: 100 * time.Millisecond},
		run: func(ctx context.Context, w *world) error {
			lc := conn.ListenConfig{Backlog: -1}
			ln, err := lc.Listen(w.ts, "tcp", ":80")
			if err != nil {
				return err
			}
			defer ln.Close()
			const n = 3
			dialed := make(chan net.Conn, n)
			for range n {
				go func() {
					c, err := w.peer.Dial(netip.MustParseAddrPort("192.0.2.1:80"))
					if err != nil {
						c = nil
					}
					dialed <- c
				}()
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(400 * time.Millisecond)
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
			return w.waitClosed(ctx)
		},
	},
}
