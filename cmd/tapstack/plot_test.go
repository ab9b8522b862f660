package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/plot"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

func readPage(t *testing.T, path string) *plot.Data {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := plot.Extract(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tapstack plot draws a saved capture; its usage errors exit 2, a capture
// it cannot read exits 1.
func TestPlotCommand(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "..", "plot", "testdata", "loss-sack.pcapng")
	out := filepath.Join(dir, "page.html")
	code, stdout, stderr := runCmd(t, "plot", "-o", out, src)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "1 connections") || !strings.Contains(stdout, "engine events") || !strings.Contains(stdout, out) {
		t.Errorf("stdout %q", stdout)
	}
	if d := readPage(t, out); len(d.Conns) != 1 || !d.Annotated {
		t.Errorf("page: %d connections, annotated %v", len(d.Conns), d.Annotated)
	}

	// Without -o, the page goes beside the capture.
	cp := filepath.Join(dir, "copy.pcapng")
	b, _ := os.ReadFile(src)
	os.WriteFile(cp, b, 0o644)
	if code, _, stderr := runCmd(t, "plot", cp); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "copy.html")); err != nil {
		t.Error(err)
	}

	if code, _, stderr := runCmd(t, "plot"); code != 2 || !strings.Contains(stderr, "tapstack plot: want 1 argument") {
		t.Errorf("no argument: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runCmd(t, "plot", filepath.Join(dir, "missing.pcapng")); code != 1 || !strings.HasPrefix(stderr, "tapstack plot: ") {
		t.Errorf("missing capture: exit %d, %q", code, stderr)
	}
	os.WriteFile(filepath.Join(dir, "junk.pcapng"), []byte("not a capture at all"), 0o644)
	if code, _, stderr := runCmd(t, "plot", filepath.Join(dir, "junk.pcapng")); code != 1 || !strings.Contains(stderr, "not a pcapng or pcap file") {
		t.Errorf("junk: exit %d, %q", code, stderr)
	}
}

// tapstack demo --plot draws the demo's capture when it ends, with or
// without --pcap.
func TestDemoPlot(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "demo.html")
	code, _, stderr := runCmd(t, "demo", "--timewait", "10ms", "--plot", page)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	d := readPage(t, page)
	if len(d.Conns) != 1 || !d.Annotated || len(d.Listeners) != 1 {
		t.Fatalf("page: %d connections, %d listeners, annotated %v", len(d.Conns), len(d.Listeners), d.Annotated)
	}
	c := d.Conns[0]
	if n := len(c.States[0]); n == 0 || c.States[0][n-1].To != "CLOSED" {
		t.Errorf("the server's states end in %+v", c.States[0])
	}
	if !strings.Contains(stderr, "plot of 1 connections written to "+page+" (capture "+filepath.Join(dir, "demo.pcapng")+")") {
		t.Errorf("stderr %q", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "demo.pcapng")); err != nil {
		t.Errorf("the capture beside the page: %v", err)
	}
	pc := filepath.Join(dir, "other.pcapng")
	if code, _, stderr := runCmd(t, "demo", "--timewait", "10ms", "--pcap", pc, "--plot", page); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(pc); err != nil {
		t.Errorf("--pcap with --plot: %v", err)
	}
	if code, _, stderr := runCmd(t, "demo", "--plot", filepath.Join(dir, "page.pcapng")); code != 1 || !strings.Contains(stderr, "would overwrite its capture") {
		t.Errorf("--plot x.pcapng: exit %d, %q", code, stderr)
	}
}

// TestPlotCutShort: a capture that ends inside a frame, as one whose
// writer was killed, is drawn up to the cut, and the command fails, exit
// status 1, naming the file and the frame cut short; it failed with
// "plot: frame N: unexpected EOF" and drew nothing. A file cut inside
// its first block has nothing to draw.
func TestPlotCutShort(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("..", "..", "plot", "testdata", "loss-sack.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(dir, "whole.pcapng")
	os.WriteFile(whole, b, 0o644)
	if code, _, stderr := runCmd(t, "plot", whole); code != 0 {
		t.Fatalf("whole capture: exit %d, %s", code, stderr)
	}
	all := readPage(t, filepath.Join(dir, "whole.html"))
	cut := filepath.Join(dir, "cut.pcapng")
	os.WriteFile(cut, b[:len(b)/2], 0o644)
	code, stdout, stderr := runCmd(t, "plot", cut)
	if code != 1 || !strings.HasPrefix(stdout, cut+": 1 connections, ") ||
		!regexp.MustCompile(`^tapstack plot: `+regexp.QuoteMeta(cut)+`: capture cut short in frame (\d+) \(the file ends inside it\); the \d+ frames before it are drawn\n$`).MatchString(stderr) {
		t.Fatalf("cut capture: exit %d, stdout %q, stderr %q; want 1, the page's line, and the frame cut short", code, stdout, stderr)
	}
	d := readPage(t, filepath.Join(dir, "cut.html"))
	if d.Frames == 0 || d.Frames >= all.Frames || len(d.Conns) != 1 {
		t.Errorf("page of the cut capture: %d frames (the whole has %d), %d connections", d.Frames, all.Frames, len(d.Conns))
	}
	os.WriteFile(cut, b[:20], 0o644)
	if code, stdout, stderr := runCmd(t, "plot", cut); code != 1 || stdout != "" || !strings.HasPrefix(stderr, "tapstack plot: "+cut+": ") {
		t.Errorf("capture cut in its first block: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestPlotNoTCP: a capture with no TCP in it (one ARP request, classic
// pcap) is drawn as a page of no connections, and the line says so: not
// an error, as Wireshark opens it.
func TestPlotNoTCP(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	b = append(b, 0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0) // pcap, Ethernet
	b = append(b, 1, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 42, 0, 0, 0)                                         // one frame of 42 bytes
	arp := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 2, 0x08, 0x06, // broadcast, ARP
		0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 2, 192, 0, 2, 2, // request from 192.0.2.2
		0, 0, 0, 0, 0, 0, 192, 0, 2, 1, // for 192.0.2.1
	}
	b = append(b, arp...)
	capture := filepath.Join(dir, "arp.pcap")
	os.WriteFile(capture, b, 0o644)
	code, stdout, stderr := runCmd(t, "plot", capture)
	if code != 0 || stderr != "" || stdout != capture+": 0 connections, 1 frames, no engine events (states and marks from the wire) → "+filepath.Join(dir, "arp.html")+"\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if d := readPage(t, filepath.Join(dir, "arp.html")); len(d.Conns) != 0 || d.Frames != 1 {
		t.Errorf("page: %d connections, %d frames", len(d.Conns), d.Frames)
	}
}
