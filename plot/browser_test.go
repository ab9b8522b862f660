package plot_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's Chromium (.ci/run installs the package).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromium skips the test without Chromium.
func chromium(t testing.TB) string {
	t.Helper()
	p := chromiumPath()
	if p == "" {
		t.Skip("no Chromium in PATH (apt-get install chromium; .ci/run installs it): the page is not opened in a browser")
	}
	return p
}

// browserResult is what a page showed in headless Chromium.
type browserResult struct {
	errors   []string       // console errors and uncaught exceptions
	counts   map[string]int // elements per selector
	rendered bool
	took     time.Duration      // from navigation until the page had drawn
	times    map[string]float64 // the script's own timings (window.tapstackTimes), ms
	marks    map[string]int     // events and data segments of the first graph, in the data and drawn
	shot     []byte             // full-page PNG
	// external lists what the page asked the network or the disk for,
	// other than itself and data: URLs: a self-contained page asks for
	// nothing.
	external []string
	// layout lists what is drawn wrong: a chart's title overlapping its
	// legend, a fraction or a negative number on an axis of bytes or
	// queue entries.
	layout []string
	// view is the first connection's time axis as drawn, [first tick,
	// last tick], and its first and last frame's time.
	view, frames [2]float64
}

// browser is one headless Chromium, run as Debian's package runs as
// root: no sandbox, no GPU, no background networking (the machine has no
// network), a fresh profile. Each page opens in a tab of its own.
type browser struct {
	ctx    context.Context
	cancel func()
}

func newBrowser(t testing.TB, width int) *browser {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, 1000),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first Run starts the browser; it must not run under a timeout
	// (chromedp.Run's rule): the steps after it do.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelA()
		t.Fatalf("chromium: %v", err)
	}
	return &browser{ctx: ctx, cancel: func() { cancel(); cancelA() }}
}

// openPage opens the page at path in a browser of its own.
func openPage(t testing.TB, path string, selectors []string, width int) browserResult {
	t.Helper()
	b := newBrowser(t, width)
	defer b.cancel()
	return b.open(t, path, selectors)
}

