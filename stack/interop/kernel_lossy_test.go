//go:build linux

package interop

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// lossyKernel is a namespace whose kernel (192.0.2.1) talks to tapstack
// (192.0.2.2) over a TAP, with the fault middleware on tapstack's side of
// it in both directions: the kernel's segments and ACKs meet the same
// faults as tapstack's.
type lossyKernel struct {
	ns   *taptest.Namespace
	ts   *stack.Stack // nil when gVisor's TCP is on the TAP
	link *tap.Fault   // the fault middleware on the stack's side
	// dial connects from the stack on the TAP; counters are its
	// retransmissions and retransmission timeouts.
	dial     func(ctx context.Context, to string) (halfCloser, error)
	counters func() (retrans, rtos uint64)
}

// lossyKernelLink makes the namespace and its TAP, opened with tapOpts,
// with the faults on the stack's side, both directions.
func lossyKernelLink(tb testing.TB, name string, cfg tap.FaultConfig, tapOpts ...tap.Option) (*taptest.Namespace, *tap.Fault) {
	tb.Helper()
	ns := taptest.NewNamespace(tb)
	// TAPSTACK_TAP_OFFLOADS=0 opens the TAP without offloads: one frame
	// per segment both ways. With them (the default) the kernel takes
	// runs of segments as one super-frame and acknowledges each once,
	// so a lossy path gives the sender far fewer ACKs.
	if os.Getenv("TAPSTACK_TAP_OFFLOADS") == "0" {
		tapOpts = append(tapOpts, tap.WithOffloads(false))
	}
	dev := ns.AddTAP(tb, name, kernelAddr+"/24", taptest.WithTAPOptions(tapOpts...))
	in := cfg
	in.Source = nil // derived from the outbound source: same seed, other stream
	cfg.Inbound = &in
	return ns, tap.NewFault(dev.LinkEndpoint(), cfg)
}

func newLossyKernel(tb testing.TB, name string, cfg tap.FaultConfig) *lossyKernel {
	tb.Helper()
	return newLossyKernelWith(tb, name, cfg, tcp.Options{})
}

// newLossyKernelWith is newLossyKernel with the engine's options and the
// TAP's.
func newLossyKernelWith(tb testing.TB, name string, cfg tap.FaultConfig, opts tcp.Options, tapOpts ...tap.Option) *lossyKernel {
	tb.Helper()
	ns, link := lossyKernelLink(tb, name, cfg, tapOpts...)
	ts := newUnwatched(tb, link, netip.MustParsePrefix(tapAddr+"/24"), opts)
	return &lossyKernel{ns: ns, ts: ts, link: link,
		dial: func(ctx context.Context, to string) (halfCloser, error) {
			return (&conn.Dialer{Stack: ts}).DialTCP(ctx, "tcp", to)
		},
		counters: func() (uint64, uint64) {
			st := ts.TCP().Stats()
			return st.Retransmits.Load(), st.RetransmitTimeouts.Load()
		},
	}
}

