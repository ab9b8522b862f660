//go:build linux

package interop

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/tap"
)

// TestKernelPacing: tapstack sends 2 MiB to the Linux kernel over a TAP
// with its pacing capped at 8 MB/s (Conn.SetMaxPacingRate, Linux's
// SO_MAX_PACING_RATE): every byte arrives, checked, and the transfer
// takes at least what that rate allows for all but the first ten
// segments, which leave unpaced, and one packet. The bound holds on any
// machine, however slow: pacing only ever delays. Unpaced, 2 MiB crosses
// the TAP in a few milliseconds.
func TestKernelPacing(t *testing.T) {
	const rate, size = 8e6, 2 * MiB
	k := newLossyKernel(t, "tspace0", tap.FaultConfig{})
	tc, kc := k.connect(t)
	defer tc.Close()
	defer kc.Close()
	c := tc.(*conn.Conn)
	if err := c.SetMaxPacingRate(rate); err != nil {
		t.Fatal(err)
	}
	d := move(t, tc, kc, size, false, 1)
	i := c.Info()
	least := time.Duration(float64(size-10*1460-64<<10) / rate * float64(time.Second))
	t.Logf("%d bytes in %v at most %g bytes/s (at least %v): pacing rate %d, %d waits, cwnd %d, SRTT %v",
		size, d.Round(time.Millisecond), float64(rate), least.Round(time.Millisecond), i.PacingRate, i.PacingWaits, i.Cwnd, i.RTT)
	if d < least {
		t.Errorf("%d bytes in %v, faster than %g bytes/s allows (%v)", size, d, float64(rate), least)
	}
	if !i.Paced || i.MaxPacingRate != rate || i.PacingWaits == 0 {
		t.Errorf("paced %v, at most %d bytes/s, %d waits; want true, %d, some", i.Paced, i.MaxPacingRate, i.PacingWaits, uint64(rate))
	}
}
