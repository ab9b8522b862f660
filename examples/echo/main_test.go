package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestInMemory runs the demo and finds each step of the story in what it
// prints.
func TestInMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, []string{"-timewait", "100ms"}); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"TIME-WAIT is 100ms",
		"server 192.0.2.1:7-192.0.2.2:",
		"SYN-RECEIVED -> ESTABLISHED",
		"SYN-SENT -> ESTABLISHED",
		"FIN-WAIT-2 -> TIME-WAIT",
		"TIME-WAIT -> CLOSED",
		"LAST-ACK -> CLOSED",
		"echo matched",
		"server counters: segments in",
		"client counters: segments in",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

func TestAddrWithoutTap(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), &out, []string{"-addr", "192.0.2.2/24"})
	if err == nil || !strings.Contains(err.Error(), "-tap") {
		t.Fatalf("run -addr without -tap: err = %v, want one naming -tap", err)
	}
}
