package tcp

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/ports"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ListenStats count every decision the listen queues take, per stack. Each
// decision is also an KindQueue event whose Note names it.
type ListenStats struct {
	SynQueued            atomic.Uint64 // a SYN made a half-open entry ("SYN queued")
	SynQueueOverflows    atomic.Uint64 // a SYN found the SYN queue full (cookie sent, or dropped)
	SynAcceptQueueFull   atomic.Uint64 // a SYN was dropped: the accept queue was full
	CookiesSent          atomic.Uint64 // SYN-ACKs whose ISS was a SYN cookie
	CookiesAccepted      atomic.Uint64 // final ACKs whose cookie verified: connection made
	CookiesRejected      atomic.Uint64 // final ACKs whose cookie did not verify: RST
	AcceptQueueAdds      atomic.Uint64 // connections established into the accept queue
	AcceptOverflowDrops  atomic.Uint64 // final ACKs dropped: the accept queue was full
	AcceptOverflowResets atomic.Uint64 // final ACKs answered with RST (AbortOnOverflow)
	Accepted             atomic.Uint64 // connections handed out by Accept
	HalfOpenExpired      atomic.Uint64 // half-open entries dropped after SynAckRetries
	HalfOpenUnreachable  atomic.Uint64 // half-open entries dropped by an ICMP net or host unreachable about their SYN-ACK (Linux's tcp_req_err)
}

// Listener is a passive OPEN (RFC 9293 3.10.1) in the LISTEN state, with
// its two queues made explicit the way Linux's request_sock_queue keeps
// them: the SYN queue of half-open connections in SYN-RECEIVED, and the
// accept queue of established connections waiting for Accept.
type Listener struct {
	proto     *Protocol
	id        stack.TransportEndpointID
	netProtos []tcpip.NetworkProtocolNumber
	wild      netip.Addr // 0.0.0.0 or :: for a wildcard listener of one family
	portRes   ports.Reservation

	cookies cookieKey // keys this stack's SYN cookies (cookie.go)

	// Queue events wait in events until deliverEvents hands them to the
	// observer, after mu is released, one deliverer at a time.
	delivery eventDelivery

	mu      sync.Mutex
	events  []event.Event
	state   event.State // Listen, then Closed
	synq    synQueue
	acceptq acceptQueue
	changed chan struct{}

	// cookieUntil is how long ACKs that match no entry are checked as SYN
	// cookies: as long as a cookie sent last may be valid. Like Linux
	// (tcp_synq_no_recent_overflow), a listener that sent no cookie
	// recently never takes an ACK as one, which keeps forgers guessing
	// only while a flood is on.
	cookieUntil tcpip.MonotonicTime

	// maxSeg is the MSS clamp SetMaxSegment set for connections to come
	// (0: none).
	maxSeg atomic.Int32
}

// synQueue holds the half-open connections of a listener. Its limit is the
// engine's SynQueueLimit, like Linux's tcp_max_syn_backlog.
type synQueue struct {
	entries map[*Endpoint]struct{}
	pending int // slots taken by SYNs whose entry is being made
	limit   int
}

func (q *synQueue) len() int   { return len(q.entries) + q.pending }
func (q *synQueue) full() bool { return q.len() >= q.limit }

// Listen is the passive OPEN call of RFC 9293 3.10.1: it opens a listener
// on local. The zero netip.Addr listens on every local address of both
// IPv4 and IPv6, as a dual-stack socket on [::] does. An unspecified
// address of one family listens on every address of that family only:
// 0.0.0.0 as an AF_INET socket on INADDR_ANY, :: as an AF_INET6 socket
// with IPV6_V6ONLY, so that a "tcp4" and a "tcp6" listener can share a
// port as on Linux. Port 0 picks an ephemeral port. backlog bounds the
// accept queue (see acceptQueue for its exact meaning). Errors are
// syscall errnos: EADDRNOTAVAIL for an address that is not the stack's,
// EADDRINUSE for a port taken, ENETDOWN once the stack is shutting down.
func (p *Protocol) Listen(local netip.AddrPort, backlog int) (*Listener, error) {
	return p.ListenOn(local, 0, backlog)
}

