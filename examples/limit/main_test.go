package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args             config
		served, rejected int
	}{
		{config{n: 2, clients: 6, hold: 20 * time.Millisecond}, 6, 0},
		{config{n: 2, clients: 6, hold: 500 * time.Millisecond, closeExcess: true}, 2, 4},
	} {
		var out bytes.Buffer
		err := run(&out, tc.args)
		got := out.String()
		if err != nil {
			t.Fatalf("run %+v: %v\n%s", tc.args, err, got)
		}
		// With -close, the two served clients hold their slots for 500ms,
		// far longer than the others take to connect.
		if n := strings.Count(got, "served"); n != tc.served {
			t.Errorf("run %+v: %d served, want %d\n%s", tc.args, n, tc.served, got)
		}
		if n := strings.Count(got, "closed without a greeting"); n != tc.rejected {
			t.Errorf("run %+v: %d closed at once, want %d\n%s", tc.args, n, tc.rejected, got)
		}
		if !strings.Contains(got, "open now 0") {
			t.Errorf("run %+v: slots not all returned\n%s", tc.args, got)
		}
		if strings.Contains(got, "3 open") {
			t.Errorf("run %+v: more than 2 open at once\n%s", tc.args, got)
		}
	}
}
