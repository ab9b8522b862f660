//go:build linux

package conn_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
)

// TestPingKernel: conn.Ping over a TAP gets the kernel's echo replies;
// the round-trip times (real clock) are logged.
func TestPingKernel(t *testing.T) {
	_, ts := kernelNet(t)
	var rtts []time.Duration
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rtt, err := conn.Ping(ctx, ts, netip.MustParseAddr("192.0.2.1"))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, rtt)
	}
	t.Logf("RTTs to the kernel over a TAP: %v (the first includes ARP)", rtts)
}
