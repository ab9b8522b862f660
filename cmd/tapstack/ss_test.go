package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestInfoLineBackoff: as ss -i, backoff follows rto once the RTO has
// backed off, and is left out while it has not.
func TestInfoLineBackoff(t *testing.T) {
	in := tcp.Info{RTO: 800 * time.Millisecond, RTT: 100 * time.Millisecond, SndMSS: 1460, RcvMSS: 1460, Cwnd: 14600, Ssthresh: 1 << 31, SndWndScale: -1, CongestionControl: "cubic"}
	if l := infoLine(in); strings.Contains(l, "backoff") || !strings.Contains(l, "cubic rto:800 rtt:100.000/0.000 mss:1460") {
		t.Errorf("no backoff: %q", l)
	}
	in.Backoff = 2
	if l := infoLine(in); !strings.Contains(l, "cubic rto:800 backoff:2 rtt:100.000/0.000 mss:1460") {
		t.Errorf("backoff 2: %q", l)
	}
}
