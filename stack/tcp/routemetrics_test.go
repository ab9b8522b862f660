package tcp_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// fixtureRoute is the route AddNIC made for the fixture's subnet, on its
// only interface.
var fixtureRoute = netip.MustParsePrefix("192.0.2.0/24")

const fixtureNIC = 1

// setMetrics gives the fixture's route the metrics m.
func setMetrics(t *testing.T, p *tcptest.Peer, m stack.RouteMetrics) {
	t.Helper()
	if err := p.Stack.SetRouteMetrics(fixtureRoute, fixtureNIC, m); err != nil {
		t.Fatal(err)
	}
}

// acceptAnnouncing opens a connection to p.Listener from a peer that
// announces MSS 1460, and returns the stack's SYN-ACK (the MSS it
// announced, the window it offered) and the accepted connection.
func acceptAnnouncing(t *testing.T, p *tcptest.Peer) (seg, *tcp.Endpoint) {
	t.Helper()
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	synAck := p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := p.Listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return synAck, ep
}

// countNotes counts the events of kind k among evs whose note is note.
func countNotes(evs []event.Event, k event.Kind, note string) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == k && ev.Note == note {
			n++
		}
	}
	return n
}

// pathMTUNotes returns the notes of the path MTU events ev holds.
func pathMTUNotes(ev *[]event.Event) func() []string {
	return func() []string {
		var n []string
		for _, e := range *ev {
			if e.Kind == event.KindPathMTU {
				n = append(n, e.Note)
			}
		}
		return n
	}
}

// TestRouteInitRwnd: a route's initrwnd of 4 (Linux's `ip route change
// ... initrwnd 4`) makes the SYN-ACK offer 4 segments, 5,840 bytes, where
// the buffer offers 65,535, and an event on it says so; each segment of
// text that then arrives in order widens the window by two, as Linux's
// rcv_ssthresh grows (tcp_grow_window), and a window already offered is
// never taken back. Without the metric, the SYN-ACK offers 65,535.
func TestRouteInitRwnd(t *testing.T) {
	for _, initrwnd := range []uint32{0, 4} {
		t.Run(fmt.Sprintf("initrwnd %d", initrwnd), func(t *testing.T) {
			var evs []event.Event
			p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: func(ev event.Event) { evs = append(evs, ev) }}))
			setMetrics(t, p, stack.RouteMetrics{InitRwnd: initrwnd})
			p.Listen(16)
			synAck, ep := acceptAnnouncing(t, p)
			if initrwnd == 0 {
				if synAck.Win != 65535 {
					t.Errorf("SYN-ACK offers %d; want 65535", synAck.Win)
				}
				return
			}
			if synAck.Win != 4*1460 {
				t.Errorf("SYN-ACK offers %d; want the route's 4 segments, %d", synAck.Win, 4*1460)
			}
			if said := countNotes(evs, event.KindSend, "window 5840: the route's initrwnd, 4 segments of 1460"); said != 1 {
				t.Errorf("%d send events name the route's initrwnd; want the SYN-ACK's", said)
			}
			// Nothing read: each window is the cap, 6, 8 and 10 segments
			// from RCV.NXT, not the 1 MiB buffer.
			for k, want := range []uint16{6 * 1460, 8 * 1460, 10 * 1460} {
				p.Inject(seg{Flags: "P.", Seq: uint32(1 + k*1460), Ack: 1, Payload: payload(k*1460, 1460)})
				p.Advance(p.TCP.Options().DelayedAck) // the third segment's ACK is a delayed one
				p.Expect(seg{Flags: ".", Seq: 1, Ack: uint32(1 + (k+1)*1460), Win: want})
			}
			if n, err := ep.Read(make([]byte, 3*1460)); n != 3*1460 || err != nil {
				t.Fatalf("Read: %d, %v", n, err)
			}
		})
	}
}

