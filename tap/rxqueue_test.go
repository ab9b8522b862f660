//go:build linux

package tap

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gatedDispatcher records what it is handed, one packet per token on
// gate, and the bursts' ends.
type gatedDispatcher struct {
	gate    chan struct{}
	entered chan struct{} // a token per packet handed over, before the gate
	noteDispatcher
}

func (d *gatedDispatcher) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.entered <- struct{}{}
	<-d.gate
	d.noteDispatcher.DeliverNetworkPacket(p, pkt)
}

// TestRxQueue: the read loop's frames reach the stack in order through
// the delivery goroutine (rxqueue.go); a full queue makes the read loop
// wait, and counts it; a burst ends once, when the delivery goroutine
// has delivered everything read, and not while frames wait.
func TestRxQueue(t *testing.T) {
	d := &gatedDispatcher{gate: make(chan struct{}), entered: make(chan struct{}, 8)}
	l := newTestLink(d, Offloads{})
	l.OnBatchEnd(func() { d.note("end") })
	q := newRxQueue(l, 2)
	put := func(b byte) {
		q.put(d, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData([]byte{b})}), wireSegment{})
	}
	put(1)
	<-d.entered // 1 is being delivered, held at the gate
	put(2)
	put(3) // the queue is full
	full := make(chan struct{})
	go func() {
		put(4) // waits for room
		close(full)
	}()
	for i := 0; l.rxQueueFull.Load() == 0; i++ {
		if i > 1e6 {
			t.Fatal("the fourth put never found the queue full")
		}
		runtime.Gosched()
	}
	d.gate <- struct{}{} // 1 delivered: 2 taken, which makes room for 4
	<-full
	for range 3 {
		d.gate <- struct{}{}
	}
	q.close()
	want := []string{"1", "2", "3", "4", "end"}
	if !slices.Equal(d.log, want) {
		t.Errorf("delivered %v, want %v", d.log, want)
	}
	if n := l.rxQueueFull.Load(); n != 1 {
		t.Errorf("rxQueueFull %d, want 1", n)
	}
}

// TestRxQueueBurstBound: a burst ends after maxReadBurst (64) frames even
// while more wait in the queue, as on the read loop itself, so that the
// stack ACKs at least that often. Ended only by an empty queue, a burst
// went on as long as the kernel kept the reader busy, and the kernel,
// sending to tapstack over a TAP without offloads, got two ACKs per long
// burst, sent in bursts as long, and overflowed its queue to the device
// (12-682 of 23,180 segments dropped and retransmitted in 3 of 6 runs;
// none with the bound).
func TestRxQueueBurstBound(t *testing.T) {
	const n = maxReadBurst + 6
	d := &gatedDispatcher{gate: make(chan struct{}), entered: make(chan struct{}, n)}
	l := newTestLink(d, Offloads{})
	l.OnBatchEnd(func() { d.note("end") })
	q := newRxQueue(l, n)
	for i := range n {
		q.put(d, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData([]byte{byte(i)})}), wireSegment{})
	}
	for range n {
		d.gate <- struct{}{}
	}
	q.close()
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint(i))
		if i == maxReadBurst-1 || i == n-1 {
			want = append(want, "end")
		}
	}
	if !slices.Equal(d.log, want) {
		t.Errorf("delivered %v, want %v", d.log, want)
	}
}

// noteDispatcher records the first byte of each packet handed over, and
// the bursts' ends, in order.
type noteDispatcher struct {
	mu  sync.Mutex
	log []string
}

func (d *noteDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.note(fmt.Sprint(pkt.ToView().AsSlice()[0]))
}

func (d *noteDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (d *noteDispatcher) note(s string) {
	d.mu.Lock()
	d.log = append(d.log, s)
	d.mu.Unlock()
}

func (d *noteDispatcher) logged() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log)
}

// TestPlainReadBursts: a device without offloads (no virtio-net header)
// reads in bursts too: the five frames the kernel had queued are read
// without waiting and delivered, and the burst ends once, after the
// fifth, when no frame is ready; the next frame is a burst of its own.
// It used to end a burst after every frame, so a receiver with
// tcp.Options.AckPerBurst still ACKed every second segment there.
func TestPlainReadBursts(t *testing.T) {
	l, peer := seqpacketLink(t, Offloads{})
	l.offloads.VnetHdr = false
	q := l.qs[0]
	q.rx = newRxReader(l, q.rc)
	d := &noteDispatcher{}
	l.dispatcher = d
	l.OnBatchEnd(func() { d.note("end") })
	frame := func(b byte) {
		f := make([]byte, 60)
		f[0] = b
		if _, err := unix.Write(peer, f); err != nil {
			t.Fatal(err)
		}
	}
	for b := range byte(5) {
		frame(b + 1)
	}
	q.running = true
	l.wg.Add(1)
	go l.readLoop(q) // rxQueueLen 0: delivered on the read loop
	waitLog := func(n int) []string {
		t.Helper()
		for i := 0; ; i++ {
			if got := d.logged(); len(got) >= n {
				return got
			}
			if i > 5000 {
				t.Fatalf("delivered %v, want %d entries", d.logged(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if got, want := waitLog(6), []string{"1", "2", "3", "4", "5", "end"}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	frame(6)
	if got, want := waitLog(8)[6:], []string{"6", "end"}; !slices.Equal(got, want) {
		t.Errorf("then %v, want %v", got, want)
	}
	l.qs[0].f.Close()
	l.wg.Wait()
}
