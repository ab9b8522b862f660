package main

import (
	"flag"
	"io"
	"testing"
)

// TestFaultFlagsMark: --mark sets the mark probability of both
// directions, --in-mark and --out-mark one direction's; any of them alone
// turns the fault middleware on.
func TestFaultFlagsMark(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		out, in float64
	}{
		{[]string{"--mark", "5%"}, 0.05, 0.05},
		{[]string{"--mark", "5%", "--out-mark", "0.5"}, 0.5, 0.05},
		{[]string{"--in-mark", "1%"}, 0, 0.01},
		{[]string{"--out-mark", "0"}, 0, 0},
	} {
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		f := addFaultFlags(fs)
		if err := fs.Parse(append(tc.args, "--seed", "7")); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		cfg, ok := f.config(io.Discard)
		in := -1.0
		if cfg.Inbound != nil {
			in = cfg.Inbound.Mark
		}
		if !ok || cfg.Mark != tc.out || in != tc.in || cfg.Seed != 7 {
			t.Errorf("%q: faults on %v, mark out %v, in %v; want on, %v, %v", tc.args, ok, cfg.Mark, in, tc.out, tc.in)
		}
	}
}