// TestRouteInitCwnd: a route's initcwnd of 4 (Linux's `ip route change
// ... initcwnd 4`, tcp_init_cwnd) makes the first flight 4 segments where
// RFC 6928's IW sends 10, an event says so, and the window after an idle
// time restarts
// there too (RFC 5681 4.1's RW, the initial window); removing the metric
// gives the next connection IW again.
func TestRouteInitCwnd(t *testing.T) {
	var evs []event.Event
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: func(ev event.Event) { evs = append(evs, ev) }}))
	setMetrics(t, p, stack.RouteMetrics{InitCwnd: 4})
	p.Listen(16)
	ep := p.Established()
	if c := ep.Info().Cwnd; c != 4*1460 {
		t.Fatalf("cwnd %d after the handshake; want 4 segments, %d", c, 4*1460)
	}
	if said := countNotes(evs, event.KindRecovery, "initial window 4 segments, the route's initcwnd (RFC 6928's IW: 10)"); said != 1 {
		t.Errorf("%d events name the route's initial window; want one", said)
	}
	p.Advance(10 * time.Millisecond) // the fake clock's zero is no time a segment left at
	if _, err := ep.Write(payload(0, 10*1460)); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 4; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(5)})
	p.Drain() // slow start: 8 more, the 6 left
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(11)})
	if c := ep.Info().Cwnd; c <= 4*1460 {
		t.Fatalf("cwnd %d after slow start's ACKs; want more than 4 segments", c)
	}
	p.Advance(10 * time.Second) // idle: many RTOs
	if _, err := ep.Write(payload(0, 10*1460)); err != nil {
		t.Fatal(err)
	}
	for k := 11; k <= 14; k++ {
		p.Expect(seg{Flags: ".", Seq: sb(k), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	if c := ep.Info().Cwnd; c != 4*1460 {
		t.Errorf("cwnd %d after idle; want the route's initial window, %d", c, 4*1460)
	}

	setMetrics(t, p, stack.RouteMetrics{})
	p.PeerPort++
	next := p.Established()
	if c := next.Info().Cwnd; c != 10*1460 {
		t.Errorf("cwnd %d with the metric removed; want RFC 6928's IW, %d", c, 10*1460)
	}
}

// TestRouteAdvMSS: a route's advmss of 600 is what the SYN-ACK and the
// SYN announce, lowered further by a user's clamp, but it bounds only what
// the peer sends: with the peer's MSS of 1460 and a 1500-byte path, we
// send 1460-byte segments (Linux's advmss is the announced MSS alone).
func TestRouteAdvMSS(t *testing.T) {
	p := tcptest.New(t)
	setMetrics(t, p, stack.RouteMetrics{AdvMSS: 600})
	p.Listen(16)
	synAck, ep := acceptAnnouncing(t, p)
	if synAck.MSS != 600 {
		t.Errorf("SYN-ACK announces MSS %d; want the route's 600", synAck.MSS)
	}
	if i := ep.Info(); i.SndMSS != 1460 || i.RcvMSS != 600 {
		t.Errorf("send MSS %d, announced %d; want 1460 and 600", i.SndMSS, i.RcvMSS)
	}

	p.PeerPort++
	p.SetStackISS(0, false)
	p.Listener.SetMaxSegment(536)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	if s := p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1}); s.MSS != 536 {
		t.Errorf("SYN-ACK under TCP_MAXSEG 536 announces %d; want 536", s.MSS)
	}
	p.Inject(seg{Flags: "R", Seq: 1})

	c := p.Connect()
	if s := p.Expect(seg{Flags: "S", Seq: 0}); s.MSS != 600 {
		t.Errorf("SYN announces MSS %d; want the route's 600", s.MSS)
	}
	c.Reset()
	p.Drain()
}