// ListenOn is Listen bound to interface nic (0: any), as SO_BINDTODEVICE
// or a link-local address's sin6_scope_id binds a Linux listener: only
// SYNs that arrive on nic find it, and a local address must be one of
// nic's (else EADDRNOTAVAIL).
func (p *Protocol) ListenOn(local netip.AddrPort, nic tcpip.NICID, backlog int) (*Listener, error) {
	netProtos := []tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber}
	var addr tcpip.Address
	wild := netip.Addr{} // Addr's answer for a wildcard listener
	if a := local.Addr().Unmap(); a.IsValid() {
		if a.Is4() {
			netProtos = netProtos[:1]
		} else {
			netProtos = netProtos[1:]
		}
		if a.IsUnspecified() {
			wild = a
		} else {
			addr = tcpip.AddrFromSlice(a.AsSlice())
			if p.stack.CheckLocalAddress(nic, netProtos[0], addr) == 0 {
				return nil, syscall.EADDRNOTAVAIL
			}
		}
	}
	if backlog < 0 {
		backlog = 0
	}
	l := &Listener{
		proto:     p,
		netProtos: netProtos,
		wild:      wild,
		id:        stack.TransportEndpointID{LocalAddress: addr},
		state:     event.Listen,
		cookies:   newCookieKey(p.secret),
	}
	l.synq = synQueue{entries: make(map[*Endpoint]struct{}), limit: p.opts.SynQueueLimit}
	l.acceptq = newAcceptQueue(backlog)
	l.portRes = ports.Reservation{Networks: netProtos, Transport: protocolNumber, Addr: addr, Port: local.Port(), BindToDevice: nic}
	// Connections actively opened on the port hold it too (ports.go):
	// a listener may not take it from them, as bind(2) may not.
	p.ports.mu.Lock()
	if local.Port() != 0 && p.ports.inUse(addr, local.Port()) {
		p.ports.mu.Unlock()
		return nil, syscall.EADDRINUSE
	}
	port, terr := p.stack.ReservePort(p.stack.SecureRNG(), l.portRes, func(port uint16) (bool, tcpip.Error) {
		return !p.ports.inUse(addr, port), nil
	})
	if terr != nil {
		p.ports.mu.Unlock()
		return nil, syscall.EADDRINUSE
	}
	l.portRes.Port = port
	l.id.LocalPort = port
	if terr := p.stack.RegisterTransportEndpoint(netProtos, protocolNumber, l.id, l.demux(), ports.Flags{}, nic); terr != nil {
		p.stack.ReleasePort(l.portRes)
		p.ports.mu.Unlock()
		return nil, syscall.EADDRINUSE
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.ports.mu.Unlock()
		l.Close()
		return nil, syscall.ENETDOWN
	}
	p.listeners[l] = struct{}{}
	p.mu.Unlock()
	p.ports.mu.Unlock()
	return l, nil
}

// SetMaxSegment clamps the MSS of the connections the listener accepts
// from now on, as Linux's TCP_MAXSEG set on a listening socket: their
// SYN-ACK offers at most n (RFC 9293 3.7.1: the MSS option is ours to
// choose, up to what the route carries), and they send segments of at
// most n. 0 removes the clamp; n outside Linux's range, 88 to 32767, is
// EINVAL.
func (l *Listener) SetMaxSegment(n int) error {
	if n != 0 && (n < minUserMSS || n > maxUserMSS) {
		return syscall.EINVAL
	}
	l.maxSeg.Store(int32(n))
	return nil
}

// Addr returns the address and port the listener is bound to; the
// address is unspecified for a listener on every address: 0.0.0.0 or ::
// for one family, 0.0.0.0 for both.
func (l *Listener) Addr() netip.AddrPort {
	if l.wild.IsValid() {
		return netip.AddrPortFrom(l.wild, l.id.LocalPort)
	}
	return connIDOf(l.id).Local
}

