//go:build linux

package interop

import (
	"net/netip"
	"testing"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestKernelRouteMetrics: tapstack and the Linux kernel over a TAP whose
// path drops, both ways, every packet over 1,000 bytes and says nothing
// (a black hole, RFC 2923 2.1). tapstack's user knows the path: the route
// to the kernel's subnet gets `mtu lock 1000 advmss 800 initcwnd 4`
// (stack.SetRouteMetrics). tapstack's segments are then sized for 1,000
// bytes (MSS 948 with timestamps), the kernel's for the 800 tapstack's SYN
// announced (its tcpi_snd_mss 788), and 4 MiB cross each way with not one
// packet lost to the hole and no probing. Lowering the route's MTU to 700
// on the live connection cuts tapstack's next segments to 648 bytes, and
// 4 MiB more arrive intact.
func TestKernelRouteMetrics(t *testing.T) {
	const hole, size = 1000, 4 * MiB
	k := newLossyKernelWith(t, "tsroute0", tap.FaultConfig{BlackHoleMTU: hole}, tcp.Options{})
	route := netip.MustParsePrefix(kernelAddr + "/24").Masked()
	nic := stackNIC(t, k.ts)
	if err := k.ts.SetRouteMetrics(route, nic, stack.RouteMetrics{MTU: hole, LockMTU: true, AdvMSS: 800, InitCwnd: 4}); err != nil {
		t.Fatal(err)
	}
	tc, kc := k.connect(t)
	defer tc.Close()
	defer kc.Close()
	ep := tc.(*conn.Conn).Endpoint()
	i, ki := ep.Info(), kernelTCPInfo(t, kc)
	t.Logf("tapstack: announced MSS %d, send MSS %d, path MTU %d, cwnd %d; kernel: snd_mss %d",
		i.RcvMSS, i.SndMSS, i.PathMTU, i.Cwnd, ki.Snd_mss)
	if i.RcvMSS != 800 || i.SndMSS != hole-52 || i.PathMTU != hole || i.Cwnd != 4*uint32(i.SndMSS) {
		t.Errorf("after the handshake: announced MSS %d, send MSS %d, path MTU %d, cwnd %d; want 800, %d - 40 - 12 = %d, %d, 4 segments",
			i.RcvMSS, i.SndMSS, i.PathMTU, i.Cwnd, hole, hole-52, hole)
	}
	if ki.Snd_mss != 800-12 {
		t.Errorf("the kernel's snd_mss %d; want the announced 800 less its timestamps, 788", ki.Snd_mss)
	}
	move(t, tc, kc, size, false, 1)
	move(t, tc, kc, size, true, 2)
	if out, in := k.link.Stats().BlackHoled, k.link.InboundStats().BlackHoled; out+in != 0 {
		t.Errorf("the hole swallowed %d packets out, %d in; want none", out, in)
	}

	tc2, kc2 := k.connect(t)
	defer tc2.Close()
	defer kc2.Close()
	if err := k.ts.SetRouteMetrics(route, nic, stack.RouteMetrics{MTU: 700, LockMTU: true, AdvMSS: 800, InitCwnd: 4}); err != nil {
		t.Fatal(err)
	}
	if i := tc2.(*conn.Conn).Endpoint().Info(); i.SndMSS != 700-52 || i.PathMTU != 700 {
		t.Errorf("after the route's MTU fell to 700: send MSS %d, path MTU %d; want %d and 700", i.SndMSS, i.PathMTU, 700-52)
	}
	move(t, tc2, kc2, size, false, 3)
	if out, in := k.link.Stats().BlackHoled, k.link.InboundStats().BlackHoled; out+in != 0 {
		t.Errorf("the hole swallowed %d packets out, %d in after the MTU fell; want none", out, in)
	}
	if st := k.ts.TCP().Stats(); st.MTUProbes.Load()+st.MTUBlackHoles.Load() != 0 {
		t.Errorf("%d MTU probes, %d black holes suspected; want none", st.MTUProbes.Load(), st.MTUBlackHoles.Load())
	}
}
