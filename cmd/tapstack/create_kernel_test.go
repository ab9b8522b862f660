//go:build linux

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap/taptest"
)

// TestCreateFailureLeavesNothing: a command that made its TAP device
// (--create) and then failed, after the device was made, removes it: the
// route's MTU is above the device's (the stack refuses it once the NIC
// exists), or the dial finds no peer (a device made down refuses the
// first frame). Nothing is left in the namespace but lo.
func TestCreateFailureLeavesNothing(t *testing.T) {
	ns := taptest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"serve", "--tap", "tscreate0", "--create", "--addr", "192.0.2.2/24", "--route", "mtu 9000"}, `tapstack serve: --route "mtu 9000": stack: SetRouteMetrics 192.0.2.0/24: MTU 9000 is above interface 1's 1500`},
		{[]string{"dial", "--tap", "tscreate1", "--create", "--queues", "3", "--addr", "192.0.2.2/24", "--pcap", t.TempDir() + "/dial.pcapng", "192.0.2.1:7"}, "tapstack dial: NIC 1: link down: tap: write: input/output error: TAP device tscreate1 is down"},
	} {
		var out, errOut bytes.Buffer
		code := runInNamespace(t, ctx, ns, env{stdin: strings.NewReader("x"), stdout: &out, stderr: &errOut}, tc.args...)()
		if code != 1 || !strings.HasPrefix(errOut.String(), tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", tc.args, code, errOut.String(), tc.msg)
		}
	}
	if links := strings.Fields(ns.Run(t, "ip", "-o", "link", "show")); len(links) < 2 || links[1] != "lo:" || strings.Count(strings.Join(links, " "), ": <") != 1 {
		t.Errorf("links left in the namespace:\n%s", ns.Run(t, "ip", "-o", "link", "show"))
	}
}
