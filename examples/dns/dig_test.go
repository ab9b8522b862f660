//go:build linux

package main

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDig: dig on the host (in a test-made namespace) asks the server on
// tapstack, over a TAP, and gets example.test's address.
func TestDig(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skipf("dig is not installed (dnsutils or bind9-dnsutils; the CI script installs it): %v", err)
	}
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack0", "192.0.2.1/24")
	s := stack.New(stack.Options{})
	defer s.Close()
	if _, err := s.AddNIC(dev.LinkEndpoint(), netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	pc, err := conn.ListenPacket(s, "udp", ":53")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go Serve(pc, Zone{"example.test": {netip.MustParseAddr("192.0.2.2")}})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := ns.Exec(ctx, "dig", "@192.0.2.2", "example.test", "+tries=3", "+time=2").CombinedOutput()
	if err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	for _, want := range []string{"status: NOERROR", "flags: qr aa rd", "example.test.\t\t60\tIN\tA\t192.0.2.2", "SERVER: 192.0.2.2#53(192.0.2.2) (UDP)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dig output lacks %q:\n%s", want, out)
		}
	}
	out, _ = ns.Exec(ctx, "dig", "@192.0.2.2", "nowhere.test", "+tries=3", "+time=2").CombinedOutput()
	if !strings.Contains(string(out), "status: NXDOMAIN") {
		t.Errorf("dig nowhere.test:\n%s", out)
	}
}
