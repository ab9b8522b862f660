//go:build linux

package tap

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The inbound hand-over of a device, with offloads or without. The read
// loop reads frames and a delivery goroutine hands them to the stack,
// through a bounded queue between the two, as the outbound side has its
// writer goroutine (txQueue). Delivered on the read loop itself, a frame's
// whole trip through the stack (IP, TCP, waking the reader of the data,
// queueing the ACK) came between two reads: the kernel's queue to the
// device waited for it, and the stack's work for the read. With the
// kernel sending to tapstack over GRO, the read loop's goroutine ran
// the stack while the application's reader, woken by it, waited for a
// CPU: a third of the machine's two CPUs idle (/proc/stat), the
// reader runnable 40% of the transfer. gVisor's TCP, on the same link,
// hands segments to processor goroutines of its own and kept 16% idle.
//
// A burst ends when the delivery goroutine finds the queue empty, the
// stack having taken every frame the kernel had queued and read, or has
// delivered maxReadBurst frames since the last end (OnBatchEnd).

// Its limit, WithRxQueue, bounds the frames read and not yet delivered.
// When it is reached the read loop waits for room, and the kernel's queue
// to the device holds the rest, as it would for a slow reader.

// rxItem is a packet read and the dispatcher it was read for, with the
// super-frame it is a wire segment of, if the device split one (seg).
type rxItem struct {
	d   stack.NetworkDispatcher
	pkt *stack.PacketBuffer
	seg wireSegment
}

// rxQueue is the queue between the read loop and the delivery goroutine.
// The read loop owns it: it makes it, puts into it, and closes it.
type rxQueue struct {
	l    *fdLink
	ch   chan rxItem
	done sync.WaitGroup
}

func newRxQueue(l *fdLink, limit int) *rxQueue {
	q := &rxQueue{l: l, ch: make(chan rxItem, limit)}
	q.done.Add(1)
	go q.run()
	return q
}

// put hands pkt, and the reference the caller holds on it, to the
// delivery goroutine. It waits for room when the queue is full, and
// counts the wait.
func (q *rxQueue) put(d stack.NetworkDispatcher, pkt *stack.PacketBuffer, seg wireSegment) {
	if len(q.ch) == cap(q.ch) {
		q.l.rxQueueFull.Add(1)
	}
	q.ch <- rxItem{d, pkt, seg}
}

// run is the delivery goroutine: it delivers each packet in turn and
// marks a burst's end whenever it has delivered all that was queued, or
// maxReadBurst frames. It ends when the read loop closes the queue, after
// delivering what is in it.
func (q *rxQueue) run() {
	defer q.done.Done()
	burst := 0
	for it := range q.ch {
		q.l.deliverNow(it.d, it.pkt, it.seg)
		if burst++; len(q.ch) == 0 || burst >= maxReadBurst {
			q.l.batchEnd.call()
			burst = 0
		}
	}
}

// handOver gives pkt, and the caller's reference, to the stack: through
// the inbound queue, or at once on the read loop without one (or outside
// a read loop: frames that tests hand to deliverVnet).
func (r *rxReader) handOver(d stack.NetworkDispatcher, pkt *stack.PacketBuffer, seg wireSegment) {
	if r.rxq == nil {
		r.l.deliverNow(d, pkt, seg)
		return
	}
	r.rxq.put(d, pkt, seg)
}

// deliverNow hands pkt, and the caller's reference, to d, saying meanwhile
// which wire segment of a split super-frame it is (currentSegment).
// Frames are delivered by the delivery goroutine, or by each read loop
// without one.
func (l *fdLink) deliverNow(d stack.NetworkDispatcher, pkt *stack.PacketBuffer, seg wireSegment) {
	if seg.g == nil {
		d.DeliverNetworkPacket(0, pkt)
	} else {
		l.splits.begin(pkt, seg)
		d.DeliverNetworkPacket(0, pkt)
		l.splits.end(pkt)
	}
	pkt.DecRef()
}

// currentSegment implements segmentSource (rejoin.go): which wire segment
// pkt, being delivered, is. It is asked inside the delivery.
func (l *fdLink) currentSegment(pkt *stack.PacketBuffer) wireSegment { return l.splits.of(pkt) }

// close ends the delivery goroutine once it has delivered what is queued,
// and waits for it.
func (q *rxQueue) close() {
	close(q.ch)
	q.done.Wait()
}
