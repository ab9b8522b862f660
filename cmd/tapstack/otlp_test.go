package main

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// "tapstack demo --otlp http://..." (and trace and ss, on the in-memory
// demo) exports the demo's two connection ends as two traces, flushed
// before the command returns.
func TestDemoOTLP(t *testing.T) {
	url, roots := otlpReceiver(t)
	for _, cmd := range []string{"demo", "trace", "ss"} {
		code, _, errOut := runCLI(t, cmd, "--timewait", "10ms", "--otlp", url)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", cmd, code, errOut)
		}
		if got := roots(); got["server"] != 1 || got["client"] != 1 || len(got) != 2 {
			t.Errorf("%s: tcp.connection spans by stack %v, want one server and one client", cmd, got)
		}
	}
	if code, _, errOut := runCLI(t, "demo", "--otlp", "ftp://x"); code == 0 {
		t.Errorf("--otlp ftp://x: exit 0, want an error (%s)", errOut)
	}
}

// A collector that answers with an error, or hangs: the command still
// ends (the flush gives up after otlpFlushTimeout) and says how many of
// its spans did not reach the collector, and why, not just the error of
// one request or "context deadline exceeded".
func TestDemoOTLPUndelivered(t *testing.T) {
	hang := make(chan struct{})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "collector broken", http.StatusInternalServerError)
	}))
	defer failing.Close()
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer hanging.Close()
	defer close(hang) // first: the server's Close waits for its handlers
	for _, c := range []struct{ url, want string }{
		// The demo's two connection ends: five spans for the client, six
		// for the server.
		{failing.URL, "OTLP export to " + failing.URL + ": 11 of 11 spans not delivered (11 failed: traces export: failed to send"},
		{hanging.URL, "OTLP export to " + hanging.URL + ": 11 of 11 spans not delivered (11 still queued after 5s)"},
	} {
		start := time.Now()
		code, _, errOut := runCLI(t, "demo", "--timewait", "10ms", "--otlp", c.url)
		if d := time.Since(start); d > otlpFlushTimeout+2*time.Second {
			t.Errorf("%s: the command took %v, the flush's bound is %v", c.url, d, otlpFlushTimeout)
		}
		if code != 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant it to say %q", c.url, code, errOut, c.want)
		}
	}
}

// "tapstack script --otlp" exports each script's connections, named by
// the script's path: the one a script leaves open is ended and flushed
// when the command returns.
func TestScriptOTLP(t *testing.T) {
	url, roots := otlpReceiver(t)
	dir := writeScripts(t, map[string]string{"pass.pkt": scriptPrelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n"})
	path := filepath.Join(dir, "pass.pkt")
	code, out, errOut := runCLI(t, "script", "--otlp", url, path)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if got := roots(); got[path] != 1 || len(got) != 1 {
		t.Errorf("tcp.connection spans by stack %v, want one of %s", got, path)
	}
}

// otlpReceiver is an OTLP/HTTP endpoint; roots returns, and forgets, the
// tcp.connection spans it received by their tapstack.stack.
func otlpReceiver(t *testing.T) (url string, roots func() map[string]int) {
	var mu sync.Mutex
	got := map[string]int{} // tapstack.stack -> tcp.connection spans
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
							got[kv.GetValue().GetStringValue()]++
						}
					}
				}
			}
		}
		b, _ = proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := maps.Clone(got)
		clear(got)
		return out
	}
}

// "tapstack bench --otlp" traces tapstack's connections (gVisor's cannot
// be), both ends of each over tap.Pipe, and says that its figures then
// include the tracer.
func TestBenchOTLP(t *testing.T) {
	url, roots := otlpReceiver(t)
	code, out, errOut := runCLI(t, append(quickBench, "-link", "pipe", "--otlp", url)...)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if !strings.Contains(out, "tapstack's connections are traced to "+url) {
		t.Errorf("the output does not say the figures include tracing:\n%s", out)
	}
	got := roots()
	// At least the connections/s measurements' (20 per figure, two
	// figures, two rounds), each with a client and a server end.
	if got["bench client"] < 80 || got["bench client"] != got["bench server"] || len(got) != 2 {
		t.Errorf("tcp.connection spans by stack %v, want as many of each end, at least 80", got)
	}
}
