package tcp_test

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// Packet traces of the two listen queues: the SYN queue (half-open
// entries, SYN-ACK retransmission, SYN cookies) and the accept queue
// (backlog+1, overflow policies), each decision checked on the wire, in
// the counters and in the KindQueue notes.

// notes records the Note of every KindQueue event.
type notes struct {
	mu sync.Mutex
	s  []string
}

func (n *notes) observe(ev event.Event) {
	if ev.Kind == event.KindQueue {
		n.mu.Lock()
		n.s = append(n.s, ev.Note)
		n.mu.Unlock()
	}
}

// want fails unless a note starting with prefix was recorded.
func (n *notes) want(t *testing.T, prefix string) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.ContainsFunc(n.s, func(s string) bool { return strings.HasPrefix(s, prefix) }) {
		t.Errorf("no queue event %q; got %q", prefix, n.s)
	}
}

// listen makes a peer and a listener with the given backlog and options,
// recording queue events.
func listen(t *testing.T, backlog int, o tcp.Options) (*tcptest.Peer, *tcp.Listener, *notes) {
	t.Helper()
	n := &notes{}
	o.Observer = n.observe
	p := tcptest.New(t, tcptest.WithTCP(o))
	return p, p.Listen(backlog), n
}

// client is one peer port with the stack's ISS as that connection saw it:
// tcptest's peer talks on one port at a time, so tests switch between them.
type client struct {
	port uint16
	iss  uint32
}

// use points the peer at c.
func (c *client) use(p *tcptest.Peer) {
	p.PeerPort = c.port
	p.SetStackISS(c.iss, true)
}

// syn sends a SYN from port and expects a SYN-ACK with a fresh ISS.
func syn(t *testing.T, p *tcptest.Peer, port uint16) *client {
	t.Helper()
	p.PeerPort = port
	p.SetStackISS(0, false)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	iss, _ := p.StackISS()
	return &client{port: port, iss: iss}
}

// handshake completes a connection from port into the accept queue.
func handshake(t *testing.T, p *tcptest.Peer, port uint16) *client {
	t.Helper()
	c := syn(t, p, port)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	return c
}

func wantQueues(t *testing.T, l *tcp.Listener, syn, accept int) {
	t.Helper()
	if q := l.Queues(); q.SynQueueLen != syn || q.AcceptQueueLen != accept {
		t.Fatalf("queues: syn %d/%d, accept %d/%d; want syn %d, accept %d",
			q.SynQueueLen, q.SynQueueLimit, q.AcceptQueueLen, q.AcceptQueueLimit, syn, accept)
	}
}

func wantCount(t *testing.T, name string, got, want uint64) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", name, got, want)
	}
}

// TestSynQueueLimit: with cookies off, a SYN that finds the SYN queue at
// SynQueueLimit is dropped without an answer (Linux tcp_max_syn_backlog).
func TestSynQueueLimit(t *testing.T) {
	p, l, n := listen(t, 16, tcp.Options{SynQueueLimit: 2, NoSynCookies: true})
	syn(t, p, 40001)
	syn(t, p, 40002)
	wantQueues(t, l, 2, 0)
	p.PeerPort = 40003
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.ExpectNothing()
	wantQueues(t, l, 2, 0)
	st := p.TCP.Stats()
	wantCount(t, "SynQueued", st.Listen.SynQueued.Load(), 2)
	wantCount(t, "SynQueueOverflows", st.Listen.SynQueueOverflows.Load(), 1)
	wantCount(t, "dropped (SYN queue full)", st.Dropped(event.DropSynQueueFull), 1)
	wantCount(t, "ListenDrops", st.ListenDrops.Load(), 1)
	wantCount(t, "CookiesSent", st.Listen.CookiesSent.Load(), 0)
	n.want(t, "SYN queued")
	n.want(t, "SYN dropped: SYN queue full")
}

