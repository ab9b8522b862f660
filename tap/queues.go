//go:build linux

package tap

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Multiqueue. A TAP device opened with IFF_MULTI_QUEUE takes one
// descriptor per queue, each with a queue of its own in the kernel, as a
// multiqueue NIC has rings. The device reads each with a read loop of its
// own and writes each from a writer goroutine of its own, so that the
// kernel's work on either side of the device, its TCP included, runs on
// as many CPUs as there are queues:
//
//   - Outbound, a frame goes to the queue its flow hashes to (txQueueOf),
//     so one flow's frames keep their order, and the kernel's receive
//     path for them runs inside that queue's writes.
//   - Inbound, the kernel picks the queue (tun_select_queue): by default
//     the one on which the flow's last frame from the stack was written
//     (tun's automatic flow steering, keyed by the flow's symmetric hash),
//     otherwise by the flow's hash. Each read loop delivers what it reads
//     through the device's inbound queue, shared by all read loops, whose
//     one delivery goroutine keeps each flow's frames in order; with
//     WithRxQueue(0) each read loop delivers on its own goroutine, as
//     gVisor's fdbased endpoint does with one dispatcher per descriptor.

// maxQueues is the most queues a device takes: the kernel's
// MAX_TAP_QUEUES.
const maxQueues = 256

// WithQueues opens the device with n queues (IFF_MULTI_QUEUE; default 1,
// at most 256). With more than one, the device has a read loop and a
// writer goroutine per queue: the kernel sends a flow's frames to the
// stack on one queue, and the device writes a flow's frames on the queue
// its addresses and ports hash to. An existing device must have been made
// with multi_queue ("ip tuntap add NAME mode tap multi_queue"), and one
// made that way takes only this option with n > 1.
func WithQueues(n int) Option {
	return func(c *config) { c.queues = n }
}

// devQueue is one queue of a device: its descriptor, the read path of
// its read loop and its outbound queue with its writer goroutine.
type devQueue struct {
	f   *os.File
	rc  syscall.RawConn
	rx  *rxReader // the read loop's
	tx  *txPath   // the writer goroutine's
	txq *txQueue

	running bool // a read loop runs on it; the link's mu

	reads, writes atomic.Uint64 // QueueStats
}

// QueueStats counts what went through one queue of a device
// ([Device.QueueStats]).
type QueueStats struct {
	Reads  uint64 // frames read from the queue: a super-frame counts once
	Writes uint64 // writes to it: a frame, or a super-frame, each
}

// QueueStats returns each queue's counters, in the order of the queues:
// how the kernel and the device spread the flows over them.
func (d *Device) QueueStats() []QueueStats {
	s := make([]QueueStats, len(d.link.qs))
	for i, q := range d.link.qs {
		s[i] = QueueStats{Reads: q.reads.Load(), Writes: q.writes.Load()}
	}
	return s
}

// txQueueOf is the index of the queue frame pkt goes out on: a hash of
// its IP addresses and, for TCP and UDP, ports, so that one flow's frames
// take one queue, in order. Frames that are neither (ARP) take queue 0.
func txQueueOf(pkt *stack.PacketBuffer, n int) int {
	if n == 1 {
		return 0
	}
	var addrs []byte
	var proto uint8
	nh := pkt.NetworkHeader().Slice()
	switch {
	case len(nh) >= header.IPv4MinimumSize && nh[0]>>4 == 4:
		addrs, proto = nh[12:20], nh[9]
	case len(nh) >= header.IPv6MinimumSize && nh[0]>>4 == 6:
		addrs, proto = nh[8:40], nh[6]
	default:
		return 0
	}
	// FNV-1a over the addresses and the ports: cheap, and enough to
	// spread flows that differ in a port.
	h := uint32(2166136261)
	mix := func(b []byte) {
		for _, c := range b {
			h = (h ^ uint32(c)) * 16777619
		}
	}
	mix(addrs)
	if th := pkt.TransportHeader().Slice(); len(th) >= 4 && (proto == uint8(header.TCPProtocolNumber) || proto == uint8(header.UDPProtocolNumber)) {
		mix(th[:4])
	}
	return int(h % uint32(n))
}

// splitDeliveries tells, for the wire segments of a split super-frame
// being delivered, which segment each is (segmentSource). Read loops
// that deliver on their own goroutines (WithRxQueue(0) with several
// queues) may deliver two at once, so the segment is found by its packet.
type splitDeliveries struct {
	mu     sync.Mutex
	active []splitDelivery
}

type splitDelivery struct {
	pkt *stack.PacketBuffer
	seg wireSegment
}

func (s *splitDeliveries) begin(pkt *stack.PacketBuffer, seg wireSegment) {
	s.mu.Lock()
	s.active = append(s.active, splitDelivery{pkt, seg})
	s.mu.Unlock()
}

func (s *splitDeliveries) end(pkt *stack.PacketBuffer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range s.active {
		if a.pkt == pkt {
			last := len(s.active) - 1
			s.active[i] = s.active[last]
			s.active[last] = splitDelivery{}
			s.active = s.active[:last]
			return
		}
	}
}

func (s *splitDeliveries) of(pkt *stack.PacketBuffer) wireSegment {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.active {
		if a.pkt == pkt {
			return a.seg
		}
	}
	return wireSegment{}
}
