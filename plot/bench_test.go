package plot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/plot"
)

// bigCapture is a 64 MiB transfer from tapstack to gVisor at 5% loss both
// ways, captured on tapstack's end; made once per run of the benchmarks.
var bigCapture struct {
	once sync.Once
	dir  string
	path string
}

// TestMain removes the benchmarks' capture, if one was made.
func TestMain(m *testing.M) {
	code := m.Run()
	if bigCapture.dir != "" {
		os.RemoveAll(bigCapture.dir)
	}
	os.Exit(code)
}

func lossy64(b *testing.B) string {
	b.Helper()
	bigCapture.once.Do(func() {
		dir, err := os.MkdirTemp("", "tapstack-plot-bench-")
		if err != nil {
			b.Fatal(err)
		}
		bigCapture.dir = dir
		bigCapture.path = captureScenario(b, pcaptest.Lossy("lossy-64MiB", 64<<20, 11), dir, 0)
	})
	if bigCapture.path == "" {
		b.Fatal("no capture")
	}
	return bigCapture.path
}

// BenchmarkPlotLossy64MiB draws the page of a 64 MiB lossy transfer: read
// the capture, build the page's data, write the HTML. The issue asks for
// under 5 s; ns/op says how long it takes here.
func BenchmarkPlotLossy64MiB(b *testing.B) {
	path := lossy64(b)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var page bytes.Buffer
	var d *plot.Data
	for b.Loop() {
		page.Reset()
		if d, err = plot.ReadFile(path); err != nil {
			b.Fatal(err)
		}
		if err := plot.WriteHTML(&page, d); err != nil {
			b.Fatal(err)
		}
	}
	segs := 0
	for _, c := range d.Conns {
		segs += len(c.Segs)
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "capture-MiB")
	b.ReportMetric(float64(page.Len())/(1<<20), "page-MiB")
	b.ReportMetric(float64(segs), "segments")
	b.ReportMetric(float64(d.Events), "events")
}

// BenchmarkOpenLossy64MiB opens that page in headless Chromium: ns/op is
// from navigation until the page's script has drawn every chart.
func BenchmarkOpenLossy64MiB(b *testing.B) {
	chromium(b)
	path := lossy64(b)
	page := filepath.Join(bigCapture.dir, "lossy-64MiB.html")
	if _, err := plot.File(path, page); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res := openPage(b, page, nil, 1400)
		if len(res.errors) > 0 || !res.rendered {
			b.Fatalf("rendered %v, errors %v", res.rendered, res.errors)
		}
		b.ReportMetric(float64(res.took.Milliseconds()), "ms-to-draw")
		b.ReportMetric(res.times["total"], "ms-script")
		b.ReportMetric(res.times["parse"], "ms-parse")
		b.Logf("script timings (ms): %v; time-sequence graph: %v", res.times, res.marks)
	}
}
