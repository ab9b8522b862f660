//go:build linux

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDialOffloadFlags: --offloads and --gro choose what the engine is
// handed, as ethtool -K chooses for a Linux NIC, and the capture says
// which: the kernel's 4 MiB to dial arrive as its TSO super-frames by
// default, as segments the device joined with --offloads=false ("GRO"),
// and one wire segment each with --gro=false too; every byte arrives each
// time, and the capture shows wire segments throughout.
func TestDialOffloadFlags(t *testing.T) {
	const dev, size = "tsgrof0", 4 << 20
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	sendServer(t, ns, "192.0.2.1:5007", size)
	for _, tc := range []struct {
		flags []string
		name  string // the offload inbound super-frames are named for, "" for none
	}{
		{nil, "TSO "},
		{[]string{"--offloads=false"}, "GRO "},
		{[]string{"--offloads=false", "--gro=false"}, ""},
	} {
		t.Run(strings.Join(append([]string{"dial"}, tc.flags...), " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out countingWriter
			pkts := dialCaptured(t, ctx, ns, dev, strings.NewReader(""), &out, "192.0.2.1:5007", tc.flags...)
			if out.n != size {
				t.Fatalf("dial got %d bytes of %d", out.n, size)
			}
			named := map[string]int{}
			for _, p := range pkts {
				for _, o := range []string{"TSO ", "GRO "} {
					if strings.HasPrefix(p.Comment(), o) {
						named[o]++
					}
				}
				if h, ok := tcpOf(p); ok && len(h.Payload) > 1448 {
					t.Errorf("frame %d carries %d bytes: more than a wire segment", p.Number, len(h.Payload))
				}
			}
			t.Logf("%d frames; named for an offload: %v", len(pkts), named)
			if tc.name == "TSO " && named["TSO "] == 0 {
				t.Skip("no TSO super-frame: the kernel offers no offloads on a TAP here")
			}
			for _, o := range []string{"TSO ", "GRO "} {
				if o == tc.name && named[o] == 0 {
					t.Errorf("no frame named %q", o)
				}
				if o != tc.name && named[o] > 0 {
					t.Errorf("%d frames named %q", named[o], o)
				}
			}
		})
	}
}
