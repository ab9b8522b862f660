package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInMemory runs the demo: GET and POST of 8 MiB with hashes checked,
// over plain HTTP and over TLS.
func TestInMemory(t *testing.T) {
	for _, args := range [][]string{nil, {"-tls"}} {
		t.Run(strings.Join(append([]string{"http"}, args...), " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out bytes.Buffer
			start := time.Now()
			if err := run(ctx, &out, args); err != nil {
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

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-addr", "192.0.2.2/24"}); err == nil {
		t.Error("-addr without -tap accepted")
	}
	if err := run(context.Background(), &out, []string{"extra"}); err == nil {
		t.Error("an extra argument accepted")
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
