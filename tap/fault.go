package tap

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FaultConfig says which faults a [Fault] applies to outbound frames. Each
// probability is in [0, 1] and is drawn independently per frame.
type FaultConfig struct {
	// Loss is the probability that a frame is dropped.
	Loss float64
	// Duplicate is the probability that a frame is sent twice.
	Duplicate float64
	// Reorder is the probability that a frame is held back and sent right
	// after the next one. At most one frame is held; if no next frame comes
	// within ReorderTimeout, the held frame is sent on its own.
	Reorder float64
	// ReorderTimeout bounds how long a held frame waits for a successor
	// (default 10ms), so a lone last segment is late rather than lost.
	ReorderTimeout time.Duration
	// Corrupt is the probability that one byte after the network header
	// (in the transport header or payload) is changed. The IP header stays
	// valid, so the frame reaches the transport protocol, whose checksum
	// must catch it. Frames with nothing after the network header (ARP)
	// are never corrupted.
	Corrupt float64
	// Delay holds every frame back for this long before sending it.
	// Frames keep their order.
	Delay time.Duration
	// MaxDelayed bounds the frames waiting out Delay (default 1024); more
	// are dropped and counted, as by a full queue.
	MaxDelayed int
	// Source drives every random decision. Give a seeded source, such as
	// rand.NewPCG(seed, 0), for a reproducible run; nil means a source
	// seeded from crypto/rand.
	Source rand.Source
}

// FaultStats counts the frames a [Fault] saw and the faults it applied.
type FaultStats struct {
	Frames         uint64 // outbound frames offered to the middleware
	Lost           uint64
	Duplicated     uint64
	Reordered      uint64 // frames held back to be sent after their successor
	Corrupted      uint64
	Delayed        uint64
	DroppedDelayed uint64 // frames dropped because MaxDelayed frames were waiting
}

// Fault is link middleware that injects faults into outbound frames of the
// endpoint it wraps. Inbound frames pass through unchanged; to disturb both
// directions of a cable, wrap both ends.
//
// Fault wraps the endpoint the NIC sees, so the frames it sees already carry
// their link header (added by the wrapped ethernet endpoint); that is how it
// finds the transport bytes to corrupt.
type Fault struct {
	nested.Endpoint

	cfg FaultConfig

	timers sync.WaitGroup // armed time.AfterFunc callbacks

	mu     sync.Mutex
	rng    *rand.Rand
	stats  FaultStats
	closed bool

	// The frame held back for reordering, with its sequence number so a
	// stale timer can tell that the frame it was armed for is gone.
	held      *stack.PacketBuffer
	heldSeq   uint64
	heldTimer *time.Timer

	// Frames waiting out Delay, in the order they are due.
	delayed    []delayedFrame
	delayTimer *time.Timer // non-nil while a flush is armed or running
}

type delayedFrame struct {
	due time.Time
	pkt *stack.PacketBuffer
}

var _ stack.LinkEndpoint = (*Fault)(nil)

// NewFault returns inner wrapped in fault injection. Give the result to the
// stack instead of inner.
func NewFault(inner stack.LinkEndpoint, cfg FaultConfig) *Fault {
	if cfg.ReorderTimeout <= 0 {
		cfg.ReorderTimeout = 10 * time.Millisecond
	}
	if cfg.MaxDelayed <= 0 {
		cfg.MaxDelayed = 1024
	}
	src := cfg.Source
	if src == nil {
		var seed [16]byte
		_, _ = crand.Read(seed[:])
		src = rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))
	}
	f := &Fault{cfg: cfg, rng: rand.New(src)}
	f.Endpoint.Init(inner, f)
	return f
}

// Stats returns the counters.
func (f *Fault) Stats() FaultStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// hit draws one decision; f.mu must be held (rand.Rand is not safe for
// concurrent use, and a single stream keeps a seeded run reproducible).
func (f *Fault) hit(p float64) bool {
	return p > 0 && f.rng.Float64() < p
}

// WritePackets implements stack.LinkWriter. Decisions are made under f.mu;
// the inner endpoint is written without it, because a write may deliver
// synchronously and come back to us on the same goroutine.
//
// The caller keeps its references to pkts (gVisor's NIC releases them after
// we return), so frames kept for later take their own reference.
func (f *Fault) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	var out stack.PacketBufferList // frames to send now; borrowed references
	var owned []*stack.PacketBuffer
	var release []*stack.PacketBuffer // frames we hold a reference to and send now

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, &tcpip.ErrClosedForSend{}
	}
	now := time.Now()
	for _, pkt := range pkts.AsSlice() {
		f.stats.Frames++
		if f.hit(f.cfg.Loss) {
			f.stats.Lost++
			continue
		}
		if f.hit(f.cfg.Corrupt) {
			if c := corrupt(pkt, f.rng); c != nil {
				f.stats.Corrupted++
				owned = append(owned, c)
				pkt = c
			}
		}
		copies := 1
		if f.hit(f.cfg.Duplicate) {
			f.stats.Duplicated++
			copies = 2
		}
		if f.held == nil && f.hit(f.cfg.Reorder) {
			f.stats.Reordered++
			pkt.IncRef()
			f.hold(pkt)
			if copies == 2 {
				// The duplicate goes now, the original after the next frame.
				f.emit(&out, pkt, now)
			}
			continue
		}
		for range copies {
			f.emit(&out, pkt, now)
		}
		if f.held != nil {
			// This frame overtook the held one; now send the held one.
			held := f.held
			f.unhold()
			f.emit(&out, held, now)
			release = append(release, held)
		}
	}
	f.mu.Unlock()

	var err tcpip.Error
	if out.Len() > 0 {
		_, err = f.Endpoint.WritePackets(out)
	}
	for _, p := range owned {
		p.DecRef()
	}
	for _, p := range release {
		p.DecRef()
	}
	if err != nil {
		return 0, err
	}
	// Lost frames count as written: they left the NIC and died on the wire.
	return pkts.Len(), nil
}