// TestRouteMTUChange: the route's MTU of 640 makes the handshake's MSS
// 600 both ways; raising it to 1500 on the live connection lets the next
// segments grow to the peer's 1460 at once (Linux's tcp_current_mss sees
// the new route MTU), and lowering it to 1000 with three segments in
// flight cuts them to 960 and sends them again, as an ICMP report would,
// without touching the window.
func TestRouteMTUChange(t *testing.T) {
	var evs []event.Event
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: func(ev event.Event) { evs = append(evs, ev) }}))
	notes := pathMTUNotes(&evs)
	setMetrics(t, p, stack.RouteMetrics{MTU: 640})
	p.Listen(16)
	synAck, ep := acceptAnnouncing(t, p)
	if synAck.MSS != 600 {
		t.Errorf("SYN-ACK announces MSS %d; want 640 - 40 = 600", synAck.MSS)
	}
	if i := ep.Info(); i.SndMSS != 600 || i.PathMTU != 640 {
		t.Fatalf("send MSS %d, path MTU %d; want 600 and 640", i.SndMSS, i.PathMTU)
	}

	setMetrics(t, p, stack.RouteMetrics{MTU: 1500})
	if i := ep.Info(); i.SndMSS != 1460 || i.PathMTU != 1500 {
		t.Errorf("after the route's MTU rose: send MSS %d, path MTU %d; want 1460 and 1500", i.SndMSS, i.PathMTU)
	}
	if n := notes(); len(n) != 1 || !strings.Contains(n[0], "route metrics: path MTU 1500: MSS 600 → 1460") {
		t.Errorf("path MTU events %q; want one for the rise", n)
	}
	data := sendSegments(t, p, ep, 3)
	cwnd := ep.Info().Cwnd

	setMetrics(t, p, stack.RouteMetrics{MTU: 1000})
	var got []byte
	for _, s := range p.Drain() {
		if s.Len > 960 {
			t.Errorf("segment %d:%d of %d bytes does not fit 1000", s.Seq, s.Seq+uint32(s.Len), s.Len)
		}
		if int(s.Seq)-1 == len(got) {
			got = append(got, s.Payload...)
		}
	}
	if string(got) != string(data) {
		t.Errorf("resent %d bytes, want the %d in flight, in order", len(got), len(data))
	}
	if i := ep.Info(); i.SndMSS != 960 || i.Cwnd != cwnd || i.PathMTU != 1000 {
		t.Errorf("after the route's MTU fell: MSS %d, cwnd %d, path MTU %d; want 960, %d, 1000", i.SndMSS, i.Cwnd, i.PathMTU, cwnd)
	}
	if n := notes(); len(n) != 2 || !strings.Contains(n[1], "route metrics: path MTU 1000: MSS 1460 → 960, 3 segments sent again") {
		t.Errorf("path MTU events %q; want a second for the fall", n)
	}
}

// TestRouteMTULock: on a route whose MTU is locked (Linux's `mtu lock
// 1400`), an ICMP "fragmentation needed" reporting 1280 changes nothing:
// the MSS stays at 1360, the report is not learned for the destination,
// and an event says why; on the same route unlocked, it cuts the MSS.
func TestRouteMTULock(t *testing.T) {
	for _, lock := range []bool{true, false} {
		var evs []event.Event
		p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: func(ev event.Event) { evs = append(evs, ev) }}))
		setMetrics(t, p, stack.RouteMetrics{MTU: 1400, LockMTU: lock})
		p.Listen(16)
		ep := p.Established()
		sendSegments(t, p, ep, 2)
		p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
		p.Drain()
		i := ep.Info()
		notes := pathMTUNotes(&evs)()
		switch {
		case lock && (i.SndMSS != 1360 || i.PathMTU != 1400):
			t.Errorf("locked: MSS %d, path MTU %d after the ICMP; want 1360 and 1400", i.SndMSS, i.PathMTU)
		case lock && (len(notes) != 1 || !strings.Contains(notes[0], "path MTU 1280 (ICMP) ignored: the route locks its MTU at 1400")):
			t.Errorf("locked: path MTU events %q; want the one that says it was ignored", notes)
		case !lock && (i.SndMSS != 1240 || i.PathMTU != 1280):
			t.Errorf("unlocked: MSS %d, path MTU %d after the ICMP; want 1240 and 1280", i.SndMSS, i.PathMTU)
		}
	}
}

// TestRouteMetricsLeaveTimeWait: a connection in TIME-WAIT has nothing
// more to send and has given its route back: a change of its route's
// metrics leaves its MSS alone.
func TestRouteMetricsLeaveTimeWait(t *testing.T) {
	p, ep := tcptest.TimeWait(t)
	mss := ep.Info().SndMSS
	setMetrics(t, p, stack.RouteMetrics{MTU: 1000})
	if got := ep.Info().SndMSS; got != mss {
		t.Errorf("MSS %d in TIME-WAIT after the route's MTU changed; want %d as before", got, mss)
	}
	p.ExpectNothing()
}

