package tap

import (
	"math/bits"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Re-joining the wire segments inbound faults left intact. A fault
// middleware that corrupts inbound frames has the device hand the
// kernel's super-frames up as their wire segments (requireFullChecksums),
// so that a corrupted byte costs one segment, as on a wire. Handed on
// one by one, every intact segment then went through the stack alone:
// with GRO on, 1% corruption turned 44 segments per packet into 44
// packets for 43 good segments, each with its own trip through gVisor's
// IP layer; and tapstack, which after a hole answers single segments per
// second segment, sent the kernel 29,600 ACKs per 64 MiB at 1%, each one
// SACK work for the kernel inside our write of it. Joined again: 7,500
// ACKs, and the kernel's rate to tapstack, and to gVisor's TCP, doubled.
//
// A receiving host joins segments after the wire, not before: its NIC
// checks each one's checksum and GRO joins the good ones that follow one
// another. So the middleware hands on, as one super-frame, each run of a
// split super-frame's segments that it passed on unchanged and at once,
// one after the other, and everything else (a corrupted copy, a frame it
// delayed, held back, duplicated, marked or reported on) alone, in the
// order it decided them. Its faults still draw for every wire segment
// (FaultStats.Frames), and a capture still writes one wire segment per
// frame (it cuts a super-frame at its MSS, as the kernel's did).

// splitFrame is a super-frame the device handed up as its wire segments:
// its layout, its headers, and each segment's payload checksum, from
// which a run's checksum is made without reading the payload again.
type splitFrame struct {
	s    superFrame
	hdr  []byte   // the super-frame's headers, s.data bytes from the Ethernet header on
	sums []uint16 // each wire segment's payload checksum (the one's complement sum, not inverted)
}

func newSplitFrame(s *superFrame, prefix []byte) *splitFrame {
	return &splitFrame{s: *s, hdr: append([]byte(nil), prefix[:s.data]...), sums: make([]uint16, s.n)}
}

// wireSegment is wire segment i of split super-frame g; the zero value:
// a frame that is no such segment.
type wireSegment struct {
	g *splitFrame
	i int
}

// segmentSource is a device that hands split super-frames up as their
// wire segments and says, while one is being delivered, which it is.
type segmentSource interface {
	currentSegment(pkt *stack.PacketBuffer) wireSegment
}

// join makes one super-frame of segs, the wire segments first to
// first+len(segs)-1 of g as the device delivered them (their Ethernet
// headers consumed): the run's headers, the segments' payloads (shared,
// not copied) and a full TCP checksum. It is marked as a super-frame of
// g's MSS, so a capture writes it as the wire segments it stands for.
func (g *splitFrame) join(segs []*stack.PacketBuffer, first int) *stack.PacketBuffer {
	s := &g.s
	var payload buffer.Buffer
	var sum uint16
	size := 0
	for k, p := range segs {
		b := p.ToBuffer()
		b.TrimFront(int64(s.data))
		x := g.sums[first+k]
		if size%2 == 1 {
			// A sum of bytes that start at an odd offset of the
			// whole is that of their bytes swapped (RFC 1071 2(B)).
			x = bits.ReverseBytes16(x)
		}
		sum = checksum.Combine(sum, x)
		size += int(b.Size())
		payload.Merge(&b)
	}
	pkt := s.packet(g.hdr, first, first+len(segs)-1, size, sum, payload)
	pkt.LinkHeader().Consume(len(segs[0].LinkHeader().Slice()))
	pkt.NetworkProtocolNumber, pkt.PktType = segs[0].NetworkProtocolNumber, segs[0].PktType
	return pkt
}

// packet makes the packet of wire segments first to last of s: the
// headers runHeaders makes of hdr, and payload, size bytes whose one's
// complement sum is sum, from which the TCP checksum is made without
// reading the payload again. Its checksum is vouched for, and with more
// than one segment it is marked a super-frame of s's MSS, so that a
// capture writes it as the wire segments it stands for.
func (s *superFrame) packet(hdr []byte, first, last, size int, sum uint16, payload buffer.Buffer) *stack.PacketBuffer {
	hv := buffer.NewViewSize(s.data)
	h := hv.AsSlice()
	s.runHeaders(h, hdr, first, last, size)
	t := header.TCP(h[s.tcp:])
	src, dst := s.addrs(h)
	t.SetChecksum(0)
	t.SetChecksum(^checksum.Combine(checksum.Checksum(t, pseudoSum(src, dst, s.data-s.tcp+size)), sum))
	buf := buffer.MakeWithView(hv)
	buf.Merge(&payload)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buf})
	pkt.RXChecksumValidated = true
	if last > first {
		pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, CsumOffset: header.TCPChecksumOffset, MSS: uint16(s.mss), L3HdrLen: uint16(s.tcp - s.ip)}
		if s.v6 {
			pkt.GSOOptions.Type = stack.GSOTCPv6
		}
	}
	return pkt
}