// emit sends pkt now, or queues it for Delay. f.mu must be held.
func (f *Fault) emit(out *stack.PacketBufferList, pkt *stack.PacketBuffer, now time.Time) {
	if f.cfg.Delay <= 0 {
		out.PushBack(pkt)
		return
	}
	if len(f.delayed) >= f.cfg.MaxDelayed {
		f.stats.DroppedDelayed++
		return
	}
	f.stats.Delayed++
	pkt.IncRef()
	f.delayed = append(f.delayed, delayedFrame{due: now.Add(f.cfg.Delay), pkt: pkt})
	if f.delayTimer == nil {
		f.armDelay(f.cfg.Delay)
	}
}

// hold keeps pkt (whose reference the caller took) back for reordering and
// arms the timer that sends it if no successor comes. f.mu must be held.
func (f *Fault) hold(pkt *stack.PacketBuffer) {
	f.held = pkt
	f.heldSeq++
	seq := f.heldSeq
	f.timers.Add(1)
	f.heldTimer = time.AfterFunc(f.cfg.ReorderTimeout, func() {
		defer f.timers.Done()
		f.flushHeld(seq)
	})
}

// unhold forgets the held frame; the caller takes over its reference.
// f.mu must be held.
func (f *Fault) unhold() {
	if f.heldTimer.Stop() {
		f.timers.Done()
	}
	f.held, f.heldTimer = nil, nil
}

// flushHeld sends the held frame on its own after ReorderTimeout.
func (f *Fault) flushHeld(seq uint64) {
	var out stack.PacketBufferList
	f.mu.Lock()
	if f.closed || f.held == nil || f.heldSeq != seq {
		f.mu.Unlock()
		return
	}
	held := f.held
	f.held, f.heldTimer = nil, nil
	f.emit(&out, held, time.Now())
	f.mu.Unlock()
	if out.Len() > 0 {
		_, _ = f.Endpoint.WritePackets(out)
	}
	held.DecRef()
}

// armDelay arms the one delay timer. f.mu must be held.
func (f *Fault) armDelay(d time.Duration) {
	f.timers.Add(1)
	f.delayTimer = time.AfterFunc(d, func() {
		defer f.timers.Done()
		f.flushDelayed()
	})
}

// flushDelayed sends the frames that are due, in order, then re-arms the
// timer for the next one. Only one flush runs at a time: delayTimer stays
// set while it runs, so emit does not arm a second timer.
func (f *Fault) flushDelayed() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	now := time.Now()
	var out stack.PacketBufferList
	i := 0
	for ; i < len(f.delayed) && !f.delayed[i].due.After(now); i++ {
		out.PushBack(f.delayed[i].pkt)
	}
	f.delayed = append(f.delayed[:0], f.delayed[i:]...)
	f.mu.Unlock()

	if out.Len() > 0 {
		_, _ = f.Endpoint.WritePackets(out)
		out.Reset() // drops the references emit took
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.delayTimer = nil
	if f.closed || len(f.delayed) == 0 {
		return
	}
	f.armDelay(max(time.Until(f.delayed[0].due), 0))
}

// Close implements stack.LinkEndpoint: it drops held and delayed frames,
// stops the timers and closes the inner endpoint.
func (f *Fault) Close() {
	f.mu.Lock()
	var drop []*stack.PacketBuffer
	if !f.closed {
		f.closed = true
		if f.held != nil {
			drop = append(drop, f.held)
			f.unhold()
		}
		if f.delayTimer != nil && f.delayTimer.Stop() {
			f.timers.Done()
		}
		for _, d := range f.delayed {
			drop = append(drop, d.pkt)
		}
		f.delayed = nil
	}
	f.mu.Unlock()
	for _, p := range drop {
		p.DecRef()
	}
	f.Endpoint.Close()
}

// Wait implements stack.LinkEndpoint: it waits for running timer callbacks
// and for the inner endpoint's goroutines.
func (f *Fault) Wait() {
	f.timers.Wait()
	f.Endpoint.Wait()
}

// corrupt returns a copy of pkt with one byte after the network header
// changed, or nil if there is no such byte. The copy is needed because the
// sender may share pkt's storage (gVisor's TCP keeps it for retransmission),
// and a retransmitted segment must arrive intact. f.mu must be held (r).
func corrupt(pkt *stack.PacketBuffer, r *rand.Rand) *stack.PacketBuffer {
	link := len(pkt.LinkHeader().Slice())
	network := len(pkt.NetworkHeader().Slice())
	transport := len(pkt.TransportHeader().Slice())
	start := link + network
	size := pkt.Size()
	if network == 0 || size <= start {
		return nil
	}
	v := pkt.ToView()
	b := v.AsSlice()
	// XOR with a non-zero value always changes the byte; a one-byte change
	// always changes the Internet checksum, so the receiver can catch it.
	b[start+r.IntN(size-start)] ^= byte(1 + r.IntN(255))
	c := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	// Restore the header boundaries so that layers below (a capture, the
	// pipe) see the same structure as in the original.
	c.LinkHeader().Consume(link)
	c.NetworkHeader().Consume(network)
	c.TransportHeader().Consume(transport)
	c.NetworkProtocolNumber = pkt.NetworkProtocolNumber
	c.TransportProtocolNumber = pkt.TransportProtocolNumber
	c.EgressRoute = pkt.EgressRoute
	c.GSOOptions = pkt.GSOOptions
	c.PktType = pkt.PktType
	return c
}
