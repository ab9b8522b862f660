//go:build linux

package interop

import (
	"context"
	"net"
	"net/netip"
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
	ns *taptest.Namespace
	ts *stack.Stack
}

func newLossyKernel(tb testing.TB, name string, cfg tap.FaultConfig) *lossyKernel {
	tb.Helper()
	ns := taptest.NewNamespace(tb)
	dev := ns.AddTAP(tb, name, kernelAddr+"/24")
	in := cfg
	in.Source = nil // derived from the outbound source: same seed, other stream
	cfg.Inbound = &in
	ts, _ := newTapstack(tb, tap.NewFault(dev.LinkEndpoint(), cfg), netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{Observer: func(event.Event) {}})
	return &lossyKernel{ns: ns, ts: ts}
}

// transfer sends size bytes one way between tapstack and the kernel, from
// the kernel if fromKernel, checking every byte by hash; it returns the
// time the receiver took to get them all.
func (k *lossyKernel) transfer(tb testing.TB, size int64, fromKernel bool, seed uint64) time.Duration {
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
	tc, err := conn.DialContext(ctx, k.ts, "tcp", kln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer tc.Close()
	a := <-accepted
	if a.err != nil {
		tb.Fatal(a.err)
	}
	kc := a.c.(*net.TCPConn)
	defer kc.Close()
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

// kernelRTOs reads the namespace kernel's count of retransmission
// timeouts (TcpExt TCPTimeouts).
func (k *lossyKernel) kernelCounters(tb testing.TB) (retrans, rtos uint64) {
	out, err := k.ns.Exec(context.Background(), "cat", "/proc/net/netstat", "/proc/net/snmp").Output()
	if err != nil {
		return 0, 0
	}
	return netstatField(string(out), "Tcp:", "RetransSegs"), netstatField(string(out), "TcpExt:", "TCPTimeouts")
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
// TAP in a namespace, the faults on tapstack's side in both directions:
// tapstack as the sender and the kernel as the sender, same faults.
//
//	go test ./stack/interop -run '^$' -bench LossyKernel -benchtime 1x
func BenchmarkLossyKernel(b *testing.B) {
	size := lossySize()
	for _, prof := range lossProfiles {
		for _, dir := range []struct {
			name       string
			fromKernel bool
		}{{"tapstack-to-kernel", false}, {"kernel-to-tapstack", true}} {
			b.Run(prof.name+"/"+dir.name, func(b *testing.B) {
				k := newLossyKernel(b, "tsbench0", prof.cfg(7))
				b.SetBytes(size)
				for b.Loop() {
					k.transfer(b, size, dir.fromKernel, 1)
				}
				if dir.fromKernel {
					rx, rto := k.kernelCounters(b)
					b.ReportMetric(float64(rx)/float64(b.N), "retransmits/op")
					b.ReportMetric(float64(rto)/float64(b.N), "RTOs/op")
				} else {
					st := k.ts.TCP().Stats()
					b.ReportMetric(float64(st.Retransmits.Load())/float64(b.N), "retransmits/op")
					b.ReportMetric(float64(st.RetransmitTimeouts.Load())/float64(b.N), "RTOs/op")
				}
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
