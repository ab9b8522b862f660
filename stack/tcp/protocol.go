package tcp

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/internal/tcpbind"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// protocolNumber is TCP's IP protocol number.
const protocolNumber = header.TCPProtocolNumber

// ErrWouldBlock is returned by non-blocking calls that cannot make progress
// now. Wait on the channel from Changed and try again.
var ErrWouldBlock = errors.New("tcp: operation would block")

// Protocol is the TCP engine of one stack: the user calls that open
// connections (Connect, Listen), the engine's counters and the snapshot
// of what it holds. package stack makes it (stack.New) and returns it from
// Stack.TCP.
type Protocol struct {
	stack *stack.Stack
	clock tcpip.Clock
	opts  Options
	stats Stats

	// onePerSegment turns sendPacketRest off, so that output sends every
	// segment through sendNewData: its tests compare the two.
	onePerSegment bool
	// duringReadUnlocked, if set, runs while a Read copies without the
	// connection's lock (readUnlocked): its tests act there.
	duringReadUnlocked func()

	// secret keys the RFC 6528 ISN function. It is per stack, so two
	// stacks in one process do not share sequence spaces.
	secret [16]byte

	mu        sync.Mutex
	endpoints map[*Endpoint]struct{}
	listeners map[*Listener]struct{}
	closed    bool          // no new connection or listener: Shutdown or Close
	drained   chan struct{} // made by Shutdown, closed when endpoints is empty and unflushed is 0
	// unflushed counts the connections taken out of endpoints whose
	// flush has not yet written what the move to CLOSED or TIME-WAIT
	// queued (Endpoint.drainCheck): that flush may run on another
	// goroutine after the table is empty.
	unflushed int

	challenge challengeLimiter
	tw        timeWaitTable // connections in TIME-WAIT (timewait.go)
	chunks    chunkCache    // send buffer chunks to copy into again (chunkreuse.go)
	pmtu      pmtuTable     // path MTUs learned from ICMP (pmtu.go)
	// routeMetrics is the stack's route table with each row's metrics
	// (routemetrics.go); nil while no route has any.
	routeMetrics atomic.Pointer[[]Route]

	// pendingEvents counts the connections and listeners holding events
	// not yet delivered, and the TIME-WAIT records out of the table whose
	// CLOSED is not yet reported (SyncEvents, holdEvents).
	pendingEvents atomic.Int64
	// timeWaitTaken, if set (tests only), runs when expireTimeWait has
	// taken due records out of the table and not yet finished them.
	timeWaitTaken func()

	orphans atomic.Int64 // connections with Endpoint.orphan set
	rcvMem  atomic.Int64 // bytes of received data the connections hold (ReceiveMemoryLimit; rcvmem.go)
	limits  LimitStats

	batch batchState // ACK once per drained burst (batch.go)
	// linkRoom is each interface's report of its outbound queue, if its
	// link has one: how many more frames it takes before it is busy; tsq
	// the connections whose new data waits for room in one (TCP small
	// queues, smallqueues.go).
	linkRoom [maxLinkNIC]atomic.Pointer[func() int]
	tsq      tsqState
	trains   sync.Pool  // of *train, lent to a connection while output runs (send.go)
	timers   sync.Pool  // of *clockTimer, held by a connection while a timer is armed (timers.go)
	ports    portTable  // local ports of active opens (ports.go)
	routes   routeCache // routes shared by connections (routes.go)
}

// NewProtocol makes an engine with options opts, and the binding through
// which package stack runs it in gVisor's netstack (stack.New does; the
// binding's type is internal to tapstack). The engine serves one stack,
// from the moment the stack is made with Binding.Factory.
func NewProtocol(opts Options) (*Protocol, *tcpbind.Binding) {
	p := &Protocol{
		opts:      opts.withDefaults(),
		endpoints: make(map[*Endpoint]struct{}),
		listeners: make(map[*Listener]struct{}),
	}
	return p, &tcpbind.Binding{
		Factory:   p.attach,
		LinkDown:  p.linkDown,
		BatchLink: p.batchLink,
		QueueLink: p.queueLink,
		Shutdown:  p.shutdown,
		Drained:   p.drainedChan,
		Abort:     p.abortAll,
		ICMP:      (*icmpWatch)(p),
	}
}

