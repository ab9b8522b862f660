package otel

import (
	"context"
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tapstack/tapstack/event"
)

// ScopeName is the instrumentation scope of the spans a Tracer makes.
const ScopeName = "github.com/tapstack/tapstack/observe/otel"

// Defaults of Options.
const (
	DefaultMaxConns = 4096
	// DefaultMaxEventsPerConn is the SDK's default limit of events on one
	// span (sdktrace.DefaultEventCountLimit): a connection's events,
	// however its spans share them, then all reach the exporter or are
	// counted in tcp.events_dropped, none dropped by the SDK unseen.
	DefaultMaxEventsPerConn = 128
)

// Options configure a Tracer. The zero value traces every connection of
// the stack with the global TracerProvider's defaults left to the caller:
// TracerProvider must be set.
type Options struct {
	// TracerProvider makes the spans. Its sampler still applies: a
	// connection whose root span does not record keeps no state here.
	TracerProvider trace.TracerProvider

	// Sample, if set, decides per connection, on its first event, whether
	// it is traced. It must be cheap and deterministic for a 4-tuple:
	// see RatioSampler. A connection it refuses costs a map lookup per
	// event and no memory.
	Sample func(event.ConnID) bool

	// MaxConns bounds the connections traced at once (default
	// DefaultMaxConns). A connection that opens while the bound is
	// reached is not traced and is counted in Stats.OverLimit: a SYN
	// flood cannot make the tracer hold more than MaxConns connections'
	// spans open (at most four spans each).
	MaxConns int

	// MaxEventsPerConn bounds the span events one connection records
	// (default DefaultMaxEventsPerConn); the rest are counted in the root
	// span's tcp.events_dropped and in Stats.EventsDropped. Above the
	// provider's own limit of events per span (the SDK's SpanLimits), the
	// provider drops the oldest events of a span, which only the span's
	// dropped-events count records.
	MaxEventsPerConn int

	// Attributes are added to every root span, for example
	// attribute.String("tapstack.stack", "server").
	Attributes []attribute.KeyValue
}

// Stats counts what a Tracer did.
type Stats struct {
	Traced        uint64 // connections that got a trace
	Unsampled     uint64 // connections Sample or the provider's sampler refused
	OverLimit     uint64 // connections not traced because MaxConns were open
	EventsDropped uint64 // span events over MaxEventsPerConn
	Open          int    // connections traced now
	MaxOpen       int    // the most connections traced at once
}

// Tracer turns a stack's engine events into one trace per connection.
// Install Observe as (or fan it into) tcp.Options.Observer. It is safe
// for concurrent use; events of one connection must arrive in order, as
// the engine delivers them.
type Tracer struct {
	tracer    trace.Tracer
	sample    func(event.ConnID) bool
	maxConns  int
	maxEvents int
	attrs     []attribute.KeyValue

	unsampled, overLimit, traced, eventsDropped atomic.Uint64

	mu      sync.Mutex
	conns   map[event.ConnID]*connTrace
	maxOpen int
	// last is the latest event time seen: Close ends the spans still
	// open then, on the stack's clock, as every other span time is.
	last time.Time
}

// New returns a Tracer. It panics if opts.TracerProvider is nil, a
// programming error.
func New(opts Options) *Tracer {
	if opts.TracerProvider == nil {
		panic("otel.New: Options.TracerProvider is nil")
	}
	t := &Tracer{
		tracer:    opts.TracerProvider.Tracer(ScopeName),
		sample:    opts.Sample,
		maxConns:  opts.MaxConns,
		maxEvents: opts.MaxEventsPerConn,
		attrs:     append([]attribute.KeyValue(nil), opts.Attributes...),
		conns:     make(map[event.ConnID]*connTrace),
	}
	if t.maxConns <= 0 {
		t.maxConns = DefaultMaxConns
	}
	if t.maxEvents <= 0 {
		t.maxEvents = DefaultMaxEventsPerConn
	}
	return t
}

// RatioSampler returns a Sample function that traces about ratio of all
// connections (0 none, 1 all), decided by a hash of the 4-tuple with a
// seed of its own, so every event of a connection gets the same answer
// without the tracer remembering refused connections.
func RatioSampler(ratio float64) func(event.ConnID) bool {
	switch {
	case ratio >= 1:
		return func(event.ConnID) bool { return true }
	case ratio <= 0:
		return func(event.ConnID) bool { return false }
	}
	seed := maphash.MakeSeed()
	bound := uint64(ratio * (1 << 63))
	return func(id event.ConnID) bool {
		return maphash.Comparable(seed, id)>>1 < bound
	}
}

// Observe is the event.Observer.
func (t *Tracer) Observe(ev event.Event) {
	if !ev.Conn.Remote.IsValid() {
		return // a listener's own event: no connection to trace
	}
	t.mu.Lock()
	if ev.Time.After(t.last) {
		t.last = ev.Time
	}
	c := t.conns[ev.Conn]
	if c == nil {
		role, ok := opening(ev)
		if !ok {
			t.mu.Unlock()
			return
		}
		if t.sample != nil && !t.sample(ev.Conn) {
			t.mu.Unlock()
			t.unsampled.Add(1)
			return
		}
		if len(t.conns) >= t.maxConns {
			t.mu.Unlock()
			t.overLimit.Add(1)
			return
		}
		c = &connTrace{t: t, id: ev.Conn, passive: role == rolePassive}
		if !c.start(ev) {
			t.mu.Unlock()
			t.unsampled.Add(1)
			return
		}
		t.conns[ev.Conn] = c
		t.maxOpen = max(t.maxOpen, len(t.conns))
		t.traced.Add(1)
	}
	t.mu.Unlock()

	c.mu.Lock()
	done := c.observe(ev)
	c.mu.Unlock()
	if done {
		t.mu.Lock()
		if t.conns[ev.Conn] == c {
			delete(t.conns, ev.Conn)
		}
		t.mu.Unlock()
	}
}

