package main

import (
	"bytes"
	"fmt"
	"regexp"
	"testing"
	"time"
)

// TestRun: a 100 kB response over a 50 ms round trip, with the server's
// route giving initcwnd 4, 10 and 40. What it asserts holds however slow
// the machine is, since it counts the ACK clock's turns, not time:
//
//   - the window when the handshake ended (Info().Cwnd / SndMSS) is the
//     route's initcwnd, and the first flight, sent before any ACK of
//     data, is that many segments (the response has more);
//   - no flight is more than twice the one before (slow start at most
//     doubles the window a round trip, RFC 5681 3.1), so initcwnd 4
//     needs at least 5 flights for 70 segments; initcwnd 40 needs 2,
//     since nothing is lost in memory: 40, then the other 30;
//   - the time, in round trips rounded, is at least the flights: each
//     flight waits out the path's delay both ways, and a busy machine
//     only adds to it. No upper bound: speed is for benchmarks.
func TestRun(t *testing.T) {
	const size, rtt = 100_000, 50 * time.Millisecond
	cfg := config{sizes: []int64{size}, initcwnds: []uint32{4, 10, 40}, rtt: rtt}
	var out bytes.Buffer
	results, err := run(&out, cfg)
	t.Logf("\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(cfg.initcwnds) {
		t.Fatalf("%d results for %d windows", len(results), len(cfg.initcwnds))
	}
	flights := map[uint32]int{}
	for i, r := range results {
		iw := cfg.initcwnds[i]
		if r.initcwnd != iw || r.size != size {
			t.Fatalf("result %d is of %d bytes with initcwnd %d; want %d, %d", i, r.size, r.initcwnd, size, iw)
		}
		if r.window != int(iw) {
			t.Errorf("initcwnd %d: the window after the handshake was %d segments of %d bytes", iw, r.window, r.mss)
		}
		if len(r.flights) == 0 || r.flights[0] != int(iw) {
			t.Errorf("initcwnd %d: flights %v; want a first of %d segments", iw, r.flights, iw)
		}
		total := 0
		for j, n := range r.flights {
			total += n
			if j > 0 && n > 2*r.flights[j-1] {
				t.Errorf("initcwnd %d: flights %v: flight %d more than doubles the one before", iw, r.flights, j+1)
			}
		}
		if segs := (size + r.mss - 1) / r.mss; total < segs {
			t.Errorf("initcwnd %d: flights %v hold %d segments; the response needs %d of %d bytes", iw, r.flights, total, segs, r.mss)
		}
		if got := r.roundTrips(rtt); got < len(r.flights) {
			t.Errorf("initcwnd %d: %v is %d round trips of %v, fewer than its %d flights", iw, r.elapsed, got, rtt, len(r.flights))
		}
		row := fmt.Sprintf(`(?m)^\s+%d\s+%d segments\s+%d \(`, iw, r.flights[0], len(r.flights))
		if !regexp.MustCompile(row).MatchString(out.String()) {
			t.Errorf("initcwnd %d: no row matching %s in the output", iw, row)
		}
		flights[iw] = len(r.flights)
	}
	if flights[4] < 5 || flights[40] != 2 {
		t.Errorf("flights: %d with initcwnd 4, %d with 40; want at least 5, and 2", flights[4], flights[40])
	}
	if !bytes.Contains(out.Bytes(), []byte("ip route change 192.0.2.0/24 dev eth0 initcwnd 40")) {
		t.Error("no explanation after the table")
	}
}
