package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

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
