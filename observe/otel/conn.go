package otel

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tapstack/tapstack/event"
)

// Span names.
const (
	SpanConnection  = "tcp.connection"   // root: the connection's life, first SYN to CLOSED
	SpanHandshake   = "tcp.handshake"    // SYN → ESTABLISHED (RFC 9293 3.5)
	SpanSynQueue    = "tcp.syn_queue"    // passive: in the listener's SYN queue (half-open)
	SpanAcceptQueue = "tcp.accept_queue" // passive: ESTABLISHED, waiting for Accept
	SpanTransfer    = "tcp.transfer"     // ESTABLISHED until the first FIN either way
	SpanTeardown    = "tcp.teardown"     // first FIN → CLOSED (RFC 9293 3.6)
	SpanTimeWait    = "tcp.time_wait"    // TIME-WAIT, 2*MSL
)

// Span event names.
const (
	EventStateChange   = "tcp.state_change"
	EventRetransmit    = "tcp.retransmit"
	EventRTO           = "tcp.rto"
	EventDrop          = "tcp.drop"
	EventWindowClosed  = "tcp.window_closed"
	EventWindowOpened  = "tcp.window_opened"
	EventQueueDecision = "tcp.queue"
	EventRecovery      = "tcp.recovery"
	EventPathMTU       = "tcp.path_mtu"
)

// Queue notes the tracer follows (stack/tcp/listen.go).
const (
	noteSynQueued      = "SYN queued"
	noteAcceptQueueAdd = "accept queue add"
	noteAccepted       = "accepted"
	noteAcceptRemove   = "accept queue remove"
)

// connTrace is one traced connection: its spans and running totals.
// mu is held while an event is applied.
type connTrace struct {
	t       *Tracer
	id      event.ConnID
	passive bool
	rootSC  trace.SpanContext

	mu              sync.Mutex
	ctx             context.Context // carries root
	root            trace.Span
	handshake, synq trace.Span
	acceptq         trace.Span
	// acceptedEarly holds an "accepted" (or removal) decision that came
	// before "accept queue add": the listener's events and the
	// connection's are delivered by different goroutines.
	acceptedEarly      *event.Event
	transfer, teardown trace.Span
	timeWait           trace.Span
	hsCtx, tdCtx       context.Context // carry handshake and teardown, parents of their children
	state              event.State
	events             int // span events recorded
	eventsDropped      int

	bytesSent, bytesRetransmitted uint64
	bytesAcked, bytesReceived     uint64
	// rcvNxt is how far the peer's bytes arrived in order, as the ACK
	// numbers we sent and the text taken in order show it.
	rcvNxt    uint32
	rcvNxtSet bool
	// finEnd is the sequence number after the peer's FIN, when the
	// segment that carried it is known (finEndSet).
	finEnd                  uint32
	finEndSet               bool
	segmentsRetransmitted   int
	rtos, drops             int
	finReceived, finAcked   bool
	peerWndZero, ourWndZero bool
	srtt                    time.Duration
	cwnd                    uint32
}

// start opens the root span (and the handshake's) at ev. It reports
// false when the provider's sampler does not record it.
func (c *connTrace) start(ev event.Event) bool {
	kind, roleName := trace.SpanKindClient, "active"
	if c.passive {
		kind, roleName = trace.SpanKindServer, "passive"
	}
	attrs := make([]attribute.KeyValue, 0, 12+len(c.t.attrs))
	attrs = append(attrs, semconv.NetworkTransportTCP, networkType(c.id),
		semconv.NetworkLocalAddress(c.id.Local.Addr().String()), semconv.NetworkLocalPort(int(c.id.Local.Port())),
		semconv.NetworkPeerAddress(c.id.Remote.Addr().String()), semconv.NetworkPeerPort(int(c.id.Remote.Port())),
		attribute.String("tcp.role", roleName))
	server, client := c.id.Remote, c.id.Local
	if c.passive {
		server, client = c.id.Local, c.id.Remote
	}
	attrs = append(attrs, semconv.ServerAddress(server.Addr().String()), semconv.ServerPort(int(server.Port())),
		semconv.ClientAddress(client.Addr().String()), semconv.ClientPort(int(client.Port())))
	attrs = append(attrs, c.t.attrs...)
	// A new root: the connection is its own trace whatever context the
	// engine's goroutine runs in.
	ctx, root := c.t.tracer.Start(context.Background(), SpanConnection, trace.WithNewRoot(), trace.WithSpanKind(kind),
		trace.WithTimestamp(ev.Time), trace.WithAttributes(attrs...))
	if !root.IsRecording() {
		root.End()
		return false
	}
	c.ctx, c.root, c.rootSC = ctx, root, root.SpanContext()
	c.hsCtx, c.handshake = c.t.tracer.Start(ctx, SpanHandshake, trace.WithTimestamp(ev.Time))
	if ev.Kind == event.KindQueue { // SYN queued
		_, c.synq = c.t.tracer.Start(c.hsCtx, SpanSynQueue, trace.WithTimestamp(ev.Time),
			trace.WithAttributes(queueAttrs(ev.Queue)...))
	}
	return true
}

