package pcap_test

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
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
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
	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// The oracle: scripted scenarios between tapstack (captured, 192.0.2.1)
// and gVisor's TCP (192.0.2.2, an independent implementation) over
// tap.Pipe, each capture read back by tshark with its TCP analysis.
// tapstack's comments must explain every frame, put every state change on
// the frame that carries it, and agree with Wireshark wherever both speak;
// where they disagree because tapstack knows better, the case is named
// here (namedCases) and the comment says why.

var (
	tsAddr   = netip.MustParsePrefix("192.0.2.1/24")
	peerAddr = netip.MustParsePrefix("192.0.2.2/24")
)

// run is one scenario's world: tapstack with its capture, the gVisor peer,
// and the engine's state changes.
type run struct {
	t      *testing.T
	ts     *stack.Stack
	peer   *gvpeer.Peer
	path   string
	w      *pcap.Writer
	a, b   *tap.PipeEnd
	mu     sync.Mutex
	states []event.Event
	seen   []event.Event // sends and drops, for waitFor
}

type scenario struct {
	name  string
	opts  tcp.Options
	fault *tap.FaultConfig // on tapstack's link, below the capture
	peer  func(p *gvpeer.Peer)
	run   func(ctx context.Context, r *run) error
	// must lists words that some frame's comment must hold: the
	// feature the scenario is there to show (a run that turned into a
	// clean transfer under load would otherwise pass and show nothing).
	must []string
}