// attach makes p the transport protocol for number 6 of s: gVisor calls
// it once, while s is made.
func (p *Protocol) attach(s *stack.Stack) stack.TransportProtocol {
	p.stack = s
	p.clock = s.Clock()
	_, _ = io.ReadFull(s.SecureRNG().Reader, p.secret[:])
	p.challenge.init(p.opts.ChallengeAckLimit, p.secret)
	return (*transportProtocol)(p)
}

// Stats returns the engine's counters.
func (p *Protocol) Stats() *Stats { return &p.stats }

// Options returns the options in force, defaults filled in.
func (p *Protocol) Options() Options { return p.opts }

// close is gVisor's stack closing (transportProtocol.Close): no new
// connection or listener, and the connections in TIME-WAIT are deleted.
func (p *Protocol) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeTimeWait(0, userCause("stack close"))
	p.chunks.release()
}

// shutdown begins closing every connection the way the peers can see, as
// a server drains before it exits (tcpbind.Binding.Shutdown);
// stack.Stack.Shutdown waits for it to end and resets what remains.
// Listeners close, as Listener.Close does: connections they queued are
// reset, half-open ones forgotten (Linux's inet_csk_listen_stop). No new connection or listener is made (Connect
// and Listen fail with ENETDOWN). Every connection gets the CLOSE call
// (RFC 9293 3.10.4), as Endpoint.Close: queued data and then a FIN, or a
// RST where received data would be discarded unread; a connection still
// in its handshake (SYN-SENT) finishes it first, and its FIN follows.
// Everything shutdown sends has been handed to the link when it returns;
// drainedChan tells when it is over.
func (p *Protocol) shutdown() {
	p.mu.Lock()
	p.closed = true
	if p.drained == nil {
		p.drained = make(chan struct{})
	}
	p.mu.Unlock()
	for _, l := range p.Listeners() {
		l.Close()
	}
	p.mu.Lock()
	conns := make([]*Endpoint, 0, len(p.endpoints))
	for e := range p.endpoints {
		conns = append(conns, e)
	}
	p.mu.Unlock()
	for _, e := range conns {
		e.shutdown()
	}
	p.mu.Lock()
	p.checkDrained()
	p.mu.Unlock()
}

// drainedChan returns a channel that is closed once shutdown has run and
// every connection has reached CLOSED or TIME-WAIT; nil before shutdown.
func (p *Protocol) drainedChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drained
}

// checkDrained closes drained once the last connection is gone and its
// last segments have left: a connection that another goroutine is
// flushing is out of endpoints before its RST or final ACK is written,
// and Shutdown closes the links when drained closes. p.mu is held.
func (p *Protocol) checkDrained() {
	if p.drained != nil && len(p.endpoints) == 0 && p.unflushed == 0 && !closedChan(p.drained) {
		close(p.drained)
	}
}

func closedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// closedArrives is SEGMENT ARRIVES for no connection and no listener
// (the demuxer found none). RFC 9293 3.10.7.1: if the state is CLOSED,
// all data is discarded and a RST is sent in response, unless the segment
// itself carries RST. A connection in TIME-WAIT whose listener is gone is
// not in the demuxer either; its record answers.
func (p *Protocol) closedArrives(id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	var seg segment
	if r := p.parse(id, pkt, &seg); r != event.DropNone {
		p.drop(event.ConnID{}, &seg, r)
		return
	}
	defer seg.Payload.Release()
	p.noConnectionArrives(id, pkt.NetworkProtocolNumber, pkt.NICID, &seg)
}

// noConnectionArrives is closedArrives for a parsed segment.
func (p *Protocol) noConnectionArrives(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment) {
	if tw := p.timeWaitFor(id); tw != nil {
		p.timeWaitArrives(tw, seg, nil)
		return
	}
	p.drop(connIDOf(id), seg, event.DropNoSocket)
	if seg.has(header.TCPFlagRst) {
		return
	}
	p.replyRST(id, netProto, nic, seg)
}