func networkType(id event.ConnID) attribute.KeyValue {
	if id.Local.Addr().Is4() {
		return semconv.NetworkTypeIPv4
	}
	return semconv.NetworkTypeIPv6
}

func queueAttrs(q event.QueueInfo) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Int("tcp.syn_queue.length", q.SynQueueLen), attribute.Int("tcp.syn_queue.limit", q.SynQueueLimit),
		attribute.Int("tcp.accept_queue.length", q.AcceptQueueLen), attribute.Int("tcp.accept_queue.limit", q.AcceptQueueLimit),
	}
}

// phase is the span of the phase the connection is in, where span
// events about segments go.
func (c *connTrace) phase() trace.Span {
	switch {
	case c.timeWait != nil:
		return c.timeWait
	case c.teardown != nil:
		return c.teardown
	case c.transfer != nil:
		return c.transfer
	case c.handshake != nil:
		return c.handshake
	}
	return c.root
}

// addEvent records a span event unless the connection's budget is spent.
func (c *connTrace) addEvent(s trace.Span, name string, t time.Time, attrs ...attribute.KeyValue) {
	if c.events >= c.t.maxEvents {
		c.eventsDropped++
		c.t.eventsDropped.Add(1)
		return
	}
	c.events++
	s.AddEvent(name, trace.WithTimestamp(t), trace.WithAttributes(attrs...))
}

// observe applies one event; it reports true when the connection ended.
func (c *connTrace) observe(ev event.Event) (done bool) {
	if c.root == nil {
		return true // ended by Tracer.Close while this event was on its way
	}
	switch ev.Kind {
	case event.KindState:
		return c.stateChange(ev)
	case event.KindQueue:
		c.queue(ev)
	case event.KindSend:
		c.send(ev)
	case event.KindAck:
		c.srtt, c.cwnd = ev.SRTT, ev.Cwnd
		c.bytesAcked += uint64(ev.Acked)
		c.peerWindow(ev)
	case event.KindReceive:
		if strings.HasPrefix(ev.Note, "in order") {
			// Taken at RCV.NXT, though our ACK for it may wait (a
			// delayed ACK) for longer than the connection lasts.
			c.advanceRcv(ev.Segment.Seq + uint32(ev.Segment.Len))
		}
		c.peerWindow(ev)
	case event.KindDrop:
		c.drops++
		c.addEvent(c.phase(), EventDrop, ev.Time, attribute.String("tcp.drop.reason", ev.Drop.String()),
			attribute.String("tcp.segment", ev.Segment.String()))
	case event.KindRetransmitTimeout:
		c.rtos++
		c.cwnd = ev.Cwnd
		c.addEvent(c.phase(), EventRTO, ev.Time, attribute.Int64("tcp.rto_us", ev.RTO.Microseconds()),
			attribute.Int64("tcp.cwnd", int64(ev.Cwnd)), attribute.Int64("tcp.ssthresh", int64(ev.Ssthresh)))
	case event.KindRecovery:
		c.cwnd = ev.Cwnd
		c.addEvent(c.phase(), EventRecovery, ev.Time, attribute.String("tcp.recovery", ev.Note),
			attribute.Int64("tcp.cwnd", int64(ev.Cwnd)), attribute.Int64("tcp.ssthresh", int64(ev.Ssthresh)))
	case event.KindPathMTU:
		c.addEvent(c.phase(), EventPathMTU, ev.Time, attribute.String("tcp.path_mtu", ev.Note))
	}
	return false
}

