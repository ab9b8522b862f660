package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/pcap"
)

const scriptPrelude = "`sysctl -q net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0`\n" +
	"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n" +
	"+0 < S 0:0(0) win 65535 <mss 1000>\n+0 > S. 0:0(0) ack 1 <mss 1460>\n+.1 < . 1:1(0) ack 1 win 65535\n" +
	"+0 accept(3, ..., ...) = 4\n"

func writeScripts(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestScriptCommand: one line per script, the tally last, exit status 1
// when a script failed, and every exchange in the capture.
func TestScriptCommand(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		"pass.pkt": scriptPrelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n",
		"fail.pkt": scriptPrelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 2\n",
		"skip.pkt": "`sysctl -q net.ipv4.tcp_ecn=3`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n",
	})
	p := func(n string) string { return filepath.Join(dir, n) }
	capture := p("out.pcapng")
	code, out, errOut := runCLI(t, "script", "--pcap", capture, p("pass.pkt"), p("fail.pkt"), p("skip.pkt"), p("nosuch.pkt"))
	want := []string{
		p("pass.pkt") + ": PASS",
		p("fail.pkt") + ": FAIL line 10: tcp_ack_seq: expected 2 vs actual 1",
		p("skip.pkt") + ": SKIP: needs net.ipv4.tcp_ecn=3 (Accurate ECN)",
		p("nosuch.pkt") + ": FAIL: open " + p("nosuch.pkt") + ": no such file or directory",
		"1 passed, 2 failed, 1 skipped",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if code != 1 || errOut != "tapstack script: 2 of 4 scripts failed\n" {
		t.Errorf("exit %d, stderr %q; want 1 and the count of failures", code, errOut)
	}
	pkts, err := pcap.ReadFile(capture)
	if err != nil {
		t.Fatal(err)
	}
	// pass.pkt: SYN, SYN-ACK, ACK, data; fail.pkt: the same.
	if len(pkts) != 8 {
		t.Errorf("%d frames in the capture, want 8", len(pkts))
	}
	for i, pk := range pkts {
		if pk.Comment() == "" {
			t.Errorf("frame %d has no comment", i+1)
		}
	}
}

// TestScriptCommandVerbose: -v follows each result with the packets that
// differed and the exchange; a run without failures exits 0.
func TestScriptCommandVerbose(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		"fail.pkt": scriptPrelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 2\n",
		"pass.pkt": scriptPrelude,
	})
	_, out, _ := runCLI(t, "script", "-v", filepath.Join(dir, "fail.pkt"))
	for _, w := range []string{
		"  script packet: 0.100000 > P. 1:11(10) ack 2\n",
		"  actual packet: 0.100000 > P. 1:11(10) ack 1 win ",
		"  exchange:\n",
		"    0.100000 > P. 1:11(10) ack 1 win ",
		"engine: 192.0.2.1:8080-192.0.2.2:40000 send data",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("-v output lacks %q:\n%s", w, out)
		}
	}
	code, out, errOut := runCLI(t, "script", filepath.Join(dir, "pass.pkt"))
	if code != 0 || !strings.HasSuffix(out, "\n1 passed, 0 failed, 0 skipped\n") || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestScriptCommandTestdata: tapstack's own scripts pass from the CLI.
func TestScriptCommandTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "stack", "tcp", "tcptest", "pktscript", "testdata", "*.pkt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata scripts: %v", err)
	}
	code, out, errOut := runCLI(t, append([]string{"script"}, files...)...)
	if code != 0 || strings.Count(out, ": PASS\n") != len(files) {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// TestScriptCommandUsage: no script is a usage error.
func TestScriptCommandUsage(t *testing.T) {
	code, out, errOut := runCLI(t, "script", "-v")
	if code != 2 || out != "" || !strings.HasPrefix(errOut, "tapstack script: want at least one script") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