// TestSynAckRetransmitSchedule: the SYN-ACK is retransmitted with the RTO
// doubling from 1 s (RFC 6298 5.5): at 1, 3, 7, 15 and 31 s, SynAckRetries
// (5) times; at 63 s the entry is forgotten without a RST, as Linux does,
// and the listener is unharmed.
func TestSynAckRetransmitSchedule(t *testing.T) {
	p, l, n := listen(t, 16, tcp.Options{})
	syn(t, p, 40001)
	for _, rto := range []time.Duration{1, 2, 4, 8, 16} {
		p.Advance(rto*time.Second - 1)
		p.ExpectNothing()
		p.Advance(1)
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
	}
	wantQueues(t, l, 1, 0)
	p.Advance(32 * time.Second)
	p.ExpectNothing()
	wantQueues(t, l, 0, 0)
	if c := p.TCP.Connections(); len(c) != 0 {
		t.Errorf("%d connections left after give-up", len(c))
	}
	st := p.TCP.Stats()
	wantCount(t, "SYN-ACK retransmits", st.Sent(event.SendSynAckRetransmit), 5)
	wantCount(t, "HalfOpenExpired", st.Listen.HalfOpenExpired.Load(), 1)
	n.want(t, "half-open expired")
	p.WantState(l, event.Listen)
	handshake(t, p, 40002)
	wantQueues(t, l, 0, 1)
}

// TestDuplicateSynReanswered: a retransmitted SYN reaches its half-open
// entry and gets the same SYN-ACK again; no second entry is made.
func TestDuplicateSynReanswered(t *testing.T) {
	p, l, _ := listen(t, 16, tcp.Options{})
	syn(t, p, 40001)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	wantQueues(t, l, 1, 0)
	wantCount(t, "SynQueued", p.TCP.Stats().Listen.SynQueued.Load(), 1)
}

// TestRstToSynReceived: a RST at RCV.NXT removes the half-open entry
// (3.10.7.4 second step: "return this connection to LISTEN"); nothing is
// sent and the listener keeps listening.
func TestRstToSynReceived(t *testing.T) {
	p, l, n := listen(t, 16, tcp.Options{})
	syn(t, p, 40001)
	p.Inject(seg{Flags: "R", Seq: 1})
	p.ExpectNothing()
	wantQueues(t, l, 0, 0)
	if c := p.TCP.Connections(); len(c) != 0 {
		t.Errorf("%d connections left after RST", len(c))
	}
	n.want(t, "half-open entry removed")
	p.WantState(l, event.Listen)
	handshake(t, p, 40001) // the same port again, from scratch
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
}

// fillSynQueue makes limit half-open entries from ports 50000 on.
func fillSynQueue(t *testing.T, p *tcptest.Peer, limit int) []*client {
	t.Helper()
	var cs []*client
	for i := range limit {
		cs = append(cs, syn(t, p, uint16(50000+i)))
	}
	return cs
}

// cookieSyn sends a SYN from port that the listener answers with a cookie
// SYN-ACK: our MSS, and no window scale although the SYN offered one.
func cookieSyn(t *testing.T, p *tcptest.Peer, port uint16, mss uint16) *client {
	t.Helper()
	p.PeerPort = port
	p.SetStackISS(0, false)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: mss, WS: 7})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460, WS: tcptest.NoWS, Win: 65535})
	iss, _ := p.StackISS()
	return &client{port: port, iss: iss}
}

// TestSynCookiesOnlyWhenFull: SYNs get half-open entries up to the limit;
// the next SYN, and only it, is answered with a cookie (RFC 4987 3.6) and
// leaves no state behind.
func TestSynCookiesOnlyWhenFull(t *testing.T) {
	p, l, n := listen(t, 16, tcp.Options{SynQueueLimit: 2})
	st := p.TCP.Stats()
	fillSynQueue(t, p, 2)
	wantCount(t, "CookiesSent before full", st.Listen.CookiesSent.Load(), 0)
	wantCount(t, "cookie SYN-ACKs before full", st.Sent(event.SendSynAckCookie), 0)
	conns := len(p.TCP.Connections())
	cookieSyn(t, p, 40001, 1460)
	wantCount(t, "CookiesSent", st.Listen.CookiesSent.Load(), 1)
	wantCount(t, "cookie SYN-ACKs", st.Sent(event.SendSynAckCookie), 1)
	wantCount(t, "SynQueueOverflows", st.Listen.SynQueueOverflows.Load(), 1)
	wantCount(t, "ListenDrops", st.ListenDrops.Load(), 0)
	wantQueues(t, l, 2, 0)
	if got := len(p.TCP.Connections()); got != conns {
		t.Errorf("a cookie SYN made state: %d connections, want %d", got, conns)
	}
	n.want(t, "SYN queue full: SYN cookie sent")
	// Stateless: the cookie is not retransmitted; only the entries'
	// own SYN-ACKs are, in no particular order.
	p.Advance(time.Second)
	sent := p.DrainAny()
	if len(sent) != 2 || slices.ContainsFunc(sent, func(s string) bool { return strings.Contains(s, ".40001:") }) {
		t.Errorf("after 1 s the stack sent %q, want the two entries' SYN-ACKs only", sent)
	}
}

