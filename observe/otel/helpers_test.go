package otel_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// How these tests keep time: as conn's do (conn/helpers_test.go), two
// tapstack stacks on one faketime.ManualClock inside a synctest bubble;
// the clock moves only when every goroutine of the bubble is blocked, so
// a run makes the same segments, events and span timestamps every time.
// The spans go to the SDK's in-memory exporter through a synchronous
// span processor.

const timeWait = time.Second

// world is a traced pair of stacks.
type world struct {
	clock          *faketime.ManualClock
	exp            *tracetest.InMemoryExporter
	tp             *sdktrace.TracerProvider
	client, server *stack.Stack
	ct, st         *otel.Tracer
}

type worldOptions struct {
	clientLink      func(gstack.LinkEndpoint) gstack.LinkEndpoint
	maxEvents       int
	clientSample    func(event.ConnID) bool // the client tracer's sampler
	serverMaxEvents int                     // the server tracer's MaxEventsPerConn, if set
}

func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	w := &world{clock: faketime.NewManualClock(), exp: tracetest.NewInMemoryExporter()}
	w.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(w.exp))
	t.Cleanup(func() { w.tp.Shutdown(t.Context()) })
	w.ct = otel.New(otel.Options{TracerProvider: w.tp, MaxEventsPerConn: o.maxEvents, Sample: o.clientSample,
		Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "client")}})
	if o.serverMaxEvents > 0 {
		o.maxEvents = o.serverMaxEvents
	}
	w.st = otel.New(otel.Options{TracerProvider: w.tp, MaxEventsPerConn: o.maxEvents,
		Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "server")}})
	p, err := stack.NewPair(stack.PairOptions{
		Client:     stack.Options{Clock: w.clock, TCP: tcp.Options{TimeWait: timeWait, Observer: w.ct.Observe}},
		Server:     stack.Options{Clock: w.clock, TCP: tcp.Options{TimeWait: timeWait, Observer: w.st.Observe}},
		ClientLink: o.clientLink,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	w.client, w.server = p.Client, p.Server
	return w
}

// advance lets the bubble settle, moves the clock and lets it settle.
func (w *world) advance(d time.Duration) {
	synctest.Wait()
	w.clock.Advance(d)
	synctest.Wait()
}

// connect dials from the client to a listener on the server at port and
// returns both ends.
func (w *world) connect(t *testing.T, port int) (c, s *conn.Conn) {
	t.Helper()
	ln, err := conn.Listen(w.server, "tcp", fmt.Sprintf("192.0.2.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan *conn.Conn, 1)
	go func() {
		s, err := ln.AcceptTCP()
		if err != nil {
			t.Error(err)
		}
		ch <- s
	}()
	c, err = (&conn.Dialer{Stack: w.client}).DialTCP(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c, <-ch
}

// connTrace is one exported trace: its spans by name (each name appears
// once in a connection's trace).
type connTrace struct {
	root  tracetest.SpanStub
	spans map[string]tracetest.SpanStub
	all   tracetest.SpanStubs
}

// traces groups the exported spans by trace and returns the traces of
// one stack ("client" or "server") in the order their roots started.
func (w *world) traces(t *testing.T, stackName string) []*connTrace {
	t.Helper()
	byTrace := map[trace.TraceID]*connTrace{}
	var order []*connTrace
	for _, s := range w.exp.GetSpans() {
		ct := byTrace[s.SpanContext.TraceID()]
		if ct == nil {
			ct = &connTrace{spans: map[string]tracetest.SpanStub{}}
			byTrace[s.SpanContext.TraceID()] = ct
			order = append(order, ct)
		}
		if _, dup := ct.spans[s.Name]; dup {
			t.Errorf("span %s twice in trace %s", s.Name, s.SpanContext.TraceID())
		}
		ct.spans[s.Name] = s
		ct.all = append(ct.all, s)
		if !s.Parent.IsValid() {
			ct.root = s
		}
	}
	var out []*connTrace
	for _, ct := range order {
		if ct.root.Name == "" {
			continue // not a connection's trace (an application's own span)
		}
		if attr(ct.root, "tapstack.stack") == stackName {
			out = append(out, ct)
		}
	}
	slices.SortFunc(out, func(a, b *connTrace) int { return a.root.StartTime.Compare(b.root.StartTime) })
	return out
}

// shape renders the tcp.* span tree: "tcp.connection(tcp.handshake
// tcp.transfer)", children in the order they started.
func (ct *connTrace) shape() string {
	var render func(s tracetest.SpanStub) string
	render = func(s tracetest.SpanStub) string {
		var kids []tracetest.SpanStub
		for _, k := range ct.all {
			if k.Parent.SpanID() == s.SpanContext.SpanID() && k.Parent.IsValid() && strings.HasPrefix(k.Name, "tcp.") {
				kids = append(kids, k)
			}
		}
		if len(kids) == 0 {
			return s.Name
		}
		slices.SortStableFunc(kids, func(a, b tracetest.SpanStub) int {
			if c := a.StartTime.Compare(b.StartTime); c != 0 {
				return c
			}
			// On the fake clock phases often start at the same instant:
			// then the order of the life cycle.
			return phaseRank(a.Name) - phaseRank(b.Name)
		})
		var parts []string
		for _, k := range kids {
			parts = append(parts, render(k))
		}
		return s.Name + "(" + strings.Join(parts, " ") + ")"
	}
	return render(ct.root)
}

func phaseRank(name string) int {
	return slices.Index([]string{otel.SpanHandshake, otel.SpanSynQueue, otel.SpanAcceptQueue, otel.SpanTransfer, otel.SpanTeardown, otel.SpanTimeWait}, name)
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func eventAttr(e sdktrace.Event, key string) string {
	for _, kv := range e.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// states lists a root's state changes as "FROM→TO".
func (ct *connTrace) states() []string {
	var out []string
	for _, e := range ct.root.Events {
		if e.Name == otel.EventStateChange {
			out = append(out, eventAttr(e, "tcp.state.from")+"→"+eventAttr(e, "tcp.state.to"))
		}
	}
	return out
}

// events returns the span events named name in the whole trace.
func (ct *connTrace) events(name string) []sdktrace.Event {
	var out []sdktrace.Event
	for _, s := range ct.all {
		for _, e := range s.Events {
			if e.Name == name {
				out = append(out, e)
			}
		}
	}
	return out
}

// wantAttrs checks attributes of a span.
func wantAttrs(t *testing.T, what string, s tracetest.SpanStub, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := attr(s, k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

// wantInfo checks a root's totals against what the engine's Info says
// of its connection at the end.
func wantInfo(t *testing.T, what string, root tracetest.SpanStub, in tcp.Info) {
	t.Helper()
	wantAttrs(t, what+" root against Info", root, map[string]string{
		"tcp.bytes_sent": fmt.Sprint(in.BytesSent), "tcp.bytes_acked": fmt.Sprint(in.BytesAcked),
		"tcp.bytes_received": fmt.Sprint(in.BytesReceived), "tcp.retransmits": fmt.Sprint(in.Retransmits),
		"tcp.srtt_us": fmt.Sprint(in.RTT.Microseconds()), "tcp.cwnd": fmt.Sprint(in.Cwnd),
	})
}

// readAll reads c to EOF on its own goroutine.
func readAll(c *conn.Conn) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		ch <- b
	}()
	return ch
}

var serverAddr = netip.MustParseAddr("192.0.2.1")

// newWorldID is the i-th of many distinct client 4-tuples.
func newWorldID(i int) event.ConnID {
	return event.ConnID{
		Local:  netip.AddrPortFrom(serverAddr, 80),
		Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i/50000)}), uint16(10000+i%50000)),
	}
}
