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
// console error or exception and asks nothing of the network or the disk
// (it is self-contained), its charts have their elements, hovering a
// data segment shows its frame, every retransmission, drop and probe is
// drawn however many data segments were merged, no title is under a
// legend, axes of bytes and entries show whole numbers, the view opens
// on the frames, and a screenshot of each is kept as the test's artifact
// (go test -artifacts, or TAPSTACK_ARTIFACTS=dir).
func TestBrowser(t *testing.T) {
	chromium(t)
	common := []string{"zoom", "svg.tsg", "svg.tsg g.plot path.ack", "svg.cwnd g.plot path.inflight", "svg.states rect", "svg.ladder line.arrow"}
	data := []string{"svg.tsg g.plot path.data", "svg.tsg g.plot path.rwnd", "svg.rtt g.plot path.srtt", "svg.rtt g.plot path.rto", "tooltip with a frame number"}
	engine := []string{"svg.cwnd g.plot path.cwnd"}
	cases := []struct {
		name, capture string
		selectors     [][]string
	}{
		// TIME-WAIT ends 100 ms after the last frame, named at the
		// state timeline's edge (text.later).
		{"close-tapstack-first", "testdata/close-tapstack-first.pcapng", [][]string{common, data, engine, {"svg.states text.later"}}},
		{"loss-sack", "testdata/loss-sack.pcapng", [][]string{common, data, engine, {
			"svg.tsg g.plot path.retx", "svg.tsg g.plot path.drop", "svg.tsg g.plot path.sack",
			"svg.cwnd g.plot path.ssthresh", "svg.cwnd g.plot path.recovery"}}},
		{"zero-window", "testdata/zero-window.pcapng", [][]string{common, data, engine, {"svg.tsg g.plot path.probe"}}},
		// The accept queue's limit of 1 is drawn beside a SYN queue
		// limit of 1024 that is not.
		{"accept-queue-full", "testdata/accept-queue-full.pcapng", [][]string{common, {"svg.queues g.plot path.synq", "svg.queues g.plot path.accq", "svg.queues circle.decision.bad", "svg.queues g.plot path.accq.limit"}}},
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
	// ... and what a page asks of the network (nothing listens on port
	// 9 here: the requests fail at once) or of other files.
	external := filepath.Join(dir, "external.html")
	os.WriteFile(external, []byte(`<!DOCTYPE html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css"></head>`+
		`<body><img src="other.png"><script src="http://127.0.0.1:9/x.js"></script></body>`), 0o644)
	if res := b.open(t, external, nil); len(res.external) != 3 {
		t.Fatalf("a page with a style sheet, an image and a script elsewhere asked for %q", res.external)
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
	// In a narrow window (charts at their least width, 760 px), legends
	// that do not fit beside their titles go below them.
	t.Run("narrow", func(t *testing.T) {
		page := filepath.Join(dir, "narrow.html")
		if _, err := plot.File("testdata/loss-sack.pcapng", page); err != nil {
			t.Fatal(err)
		}
		res := openPage(t, page, []string{"svg.tsg g.legend text"}, 800)
		for _, e := range append(res.errors, res.layout...) {
			t.Errorf("browser: %s", e)
		}
		if res.counts["svg.tsg g.legend text"] == 0 {
			t.Error("no legend on the time-sequence graph")
		}
		saveArtifact(t, "narrow.png", res.shot)
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
			for _, u := range res.external {
				t.Errorf("the page asked for %s: it is not self-contained", u)
			}
			for _, l := range res.layout {
				t.Errorf("layout: %s", l)
			}
			// The view opens on the frames and the engine's changes
			// before them (a connect waits for ARP): it ends at the last
			// frame (2% padding), not at the end of TIME-WAIT.
			if span := res.frames[1] - res.frames[0]; res.view[1] > res.frames[1]+span*0.1 {
				t.Errorf("the time axis runs %v, the frames %v", res.view, res.frames)
			}
			// At 5% loss the transfer takes 30 ms of the page's 1.03 s:
			// its 180 data segments fall on a few dozen pixel columns
			// and are merged, while every event stays drawn (open
			// checks them against the page's data).
			if m := res.marks; tc.name == "loss-sack" && (m["dataDrawn"] >= m["data"] || m["retx"] == 0 || m["drops"] == 0) {
				t.Errorf("nothing merged, or no events to keep: %v", m)
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
