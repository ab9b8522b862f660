package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/tapstack/tapstack/event"
	tsotel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack"
)

// otlpFlag registers --otlp: export each connection as an OpenTelemetry
// trace (package observe/otel). An endpoint that cannot be one is a
// usage error when the flag is parsed, before the command does anything:
// the exporter would fail only when it first exports, at the end.
func otlpFlag(fs *flag.FlagSet) *string {
	e := new(otlpEndpoint)
	fs.Var(e, "otlp", "export each connection as an OpenTelemetry trace to this OTLP `endpoint`: HOST:PORT or grpc://HOST:PORT (gRPC), http://HOST:PORT (HTTP)")
	return (*string)(e)
}

// otlpEndpoint is --otlp's value.
type otlpEndpoint string

func (e *otlpEndpoint) String() string {
	if e == nil {
		return ""
	}
	return string(*e)
}

func (e *otlpEndpoint) Set(s string) error {
	if s != "" {
		if err := tsotel.CheckEndpoint(s); err != nil {
			return err
		}
	}
	*e = otlpEndpoint(s)
	return nil
}

// otlpTracing is the trace export of one command: one provider, a tracer
// per stack.
type otlpTracing struct {
	endpoint string
	tp       *tsotel.OTLPProvider
	tracers  []*tsotel.Tracer
}

// newOTLP returns nil, and no error, when endpoint is empty.
func newOTLP(endpoint string) (*otlpTracing, error) {
	if endpoint == "" {
		return nil, nil
	}
	tp, err := tsotel.NewOTLPProvider(context.Background(), endpoint, "tapstack")
	if err != nil {
		return nil, err
	}
	return &otlpTracing{endpoint: endpoint, tp: tp}, nil
}

// observer adds a tracer for the stack named name to obs. The tracer
// observes synchronously, so a connection's span exists when Dial or
// Accept returns.
func (o *otlpTracing) observer(name string, obs event.Observer) event.Observer {
	if o == nil {
		return obs
	}
	tr := tsotel.New(tsotel.Options{TracerProvider: o.tp, Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", name)}})
	o.tracers = append(o.tracers, tr)
	return stack.Fanout(obs, tr.Observe)
}

// otlpFlushTimeout bounds the flush at the end of a command: a collector
// that is down or hangs delays the exit by no more.
const otlpFlushTimeout = 5 * time.Second

// close ends the traces still open and flushes the export. Call it after
// the stacks closed. Its error says how many spans did not reach the
// collector, and why.
func (o *otlpTracing) close() error {
	if o == nil {
		return nil
	}
	for _, tr := range o.tracers {
		tr.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), otlpFlushTimeout)
	defer cancel()
	err := o.tp.Shutdown(ctx)
	return otlpLoss(o.endpoint, o.tp.ExportStats(), err)
}

// otlpLoss describes the spans st says were not delivered, or returns
// shutdownErr alone when all were.
func otlpLoss(endpoint string, st tsotel.ExportStats, shutdownErr error) error {
	if st.Undelivered() == 0 {
		if shutdownErr != nil {
			return fmt.Errorf("OTLP export to %s: %w", endpoint, shutdownErr)
		}
		return nil
	}
	var why []string
	if st.Failed > 0 {
		why = append(why, fmt.Sprintf("%d failed: %v", st.Failed, st.LastError))
	}
	if st.Dropped > 0 {
		why = append(why, fmt.Sprintf("%d dropped, the export queue full", st.Dropped))
	}
	if st.Pending > 0 {
		why = append(why, fmt.Sprintf("%d still queued after %v", st.Pending, otlpFlushTimeout))
	}
	return fmt.Errorf("OTLP export to %s: %d of %d spans not delivered (%s)", endpoint, st.Undelivered(), st.Spans, strings.Join(why, "; "))
}