// TestParseRouteMetrics: metrics as `ip route` writes them, in any order,
// and String writes them back the same way; anything tapstack does not
// keep, or whose value is not a number (a time with its unit for
// rto_min), is an error that names it; 0 leaves a metric unset.
func TestParseRouteMetrics(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want tcp.RouteMetrics
		str  string
		err  string
	}{
		{"", tcp.RouteMetrics{}, "", ""},
		{"mtu lock 640 advmss 600 initcwnd 11", tcp.RouteMetrics{MTU: 640, LockMTU: true, AdvMSS: 600, InitCwnd: 11}, "mtu lock 640 advmss 600 initcwnd 11", ""},
		{"initcwnd 20  mtu 1400", tcp.RouteMetrics{MTU: 1400, InitCwnd: 20}, "mtu 1400 initcwnd 20", ""},
		{"rto_min 5ms initcwnd 20", tcp.RouteMetrics{InitCwnd: 20, RTOMin: 5 * time.Millisecond}, "initcwnd 20 rto_min 5ms", ""},
		{"rto_min 50", tcp.RouteMetrics{}, "", "want a time with its unit"},
		{"rto_min -5ms", tcp.RouteMetrics{}, "", "want a time with its unit"},
		{"quickack 1 rto_min 0", tcp.RouteMetrics{QuickAck: true}, "quickack 1", ""},
		{"quickack 2", tcp.RouteMetrics{}, "", "want 0 or 1"},
		{"initrwnd 4 initcwnd 20", tcp.RouteMetrics{InitCwnd: 20, InitRwnd: 4}, "initcwnd 20 initrwnd 4", ""},
		{"hoplimit 20", tcp.RouteMetrics{}, "", `route metric "hoplimit"`},
		{"mtu lock", tcp.RouteMetrics{}, "", "mtu without a value"},
		{"initcwnd 0 mtu 1400", tcp.RouteMetrics{MTU: 1400}, "mtu 1400", ""},
		{"advmss -5", tcp.RouteMetrics{}, "", "want a number"},
		{"advmss 70000", tcp.RouteMetrics{}, "", "at most 65535"},
		{"mtu 67", tcp.RouteMetrics{}, "", "want 68 (IPv4's minimum) to 65535"},
		{"mtu lock 70000", tcp.RouteMetrics{}, "", "want 68 (IPv4's minimum) to 65535"},
		{"mtu 99999999999", tcp.RouteMetrics{}, "", "want a number"},
	} {
		m, err := tcp.ParseRouteMetrics(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v; want one saying %q", tc.in, err, tc.err)
		case tc.err == "" && (m != tc.want || m.String() != tc.str):
			t.Errorf("%q: %+v, written %q; want %+v, %q", tc.in, m, m.String(), tc.want, tc.str)
		}
	}
}

// TestRouteRTOMin: a route's rto_min of 20 ms (Linux's `ip route change
// ... rto_min 20ms`, tcp_rto_min) replaces MinRTO's 200 ms in RTO = SRTT
// + max(4*RTTVAR, MinRTO): on a 1 ms path whose variance has settled the
// lost segment goes again about 21 ms after it left, not 201.
func TestRouteRTOMin(t *testing.T) {
	for _, tc := range []struct {
		rtoMin time.Duration
		want   time.Duration // the RTO, about
	}{{0, 201 * time.Millisecond}, {20 * time.Millisecond, 21 * time.Millisecond}} {
		p := tcptest.New(t)
		setMetrics(t, p, stack.RouteMetrics{RTOMin: tc.rtoMin})
		p.Listen(16)
		ep := p.Established()
		// Ten round trips of 1 ms, one segment each: SRTT 1 ms, and
		// RTTVAR falls to a fraction of it.
		for k := 1; k <= 10; k++ {
			ep.Write(payload(0, 1460))
			p.Expect(seg{Flags: "P.", Seq: sb(k), Ack: 1, Len: 1460})
			p.Advance(time.Millisecond)
			p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(k + 1)})
		}
		rto := ep.Info().RTO
		if rto < tc.want-time.Millisecond || rto > tc.want+time.Millisecond {
			t.Errorf("rto_min %v: RTO %v; want about %v", tc.rtoMin, rto, tc.want)
		}
		ep.Write(payload(0, 1460))
		p.Expect(seg{Flags: "P.", Seq: sb(11), Ack: 1, Len: 1460})
		p.Advance(rto - time.Microsecond)
		p.ExpectNothing()
		p.Advance(time.Microsecond)
		p.Expect(seg{Flags: "P.", Seq: sb(11), Ack: 1, Len: 1460}) // the timeout's retransmission
	}
}

