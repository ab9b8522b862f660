package otel

import (
	"context"
	"fmt"
	"net/url"
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
// Shut the provider down to flush what is buffered.
func NewOTLPProvider(ctx context.Context, endpoint, service string) (*sdktrace.TracerProvider, error) {
	exp, err := newOTLPExporter(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

func newOTLPExporter(ctx context.Context, endpoint string) (sdktrace.SpanExporter, error) {
	bad := func(why string) error {
		return fmt.Errorf("OTLP endpoint %q: %s (want http://HOST:PORT, grpc://HOST:PORT or HOST:PORT)", endpoint, why)
	}
	if !strings.Contains(endpoint, "://") {
		endpoint = "grpc://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, bad(err.Error())
	}
	if u.Host == "" {
		return nil, bad("no host")
	}
	switch u.Scheme {
	case "http", "https":
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	case "grpc":
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(u.Host), otlptracegrpc.WithInsecure())
	}
	return nil, bad("unknown scheme " + u.Scheme)
}