// TestSynCookieAccepted: the final ACK returns the cookie; the connection
// is made in ESTABLISHED straight into the accept queue, with the MSS the
// cookie carried (the peer's 1400 rounded down to 1300 in Linux's table)
// and no window scaling. The ACK's data is kept, and data flows both ways.
func TestSynCookieAccepted(t *testing.T) {
	p, l, n := listen(t, 16, tcp.Options{SynQueueLimit: 1})
	fillSynQueue(t, p, 1)
	c := cookieSyn(t, p, 40001, 1400)
	c.use(p)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Win: 1000, Payload: []byte("hello")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 6}) // the first data: a quick ACK
	wantQueues(t, l, 1, 1)
	ep, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	p.WantState(ep, event.Established)
	info := ep.Info()
	if info.SndMSS != 1300 || info.SndWndScale != -1 || info.TCB.SndWnd != 1000 {
		t.Errorf("send MSS %d, scale %d, SND.WND %d; want 1300, -1 (off), 1000 unscaled", info.SndMSS, info.SndWndScale, info.TCB.SndWnd)
	}
	buf := make([]byte, 16)
	if k, err := ep.Read(buf); err != nil || string(buf[:k]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:k], err)
	}
	if _, err := ep.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 6, Win: 65535, Payload: []byte("world")})
	p.Inject(seg{Flags: ".", Seq: 6, Ack: 6})
	p.ExpectNothing()
	st := p.TCP.Stats()
	wantCount(t, "CookiesAccepted", st.Listen.CookiesAccepted.Load(), 1)
	wantCount(t, "AcceptQueueAdds", st.Listen.AcceptQueueAdds.Load(), 1)
	wantCount(t, "Accepted", st.Listen.Accepted.Load(), 1)
	n.want(t, "SYN cookie accepted: mss 1300")
	n.want(t, "accepted")
}

// TestSynCookieSmallMSS: a cookie carries the MSS as an index into Linux's
// msstab, {536, 1300, 1440, 1460}, and a peer's MSS below 536 takes the
// first entry, as in Linux's __cookie_v4_init_sequence: the connection a
// cookie opens for a peer that announced 500 (or 48) sends it 536-byte
// segments. RFC 9293 3.7.1 bounds the send MSS by the peer's; we keep
// Linux's choice, for the reasons cookie.go gives, and this pins it.
func TestSynCookieSmallMSS(t *testing.T) {
	for _, mss := range []uint16{500, 48} {
		t.Run(strconv.Itoa(int(mss)), func(t *testing.T) {
			p, l, _ := listen(t, 16, tcp.Options{SynQueueLimit: 1})
			fillSynQueue(t, p, 1)
			c := cookieSyn(t, p, 40001, mss)
			c.use(p)
			p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
			ep, err := l.Accept()
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			if got := ep.Info().SndMSS; got != 536 {
				t.Errorf("send MSS %d after a cookie for a peer's %d, want 536 (Linux's msstab[0])", got, mss)
			}
			ep.Write(payload(0, 2*536))
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 536, Check: tcptest.IgnorePSH})
			p.Expect(seg{Flags: "P.", Seq: 537, Ack: 1, Len: 536})
		})
	}
}

