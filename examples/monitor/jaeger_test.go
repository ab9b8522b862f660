package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The end-to-end test against a real Jaeger (v1.76.0, cmd/jaeger: the
// OpenTelemetry-collector-based all-in-one), built from the tools module
// tools/jaeger so the main go.mod stays small. The binary is built once
// per version (keyed by tools/jaeger/go.sum) and cached in the Go build
// cache's directory (GOCACHE/tapstack-tools/): a cold build took 12m39s
// on this project's 2-core machine, a rebuild with a warm build cache
// 14 s, a cached binary nothing. .ci/run builds it before the suite and
// names it in TAPSTACK_JAEGER; run alone, the test builds it itself. It
// skips, saying why, when the binary cannot be built.

// jaegerBuildTimeout bounds a cold build of Jaeger.
const jaegerBuildTimeout = 12 * time.Minute

// jaegerBinary returns the path of the Jaeger binary, building it if it
// is not cached.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TAPSTACK_JAEGER"); p != "" {
		// .ci/run names the binary it built, or tried to.
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no Jaeger binary at TAPSTACK_JAEGER=%s (.ci/run could not build it: see its warning): %v", p, err)
		}
		return p
	}
	toolsDir, err := filepath.Abs(filepath.Join("..", "..", "tools", "jaeger"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(toolsDir, "go.sum"))
	if err != nil {
		t.Skipf("no tools/jaeger/go.sum (%v): cannot build Jaeger", err)
	}
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil || strings.TrimSpace(string(gocache)) == "" || strings.TrimSpace(string(gocache)) == "off" {
		t.Skipf("no Go build cache (%v): cannot cache the Jaeger binary", err)
	}
	// Keyed by the tools module's go.sum: a new Jaeger version is a new
	// binary.
	h := sha256.Sum256(sum)
	bin := filepath.Join(strings.TrimSpace(string(gocache)), "tapstack-tools", "jaeger-"+hex.EncodeToString(h[:8]))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Skipf("cannot cache the Jaeger binary: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), jaegerBuildTimeout)
	defer cancel()
	tmp := bin + ".tmp" + fmt.Sprint(os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = toolsDir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		tail := string(out)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		t.Skipf("cannot build Jaeger (go build in tools/jaeger, %v): %v\n%s", time.Since(start).Round(time.Second), err, tail)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Skipf("cannot cache the Jaeger binary: %v", err)
	}
	t.Logf("built Jaeger in %v: %s", time.Since(start).Round(time.Second), bin)
	return bin
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// jaegerConfig is an all-in-one configuration with every listener on
// 127.0.0.1: OTLP over gRPC and HTTP in, memory storage, the query API;
// no self-telemetry, no tracing of its own.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: mem
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// jaeger is a running Jaeger.
type jaeger struct {
	query, otlpGRPC, otlpHTTP string // host:port
}

// startJaeger runs Jaeger until the test ends.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	p := freePorts(t, 4)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, p[0], p[1], p[2], p[3]), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Jaeger: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("Jaeger's log:\n%s", b)
		}
	})
	j := &jaeger{
		query:    fmt.Sprintf("127.0.0.1:%d", p[0]),
		otlpGRPC: fmt.Sprintf("127.0.0.1:%d", p[2]),
		otlpHTTP: fmt.Sprintf("127.0.0.1:%d", p[3]),
	}
	for i := 0; ; i++ {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("Jaeger exited: %v\n%s", err, b)
		default:
		}
		resp, err := http.Get("http://" + j.query + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j
			}
		}
		if i == 300 {
			t.Fatalf("Jaeger's query API not up after 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Jaeger's query API (/api/traces), the fields the test reads.
type (
	jTraces struct {
		Data []jTrace `json:"data"`
	}
	jTrace struct {
		TraceID   string              `json:"traceID"`
		Spans     []jSpan             `json:"spans"`
		Processes map[string]jProcess `json:"processes"`
	}
	jProcess struct {
		ServiceName string `json:"serviceName"`
	}
	jSpan struct {
		SpanID        string  `json:"spanID"`
		OperationName string  `json:"operationName"`
		References    []jRef  `json:"references"`
		StartTime     int64   `json:"startTime"` // µs
		Duration      int64   `json:"duration"`  // µs
		Tags          []jKV   `json:"tags"`
		Logs          []jLog  `json:"logs"`
		ProcessID     string  `json:"processID"`
		Warnings      []any   `json:"warnings"`
		Depth         int     `json:"depth"`
		Offset        float64 `json:"offset"`
	}
	jRef struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	}
	jKV struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	}
	jLog struct {
		Timestamp int64 `json:"timestamp"`
		Fields    []jKV `json:"fields"`
	}
)