// State returns LISTEN, or CLOSED after Close.
func (l *Listener) State() event.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Queues returns the live lengths and limits of both queues.
func (l *Listener) Queues() event.QueueInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queueInfoLocked()
}

func (l *Listener) queueInfoLocked() event.QueueInfo {
	return event.QueueInfo{
		SynQueueLen: l.synq.len(), SynQueueLimit: l.synq.limit,
		AcceptQueueLen: l.acceptq.len(), AcceptQueueLimit: l.acceptq.limit,
	}
}

// queueEvent reports a queue decision: note says what was decided, c is
// the connection it concerns (the listener's own address when none) and
// key the segment that caused it, if any. When the decision concerns a
// child whose lock is held, the event goes with the child's events, so it
// keeps its place among them (SYN queued, then SYN-ACK sent); otherwise
// it waits on the listener until deliverEvents. The caller holds l.mu.
func (l *Listener) queueEvent(child *Endpoint, c event.ConnID, key event.SegKey, note string) {
	p := l.proto
	if p.opts.Observer == nil {
		return
	}
	ev := event.Event{Kind: event.KindQueue, Conn: c, Key: key, Note: note, Queue: l.queueInfoLocked()}
	if child != nil {
		child.emit(ev)
		return
	}
	ev.Time = p.clock.Now()
	p.queueEvent(&l.events, ev)
}

// deliverEvents hands the listener's queued events to the observer. It
// must be called with no engine lock held. A goroutine that finds another
// delivering leaves its events to that one, which loops until none is
// left, as Endpoint.flush does.
func (l *Listener) deliverEvents() {
	if l.proto.opts.Observer != nil && l.delivery.mu.TryLock() {
		l.delivery.deliver(&l.mu, &l.events, l.proto)
	}
}

// Changed returns a channel closed at the next change: a connection became
// acceptable or the listener closed.
func (l *Listener) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

func (l *Listener) notify() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// packetArrives is SEGMENT ARRIVES in LISTEN (RFC 9293 3.10.7.2), for a
// packet the demuxer gave the listener (listenerEndpoint.HandlePacket).
func (l *Listener) packetArrives(id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	p := l.proto
	defer l.deliverEvents()
	var seg segment
	if r := p.parse(id, pkt, &seg); r != event.DropNone {
		p.drop(connIDOf(id), &seg, r)
		return
	}
	defer seg.Payload.Release()
	l.segmentArrives(id, pkt.NetworkProtocolNumber, pkt.NICID, &seg)
}

// segmentArrives is SEGMENT ARRIVES in LISTEN (3.10.7.2) for a parsed
// segment; the caller delivers the events it queues (deliverEvents).
func (l *Listener) segmentArrives(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment) {
	p := l.proto
	c := connIDOf(id)

	// A connection in TIME-WAIT is not in the demuxer: its segments come
	// here, to the listener on its port (timewait.go).
	if tw := p.timeWaitFor(id); tw != nil {
		if v, iss := p.timeWaitArrives(tw, seg, l); v == twReopen {
			l.synArrives(id, netProto, nic, seg, iss)
		}
		return
	}

	// First, check for a RST: an incoming RST is ignored.
	if seg.has(header.TCPFlagRst) {
		p.drop(c, seg, event.DropListenRst)
		return
	}
	// Second, check for an ACK: any acknowledgment is bad in LISTEN;
	// answer <SEQ=SEG.ACK><CTL=RST>. Unless it returns a SYN cookie we
	// sent (RFC 4987 3.6): then it completes a handshake we kept no
	// state for.
	if seg.has(header.TCPFlagAck) {
		if !seg.has(header.TCPFlagSyn) && l.cookiesRecent() {
			l.cookieAck(id, netProto, nic, seg)
			return
		}
		p.drop(c, seg, event.DropListenAck)
		p.replyRST(id, netProto, nic, seg)
		return
	}
	// Third, check for a SYN.
	if !seg.has(header.TCPFlagSyn) {
		// Fourth, other control or text: drop.
		p.drop(c, seg, event.DropListenNoSyn)
		return
	}
	l.synArrives(id, netProto, nic, seg, 0)
}