// TestSynCookieRejected: an ACK whose cookie does not verify, forged or
// expired, is answered <SEQ=SEG.ACK><CTL=RST> like any bad ACK in LISTEN
// (3.10.7.2) and leaves no state.
func TestSynCookieRejected(t *testing.T) {
	t.Run("forged", func(t *testing.T) {
		p, l, n := listen(t, 16, tcp.Options{SynQueueLimit: 1})
		fillSynQueue(t, p, 1)
		c := cookieSyn(t, p, 40001, 1460)
		c.use(p)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 2}) // cookie+1
		p.Expect(seg{Flags: "R", Seq: 2})
		p.Inject(seg{Flags: ".", Seq: 2, Ack: 1}) // not this SYN's sequence number
		p.Expect(seg{Flags: "R", Seq: 1})
		p.PeerPort = 40002 // another 4-tuple
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		p.Expect(seg{Flags: "R", Seq: 1})
		wantQueues(t, l, 1, 0)
		st := p.TCP.Stats()
		wantCount(t, "CookiesRejected", st.Listen.CookiesRejected.Load(), 3)
		wantCount(t, "dropped (cookie invalid)", st.Dropped(event.DropCookieInvalid), 3)
		wantCount(t, "CookiesAccepted", st.Listen.CookiesAccepted.Load(), 0)
		n.want(t, "SYN cookie rejected")
	})
	t.Run("expired", func(t *testing.T) {
		// The filler entry must outlive 128 s of retransmissions.
		p, l, _ := listen(t, 16, tcp.Options{SynQueueLimit: 1, SynAckRetries: 10})
		fillSynQueue(t, p, 1)
		old := cookieSyn(t, p, 40001, 1460)
		// One tick of the 64 s counter later the cookie is still good
		// (Linux MAX_SYNCOOKIE_AGE 2: age 0 or 1).
		young := cookieSyn(t, p, 40002, 1460)
		p.Advance(64 * time.Second)
		p.DrainAny()
		young.use(p)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		p.ExpectNothing()
		wantQueues(t, l, 1, 1)
		// Two ticks: too old. Another flood SYN keeps cookies on, so
		// the ACK is checked as a cookie and fails.
		p.Advance(64 * time.Second)
		p.DrainAny()
		cookieSyn(t, p, 40003, 1460)
		old.use(p)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		p.Expect(seg{Flags: "R", Seq: 1})
		wantQueues(t, l, 1, 1)
		st := p.TCP.Stats()
		wantCount(t, "CookiesAccepted", st.Listen.CookiesAccepted.Load(), 1)
		wantCount(t, "CookiesRejected", st.Listen.CookiesRejected.Load(), 1)
	})
	t.Run("no recent cookies", func(t *testing.T) {
		// Without an overflow no ACK is taken as a cookie (Linux
		// tcp_synq_no_recent_overflow): a plain ACK to a listener.
		p, _, _ := listen(t, 16, tcp.Options{})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		p.Expect(seg{Flags: "R", Seq: 1})
		st := p.TCP.Stats()
		wantCount(t, "dropped (ACK to listener)", st.Dropped(event.DropListenAck), 1)
		wantCount(t, "CookiesRejected", st.Listen.CookiesRejected.Load(), 0)
	})
	t.Run("cookies off", func(t *testing.T) {
		p, l, _ := listen(t, 16, tcp.Options{SynQueueLimit: 1, NoSynCookies: true})
		fillSynQueue(t, p, 1)
		p.PeerPort = 40001
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.ExpectNothing()
		wantQueues(t, l, 1, 0)
	})
}

// TestCookieAcceptQueueFull: a valid cookie ACK that finds the accept
// queue full is dropped, leaving no state (Linux tcp_v4_syn_recv_sock);
// the peer's retransmitted data carries the cookie again once there is
// room.
func TestCookieAcceptQueueFull(t *testing.T) {
	p, l, _ := listen(t, 0, tcp.Options{SynQueueLimit: 2})
	fillSynQueue(t, p, 1)
	first := syn(t, p, 40000)
	c := cookieSyn(t, p, 40001, 1460)
	first.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1}) // the accept queue (backlog 0) is full
	c.use(p)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.ExpectNothing()
	wantQueues(t, l, 1, 1)
	wantCount(t, "AcceptOverflowDrops", p.TCP.Stats().Listen.AcceptOverflowDrops.Load(), 1)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2}) // the first data: a quick ACK
	wantQueues(t, l, 1, 1)
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if ep.ID().Remote.Port() != 40001 || ep.Info().RecvQueued != 1 {
		t.Errorf("accepted %v with %d bytes queued, want the cookie connection with 1", ep.ID(), ep.Info().RecvQueued)
	}
}