// strayArrives is SEGMENT ARRIVES for a segment the demuxer handed to a
// connection a moment before the connection left it, entering TIME-WAIT
// or CLOSED (the segment waited for the lock the change held). It is
// answered as the demuxer would have answered it a moment later: by the
// listener on the port, which passes a connection's segments to its
// TIME-WAIT record and may reopen it with a new SYN, or else by the
// record or the CLOSED state's RST. The connection itself no longer
// answers: it has handed its sequence space to the record, and its route
// may be gone.
func (p *Protocol) strayArrives(id stack.TransportEndpointID, netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, seg *segment) {
	p.stats.StraySegments.Add(1)
	if l := p.listenerFor(netProto, id); l != nil {
		l.segmentArrives(id, netProto, nic, seg)
		l.deliverEvents()
		return
	}
	p.noConnectionArrives(id, netProto, nic, seg)
}

// parse validates the segment in pkt and fills seg. Validation happens
// before any state is touched: a segment that fails it is dropped with the
// returned reason. The payload shares pkt's storage by reference count;
// the caller releases it.
func (p *Protocol) parse(id stack.TransportEndpointID, pkt *stack.PacketBuffer, seg *segment) event.DropReason {
	p.stats.SegmentsIn.Add(1)
	h := header.TCP(pkt.TransportHeader().Slice())
	if len(h) < header.TCPMinimumSize {
		return event.DropMalformed
	}
	payloadLen := pkt.Data().Size()
	if off := int(h.DataOffset()); off < header.TCPMinimumSize || off > len(h) {
		return event.DropMalformed
	}
	if !pkt.RXChecksumValidated {
		// gVisor does not verify transport checksums for us.
		if !h.IsChecksumValid(id.RemoteAddress, id.LocalAddress, pkt.Data().Checksum(), uint16(payloadLen)) {
			seg.parseHeader(h)
			seg.wire.Len = payloadLen
			return event.DropBadChecksum
		}
	}
	seg.parseHeader(h)
	seg.wire.Len = payloadLen
	seg.ecn = ipECN(pkt)
	if payloadLen > 0 {
		seg.Payload = pkt.Data().ToBuffer()
	}
	return event.DropNone
}

// drop counts and reports a discarded segment.
func (p *Protocol) drop(c event.ConnID, seg *segment, r event.DropReason) {
	p.stats.Drops[r].Add(1)
	if p.opts.Observer != nil {
		p.emit(event.Event{Kind: event.KindDrop, Conn: c, Drop: r, Segment: seg.info(), Key: seg.wire})
	}
}

// emit hands ev to the observer at once. It is for events made with no
// engine lock held (a segment for no connection, a listener's reply, a
// TIME-WAIT record's); events of a connection or a listener are queued
// under its lock and delivered after it is released (Endpoint.emit,
// Listener.queueEvent), so the observer never runs under an engine lock
// and may call back into the engine.
func (p *Protocol) emit(ev event.Event) {
	if p.opts.Observer == nil {
		return
	}
	ev.Time = p.clock.Now()
	p.opts.Observer(ev)
}

