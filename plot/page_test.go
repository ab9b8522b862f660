package plot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapstack/tapstack/plot"
)

// The pages of the scenarios' captures, and of a capture without
// annotations, opened in headless Chromium: each renders without a
// console error or exception, its charts have their elements, hovering a
// data segment shows its frame, and a screenshot of each is kept as the
// test's artifact (go test -artifacts, or TAPSTACK_ARTIFACTS=dir).
func TestBrowser(t *testing.T) {
	chromium(t)
	common := []string{"zoom", "svg.tsg", "svg.tsg g.plot path.ack", "svg.cwnd g.plot path.inflight", "svg.states rect", "svg.ladder line.arrow"}
	data := []string{"svg.tsg g.plot path.data", "svg.tsg g.plot path.rwnd", "svg.rtt g.plot path.srtt", "svg.rtt g.plot path.rto", "tooltip with a frame number"}
	engine := []string{"svg.cwnd g.plot path.cwnd"}
	cases := []struct {
		name, capture string
		selectors     [][]string
	}{
		{"close-tapstack-first", "testdata/close-tapstack-first.pcapng", [][]string{common, data, engine}},
		{"loss-sack", "testdata/loss-sack.pcapng", [][]string{common, data, engine, {
			"svg.tsg g.plot path.retx", "svg.tsg g.plot path.drop", "svg.tsg g.plot path.sack",
			"svg.cwnd g.plot path.ssthresh", "svg.cwnd g.plot path.recovery"}}},
		{"zero-window", "testdata/zero-window.pcapng", [][]string{common, data, engine, {"svg.tsg g.plot path.probe"}}},
		{"accept-queue-full", "testdata/accept-queue-full.pcapng", [][]string{common, {"svg.queues g.plot path.synq", "svg.queues g.plot path.accq", "svg.queues circle.decision.bad"}}},
		{"tcpdump", "", [][]string{common, data, {"svg.tsg g.plot path.retx"}}},
	}
	dir := t.TempDir()
	b := newBrowser(t, 1400) // one browser, a tab per page
	defer b.cancel()
	// The harness sees what goes wrong in a page.
	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<!DOCTYPE html><body><script>console.error("boom"); null.x;</script></body>`), 0o644)
	if res := b.open(t, bad, nil); len(res.errors) != 2 || res.rendered {
		t.Fatalf("a page with a console error and an exception: %q, rendered %v", res.errors, res.rendered)
	}
	// A page of many connections draws the first twelve at once and the
	// others when asked.
	t.Run("many-connections", func(t *testing.T) {
		d, err := plot.ReadFile("testdata/close-tapstack-first.pcapng")
		if err != nil {
			t.Fatal(err)
		}
		for len(d.Conns) < 15 {
			d.Conns = append(d.Conns, d.Conns[0])
		}
		page := filepath.Join(dir, "many.html")
		var buf bytes.Buffer
		if err := plot.WriteHTML(&buf, d); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(page, buf.Bytes(), 0o644)
		res := b.open(t, page, []string{"section.conn", "svg.tsg", "section.conn button"})
		for _, e := range res.errors {
			t.Errorf("browser: %s", e)
		}
		if res.counts["section.conn"] != 15 || res.counts["svg.tsg"] != 12 || res.counts["section.conn button"] != 3 {
			t.Errorf("15 connections: %v", res.counts)
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			capture := tc.capture
			if capture == "" {
				capture = filepath.Join(dir, "tcpdump.pcap")
				writeLikeTcpdump(t, "testdata/loss-sack.pcapng", capture)
			}
			page := filepath.Join(dir, tc.name+".html")
			d, err := plot.File(capture, page)
			if err != nil {
				t.Fatal(err)
			}
			var selectors []string
			for _, s := range tc.selectors {
				selectors = append(selectors, s...)
			}
			res := b.open(t, page, selectors)
			shot := saveArtifact(t, tc.name+".png", res.shot)
			t.Logf("%d connections drawn in %v; screenshot %s", len(d.Conns), res.took, shot)
			for _, e := range res.errors {
				t.Errorf("browser: %s", e)
			}
			if !res.rendered {
				t.Error("the page's script did not finish (body[data-rendered] unset)")
			}
			for _, sel := range selectors {
				if res.counts[sel] == 0 {
					t.Errorf("no %s on the page", sel)
				}
			}
			if !bytes.HasPrefix(res.shot, []byte("\x89PNG")) {
				t.Error("the screenshot is not a PNG")
			}
			if os.Getenv("TAPSTACK_PLOT_KEEP") != "" {
				b, _ := os.ReadFile(page)
				saveArtifact(t, tc.name+".html", b)
			}
		})
	}
}