// waitFor waits until the engine has reported n events that match, or
// ctx ends; phases of a scenario wait on what the engine did, never on
// the wall clock alone.
func (r *run) waitFor(ctx context.Context, what string, n int, match func(event.Event) bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		got := 0
		for _, ev := range r.seen {
			if match(ev) {
				got++
			}
		}
		last := r.seen[max(0, len(r.seen)-8):]
		r.mu.Unlock()
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

func newRun(t *testing.T, sc scenario) *run {
	t.Helper()
	r := &run{t: t, path: filepath.Join(t.TempDir(), sc.name+".pcapng")}
	r.a, r.b = tap.Pipe()
	var link gstack.LinkEndpoint = r.a
	var faultObs func(tap.FaultEvent) // set before any frame moves
	if sc.fault != nil {
		cfg := *sc.fault
		cfg.Observer = func(ev tap.FaultEvent) { faultObs(ev) }
		link = tap.NewFault(r.a, cfg)
	}
	w, err := pcap.Create(r.path, link, pcap.Options{
		Description: "oracle scenario " + sc.name,
		LinkDrops:   func() uint64 { return r.a.Stats().DroppedQueueFull },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	if sc.fault != nil {
		faultObs = w.FaultObserver(nil)
	}
	opts := sc.opts
	opts.Observer = w.Observer(func(ev event.Event) {
		switch {
		case ev.Kind == event.KindState && ev.Conn.Remote.IsValid():
			r.mu.Lock()
			r.states = append(r.states, ev)
			r.mu.Unlock()
		case ev.Kind == event.KindSend || ev.Kind == event.KindDrop:
			r.mu.Lock()
			r.seen = append(r.seen, ev)
			r.mu.Unlock()
		}
	})
	r.ts = stack.New(stack.Options{TCP: opts})
	if _, err := r.ts.AddNIC(w, tsAddr); err != nil {
		t.Fatal(err)
	}
	r.peer, err = gvpeer.New(r.b, peerAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc.peer != nil {
		sc.peer(r.peer)
	}
	return r
}

// finish shuts everything down and closes the capture. The cable is cut
// first: gVisor's Stack.Wait holds the stack's lock while it waits for
// the pipe's pumps.
func (r *run) finish() {
	r.a.Close()
	r.b.Close()
	r.peer.Close()
	r.ts.Close()
	if err := r.w.CloseCapture(); err != nil {
		r.t.Fatal(err)
	}
}

// waitClosed waits until every connection of the tapstack stack is gone.
func (r *run) waitClosed(ctx context.Context) error {
	for {
		if len(r.ts.TCP().Connections()) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var s []string
			for _, c := range r.ts.TCP().Connections() {
				s = append(s, c.Info().ID.String()+" "+c.Info().State.String())
			}
			return fmt.Errorf("connections left: %v", s)
		case <-time.After(5 * time.Millisecond):
		}
	}
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
func dialPeer(ctx context.Context, r *run) (net.Conn, net.Conn, func(), error) {
	ln, err := r.peer.Listen(80)
	if err != nil {
		return nil, nil, nil, err
	}
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	c, err := conn.DialContext(ctx, r.ts, "tcp", "192.0.2.2:80")
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

var scenarios = []scenario{
	{
		// The peer sends and closes first: tapstack goes through
		// CLOSE-WAIT and LAST-ACK.
		name: "close-peer-first",
		must: []string{"ESTABLISHED → CLOSE-WAIT", "LAST-ACK → CLOSED"},
		opts: tcp.Options{TimeWait: 100 * time.Millisecond},
		run: func(ctx context.Context, r *run) error {
			ln, err := conn.Listen(r.ts, "tcp", ":80")
			if err != nil {
				return err
			}
			defer ln.Close()
			acc := acceptTS(ln)
			c, err := r.peer.Dial(netip.MustParseAddrPort("192.0.2.1:80"))
			if err != nil {
				return err
			}
			sc := <-acc
			if sc == nil {
				return errors.New("accept failed")
			}
			if err := transfer(ctx, c, sc, payload(64<<10, 1)); err != nil {
				return err
			}
			return r.waitClosed(ctx)
		},
	},
	{
		// tapstack sends and closes first: FIN-WAIT-1, FIN-WAIT-2,
		// TIME-WAIT, and the TIME-WAIT expiry that no frame carries.
		name: "close-tapstack-first",
		must: []string{"ESTABLISHED → FIN-WAIT-1", "→ TIME-WAIT"},
		opts: tcp.Options{TimeWait: 100 * time.Millisecond},
		run: func(ctx context.Context, r *run) error {
			c, pc, done, err := dialPeer(ctx, r)
			if err != nil {
				return err
			}
			defer done()
			if err := transfer(ctx, c, pc, payload(64<<10, 2)); err != nil {
				return err
			}
			return r.waitClosed(ctx)
		},
	},
	{
		// 5% loss in both directions, SACK on both sides: fast
		// retransmissions, SACK blocks, dup ACKs, RTOs.
		name:  "loss-sack",
		must:  []string{"retransmit", "SACK", "fault: dropped"},
		opts:  tcp.Options{TimeWait: 100 * time.Millisecond},
		fault: &tap.FaultConfig{Loss: 0.05, Seed: 7, Inbound: &tap.FaultConfig{Loss: 0.05}},
		peer: func(p *gvpeer.Peer) {
			opt := tcpip.TCPSACKEnabled(true)
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &opt)
		},
		run: func(ctx context.Context, r *run) error {
			c, pc, done, err := dialPeer(ctx, r)
			if err != nil {
				return err
			}
			defer done()
			if err := transfer(ctx, c, pc, payload(256<<10, 3)); err != nil {
				return err
			}
			return r.waitClosed(ctx)
		},
	},
	{
		// The peer fills tapstack's small receive buffer while nobody
		// reads: zero window, the peer's probes, then the window update.
		// Then tapstack fills the peer's: tapstack's own probes.
		name: "zero-window",
		must: []string{"zero window probe", "zero window;", "window update"},
		opts: tcp.Options{TimeWait: 100 * time.Millisecond, ReceiveBufferSize: 16 << 10},
		peer: func(p *gvpeer.Peer) {
			rb := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: 16 << 10, Max: 16 << 10}
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &rb)
			mod := tcpip.TCPModerateReceiveBufferOption(false)
			p.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &mod)
		},
		run: func(ctx context.Context, r *run) error {
			ln, err := conn.Listen(r.ts, "tcp", ":80")
			if err != nil {
				return err
			}
			defer ln.Close()
			acc := acceptTS(ln)
			c, err := r.peer.Dial(netip.MustParseAddrPort("192.0.2.1:80"))
			if err != nil {
				return err
			}
			sc := <-acc
			if sc == nil {
				return errors.New("accept failed")
			}
			data := payload(48<<10, 4)
			// Phase 1: the peer writes, tapstack does not read yet,
			// until the peer has probed the zero window twice.
			go c.Write(data)
			// gVisor probes with one byte already acknowledged (SEQ =
			// SND.UNA-1, as Linux's tcp_xmit_probe_skb but with a byte):
			// an old sequence to tapstack, answered with an ACK (RFC
			// 9293 3.10.7.4). A probe of new data would meet the zero
			// window.
			if err := r.waitFor(ctx, "probes of tapstack's zero window", 2, func(ev event.Event) bool {
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
			if err := r.waitFor(ctx, "probes of the peer's zero window", 2, func(ev event.Event) bool {
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
			return r.waitClosed(ctx)
		},
	},
	{
		// Backlog 0 (an accept queue of one) and nobody accepting while
		// three peers connect: SYNs dropped while the queue is full,
		// retransmitted, then every connection accepted.
		name: "accept-queue-full",
		must: []string{"accept queue full", "SYN-RECEIVED → ESTABLISHED"},
		opts: tcp.Options{TimeWait: 100 * time.Millisecond, InitialRTO: 100 * time.Millisecond},
		run: func(ctx context.Context, r *run) error {
			lc := conn.ListenConfig{Backlog: -1}
			ln, err := lc.Listen(r.ts, "tcp", ":80")
			if err != nil {
				return err
			}
			defer ln.Close()
			const n = 3
			dialed := make(chan net.Conn, n)
			for range n {
				go func() {
					c, err := r.peer.Dial(netip.MustParseAddrPort("192.0.2.1:80"))
					if err != nil {
						dialed <- nil
						return
					}
					dialed <- c
				}()
				time.Sleep(20 * time.Millisecond) // one at a time on the wire
			}
			// Nobody accepts until the full queue has turned away the
			// two later dialers' SYNs and a retransmission of one (as
			// Linux does, a SYN meeting a full accept queue is dropped
			// and the peer's SYN timer asks again).
			if err := r.waitFor(ctx, "SYNs dropped for a full accept queue", 3, func(ev event.Event) bool {
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
			return r.waitClosed(ctx)
		},
	},
}

func TestOracle(t *testing.T) {
	if _, err := pcaptest.Version(); err != nil {
		t.Skip("tshark is not installed (apt-get install tshark; .ci/run installs it): the oracle needs Wireshark's TCP analysis")
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			r := newRun(t, sc)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := sc.run(ctx, r)
			r.finish()
			if err != nil {
				t.Fatal(err)
			}
			checkCapture(t, r)
			checkMust(t, r, sc.must)
		})
	}
}

// checkMust fails the scenario if no frame's comment holds one of the
// words it is there to show.
func checkMust(t *testing.T, r *run, must []string) {
	t.Helper()
	pkts, err := pcap.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range must {
		found := false
		for _, p := range pkts {
			if strings.Contains(p.Comment(), w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no frame's comment says %q: the scenario did not show what it is for", w)
		}
	}
}

// A named case: where tapstack and Wireshark disagree because tapstack
// knows better. The comment must contain key, which says why; flag "*"
// matches any Wireshark flag.
type namedCase struct {
	flag, key, why string
}

var namedCases = []namedCase{
	{"*", "fault: dropped", "the fault middleware dropped the frame on its way in: the stack never saw it"},
	{"duplicate_ack", "SND.UNA +", "the identical ACK before it was dropped by the fault middleware: for the stack this one is new (checked)"},
	{"keep_alive", "zero window probe", "a Linux-style zero window probe (SEQ = SND.UNA-1, no data): Wireshark reads the shape as a keep-alive"},
	{"retransmission", "zero window probe", "a probe repeats SND.UNA-1: Wireshark calls a repeated probe a retransmission"},
	{"duplicate_ack", "ACK: nothing new", "the engine's RFC 5681 2 test did not count it (nothing outstanding, the window moved, or no new SACK information); Wireshark counts any repeated ACK"},
	{"duplicate_ack", "dropped:", "the engine discarded the segment before its ACK was processed"},
	{"retransmission", "fault: duplicated", "the fault middleware sent the frame twice: not a retransmission"},
	{"out_of_order", "fault: reordered", "the fault middleware reordered the frame"},
	{"lost_segment", "fault:", "a frame before it met a fault"},
}

// rules say, per Wireshark analysis flag, which words of a tapstack
// comment agree with it.
var rules = map[string][]string{
	"retransmission":          {"retransmit", "retransmission of frame", "dropped: old sequence", "tail loss probe"}, // a probe resends the last segment (RFC 8985 7.3)
	"fast_retransmission":     {"retransmit"},
	"spurious_retransmission": {"retransmit", "retransmission of frame", "dropped: old sequence"},
	"duplicate_ack":           {"dup ACK #"},
	"zero_window":             {"zero window"},
	"zero_window_probe":       {"zero window probe"},
	"window_update":           {"window update"},
	"keep_alive":              {"keepalive"},
	"out_of_order":            {"fills a hole", "out of order", "retransmission of frame", "retransmit", "dropped: old sequence"},
	"lost_segment":            {"out of order: held", "link drops", "dropped:"},
}

// reverse rules: words of a tapstack comment that Wireshark must confirm
// with one of its flags.
var reverse = []struct {
	dir   pcap.Direction
	word  string
	flags []string
}{
	{pcap.Outbound, "retransmit", []string{"retransmission", "fast_retransmission", "spurious_retransmission"}},
	{pcap.Unknown, "zero window;", []string{"zero_window"}},
	{pcap.Outbound, "dup ACK #", []string{"duplicate_ack"}},
	{pcap.Inbound, "keepalive", []string{"keep_alive"}},
	{pcap.Inbound, "retransmission of frame", []string{"retransmission", "spurious_retransmission", "out_of_order", "fast_retransmission"}},
}

var (
	stateRE = regexp.MustCompile(`([A-Z][A-Z0-9-]+) → ([A-Z][A-Z0-9-]+)`)
	retxRE  = regexp.MustCompile(`retransmit (?:#\d+ )?of frame (\d+)`)
)

// checkCapture applies the oracle to r's capture.
func checkCapture(t *testing.T, r *run) {
	t.Helper()
	pkts, err := pcap.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(r.path)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := pcap.ReadNotes(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	frames, err := pcaptest.Tshark(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.w.Stats(); st.Unexplained > 0 {
		t.Errorf("%d frames without an engine event; stats %+v", st.Unexplained, st)
	}
	byNo := map[int]pcaptest.Frame{}
	for _, fr := range frames {
		byNo[fr.Number] = fr
	}
	if len(frames) != len(pkts)+len(notes) {
		t.Errorf("tshark read %d records, the capture has %d frames and %d notes", len(frames), len(pkts), len(notes))
	}
	named := map[string]int{}
	droppedAcks := map[uint32]bool{} // ACK numbers of inbound frames a fault dropped
	var dump strings.Builder
	for _, p := range pkts {
		fr := byNo[p.Number]
		c := p.Comment()
		if p.Direction == pcap.Inbound && strings.Contains(c, "fault: dropped") {
			droppedAcks[ackOf(p)] = true
		}
		fmt.Fprintf(&dump, "%4d %-3v %-10s %-40s | %s\n", p.Number, p.Direction, fr.Flags, strings.Join(fr.AnalysisNames(), ","), c)
		// Every frame explained, and tshark reads what we wrote.
		if c == "" || strings.Contains(c, "no engine event") {
			t.Errorf("frame %d (%v %s) has no explanation: %q", p.Number, p.Direction, fr.Flags, c)
		}
		if fr.Comment != c {
			t.Errorf("frame %d: tshark reads comment %q, we wrote %q", p.Number, fr.Comment, c)
		}
		// A drop verdict exactly where a drop is told.
		dropped := strings.Contains(c, "dropped")
		if dropped != (fr.Verdict == "2") || dropped != p.Dropped {
			t.Errorf("frame %d: comment %q, verdict %q (read back %v)", p.Number, c, fr.Verdict, p.Dropped)
		}
		checkStates(t, p, c)
		// Wireshark's flags, confirmed by tapstack's words or named.
		for _, flag := range fr.AnalysisNames() {
			words, ok := rules[flag]
			if !ok || containsAny(c, words) {
				continue
			}
			if nc := findNamed(flag, c); nc != nil {
				if nc.key == "SND.UNA +" && !droppedAcks[ackOf(p)] {
					t.Errorf("frame %d: Wireshark says duplicate ACK, tapstack %q, and no identical ACK before it was dropped", p.Number, c)
				}
				named[nc.flag+": "+nc.key]++
				continue
			}
			t.Errorf("frame %d %v %s: Wireshark says %s, tapstack says %q", p.Number, p.Direction, fr.Flags, flag, c)
		}
		for _, rv := range reverse {
			if (rv.dir != pcap.Unknown && rv.dir != p.Direction) || !strings.Contains(c+";", rv.word) {
				continue
			}
			ok := false
			for _, fl := range rv.flags {
				ok = ok || fr.Has(fl)
			}
			if !ok && rv.word == "retransmit" && fr.Has("out_of_order") {
				// Wireshark calls a retransmission sent less than an RTT
				// after the highest segment out-of-order; the engine
				// knows it retransmitted.
				named["out_of_order: retransmit"]++
				continue
			}
			if !ok && !strings.Contains(c, "zero window probe") {
				t.Errorf("frame %d %v %s: tapstack says %q, Wireshark has none of %v (it says %v)", p.Number, p.Direction, fr.Flags, rv.word, rv.flags, fr.AnalysisNames())
			}
		}
		// A retransmission shares its original's packet id.
		if m := retxRE.FindStringSubmatch(c); m != nil {
			var orig int
			fmt.Sscan(m[1], &orig)
			if o := byNo[orig]; o.PacketID != fr.PacketID || fr.PacketID == 0 {
				t.Errorf("frame %d: packet id %d, its original frame %d has %d", p.Number, fr.PacketID, orig, o.PacketID)
			}
		}
	}
	// Every state change of a connection is told, on a frame or in a
	// note.
	var all strings.Builder
	for _, p := range pkts {
		all.WriteString(p.Comment() + "\n")
	}
	for _, n := range notes {
		all.WriteString(n.Text + "\n")
	}
	text := all.String()
	r.mu.Lock()
	counts := map[string]int{}
	for _, ev := range r.states {
		counts[ev.From.String()+" → "+ev.To.String()]++
	}
	r.mu.Unlock()
	for s, n := range counts {
		if got := strings.Count(text, s); got < n {
			t.Errorf("state change %s happened %d times, told %d times", s, n, got)
		}
	}
	var ns []string
	for k, v := range named {
		ns = append(ns, fmt.Sprintf("%s (%d)", k, v))
	}
	sort.Strings(ns)
	t.Logf("%d frames, %d notes; named disagreements: %v", len(pkts), len(notes), ns)
	if t.Failed() || testing.Verbose() {
		t.Logf("capture (number, direction, flags, Wireshark's analysis | tapstack's comment):\n%s", dump.String())
		for _, n := range notes {
			t.Logf("note %s %s: %s", n.Time.Format(time.TimeOnly), n.Conn, n.Text)
		}
	}
}

func ackOf(p pcap.Packet) uint32 {
	_, k, _ := p.TCP()
	return k.Ack
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func findNamed(flag, c string) *namedCase {
	for i := range namedCases {
		if (namedCases[i].flag == flag || namedCases[i].flag == "*") && strings.Contains(c, namedCases[i].key) {
			return &namedCases[i]
		}
	}
	return nil
}

// checkStates: a state change is on the frame that carries it. The table
// says which segment can cause (inbound) or carry (outbound) a change into
// each state, by direction and flags. Changes told as "earlier ..." are
// the ones no frame carried.
func checkStates(t *testing.T, p pcap.Packet, c string) {
	t.Helper()
	_, k, ok := p.TCP()
	for _, part := range strings.Split(c, "; ") {
		if strings.HasPrefix(part, "earlier ") {
			continue
		}
		for _, m := range stateRE.FindAllStringSubmatch(part, -1) {
			if !ok {
				if !strings.HasPrefix(c, "ICMP") {
					t.Errorf("frame %d: %s on a frame without TCP", p.Number, m[0])
				}
				continue
			}
			flags := k.Flags
			syn, fin, rst, ack := flags&0x02 != 0, flags&0x01 != 0, flags&0x04 != 0, flags&0x10 != 0
			in := p.Direction == pcap.Inbound
			var good bool
			switch m[2] {
			case "SYN-SENT":
				good = !in && syn && !ack
			case "SYN-RECEIVED":
				good = in && syn
			case "ESTABLISHED":
				good = in && ack
			case "FIN-WAIT-1", "LAST-ACK":
				good = !in && fin
			case "FIN-WAIT-2":
				good = in && ack
			case "CLOSE-WAIT", "CLOSING":
				good = in && fin
			case "TIME-WAIT":
				good = in && (fin || ack)
			case "CLOSED":
				good = rst || (in && ack) || (in && syn)
			default:
				good = true
			}
			if !good {
				t.Errorf("frame %d (%v, flags %#x): %s is not carried by this segment: %q", p.Number, p.Direction, flags, m[0], c)
			}
		}
	}
}
