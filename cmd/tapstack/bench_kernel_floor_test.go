package main

import (
	"math"
	"testing"
)

// TestKernelFloorOf: the TAP's floor is, per round and direction,
// tapstack's system CPU per GiB plus the copy and check, and the
// throughput tapstack would reach at the same cores busy were that all it
// spent; each stack's figures are compared with it as with tap.Pipe's
// floor. A direction whose system CPU row is missing has no floor.
func TestKernelFloorOf(t *testing.T) {
	row := func(name string, ts []float64, gv ...float64) benchRow {
		return benchRow{benchFigure: benchFigure{Name: name, Unit: "x"}, Tapstack: ts, GVisor: gv}
	}
	rows := []benchRow{
		row("bulk, dialer → listener", []float64{30, 40}, 20, 25),
		row("CPU per GiB, dialer → listener", []float64{0.5, 0.4}, 0.6, 0.5),
		row("system CPU per GiB, dialer → listener", []float64{0.2, 0.15}, 0.3, 0.2),
		row("bulk, listener → dialer", []float64{10}, 10), // no CPU rows: no floor
		row("connections/s, 1 dialer", []float64{1, 2}, 1, 2),
	}
	copyCheck := []float64{0.05, 0.05}
	f := kernelFloorOf(rows, copyCheck)
	if f == nil || f.What == "" || len(f.Rows) != 2 {
		t.Fatalf("floor %+v, want the bulk and CPU rows of one direction", f)
	}
	bulk, cpu := f.Rows[0], f.Rows[1]
	if bulk.Figure != "bulk, dialer → listener" || cpu.Figure != "CPU per GiB, dialer → listener" {
		t.Fatalf("floor rows %q, %q", bulk.Figure, cpu.Figure)
	}
	for i, c := range []struct {
		least, gbps float64
	}{
		{0.25, 30 * 0.5 / 0.25}, // 60 Gbit/s
		{0.20, 40 * 0.4 / 0.20}, // 80
	} {
		near := func(what string, got, want float64) {
			if math.Abs(got-want) > 1e-9*want {
				t.Errorf("round %d: %s %v, want %v", i+1, what, got, want)
			}
		}
		near("floor CPU per GiB", cpu.Floor[i], c.least)
		near("floor Gbit/s", bulk.Floor[i], c.gbps)
		near("tapstack ÷ floor", bulk.Tapstack[i], rows[0].Tapstack[i]/c.gbps)
		near("floor ÷ gVisor (the bound)", bulk.Bound[i], c.gbps/rows[0].GVisor[i])
		near("gVisor CPU ÷ floor", cpu.GVisor[i], rows[1].GVisor[i]/c.least)
	}
	if kernelFloorOf(rows[3:], nil) != nil {
		t.Error("a floor without CPU rows")
	}
}
