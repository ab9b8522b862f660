package main

import (
	"bytes"
	"context"
	"regexp"
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
		"client 192.0.2.2.",
		" > 192.0.2.1.7: SYN: Flags [S]",
		"SYN queued",
		"SYN-RECEIVED → ESTABLISHED",
		"FIN-WAIT-2 → TIME-WAIT",
		"TIME-WAIT → CLOSED",
		`echo matched: "ping\n"`,
		"both connections CLOSED",
		"server: segments in",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// TIME-WAIT ends on its timer; or, when an ACK took longer than
	// the probe timeout (a loaded machine, -race), the server's tail
	// loss probe resent its FIN, the client in TIME-WAIT acknowledged
	// it again, and the closed server's RST ended TIME-WAIT early, as
	// in Linux without tcp_rfc1337 (RFC 1337 1).
	if !strings.Contains(out, "TIME-WAIT → CLOSED (timer time-wait)") &&
		!(strings.Contains(out, "tail loss probe: Flags [F.]") && strings.Contains(out, "RST: Flags [R]") &&
			regexp.MustCompile(`(?m)client .*: TIME-WAIT → CLOSED$`).MatchString(out)) {
		t.Errorf("TIME-WAIT ended neither on its timer nor by a RST after a probe of the FIN")
	}
	// Every trace line starts with a tcpdump-like timestamp.
	stamp := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{6} (server|client) `)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " → ") && !stamp.MatchString(line) {
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

// TestBadInput: each bad input has one message style ("tapstack <command>:
// <message>") and one exit status: 2 for usage, 1 for a runtime error.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"demo", "--nosuchflag"}, 2, "tapstack demo: flag provided but not defined: -nosuchflag"},
		{[]string{"demo", "extra"}, 2, `tapstack demo: want 0 argument(s), got 1: ["extra"]`},
		{[]string{"dial", "--tap", "tap0", "--addr", "192.0.2.2/24"}, 2, "tapstack dial: want 1 argument(s), got 0"},
		{[]string{"demo", "--timewait", "0"}, 2, "tapstack demo: --timewait 0s: TIME-WAIT must be positive"},
		{[]string{"ss", "--timewait", "0s"}, 2, "tapstack ss: --timewait 0s: TIME-WAIT must be positive"},
		{[]string{"trace", "--timewait", "-1s"}, 2, "tapstack trace: --timewait -1s: TIME-WAIT must be positive"},
		{[]string{"agent", "--time-wait", "0", "--tap", "tap0", "--addr", "192.0.2.2/24"}, 2, "tapstack agent: --time-wait 0s: TIME-WAIT must be positive"},
		{[]string{"demo", "--loss", "150%"}, 2, `tapstack demo: invalid value "150%" for flag -loss: want a probability between 0% and 100%`},
		{[]string{"demo", "--in-mark", "1.5"}, 2, `tapstack demo: invalid value "1.5" for flag -in-mark: want a probability between 0% and 100%`},
		{[]string{"demo", "--in-rate", "fast"}, 2, `tapstack demo: invalid value "fast" for flag -in-rate`},
		{[]string{"serve", "--mode", "chargen", "--tap", "x", "--addr", "192.0.2.2/24"}, 2, `tapstack serve: --mode "chargen": want echo or discard`},
		{[]string{"bench", "--size", "0"}, 2, "tapstack bench: --size 0: want a positive number of bytes"},
		{[]string{"bench", "--queues", "0"}, 2, "tapstack bench: --queues 0: want 1 to 256"},
		// A flag the command's mode does not use is refused, not
		// silently ignored: ping without --tap runs in memory, and so
		// does trace without --tap and --addr.
		{[]string{"ping", "--addr", "192.0.2.2/24", "192.0.2.1"}, 2, "tapstack ping: --addr needs --tap (without it, ping runs in memory"},
		{[]string{"ping", "--loss", "5%", "-c", "1", "192.0.2.1"}, 2, "tapstack ping: --loss needs --tap"},
		{[]string{"ping", "--pcap", "ping.pcapng", "192.0.2.1"}, 2, "tapstack ping: --pcap needs --tap"},
		{[]string{"trace", "--cc", "bbr"}, 2, "tapstack trace: --cc needs --tap (without it, trace runs the in-memory demo)"},
		{[]string{"trace", "--queues", "2"}, 2, "tapstack trace: --queues needs --tap"},
		{[]string{"trace", "--port", "8"}, 2, "tapstack trace: --port needs --tap"},
		// An OTLP endpoint that cannot be one is refused as it is
		// parsed: "::::" and a host without its port were taken (the
		// export failed at the end, exit 0), a bad URL was refused only
		// after the device was opened.
		{[]string{"demo", "--otlp", "::::"}, 2, `tapstack demo: invalid value "::::" for flag -otlp: OTLP endpoint "::::": want HOST:PORT`},
		{[]string{"ss", "--otlp", "localhost"}, 2, `tapstack ss: invalid value "localhost" for flag -otlp: OTLP endpoint "localhost": no port`},
		{[]string{"bench", "--otlp", "grpc://localhost:0"}, 2, `tapstack bench: invalid value "grpc://localhost:0" for flag -otlp: OTLP endpoint "grpc://localhost:0": port 0: want 1 to 65535`},
		{[]string{"script", "--otlp", "http://localhost:99999", "a.pkt"}, 2, `tapstack script: invalid value "http://localhost:99999" for flag -otlp: OTLP endpoint "http://localhost:99999": port 99999: want 1 to 65535`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--otlp", "http://[::1"}, 2, `tapstack serve: invalid value "http://[::1" for flag -otlp: OTLP endpoint "http://[::1": parse`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--otlp", "localhost:4317"}, 1, "tapstack serve: TAP device nosuch0 does not exist"},
		// A bench with nothing to measure is a usage error: it printed
		// its header and exited 0.
		{[]string{"bench", "--link", "pipe", "--figures", "heap", "--heap-conns", ""}, 2, `tapstack bench: --figures heap with --heap-conns "": no idle heap to measure`},
		// Flags after the arguments: the flag package stops at the first
		// argument, and the flags after it were counted as arguments.
		{[]string{"ping", "192.0.2.1", "-c", "1"}, 2, `tapstack ping: flag -c after the argument "192.0.2.1": flags go before the arguments`},
		{[]string{"dial", "192.0.2.1:7", "--tap", "tap0", "--addr=192.0.2.2/24"}, 2, `tapstack dial: flag --tap after the argument "192.0.2.1:7": flags go before the arguments`},
		{[]string{"plot", "x.pcapng", "-o", "x.html"}, 2, `tapstack plot: flag -o after the argument "x.pcapng": flags go before the arguments`},
		{[]string{"script", "a.pkt", "-v"}, 2, `tapstack script: flag -v after the argument "a.pkt": flags go before the arguments`},
		// An argument too many stays one, whatever follows it.
		{[]string{"serve", "extra", "--tap", "tap0"}, 2, `tapstack serve: want 0 argument(s), got 3: ["extra" "--tap" "tap0"]`},
		// An MTU is 68 (IPv4's minimum) to 65535 (IP's largest packet):
		// --route's was refused only by the stack after the device was
		// opened, exit 1.
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--route", "mtu 40"}, 2, `tapstack serve: invalid value "mtu 40" for flag -route: route metric mtu 40: want 68 (IPv4's minimum) to 65535`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--route", "mtu lock 70000", "192.0.2.1:7"}, 2, `tapstack dial: invalid value "mtu lock 70000" for flag -route: route metric mtu 70000: want 68 (IPv4's minimum) to 65535`},
		{[]string{"demo", "--blackhole-mtu", "70000"}, 2, `tapstack demo: invalid value "70000" for flag -blackhole-mtu: want an MTU in bytes, 68 (IPv4's minimum) to 65535`},
		// A value the flag package cannot read says what it wants, not
		// "parse error".
		{[]string{"demo", "--timewait", "5"}, 2, `tapstack demo: invalid value "5" for flag -timewait: want a duration with its unit, such as 5s or 20ms`},
		{[]string{"ping", "-i", "5", "192.0.2.1"}, 2, `tapstack ping: invalid value "5" for flag -i: want a duration with its unit, such as 5s or 20ms`},
		{[]string{"bench", "--size", "64MiB"}, 2, `tapstack bench: invalid value "64MiB" for flag -size: want a whole number, such as 1000`},
		{[]string{"bench", "--mtu", "-1"}, 2, `tapstack bench: invalid value "-1" for flag -mtu: want a whole number, 0 or more`},
		{[]string{"demo", "--seed", "-1"}, 2, `tapstack demo: invalid value "-1" for flag -seed: want a whole number, 0 or more`},
		{[]string{"serve", "--trace=maybe"}, 2, `tapstack serve: invalid boolean value "maybe" for -trace: want true or false`},
		{[]string{"bench", "--size", "99999999999999999999"}, 2, `tapstack bench: invalid value "99999999999999999999" for flag -size: value out of range`},
		// The link flags' values are usage errors too, found before
		// any device is looked up or opened.
		{[]string{"serve", "--queues", "257", "--tap", "nosuch0", "--addr", "192.0.2.2/24"}, 2, "tapstack serve: --queues 257: want 1 to 256"},
		{[]string{"serve", "--addr", "192.0.2.2/24"}, 2, "tapstack serve: --tap is required"},
		{[]string{"serve", "--cc", "vegas", "--tap", "x", "--addr", "192.0.2.2/24"}, 2, `tapstack serve: --cc "vegas": want one of cubic, reno, bbr`},
		{[]string{"dial", "--tx-queue", "0", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "192.0.2.1:7"}, 2, "tapstack dial: --tx-queue 0: want at least 1 frame"},
		{[]string{"agent", "--tap", "nosuch0"}, 2, `tapstack agent: --addr "": want the stack's address/prefix`},
		{[]string{"ping", "--tap", "nosuch0", "--addr", "192.0.2.2", "192.0.2.1"}, 2, `tapstack ping: --addr "192.0.2.2": want the stack's address/prefix`},
		// --addr is an address a host can have on a link: refused before
		// the device is opened (multicast and unspecified were refused by
		// AddNIC after it, 255.255.255.255 as a "duplicate address"), and
		// the rest was taken.
		{[]string{"serve", "--tap", "nosuch0", "--addr", "0.0.0.0/0"}, 2, `tapstack serve: --addr "0.0.0.0/0": 0.0.0.0 is the unspecified address`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "::/0"}, 2, `tapstack serve: --addr "::/0": :: is the unspecified address`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "224.0.0.1/4"}, 2, `tapstack serve: --addr "224.0.0.1/4": 224.0.0.1 is a multicast address`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "ff02::1/64"}, 2, `tapstack serve: --addr "ff02::1/64": ff02::1 is a multicast address`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "255.255.255.255/32"}, 2, `tapstack serve: --addr "255.255.255.255/32": 255.255.255.255 is the limited broadcast address`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "127.0.0.2/8", "192.0.2.1:7"}, 2, `tapstack dial: --addr "127.0.0.2/8": 127.0.0.2 is a loopback address`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "::1/128", "192.0.2.1:7"}, 2, `tapstack dial: --addr "::1/128": ::1 is a loopback address`},
		{[]string{"agent", "--tap", "nosuch0", "--addr", "::ffff:192.0.2.2/120"}, 2, `tapstack agent: --addr "::ffff:192.0.2.2/120": ::ffff:192.0.2.2 is an IPv4-mapped IPv6 address: write it as IPv4, 192.0.2.2/24`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.0/24"}, 2, `tapstack serve: --addr "192.0.2.0/24": 192.0.2.0 is the network address of 192.0.2.0/24`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.255/24"}, 2, `tapstack serve: --addr "192.0.2.255/24": 192.0.2.255 is the broadcast address of 192.0.2.0/24`},
		// A /31 has no network or broadcast address (RFC 3021), a /32
		// one address; IPv6 has neither, and link-local is an address.
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.0/31"}, 1, "tapstack serve: TAP device nosuch0 does not exist"},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.255/32"}, 1, "tapstack serve: TAP device nosuch0 does not exist"},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "2001:db8::/64"}, 1, "tapstack serve: TAP device nosuch0 does not exist"},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "fe80::2/64"}, 1, "tapstack serve: TAP device nosuch0 does not exist"},
		// Ports and the peer's address are checked before the device
		// is looked up: they were found out after it had been opened,
		// exit 1, or not at all (port 0 was dialed, --timeout -1s taken).
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--port", "65536"}, 2, "tapstack serve: --port 65536: want 1 to 65535 (or 0: 7 for echo, 9 for discard)"},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--port", "-1"}, 2, "tapstack serve: --port -1: want 1 to 65535"},
		{[]string{"trace", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--port", "0"}, 2, "tapstack trace: --port 0: want 1 to 65535"},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "192.0.2.1:0"}, 2, `tapstack dial: "192.0.2.1:0": port 0: want 1 to 65535`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "192.0.2.1:65536"}, 2, `tapstack dial: "192.0.2.1:65536": port "65536": want 1 to 65535`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "192.0.2.1"}, 2, `tapstack dial: "192.0.2.1": want host:port, such as 192.0.2.1:7`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "example.test:7"}, 2, `tapstack dial: "example.test:7": want an IP address, such as 192.0.2.1:7 (dial resolves no names)`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "[2001:db8::1]:7"}, 2, `tapstack dial: "[2001:db8::1]:7": an IPv6 peer, and --addr 192.0.2.2/24 is IPv4: the stack has no address to reach it from`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "2001:db8::2/64", "192.0.2.1:7"}, 2, `tapstack dial: "192.0.2.1:7": an IPv4 peer, and --addr 2001:db8::2/64 is IPv6`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "--timeout", "-1s", "192.0.2.1:7"}, 2, "tapstack dial: --timeout -1s: want a positive duration such as 10s"},
		{[]string{"ping", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "2001:db8::1"}, 2, `tapstack ping: host "2001:db8::1": an IPv6 peer, and --addr 192.0.2.2/24 is IPv4`},
		// What stays accepted: a service name, the local system (as
		// net.Dial), a loopback destination (the stack's own).
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "192.0.2.1:http"}, 1, "tapstack dial: TAP device nosuch0 does not exist"},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", ":7"}, 1, "tapstack dial: TAP device nosuch0 does not exist"},
		{[]string{"ping", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "127.0.0.1"}, 1, "tapstack ping: TAP device nosuch0 does not exist"},
		// A name Linux cannot give an interface is said to be one,
		// not missing with a hint to create it that ip would refuse.
		{[]string{"serve", "--tap", "tapstack-serve-0", "--addr", "192.0.2.2/24"}, 2, `tapstack serve: --tap "tapstack-serve-0": device name is 16 bytes; Linux allows at most 15`},
		{[]string{"dial", "--tap", "tap/0", "--addr", "192.0.2.2/24", "192.0.2.1:7"}, 2, `tapstack dial: --tap "tap/0": device name contains '/'`},
		{[]string{"trace", "--tap", "tap 0", "--addr", "192.0.2.2/24", "--create"}, 2, `tapstack trace: --tap "tap 0": device name contains`},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2.2/24"}, 1, `tapstack serve: TAP device nosuch0 does not exist (create it with "ip tuntap add dev nosuch0 mode tap", or pass --create)`},
		{[]string{"dial", "--tap", "nosuch0", "--addr", "192.0.2.2/24", "192.0.2.1:7"}, 1, "tapstack dial: TAP device nosuch0 does not exist"},
		{[]string{"trace", "--tap", "nosuch0", "--addr", "192.0.2.2/24"}, 1, "tapstack trace: TAP device nosuch0 does not exist"},
		{[]string{"serve", "--tap", "nosuch0", "--addr", "192.0.2"}, 2, `tapstack serve: --addr "192.0.2": want the stack's address/prefix`},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.HasPrefix(errOut, tc.msg) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and stderr starting %q", tc.args, code, out, errOut, tc.code, tc.msg)
		}
	}
}

// TestInterrupt: Ctrl-C (the context main cancels on SIGINT) in the middle
// of a transfer ends the command with status 0 and no error message.
func TestInterrupt(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--size", "1073741824"},
		{"demo", "--timewait", "30s"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var o, e bytes.Buffer
		done := make(chan int, 1)
		go func() { done <- run(ctx, env{stdin: strings.NewReader(""), stdout: &o, stderr: &e}, args) }()
		time.Sleep(300 * time.Millisecond)
		cancel()
		select {
		case code := <-done:
			if code != 0 || e.Len() != 0 {
				t.Errorf("%q interrupted: exit %d, stderr %q; want 0 and nothing", args, code, e.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%q did not stop after the interrupt", args)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !regexp.MustCompile(`^tapstack \S+ \(commit \S+, go\S+ \w+/\w+\)\n$`).MatchString(out) {
		t.Errorf("version: exit %d, %q", code, out)
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
}
