package plot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapstack/tapstack/plot"
)

// The page of a lossy transfer, opened in headless Chromium: it renders
// without a console error or exception, every chart has its elements,
// hovering a segment shows its frame, and a screenshot is kept as the
// test's artifact.
func TestBrowser(t *testing.T) {
	chromium(t)
	dir := t.TempDir()
	path := scenarioNamed("loss-sack").capture(t, dir)
	page := filepath.Join(dir, "loss-sack.html")
	d, err := plot.File(path, page)
	if err != nil {
		t.Fatal(err)
	}
	selectors := []string{
		"svg.tsg", "svg.tsg path.data", "svg.tsg path.ack", "svg.tsg path.rwnd", "svg.tsg path.sack",
		"svg.tsg path.retx", "svg.tsg path.drop",
		"svg.cwnd path.cwnd", "svg.cwnd path.ssthresh", "svg.cwnd path.inflight",
		"svg.rtt path.srtt", "svg.rtt path.rto",
		"svg.states rect", "svg.ladder line.arrow",
	}
	res := openPage(t, page, selectors, 1400)
	shot := saveArtifact(t, "loss-sack.png", res.shot)
	t.Logf("page %s (%d connections) drawn in %v; screenshot %s", page, len(d.Conns), res.took, shot)
	for _, e := range res.errors {
		t.Errorf("browser: %s", e)
	}
	if !res.rendered {
		t.Error("the page's script did not finish (body[data-rendered] unset)")
	}
	for _, sel := range append(selectors, "tooltip with a frame number") {
		if res.counts[sel] == 0 {
			t.Errorf("no %s on the page", sel)
		}
	}
	if !bytes.HasPrefix(res.shot, []byte("\x89PNG")) {
		t.Error("the screenshot is not a PNG")
	}
	if os.Getenv("TAPSTACK_PLOT_KEEP") != "" {
		b, _ := os.ReadFile(page)
		saveArtifact(t, "loss-sack.html", b)
	}
}