// synArrives is the third step of 3.10.7.2 for a SYN: a half-open entry,
// a cookie, or a drop, as the queues decide. A nonzero iss is the ISN to
// use, for a SYN that reopens a connection from TIME-WAIT.
func (l *Listener) synArrives(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment, iss seqnum.Value) {
	switch d, reason := l.admitSyn(connIDOf(id), seg.wire); d {
	case synHalfOpen:
		l.openChild(id, netProto, nic, seg, iss)
	case synCookie:
		l.sendCookie(id, netProto, nic, seg)
	default:
		l.proto.drop(connIDOf(id), seg, reason)
	}
}

// synDecision is what a listener does with a SYN.
type synDecision uint8

const (
	synDrop     synDecision = iota // discard it
	synHalfOpen                    // make a half-open entry in the SYN queue
	synCookie                      // answer with a SYN cookie, keep no state
)

// admitSyn decides what a SYN gets, in Linux's order (tcp_conn_request):
// a SYN is dropped while the accept queue is full, since the connection
// could not be queued once established; with the SYN queue full it gets a
// cookie, or is dropped with NoSynCookies. Linux compares the SYN queue
// with the listen backlog and uses tcp_max_syn_backlog only without
// cookies; we give the SYN queue its own limit, SynQueueLimit, as the
// design asks, so the two queues can be watched and tuned apart.
func (l *Listener) admitSyn(c event.ConnID, key event.SegKey) (synDecision, event.DropReason) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := &l.proto.stats
	switch {
	case l.state != event.Listen:
		return synDrop, event.DropClosed
	case l.acceptq.full():
		st.ListenOverflows.Add(1)
		st.ListenDrops.Add(1)
		st.Listen.SynAcceptQueueFull.Add(1)
		l.queueEvent(nil, c, key, "SYN dropped: accept queue full")
		return synDrop, event.DropAcceptQueueFull
	case l.synq.full():
		st.Listen.SynQueueOverflows.Add(1)
		if !l.proto.opts.NoSynCookies {
			// CookiesSent counts once the SYN-ACK is written
			// (sendCookie): a cookie with no route back is a drop.
			l.cookieUntil = l.proto.clock.NowMonotonic().Add(cookieMaxAge * cookiePeriod)
			l.queueEvent(nil, c, key, "SYN queue full: SYN cookie sent")
			return synCookie, event.DropNone
		}
		st.ListenDrops.Add(1)
		l.queueEvent(nil, c, key, "SYN dropped: SYN queue full")
		return synDrop, event.DropSynQueueFull
	}
	l.synq.pending++
	return synHalfOpen, event.DropNone
}