// send accounts an outbound segment: bytes, retransmissions, the ACK
// number (how far the peer's bytes were received) and our window.
func (c *connTrace) send(ev event.Event) {
	seg := ev.Segment
	c.bytesSent += uint64(seg.Len)
	if seg.Flags&event.FlagAck != 0 && seg.Flags&event.FlagRst == 0 {
		if !c.rcvNxtSet {
			// The first ACK we send is of the peer's SYN: IRS+1.
			c.rcvNxt, c.rcvNxtSet = seg.Ack, true
		} else {
			c.advanceRcv(seg.Ack)
		}
		switch zero := seg.Window == 0 && seg.Flags&event.FlagSyn == 0; {
		case zero && !c.ourWndZero:
			c.ourWndZero = true
			c.addEvent(c.phase(), EventWindowClosed, ev.Time, attribute.String("tcp.window.side", "local"))
		case !zero && c.ourWndZero:
			c.ourWndZero = false
			c.addEvent(c.phase(), EventWindowOpened, ev.Time, attribute.String("tcp.window.side", "local"))
		}
	}
	// A tail loss probe is new data (Attempt 0) when the window has
	// room for it, a copy of the last segment otherwise: only the copy
	// is a retransmission, as the engine counts it.
	switch tlpCopy := ev.Send == event.SendTLP && ev.Attempt > 0; {
	case tlpCopy, ev.Send == event.SendRetransmit, ev.Send == event.SendFastRetransmit,
		ev.Send == event.SendSynRetransmit, ev.Send == event.SendSynAckRetransmit:
		c.segmentsRetransmitted++
		c.bytesRetransmitted += uint64(seg.Len)
		c.addEvent(c.phase(), EventRetransmit, ev.Time, attribute.String("tcp.retransmit.cause", ev.Send.String()),
			attribute.Int("tcp.retransmit.attempt", ev.Attempt), attribute.Int64("tcp.seq", int64(seg.Seq)),
			attribute.Int("tcp.segment.length", seg.Len))
	}
}

// advanceRcv counts the peer's bytes up to v, arrived in order. RCV.NXT
// only moves forward; comparing modulo 2^32 (RFC 9293 3.4) counts a
// transfer past 4 GiB right.
func (c *connTrace) advanceRcv(v uint32) {
	if d := int32(v - c.rcvNxt); c.rcvNxtSet && d > 0 {
		c.bytesReceived += uint64(d)
		c.rcvNxt = v
	}
}

// peerWindow follows the window the peer advertises on inbound
// segments: a zero window stops our sending (RFC 9293 3.8.6.1) until it
// opens again.
func (c *connTrace) peerWindow(ev event.Event) {
	seg := ev.Segment
	if seg.Flags&event.FlagAck == 0 || seg.Flags&(event.FlagSyn|event.FlagRst) != 0 {
		return
	}
	switch zero := seg.Window == 0; {
	case zero && !c.peerWndZero:
		c.peerWndZero = true
		c.addEvent(c.phase(), EventWindowClosed, ev.Time, attribute.String("tcp.window.side", "peer"))
	case !zero && c.peerWndZero:
		c.peerWndZero = false
		c.addEvent(c.phase(), EventWindowOpened, ev.Time, attribute.String("tcp.window.side", "peer"))
	}
}

// queue follows a passive connection through the listener's queues
// (stack/tcp/listen.go): the SYN queue wait ends when the handshake
// completes, the accept queue wait when the application accepts.
func (c *connTrace) queue(ev event.Event) {
	switch {
	case ev.Note == noteSynQueued:
		return // the opening event, already the start of tcp.syn_queue
	case ev.Note == noteAcceptQueueAdd:
		c.endSpan(&c.synq, ev.Time)
		if c.acceptq == nil {
			_, c.acceptq = c.t.tracer.Start(c.ctx, SpanAcceptQueue, trace.WithTimestamp(ev.Time),
				trace.WithAttributes(queueAttrs(ev.Queue)...))
		}
		if early := c.acceptedEarly; early != nil {
			c.acceptedEarly = nil
			c.acceptq.SetAttributes(attribute.String("tcp.accept_queue.outcome", early.Note))
			c.endSpan(&c.acceptq, early.Time)
		}
		return
	case ev.Note == noteAccepted || ev.Note == noteAcceptRemove:
		if c.acceptq == nil {
			e := ev
			c.acceptedEarly = &e
			return
		}
		c.acceptq.SetAttributes(attribute.String("tcp.accept_queue.outcome", ev.Note))
		c.endSpan(&c.acceptq, ev.Time)
		return
	}
	// Any other decision (an accept queue overflow dropping the final
	// ACK, a half-open entry expiring) is an event on the phase.
	attrs := append([]attribute.KeyValue{attribute.String("tcp.queue.decision", ev.Note)}, queueAttrs(ev.Queue)...)
	c.addEvent(c.phase(), EventQueueDecision, ev.Time, attrs...)
}