func tag(kvs []jKV, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

func (tr jTrace) span(name string) (jSpan, bool) {
	for _, s := range tr.Spans {
		if s.OperationName == name {
			return s, true
		}
	}
	return jSpan{}, false
}

// logs counts the span events named name in the trace.
func (tr jTrace) logs(name string) int {
	n := 0
	for _, s := range tr.Spans {
		for _, l := range s.Logs {
			if tag(l.Fields, "event") == name {
				n++
			}
		}
	}
	return n
}

// traces asks Jaeger for the traces of service until it has want of
// them (the collector batches), for at most 30 s.
func (j *jaeger) traces(t *testing.T, service string, want int) []jTrace {
	t.Helper()
	var got jTraces
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + j.query + "/api/traces?limit=1000&lookback=1h&service=" + service)
		if err != nil {
			t.Fatal(err)
		}
		got = jTraces{}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("/api/traces: %v", err)
		}
		if len(got.Data) >= want || i == 300 {
			return got.Data
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The monitor exports over OTLP (gRPC, then HTTP) to a real Jaeger, and
// Jaeger's query API has one trace per connection end, each with the
// phases as spans and the state changes as logs; over the lossy cable
// retransmissions are there too.
func TestJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Jaeger")
	}
	j := startJaeger(t)
	for _, tc := range []struct {
		proto, endpoint string
		count           int
	}{
		{"grpc", j.otlpGRPC, 6},
		{"http", "http://" + j.otlpHTTP, 3},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			service := "tapstack-e2e-" + tc.proto
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := run(ctx, config{listen: "127.0.0.1:0", every: 20 * time.Millisecond, otlp: tc.endpoint,
				loss: 0.05, seed: 11, size: 64 << 10, count: tc.count, service: service}, func(string) {})
			if err != nil {
				t.Fatal(err)
			}
			traces := j.traces(t, service, 2*tc.count)
			byStack := map[string]int{}
			retransmits := 0
			for _, tr := range traces {
				if len(tr.Spans) == 0 {
					t.Errorf("trace %s has no span", tr.TraceID)
					continue
				}
				root, ok := tr.span("tcp.connection")
				if !ok {
					t.Errorf("trace %s has no tcp.connection span", tr.TraceID)
					continue
				}
				stack := tag(root.Tags, "tapstack.stack")
				byStack[stack]++
				want := []string{"tcp.handshake", "tcp.transfer", "tcp.teardown"}
				if stack == "server" {
					want = append(want, "tcp.syn_queue", "tcp.accept_queue")
				} else {
					want = append(want, "tcp.time_wait")
				}
				for _, name := range want {
					if _, ok := tr.span(name); !ok {
						t.Errorf("%s trace %s: no %s span", stack, tr.TraceID, name)
					}
				}
				if n := tr.logs("tcp.state_change"); n < 4 {
					t.Errorf("%s trace %s: %d tcp.state_change logs, want at least 4", stack, tr.TraceID, n)
				}
				if tag(root.Tags, "network.transport") != "tcp" || tag(root.Tags, "tcp.state.final") == "" {
					t.Errorf("%s trace %s: root tags %v", stack, tr.TraceID, root.Tags)
				}
				if svc := tr.Processes[root.ProcessID].ServiceName; svc != service {
					t.Errorf("trace %s: service %q, want %q", tr.TraceID, svc, service)
				}
				retransmits += tr.logs("tcp.retransmit")
			}
			if len(traces) != 2*tc.count || byStack["client"] != tc.count || byStack["server"] != tc.count {
				t.Errorf("%d traces %v, want %d: one per connection on each stack", len(traces), byStack, 2*tc.count)
			}
			if retransmits == 0 {
				t.Error("no tcp.retransmit log in any trace at 5% loss")
			}
			t.Logf("%s: %d traces, %d tcp.retransmit logs", tc.proto, len(traces), retransmits)
			if tc.proto == "grpc" {
				screenshot(t, j, traces)
			}
		})
	}
}