// cookiesRecent reports whether an ACK that matches no entry should be
// checked as a SYN cookie.
func (l *Listener) cookiesRecent() bool {
	if l.proto.opts.NoSynCookies {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proto.clock.NowMonotonic().Before(l.cookieUntil)
}

// sendCookie answers a SYN statelessly: <SEQ=cookie><ACK=SEG.SEQ+1>
// <CTL=SYN,ACK> with our MSS. If the SYN offered timestamps, so does the
// SYN-ACK, its TSval carrying the peer's window scale, and it offers our
// window scale in answer to the peer's; otherwise it offers no window
// scale (see cookie.go). Without a route back to the peer the SYN is
// dropped (DropNoRoute), as openChild drops it.
func (l *Listener) sendCookie(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment) {
	p := l.proto
	r, terr := p.findRoute(routeQuery{nic: nic, netProto: netProto, local: id.LocalAddress, remote: id.RemoteAddress})
	if terr != nil {
		p.stats.ListenDrops.Add(1)
		p.drop(connIDOf(id), seg, event.DropNoRoute)
		return
	}
	defer p.releaseRoute(r)
	peerMSS := seg.MSS
	if peerMSS == 0 {
		// RFC 9293 3.7.1: 536 for IPv4, rounded to IPv6's table it
		// is its first entry, 1220, the default there.
		peerMSS = header.TCPDefaultMSS
	}
	cookie := l.cookies.make(id, seg.Seq, cookieMSSIndex(cookieMSSFor(netProto), peerMSS), cookieCount(p.clock.NowMonotonic()))
	o := synOptions{mss: uint16(clampMSS(p.announcedMSS(r, nic, id.RemoteAddress), int(l.maxSeg.Load()))), ws: -1}
	cookieWnd, _ := p.synWindow(p.opts.ReceiveBufferSize, int(o.mss), nic, id.RemoteAddress)
	if seg.TS && !p.opts.NoTimestamps {
		o.ts = true
		o.tsVal = cookieTimestamp(p.tsClock(), seg.WS) + p.tsOffset(id)
		o.tsEcr = seg.TSVal
		if seg.WS >= 0 {
			o.ws = windowScaleFor(max(p.opts.ReceiveBufferSize, p.opts.ReceiveBufferMax)) // as newEndpoint will
		}
	}
	var opts [header.TCPOptionsMaximumSize]byte
	n := encodeSynOptions(o, opts[:])
	f := outFields{
		srcPort: id.LocalPort, dstPort: id.RemotePort,
		seq: cookie, ack: seg.Seq + 1,
		flags:  header.TCPFlagSyn | header.TCPFlagAck,
		window: uint16(cookieWnd),
		opts:   opts[:n],
	}
	pkt := buildPacket(r, &f, buffer.Buffer{})
	p.countSend(connIDOf(id), event.SendSynAckCookie, &f, 0, 0)
	if p.writePacket(r, pkt, ecnNotECT) {
		p.dropRefused(pkt) // the link refused it: no cookie went out
		return
	}
	p.stats.Listen.CookiesSent.Add(1)
}

// cookieAck handles an ACK that matches no entry while cookies are on: if
// SEG.ACK-1 is a cookie we made for SEG.SEQ-1 no more than cookieMaxAge
// ticks ago, the connection is made directly in ESTABLISHED, into the
// accept queue (with the accept-queue-full policy of a normal handshake);
// otherwise <SEQ=SEG.ACK><CTL=RST>, as for any bad ACK in LISTEN.
func (l *Listener) cookieAck(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment) {
	p := l.proto
	st := &p.stats
	c := connIDOf(id)
	idx, bad := l.cookies.check(id, seg.Seq-1, seg.Ack-1, cookieCount(p.clock.NowMonotonic()))
	// The peer's window scale, from the TSecr (cookie.go). An ACK without
	// a TSopt makes a connection without timestamps and without scaling,
	// as in Linux (cookie_timestamp_decode), even if the SYN had them: a
	// peer that stops sending a negotiated TSopt misbehaves (RFC 7323
	// 3.2), and not scaling our window is the safe side of it.
	ws, tsOK := -1, false
	if bad == "" && seg.TS && !p.opts.NoTimestamps {
		ws, bad = cookieTSDecode(seg.TSEcr-p.tsOffset(id), p.tsClock())
		tsOK = bad == ""
	}
	l.mu.Lock()
	switch {
	case bad != "":
		st.Listen.CookiesRejected.Add(1)
		l.queueEvent(nil, c, seg.wire, "SYN cookie rejected: "+bad)
		l.mu.Unlock()
		p.drop(c, seg, event.DropCookieInvalid)
		p.replyRST(id, netProto, nic, seg)
		return
	case l.state != event.Listen:
		l.mu.Unlock()
		p.drop(c, seg, event.DropClosed)
		return
	case l.acceptq.full():
		// Linux (tcp_v4_syn_recv_sock) counts and drops; the peer's
		// next segment carries the cookie again. No state is kept.
		l.acceptOverflowLocked(nil, c, seg.wire)
		l.mu.Unlock()
		p.drop(c, seg, event.DropAcceptQueueFull)
		if p.opts.AbortOnOverflow {
			p.replyRST(id, netProto, nic, seg)
		}
		return
	}
	st.Listen.CookiesAccepted.Add(1)
	l.acceptq.reserved++ // taken by established, below
	mss := cookieMSSFor(netProto)[idx]
	note := fmt.Sprintf("SYN cookie accepted: mss %d", mss)
	if tsOK {
		note += ", TS"
	}
	if ws >= 0 {
		note += fmt.Sprintf(", wscale %d", ws)
	}
	l.queueEvent(nil, c, seg.wire, note)
	l.mu.Unlock()

	r, terr := p.findRoute(routeQuery{nic: nic, netProto: netProto, local: id.LocalAddress, remote: id.RemoteAddress})
	if terr != nil {
		// The route went away since the SYN: the ACK is dropped, the
		// peer's next segment tries again. (Linux's cookie_v4_check
		// discards it likewise, without a ListenDrops.)
		l.unreserveAccept()
		p.drop(c, seg, event.DropNoRoute)
		return
	}
	e := p.newEndpoint(netProto, id, r)
	e.listener = l
	e.clampUserMSS(int(l.maxSeg.Load()))
	e.mu.Lock()
	if err := l.registerChild(e); err != nil {
		e.listener = nil
		e.mu.Unlock()
		p.releaseRoute(r)
		l.unreserveAccept()
		p.drop(c, seg, childDropReason(err))
		return
	}
	e.registered = true
	opened := e.beginStamp()
	// The TCB the SYN would have made, and the ACK's effect on it
	// (3.10.7.4 fifth step, SYN-RECEIVED): SND.UNA = SEG.ACK.
	e.irs = seg.Seq - 1
	e.rcvNxt = seg.Seq
	wnd, grow := p.synWindow(e.rcvBufLimit, e.rcvMSS, e.nic, id.RemoteAddress) // what the SYN-ACK offered
	e.rcvWnd, e.rcvGrowSegs = uint32(wnd), grow
	e.rcvAcc = e.rcvNxt.Add(seqnum.Size(e.rcvWnd))
	e.iss = seg.Ack - 1
	e.sndUna = seg.Ack
	e.sndNxt = seg.Ack
	e.sndBufSeq = seg.Ack
	e.tsOffset = p.tsOffset(id)
	e.lastAckSent = e.rcvNxt // what our SYN-ACK acknowledged
	if e.tsOK = tsOK; tsOK {
		e.takeSynTimestamp(seg.TSVal)
	}
	e.setSendMSS(int(mss)) // as takeSynOptions
	// rcvWndShift is newEndpoint's, the scale sendCookie offered.
	if e.wsOK = ws >= 0; e.wsOK {
		e.sndWndShift = uint8(ws)
	} else {
		e.sndWndShift, e.rcvWndShift = 0, 0
	}
	// The ACK's window is scaled (RFC 7323 2.2: only SYNs' are not).
	e.setSndWnd(uint32(seg.Window)<<e.sndWndShift, seg)
	e.initCongestion()
	e.follow(moveTo(event.Established, event.Cause{Kind: event.CauseSegment, Detail: "SYN cookie " + seg.String(), Key: seg.wire},
		thenCookieOpened), seg)
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
}

// cookieOpened goes on in ESTABLISHED for a connection a SYN cookie
// made: data or a FIN on the ACK continue at the sixth step.
func (e *Endpoint) cookieOpened(seg *segment) verdict {
	if seg.Payload.Size() > 0 || seg.has(header.TCPFlagFin) {
		e.trimToWindow(seg)
		return e.sixthStep(seg)
	}
	e.output()
	return stay()
}

// openChild makes the half-open connection for a SYN: SYN-RECEIVED,
// registered on its 4-tuple so the rest of the handshake reaches it
// directly, and answers <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
func (l *Listener) openChild(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment, iss seqnum.Value) {
	p := l.proto
	unreserve := func() {
		l.mu.Lock()
		l.synq.pending--
		l.mu.Unlock()
	}
	r, terr := p.findRoute(routeQuery{nic: nic, netProto: netProto, local: id.LocalAddress, remote: id.RemoteAddress})
	if terr != nil {
		// No route back to the source: the SYN-ACK could not leave.
		// Linux's tcp_conn_request drops the SYN (route_req failing,
		// drop_and_free) and counts a ListenDrops.
		unreserve()
		p.stats.ListenDrops.Add(1)
		p.drop(connIDOf(id), seg, event.DropNoRoute)
		return
	}
	e := p.newEndpoint(netProto, id, r)
	e.listener = l
	e.clampUserMSS(int(l.maxSeg.Load()))
	e.mu.Lock()
	if err := l.registerChild(e); err != nil {
		e.listener = nil
		e.mu.Unlock()
		p.releaseRoute(r)
		unreserve()
		p.drop(connIDOf(id), seg, childDropReason(err))
		return
	}
	e.registered = true
	opened := e.beginStamp()
	l.mu.Lock()
	l.synq.pending--
	l.synq.entries[e] = struct{}{}
	p.stats.Listen.SynQueued.Add(1)
	l.queueEvent(e, e.connID(), seg.wire, "SYN queued")
	l.mu.Unlock()

	e.irs = seg.Seq
	e.rcvNxt = seg.Seq + 1
	e.rcvAcc = e.rcvNxt
	e.iss = iss
	if iss == 0 {
		e.iss = p.isn(id)
	}
	e.sndUna = e.iss
	e.sndNxt = e.iss + 1
	e.sndBufSeq = e.iss + 1
	e.tsOffset = p.tsOffset(id)
	e.takeSynOptions(seg, seg.WS >= 0)
	e.ecnTakeSyn(seg)
	e.setSndWnd(uint32(seg.Window), seg)
	// SEGMENT ARRIVES for the new TCB: SYN-RECEIVED, and the SYN-ACK.
	e.follow(moveTo(event.SynReceived, e.segmentCause(seg), thenSynAckOut), seg)
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
}

// registerChild enters a new child in the demuxer on its 4-tuple and in
// the engine's table, or in neither: it returns register's error (EMFILE
// at MaxConnections), or EADDRINUSE when the demuxer has the 4-tuple.
func (l *Listener) registerChild(e *Endpoint) error {
	p := l.proto
	netProtos := []tcpip.NetworkProtocolNumber{e.netProto}
	if terr := e.registerDemux(netProtos); terr != nil {
		return syscall.EADDRINUSE
	}
	if err := p.register(e); err != nil {
		e.unregisterDemux()
		return err
	}
	return nil
}

// childDropReason names the drop of a SYN or cookie ACK whose connection
// registerChild refused: the stack at MaxConnections (EMFILE); the
// 4-tuple taken meanwhile (EADDRINUSE), by a copy of the segment handled
// on another goroutine; or the stack shutting down (ENETDOWN).
func childDropReason(err error) event.DropReason {
	switch err {
	case syscall.EMFILE:
		return event.DropConnectionLimit
	case syscall.EADDRINUSE:
		return event.DropTupleInUse
	}
	return event.DropClosed
}

// established moves a child from the SYN queue to the accept queue, into
// the place reserveAccept kept for it. It reports false if the listener
// has closed meanwhile: nobody will ever accept the connection. The
// child's lock is held; lock order is child, then listener.
func (l *Listener) established(e *Endpoint) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.synq.entries, e)
	if l.state != event.Listen {
		return false
	}
	l.acceptq.push(e)
	l.proto.stats.Listen.AcceptQueueAdds.Add(1)
	l.queueEvent(e, e.connID(), event.SegKey{}, "accept queue add")
	l.notify()
	return true
}

