package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestPing: "tapstack ping" prints what iputils' ping prints, line for
// line: the header, one line per reply, the statistics.
func TestPing(t *testing.T) {
	for _, tc := range []struct {
		host, header, from string
	}{
		{"192.0.2.1", `PING 192.0.2.1 \(192.0.2.1\) 56\(84\) bytes of data\.`, "192.0.2.1"},
		{"2001:db8::1", `PING 2001:db8::1 \(2001:db8::1\) 56 data bytes`, "2001:db8::1"},
		{"127.0.0.1", `PING 127.0.0.1 \(127.0.0.1\) 56\(84\) bytes of data\.`, "127.0.0.1"},
	} {
		code, out, errOut := runCLI(t, "ping", "-c", "3", "-i", "1ms", tc.host)
		if code != 0 {
			t.Fatalf("ping %s exited %d\n%s%s", tc.host, code, out, errOut)
		}
		want := []string{
			"^" + tc.header + "$",
			`^64 bytes from ` + regexp.QuoteMeta(tc.from) + `: icmp_seq=1 ttl=64 time=\d+(\.\d+)? ms$`,
			`^64 bytes from ` + regexp.QuoteMeta(tc.from) + `: icmp_seq=2 ttl=64 time=\d+(\.\d+)? ms$`,
			`^64 bytes from ` + regexp.QuoteMeta(tc.from) + `: icmp_seq=3 ttl=64 time=\d+(\.\d+)? ms$`,
			`^$`,
			`^--- ` + regexp.QuoteMeta(tc.host) + ` ping statistics ---$`,
			`^3 packets transmitted, 3 received, 0% packet loss, time \d+ms$`,
			`^rtt min/avg/max/mdev = \d+\.\d{3}/\d+\.\d{3}/\d+\.\d{3}/\d+\.\d{3} ms$`,
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("ping %s printed %d lines, want %d:\n%s", tc.host, len(lines), len(want), out)
		}
		for i, w := range want {
			if !regexp.MustCompile(w).MatchString(lines[i]) {
				t.Errorf("ping %s line %d = %q, want %s", tc.host, i+1, lines[i], w)
			}
		}
	}
}

// TestPingNoReply: a host that does not answer: no reply lines, 100%
// loss, no rtt line, exit status 1, as ping.
func TestPingNoReply(t *testing.T) {
	code, out, _ := runCLI(t, "ping", "-c", "2", "-i", "1ms", "-W", "50ms", "192.0.2.9")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "2 packets transmitted, 0 received, 100% packet loss") || strings.Contains(out, "bytes from") || strings.Contains(out, "rtt") {
		t.Errorf("output:\n%s", out)
	}
	if code, _, _ := runCLI(t, "ping", "example.test"); code != 2 {
		t.Errorf("ping of a name: exit %d, want 2 (usage)", code)
	}
}