// screenshot saves a picture of the client trace with the most
// retransmissions, as Jaeger returns it (/api/traces/ID), to the file
// TAPSTACK_JAEGER_SHOT names, or to TAPSTACK_ARTIFACTS/jaeger-trace.png;
// docs/jaeger-trace.png is made so:
//
//	TAPSTACK_JAEGER_SHOT=$PWD/docs/jaeger-trace.png go test -run TestJaeger/grpc ./examples/monitor
//
// Jaeger's web UI is not part of its Go module (a binary built from it
// serves a placeholder page where the UI would be), so the page drawn
// here is the test's own: the span timeline of Jaeger's trace view, from
// Jaeger's data, in headless Chromium.
func screenshot(t *testing.T, j *jaeger, traces []jTrace) {
	out := os.Getenv("TAPSTACK_JAEGER_SHOT")
	if out == "" && os.Getenv("TAPSTACK_ARTIFACTS") != "" {
		out = filepath.Join(os.Getenv("TAPSTACK_ARTIFACTS"), "jaeger-trace.png")
	}
	if out == "" {
		return
	}
	var exe string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		t.Log("no Chromium: no screenshot")
		return
	}
	best, most := "", -1
	for _, tr := range traces {
		root, _ := tr.span("tcp.connection")
		if n := tr.logs("tcp.retransmit"); tag(root.Tags, "tapstack.stack") == "client" && n > most {
			best, most = tr.TraceID, n
		}
	}
	resp, err := http.Get("http://" + j.query + "/api/traces/" + best)
	if err != nil {
		t.Fatal(err)
	}
	var one jTraces
	err = json.NewDecoder(resp.Body).Decode(&one)
	resp.Body.Close()
	if err != nil || len(one.Data) != 1 {
		t.Fatalf("/api/traces/%s: %v (%d traces)", best, err, len(one.Data))
	}
	data, _ := json.Marshal(one.Data[0]) // escapes <, > and &: safe inside <script>
	page := filepath.Join(t.TempDir(), "trace.html")
	if err := os.WriteFile(page, []byte(strings.Replace(tracePage, "TRACE_JSON", string(data), 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser, not under a timeout
		t.Fatalf("chromium: %v", err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	if err := chromedp.Do(tctx, chromedp.Navigate("file://"+page), chromedp.WaitReady("#done")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	rows, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll(".row").length`))
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if rows != len(one.Data[0].Spans) {
		t.Errorf("the page drew %d span rows, the trace has %d spans", rows, len(one.Data[0].Spans))
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("trace %s (%d retransmissions) drawn to %s", best, most, out)
}

// tracePage draws one Jaeger trace as Jaeger's trace view lays it out:
// a row per span, indented under its parent, its bar on the trace's
// time axis, its logs as ticks; the logs of every span listed below.
const tracePage = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>trace</title><style>
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 17px; margin: 0 0 4px; } .sub { color: #666; margin-bottom: 12px; }
.row { display: flex; align-items: center; height: 26px; border-bottom: 1px solid #eee; }
.name { width: 300px; flex: none; white-space: nowrap; overflow: hidden; }
.lane { position: relative; flex: 1; height: 26px; }
.bar { position: absolute; top: 7px; height: 12px; border-radius: 2px; background: #7aa6d8; min-width: 2px; }
.bar.err { background: #d66; }
.tick { position: absolute; top: 3px; width: 2px; height: 20px; }
.dur { position: absolute; top: 6px; font-size: 11px; color: #444; white-space: nowrap; }
.axis { display: flex; color: #888; font-size: 11px; margin-left: 300px; justify-content: space-between; }
table { border-collapse: collapse; margin-top: 16px; font-size: 12px; }
td, th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #f0f0f0; vertical-align: top; }
.legend span { display: inline-block; margin-right: 14px; } .sw { width: 10px; height: 10px; display: inline-block; margin-right: 4px; }
</style></head><body>
<h1 id="title"></h1><div class="sub" id="sub"></div>
<div class="legend" id="legend"></div>
<div class="axis" id="axis"></div><div id="rows"></div>
<table id="logs"><tr><th>+ms</th><th>span</th><th>event</th><th>fields</th></tr></table>
<script>
const tr = TRACE_JSON;
const colors = {"tcp.retransmit": "#d33", "tcp.rto": "#f80", "tcp.drop": "#a3c", "tcp.recovery": "#c60",
  "tcp.window_closed": "#06c", "tcp.window_opened": "#0a8", "tcp.state_change": "#555", "tcp.queue": "#888"};
const byId = {}; tr.spans.forEach(s => byId[s.spanID] = s);
const parent = s => (s.references || []).filter(r => r.refType === "CHILD_OF").map(r => byId[r.spanID])[0];
const depth = s => { let d = 0; for (let p = parent(s); p && d < 10; p = parent(p)) d++; return d; };
const t0 = Math.min(...tr.spans.map(s => s.startTime));
const t1 = Math.max(...tr.spans.map(s => s.startTime + s.duration));
const span = Math.max(t1 - t0, 1);
const tag = (kvs, k) => { const x = (kvs || []).find(kv => kv.key === k); return x ? x.value : undefined; };
const root = tr.spans.find(s => !parent(s));
document.getElementById("title").textContent = "Jaeger trace " + tr.traceID + ": " + root.operationName + " " +
  tag(root.tags, "network.local.address") + ":" + tag(root.tags, "network.local.port") + " \u2192 " +
  tag(root.tags, "network.peer.address") + ":" + tag(root.tags, "network.peer.port");
document.getElementById("sub").textContent = "service " + tr.processes[root.processID].serviceName + ", stack " +
  tag(root.tags, "tapstack.stack") + ", " + tr.spans.length + " spans, " + (span / 1000).toFixed(1) + " ms; final state " +
  tag(root.tags, "tcp.state.final") + "; bytes sent " + tag(root.tags, "tcp.bytes_sent") + ", retransmitted " +
  tag(root.tags, "tcp.bytes_retransmitted") + " (" + tag(root.tags, "tcp.retransmits") + " segments); close: " + tag(root.tags, "tcp.close.cause");
document.getElementById("legend").innerHTML = Object.entries(colors).map(([k, c]) =>
  '<span><i class="sw" style="background:' + c + '"></i>' + k + '</span>').join("");
document.getElementById("axis").innerHTML = [0, 0.25, 0.5, 0.75, 1].map(f => "<span>" + (f * span / 1000).toFixed(1) + " ms</span>").join("");
const order = [];
const walk = s => { order.push(s); tr.spans.filter(c => parent(c) === s).sort((a, b) => a.startTime - b.startTime).forEach(walk); };
walk(root);
tr.spans.filter(s => !order.includes(s)).forEach(s => order.push(s));
const rows = document.getElementById("rows"), logs = document.getElementById("logs");
const pct = t => (100 * (t - t0) / span) + "%";
const all = [];
for (const s of order) {
  const row = document.createElement("div"); row.className = "row";
  const name = document.createElement("div"); name.className = "name";
  name.style.paddingLeft = (16 * depth(s)) + "px"; name.textContent = s.operationName;
  const lane = document.createElement("div"); lane.className = "lane";
  const bar = document.createElement("div"); bar.className = "bar" + (tag(s.tags, "error") ? " err" : "");
  bar.style.left = pct(s.startTime); bar.style.width = (100 * s.duration / span) + "%"; lane.appendChild(bar);
  const dur = document.createElement("div"); dur.className = "dur";
  dur.style.left = "calc(" + pct(s.startTime + s.duration) + " + 4px)"; dur.textContent = (s.duration / 1000).toFixed(2) + " ms";
  if (s.startTime + s.duration - t0 > 0.85 * span) { dur.style.left = "auto"; dur.style.right = "4px"; }
  lane.appendChild(dur);
  for (const l of s.logs || []) {
    const ev = tag(l.fields, "event");
    const tk = document.createElement("div"); tk.className = "tick";
    tk.style.left = pct(l.timestamp); tk.style.background = colors[ev] || "#999"; lane.appendChild(tk);
    all.push([l.timestamp, s.operationName, ev, l.fields.filter(f => f.key !== "event").map(f => f.key + "=" + f.value).join(", ")]);
  }
  row.appendChild(name); row.appendChild(lane); rows.appendChild(row);
}
all.sort((a, b) => a[0] - b[0]);
for (const [ts, sp, ev, f] of all.slice(0, 40)) {
  const r = logs.insertRow(); r.insertCell().textContent = ((ts - t0) / 1000).toFixed(2);
  r.insertCell().textContent = sp; const e = r.insertCell(); e.textContent = ev; e.style.color = colors[ev] || "#999";
  r.insertCell().textContent = f;
}
const done = document.createElement("div"); done.id = "done"; document.body.appendChild(done);
</script></body></html>
`
