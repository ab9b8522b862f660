package interop

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// blackHoleMTU is the path MTU of the black holes below: a 1,500-byte
// link with a 1,400-byte hop whose ICMP never comes back (RFC 2923 2.1).
const blackHoleMTU = 1400

// TestBlackHolePipe: tapstack to tapstack, IPv4 and IPv6, through a
// 1,400-byte path MTU black hole both ways (the fault middleware drops
// every larger packet and sends no ICMP). With MTUProbingBlackHole the
// sender's retransmission timer suspects the hole, the MSS drops to
// BaseMSS, and RFC 4821's search climbs back towards the hole's MTU,
// never above it; 8 MiB arrive intact each way. (MinRTO is 20 ms so that
// the 15 minimum RTOs of black hole detection take 0.3 s, not 3. The
// search ends within 8 bytes of the hole here, as on the fake clock in
// TestBlackHoleSearchConverges; on a loaded host a probe's ACK can come
// after a timeout that counts it lost, so this test asks only that the
// search climbed.)
func TestBlackHolePipe(t *testing.T) {
	eachFamily(t, func(t *testing.T, v6 bool, a, b netip.Prefix) {
		pa, pb := tap.Pipe(tap.WithPipeQueue(cableQueue))
		fault := tap.NewFault(pa, tap.FaultConfig{BlackHoleMTU: blackHoleMTU, Inbound: &tap.FaultConfig{BlackHoleMTU: blackHoleMTU}})
		o := tcp.Options{MTUProbing: tcp.MTUProbingBlackHole, MinRTO: 20 * time.Millisecond}
		dialer, _ := newTapstack(t, fault, a, o)
		listener, _ := newTapstack(t, pb, b, o)
		c, s := connectPair(t, dialer, listener, b)
		exchange(t, c, s, 8*MiB, both, bulkTimeout())
		out, in := fault.Stats(), fault.InboundStats()
		for _, end := range []struct {
			name string
			st   *tcp.Stats
			ep   *tcp.Endpoint
		}{{"dialer", dialer.TCP().Stats(), c.Endpoint()}, {"listener", listener.TCP().Stats(), s.Endpoint()}} {
			i := end.ep.Info()
			mtu := i.SndMSS + 20 + 20 + 12 // the IP and TCP headers, the timestamp option
			if v6 {
				mtu += 20
			}
			t.Logf("%s: MSS %d (MTU %d); %d black holes, %d probes, %d acknowledged, %d lost; %d RTOs, %d fast recoveries",
				end.name, i.SndMSS, mtu, end.st.MTUBlackHoles.Load(), end.st.MTUProbes.Load(), end.st.MTUProbeSuccesses.Load(),
				end.st.MTUProbeFailures.Load(), end.st.RetransmitTimeouts.Load(), end.st.FastRecoveries.Load())
			if end.st.MTUBlackHoles.Load() == 0 || end.st.MTUProbeSuccesses.Load() == 0 {
				t.Errorf("%s: the black hole was not found, or the search never climbed", end.name)
			}
			if mtu > blackHoleMTU {
				t.Errorf("%s: MTU %d at the end, over the hole's %d", end.name, mtu, blackHoleMTU)
			}
		}
		if out.BlackHoled == 0 || in.BlackHoled == 0 {
			t.Errorf("black-holed %d out, %d in: the hole never swallowed a packet", out.BlackHoled, in.BlackHoled)
		}
	})
}

