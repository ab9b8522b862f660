//go:build linux

package interop

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/tap"
)

// TestKernelSendBufferGrows: tapstack sends 32 MiB to the kernel over a
// TAP with 2 ms of delay each way, a path whose bandwidth-delay product
// is more than the 1 MiB the send buffer starts with. The writer keeps
// the buffer full, so its end is always a tail shorter than a segment
// (1 MiB is no multiple of the MSS), which Nagle holds while data is in
// flight; the buffer must grow all the same (expandSendBuffer), and every
// byte arrive. Counted as unsent, that tail kept the buffer at 1 MiB and
// the sender at a third of gVisor's TCP on such a path.
func TestKernelSendBufferGrows(t *testing.T) {
	k := newLossyKernel(t, "tssndbuf0", tap.FaultConfig{Delay: 2 * time.Millisecond})
	tc, kc := k.connect(t)
	defer tc.Close()
	defer kc.Close()
	c := tc.(*conn.Conn)
	start := c.Info().SendBuffer
	d := move(t, tc, kc, 32*MiB, false, 1)
	i := c.Info()
	t.Logf("32 MiB in %v: send buffer %d (from %d), %d in flight at the end, cwnd %d, sndbuf-limited %v of %v busy",
		d.Round(time.Millisecond), i.SendBuffer, start, i.InFlight, i.Cwnd, i.SndbufLimited.Round(time.Millisecond), i.BusyTime.Round(time.Millisecond))
	if i.SendBuffer <= start {
		t.Errorf("send buffer %d after 32 MiB over a 4 ms round trip, want more than the %d it started with", i.SendBuffer, start)
	}
}