// TestRouteQuickAck: on a route with quickack (Linux's `ip route change
// ... quickack 1`, dst_quick_ack), text is acknowledged at once, where
// the delayed-ACK rule waits for a second segment or 40 ms, and so is a
// FIN in ESTABLISHED, which Linux's ping-pong mode otherwise makes wait
// for the application's close.
func TestRouteQuickAck(t *testing.T) {
	for _, quick := range []bool{false, true} {
		p := tcptest.New(t)
		setMetrics(t, p, stack.RouteMetrics{QuickAck: quick})
		p.Listen(16)
		ep := p.Established()
		// Leave the quick-ACK mode of a new connection (Linux's
		// tcp_incr_quickack): text both ways makes it ping-pong.
		for k := range 20 {
			p.Inject(seg{Flags: "P.", Seq: uint32(1 + 100*k), Ack: uint32(1 + 100*k), Payload: payload(0, 100)})
			if _, err := ep.Write(payload(0, 100)); err != nil {
				t.Fatal(err)
			}
			p.Drain()
			p.Inject(seg{Flags: ".", Seq: uint32(101 + 100*k), Ack: uint32(101 + 100*k)})
		}
		p.Inject(seg{Flags: "P.", Seq: 2001, Ack: 2001, Payload: payload(0, 100)})
		got := p.Drain()
		p.Inject(seg{Flags: "F.", Seq: 2101, Ack: 2001})
		got = append(got, p.Drain()...)
		acks := 0
		for _, s := range got {
			if s.Flags == "." {
				acks++
			}
		}
		if want := map[bool]int{false: 0, true: 2}[quick]; acks != want {
			t.Errorf("quickack %v: %d ACKs at once of text and FIN; want %d (%v)", quick, acks, want, got)
		}
	}
}

// TestRouteMetricsScope: a route's metrics reach only the connections
// whose route it is, as Linux keeps them on the fib entry the lookup
// picks: advmss 600 on a host route to another address leaves the peer's
// SYN-ACK at 1460; on the fixture's /24, a host route to the peer
// without metrics, being the longer match, still leaves it at 1460; on
// that host route, the SYN-ACK announces 600.
func TestRouteMetricsScope(t *testing.T) {
	p := tcptest.New(t)
	other := netip.MustParsePrefix("192.0.2.77/32")
	if err := p.Stack.AddRoute(other, netip.Addr{}, fixtureNIC); err != nil {
		t.Fatal(err)
	}
	if err := p.Stack.SetRouteMetrics(other, fixtureNIC, stack.RouteMetrics{AdvMSS: 600}); err != nil {
		t.Fatal(err)
	}
	p.Listen(16)
	if synAck, _ := acceptAnnouncing(t, p); synAck.MSS != 1460 {
		t.Errorf("SYN-ACK announces MSS %d with metrics on a route to another host; want 1460", synAck.MSS)
	}

	peer := netip.PrefixFrom(tcptest.PeerAddr, 32)
	if err := p.Stack.AddRoute(peer, netip.Addr{}, fixtureNIC); err != nil {
		t.Fatal(err)
	}
	setMetrics(t, p, stack.RouteMetrics{AdvMSS: 600})
	p.PeerPort++
	p.SetStackISS(0, false)
	if synAck, _ := acceptAnnouncing(t, p); synAck.MSS != 1460 {
		t.Errorf("SYN-ACK announces MSS %d with metrics on the /24 and a host route to the peer without; want 1460", synAck.MSS)
	}

	if err := p.Stack.SetRouteMetrics(peer, fixtureNIC, stack.RouteMetrics{AdvMSS: 600}); err != nil {
		t.Fatal(err)
	}
	p.PeerPort++
	p.SetStackISS(0, false)
	if synAck, _ := acceptAnnouncing(t, p); synAck.MSS != 600 {
		t.Errorf("SYN-ACK announces MSS %d with metrics on the host route to the peer; want 600", synAck.MSS)
	}
}

