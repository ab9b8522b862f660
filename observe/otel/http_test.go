package otel_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tapstack/tapstack/conn"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// An HTTP request served by net/http over a tapstack connection: with the
// tracer as the stacks' ConnContext, conn.Conn.Context carries the TCP
// connection's span. The server's handler span is a child of the server
// connection's tcp.connection span (http.Server.ConnContext takes it from
// the Conn), and the client's request span links to the client
// connection's (httptrace's GotConn hands it the Conn). On the real clock,
// as net/http runs its own timers.
func TestHTTPSpansLinkToConnection(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	ct := otel.New(otel.Options{TracerProvider: tp, Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "client")}})
	st := otel.New(otel.Options{TracerProvider: tp, Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "server")}})
	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{TCP: tcp.Options{Observer: ct.Observe}, ConnContext: ct.ConnContext},
		Server: stack.Options{TCP: tcp.Options{Observer: st.Observe}, ConnContext: st.ConnContext},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	app := tp.Tracer("app")

	ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			// The request contexts derive from this one: the
			// connection's span becomes their parent.
			return trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(c.(*conn.Conn).Context()))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, span := app.Start(r.Context(), "GET /hello", trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			io.WriteString(w, "hello")
		}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	}()

	var clientConn *conn.Conn
	var want trace.SpanContext // the tracer's span of clientConn, taken while it is open
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&conn.Dialer{Stack: p.Client}).DialTCP(ctx, network, addr)
		},
	}}
	ctx, span := app.Start(context.Background(), "client GET", trace.WithSpanKind(trace.SpanKindClient))
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		clientConn = info.Conn.(*conn.Conn)
		want = ct.SpanContext(clientConn)
		span.AddLink(trace.LinkFromContext(clientConn.Context(), attribute.String("tcp.link", "connection")))
	}})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://192.0.2.1/hello", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	span.End()
	if err != nil || string(body) != "hello" {
		t.Fatalf("response %q, %v", body, err)
	}
	if clientConn == nil {
		t.Fatal("GotConn not called")
	}
	// The tracer forgets a connection once it has closed, which the
	// transport (no keep-alives) may have done by now: its span is the
	// one GotConn read.
	if sc := trace.SpanContextFromContext(clientConn.Context()); !sc.Equal(want) || !sc.IsValid() {
		t.Errorf("client Conn.Context's span context %v, want the tracer's %v", sc, want)
	}
	// End what is still open (the server may not have seen the close
	// yet): every root is exported.
	ct.Close()
	st.Close()

	roots := map[string]tracetest.SpanStub{}
	var handler, request tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case otel.SpanConnection:
			roots[attr(s, "tapstack.stack")] = s
		case "GET /hello":
			handler = s
		case "client GET":
			request = s
		}
	}
	server, ok := roots["server"]
	if !ok || handler.Name == "" {
		t.Fatalf("no server connection span (%v) or no handler span (%q)", ok, handler.Name)
	}
	if handler.Parent.SpanID() != server.SpanContext.SpanID() || handler.SpanContext.TraceID() != server.SpanContext.TraceID() {
		t.Errorf("handler span's parent %v, want the server's tcp.connection %v", handler.Parent, server.SpanContext)
	}
	cl, ok := roots["client"]
	if !ok || request.Name == "" {
		t.Fatalf("no client connection span (%v) or no request span (%q)", ok, request.Name)
	}
	if len(request.Links) != 1 || !request.Links[0].SpanContext.Equal(cl.SpanContext) {
		t.Errorf("request span's links %v, want one to the client's tcp.connection %v", request.Links, cl.SpanContext)
	}
	if request.SpanContext.TraceID() == cl.SpanContext.TraceID() {
		t.Error("the request span is in the connection's trace: want a trace of its own, linked")
	}
}
