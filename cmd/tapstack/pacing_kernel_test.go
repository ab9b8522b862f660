//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDialPacing: --max-pacing-rate reaches dial's connection. 1 MiB to
// the kernel over a TAP with the rate capped at 16 Mbit/s: every byte
// arrives, and the capture shows the data after the first ten segments
// (which leave unpaced) spread over at least the time that rate allows,
// less a packet. Pacing only ever delays, so the bound holds on any
// machine; without the flag the same megabyte crosses the TAP in
// milliseconds. The capture's comment on the first frame of each train
// that waited for its departure time says so, and at what rate.
func TestDialPacing(t *testing.T) {
	const dev, size, rate = "tspacing0", 1 << 20, 2e6 // bytes a second: 16 Mbit/s
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	countServer(t, ns, "192.0.2.1:5006")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, paced := range []bool{false, true} {
		capPath := filepath.Join(t.TempDir(), "dial.pcapng")
		args := []string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--pcap", capPath}
		if paced {
			args = append(args, "--max-pacing-rate", "16mbit")
		}
		args = append(args, "192.0.2.1:5006")
		var out, errOut bytes.Buffer
		in := bytes.NewReader(bytes.Repeat([]byte{'x'}, size))
		if code := runInNamespace(t, ctx, ns, env{stdin: in, stdout: &out, stderr: &errOut}, args...)(); code != 0 {
			t.Fatalf("dial (paced %v): exit %d\n%s", paced, code, errOut.String())
		}
		if out.String() != fmt.Sprintf("got %d\n", size) {
			t.Fatalf("paced %v: the kernel's answer %q", paced, out.String())
		}
		pkts, err := pcap.ReadFile(capPath)
		if err != nil {
			t.Fatal(err)
		}
		var first, last time.Time
		segs, bytes, held := 0, 0, 0
		trains := map[time.Time]bool{} // the departure times after the eleventh segment
		for _, p := range pkts {
			if _, k, ok := p.TCP(); ok && p.Direction == pcap.Outbound && k.Len > 0 {
				if c := p.Comment(); strings.Contains(c, "paced: held") {
					held++
					if !strings.Contains(c, " Mbit/s") {
						t.Errorf("frame %d: %q gives no rate", p.Number, c)
					}
				}
				if segs++; segs == 11 {
					first = p.Time
				}
				if segs > 11 {
					bytes += k.Len
					last = p.Time
					trains[p.Time] = true
				}
			}
		}
		span := last.Sub(first)
		least := time.Duration(float64(bytes-64<<10) / rate * float64(time.Second))
		t.Logf("paced %v: %d data segments in %d departures, %d frames saying they were held; %d bytes after the eleventh in %v (at 16 Mbit/s, at least %v)", paced, segs, len(trains), held, bytes, span.Round(time.Millisecond), least.Round(time.Millisecond))
		if paced && span < least {
			t.Errorf("with --max-pacing-rate 16mbit: %d bytes in %v, faster than the rate allows (%v)", bytes, span, least)
		}
		// The capture says which trains waited for their time, on the
		// first frame of each (on so short a round trip a train is half
		// the congestion window, up to 64 KiB, as Linux's
		// tcp_tso_autosize and tcp_cwnd_test make it): most of them,
		// paced; none, not.
		if paced && held < len(trains)/2 || !paced && held > 0 {
			t.Errorf("paced %v: %d of %d departures say they were held for pacing", paced, held, len(trains))
		}
	}
}