// SyncEvents returns once no event of any connection or listener waits
// for delivery, or after five seconds (an observer stuck, or traffic that
// never pauses). Events are delivered after the
// engine's locks are released, maybe by another goroutine, so a state
// (CLOSED, no connections left) can be seen a moment before the observer
// hears of it: call SyncEvents before closing a capture or reading what
// an observer collected. It must not be called from inside the observer.
func (p *Protocol) SyncEvents() {
	if p.opts.Observer == nil {
		return
	}
	for range 50_000 {
		if p.pendingEvents.Load() <= 0 {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// countSend counts and reports a segment about to leave, for segments
// sent with no engine lock held.
func (p *Protocol) countSend(c event.ConnID, cause event.SendCause, f *outFields, payloadLen, attempt int) {
	p.countSent(cause, f)
	if p.opts.Observer != nil {
		p.emit(sendEvent(c, cause, f, payloadLen, attempt))
	}
}

// countSent counts a segment about to leave.
func (p *Protocol) countSent(cause event.SendCause, f *outFields) {
	p.stats.SegmentsOut.Add(1)
	p.stats.Sends[cause].Add(1)
	if f.flags&header.TCPFlagRst != 0 {
		p.stats.ResetsSent.Add(1)
	}
}

// sendEvent is the KindSend event for a segment about to leave.
func sendEvent(c event.ConnID, cause event.SendCause, f *outFields, payloadLen, attempt int) event.Event {
	return event.Event{Kind: event.KindSend, Conn: c, Send: cause, Attempt: attempt, Segment: f.info(payloadLen),
		Key: event.SegKey{Seq: uint32(f.seq), Ack: uint32(f.ack), Flags: event.Flags(f.flags), Len: payloadLen}}
}

// isn chooses an initial sequence number as RFC 6528 3 recommends:
// ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M
// is a timer ticking every 4 microseconds and F a keyed hash.
func (p *Protocol) isn(id stack.TransportEndpointID) seqnum.Value {
	f := p.keyedHash("", id)
	m := uint32(p.clock.NowMonotonic().Sub(tcpip.MonotonicTime{}) / (4 * time.Microsecond))
	return seqnum.Value(m + f)
}

// keyedHash is the keyed hash of a 4-tuple under the stack's secret,
// for the purpose label names: SHA-256 of the secret, the label, both
// addresses and both ports, its first four bytes. It is summed in one
// call over an array on the stack: sha256.New and its Write calls were
// two allocations and a fifth of the hash's time, per connection end.
func (p *Protocol) keyedHash(label string, id stack.TransportEndpointID) uint32 {
	var in [len(p.secret) + len(tsOffsetLabel) + 2*16 + 4]byte
	b := append(in[:0], p.secret[:]...)
	b = append(b, label...)
	b = append(b, id.LocalAddress.AsSlice()...)
	b = append(b, id.RemoteAddress.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, id.LocalPort)
	b = binary.BigEndian.AppendUint16(b, id.RemotePort)
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint32(sum[:])
}

// tsOffsetLabel sets the hash of the timestamp offset apart from the
// ISN's.
const tsOffsetLabel = "tapstack TS offset"

// tsOffset is the random offset of a connection's timestamp clock
// (RFC 7323 5.4 and 7.1: a per-connection offset keeps TSvals from leaking
// the host's uptime). Like the ISN and Linux's secure_tcp_ts_off, it is a
// keyed hash under the stack's secret; unlike Linux it covers the ports
// too, the whole 4-tuple. A new connection on the same 4-tuple gets the
// same offset, so its TSvals continue the old connection's and pass the
// peer's PAWS check in TIME-WAIT.
func (p *Protocol) tsOffset(id stack.TransportEndpointID) uint32 {
	return p.keyedHash(tsOffsetLabel, id)
}

// tsClock is the stack's timestamp clock: milliseconds of the monotonic
// clock (RFC 7323 5.4 asks for a tick between 1 ms and 1 s; Linux ticks
// every ms). A connection's TSval is tsClock plus its tsOffset.
func (p *Protocol) tsClock() uint32 { return tsClockAt(p.clock.NowMonotonic()) }

// tsClockAt is the timestamp clock at t.
func tsClockAt(t tcpip.MonotonicTime) uint32 { return uint32(t.Milliseconds()) }

// outFields are the header fields of a segment we send.
type outFields struct {
	srcPort, dstPort uint16
	seq, ack         seqnum.Value
	flags            header.TCPFlags
	window           uint16
	opts             []byte
}

func (f *outFields) info(payloadLen int) event.SegmentInfo {
	i := event.SegmentInfo{SrcPort: f.srcPort, DstPort: f.dstPort, Seq: uint32(f.seq), Ack: uint32(f.ack),
		Flags: event.Flags(f.flags), Window: f.window, WS: -1, Len: payloadLen}
	if f.flags&header.TCPFlagSyn != 0 && len(f.opts) > 0 {
		o := header.ParseSynOptions(f.opts, f.flags&header.TCPFlagAck != 0)
		i.MSS, i.WS, i.SACKPermitted = o.MSS, o.WS, o.SACKPermitted
	}
	i.TSVal, i.TSEcr, i.TS = parseTimestamp(f.opts)
	return i
}

// buildPacket makes a complete TCP packet for r: header, options, payload
// and checksum. It takes ownership of payload.
func buildPacket(r *stack.Route, f *outFields, payload buffer.Buffer) *stack.PacketBuffer {
	hdrLen := header.TCPMinimumSize + len(f.opts)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: hdrLen + int(r.MaxHeaderLength()),
		Payload:            payload,
	})
	h := header.TCP(pkt.TransportHeader().Push(hdrLen))
	pkt.TransportProtocolNumber = protocolNumber
	h.Encode(&header.TCPFields{
		SrcPort:    f.srcPort,
		DstPort:    f.dstPort,
		SeqNum:     uint32(f.seq),
		AckNum:     uint32(f.ack),
		DataOffset: uint8(hdrLen),
		Flags:      f.flags,
		WindowSize: f.window,
	})
	copy(h[header.TCPMinimumSize:], f.opts)
	xsum := r.PseudoHeaderChecksum(protocolNumber, uint16(pkt.Size()))
	xsum = checksum.Combine(xsum, pkt.Data().Checksum())
	h.SetChecksum(^h.CalculateChecksum(xsum))
	return pkt
}

// buildGSOPacket makes a GSO super-segment for r: one TCP header, options
// and payload of several segments of mss bytes, which the link cuts into
// wire segments (stack.GSOEndpoint). On a link that offers host GSO (a
// TAP with offloads) the checksum is left partial, the pseudo-header's
// sum alone, for the kernel to finish segment by segment, as gVisor's TCP
// and Linux (CHECKSUM_PARTIAL) leave it; elsewhere it is complete over
// the whole packet, so that a receiver taking the packet whole (GRO)
// checks it. It takes ownership of payload.
func buildGSOPacket(r *stack.Route, f *outFields, payload buffer.Buffer, mss int) *stack.PacketBuffer {
	hdrLen := header.TCPMinimumSize + len(f.opts)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: hdrLen + int(r.MaxHeaderLength()),
		Payload:            payload,
	})
	h := header.TCP(pkt.TransportHeader().Push(hdrLen))
	pkt.TransportProtocolNumber = protocolNumber
	h.Encode(&header.TCPFields{
		SrcPort:    f.srcPort,
		DstPort:    f.dstPort,
		SeqNum:     uint32(f.seq),
		AckNum:     uint32(f.ack),
		DataOffset: uint8(hdrLen),
		Flags:      f.flags,
		WindowSize: f.window,
	})
	copy(h[header.TCPMinimumSize:], f.opts)
	gso := stack.GSO{Type: stack.GSOTCPv4, CsumOffset: header.TCPChecksumOffset, MSS: uint16(mss),
		L3HdrLen: header.IPv4MinimumSize, MaxSize: r.GSOMaxSize()}
	if r.NetProto() == header.IPv6ProtocolNumber {
		gso.Type, gso.L3HdrLen = stack.GSOTCPv6, header.IPv6MinimumSize
	}
	xsum := r.PseudoHeaderChecksum(protocolNumber, uint16(pkt.Size()))
	if r.HasHostGSOCapability() {
		gso.NeedsCsum = true
		h.SetChecksum(xsum)
	} else {
		xsum = checksum.Combine(xsum, pkt.Data().Checksum())
		h.SetChecksum(^h.CalculateChecksum(xsum))
	}
	pkt.GSOOptions = gso
	return pkt
}