// reserveAccept keeps a place in the accept queue for a child whose final
// ACK just arrived, or reports false if the queue is full; the caller
// (synReceivedArrives) then drops the ACK, or resets with AbortOnOverflow.
// Checking and reserving under one lock keeps the queue within its limit
// however many handshakes complete at once.
func (l *Listener) reserveAccept(child *Endpoint, key event.SegKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acceptq.full() {
		l.acceptOverflowLocked(child, child.connID(), key)
		return false
	}
	l.acceptq.reserved++
	return true
}

func (l *Listener) unreserveAccept() {
	l.mu.Lock()
	if l.acceptq.reserved > 0 {
		l.acceptq.reserved--
	}
	l.mu.Unlock()
}

// acceptOverflowLocked counts and reports a final ACK that found the
// accept queue full, by the policy in force. Like Linux, it is both a
// ListenOverflow and a ListenDrop.
func (l *Listener) acceptOverflowLocked(child *Endpoint, c event.ConnID, key event.SegKey) {
	st := &l.proto.stats
	st.ListenOverflows.Add(1)
	st.ListenDrops.Add(1)
	if l.proto.opts.AbortOnOverflow {
		st.Listen.AcceptOverflowResets.Add(1)
		l.queueEvent(child, c, key, "accept queue overflow: final ACK answered with RST")
		return
	}
	st.Listen.AcceptOverflowDrops.Add(1)
	l.queueEvent(child, c, key, "accept queue overflow: final ACK dropped")
}

