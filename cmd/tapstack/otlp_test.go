package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// "tapstack demo --otlp http://..." (and trace, on the in-memory demo)
// exports the demo's two connection ends as two traces, flushed before
// the command returns.
func TestDemoOTLP(t *testing.T) {
	var mu sync.Mutex
	roots := map[string]int{} // tapstack.stack -> tcp.connection spans
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil || r.URL.Path != "/v1/traces" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					for _, kv := range sp.Attributes {
						if sp.Name == "tcp.connection" && kv.Key == "tapstack.stack" {
							roots[kv.GetValue().GetStringValue()]++
						}
					}
				}
			}
		}
		b, _ = proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	defer srv.Close()
	for _, cmd := range []string{"demo", "trace"} {
		code, _, errOut := runCLI(t, cmd, "--timewait", "10ms", "--otlp", srv.URL)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", cmd, code, errOut)
		}
		mu.Lock()
		if roots["server"] != 1 || roots["client"] != 1 {
			t.Errorf("%s: tcp.connection spans by stack %v, want one server and one client", cmd, roots)
		}
		clear(roots)
		mu.Unlock()
	}
	if code, _, errOut := runCLI(t, "demo", "--otlp", "ftp://x"); code == 0 {
		t.Errorf("--otlp ftp://x: exit 0, want an error (%s)", errOut)
	}
}
