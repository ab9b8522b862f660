package interop

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestKernelCorruptedSegmentLostAlone: tapstack sends 8 MiB to the kernel
// over a TAP that coalesces its segments into super-frames, with 1% of
// the frames corrupted on their way out (tap.Fault, above the device).
// As on a wire, each corrupted segment must cost the kernel that segment
// alone: the device writes it on its own (TxBadChecksum), the kernel
// drops it (InCsumErrors), and tapstack retransmits about one segment per
// corruption. Before, the device joined it to a super-frame whose
// checksum, derived from its segments', then failed whole: 52 corrupted
// frames cost 462 retransmissions, and gVisor's TCP, which recovers from
// such a burst a segment or two per RTO, stalled (tapstack bench -link
// tap --corrupt 0.01 failed).
func TestKernelCorruptedSegmentLostAlone(t *testing.T) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tscorrupt0", kernelAddr+"/24")
	if !dev.Offloads().Coalesce {
		t.Skipf("the device does not coalesce (offloads %v): nothing joins a corrupted segment to others", dev.Offloads())
	}
	var corrupted atomic.Uint64
	cfg := tap.FaultConfig{Corrupt: 0.01, Seed: 11, Inbound: &tap.FaultConfig{},
		Observer: func(ev tap.FaultEvent) {
			if ev.Dir == tap.FaultOutbound && ev.Kind == tap.FaultCorrupt {
				corrupted.Add(1)
			}
		}}
	link := tap.NewFault(dev.LinkEndpoint(), cfg)
	ts := newUnwatched(t, link, netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{})
	k := &lossyKernel{ns: ns, ts: ts, link: link,
		dial: func(ctx context.Context, to string) (halfCloser, error) {
			return (&conn.Dialer{Stack: ts}).DialTCP(ctx, "tcp", to)
		}}
	k.transfer(t, 8<<20, false, 1)

	n := corrupted.Load()
	bad := dev.Stats().TxBadChecksum
	retx := ts.TCP().Stats().Retransmits.Load()
	out, err := ns.Exec(context.Background(), "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatal(err)
	}
	csum := netstatField(string(out), "Tcp:", "InCsumErrors")
	t.Logf("%d frames corrupted, %d written alone, the kernel's checksum errors %d, %d retransmissions", n, bad, csum, retx)
	if n < 10 {
		t.Fatalf("only %d frames corrupted: the test needs more", n)
	}
	// Every corrupted frame failed the kernel's check; the ones that were
	// data segments (nearly all: tapstack sends little else) were kept
	// out of the super-frames.
	if csum != n || bad > n || bad < n*3/4 {
		t.Errorf("%d corrupted: the kernel counted %d checksum errors and the device wrote %d alone", n, csum, bad)
	}
	// A lost segment is retransmitted about once (a few spurious ones
	// aside); a lost super-frame would cost ten or more.
	if retx > 2*n+8 {
		t.Errorf("%d retransmissions for %d corrupted segments", retx, n)
	}
}