// forget removes a child that reached CLOSED before it was accepted. The
// child's lock is held. A half-open entry goes because its SYN-ACK
// retransmissions ran out (retransmitTimeout counted one past
// SynAckRetries), or because a RST or an abort removed it.
func (l *Listener) forget(e *Endpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.synq.entries[e]; ok {
		delete(l.synq.entries, e)
		switch {
		case e.retries > l.proto.opts.SynAckRetries:
			l.proto.stats.Listen.HalfOpenExpired.Add(1)
			l.queueEvent(e, e.connID(), event.SegKey{}, "half-open expired: SYN-ACK retries exhausted")
		default:
			l.queueEvent(e, e.connID(), event.SegKey{}, "half-open entry removed")
		}
	}
	if l.acceptq.remove(e) {
		l.queueEvent(e, e.connID(), event.SegKey{}, "accept queue remove")
	}
}

// Accept hands out the oldest established connection (3.10.1: the passive
// OPEN's connections, in the order they completed). It returns
// ErrWouldBlock when none is waiting and EINVAL after Close, as Linux's
// accept(2) on a socket that is not listening.
func (l *Listener) Accept() (*Endpoint, error) {
	defer l.deliverEvents()
	l.mu.Lock()
	if l.state != event.Listen {
		l.mu.Unlock()
		return nil, syscall.EINVAL
	}
	e := l.acceptq.pop()
	if e != nil {
		l.proto.stats.Listen.Accepted.Add(1)
		l.queueEvent(nil, e.connID(), event.SegKey{}, "accepted")
	}
	l.mu.Unlock()
	if e == nil {
		return nil, ErrWouldBlock
	}
	e.mu.Lock()
	e.listener = nil
	e.mu.Unlock()
	return e, nil
}

