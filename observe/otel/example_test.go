package otel_test

import (
	"fmt"
	"io"
	"slices"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tapstack/tapstack/conn"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// One connection between two stacks, the client's traced: its trace has
// the handshake, the transfer, the teardown and TIME-WAIT as spans. An
// exporter to Jaeger or a collector comes from otel.NewOTLPProvider; here
// the SDK's in-memory exporter holds the spans.
func Example() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr := otel.New(otel.Options{TracerProvider: tp})

	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{TCP: tcp.Options{Observer: tr.Observe, TimeWait: 10 * time.Millisecond}},
	})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, s) // until the client's FIN
			s.Close()
		}
	}()

	c, err := conn.Dial(p.Client, "tcp", "192.0.2.1:80")
	if err != nil {
		panic(err)
	}
	// The connection's span, for the application's own spans to link to.
	fmt.Println("span context valid:", tr.SpanContext(c).IsValid())
	io.WriteString(c, "hello")
	c.Close()
	for i := 0; tr.Stats().Open > 0 && i < 500; i++ { // until TIME-WAIT ends
		time.Sleep(10 * time.Millisecond)
	}

	var names []string
	for _, s := range exp.GetSpans() {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	fmt.Println(names)
	// Output:
	// span context valid: true
	// [tcp.connection tcp.handshake tcp.teardown tcp.time_wait tcp.transfer]
}
