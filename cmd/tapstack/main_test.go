package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// runCLI runs the CLI as main would and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	code = run(ctx, env{stdin: strings.NewReader(""), stdout: &o, stderr: &e}, args)
	return code, o.String(), e.String()
}

func TestDemo(t *testing.T) {
	code, out, errOut := runCLI(t, "demo", "-timewait", "100ms", "-text", "ping\n")
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"TIME-WAIT 100ms",
		"client 192.0.2.2:",
		"send SYN:",
		"SYN queued",
		"SYN-RECEIVED -> ESTABLISHED",
		"FIN-WAIT-2 -> TIME-WAIT",
		"TIME-WAIT -> CLOSED (timer time-wait)",
		`echo matched: "ping\n"`,
		"both connections CLOSED",
		"server: segments in",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Every trace line starts with a timestamp relative to the start.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " -> ") && !strings.Contains(strings.Fields(line)[0], "ms") {
			t.Errorf("trace line without timestamp: %q", line)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

func TestUsage(t *testing.T) {
	code, _, errOut := runCLI(t)
	if code != 2 {
		t.Errorf("no arguments: exit %d, want 2", code)
	}
	for _, c := range commands() {
		if !strings.Contains(errOut, "\t"+c.name+" ") {
			t.Errorf("usage does not list %q:\n%s", c.name, errOut)
		}
	}
	for _, name := range []string{"demo", "serve", "dial", "ss", "trace", "bench", "agent"} {
		if !strings.Contains(errOut, name) {
			t.Errorf("usage does not mention %q", name)
		}
	}

	code, out, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(out, "Commands:") {
		t.Errorf("help: exit %d, stdout %q; want 0 and the usage", code, out)
	}
}

func TestUnknownCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "frobnicate")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing", out)
	}
	if !strings.Contains(errOut, `unknown command "frobnicate"`) || !strings.Contains(errOut, "Commands:") {
		t.Errorf("stderr = %q, want the unknown command and the usage", errOut)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "-nosuchflag"},
		{"demo", "extra"},
		{"dial", "-tap", "tap0", "-addr", "192.0.2.2/24"}, // no host:port
	} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCLI(t, "serve", "-mode", "chargen", "-tap", "x", "-addr", "192.0.2.2/24"); code != 1 || !strings.Contains(errOut, "echo or discard") {
		t.Errorf("serve -mode chargen: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "serve", "-addr", "192.0.2.2/24"); code != 1 || !strings.Contains(errOut, "-tap is required") {
		t.Errorf("serve without -tap: exit %d, stderr %q", code, errOut)
	}
}
