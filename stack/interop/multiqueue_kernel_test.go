//go:build linux

package interop

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestKernelMultiqueue: a TAP device made multi_queue, opened with four
// queues (tap.WithQueues), carries eight connections with the kernel at
// once, four each way, 4 MiB each: every byte arrives, and the flows are
// spread over the queues both ways (the kernel steers a flow's frames to
// the queue its last frame from us was written on). With the device's
// inbound queue (one delivery goroutine), with each read loop delivering
// on its own goroutine, and with super-frames cut into wire segments.
func TestKernelMultiqueue(t *testing.T) {
	const queues, conns, size = 4, 8, 4 << 20
	for _, mode := range superFrameModes() {
		t.Run(mode.name, func(t *testing.T) {
			ns := taptest.NewNamespace(t)
			dev := ns.AddTAP(t, "tsmq0", kernelAddr+"/24", taptest.WithQueues(queues), taptest.WithTAPOptions(mode.opts...))
			if got := dev.Queues(); got != queues {
				t.Fatalf("Queues() = %d, want %d", got, queues)
			}
			ts := newUnwatched(t, dev.LinkEndpoint(), netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{})
			kernelFlows(t, ns, ts, conns, size, func(i int) bool { return i%2 == 1 })

			qs := dev.QueueStats()
			t.Logf("queues: %+v", qs)
			read, written := 0, 0
			for _, q := range qs {
				if q.Reads > 0 {
					read++
				}
				if q.Writes > 0 {
					written++
				}
			}
			// Eight flows over four queues by a hash: the chance that
			// all of them land on one queue is 4^-7.
			if read < 2 || written < 2 {
				t.Errorf("frames read on %d queues and written on %d, want the flows spread over at least 2 of %d each way", read, written, queues)
			}
		})
	}
}