// newLossyKernelGVisor is newLossyKernel with gVisor's TCP on the TAP:
// the other sender (and receiver) tapstack is measured against, with the
// kernel as the same peer and the same faults.
func newLossyKernelGVisor(tb testing.TB, name string, cfg tap.FaultConfig) *lossyKernel {
	tb.Helper()
	ns, link := lossyKernelLink(tb, name, cfg)
	peer := newPeer(tb, link, netip.MustParsePrefix(tapAddr+"/24"))
	return &lossyKernel{ns: ns,
		dial: func(_ context.Context, to string) (halfCloser, error) {
			c, err := peer.Dial(netip.MustParseAddrPort(to))
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		counters: func() (uint64, uint64) {
			st := peer.S.Stats().TCP
			return st.Retransmits.Value(), st.Timeouts.Value()
		},
	}
}

// connect makes one connection from the stack on the TAP (tc) to a
// listener of the namespace's kernel (kc).
func (k *lossyKernel) connect(tb testing.TB) (tc halfCloser, kc *net.TCPConn) {
	tb.Helper()
	var kln net.Listener
	if err := k.ns.Do(func() (err error) {
		kln, err = net.Listen("tcp4", kernelAddr+":0")
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer kln.Close()
	accepted := acceptOne(kln)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tc, err := k.dial(ctx, kln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	a := <-accepted
	if a.err != nil {
		tc.Close()
		tb.Fatal(a.err)
	}
	return tc, a.c.(*net.TCPConn)
}

// accept makes one connection from the namespace's kernel (kc) to a
// listener of tapstack's stack (tc), the other way round from connect.
func (k *lossyKernel) accept(tb testing.TB) (tc *conn.Conn, kc *net.TCPConn) {
	tb.Helper()
	ln, err := conn.Listen(k.ts, "tcp", tapAddr+":9100")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := acceptOne(ln)
	var c net.Conn
	if err := k.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", tapAddr+":9100", 20*time.Second)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	a := <-accepted
	if a.err != nil {
		c.Close()
		tb.Fatal(a.err)
	}
	return a.c.(*conn.Conn), c.(*net.TCPConn)
}

// transfer sends size bytes one way between tapstack and the kernel, from
// the kernel if fromKernel, checking every byte by hash; it returns the
// time the receiver took to get them all.
func (k *lossyKernel) transfer(tb testing.TB, size int64, fromKernel bool, seed uint64) time.Duration {
	tb.Helper()
	tc, kc := k.connect(tb)
	defer tc.Close()
	defer kc.Close()
	return move(tb, tc, kc, size, fromKernel, seed)
}

// move is transfer on a connection made: tc tapstack's end, kc the
// kernel's.
func move(tb testing.TB, tc halfCloser, kc *net.TCPConn, size int64, fromKernel bool, seed uint64) time.Duration {
	tb.Helper()
	var from, to halfCloser = tc, kc
	if fromKernel {
		from, to = kc, tc
	}
	dl := time.Now().Add(3 * time.Minute)
	from.SetDeadline(dl)
	to.SetDeadline(dl)
	start := time.Now()
	sent, got := flow(from, to, size, seed)
	d := time.Since(start)
	checkFlow(tb, "transfer", sent, got)
	return d
}

// kernelCounters reads the namespace kernel's retransmitted segments and
// retransmission timeouts. Linux files each RTO under one counter by the
// state it fired in (tcp_retransmit_timer): TCPTimeouts only for an RTO in
// the open state with nothing SACKed; in recovery it is TCPSackRecoveryFail
// or TCPRenoRecoveryFail, after an RTO TCPLossFailures, with SACKed data
// TCPSackFailures or TCPRenoFailures. All of them are RTOs: TCPTimeouts
// alone counted 6 where the kernel had hundreds at 20% loss.
func (k *lossyKernel) kernelCounters(tb testing.TB) (retrans, rtos uint64) {
	out, err := k.ns.Exec(context.Background(), "cat", "/proc/net/netstat", "/proc/net/snmp").Output()
	if err != nil {
		return 0, 0
	}
	for _, f := range []string{"TCPTimeouts", "TCPSackRecoveryFail", "TCPRenoRecoveryFail", "TCPLossFailures", "TCPSackFailures", "TCPRenoFailures"} {
		rtos += netstatField(string(out), "TcpExt:", f)
	}
	return netstatField(string(out), "Tcp:", "RetransSegs"), rtos
}

// TestKernelLossy: tapstack and the Linux kernel move 4 MiB each way over
// a TAP that loses 5% of the frames in both directions (and with 5%
// reordering, 2% duplication and 1% corruption on top): every byte
// arrives, and tapstack's sender repairs almost every loss without a
// retransmission timeout.
func TestKernelLossy(t *testing.T) {
	for _, prof := range lossProfiles {
		if prof.name != "loss5" && prof.name != "mixed" {
			continue
		}
		t.Run(prof.name, func(t *testing.T) {
			k := newLossyKernel(t, "tslossy0", prof.cfg(11))
			d := k.transfer(t, 4*MiB, false, 1)
			st := k.ts.TCP().Stats()
			rx, rto := st.Retransmits.Load(), st.RetransmitTimeouts.Load()
			t.Logf("tapstack to kernel: 4 MiB in %v, %d retransmissions, %d RTOs", d.Round(time.Millisecond), rx, rto)
			if rx > 0 && rto*10 > rx {
				t.Errorf("%d RTOs for %d retransmissions: more than one loss in ten waited for the timer", rto, rx)
			}
			d = k.transfer(t, 4*MiB, true, 2)
			krx, krto := k.kernelCounters(t)
			t.Logf("kernel to tapstack: 4 MiB in %v (kernel: %d retransmitted segments, %d RTOs)", d.Round(time.Millisecond), krx, krto)
		})
	}
}

// BenchmarkLossyKernel is BenchmarkLossy against the Linux kernel over a
// TAP in a namespace, the faults on the TAP side in both directions, the
// kernel the same peer throughout: tapstack and gVisor's TCP each as the
// sender to the kernel and as the receiver from it, with the same faults
// and seed, every byte hashed. A sender is compared with a sender on the
// same receiver: tapstack-to-kernel with gvisor-to-kernel.
//
//	go test ./stack/interop -run '^$' -bench LossyKernel -benchtime 1x
func BenchmarkLossyKernel(b *testing.B) {
	size := lossySize()
	for _, prof := range lossProfiles {
		for _, dir := range []struct {
			name       string
			fromKernel bool
			make       func(testing.TB, string, tap.FaultConfig) *lossyKernel
		}{
			{"tapstack-to-kernel", false, newLossyKernel},
			{"gvisor-to-kernel", false, newLossyKernelGVisor},
			{"kernel-to-tapstack", true, newLossyKernel},
			{"kernel-to-gvisor", true, newLossyKernelGVisor},
		} {
			b.Run(prof.name+"/"+dir.name, func(b *testing.B) {
				k := dir.make(b, "tsbench0", prof.cfg(7))
				b.SetBytes(size)
				for b.Loop() {
					k.transfer(b, size, dir.fromKernel, 1)
				}
				rx, rto := k.counters()
				if dir.fromKernel {
					rx, rto = k.kernelCounters(b)
				}
				b.ReportMetric(float64(rx)/float64(b.N), "retransmits/op")
				b.ReportMetric(float64(rto)/float64(b.N), "RTOs/op")
			})
		}
	}
}

// netstatField reads a counter from /proc/net/netstat or snmp text: the
// header line starting with prefix names the fields, the next gives them.
func netstatField(text, prefix, field string) uint64 {
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], prefix) || !strings.HasPrefix(lines[i+1], prefix) {
			continue
		}
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := range names {
			if names[j] == field && j < len(values) {
				v, _ := strconv.ParseUint(values[j], 10, 64)
				return v
			}
		}
	}
	return 0
}

// TestKernelSoak is TestSoak against the Linux kernel over a TAP, the
// fault middleware on tapstack's side of it in both directions: 64 MiB
// (TAPSTACK_SOAK MiB) each way at once, every byte checked by hash, with
// mixed faults and with 20% loss.
func TestKernelSoak(t *testing.T) {
	mib, err := strconv.Atoi(os.Getenv("TAPSTACK_SOAK"))
	if err != nil || mib <= 0 {
		t.Skip("set TAPSTACK_SOAK=64 (MiB each way) to run the soak")
	}
	for _, prof := range lossProfiles {
		if prof.name != "mixed" && prof.name != "loss20" {
			continue
		}
		t.Run(prof.name, func(t *testing.T) {
			k := newLossyKernel(t, "tssoak0", prof.cfg(33))
			tc, kc := k.connect(t)
			defer tc.Close()
			defer kc.Close()
			d := exchange(t, tc, kc, int64(mib)*MiB, both, 90*time.Minute)
			st := k.ts.TCP().Stats()
			krx, krto := k.kernelCounters(t)
			t.Logf("%s: %d MiB each way in %v; tapstack: %d retransmissions, %d RTOs, %d tail loss probes, %d bad checksums dropped; kernel: %d retransmitted segments, %d RTOs",
				prof.name, mib, d.Round(time.Millisecond), st.Retransmits.Load(), st.RetransmitTimeouts.Load(),
				st.TailLossProbes.Load(), st.Dropped(event.DropBadChecksum), krx, krto)
		})
	}
}
