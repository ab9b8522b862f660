package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutputPathsFirst: a file a command is to write (--pcap, --plot,
// --cpuprofile, --trace) that cannot be written, in a directory that does
// not exist or over a directory, fails the command with exit status 1 and
// a message naming the flag before any work is done: no trace, no table,
// no device looked up (the TAP cases fail on a missing device otherwise),
// and no file of the command's left behind.
func TestOutputPathsFirst(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "out")
	capture := filepath.Join(dir, "ok.pcapng")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"demo", "--pcap", missing + ".pcapng"}, "tapstack demo: --pcap: open " + missing + ".pcapng: no such file or directory"},
		{[]string{"demo", "--pcap", dir}, "tapstack demo: --pcap: open " + dir + ": is a directory"},
		// The page was written at the end, after the whole run.
		{[]string{"demo", "--pcap", capture, "--plot", missing + ".html"}, "tapstack demo: --plot: open " + missing + ".html: no such file or directory"},
		// The capture kept beside the page is in the missing directory
		// too.
		{[]string{"demo", "--plot", missing + ".html"}, "tapstack demo: --pcap: open " + missing + ".pcapng: no such file or directory"},
		{[]string{"trace", "--pcap", capture, "--plot", missing + ".html"}, "tapstack trace: --plot: open " + missing + ".html: no such file or directory"},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--pcap", missing + ".pcapng"}, "tapstack serve: --pcap: open " + missing + ".pcapng: no such file or directory"},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--pcap", capture, "--plot", missing + ".html", "192.0.2.1:7"}, "tapstack dial: --plot: open " + missing + ".html: no such file or directory"},
		{[]string{"agent", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--plot", dir}, "tapstack agent: --plot: open " + dir + ": is a directory"},
		{[]string{"bench", "--link", "pipe", "--figures", "echo", "--rounds", "1", "--echo", "10", "--cpuprofile", missing + ".prof"}, "tapstack bench: --cpuprofile: open " + missing + ".prof: no such file or directory"},
		{[]string{"bench", "--link", "pipe", "--figures", "echo", "--rounds", "1", "--echo", "10", "--trace", dir}, "tapstack bench: --trace: open " + dir + ": is a directory"},
		{[]string{"script", "--pcap", missing + ".pcapng", "a.pkt"}, "tapstack script: --pcap: open " + missing + ".pcapng: no such file or directory"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, tc.msg) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, stderr starting %q", tc.args, code, out, errOut, tc.msg)
		}
		if _, err := os.Stat(capture); err == nil {
			t.Errorf("%q left %s behind", tc.args, capture)
			os.Remove(capture)
		}
	}
}