// rejoinRun is the run of a split super-frame's wire segments that the
// fault middleware passed on intact and has not handed on yet: segments
// next-len(pkts) to next-1 of g, with a reference to each.
type rejoinRun struct {
	mu    sync.Mutex
	g     *splitFrame
	next  int
	proto tcpip.NetworkProtocolNumber
	pkts  []*stack.PacketBuffer
}

// runSegment carries out acts, what the inbound faults decided for pkt,
// wire segment seg of a split super-frame (or no such segment). pkt
// joins the run when all that was decided for it is to move it on, as it
// is, now; anything else first hands the run on, then is done as run
// does it. The run is handed on when its super-frame's last segment has
// been decided, and at the end of every burst.
//
// A device whose read loops deliver on their own goroutines (several
// queues, WithRxQueue(0)) may bring two super-frames' segments at once.
// Handing a run on and starting the next is then one step under the
// run's lock: in two, the other goroutine's segment joined the run
// between them, under the wrong super-frame.
func (f *Fault) runSegment(acts []action, s *faultScratch, pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber, seg wireSegment) {
	if seg.g != nil && len(acts) == 1 && acts[0].kind == actMove && acts[0].pkt == pkt {
		r := &f.rejoin
		r.mu.Lock()
		if r.g != seg.g || r.next != seg.i {
			f.flushRejoinLocked()
			r.g, r.next, r.proto = seg.g, seg.i, proto
		}
		r.pkts = append(r.pkts, pkt.IncRef())
		r.next++
		r.mu.Unlock()
	} else {
		f.flushRejoin()
		f.run(FaultInbound, acts, s, nil)
	}
	if seg.g != nil && seg.i == seg.g.s.n-1 {
		f.flushRejoin()
	}
}

// flushRejoin hands the run on: one segment as it is, two or more joined
// into one super-frame.
func (f *Fault) flushRejoin() {
	f.rejoin.mu.Lock()
	f.flushRejoinLocked()
	f.rejoin.mu.Unlock()
}

// flushRejoinLocked is flushRejoin with the run's lock held.
func (f *Fault) flushRejoinLocked() {
	r := &f.rejoin
	g, first, proto, pkts := r.g, r.next-len(r.pkts), r.proto, r.pkts
	r.g, r.pkts = nil, r.pkts[:0]
	if len(pkts) > 1 {
		f.mu.Lock()
		f.in.stats.Rejoined += uint64(len(pkts))
		f.mu.Unlock()
	}
	// Handed on under r.mu: the run's storage is reused by the next,
	// and frames go to the stack one at a time, in order.
	switch len(pkts) {
	case 0:
	case 1:
		c := inboundCopy(pkts[0])
		f.Endpoint.DeliverNetworkPacket(proto, c)
		c.DecRef()
	default:
		j := g.join(pkts, first)
		f.Endpoint.DeliverNetworkPacket(proto, j)
		j.DecRef()
	}
	for i, p := range pkts {
		p.DecRef()
		pkts[i] = nil
	}
}

// dropRejoin lets go of a run not handed on, the middleware closing.
func (f *Fault) dropRejoin() {
	r := &f.rejoin
	r.mu.Lock()
	for i, p := range r.pkts {
		p.DecRef()
		r.pkts[i] = nil
	}
	r.g, r.pkts = nil, r.pkts[:0]
	r.mu.Unlock()
}
