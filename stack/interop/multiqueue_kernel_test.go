//go:build linux

package interop

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
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
			var kln net.Listener
			if err := ns.Do(func() (err error) {
				kln, err = net.Listen("tcp4", kernelAddr+":0")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer kln.Close()

			var wg sync.WaitGroup
			for i := range conns {
				accepted := acceptOne(kln)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				tc, err := (&conn.Dialer{Stack: ts}).DialTCP(ctx, "tcp", kln.Addr().String())
				cancel()
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				a := <-accepted
				if a.err != nil {
					tc.Close()
					t.Fatalf("connection %d: accept: %v", i, a.err)
				}
				kc := a.c.(*net.TCPConn)
				dl := time.Now().Add(kernelTimeout)
				tc.SetDeadline(dl)
				kc.SetDeadline(dl)
				var from, to halfCloser = tc, kc
				name := fmt.Sprintf("connection %d, tapstack to kernel", i)
				if i%2 == 1 {
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
			wg.Wait()

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
