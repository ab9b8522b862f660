//go:build linux

package interop

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestKernelECN: tapstack and the Linux kernel (net.ipv4.tcp_ecn=1 in
// its namespace) agree to ECN (RFC 3168) over a TAP whose fault
// middleware marks 3% of the ECN-capable frames CE, both ways, and drops
// none: a router's AQM that marks instead of dropping. 4 MiB go each way,
// on connections each side opens.
//
//   - tapstack sending: its data reaches the kernel ECT(0) (the
//     namespace's IpExt InECT0Pkts), the kernel echoes the marks, and
//     tapstack reduces its window for them (CWR episodes) with nothing
//     deemed lost.
//   - the kernel sending: its data arrives ECN-capable, tapstack counts
//     the marks and echoes them, and the kernel answers with CWR.
//
// The TAP writes every frame as the middleware passed it, without
// coalescing: the kernel counts a super-frame once in InCEPkts however
// many segments it stands for, and two adjacent segments the middleware
// marked, coalesced into one super-frame (their IP headers then equal),
// made the count one short of the marks in about one run in ten under
// load. Coalescing keeps a CE segment apart from ECT(0) ones
// (TestCoalesce).
func TestKernelECN(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fromKernel bool
		mode       tcp.ECNMode // tapstack's; the kernel dials when ECNPassive
	}{
		{"tapstack-dials/tapstack-sends", false, tcp.ECNOn},
		{"tapstack-dials/kernel-sends", true, tcp.ECNOn},
		{"kernel-dials/tapstack-sends", false, tcp.ECNPassive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cwrIn atomic.Int64
			k := newLossyKernelWith(t, "tsecn0", tap.FaultConfig{Mark: 0.03, Seed: 3}, tcp.Options{ECN: tc.mode, Observer: func(ev event.Event) {
				if ev.Kind == event.KindReceive && ev.Segment.Flags&event.Flags(header.TCPFlagCwr) != 0 {
					cwrIn.Add(1)
				}
			}}, tap.WithCoalescing(false))
			ns, ts, link := k.ns, k.ts, k.link
			ns.Run(t, "sysctl", "-q", "-w", "net.ipv4.tcp_ecn=1")
			var c *conn.Conn
			var kc *net.TCPConn
			if tc.mode == tcp.ECNPassive {
				c, kc = k.accept(t)
			} else {
				tcn, kcn := k.connect(t)
				c, kc = tcn.(*conn.Conn), kcn
			}
			move(t, c, kc, 4*MiB, tc.fromKernel, 9)
			c.Close()
			kc.Close()
			ts.TCP().SyncEvents()
			st, out, in := ts.TCP().Stats(), link.Stats(), link.InboundStats()
			info := c.Endpoint().Info()
			netstat, err := ns.Exec(context.Background(), "cat", "/proc/net/netstat").Output()
			if err != nil {
				t.Fatal(err)
			}
			inECT0, inCE := netstatField(string(netstat), "IpExt:", "InECT0Pkts"), netstatField(string(netstat), "IpExt:", "InCEPkts")
			t.Logf("ECN %v; marked %d out, %d in; tapstack: %d CE received, %d CWR episodes, %d CWR segments in, %d fast recoveries, %d RTOs, %d tail loss probes; kernel: %d ECT(0) and %d CE packets in",
				info.ECN, out.Marked, in.Marked, st.CEReceived.Load(), st.ECNReductions.Load(), cwrIn.Load(),
				st.FastRecoveries.Load(), st.RetransmitTimeouts.Load(), st.TailLossProbes.Load(), inECT0, inCE)
			if !info.ECN || st.ECNConnections.Load() != 1 {
				t.Fatalf("ECN %v, %d ECN connections: the handshake did not agree", info.ECN, st.ECNConnections.Load())
			}
			if tc.fromKernel {
				if in.Marked == 0 || st.CEReceived.Load() == 0 {
					t.Errorf("%d of the kernel's frames marked, %d CE counted: the kernel's data was not ECN-capable or the marks went unseen", in.Marked, st.CEReceived.Load())
				}
				if cwrIn.Load() == 0 {
					t.Error("no CWR from the kernel: it never saw tapstack's echo")
				}
				return
			}
			if inECT0 == 0 || out.Marked == 0 || inCE != out.Marked {
				t.Errorf("kernel: %d ECT(0) and %d CE packets in, %d marked: want tapstack's data ECT(0), every mark seen", inECT0, inCE, out.Marked)
			}
			if st.ECNReductions.Load() == 0 {
				t.Error("no CWR episode: tapstack never acted on the kernel's echo")
			}
			// Nothing is lost: no fast recovery, no timeout. (A tail loss
			// probe may go when the host is busy and an ACK is late: a
			// timer's guess, seen once in CI, not a loss.)
			if n := st.FastRecoveries.Load() + st.RetransmitTimeouts.Load(); n != 0 {
				t.Errorf("%d fast recoveries and timeouts on a path that marks and drops nothing", n)
			}
		})
	}
}