// Close stops listening. Half-open connections are forgotten; established
// connections nobody accepted are reset, as Linux's inet_csk_listen_stop.
func (l *Listener) Close() {
	defer l.deliverEvents()
	l.mu.Lock()
	if l.state == event.Closed {
		l.mu.Unlock()
		return
	}
	l.state = event.Closed
	var children []*Endpoint
	for e := range l.synq.entries {
		children = append(children, e)
	}
	halfOpen := len(children)
	clear(l.synq.entries)
	children = append(children, l.acceptq.drain()...)
	l.queueEvent(nil, event.ConnID{Local: l.Addr()}, event.SegKey{}, fmt.Sprintf("listener closed: %d half-open forgotten, %d queued reset", halfOpen, len(children)-halfOpen))
	l.notify()
	l.mu.Unlock()

	p := l.proto
	p.stack.UnregisterTransportEndpoint(l.netProtos, protocolNumber, l.id, l.demux(), ports.Flags{}, l.portRes.BindToDevice)
	p.stack.ReleasePort(l.portRes)
	p.mu.Lock()
	delete(p.listeners, l)
	p.mu.Unlock()
	for _, e := range children {
		e.mu.Lock()
		e.listener = nil
		if e.state.Synchronized() {
			e.sendActiveReset()
		}
		e.transition(event.Closed, userCause("listener close"))
		e.mu.Unlock()
		e.flush()
	}
}
