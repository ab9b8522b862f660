package tcp

import (
	"sync"
	"syscall"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/ports"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Listener is a passive OPEN (RFC 9293 3.10.1) in the LISTEN state, with
// its two queues made explicit the way Linux's request_sock_queue keeps
// them: the SYN queue of half-open connections in SYN-RECEIVED, and the
// accept queue of established connections waiting for Accept.
type Listener struct {
	proto     *Protocol
	id        stack.TransportEndpointID
	netProtos []tcpip.NetworkProtocolNumber
	portRes   ports.Reservation

	mu      sync.Mutex
	state   State // Listen, then Closed
	synq    synQueue
	acceptq acceptQueue
	changed chan struct{}
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

// Listen opens a listener on addr. An empty address listens on every local
// address of both IPv4 and IPv6; port 0 picks an ephemeral port. backlog
// bounds the accept queue (see acceptQueue for its exact meaning).
func (p *Protocol) Listen(addr tcpip.FullAddress, backlog int) (*Listener, error) {
	netProtos := []tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber}
	switch addr.Addr.Len() {
	case 0:
	case header.IPv4AddressSize:
		netProtos = netProtos[:1]
	default:
		netProtos = netProtos[1:]
	}
	if addr.Addr.Len() > 0 && p.stack.CheckLocalAddress(addr.NIC, netProtos[0], addr.Addr) == 0 {
		return nil, syscall.EADDRNOTAVAIL
	}
	if backlog < 0 {
		backlog = 0
	}
	l := &Listener{
		proto:     p,
		netProtos: netProtos,
		id:        stack.TransportEndpointID{LocalAddress: addr.Addr},
		state:     Listen,
	}
	l.synq = synQueue{entries: make(map[*Endpoint]struct{}), limit: p.opts.SynQueueLimit}
	l.acceptq = newAcceptQueue(backlog)
	l.portRes = ports.Reservation{Networks: netProtos, Transport: ProtocolNumber, Addr: addr.Addr, Port: addr.Port}
	port, terr := p.stack.ReservePort(p.stack.SecureRNG(), l.portRes, nil)
	if terr != nil {
		return nil, syscall.EADDRINUSE
	}
	l.portRes.Port = port
	l.id.LocalPort = port
	if terr := p.stack.RegisterTransportEndpoint(netProtos, ProtocolNumber, l.id, l, ports.Flags{}, addr.NIC); terr != nil {
		p.stack.ReleasePort(l.portRes)
		return nil, syscall.EADDRINUSE
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return nil, syscall.ENETDOWN
	}
	p.listeners[l] = struct{}{}
	p.mu.Unlock()
	return l, nil
}

// Addr returns the address and port the listener is bound to.
func (l *Listener) Addr() ConnID { return connIDOf(l.id) }

// State returns LISTEN, or CLOSED after Close.
func (l *Listener) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Queues returns the live lengths and limits of both queues.
func (l *Listener) Queues() QueueInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queueInfoLocked()
}

func (l *Listener) queueInfoLocked() QueueInfo {
	return QueueInfo{
		SynQueueLen: l.synq.len(), SynQueueLimit: l.synq.limit,
		AcceptQueueLen: l.acceptq.len(), AcceptQueueLimit: l.acceptq.limit,
	}
}

func (l *Listener) emitQueue(note string) {
	if l.proto.opts.Observer != nil {
		l.proto.emit(Event{Kind: EventQueue, Conn: connIDOf(l.id), Note: note, Queue: l.queueInfoLocked()})
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

// HandlePacket implements stack.TransportEndpoint: SEGMENT ARRIVES in
// LISTEN (RFC 9293 3.10.7.2).
func (l *Listener) HandlePacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	p := l.proto
	var seg Segment
	if r := p.parse(id, pkt, &seg); r != DropNone {
		p.drop(connIDOf(id), &seg, r)
		return
	}
	defer seg.Payload.Release()
	c := connIDOf(id)
	netProto := pkt.NetworkProtocolNumber

	// First, check for a RST: an incoming RST is ignored.
	if seg.has(header.TCPFlagRst) {
		p.drop(c, &seg, DropListenRst)
		return
	}
	// Second, check for an ACK: any acknowledgment is bad in LISTEN;
	// answer <SEQ=SEG.ACK><CTL=RST>.
	if seg.has(header.TCPFlagAck) {
		p.drop(c, &seg, DropListenAck)
		p.replyRST(id, netProto, pkt.NICID, &seg)
		return
	}
	// Third, check for a SYN.
	if !seg.has(header.TCPFlagSyn) {
		// Fourth, other control or text: drop.
		p.drop(c, &seg, DropListenNoSyn)
		return
	}
	if reason := l.reserveSynSlot(); reason != DropNone {
		p.drop(c, &seg, reason)
		return
	}
	l.openChild(id, netProto, pkt.NICID, &seg)
}

// reserveSynSlot decides whether a SYN may start a half-open connection.
// Like Linux (tcp_conn_request), a SYN is dropped while the accept queue
// is full, since the connection could not be queued once established.
func (l *Listener) reserveSynSlot() DropReason {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.state != Listen:
		return DropClosed
	case l.acceptq.full():
		l.proto.stats.ListenOverflows.Add(1)
		l.proto.stats.ListenDrops.Add(1)
		l.emitQueue("SYN dropped: accept queue full")
		return DropAcceptQueueFull
	case l.synq.full():
		l.proto.stats.ListenDrops.Add(1)
		l.emitQueue("SYN dropped: SYN queue full")
		return DropSynQueueFull
	}
	l.synq.pending++
	return DropNone
}