// open opens the page at path (with an optional #fragment) in a new tab.
func (b *browser) open(t testing.TB, path string, selectors []string) browserResult {
	t.Helper()
	path, hash, _ := strings.Cut(path, "#")
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	if hash != "" {
		abs += "#" + hash
	}
	var mu sync.Mutex
	res := browserResult{counts: map[string]int{}}
	self := "file://" + (&url.URL{Path: abs}).EscapedPath()
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			u, _, _ := strings.Cut(ev.Request.URL, "#")
			if u != self && !strings.HasPrefix(u, "data:") {
				res.external = append(res.external, ev.Request.URL)
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == "error" || ev.Type == "warning" || ev.Type == "assert" {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				res.errors = append(res.errors, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			res.errors = append(res.errors, fmt.Sprintf("exception at %d:%d: %s", d.LineNumber, d.ColumnNumber, msg))
		}
	}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(listen))
	defer cancel()
	// The first Run makes the tab, and must not run under a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	tctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()
	start := time.Now()
	if err := chromedp.Do(tctx, chromedp.Navigate("file://"+abs), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	rendered, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.getAttribute('data-rendered') || ''`))
	if err != nil {
		t.Fatal(err)
	}
	res.took = time.Since(start)
	res.rendered = rendered == "true"
	if res.times, err = chromedp.Run(tctx, chromedp.Evaluate[map[string]float64](`window.tapstackTimes || {}`)); err != nil {
		t.Fatal(err)
	}
	for _, sel := range selectors {
		n, err := chromedp.Run(tctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
		if err != nil {
			t.Fatal(err)
		}
		res.counts[sel] = n
	}
	// The screenshot shows the page as it opened, before the hovering
	// and zooming below.
	if res.shot, err = chromedp.Run(tctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	// Hover over the first time-sequence graph's first data bar: a
	// tooltip must appear with a frame number.
	tipText, err := chromedp.Run(tctx, chromedp.Evaluate[string](`(function(){
		var o = document.querySelector('svg.tsg .overlay'); if (!o) return '';
		var items = document.querySelector('svg.tsg g.plot path.data'); if (!items) return '';
		var d = items.getAttribute('d').match(/M([\d.]+) ([\d.]+)V([\d.]+)/); if (!d) return '';
		var svg = o.ownerSVGElement, r = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
		var x = r.left + (+d[1]) * r.width / vb.width, y = r.top + ((+d[2] + +d[3]) / 2) * r.height / vb.height;
		o.dispatchEvent(new MouseEvent('mousemove', {clientX: x, clientY: y, bubbles: true}));
		var tip = document.getElementById('tip');
		return tip.hidden ? '' : tip.textContent;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	res.counts["tooltip with a frame number"] = 0
	if strings.Contains(tipText, "frame") {
		res.counts["tooltip with a frame number"] = 1
	}
	// Drag across the middle of the first time-sequence graph: every
	// chart of the connection zooms to the same time range; a double
	// click zooms back out.
	zoom, err := chromedp.Run(tctx, chromedp.Evaluate[[]string](`(function(){
		function first(sel) { var e = document.querySelector(sel); return e ? e.textContent : ''; }
		var o = document.querySelector('svg.tsg .overlay'); if (!o) return [];
		var r = o.getBoundingClientRect(), y = r.top + r.height / 2;
		var before = first('svg.tsg .axis text');
		o.dispatchEvent(new MouseEvent('mousedown', {clientX: r.left + r.width * 0.4, clientY: y, bubbles: true}));
		o.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + r.width * 0.6, clientY: y, bubbles: true}));
		window.dispatchEvent(new MouseEvent('mouseup', {clientX: r.left + r.width * 0.6, clientY: y, bubbles: true}));
		var zoomed = first('svg.tsg .axis text'), other = first('svg.states .axis text');
		o.dispatchEvent(new MouseEvent('dblclick', {bubbles: true}));
		return [before, zoomed, other, first('svg.tsg .axis text')];
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	res.counts["zoom"] = 0
	if len(zoom) == 4 && zoom[0] != zoom[1] && zoom[1] == zoom[2] && zoom[3] == zoom[0] {
		res.counts["zoom"] = 1
	} else {
		t.Logf("zoom: first time tick before, zoomed, on the state chart, after a double click: %q", zoom)
	}
	// Every event is drawn, however many data segments were merged: the
	// first time-sequence graph's retransmission bars and drop marks
	// against the page's own data.
	marks, err := chromedp.Run(tctx, chromedp.Evaluate[map[string]int](`(function(){
		var el = document.getElementById('tapstack-data'), svg = document.querySelector('svg.tsg');
		if (!el || !svg) return {};
		var D = JSON.parse(el.textContent); if (!D.conns || !D.conns.length) return {};
		var c = D.conns[0], d = c.flows[1].bytes > c.flows[0].bytes ? 1 : 0, out = {retx: 0, drops: 0, probes: 0, data: 0};
		c.segs.forEach(function (s) {
			if ((s.d || 0) !== d) return;
			if (s.x) out.drops++;
			if (s.m === 'retx' && s.l) out.retx++;
			else if (s.m === 'probe') out.probes++;
			else if (!s.x && s.l && !s.m) out.data++;
		});
		function count(cls) { var p = svg.querySelector('g.plot path.' + cls); return p ? (p.getAttribute('d').match(/M/g) || []).length : 0; }
		out.retxDrawn = count('retx'); out.dropsDrawn = count('drop'); out.probesDrawn = count('probe'); out.dataDrawn = count('data');
		return out;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	res.marks = marks
	if marks["retxDrawn"] != marks["retx"] || marks["dropsDrawn"] != marks["drops"] || marks["probesDrawn"] != marks["probes"] {
		t.Errorf("events on the time-sequence graph: %v", marks)
	}
	// The layout: no chart's title under its legend (each legend text's
	// box against the title's), no "0.5" or "-1" on an axis of bytes
	// (KiB and MiB carry their unit: "1.5 KiB" is fine) or entries.
	if res.layout, err = chromedp.Run(tctx, chromedp.Evaluate[[]string](`(function(){
		var bad = [];
		function hit(a, b) { return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom; }
		document.querySelectorAll('svg.chart').forEach(function (svg) {
			var sb = svg.getBoundingClientRect(), name = svg.getAttribute('class');
			svg.querySelectorAll(':scope > text.title').forEach(function (title) {
				var tb = title.getBoundingClientRect();
				if (tb.right > sb.right + 1) bad.push(name + ': title "' + title.textContent + '" wider than the chart');
				svg.querySelectorAll('g.legend text').forEach(function (l) {
					if (hit(tb, l.getBoundingClientRect())) bad.push(name + ': title "' + title.textContent + '" under legend "' + l.textContent + '"');
				});
			});
		});
		document.querySelectorAll('svg.tsg .axis text[text-anchor=end], svg.cwnd .axis text[text-anchor=end], svg.queues .axis text[text-anchor=end]').forEach(function (l) {
			if (/^-|^\d+\.\d+$/.test(l.textContent)) bad.push(l.ownerSVGElement.getAttribute('class') + ': axis label ' + l.textContent);
		});
		return bad;
	})()`)); err != nil {
		t.Fatal(err)
	}
	// The first connection's time axis and frames.
	view, err := chromedp.Run(tctx, chromedp.Evaluate[[]float64](`(function(){
		var el = document.getElementById('tapstack-data'), svg = document.querySelector('svg.states');
		if (!el || !svg) return [];
		var D = JSON.parse(el.textContent), segs = D.conns[0].segs, ticks = [];
		svg.querySelectorAll('.axis text[text-anchor=middle]').forEach(function (l) { ticks.push(parseFloat(l.textContent)); });
		if (!ticks.length || !segs.length) return [];
		return [Math.min.apply(null, ticks), Math.max.apply(null, ticks), segs[0].t, segs[segs.length - 1].t];
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(view) == 4 {
		res.view, res.frames = [2]float64{view[0], view[1]}, [2]float64{view[2], view[3]}
	}
	mu.Lock()
	defer mu.Unlock()
	return res
}

// saveArtifact writes a test's output file to its artifact directory
// (go test -artifacts keeps it) and, when TAPSTACK_ARTIFACTS names a
// directory, there too.
func saveArtifact(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("TAPSTACK_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			p = filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}
