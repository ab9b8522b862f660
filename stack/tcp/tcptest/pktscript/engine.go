package pktscript

// engine.go is the only file of the package that calls into stack/tcp, the
// engine, and stack/tcp/tcptest, the scripted peer's fixture (and pcap,
// for the engine's words for its events): when their API changes, this
// file alone changes. Everything else works with the types below.

import (
	"errors"
	"io"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// The fixture's addresses: the stack under test and the scripted peer.
var (
	stackAddr4 = tcptest.StackAddr // 192.0.2.1
	peerAddr4  = tcptest.PeerAddr  // 192.0.2.2
	stackAddr6 = netip.MustParseAddr("2001:db8::1")
	peerAddr6  = netip.MustParseAddr("2001:db8::2")
)

// errAgain is a call that would block (EAGAIN, EWOULDBLOCK).
var errAgain = syscall.EAGAIN

// engineEvent is an engine event as the runner keeps it.
type engineEvent struct {
	at       time.Duration // since the script's start
	text     string        // the event, as the engine prints it
	describe string        // in the words of tapstack's capture comments
	send     bool          // a segment left
	drop     bool          // a segment was dropped
	hasKey   bool
	key      segKey // the segment concerned, as on the wire
}

// segKey identifies a segment on the wire.
type segKey struct {
	seq, ack uint32
	flags    uint8
	length   int
}

// engine is one stack under test with the scripted peer's link.
type engine struct {
	peer  *tcptest.Peer
	clock *trackClock
	proto *tcp.Protocol
	start time.Time
	set   settings
	// hostRoute says setRoutes made the host route to the peer's IPv4
	// and IPv6 address, which carries the script's route metrics.
	hostRoute [2]bool

	mu     sync.Mutex
	events []engineEvent
}

// maxEvents bounds the engine events kept between two reads.
const maxEngineEvents = 1 << 16

// newEngine makes the stack under test; obs, if not nil, gets its events
// too.
func newEngine(tb testing.TB, set settings, obs event.Observer) *engine {
	e := &engine{set: set}
	o := tcp.Options{
		NoTimestamps:          set.noTimestamps,
		NoSACK:                set.noSACK,
		NoSynCookies:          set.noSynCookies,
		NoRACK:                set.noRACK,
		NoTLP:                 set.noTLP,
		NoFRTO:                set.noFRTO,
		TailLossProbes:        1, // Linux sends one probe per silence, then waits for the RTO
		TailLossProbeSegments: 1, // of one segment
		NoSlowStartAfterIdle:  set.noSlowStartAfterIdle,
		ECN:                   set.ecn,
		MTUProbing:            set.mtuProbing,
		BaseMSS:               set.baseMSS,
		MinGSOSegments:        set.minGSOSegments,
		Pacing:                set.pacing,
		AbortOnOverflow:       set.abortOnOverflow,
		RFC1337:               set.rfc1337,
		CongestionControl:     set.congestionControl,
		HyStart:               set.hystart,
		SynRetries:            set.synRetries,
		SynAckRetries:         set.synAckRetries,
		MaxRetries:            set.maxRetries,
		OrphanRetries:         set.orphanRetries,
		SendBufferSize:        set.sendBuffer,
		ReceiveBufferSize:     set.receiveBuffer,
		FinWait2Timeout:       set.finTimeout,
		InvalidRateLimit:      set.invalidRateLimit,
		MinRTO:                set.minRTO,
		SynQueueLimit:         set.synQueueLimit,
		MaxTimeWait:           set.maxTimeWait,
		MaxOrphans:            set.maxOrphans,
		ChallengeAckLimit:     set.challengeAckLimit,
		Observer:              e.observe,
	}
	if obs != nil {
		o.Observer = func(ev event.Event) { e.observe(ev); obs(ev) }
	}
	e.peer = tcptest.NewScripted(tb, func(mc *faketime.ManualClock) tcpip.Clock {
		e.clock = newTrackClock(mc)
		return e.clock
	}, []netip.Prefix{netip.PrefixFrom(stackAddr6, 64)}, tcptest.WithTCP(o))
	e.peer.RefuseAll(set.dropAll)
	e.proto = e.peer.TCP
	if err := e.setRoutes(set); err != nil {
		panic(needs("route metrics the stack refuses: %v", err))
	}
	e.start = e.clock.Now()
	return e
}

// setRoutes gives the routes to the peer the metrics the script's `ip
// route` commands set: host routes to the peer's two addresses, made the
// first time, in front of the fixture's subnet routes.
func (e *engine) setRoutes(set settings) error {
	for i, r := range []struct {
		peer netip.Addr
		m    tcp.RouteMetrics
	}{{peerAddr4, set.route4}, {peerAddr6, set.route6}} {
		host := netip.PrefixFrom(r.peer, r.peer.BitLen())
		if !e.hostRoute[i] {
			if r.m == (tcp.RouteMetrics{}) {
				continue // no route of its own yet, and none wanted
			}
			if err := e.peer.Stack.AddRoute(host, netip.Addr{}, scriptNIC); err != nil {
				return err
			}
			e.hostRoute[i] = true
		}
		if err := e.peer.Stack.SetRouteMetrics(host, scriptNIC, r.m); err != nil {
			return err
		}
	}
	return nil
}

// scriptNIC is the fixture's one interface.
const scriptNIC = 1

func (e *engine) observe(ev event.Event) {
	r := engineEvent{
		at:       e.clock.Now().Sub(e.start),
		text:     ev.String(),
		describe: pcap.Describe(ev),
		send:     ev.Kind == event.KindSend,
		drop:     ev.Kind == event.KindDrop,
	}
	if ev.Key != (event.SegKey{}) {
		r.hasKey = true
		r.key = segKey{seq: ev.Key.Seq, ack: ev.Key.Ack, flags: uint8(ev.Key.Flags), length: ev.Key.Len}
	}
	e.mu.Lock()
	if len(e.events) < maxEngineEvents {
		e.events = append(e.events, r)
	}
	e.mu.Unlock()
}

// takeEvents returns the events since the last call, once every event
// made so far has been delivered.
func (e *engine) takeEvents() []engineEvent {
	e.proto.SyncEvents()
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := e.events
	e.events = nil
	return evs
}

// now is the time since the script's start.
func (e *engine) now() time.Duration { return e.clock.Now().Sub(e.start) }

// nextTimer returns when the earliest pending timer falls due, since the
// script's start.
func (e *engine) nextTimer() (time.Duration, bool) {
	t, ok := e.clock.next()
	if !ok {
		return 0, false
	}
	return t.Sub(e.start), true
}

// advance moves the clock by d, running the timers that fall due.
func (e *engine) advance(d time.Duration) { e.peer.Clock.Advance(d) }

// inject hands the stack a packet from the peer: a whole IPv4 or IPv6
// packet.
func (e *engine) inject(b []byte, v6 bool) {
	if !v6 {
		e.peer.InjectIPv4(b)
		return
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	e.peer.Link.InjectInbound(ipv6.ProtocolNumber, pkt)
	pkt.DecRef()
}

// readOutbound returns the next packet the stack sent, if any.
func (e *engine) readOutbound() ([]byte, bool) {
	pkt := e.peer.Link.Read()
	if pkt == nil {
		return nil, false
	}
	v := pkt.ToView()
	pkt.DecRef()
	b := append([]byte(nil), v.AsSlice()...)
	v.Release()
	return b, true
}

// outboundCapacity is how many packets the link holds before dropping.
const outboundCapacity = tcptest.OutboundCapacity

// errno turns an engine error into the errno a socket call returns, and
// io.EOF into nil (a read of 0).
func errno(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tcp.ErrWouldBlock):
		return errAgain
	case errors.Is(err, io.EOF):
		return io.EOF
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return err
}

// listener is a listening socket.
type listener struct{ l *tcp.Listener }

func (e *engine) listen(addr netip.Addr, port uint16, backlog, maxSeg int) (*listener, error) {
	l, err := e.proto.Listen(netip.AddrPortFrom(addr, port), backlog)
	if err != nil {
		return nil, errno(err)
	}
	if err := l.SetMaxSegment(maxSeg); err != nil {
		l.Close()
		return nil, errno(err)
	}
	return &listener{l: l}, nil
}

func (l *listener) accept() (*conn, error) {
	ep, err := l.l.Accept()
	if err != nil {
		return nil, errno(err)
	}
	return &conn{ep: ep}, nil
}

func (l *listener) close() { l.l.Close() }

// setMaxSegment is TCP_MAXSEG on a listening socket; the runner checked
// the range.
func (l *listener) setMaxSegment(n int) { _ = l.l.SetMaxSegment(n) }

func (l *listener) port() uint16 { return l.l.Addr().Port() }

// conn is a connection.
type conn struct{ ep *tcp.Endpoint }

func (e *engine) connect(remote netip.Addr, port uint16, maxSeg int) (*conn, error) {
	ep, err := e.proto.ConnectWith(netip.AddrPort{}, netip.AddrPortFrom(remote, port), tcp.ConnectOptions{MaxSegment: maxSeg})
	if err != nil {
		return nil, errno(err)
	}
	return &conn{ep: ep}, nil
}

// findConn returns the connection with the given ports, accepted or not.
func (e *engine) findConn(local, remote uint16) *conn {
	for _, ep := range e.proto.Connections() {
		id := ep.ID()
		if id.Local.Port() == local && id.Remote.Port() == remote {
			return &conn{ep: ep}
		}
	}
	return nil
}

func (c *conn) localPort() uint16  { return c.ep.ID().Local.Port() }
func (c *conn) remotePort() uint16 { return c.ep.ID().Remote.Port() }
func (c *conn) read(b []byte) (int, error) {
	n, err := c.ep.Read(b)
	return n, errno(err)
}
func (c *conn) write(b []byte, more bool) (int, error) {
	if more {
		n, err := c.ep.WriteMore(b)
		return n, errno(err)
	}
	n, err := c.ep.Write(b)
	return n, errno(err)
}
func (c *conn) setCork(on bool)   { c.ep.SetCork(on) }
func (c *conn) closeRead() error  { return errno(c.ep.CloseRead()) }
func (c *conn) closeWrite() error { return errno(c.ep.CloseWrite()) }
func (c *conn) close() error      { return errno(c.ep.Close()) }
func (c *conn) reset()            { c.ep.Reset() }
func (c *conn) readable() bool    { return c.ep.Readable() }
func (c *conn) writable() bool    { return c.ep.Writable() }
func (c *conn) setNoDelay(on bool) {
	c.ep.SetNoDelay(on)
}
func (c *conn) setQuickAck(on bool)          { c.ep.SetQuickAck(on) }
func (c *conn) setBuffers(send, receive int) { c.ep.SetBuffers(send, receive) }
func (c *conn) setUserTimeout(d time.Duration) {
	c.ep.SetUserTimeout(d)
}
func (c *conn) setKeepAlive(on bool, idle, intvl time.Duration, count int) {
	c.ep.SetKeepAlive(on, idle, intvl, count)
}

// established reports whether the handshake completed, or the error that
// ended it.
func (c *conn) established() (bool, error) {
	ok, err := c.ep.Established()
	return ok, errno(err)
}

// pendingError is the connection's error without consuming it (SO_ERROR);
// tapstack reports errors through calls, so only a failed handshake shows.
func (c *conn) pendingError() error {
	if ok, err := c.ep.Established(); !ok && err != nil {
		return errno(err)
	}
	return nil
}

func (c *conn) recvQueued() int { return c.ep.Info().RecvQueued }
func (c *conn) sendQueued() int { return c.ep.Info().SendQueued }
func (c *conn) sndMSS() int     { return c.ep.Info().SndMSS }
func (c *conn) synchronized() bool {
	switch c.ep.State() {
	case event.Closed, event.Listen, event.SynSent, event.SynReceived:
		return false
	}
	return true
}

// Linux's tcp_ca_state values (include/net/tcp.h).
const (
	caOpen     = 0
	caDisorder = 1
	caCWR      = 2
	caRecovery = 3
	caLoss     = 4
)

// linuxInfiniteSsthresh is Linux's TCP_INFINITE_SSTHRESH.
const linuxInfiniteSsthresh = 0x7fffffff

// tcpInfo returns the TCP_INFO fields tapstack's Info has, under Linux's
// names and in Linux's units: segments for windows and counts of
// segments (bytes / SND.MSS; counts of bytes rounded up), microseconds
// for times. A field missing here is one the engine does not keep
// (tcpi_retransmits, tcpi_fackets, ...): a script asserting on it is
// skipped.
func (c *conn) tcpInfo() map[string]int64 {
	in := c.ep.Info()
	mss := int64(max(in.SndMSS, 1))
	segs := func(b uint32) int64 { return (int64(b) + mss - 1) / mss }
	us := func(d time.Duration) int64 { return d.Microseconds() }
	ssthresh := int64(linuxInfiniteSsthresh)
	if int64(in.Ssthresh) < linuxInfiniteSsthresh {
		ssthresh = int64(in.Ssthresh) / mss
	}
	outstanding := uint32(in.TCB.SndNxt - in.TCB.SndUna)
	// Linux's tp->advmss is the MSS announced less the timestamp option
	// once it is in force (tcp_rcv_synsent_state_process), as ss's
	// advmss column shows.
	advmss := int64(in.RcvMSS)
	if in.Timestamps {
		advmss -= 12
	}
	m := map[string]int64{
		"tcpi_state":          linuxState(in.State),
		"tcpi_snd_cwnd":       int64(in.Cwnd) / mss,
		"tcpi_snd_ssthresh":   ssthresh,
		"tcpi_snd_mss":        int64(in.SndMSS),
		"tcpi_advmss":         advmss,
		"tcpi_pmtu":           int64(in.PathMTU),
		"tcpi_rtt":            us(in.RTT),
		"tcpi_rttvar":         us(in.RTTVar),
		"tcpi_rto":            us(in.RTO),
		"tcpi_min_rtt":        us(in.MinRTT),
		"tcpi_unacked":        segs(outstanding),
		"tcpi_sacked":         segs(in.Sacked),
		"tcpi_lost":           segs(in.Lost),
		"tcpi_total_retrans":  int64(in.Retransmits),
		"tcpi_bytes_acked":    int64(in.BytesAcked),
		"tcpi_bytes_received": int64(in.BytesReceived),
		"tcpi_bytes_sent":     int64(in.BytesSent),
		"tcpi_snd_wscale":     int64(max(in.SndWndScale, 0)),
		"tcpi_rcv_wscale":     int64(max(in.RcvWndScale, 0)),
		"tcpi_notsent_bytes":  int64(max(in.SendQueued-int(outstanding), 0)),
		"tcpi_last_data_recv": in.LastDataRecv.Milliseconds(),
		"tcpi_reordering":     int64(in.Reordering),
		"tcpi_busy_time":      us(in.BusyTime),
		"tcpi_rwnd_limited":   us(in.RwndLimited),
		"tcpi_sndbuf_limited": us(in.SndbufLimited),
		"tcpi_reord_seen":     int64(in.ReorderEvents),
		"tcpi_probes":         int64(in.Probes),
		"tcpi_backoff":        int64(in.Backoff),
	}
	var opts int64
	if in.Timestamps {
		opts |= 1
	}
	if in.SACK {
		opts |= 2
	}
	if in.SndWndScale >= 0 {
		opts |= 4
	}
	if in.ECN {
		opts |= 8 // TCPI_OPT_ECN
	}
	if in.ECNSeen {
		opts |= 16 // TCPI_OPT_ECN_SEEN
	}
	m["tcpi_options"] = opts
	// Linux's states: Disorder is open with SACKed or lost segments
	// outstanding (tcp_try_to_open).
	switch in.CAState {
	case "CWR":
		m["tcpi_ca_state"] = caCWR
	case "fast recovery":
		m["tcpi_ca_state"] = caRecovery
	case "RTO recovery":
		m["tcpi_ca_state"] = caLoss
	default:
		m["tcpi_ca_state"] = caOpen
		if in.Sacked > 0 || in.Lost > 0 {
			m["tcpi_ca_state"] = caDisorder
		}
	}
	// With SACK, the engine's pipe is RFC 6675's: outstanding - SACKed -
	// lost + retransmitted, so what is retransmitted and in flight
	// (Linux's retrans_out) follows from it.
	if in.SACK {
		r := int64(in.InFlight) + int64(in.Sacked) + int64(in.Lost) - int64(outstanding)
		m["tcpi_retrans"] = segs(uint32(max(r, 0)))
	}
	return m
}

// linuxState maps a state to Linux's tcpi_state number
// (include/net/tcp_states.h).
func linuxState(s event.State) int64 {
	switch s {
	case event.Established:
		return 1
	case event.SynSent:
		return 2
	case event.SynReceived:
		return 3
	case event.FinWait1:
		return 4
	case event.FinWait2:
		return 5
	case event.TimeWait:
		return 6
	case event.Closed:
		return 7
	case event.CloseWait:
		return 8
	case event.LastAck:
		return 9
	case event.Listen:
		return 10
	case event.Closing:
		return 11
	}
	return 0
}

// trackClock is the fixture's manual clock, watched: it knows when each
// pending timer falls due, so that the runner can move time from one
// timer to the next and see the instant each segment leaves.
type trackClock struct {
	*faketime.ManualClock

	mu     sync.Mutex
	timers map[*trackTimer]time.Time // pending timers and when they fire
}

func newTrackClock(mc *faketime.ManualClock) *trackClock {
	return &trackClock{ManualClock: mc, timers: map[*trackTimer]time.Time{}}
}

type trackTimer struct {
	c     *trackClock
	inner tcpip.Timer
}

// AfterFunc implements tcpip.Clock.
func (c *trackClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	t := &trackTimer{c: c}
	c.mu.Lock()
	c.timers[t] = c.Now().Add(d)
	c.mu.Unlock()
	t.inner = c.ManualClock.AfterFunc(d, func() {
		c.mu.Lock()
		delete(c.timers, t)
		c.mu.Unlock()
		f()
	})
	return t
}

// Stop implements tcpip.Timer.
func (t *trackTimer) Stop() bool {
	t.c.mu.Lock()
	delete(t.c.timers, t)
	t.c.mu.Unlock()
	return t.inner.Stop()
}

// Reset implements tcpip.Timer.
func (t *trackTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	t.c.timers[t] = t.c.Now().Add(d)
	t.c.mu.Unlock()
	t.inner.Reset(d)
}

// next returns the earliest pending deadline.
func (c *trackClock) next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first time.Time
	found := false
	for _, at := range c.timers {
		if !found || at.Before(first) {
			first, found = at, true
		}
	}
	return first, found
}
