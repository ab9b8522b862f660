package otel

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// NewOTLPProvider returns an SDK TracerProvider that batches spans to an
// OTLP endpoint with the official exporters, for service.name service.
// endpoint is
//
//	http://HOST:PORT[/PATH]   OTLP/HTTP (protobuf); PATH defaults to /v1/traces
//	https://HOST:PORT[/PATH]  idem, over TLS
//	grpc://HOST:PORT          OTLP/gRPC without TLS
//	HOST:PORT                 OTLP/gRPC without TLS (4317 is the usual port)
//
// Spans wait for export in a queue of DefaultMaxQueueSize: ending a span
// never waits on the collector, which may be down or slow; a span that
// finds the queue full is dropped. ExportStats counts what was exported,
// failed, dropped, or is pending. Shut the provider down to flush what is
// queued: Shutdown returns at its context's deadline even if the
// collector hangs.
func NewOTLPProvider(ctx context.Context, endpoint, service string) (*OTLPProvider, error) {
	exp, err := newOTLPExporter(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))
	q := newExportQueue(exp)
	return &OTLPProvider{sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q), sdktrace.WithResource(res)), q}, nil
}

func newOTLPExporter(ctx context.Context, endpoint string) (sdktrace.SpanExporter, error) {
	u, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "grpc" {
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(u.Host), otlptracegrpc.WithInsecure())
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
}

// CheckEndpoint reports why endpoint is not an OTLP endpoint
// NewOTLPProvider can export to, or nil: a program may check a user's
// endpoint before it does any work, as the exporters themselves only
// fail when they first export.
func CheckEndpoint(endpoint string) error {
	_, err := parseEndpoint(endpoint)
	return err
}

// parseEndpoint reads endpoint as NewOTLPProvider takes it, with the
// scheme grpc when it has none. gRPC needs HOST:PORT (the exporter would
// dial a host without a port on 443, or fail at the first export on one
// it cannot split, such as "::::"); HTTP may leave the port to its scheme.
// A port is 1 to 65535.
func parseEndpoint(endpoint string) (*url.URL, error) {
	bad := func(why string) error {
		return fmt.Errorf("OTLP endpoint %q: %s (want http://HOST:PORT, grpc://HOST:PORT or HOST:PORT)", endpoint, why)
	}
	full := endpoint
	if !strings.Contains(full, "://") {
		full = "grpc://" + full
	}
	u, err := url.Parse(full)
	if err != nil {
		return nil, bad(err.Error())
	}
	if u.Host == "" {
		return nil, bad("no host")
	}
	switch u.Scheme {
	case "http", "https":
	case "grpc":
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			if u.Port() == "" && !strings.Contains(u.Host, "::") {
				return nil, bad("no port")
			}
			return nil, bad("want HOST:PORT, an IPv6 host in brackets")
		}
	default:
		return nil, bad("unknown scheme " + u.Scheme)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, bad("port " + p + ": want 1 to 65535")
		}
	}
	return u, nil
}
