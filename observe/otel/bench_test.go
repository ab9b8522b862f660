package otel_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// discard is a span exporter that throws spans away: the benchmarks
// measure the tracer and the SDK's pipeline, not a network.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// tracing is how a benchmark's stacks are observed.
type tracing struct {
	name string
	obs  func(b *testing.B) (client, server event.Observer)
}

var tracings = []tracing{
	// off: no observer, as a stack without --otlp runs.
	{"off", func(*testing.B) (event.Observer, event.Observer) { return nil, nil }},
	// observer: an observer that does nothing: what the engine spends
	// making and delivering events, whoever observes them.
	{"observer", func(b *testing.B) (event.Observer, event.Observer) {
		var n atomic.Int64
		b.Cleanup(func() { b.ReportMetric(float64(n.Load())/float64(b.N), "events/op") })
		count := func(event.Event) { n.Add(1) }
		return count, count
	}},
	// unsampled: a Tracer whose sampler refuses every connection: the
	// price of having tracing installed but sampled out.
	{"unsampled", func(b *testing.B) (event.Observer, event.Observer) {
		tp := sdktrace.NewTracerProvider()
		b.Cleanup(func() { tp.Shutdown(context.Background()) })
		c := otel.New(otel.Options{TracerProvider: tp, Sample: otel.RatioSampler(0)})
		s := otel.New(otel.Options{TracerProvider: tp, Sample: otel.RatioSampler(0)})
		return c.Observe, s.Observe
	}},
	// on: every connection traced, spans batched to an exporter that
	// discards them, as with -otlp.
	{"on", func(b *testing.B) (event.Observer, event.Observer) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
		b.Cleanup(func() { tp.Shutdown(context.Background()) })
		c, s := otel.New(otel.Options{TracerProvider: tp}), otel.New(otel.Options{TracerProvider: tp})
		return c.Observe, s.Observe
	}},
}

func benchPair(b *testing.B, tr tracing) *stack.Pair {
	co, so := tr.obs(b)
	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{TCP: tcp.Options{TimeWait: time.Millisecond, Observer: co}},
		Server: stack.Options{TCP: tcp.Options{TimeWait: time.Millisecond, Observer: so}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

// BenchmarkBulk sends 32 MiB one way per iteration over one connection
// between two tapstack stacks on tap.Pipe, with tracing off (no
// observer), a do-nothing observer (the engine's own cost of events),
// tracing installed but sampled out, and on:
//
//	go test -run '^$' -bench Bulk -benchtime 5x -count 5 ./observe/otel
func BenchmarkBulk(b *testing.B) {
	const size = 32 << 20
	for _, tr := range tracings {
		b.Run(tr.name, func(b *testing.B) {
			p := benchPair(b, tr)
			ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			chunk := make([]byte, 64<<10)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				done := make(chan error, 1)
				go func() {
					s, err := ln.Accept()
					if err != nil {
						done <- err
						return
					}
					defer s.Close()
					n, err := io.Copy(io.Discard, s)
					if err == nil && n != size {
						err = io.ErrUnexpectedEOF
					}
					done <- err
				}()
				c, err := (&conn.Dialer{Stack: p.Client}).DialTCP(context.Background(), "tcp", "192.0.2.1:80")
				if err != nil {
					b.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(time.Minute))
				for sent := 0; sent < size; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				c.CloseWrite()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkConnection is one short connection per iteration: handshake,
// a 64-byte request and its echo, close both ways. The difference
// between "on" and "observer" is what tracing costs per connection: two
// traced ends, the client's five spans and the server's six, their span
// events (the state changes), the batch export. observe/otel/README.md
// has the figures.
//
//	go test -run '^$' -bench Connection -count 5 ./observe/otel
func BenchmarkConnection(b *testing.B) {
	for _, tr := range tracings {
		b.Run(tr.name, func(b *testing.B) {
			p := benchPair(b, tr)
			ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					s, err := ln.Accept()
					if err != nil {
						return
					}
					io.Copy(s, s)
					s.Close()
				}
			}()
			msg, buf := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				c, err := (&conn.Dialer{Stack: p.Client}).DialTCP(context.Background(), "tcp", "192.0.2.1:80")
				if err != nil {
					b.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write(msg)
				c.CloseWrite()
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != io.EOF {
					b.Fatalf("read after the echo: %v, want EOF", err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkObserve is the tracer's cost per engine event on an
// established connection: an inbound ACK and an outbound data segment,
// the two events a bulk transfer is made of, for a traced connection and
// for one the sampler refused.
//
//	go test -run '^$' -bench Observe ./observe/otel
func BenchmarkObserve(b *testing.B) {
	id := newWorldID(1)
	now := time.Now()
	open := []event.Event{
		{Time: now, Kind: event.KindQueue, Conn: id, Note: "SYN queued"},
		{Time: now, Kind: event.KindState, Conn: id, From: event.Closed, To: event.SynReceived},
		{Time: now, Kind: event.KindState, Conn: id, From: event.SynReceived, To: event.Established},
	}
	ack := event.Event{Time: now, Kind: event.KindAck, Conn: id, Acked: 1448, Cwnd: 14480, SRTT: time.Millisecond,
		Segment: event.SegmentInfo{Flags: event.FlagAck, Window: 1000}}
	send := event.Event{Time: now, Kind: event.KindSend, Conn: id, Send: event.SendData,
		Segment: event.SegmentInfo{Flags: event.FlagAck | event.FlagPsh, Window: 1000, Len: 1448}}
	for _, bc := range []struct {
		name   string
		sample func(event.ConnID) bool
		ev     event.Event
	}{
		{"traced/ack", nil, ack},
		{"traced/send", nil, send},
		{"unsampled/ack", otel.RatioSampler(0), ack},
		{"unsampled/send", otel.RatioSampler(0), send},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
			defer tp.Shutdown(context.Background())
			tr := otel.New(otel.Options{TracerProvider: tp, Sample: bc.sample})
			for _, ev := range open {
				tr.Observe(ev)
			}
			b.ReportAllocs()
			for b.Loop() {
				tr.Observe(bc.ev)
			}
		})
	}
}
