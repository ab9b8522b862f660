package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"
)

// TestRun: with marks, the client reduces its window for the echoes and
// repairs nothing: no fast recovery, no timeout, nothing sent again but
// by a tail loss probe (a machine too busy to run the receiver's ACKs in
// time makes the probe timer fire, which it does in CI when other tests
// load both cores); with drops, it repairs losses instead. Both transfers
// arrive whole (run checks the byte count).
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		drop bool
	}{{false}, {true}} {
		var out bytes.Buffer
		if err := run(&out, config{p: 0.02, drop: tc.drop, size: 4 << 20, seed: 1}); err != nil {
			t.Fatalf("drop %v: %v\n%s", tc.drop, err, out.String())
		}
		got := out.String()
		num := func(re string) int {
			m := regexp.MustCompile(re).FindStringSubmatch(got)
			if m == nil {
				t.Fatalf("drop %v: no %q in\n%s", tc.drop, re, got)
			}
			n, _ := strconv.Atoi(m[1])
			return n
		}
		marked, dropped := num(`(\d+) packets marked CE`), num(`(\d+) dropped`)
		cwr, resent := num(`(\d+) windows reduced`), num(`(\d+) segments sent again`)
		recoveries, timeouts, probes := num(`(\d+) fast recoveries`), num(`(\d+) timeouts`), num(`(\d+) tail loss probes`)
		if !regexp.MustCompile(`ECN in force: true`).MatchString(got) {
			t.Errorf("drop %v: ECN not in force\n%s", tc.drop, got)
		}
		if tc.drop {
			if dropped == 0 || marked != 0 || resent == 0 {
				t.Errorf("drops: %d dropped, %d marked, %d sent again; want drops repaired by retransmission\n%s", dropped, marked, resent, got)
			}
			continue
		}
		if marked == 0 || dropped != 0 || cwr == 0 || recoveries != 0 || timeouts != 0 || resent > probes {
			t.Errorf("marks: %d marked, %d dropped, %d CWR episodes, %d fast recoveries, %d timeouts, %d sent again, %d tail loss probes; want marks answered by CWR, nothing repaired\n%s",
				marked, dropped, cwr, recoveries, timeouts, resent, probes, got)
		}
	}
}
