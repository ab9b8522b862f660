//go:build linux

package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap/taptest"
)

// unprivileged runs the test binary as the tapstack command with args,
// in ns, as user and group 65534 (nobody) with no capabilities and no
// supplementary groups: what a user who is not root meets. It skips the
// test where that cannot be arranged (no setpriv, not root).
func unprivileged(t *testing.T, ns *taptest.Namespace, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin := unprivilegedBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := ns.Exec(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--", bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "TAPSTACK_CLI_ARGS="+strings.Join(args, " "))
	cmd.Stdin = strings.NewReader("")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

// unprivilegedBinary copies the test binary where user 65534 can run it
// (the build's directory is its owner's alone), once per test.
func unprivilegedBinary(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the command as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux) to run the command as another user")
	}
	dir := t.TempDir()
	// t.TempDir's directory and its parent are 0700.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "tapstack")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestUnprivileged: without CAP_NET_ADMIN, a command that must create a
// TAP device (--create) or attach to one another user owns fails with
// exit status 1 and a message saying what is missing and what to do (the
// README's ip tuntap hint), and leaves no device behind. A persistent
// device with no owner and no group is open to every user, as Linux's
// tun_not_capable allows: the command runs on it.
func TestUnprivileged(t *testing.T) {
	ns := taptest.NewNamespace(t)
	unprivilegedBinary(t) // skip early where it cannot run
	ns.Run(t, "ip", "tuntap", "add", "dev", "tsprivown0", "mode", "tap", "user", "0", "group", "0")
	ns.Run(t, "ip", "tuntap", "add", "dev", "tsprivfree0", "mode", "tap")
	ns.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "tsprivfree0")
	ns.Run(t, "ip", "link", "set", "dev", "tsprivfree0", "up")
	const hint = "(run as root, or create the device for your user first: ip tuntap add dev "
	for _, tc := range []struct {
		args []string
		dev  string // in the hint
	}{
		{[]string{"serve", "--tap", "tsprivown0", "--addr", "192.0.2.2/24"}, "tsprivown0"},
		{[]string{"dial", "--tap", "tsprivown0", "--addr", "192.0.2.2/24", "192.0.2.1:7"}, "tsprivown0"},
		{[]string{"ping", "--tap", "tsprivown0", "--addr", "192.0.2.2/24", "-c", "1", "192.0.2.1"}, "tsprivown0"},
		{[]string{"agent", "--tap", "tsprivown0", "--addr", "192.0.2.2/24"}, "tsprivown0"},
		{[]string{"trace", "--tap", "tsprivown0", "--addr", "192.0.2.2/24"}, "tsprivown0"},
		{[]string{"serve", "--tap", "tsprivnew0", "--create", "--addr", "192.0.2.2/24"}, "tsprivnew0"},
		{[]string{"dial", "--tap", "tsprivnew0", "--create", "--queues", "4", "--addr", "192.0.2.2/24", "192.0.2.1:7"}, "tsprivnew0"},
	} {
		code, out, errOut := unprivileged(t, ns, tc.args...)
		if code != 1 || out != "" ||
			!strings.HasPrefix(errOut, "tapstack "+tc.args[0]+": tap: open \""+tc.dev+"\": creating or attaching to a TAP device needs CAP_NET_ADMIN") ||
			!strings.Contains(errOut, hint+tc.dev+" mode tap user $USER)") {
			t.Errorf("%q as nobody: exit %d, stdout %q, stderr %q; want exit 1 and the missing capability with the ip tuntap hint", tc.args, code, out, errOut)
		}
	}
	code, out, errOut := unprivileged(t, ns, "ping", "--tap", "tsprivfree0", "--addr", "192.0.2.2/24", "-c", "1", "192.0.2.1")
	if code != 0 || !strings.Contains(out, "1 packets transmitted, 1 received") || errOut != "" {
		t.Errorf("ping through a device with no owner, as nobody: exit %d, stdout %q, stderr %q; want the kernel's reply", code, out, errOut)
	}
	// Nothing made: the namespace holds lo and the two devices, as
	// before.
	links := ns.Run(t, "ip", "-o", "link", "show")
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(links), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	if got := strings.Join(names, " "); got != "lo tsprivown0 tsprivfree0" {
		t.Errorf("links in the namespace after the commands: %s; want lo tsprivown0 tsprivfree0", got)
	}
}

// TestUnprivilegedBench: bench over the TAP alone, as a user who cannot
// make its namespace, measures nothing: it fails with exit status 1 and
// says why and what to do, where it printed the skip and exited 0.
func TestUnprivilegedBench(t *testing.T) {
	ns := taptest.NewNamespace(t)
	code, out, errOut := unprivileged(t, ns, "bench", "--link", "tap", "--figures", "echo", "--echo", "10", "--rounds", "1")
	if code != 1 || !strings.Contains(out, "TAP with the kernel as the peer skipped: the process lacks CAP_NET_ADMIN") ||
		errOut != "tapstack bench: nothing measured: TAP with the kernel as the peer skipped: the process lacks CAP_NET_ADMIN (run as root, or measure in memory with --link pipe)\n" {
		t.Errorf("bench --link tap as nobody: exit %d, stdout %q, stderr %q; want exit 1 and what was skipped", code, out, errOut)
	}
}