// writePacket hands pkt to the network layer. It must be called without
// any connection lock held: a local route or an in-memory link may deliver
// the packet, and the peer's reply, on this goroutine. It releases pkt and
// reports false; or, when the link refused the packet, its queue full
// (refused.go), it reports true and leaves pkt to the caller, who learns
// what it carried and releases it with dropRefused.
//
// It and the functions above it on a connection's goroutine (flushOut,
// conn.Conn's Read, Write and WriteTo) keep small frames, their rare paths
// in functions of their own. They run on the goroutine of every Read,
// Write and Close, above gVisor's deepest call on that path
// (IPTables.CheckOutput, whose frame is 1.6 KB), and a goroutine that
// outgrows its stack there copies it, frame by frame, into one twice the
// size. A server's goroutine per connection that reads to the peer's FIN
// and closes, as tapstack bench's connections/s runs them, started at
// 2 KiB and grew twice, to 8 KiB; it now grows once, to 4 KiB. In that
// figure's profile, runtime.newstack went from 7.7% of tapstack's CPU to
// 3.2% (gVisor's TCP, whose handlers grow too: 10.3%). A goroutine that
// writes a 100-byte response fits in 4 KiB too, with less than 64 bytes
// to spare (stack/interop's BenchmarkGoroutineStack: reading to the FIN
// and closing left -320 bytes before, 192 now; the write -768, 0).
func (p *Protocol) writePacket(r *stack.Route, pkt *stack.PacketBuffer, ecn uint8) bool {
	// DF on every IPv4 segment, for path MTU discovery (RFC 1191), as
	// Linux (ip_no_pmtu_disc=0) and gVisor's TCP send them; it also
	// spares the network layer a random IP ID per segment. A route that
	// locks its MTU (`mtu lock`) turns discovery off, and its segments
	// leave without DF, as Linux's ip_dont_fragment has it: a router
	// with a smaller next hop fragments them. So does a path MTU ICMP
	// locked at Linux's min_pmtu (pmtu.go), as Linux's fnhe_mtu_locked
	// does. Without route metrics or such a lock, as usual, only two
	// loads decide. ecn is the IP header's ECN field (ecn.go), the low
	// bits of the IPv4 TOS and of the IPv6 traffic class.
	df := (p.routeMetrics.Load() == nil && !p.pmtu.anyLocked.Load()) || !p.locksMTU(r)
	err := r.WritePacket(stack.NetworkHeaderParams{Protocol: protocolNumber, TTL: r.DefaultTTL(), TOS: ecn, DF: df}, pkt)
	if _, refused := err.(*tcpip.ErrNoBufferSpace); refused {
		return true
	}
	pkt.DecRef()
	return false
}

