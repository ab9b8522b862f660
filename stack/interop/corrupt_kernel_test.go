package interop

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
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
	k, corrupted := corruptingKernel(t, ns, dev, tap.FaultConfig{Corrupt: 0.01, Seed: 11, Inbound: &tap.FaultConfig{}})
	ts := k.ts
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

// TestKernelCorruptedInboundSegmentLostAlone: the kernel sends 8 MiB to
// tapstack over a TAP with GRO, its TSO super-frames of up to 44
// segments corrupted, 1% of them, on their way in. The device hands the
// super-frames up as their wire segments then, so the faults draw for
// wire segments, each corrupted one fails tapstack's check alone, and
// the kernel retransmits about one segment per corruption. Handed up
// whole, a corrupted super-frame was dropped whole. The runs of intact
// segments between the corrupted ones reach the stack joined again, as a
// receiver's GRO joins what the wire left intact; handed on one by one,
// they cost a trip through the stack and, after a hole, an ACK per
// second segment each.
func TestKernelCorruptedInboundSegmentLostAlone(t *testing.T) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tscorrupt1", kernelAddr+"/24")
	if !dev.Offloads().GRO {
		t.Skipf("the device has no GRO (offloads %v): it hands up wire segments anyway", dev.Offloads())
	}
	k, corrupted := corruptingKernel(t, ns, dev, tap.FaultConfig{Seed: 12, Inbound: &tap.FaultConfig{Corrupt: 0.01}})
	k.transfer(t, 8<<20, true, 1)

	n := corrupted.Load()
	retx, _ := k.kernelCounters(t)
	st := k.link.InboundStats()
	in := st.Frames
	csum := k.ts.TCP().Stats().Drops[event.DropBadChecksum].Load()
	t.Logf("%d frames came in, %d corrupted, %d handed on joined again; tapstack dropped %d for their checksum, the kernel retransmitted %d", in, n, st.Rejoined, csum, retx)
	if in < (8<<20)/1448 {
		t.Errorf("%d frames reached the middleware for 8 MiB: super-frames, not wire segments", in)
	}
	// The intact runs between the corrupted segments reach the stack
	// joined again, as a receiver's GRO joins them after the wire.
	if st.Rejoined < in/2 {
		t.Errorf("%d of %d wire segments handed on joined again: the intact ones went one by one", st.Rejoined, in)
	}
	if n < 10 {
		t.Fatalf("only %d frames corrupted: the test needs more", n)
	}
	if csum != n {
		t.Errorf("%d corrupted, %d dropped for their checksum", n, csum)
	}
	if retx > 2*n+8 {
		t.Errorf("the kernel retransmitted %d segments for %d corrupted ones", retx, n)
	}
}

// corruptingKernel puts tapstack on dev behind a fault middleware of cfg
// and returns it as a lossyKernel, with the count of frames the
// middleware corrupted.
func corruptingKernel(t *testing.T, ns *taptest.Namespace, dev *tap.Device, cfg tap.FaultConfig) (*lossyKernel, *atomic.Uint64) {
	t.Helper()
	corrupted := countCorruptions(&cfg)
	link := tap.NewFault(dev.LinkEndpoint(), cfg)
	ts := newUnwatched(t, link, netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{})
	return &lossyKernel{ns: ns, ts: ts, link: link,
		dial: func(ctx context.Context, to string) (halfCloser, error) {
			return (&conn.Dialer{Stack: ts}).DialTCP(ctx, "tcp", to)
		}}, corrupted
}

// countCorruptions makes cfg's observer count the frames the middleware
// corrupts, either way, and returns the count.
func countCorruptions(cfg *tap.FaultConfig) *atomic.Uint64 {
	n := new(atomic.Uint64)
	cfg.Observer = func(ev tap.FaultEvent) {
		if ev.Kind == tap.FaultCorrupt {
			n.Add(1)
		}
	}
	return n
}

// TestPipeCorruptedSegmentLostAlone: over tap.Pipe with GSO, the sender's
// super-frames of up to 64 KiB reach a receiver whose fault middleware
// corrupts 1% of the frames on their way in. The pipe hands them up as
// their wire segments then, so each corruption costs one segment, as on
// a wire: tapstack retransmits about one segment per corrupted frame.
// Handed up whole, a corrupted super-frame failed its checksum whole. The
// runs of intact segments between them reach the stack joined again, as
// a receiver's GRO joins them.
func TestPipeCorruptedSegmentLostAlone(t *testing.T) {
	pa, pb := tap.Pipe(tap.WithPipeGSO(true))
	cfg := tap.FaultConfig{Seed: 5, Inbound: &tap.FaultConfig{Corrupt: 0.01}}
	corrupted := countCorruptions(&cfg)
	rcvLink := tap.NewFault(pb, cfg)
	snd, _ := newTapstack(t, pa, tsPrefix4, tcp.Options{})
	rcv, _ := newTapstack(t, rcvLink, peerPrefix4, tcp.Options{})
	c, s := connectPair(t, snd, rcv, peerPrefix4)
	setDeadlines(t, time.Minute, c, s)
	mover(t, c, s, 8<<20)()
	n, retx := corrupted.Load(), snd.TCP().Stats().Retransmits.Load()
	gso := snd.TCP().Stats().GSOPackets.Load()
	t.Logf("%d GSO packets sent, %d frames corrupted on the way in, %d retransmissions", gso, n, retx)
	// The faults drew for wire segments, 1448 bytes each, not for
	// super-frames; the intact runs went on joined again.
	st := rcvLink.InboundStats()
	if st.Frames < (8<<20)/1448 {
		t.Errorf("%d frames reached the middleware for 8 MiB: super-frames, not wire segments", st.Frames)
	}
	if st.Rejoined < st.Frames/2 {
		t.Errorf("%d of %d wire segments handed on joined again: the intact ones went one by one", st.Rejoined, st.Frames)
	}
	if gso == 0 || n < 10 {
		t.Fatalf("%d GSO packets, %d corrupted: the test needs both", gso, n)
	}
	if retx > 2*n+8 {
		t.Errorf("%d retransmissions for %d corrupted frames", retx, n)
	}
}