// TestCookieConnectionLimit: a valid cookie ACK that finds the stack at
// MaxConnections is dropped (DropConnectionLimit) and leaves no state: the
// place it had taken in the accept queue is given back, so that with a
// backlog of 0 the half-open connection that held the limit still gets in
// when its handshake completes.
func TestCookieConnectionLimit(t *testing.T) {
	p, l, _ := listen(t, 0, tcp.Options{SynQueueLimit: 1, MaxConnections: 1})
	first := fillSynQueue(t, p, 1)[0] // half-open: the one connection allowed
	c := cookieSyn(t, p, 40001, 1460)
	c.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	wantCount(t, "Dropped(connection limit)", p.TCP.Stats().Dropped(event.DropConnectionLimit), 1)
	wantQueues(t, l, 1, 0)
	first.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	wantQueues(t, l, 0, 1)
	if _, err := l.Accept(); err != nil {
		t.Fatalf("Accept of the half-open connection: %v", err)
	}
	wantCount(t, "AcceptOverflowDrops", p.TCP.Stats().Listen.AcceptOverflowDrops.Load(), 0)
}

// withoutRoutes empties the stack's route table, as `ip route flush` would,
// so that nothing can be sent back to the peer; the returned func puts the
// table back.
func withoutRoutes(p *tcptest.Peer) (restore func()) {
	ns := p.Stack.Netstack()
	saved := ns.GetRouteTable()
	ns.RemoveRoutes(func(tcpip.Route) bool { return true })
	p.TCP.RoutesChanged()
	return func() {
		ns.SetRouteTable(saved)
		p.TCP.RoutesChanged()
	}
}

// TestSynNoRoute: a SYN the listener cannot answer, because there is no
// route back to its source, is dropped with a reason and counted
// (DropNoRoute and ListenDrops, as Linux's tcp_conn_request drops it when
// route_req fails and counts a ListenDrops), whether it would have had a
// half-open entry (RFC 9293 3.10.7.2) or a SYN cookie (RFC 4987 3.6,
// then no CookiesSent: no cookie left). It leaves no state: the listener
// answers the peer's next SYN once the route is back.
func TestSynNoRoute(t *testing.T) {
	t.Run("half-open", func(t *testing.T) {
		p, l, _ := listen(t, 16, tcp.Options{})
		restore := withoutRoutes(p)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.ExpectNothing()
		wantQueues(t, l, 0, 0)
		st := p.TCP.Stats()
		wantCount(t, "Dropped(no route)", st.Dropped(event.DropNoRoute), 1)
		wantCount(t, "ListenDrops", st.ListenDrops.Load(), 1)
		wantCount(t, "SynQueued", st.Listen.SynQueued.Load(), 0)
		restore()
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
		wantQueues(t, l, 1, 0)
	})
	t.Run("cookie", func(t *testing.T) {
		p, l, _ := listen(t, 16, tcp.Options{SynQueueLimit: 1})
		fillSynQueue(t, p, 1)
		restore := withoutRoutes(p)
		p.PeerPort = 40001
		p.SetStackISS(0, false)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.ExpectNothing()
		wantQueues(t, l, 1, 0)
		st := p.TCP.Stats()
		wantCount(t, "Dropped(no route)", st.Dropped(event.DropNoRoute), 1)
		wantCount(t, "ListenDrops", st.ListenDrops.Load(), 1)
		wantCount(t, "CookiesSent", st.Listen.CookiesSent.Load(), 0)
		restore()
		cookieSyn(t, p, 40001, 1460)
		wantCount(t, "CookiesSent", st.Listen.CookiesSent.Load(), 1)
	})
}