// stateChange moves the phase spans along the state diagram of RFC 9293
// 3.3.2 and, on CLOSED, ends the trace.
func (c *connTrace) stateChange(ev event.Event) (done bool) {
	from, to := ev.From, ev.To
	c.state = to
	if finState(from, to) {
		// Whatever segment caused it: a FIN held out of order is taken
		// when the segment that fills the hole arrives.
		c.finReceived = true
		if k := ev.Cause.Key; ev.Cause.Kind == event.CauseSegment && k.Flags&event.FlagFin != 0 {
			c.finEnd, c.finEndSet = k.Seq+uint32(k.Len)+1, true
		}
	}
	if ev.Cause.Kind == event.CauseSegment && ev.Cause.Key.Flags&event.FlagRst == 0 && finAckedState(from, to) {
		c.finAcked = true
	}
	c.addEvent(c.root, EventStateChange, ev.Time, attribute.String("tcp.state.from", from.String()),
		attribute.String("tcp.state.to", to.String()), attribute.String("tcp.cause", ev.Cause.String()))

	if to == event.Closed {
		c.finish(ev)
		return true
	}
	if to == event.Established && (from == event.SynSent || from == event.SynReceived || from == event.Closed) {
		if from == event.Closed && c.handshake != nil { // made from a SYN cookie: no half-open state to time
			c.handshake.SetAttributes(attribute.Bool("tcp.syn_cookie", true))
		}
		c.endSpan(&c.synq, ev.Time)
		c.endSpan(&c.handshake, ev.Time)
		if c.transfer == nil && c.teardown == nil {
			_, c.transfer = c.t.tracer.Start(c.ctx, SpanTransfer, trace.WithTimestamp(ev.Time))
		}
		return false
	}
	if c.teardown == nil && isTeardown(to) {
		// The first FIN, sent (FIN-WAIT-1, LAST-ACK) or received
		// (CLOSE-WAIT, CLOSING): teardown begins (RFC 9293 3.6).
		c.endSpan(&c.synq, ev.Time)
		c.endSpan(&c.handshake, ev.Time)
		c.endSpan(&c.transfer, ev.Time)
		c.tdCtx, c.teardown = c.t.tracer.Start(c.ctx, SpanTeardown, trace.WithTimestamp(ev.Time),
			trace.WithAttributes(attribute.String("tcp.teardown.first_fin", firstFin(to))))
	}
	if to == event.TimeWait && c.timeWait == nil {
		_, c.timeWait = c.t.tracer.Start(c.tdCtx, SpanTimeWait, trace.WithTimestamp(ev.Time))
	}
	return false
}

func isTeardown(s event.State) bool {
	switch s {
	case event.FinWait1, event.FinWait2, event.CloseWait, event.Closing, event.LastAck, event.TimeWait:
		return true
	}
	return false
}

// firstFin says who sent the first FIN, from the state it led to.
func firstFin(to event.State) string {
	if to == event.CloseWait || to == event.Closing || to == event.TimeWait {
		return "peer"
	}
	return "local"
}

// finState reports whether from → to is taken on the peer's FIN.
func finState(from, to event.State) bool {
	switch {
	case to == event.CloseWait, to == event.Closing,
		to == event.TimeWait && (from == event.FinWait1 || from == event.FinWait2):
		return true
	}
	return false
}

// finAckedState reports whether from → to is taken when the peer
// acknowledges our FIN.
func finAckedState(from, to event.State) bool {
	switch {
	case from == event.FinWait1 && (to == event.FinWait2 || to == event.TimeWait),
		from == event.Closing && to == event.TimeWait,
		from == event.LastAck && to == event.Closed:
		return true
	}
	return false
}

// finish ends every open span at the transition to CLOSED and writes the
// connection's totals and outcome on the root.
func (c *connTrace) finish(ev event.Event) {
	at := ev.Time
	typ, desc := closeError(ev)
	if typ != "" {
		// The phase the connection failed in carries the error too, so
		// Jaeger marks it where it happened.
		errorStatus(c.phase(), typ, desc)
		errorStatus(c.root, typ, desc)
	}
	c.endSpan(&c.synq, at)
	c.endSpan(&c.acceptq, at)
	c.endSpan(&c.handshake, at)
	c.endSpan(&c.transfer, at)
	c.endSpan(&c.timeWait, at)
	c.endSpan(&c.teardown, at)
	c.root.SetAttributes(c.totals(ev.From, ev.Cause.String())...)
	c.root.End(trace.WithTimestamp(at))
	c.root = nil
}

