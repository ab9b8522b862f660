package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpSink is an OTLP/HTTP receiver that keeps the spans' names, by the
// stack their trace belongs to.
type otlpSink struct {
	mu    sync.Mutex
	roots map[string]int // tapstack.stack -> tcp.connection spans
	names map[string]int // span name -> count
	svc   map[string]bool
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if r.URL.Path != "/v1/traces" || err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				s.svc[kv.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s.names[sp.Name]++
				if sp.Name != "tcp.connection" {
					continue
				}
				for _, kv := range sp.Attributes {
					if kv.Key == "tapstack.stack" {
						s.roots[kv.GetValue().GetStringValue()]++
					}
				}
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ = proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Write(b)
}

// With -otlp http://..., -count 4 and -loss, the monitor runs four
// connections, waits for them to close and exports one trace per
// connection end over OTLP/HTTP before run returns.
func TestOTLPExport(t *testing.T) {
	sink := &otlpSink{roots: map[string]int{}, names: map[string]int{}, svc: map[string]bool{}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, config{listen: "127.0.0.1:0", every: 5 * time.Millisecond, otlp: srv.URL, loss: 0.05, seed: 3, size: 16 << 10, count: 4},
		func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	t.Logf("spans by name: %v", sink.names)
	if sink.roots["client"] != 4 || sink.roots["server"] != 4 {
		t.Errorf("tcp.connection spans: %v, want 4 client and 4 server", sink.roots)
	}
	for _, name := range []string{"tcp.handshake", "tcp.transfer", "tcp.teardown", "tcp.syn_queue", "tcp.accept_queue", "tcp.time_wait"} {
		if sink.names[name] == 0 {
			t.Errorf("no %s span exported", name)
		}
	}
	if !sink.svc[serviceName] {
		t.Errorf("service names %v, want %s", sink.svc, serviceName)
	}
}

// A collector that answers every export with an error: run returns an
// error that says how many spans it missed.
func TestOTLPExportFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "collector broken", http.StatusInternalServerError)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, config{listen: "127.0.0.1:0", every: 5 * time.Millisecond, otlp: srv.URL, size: 1 << 10, count: 2},
		func(string) {})
	if err == nil || !strings.Contains(err.Error(), "spans not delivered") || !strings.Contains(err.Error(), "500") {
		t.Errorf("run: %v, want an error saying how many spans were not delivered, and why", err)
	}
}