// TestCookieAckNoRoute: a valid cookie ACK that finds no route back (it
// went away since the cookie left) is dropped with a reason (DropNoRoute)
// and leaves no state: its place in the accept queue is given back, and the
// peer's next segment, which carries the cookie again, makes the
// connection once the route is back. Linux's cookie_v4_check discards it
// likewise (without a ListenDrops: no SYN was dropped).
func TestCookieAckNoRoute(t *testing.T) {
	p, l, _ := listen(t, 0, tcp.Options{SynQueueLimit: 1})
	fillSynQueue(t, p, 1)
	c := cookieSyn(t, p, 40001, 1460)
	restore := withoutRoutes(p)
	c.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	wantQueues(t, l, 1, 0)
	st := p.TCP.Stats()
	wantCount(t, "Dropped(no route)", st.Dropped(event.DropNoRoute), 1)
	wantCount(t, "ListenDrops", st.ListenDrops.Load(), 0)
	restore()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	wantQueues(t, l, 1, 1)
	if _, err := l.Accept(); err != nil {
		t.Fatalf("Accept of the cookie connection: %v", err)
	}
}

// TestAcceptQueueBacklogPlusOne: the accept queue holds backlog+1
// connections, Linux's meaning of listen(2)'s backlog (sk_acceptq_is_full
// compares with ">"), and Accept hands them out in order.
func TestAcceptQueueBacklogPlusOne(t *testing.T) {
	for _, backlog := range []int{0, 2} {
		p, l, _ := listen(t, backlog, tcp.Options{})
		for i := range backlog + 1 {
			handshake(t, p, uint16(40000+i))
		}
		wantQueues(t, l, 0, backlog+1)
		if q := l.Queues(); q.AcceptQueueLimit != backlog+1 {
			t.Errorf("backlog %d: accept queue limit %d, want %d", backlog, q.AcceptQueueLimit, backlog+1)
		}
		for i := range backlog + 1 {
			ep, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			if got := ep.ID().Remote.Port(); got != uint16(40000+i) {
				t.Errorf("Accept #%d: port %d, want %d (in order)", i, got, 40000+i)
			}
		}
		if _, err := l.Accept(); err != tcp.ErrWouldBlock {
			t.Errorf("Accept on an empty queue: %v", err)
		}
	}
}

// TestAcceptOverflowDropsFinalAck: with the accept queue full, the final
// ACK is dropped (Linux's default, tcp_abort_on_overflow=0): the entry
// stays in SYN-RECEIVED, its SYN-ACK is retransmitted, and the ACK that
// answers it completes the handshake once Accept has made room.
func TestAcceptOverflowDropsFinalAck(t *testing.T) {
	p, l, n := listen(t, 0, tcp.Options{})
	a := syn(t, p, 40001)
	b := syn(t, p, 40002)
	a.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	b.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing() // dropped: no RST
	wantQueues(t, l, 1, 1)
	st := p.TCP.Stats()
	wantCount(t, "AcceptOverflowDrops", st.Listen.AcceptOverflowDrops.Load(), 1)
	wantCount(t, "ListenOverflows", st.ListenOverflows.Load(), 1)
	wantCount(t, "dropped (accept queue full)", st.Dropped(event.DropAcceptQueueFull), 1)
	n.want(t, "accept queue overflow: final ACK dropped")

	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	p.Advance(time.Second)
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1}) // b's SYN-ACK again
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	wantQueues(t, l, 0, 1)
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p.WantState(ep, event.Established)
	if ep.ID().Remote.Port() != b.port {
		t.Errorf("accepted %v, want port %d", ep.ID(), b.port)
	}
}

