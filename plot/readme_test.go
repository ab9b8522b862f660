package plot_test

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/plot"
)

// TestReadmeScreenshot makes docs/plot-lossy.png, README.md's picture of
// a lossy transfer: 2 MiB from tapstack to gVisor at 5% loss both ways,
// zoomed to the transfer (#t=from,to in the page's address). It runs only
// when asked (TAPSTACK_README_SCREENSHOT=1): a new picture is a change to
// review, not a test result.
func TestReadmeScreenshot(t *testing.T) {
	if os.Getenv("TAPSTACK_README_SCREENSHOT") == "" {
		t.Skip("TAPSTACK_README_SCREENSHOT=1 rewrites docs/plot-lossy.png")
	}
	chromium(t)
	dir := t.TempDir()
	path := captureScenario(t, pcaptest.Lossy("lossy-2MiB", 2<<20, 21), dir, 0)
	page := filepath.Join(dir, "lossy-2MiB.html")
	d, err := plot.File(path, page)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Conns[0]
	from, to := -1.0, 0.0
	for _, s := range c.Segs {
		if s.Dir == 0 && s.Len > 0 {
			if from < 0 {
				from = s.T
			}
			to = s.T
		}
	}
	pad := (to - from) * 0.03
	res := openPage(t, fmt.Sprintf("%s#t=%.6f,%.6f", page, from-pad, to+pad), nil, 1400)
	for _, e := range res.errors {
		t.Errorf("browser: %s", e)
	}
	img, err := png.Decode(bytes.NewReader(res.shot))
	if err != nil {
		t.Fatal(err)
	}
	// The header and the charts of the connection, without the ladder.
	b := img.Bounds()
	crop := img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(image.Rect(0, 0, b.Dx(), min(b.Dy(), 1330)))
	var out bytes.Buffer
	if err := png.Encode(&out, crop); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "plot-lossy.png"), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("docs/plot-lossy.png: %d bytes; %d segments, %d retransmitted", out.Len(), len(c.Segs), c.Flows[0].Retransmit)
}
