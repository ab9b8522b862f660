package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestRun: capped at 80 Mbit/s, the client's 1 MiB takes at least what
// the cap allows for all but its first ten segments (sent unpaced) and a
// packet, whatever the machine's speed, since pacing only delays; its
// trains wait for their time and say so. Unpaced, nothing waits.
func TestRun(t *testing.T) {
	const size, rate = 1 << 20, 80e6
	for _, paced := range []bool{true, false} {
		cfg := config{size: size}
		if paced {
			cfg.rate = rate
		}
		var out bytes.Buffer
		if err := run(&out, cfg); err != nil {
			t.Fatalf("paced %v: %v\n%s", paced, err, out.String())
		}
		got := out.String()
		m := regexp.MustCompile(`bytes in ([0-9.]+m?s):.*\npaced (true|false), pacing rate .*, (\d+) trains held`).FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("paced %v: no figures in\n%s", paced, got)
		}
		elapsed, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		held, _ := strconv.Atoi(m[3])
		least := time.Duration(float64(size-10*1448-64<<10) * 8 / rate * float64(time.Second))
		switch {
		case paced && (m[2] != "true" || held == 0 || elapsed < least.Round(time.Millisecond)):
			t.Errorf("paced: %s, %d trains held, %v; want true, some, at least %v\n%s", m[2], held, elapsed, least, got)
		case !paced && (m[2] != "false" || held != 0):
			t.Errorf("unpaced: %s, %d trains held; want false, none\n%s", m[2], held, got)
		}
		// The note gives the pacing rate when the train left: the cap,
		// or less while the window per round trip is below it.
		if paced && !regexp.MustCompile(`\(paced: held [0-9.]+[µm]?s, [0-9.]+ [kMG]?bit/s\)`).MatchString(got) {
			t.Errorf("no send event saying it was held:\n%s", got)
		}
	}
}