// writeOnce writes pkt, which nothing will send again (a SYN-ACK with a
// cookie, a RST, an ACK from TIME-WAIT): if the link refuses it, the
// refusal is counted and the packet let go.
func (p *Protocol) writeOnce(r *stack.Route, pkt *stack.PacketBuffer) {
	if p.writePacket(r, pkt, ecnNotECT) {
		p.dropRefused(pkt)
	}
}

// locksMTU reports whether route r's metrics lock its MTU, or a path MTU
// ICMP reported for its destination does (pmtu.go), off writePacket's
// frame.
//
//go:noinline
func (p *Protocol) locksMTU(r *stack.Route) bool {
	if p.metricsFor(r.NICID(), r.RemoteAddress()).LockMTU {
		return true
	}
	return p.pmtu.anyLocked.Load() && p.pmtu.locks(r.RemoteAddress(), p.clock.NowMonotonic())
}

// dropRefused returns what pkt, which the link refused, carried, counts
// its wire segments in Stats.LinkRefused and releases it.
//
//go:noinline
func (p *Protocol) dropRefused(pkt *stack.PacketBuffer) refusal {
	ref := refusalOf(pkt)
	p.stats.LinkRefused.Add(uint64(ref.segments))
	pkt.DecRef()
	return ref
}

// register and unregister keep the engine's table of live connections,
// used by Connections and by Stack.Close. register refuses a connection
// with ENETDOWN once the engine is closed, and with EMFILE (counted in
// LimitStats.ConnectionLimit) when it holds MaxConnections.
func (p *Protocol) register(e *Endpoint) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return syscall.ENETDOWN
	case len(p.endpoints) >= p.opts.MaxConnections:
		p.limits.ConnectionLimit.Add(1)
		return syscall.EMFILE
	}
	p.endpoints[e] = struct{}{}
	return nil
}