// abandon ends the trace of a connection still open (Tracer.Close).
func (c *connTrace) abandon(at time.Time) {
	if c.root == nil {
		return
	}
	c.endSpan(&c.synq, at)
	c.endSpan(&c.acceptq, at)
	c.endSpan(&c.handshake, at)
	c.endSpan(&c.transfer, at)
	c.endSpan(&c.timeWait, at)
	c.endSpan(&c.teardown, at)
	c.root.SetAttributes(c.totals(c.state, "tracer closed")...)
	c.root.End(trace.WithTimestamp(at))
	c.root = nil
}

func (c *connTrace) totals(final event.State, cause string) []attribute.KeyValue {
	sent := c.bytesAcked
	if c.finAcked && sent > 0 {
		sent-- // the FIN's sequence number is no byte
	}
	recv := c.bytesReceived
	// The FIN's sequence number is no byte: it is taken off once our ACK
	// of it counted it (a FIN held out of order, whose segment is not
	// known, is acknowledged at once when the hole fills).
	if c.finReceived && recv > 0 && (!c.finEndSet || int32(c.rcvNxt-c.finEnd) >= 0) {
		recv--
	}
	return []attribute.KeyValue{
		semconv.NetworkConnectionStateKey.String(connectionState(final)),
		attribute.String("tcp.state.final", final.String()),
		attribute.String("tcp.close.cause", cause),
		attribute.Int64("tcp.bytes_sent", int64(c.bytesSent)),
		attribute.Int64("tcp.bytes_acked", int64(sent)),
		attribute.Int64("tcp.bytes_received", int64(recv)),
		attribute.Int64("tcp.bytes_retransmitted", int64(c.bytesRetransmitted)),
		attribute.Int("tcp.retransmits", c.segmentsRetransmitted),
		attribute.Int("tcp.rto_count", c.rtos),
		attribute.Int("tcp.drops", c.drops),
		attribute.Int64("tcp.srtt_us", c.srtt.Microseconds()),
		attribute.Int64("tcp.cwnd", int64(c.cwnd)),
		attribute.Int("tcp.events_dropped", c.eventsDropped),
	}
}

// connectionState is the state as the network.connection.state
// convention spells it ("time_wait").
func connectionState(s event.State) string {
	return strings.ReplaceAll(strings.ToLower(s.String()), "-", "_")
}

// errnoName is the error.type of an error a connection's user may get
// when it ends, or "".
func errnoName(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	switch errno {
	case syscall.ECONNRESET:
		return "ECONNRESET"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.ETIMEDOUT:
		return "ETIMEDOUT"
	case syscall.ECONNABORTED:
		return "ECONNABORTED"
	case syscall.EHOSTUNREACH:
		return "EHOSTUNREACH"
	case syscall.ENETUNREACH:
		return "ENETUNREACH"
	case syscall.ENETDOWN:
		return "ENETDOWN"
	case syscall.EHOSTDOWN:
		return "EHOSTDOWN"
	case syscall.EPROTO:
		return "EPROTO"
	}
	return ""
}

// closeError classifies a transition to CLOSED that was not an orderly
// close: error.type names the failure as the errno an application sees,
// the engine's own (ev.Err) when it says: a timeout after an ICMP error
// is that error (Linux's tcp_write_err), an ICMP error in SYN-SENT
// ECONNREFUSED or ENETUNREACH as well as EHOSTUNREACH.
func closeError(ev event.Event) (typ, desc string) {
	cause := ev.Cause
	if typ := errnoName(ev.Err); typ != "" {
		return typ, ev.Err.Error() + " (" + cause.String() + ")"
	}
	switch cause.Kind {
	case event.CauseSegment:
		if cause.Key.Flags&event.FlagRst != 0 {
			if ev.From == event.SynSent {
				return "ECONNREFUSED", "connection refused: " + cause.Detail
			}
			return "ECONNRESET", "connection reset by peer: " + cause.Detail
		}
		if strings.HasPrefix(cause.Detail, "ICMP") {
			return "EHOSTUNREACH", cause.Detail
		}
	case event.CauseTimer:
		if cause.Detail != "time-wait" {
			return "ETIMEDOUT", "timed out: " + cause.Detail
		}
	case event.CauseUser:
		switch {
		case cause.Detail == "abort", strings.HasPrefix(cause.Detail, "close with unread data"), strings.Contains(cause.Detail, "orphans"):
			return "ECONNABORTED", "reset by us: " + cause.Detail
		}
	case event.CauseLink:
		return "ENETDOWN", cause.Detail
	}
	return "", ""
}

// endSpan ends *s at t if it is open.
func (c *connTrace) endSpan(s *trace.Span, t time.Time) {
	if *s != nil {
		(*s).End(trace.WithTimestamp(t))
		*s = nil
	}
}