// TestRemoveRoute: RemoveRoute takes a route away with its metrics, as
// Linux's `ip route del`: advmss 600 on a host route to the peer makes
// the SYN-ACK announce 600; once the route is removed, the next one
// announces 1460 again (the /24 has no metrics), RouteMetrics has none,
// and removing it again fails with ESRCH, as Linux's "No such process".
func TestRemoveRoute(t *testing.T) {
	p := tcptest.New(t)
	peer := netip.PrefixFrom(tcptest.PeerAddr, 32)
	if err := p.Stack.AddRoute(peer, netip.Addr{}, fixtureNIC); err != nil {
		t.Fatal(err)
	}
	if err := p.Stack.SetRouteMetrics(peer, fixtureNIC, stack.RouteMetrics{AdvMSS: 600}); err != nil {
		t.Fatal(err)
	}
	p.Listen(16)
	if synAck, _ := acceptAnnouncing(t, p); synAck.MSS != 600 {
		t.Fatalf("SYN-ACK announces MSS %d on the host route; want 600", synAck.MSS)
	}
	if err := p.Stack.RemoveRoute(peer, netip.Addr{}, fixtureNIC); err != nil {
		t.Fatal(err)
	}
	p.PeerPort++
	p.SetStackISS(0, false)
	if synAck, _ := acceptAnnouncing(t, p); synAck.MSS != 1460 {
		t.Errorf("SYN-ACK announces MSS %d after the host route went; want 1460", synAck.MSS)
	}
	if m, ok := p.Stack.RouteMetrics(peer, fixtureNIC); ok {
		t.Errorf("the removed route still has metrics %v", m)
	}
	if err := p.Stack.RemoveRoute(peer, netip.Addr{}, fixtureNIC); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("RemoveRoute of a route the table lacks: %v, want ESRCH", err)
	}
	if err := p.Stack.RemoveRoute(netip.MustParsePrefix("192.0.2.1/24"), netip.Addr{}, fixtureNIC); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("RemoveRoute with host bits set: %v, want EINVAL", err)
	}
}

// TestRouteMetricsLiveConnection: what a metrics change does to an
// established connection. Linux's `ip route change` makes a socket's
// cached route stale (rt_cache_flush; __sk_dst_check finds it obsolete
// at the next send), so a live connection reads the new route's
// quickack and rto_min from then on, while what the handshake fixed
// stays: the MSS it announced (advmss). The engine does the same: with
// the connection in ping-pong mode, quickack set on its route makes the
// next text acknowledged at once, and advmss 600 leaves the announced
// MSS at 1460.
func TestRouteMetricsLiveConnection(t *testing.T) {
	p := tcptest.New(t)
	p.Listen(16)
	ep := p.Established()
	for k := range 20 { // ping-pong: delayed ACKs wait for a reply
		p.Inject(seg{Flags: "P.", Seq: uint32(1 + 100*k), Ack: uint32(1 + 100*k), Payload: payload(0, 100)})
		if _, err := ep.Write(payload(0, 100)); err != nil {
			t.Fatal(err)
		}
		p.Drain()
		p.Inject(seg{Flags: ".", Seq: uint32(101 + 100*k), Ack: uint32(101 + 100*k)})
	}
	p.Inject(seg{Flags: "P.", Seq: 2001, Ack: 2001, Payload: payload(0, 100)})
	if got := p.Drain(); len(got) != 0 {
		t.Fatalf("text acknowledged at once before quickack: %v", got)
	}
	setMetrics(t, p, stack.RouteMetrics{QuickAck: true, AdvMSS: 600})
	p.Inject(seg{Flags: "P.", Seq: 2101, Ack: 2001, Payload: payload(0, 100)})
	p.Expect(seg{Flags: ".", Seq: 2001, Ack: 2201})
	if i := ep.Info(); i.RcvMSS != 1460 {
		t.Errorf("announced MSS %d after advmss 600 on the live connection's route; want the handshake's 1460", i.RcvMSS)
	}
}