// unregister takes e out of the table as it enters CLOSED or TIME-WAIT;
// it is no orphan any more. A connection whose TIME-WAIT record is still
// in the table and that moves to CLOSED on its own (an abort, its listener
// closing) takes the record with it. The caller holds e.mu.
func (p *Protocol) unregister(e *Endpoint) {
	// Shutdown learns that the last connection is done only after flush
	// has written what the move to CLOSED or TIME-WAIT queued (the ACK
	// of the peer's FIN): it closes the links next, and that ACK would
	// be lost, leaving the peer in LAST-ACK.
	p.mu.Lock()
	delete(p.endpoints, e)
	if !e.drainCheck {
		e.drainCheck = true
		p.unflushed++
	}
	p.mu.Unlock()
	if e.orphan {
		e.orphan = false
		p.orphans.Add(-1)
	}
	if e.state == event.Closed && e.tw != nil {
		p.dropTimeWait(e)
	}
}

// Connections returns a snapshot of every connection the engine keeps,
// including those not yet accepted and those in TIME-WAIT. A connection in
// TIME-WAIT is the Endpoint its user holds, or, if nobody does, a detached
// Endpoint that reports the compact record's state, TCB and age (and that
// Reset deletes).
func (p *Protocol) Connections() []*Endpoint {
	p.mu.Lock()
	out := make([]*Endpoint, 0, len(p.endpoints))
	for e := range p.endpoints {
		out = append(out, e)
	}
	p.mu.Unlock()
	return append(out, p.timeWaitEndpoints()...)
}

// listenerFor finds the open listener that a SYN for id would reach.
func (p *Protocol) listenerFor(netProto tcpip.NetworkProtocolNumber, id stack.TransportEndpointID) *Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.listeners {
		if l.id.LocalPort != id.LocalPort || (l.id.LocalAddress.Len() > 0 && l.id.LocalAddress != id.LocalAddress) {
			continue
		}
		for _, n := range l.netProtos {
			if n == netProto {
				return l
			}
		}
	}
	return nil
}

// Listeners returns a snapshot of the open listeners.
func (p *Protocol) Listeners() []*Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Listener, 0, len(p.listeners))
	for l := range p.listeners {
		out = append(out, l)
	}
	return out
}

// linkDown ends every connection through interface nic, whose link failed
// (stack.Stack calls it through tcpbind.Binding.LinkDown when a TAP device
// is deleted or goes down, or a pipe's other end closes): each fails at once with ENETDOWN, the errno
// Linux gives for a network that is down, with an event whose cause names
// the failure, so that blocked calls return instead of waiting for
// retransmissions that cannot arrive. Nothing is sent: the link is gone.
// Connections in TIME-WAIT on it are deleted. Listeners stay; they may
// serve other interfaces.
func (p *Protocol) linkDown(nic tcpip.NICID, failure error) {
	cause := event.Cause{Kind: event.CauseLink, Detail: fmt.Sprintf("NIC %d link down: %v", nic, failure)}
	p.mu.Lock()
	var conns []*Endpoint
	for e := range p.endpoints {
		if e.nic == nic {
			conns = append(conns, e)
		}
	}
	p.mu.Unlock()
	for _, e := range conns {
		e.mu.Lock()
		if e.state != event.Closed {
			e.fail(syscall.ENETDOWN, cause)
		}
		e.mu.Unlock()
		e.flush()
	}
	p.closeTimeWait(nic, cause)
}

// abortAll is the stack closing at once (tcpbind.Binding.Abort):
// listeners close, and every connection is aborted (Endpoint.abort).
func (p *Protocol) abortAll() {
	for _, l := range p.Listeners() {
		l.Close()
	}
	for _, e := range p.Connections() {
		e.abort()
	}
}
