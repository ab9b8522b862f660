package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRun: over the same bottleneck (40 Mbit/s, 10 ms, a deep queue) both
// transfers arrive whole (run checks the byte count); CUBIC fills the
// queue, so its median RTT while sending is more than twice BBR's; BBR
// reports its startup, drain and probe_bw, and a model of about the
// bottleneck's rate.
func TestRun(t *testing.T) {
	cfg := config{rate: 40e6, rtt: 10 * time.Millisecond, size: 4 << 20, seed: 1}
	cubic, err := run("cubic", cfg)
	if err != nil {
		t.Fatal(err)
	}
	bbr, err := run("bbr", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cubic.print(&out)
	bbr.print(&out)
	t.Logf("\n%s", out.String())
	if bbr.medRTT*2 > cubic.medRTT {
		t.Errorf("median RTT while sending: BBR %v, CUBIC %v; want BBR's below half CUBIC's", bbr.medRTT, cubic.medRTT)
	}
	if course := strings.Join(bbr.course, "\n"); !strings.Contains(course, "startup → drain") || !strings.Contains(course, "drain → probe_bw") {
		t.Errorf("BBR's course:\n%s", course)
	}
	// Between half and one and a half times the bottleneck: the
	// bottleneck runs on the wall clock, and under the race detector on
	// a loaded machine it moves less than its rate (one CI run: BBR's
	// model 29.1 Mbit/s, its transfer 15.9).
	if m := bbr.model; m == nil || m.Bandwidth*8 < 20e6 || m.Bandwidth*8 > 60e6 {
		t.Errorf("BBR's model %+v; the bottleneck is 40 Mbit/s", m)
	}
	if cubic.model != nil {
		t.Errorf("CUBIC reports a BBR model: %+v", cubic.model)
	}
}
