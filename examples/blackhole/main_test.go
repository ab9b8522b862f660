package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestRun: with probing, the client finds the 1,400-byte black hole and
// all 2 MiB arrive, in packets larger than BaseMSS's and no larger than
// the hole (within 8 bytes of it, unless a loaded host timed a probe
// out); with
// probing off, as Linux by default, not a byte gets through and the
// client never lowers its MSS.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		probing tcp.MTUProbing
		wait    time.Duration
	}{{tcp.MTUProbingBlackHole, time.Minute}, {tcp.MTUProbingOff, 2 * time.Second}} {
		var out bytes.Buffer
		if err := run(&out, config{mtu: 1400, probing: tc.probing, size: 2 << 20, wait: tc.wait}); err != nil {
			t.Fatalf("%s: %v\n%s", tc.probing, err, out.String())
		}
		got := out.String()
		num := func(re string) int {
			m := regexp.MustCompile(re).FindStringSubmatch(got)
			if m == nil {
				t.Fatalf("%s: no %q in\n%s", tc.probing, re, got)
			}
			n, _ := strconv.Atoi(m[1])
			return n
		}
		swallowed, suspected, packet := num(`(\d+) packets swallowed`), num(`suspected (\d+) times`), num(`packets of (\d+) bytes`)
		stuck := regexp.MustCompile(`stuck: the server had 0 bytes`).MatchString(got)
		if swallowed == 0 {
			t.Errorf("%s: the hole swallowed nothing\n%s", tc.probing, got)
		}
		if tc.probing == tcp.MTUProbingOff {
			if !stuck || suspected != 0 || packet != 1500 {
				t.Errorf("probing off: want stuck at full size with nothing suspected\n%s", got)
			}
			continue
		}
		if stuck || suspected == 0 || packet > 1400 || packet <= 1076 {
			t.Errorf("probing: want the whole transfer, in packets above 1076 bytes and at most 1400\n%s", got)
		}
	}
}
