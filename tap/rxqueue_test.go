//go:build linux

package tap

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gatedDispatcher records what it is handed, one packet per token on
// gate, and the bursts' ends.
type gatedDispatcher struct {
	gate    chan struct{}
	entered chan struct{} // a token per packet handed over, before the gate
	mu      sync.Mutex
	log     []string
}

func (d *gatedDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.entered <- struct{}{}
	<-d.gate
	d.note(fmt.Sprint(pkt.ToView().AsSlice()[0]))
}

func (d *gatedDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (d *gatedDispatcher) note(s string) {
	d.mu.Lock()
	d.log = append(d.log, s)
	d.mu.Unlock()
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
		q.put(d, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData([]byte{b})}))
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