// openChild makes the half-open connection for a SYN: SYN-RECEIVED,
// registered on its 4-tuple so the rest of the handshake reaches it
// directly, and answers <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
func (l *Listener) openChild(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *Segment) {
	p := l.proto
	unreserve := func() {
		l.mu.Lock()
		l.synq.pending--
		l.mu.Unlock()
	}
	r, terr := p.stack.FindRoute(nic, id.LocalAddress, id.RemoteAddress, netProto, false)
	if terr != nil {
		unreserve()
		return
	}
	e := p.newEndpoint(netProto, id, r)
	e.listener = l
	e.mu.Lock()
	if terr := p.stack.RegisterTransportEndpoint([]tcpip.NetworkProtocolNumber{netProto}, ProtocolNumber, id, e, ports.Flags{}, 0); terr != nil || !p.register(e) {
		e.listener = nil
		e.mu.Unlock()
		r.Release()
		unreserve()
		return
	}
	e.registered = true
	l.mu.Lock()
	l.synq.pending--
	l.synq.entries[e] = struct{}{}
	l.emitQueue("SYN queued")
	l.mu.Unlock()

	e.IRS = seg.Seq
	e.RcvNxt = seg.Seq + 1
	e.rcvAcc = e.RcvNxt
	e.ISS = p.isn(id)
	e.SndUna = e.ISS
	e.SndNxt = e.ISS + 1
	e.sndMax = e.SndNxt
	e.sndBufSeq = e.ISS + 1
	e.takeSynOptions(seg, seg.WS >= 0)
	e.setSndWnd(uint32(seg.Window), seg)
	e.transition(SynReceived, segmentCause(seg))
	e.sendSynAck(SendSynAck)
	e.setTimer(timerRetransmit, e.rto)
	e.mu.Unlock()
	e.flush()
}

// established moves a child from the SYN queue to the accept queue. The
// child's lock is held; lock order is child, then listener.
func (l *Listener) established(e *Endpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.synq.entries, e)
	if l.state != Listen {
		return
	}
	l.acceptq.push(e)
	l.emitQueue("accept queue add")
	l.notify()
}

// acceptFull reports whether a child completing its handshake now would
// overflow the accept queue.
func (l *Listener) acceptFull() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	full := l.acceptq.full()
	if full {
		l.proto.stats.ListenOverflows.Add(1)
		l.emitQueue("accept queue overflow")
	}
	return full
}

// forget removes a child that reached CLOSED before it was accepted.
func (l *Listener) forget(e *Endpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.synq.entries[e]; ok {
		delete(l.synq.entries, e)
		l.emitQueue("half-open entry removed")
	}
	if l.acceptq.remove(e) {
		l.emitQueue("accept queue remove")
	}
}

// Accept hands out the oldest established connection (3.10.1: the passive
// OPEN's connections, in the order they completed). It returns
// ErrWouldBlock when none is waiting and EINVAL after Close, as Linux's
// accept(2) on a socket that is not listening.
func (l *Listener) Accept() (*Endpoint, error) {
	l.mu.Lock()
	if l.state != Listen {
		l.mu.Unlock()
		return nil, syscall.EINVAL
	}
	e := l.acceptq.pop()
	if e != nil {
		l.emitQueue("accepted")
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
	l.mu.Lock()
	if l.state == Closed {
		l.mu.Unlock()
		return
	}
	l.state = Closed
	var children []*Endpoint
	for e := range l.synq.entries {
		children = append(children, e)
	}
	clear(l.synq.entries)
	children = append(children, l.acceptq.drain()...)
	l.notify()
	l.mu.Unlock()

	p := l.proto
	p.stack.UnregisterTransportEndpoint(l.netProtos, ProtocolNumber, l.id, l, ports.Flags{}, l.portRes.BindToDevice)
	p.stack.ReleasePort(l.portRes)
	p.mu.Lock()
	delete(p.listeners, l)
	p.mu.Unlock()
	for _, e := range children {
		e.mu.Lock()
		e.listener = nil
		if e.state.synchronized() {
			e.sendReset(e.SndNxt)
		}
		e.transition(Closed, userCause("listener close"))
		e.mu.Unlock()
		e.flush()
	}
}

// HandleError implements stack.TransportEndpoint; ICMP errors do not
// concern a listener.
func (*Listener) HandleError(stack.TransportError, *stack.PacketBuffer) {}

// Abort implements stack.TransportEndpoint: the stack is closing.
func (l *Listener) Abort() { l.Close() }

// Wait implements stack.TransportEndpoint.
func (*Listener) Wait() {}

var _ = buffer.Buffer{}
