//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap/taptest"
)

// TestCurl runs the example with -tap on a TAP device in a test-made
// namespace, the way a user runs it on the host, and fetches from it with
// curl inside the namespace, over HTTP and over HTTPS (curl -k).
func TestCurl(t *testing.T) {
	lookCurl(t)
	for _, tc := range []struct {
		name   string
		tls    bool
		scheme string
	}{{"HTTP", false, "http"}, {"HTTPS", true, "https"}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := taptest.NewNamespace(t)
			// The device is made persistent and configured here; the
			// example opens it by name, from inside the namespace.
			ns.Run(t, "ip", "tuntap", "add", "dev", "tapstack0", "mode", "tap")
			ns.Run(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/tapstack0/disable_ipv6 || true")
			ns.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "tapstack0")
			ns.Run(t, "ip", "link", "set", "dev", "tapstack0", "up")

			ctx, cancel := context.WithCancel(context.Background())
			out := &lockedBuffer{}
			done := make(chan error, 1)
			cfg := config{tap: "tapstack0", addr: netip.MustParsePrefix("192.0.2.2/24"), port: 8080, tls: tc.tls}
			go func() {
				// run stays on a thread in the namespace for its whole life;
				// the TAP it opens belongs to the namespace.
				done <- ns.Do(func() error { return run(ctx, out, cfg) })
			}()
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("run: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Error("run did not return 10s after cancel")
				}
			})
			waitFor(t, out, "serving", 10*time.Second)

			base := fmt.Sprintf("%s://192.0.2.2:8080", tc.scheme)
			page := ns.Run(t, curl("-k", base+"/")...)
			if !strings.Contains(page, "hello from tapstack") || !strings.Contains(page, "192.0.2.1:") {
				t.Errorf("curl %s/: %q", base, page)
			}
			t.Logf("curl %s/: %s", base, strings.TrimSpace(page))

			// 8 MiB through curl, hashed here and by the server.
			const size = 8 << 20
			start := time.Now()
			data := ns.Run(t, curl("-k", "-D", "-", "-o", "/dev/stdout", fmt.Sprintf("%s/data?size=%d", base, size))...)
			hdr, body, ok := strings.Cut(data, "\r\n\r\n")
			if !ok {
				t.Fatalf("no headers in curl's output")
			}
			var want string
			for _, line := range strings.Split(hdr, "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-Sha256") {
					want = strings.TrimSpace(v)
				}
			}
			h := sha256.New()
			io.WriteString(h, body)
			got := hex.EncodeToString(h.Sum(nil))
			if len(body) != size || got != want {
				t.Fatalf("curl got %d bytes, sha256 %s; want %d, %s", len(body), got, size, want)
			}
			t.Logf("curl GET %d bytes in %v, sha256 ok", size, time.Since(start))
		})
	}
}