// TestOpenQueuesBadInput: a queue count out of range is refused by
// name, before any device is touched; a multiqueue open of a device made
// single-queue says what the device is.
func TestOpenQueuesBadInput(t *testing.T) {
	for _, n := range []int{0, -1, 257} {
		if _, err := tap.Open("tsmq0", tap.WithQueues(n)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d queues out of range", n)) {
			t.Errorf("WithQueues(%d): %v, want a range error", n, err)
		}
	}
	ns := taptest.NewNamespace(t)
	ns.Run(t, "ip", "tuntap", "add", "dev", "tsmq1", "mode", "tap")
	err := ns.Do(func() error {
		d, err := tap.Open("tsmq1", tap.WithQueues(2))
		if err == nil {
			d.Close()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "not a multi-queue TAP device") {
		t.Errorf("two queues of a single-queue device: %v", err)
	}
}

// TestOpenCreatesMultiqueue: Open with three queues makes the device
// itself when it does not exist: the kernel reports it multi_queue with
// three queues attached, and it goes when the device is closed.
func TestOpenCreatesMultiqueue(t *testing.T) {
	ns := taptest.NewNamespace(t)
	var dev *tap.Device
	if err := ns.Do(func() (err error) {
		dev, err = tap.Open("tsmq2", tap.WithQueues(3))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if out := ns.Run(t, "ip", "-d", "link", "show", "tsmq2"); !strings.Contains(out, "multi_queue numqueues 3") {
		dev.Close()
		t.Fatalf("ip -d link show: want multi_queue numqueues 3 in\n%s", out)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if out := ns.Run(t, "ip", "link", "show"); strings.Contains(out, "tsmq2") {
		t.Errorf("the device outlived Close:\n%s", out)
	}
}

// kernelFlows opens conns connections from ts to a kernel listener in ns
// and moves size bytes over each at once, from the kernel to tapstack on
// connection i if fromKernel(i) and the other way if not, and checks that
// every byte arrived.
func kernelFlows(t *testing.T, ns *taptest.Namespace, ts *stack.Stack, conns int, size int64, fromKernel func(i int) bool) {
	t.Helper()
	var kln net.Listener
	if err := ns.Do(func() (err error) {
		kln, err = net.Listen("tcp4", kernelAddr+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer kln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range conns {
		tc, kc := dialAccepted(t, ts, kln)
		dl := time.Now().Add(kernelTimeout)
		tc.SetDeadline(dl)
		kc.SetDeadline(dl)
		var from, to halfCloser = tc, kc
		name := fmt.Sprintf("connection %d, tapstack to kernel", i)
		if fromKernel(i) {
			from, to = kc, tc
			name = fmt.Sprintf("connection %d, kernel to tapstack", i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tc.Close()
			defer kc.Close()
			sent, got := flow(from, to, size, uint64(i))
			checkFlow(t, name, sent, got)
		}()
	}
}

// TestKernelMultiqueueCorruptInbound: the kernel sends 4 MiB on each of
// four connections at once to tapstack over four queues whose read loops
// deliver on their own goroutines (tap.WithRxQueue(0)), under a fault
// middleware that corrupts 1% of the inbound frames. The device hands the
// kernel's super-frames up as wire segments, which two read loops may be
// doing at once; each wire segment is still found by its packet
// (splitDeliveries): every corrupted one fails tapstack's checksum alone,
// runs of intact ones are joined again, and every byte arrives.
func TestKernelMultiqueueCorruptInbound(t *testing.T) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tsmq3", kernelAddr+"/24", taptest.WithQueues(4), taptest.WithTAPOptions(tap.WithRxQueue(0)))
	if !dev.Offloads().GRO {
		t.Skipf("the device has no GRO (offloads %v): it hands up wire segments anyway", dev.Offloads())
	}
	cfg := tap.FaultConfig{Seed: 13, Inbound: &tap.FaultConfig{Corrupt: 0.01}}
	corrupted := countCorruptions(&cfg)
	link := tap.NewFault(dev.LinkEndpoint(), cfg)
	ts := newUnwatched(t, link, netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{})
	kernelFlows(t, ns, ts, 4, 4<<20, func(int) bool { return true })

	n := corrupted.Load()
	st := link.InboundStats()
	csum := ts.TCP().Stats().Drops[event.DropBadChecksum].Load()
	t.Logf("queues %+v; %d frames in, %d corrupted, %d joined again, %d dropped for their checksum", dev.QueueStats(), st.Frames, n, st.Rejoined, csum)
	if n < 10 || csum != n {
		t.Errorf("%d corrupted, %d dropped for their checksum: want the same, at least 10", n, csum)
	}
	if st.Rejoined < st.Frames/4 {
		t.Errorf("%d of %d wire segments joined again", st.Rejoined, st.Frames)
	}
}

// TestKernelMultiqueueFaults: eight connections, four each way, 2 MiB
// each, over four queues whose read loops deliver on their own
// goroutines, under every fault at once, both ways (loss, duplication,
// reordering and corruption 1% each, and a delay): every byte arrives
// intact, with the middleware's state shared by the read loops.
func TestKernelMultiqueueFaults(t *testing.T) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tsmq4", kernelAddr+"/24", taptest.WithQueues(4), taptest.WithTAPOptions(tap.WithRxQueue(0)))
	faults := tap.FaultConfig{Loss: 0.01, Duplicate: 0.01, Reorder: 0.01, Corrupt: 0.01, Delay: 200 * time.Microsecond}
	in := faults
	cfg := faults
	cfg.Seed, cfg.Inbound = 14, &in
	link := tap.NewFault(dev.LinkEndpoint(), cfg)
	ts := newUnwatched(t, link, netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{})
	kernelFlows(t, ns, ts, 8, 2<<20, func(i int) bool { return i%2 == 1 })
	t.Logf("queues %+v; inbound %+v; outbound %+v", dev.QueueStats(), link.InboundStats(), link.Stats())
}