// TestKernelBlackHole: tapstack and the Linux kernel over a TAP with a
// 1,400-byte black hole both ways, each side's detection against a real
// peer. tapstack sending (MTUProbingBlackHole): the kernel receives 4 MiB
// intact once tapstack's search has found the hole. The kernel sending
// (tcp_mtu_probing=1 in its namespace): Linux's own detection gets
// through the same hole, which shows the fault middleware is a black hole
// Linux recognizes, and tapstack takes the smaller segments in.
func TestKernelBlackHole(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fromKernel bool
	}{{"tapstack-sends", false}, {"kernel-sends", true}} {
		t.Run(tc.name, func(t *testing.T) {
			k := newLossyKernelWith(t, "tsbh0", tap.FaultConfig{BlackHoleMTU: blackHoleMTU}, tcp.Options{MTUProbing: tcp.MTUProbingBlackHole})
			k.ns.Run(t, "sysctl", "-q", "-w", "net.ipv4.tcp_mtu_probing=1")
			tc0, kc := k.connect(t)
			c := tc0.(*conn.Conn)
			took := move(t, c, kc, 4*MiB, tc.fromKernel, 11)
			info := c.Endpoint().Info()
			st, out, in := k.ts.TCP().Stats(), k.link.Stats(), k.link.InboundStats()
			c.Close()
			kc.Close()
			netstat, err := k.ns.Exec(context.Background(), "cat", "/proc/net/netstat").Output()
			if err != nil {
				t.Fatal(err)
			}
			kSucc, kFail := netstatField(string(netstat), "TcpExt:", "TCPMTUPSuccess"), netstatField(string(netstat), "TcpExt:", "TCPMTUPFail")
			t.Logf("%v; black-holed %d out, %d in; tapstack: MSS %d, %d black holes, %d probes, %d acknowledged, %d lost; kernel: %d probes acknowledged, %d lost",
				took, out.BlackHoled, in.BlackHoled, info.SndMSS, st.MTUBlackHoles.Load(), st.MTUProbes.Load(),
				st.MTUProbeSuccesses.Load(), st.MTUProbeFailures.Load(), kSucc, kFail)
			if tc.fromKernel {
				if in.BlackHoled == 0 {
					t.Error("the kernel's segments never hit the hole: nothing was tested")
				}
				return
			}
			if out.BlackHoled == 0 || st.MTUBlackHoles.Load() == 0 {
				t.Errorf("black-holed %d, %d black holes found: tapstack did not meet the hole", out.BlackHoled, st.MTUBlackHoles.Load())
			}
			if mtu := info.SndMSS + 52; mtu > blackHoleMTU {
				t.Errorf("MSS %d (MTU %d) over the hole's %d", info.SndMSS, mtu, blackHoleMTU)
			}
		})
	}
}

var _ net.Conn = (*conn.Conn)(nil)

// TestBlackHoleGVisor: tapstack sends 8 MiB to gVisor's TCP through a
// 1,400-byte black hole on its way out, dialing and dialed. gVisor's TCP
// has no path MTU probing, so only tapstack's direction has the hole;
// gVisor takes the probes, segments larger than the MSS it saw before,
// as any TCP must (RFC 9293 3.7.1 bounds them by its MSS, 1,460), and
// tapstack's search climbs towards the hole, never above it.
func TestBlackHoleGVisor(t *testing.T) {
	for _, dialer := range []string{"tapstack-dials", "gvisor-dials"} {
		t.Run(dialer, func(t *testing.T) {
			t.Parallel()
			p := newGVPair(t, cable{
				tsFault: &tap.FaultConfig{BlackHoleMTU: blackHoleMTU},
				tcp:     tcp.Options{MTUProbing: tcp.MTUProbingBlackHole, MinRTO: 20 * time.Millisecond},
			})
			tc, b := p.connect(t, dialer, 80)
			exchange(t, tc, b, 8*MiB, aToB, bulkTimeout())
			st, i := p.ts.TCP().Stats(), tc.Endpoint().Info()
			mtu := i.SndMSS + 20 + 20 + 12
			t.Logf("MSS %d (MTU %d); black-holed %d; %d black holes, %d probes, %d acknowledged, %d lost",
				i.SndMSS, mtu, p.faults[0].Stats().BlackHoled, st.MTUBlackHoles.Load(), st.MTUProbes.Load(),
				st.MTUProbeSuccesses.Load(), st.MTUProbeFailures.Load())
			if st.MTUBlackHoles.Load() == 0 || st.MTUProbeSuccesses.Load() == 0 || mtu > blackHoleMTU {
				t.Errorf("MTU %d at the end, want at most %d, found by detection and probes that got through", mtu, blackHoleMTU)
			}
			tc.Close()
			b.Close()
		})
	}
}
