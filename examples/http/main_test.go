package main

import (
	"bytes"
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInMemory runs the demo: GET and POST of 8 MiB with hashes checked,
// over plain HTTP and over TLS.
func TestInMemory(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP", true: "HTTPS"}[tls], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out bytes.Buffer
			start := time.Now()
			cfg := config{tls: tls, size: 8 << 20}
			if err := cfg.check(nil); err != nil {
				t.Fatal(err)
			}
			if err := run(ctx, &out, cfg); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			t.Logf("%v\n%s", time.Since(start), out.String())
			for _, want := range []string{"hello from tapstack", "GET /data: 8388608 bytes", "POST /upload: ok"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if strings.Contains(out.String(), "MISMATCH") {
				t.Error("hash mismatch")
			}
		})
	}
}

// TestFlags: flags that do not go together, and the port's default.
func TestFlags(t *testing.T) {
	if err := (&config{addr: netip.MustParsePrefix("192.0.2.2/24")}).check(nil); err == nil {
		t.Error("-addr without -tap accepted")
	}
	if err := (&config{}).check([]string{"extra"}); err == nil {
		t.Error("an extra argument accepted")
	}
	for _, tc := range []struct {
		cfg  config
		port int
	}{{config{}, 80}, {config{tls: true}, 443}, {config{tls: true, port: 8443}, 8443}} {
		if err := tc.cfg.check(nil); err != nil || tc.cfg.port != tc.port {
			t.Errorf("check(%+v): port %d, %v; want %d", tc.cfg, tc.cfg.port, err, tc.port)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a poller.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls out until it contains s.
func waitFor(t *testing.T, out *lockedBuffer, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output after %v:\n%s", s, d, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// curl is a curl command line, bounded in time, failing on HTTP errors.
func curl(args ...string) []string {
	return append([]string{"curl", "-sS", "--fail", "--max-time", "20"}, args...)
}

func lookCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skipf("needs curl: %v", err)
	}
}