// TestAbortOnOverflow: with AbortOnOverflow (Linux tcp_abort_on_overflow=1)
// the final ACK that finds the accept queue full is answered
// <SEQ=SEG.ACK><CTL=RST> and the entry is gone.
func TestAbortOnOverflow(t *testing.T) {
	p, l, n := listen(t, 0, tcp.Options{AbortOnOverflow: true})
	a := syn(t, p, 40001)
	b := syn(t, p, 40002)
	a.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	b.use(p)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: "R", Seq: 1})
	wantQueues(t, l, 0, 1)
	wantCount(t, "AcceptOverflowResets", p.TCP.Stats().Listen.AcceptOverflowResets.Load(), 1)
	n.want(t, "accept queue overflow: final ACK answered with RST")
	p.Advance(time.Second)
	p.ExpectNothing() // no SYN-ACK retransmission: the entry is gone
}

// TestSynDroppedAcceptQueueFull: a new SYN while the accept queue is full
// is dropped, as Linux's tcp_conn_request does, even with room in the SYN
// queue; the peer's SYN retransmission gets in once Accept made room.
func TestSynDroppedAcceptQueueFull(t *testing.T) {
	p, l, n := listen(t, 0, tcp.Options{})
	handshake(t, p, 40001)
	p.PeerPort = 40002
	p.SetStackISS(0, false)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.ExpectNothing()
	wantQueues(t, l, 0, 1)
	st := p.TCP.Stats()
	wantCount(t, "SynAcceptQueueFull", st.Listen.SynAcceptQueueFull.Load(), 1)
	wantCount(t, "dropped (accept queue full)", st.Dropped(event.DropAcceptQueueFull), 1)
	wantCount(t, "CookiesSent", st.Listen.CookiesSent.Load(), 0)
	n.want(t, "SYN dropped: accept queue full")
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
}

// TestListenerCloseResetsQueued: closing a listener resets the
// connections nobody accepted and forgets the half-open ones without a
// word, as Linux's inet_csk_listen_stop.
func TestListenerCloseResetsQueued(t *testing.T) {
	p, l, n := listen(t, 4, tcp.Options{})
	a := handshake(t, p, 40001)
	b := syn(t, p, 40002)
	l.Close()
	a.use(p)
	p.Expect(seg{Flags: "R.", Seq: 1, Ack: 1})
	b.use(p)
	p.ExpectNothing()
	p.WantState(l, event.Closed)
	if c := p.TCP.Connections(); len(c) != 0 {
		t.Errorf("%d connections left after the listener closed", len(c))
	}
	n.want(t, "listener closed: 1 half-open forgotten, 1 queued reset")
	// The half-open entry is gone: its final ACK finds no socket.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: "R", Seq: 1})
	if _, err := l.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}
}

// TestDataAndFinBeforeAccept: data and a FIN that arrive while the
// connection waits in the accept queue are kept and delivered after Accept.
func TestDataAndFinBeforeAccept(t *testing.T) {
	p, l, _ := listen(t, 4, tcp.Options{})
	handshake(t, p, 40001)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("early")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 6}) // the first data: a quick ACK
	p.Inject(seg{Flags: "F.", Seq: 6, Ack: 1})
	p.ExpectNothing() // the FIN's ACK waits for a reply to ride on (finAckPolicy)
	p.Advance(p.TCP.Options().DelayedAck)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 7})
	wantQueues(t, l, 0, 1)
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p.WantState(ep, event.CloseWait)
	b, err := io.ReadAll(readerOf(ep))
	if err != nil || string(b) != "early" {
		t.Fatalf("read %q, %v; want early, EOF", b, err)
	}
}

// readerOf adapts an Endpoint whose data has all arrived to io.Reader.
func readerOf(ep *tcp.Endpoint) io.Reader { return readerFunc(ep.Read) }

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// TestSynAckRetransmitAttempts: each SYN-ACK retransmission is reported
// with its number, so a trace or a capture reads "SYN-ACK retransmit #2".
func TestSynAckRetransmitAttempts(t *testing.T) {
	var r events
	p, _ := tcptest.SynReceived(t, tcptest.WithTCP(tcp.Options{Observer: r.observe}))
	p.Advance(time.Second)
	p.Advance(2 * time.Second)
	var got []int
	for _, ev := range r.of(event.KindSend) {
		if ev.Send == event.SendSynAckRetransmit {
			got = append(got, ev.Attempt)
		}
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("SYN-ACK retransmit attempts %v, want [1 2]", got)
	}
}