type role uint8

const (
	roleActive role = iota + 1
	rolePassive
)

// opening says whether ev is the first event of a connection's life and
// which side it is: the active OPEN (CLOSED → SYN-SENT, RFC 9293 3.5), a
// SYN entering a listener's SYN queue, or a connection made whole from a
// SYN cookie (RFC 4987 3.6), which skips SYN-RECEIVED.
func opening(ev event.Event) (role, bool) {
	switch {
	case ev.Kind == event.KindState && ev.From == event.Closed && ev.To == event.SynSent:
		return roleActive, true
	case ev.Kind == event.KindQueue && ev.Note == noteSynQueued:
		return rolePassive, true
	case ev.Kind == event.KindState && ev.From == event.Closed && ev.To == event.Established:
		return rolePassive, true
	}
	return 0, false
}

// Stats returns the tracer's counters.
func (t *Tracer) Stats() Stats {
	t.mu.Lock()
	open, maxOpen := len(t.conns), t.maxOpen
	t.mu.Unlock()
	return Stats{
		Traced:        t.traced.Load(),
		Unsampled:     t.unsampled.Load(),
		OverLimit:     t.overLimit.Load(),
		EventsDropped: t.eventsDropped.Load(),
		Open:          open,
		MaxOpen:       maxOpen,
	}
}

// Close ends the spans of every connection still traced, marking them
// with tcp.close.cause "tracer closed", so that a program that exits
// with connections open still exports what it saw. They end at the
// latest event the tracer saw, on the stack's clock: a trace on a fake
// clock (tapstack script) stays on it, and the same every run. Events
// that arrive afterwards start new traces as usual.
func (t *Tracer) Close() {
	t.mu.Lock()
	conns := t.conns
	t.conns = make(map[event.ConnID]*connTrace)
	now := t.last
	t.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.abandon(now)
		c.mu.Unlock()
	}
}

// SpanContextOf returns the span context of the root span of the
// connection with that 4-tuple (as the stack sees it: Local is the
// stack's own address), or an invalid one if it is not traced now.
func (t *Tracer) SpanContextOf(id event.ConnID) trace.SpanContext {
	t.mu.Lock()
	c := t.conns[id]
	t.mu.Unlock()
	if c == nil {
		return trace.SpanContext{}
	}
	return c.rootSC // set once, before c is published
}

// SpanContext returns the span context of the root span of c's TCP
// connection, or an invalid one if it is not traced (not sampled, over
// the limit, already closed, or not a connection of this tracer's stack).
// c is typically a *conn.Conn; any net.Conn whose addresses are
// *net.TCPAddr works.
func (t *Tracer) SpanContext(c net.Conn) trace.SpanContext {
	id, ok := connID(c)
	if !ok {
		return trace.SpanContext{}
	}
	return t.SpanContextOf(id)
}

// Link returns a link to c's TCP connection span for an application's
// own span (trace.WithLinks); its SpanContext is invalid, and the SDK
// drops it, when c is not traced.
func (t *Tracer) Link(c net.Conn) trace.Link {
	return trace.Link{SpanContext: t.SpanContext(c), Attributes: []attribute.KeyValue{attribute.String("tcp.link", "connection")}}
}

// ContextWithConn returns ctx carrying c's connection span as the parent
// of spans started from it: an HTTP server's ConnContext hook makes each
// request's span a child of the TCP connection's trace. ctx is returned
// unchanged when c is not traced.
func (t *Tracer) ContextWithConn(ctx context.Context, c net.Conn) context.Context {
	id, ok := connID(c)
	if !ok {
		return ctx
	}
	return t.ConnContext(ctx, id)
}

// ConnContext returns ctx carrying the root span of the connection id as
// the current span, or ctx unchanged if the connection is not traced. It
// is a stack.Options.ConnContext: with it there, conn.Conn.Context
// carries the connection's span, and trace.SpanContextFromContext(c.Context())
// is its span context.
func (t *Tracer) ConnContext(ctx context.Context, id event.ConnID) context.Context {
	sc := t.SpanContextOf(id)
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, sc)
}

func connID(c net.Conn) (event.ConnID, bool) {
	l, ok1 := c.LocalAddr().(*net.TCPAddr)
	r, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || l == nil || r == nil {
		return event.ConnID{}, false
	}
	return event.ConnID{Local: unmap(l.AddrPort()), Remote: unmap(r.AddrPort())}, true
}

// unmap undoes the IPv4-in-IPv6 form net.TCPAddr may carry, as the
// engine names IPv4 peers by their 4-byte addresses.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// errorStatus marks s as failed with a reason.
func errorStatus(s trace.Span, typ, desc string) {
	s.SetAttributes(attribute.String("error.type", typ))
	s.SetStatus(codes.Error, desc)
}
