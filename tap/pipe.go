package tap

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DefaultPipeQueue is the number of frames each end of a [Pipe] can hold
// before the pump moves them to the other end; beyond it frames are dropped.
const DefaultPipeQueue = 1024

// PipeOption configures [Pipe].
type PipeOption func(*pipeConfig)

type pipeConfig struct {
	mtu   uint32
	queue int
	gso   bool
}

// WithPipeGSO makes both ends offer segmentation offload (default off), as
// a TAP with offloads does: a stack's TCP may write one packet of up to
// 64 KiB standing for several segments, with its checksum left partial
// (gVisor's host GSO; tapstack's engine sends its trains so). The cable
// carries it whole and the other end hands it to its stack as one
// segment, its checksum vouched for, as Linux's GRO hands its stack a
// coalesced packet; both gVisor's TCP and tapstack's take it. A capture
// (package pcap) still shows wire segments. A fault middleware that
// corrupts outbound frames (tap.NewFault) hides the offload from the
// stack above it, so that corruption meets full checksums.
func WithPipeGSO(on bool) PipeOption {
	return func(c *pipeConfig) { c.gso = on }
}

// WithPipeMTU sets the IP MTU of both ends (default [DefaultMTU]).
func WithPipeMTU(mtu uint32) PipeOption {
	return func(c *pipeConfig) { c.mtu = mtu }
}

// WithPipeQueue sets the outbound queue length of each end, in frames
// (default [DefaultPipeQueue], minimum 1).
func WithPipeQueue(frames int) PipeOption {
	return func(c *pipeConfig) { c.queue = frames }
}

// PipeEnd is one end of an in-memory Ethernet cable made by [Pipe]. It is a
// stack.LinkEndpoint: give it to one NIC of one stack.
type PipeEnd struct {
	stack.LinkEndpoint // *ethernet.Endpoint over port
	port               *pipePort
}

// PipeStats counts frames written on one end of a [Pipe].
type PipeStats struct {
	Sent             uint64 // frames moved to the other end
	DroppedQueueFull uint64 // frames dropped because this end's queue was full
	DroppedDetached  uint64 // frames dropped because the other end had no stack attached
	DroppedClosed    uint64 // frames written after the cable was shut down
	// DroppedBadChecksum: frames whose checksum the other end, offering
	// offloads (WithPipeGSO), found wrong; a fragment's, that of its
	// datagram.
	DroppedBadChecksum uint64
	// DroppedFragLimit: fragments the other end, offering offloads,
	// dropped because it kept the sums of as many datagrams, or
	// fragments of one, as it may (fragcheck.go).
	DroppedFragLimit uint64
}

// Stats returns the counters of frames written on this end.
func (e *PipeEnd) Stats() PipeStats {
	p := e.port
	return PipeStats{
		Sent:               p.sent.Load(),
		DroppedQueueFull:   p.droppedFull.Load(),
		DroppedDetached:    p.droppedDetached.Load(),
		DroppedClosed:      p.droppedClosed.Load(),
		DroppedBadChecksum: p.droppedBadChecksum.Load(),
		DroppedFragLimit:   p.droppedFragLimit.Load(),
	}
}

// Pipe returns the two ends of an in-memory Ethernet cable. Each end has its
// own random MAC address; a frame written on one end is delivered to the
// stack attached to the other, so ARP, IPv4 and IPv6 work as on a wire.
//
// Each direction has a bounded queue and one pump goroutine, started when
// either end is first attached. Delivery happens on the pump goroutine, never
// on the writer's, so a stack may hold its locks while writing. A full queue
// drops frames, as a full NIC queue would; the drops are counted in
// [PipeEnd.Stats].
//
// The cable is shut down for good when either end is detached or closed (the
// stack removes the NIC, or Stack.Destroy runs); Wait on either end then
// returns once both pumps have exited. A shutdown is a failure for an end
// whose stack did not ask for it (see [PipeEnd.OnFailure]): the other end's,
// and this end's own when someone closed it under its stack.
func Pipe(opts ...PipeOption) (a, b *PipeEnd) {
	c := pipeConfig{mtu: DefaultMTU, queue: DefaultPipeQueue}
	for _, o := range opts {
		o(&c)
	}
	if c.queue < 1 {
		c.queue = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipe{ctx: ctx, cancel: cancel}
	frameMTU := c.mtu + header.EthernetMinimumSize
	for i := range p.ports {
		ch := channel.New(c.queue, frameMTU, tcpip.LinkAddress(RandomMAC()))
		p.ports[i] = &pipePort{Endpoint: ch, pipe: p, gso: c.gso}
	}
	p.ports[0].peer, p.ports[1].peer = p.ports[1], p.ports[0]
	return &PipeEnd{LinkEndpoint: ethernet.New(p.ports[0]), port: p.ports[0]},
		&PipeEnd{LinkEndpoint: ethernet.New(p.ports[1]), port: p.ports[1]}
}

// pipe is the state shared by both ends.
type pipe struct {
	ports [2]*pipePort

	ctx    context.Context // cancelled when the cable shuts down
	cancel context.CancelFunc

	mu      sync.Mutex
	started bool
	down    bool
}

// start starts the pumps, once, unless the cable is already down.
func (p *pipe) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.down {
		return
	}
	p.started = true
	p.ports[0].pumping.Add(1)
	p.ports[1].pumping.Add(1)
	go p.pump(p.ports[0], p.ports[1])
	go p.pump(p.ports[1], p.ports[0])
}

// shutdown stops both pumps; frames written afterwards are dropped. by is
// the end whose stack let go of it (detached it, or closed it through
// RemoveNIC): the other end has failed; closedUnder says that by was
// closed under its stack, which has failed too.
func (p *pipe) shutdown(by *pipePort, closedUnder bool) {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	p.cancel()
	by.peer.fail(ErrPipeClosed)
	if closedUnder {
		by.fail(ErrPipeClosed)
	}
}

// ErrPipeClosed is the failure a [Pipe] end reports when the cable shut
// down without its stack asking for it: the other end's stack removed its
// NIC or closed, or someone closed the end under the stack.
var ErrPipeClosed = errors.New("tap: pipe closed")

func (p *pipe) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// pump moves frames written on from to the stack attached to to. It ends
// when the cable shuts down (ReadContext returns nil on cancellation) or
// from's queue is closed (ReadContext then returns nil at once). It
// delivers what the queue holds in bursts of up to maxPipeBurst frames,
// and tells the receiving stack when a burst ends (OnBatchEnd).
func (p *pipe) pump(from, to *pipePort) {
	defer from.pumping.Done()
	for p.ctx.Err() == nil {
		pkt := from.ReadContext(p.ctx)
		if pkt == nil {
			return
		}
		p.carry(from, to, pkt)
		for range maxPipeBurst - 1 {
			if pkt = from.Read(); pkt == nil {
				break
			}
			p.carry(from, to, pkt)
		}
		to.batchEnd.call()
		from.roomOpened.call()
	}
}

// maxPipeBurst bounds a burst: a receiver ACKs at least this often.
const maxPipeBurst = 64

// carry moves one frame written on from to the stack attached to to.
func (p *pipe) carry(from, to *pipePort, pkt *stack.PacketBuffer) {
	g := pkt.GSOOptions
	if !to.IsAttached() {
		pkt.DecRef()
		from.droppedDetached.Add(1)
		from.done.Add(1)
		return
	}
	var in *stack.PacketBuffer
	if to.gso && g.NeedsCsum && !to.fullCsum.Load() {
		// A frame whose checksum its sender left partial, which
		// the end vouches for (offloadIn) and nobody will write
		// into: the receiving stack gets a buffer of its own that
		// shares the sender's bytes (gVisor's buffers copy on
		// write), as a virtio ring hands over the host's pages; a
		// super-frame of 64 KiB is not copied.
		in = stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: pkt.ToBuffer()})
		pkt.DecRef()
		in.RXChecksumValidated = true
	} else {
		// Copy the frame out of the writer's packet: the receiving
		// stack gets a fresh buffer, as from a real wire, and
		// parses every header itself.
		v := pkt.ToView()
		pkt.DecRef()
		if g.Type != stack.GSONone && to.fullCsum.Load() && p.carrySegments(from, to, v, int(g.MSS), g.NeedsCsum) {
			// A middleware above corrupts frames: a super-frame went
			// up as its wire segments, as a TAP device hands them
			// over then, so that a corrupted byte costs one.
			return
		}
		validated := false
		if to.gso {
			var ok bool
			if validated, ok = to.offloadIn(v.AsSlice(), g.NeedsCsum); !ok {
				v.Release()
				from.done.Add(1)
				return
			}
		}
		in = stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
		// The NIC sets RXChecksumValidated from Capabilities; a
		// capture above reads it first, to know which checksums
		// to fill in.
		in.RXChecksumValidated = validated
	}
	in.GSOOptions = g
	from.sent.Add(1)
	to.InjectInbound(0, in) // the ethernet endpoint dispatches on EtherType
	in.DecRef()
	from.done.Add(1)
}

// carrySegments delivers to to the wire segments of super-frame v (cut
// at mss, every checksum filled in, none vouched for; a frame of one
// segment or none, as gVisor's GSO marks its pure ACKs too, as itself),
// releases v and reports true; or, for a frame that is no TCP segment it
// can cut, does nothing and reports false. A super-frame whose sender
// made its checksum complete (not needsCsum) is checked first, since
// the segments' checksums are computed afresh and would hide bytes
// changed since: if it fails it is dropped whole (DroppedBadChecksum).
func (p *pipe) carrySegments(from, to *pipePort, v *buffer.View, mss int, needsCsum bool) bool {
	frame := v.AsSlice()
	s, err := checkSuper(frame, mss)
	if err != nil {
		return false
	}
	if !needsCsum && !ipFrameValid(frame) {
		v.Release()
		from.droppedBadChecksum.Add(1)
		from.done.Add(1)
		return true
	}
	var g *splitFrame
	if s.n > 1 {
		// What a fault middleware above needs to join the segments it
		// leaves intact again (rejoin.go).
		g = newSplitFrame(&s, frame)
	}
	i := 0
	err = WireSegments(frame, mss, func(seg []byte) {
		if g != nil {
			g.sums[i] = checksum.Checksum(seg[s.data:], 0)
		}
		in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(seg)})
		to.delivering = wireSegment{g, i}
		to.InjectInbound(0, in)
		to.delivering = wireSegment{}
		in.DecRef()
		i++
	})
	if err != nil {
		return false
	}
	v.Release()
	from.sent.Add(1)
	from.done.Add(1)
	return true
}

// OnBatchEnd registers fn, called on the pump's goroutine after each
// burst of frames it delivered to this end's stack: the frames the other
// end had queued by then, up to 64 (stack.BatchingLink). stack.Stack's
// AddNIC registers the engine's, which ACKs the rest of a burst there.
func (e *PipeEnd) OnBatchEnd(fn func()) { e.port.batchEnd.set(fn) }

// pipePort is the inner, header-less endpoint of one end: a channel endpoint
// whose outbound queue the pump drains, plus the cable's life cycle.
type pipePort struct {
	*channel.Endpoint
	pipe *pipe
	peer *pipePort

	gso        bool        // WithPipeGSO
	delivering wireSegment // the split super-frame's segment being delivered (rejoin.go); the pump's
	batchEnd   hook        // OnBatchEnd
	roomOpened hook        // OnOutboundRoom
	fullCsum   atomic.Bool // deliver complete checksums and let the stack verify them (offloadIn)

	sent, droppedFull, droppedDetached, droppedClosed, droppedBadChecksum atomic.Uint64
	droppedFragLimit                                                      atomic.Uint64
	frags                                                                 fragChecker // inbound fragments not vouched for (offloadIn)

	// queued counts frames WritePackets put in the queue, done those the
	// pump has delivered or dropped: FlushOutbound waits for done to
	// reach queued.
	queued, done atomic.Uint64

	// pumping is the pump that drains this end's outbound queue into the
	// peer. Wait waits for it alone: gVisor's Stack.Wait calls Wait with
	// the stack's lock held, and the other pump, which delivers into this
	// end's stack, may be blocked on that very lock until Wait returns. It
	// exits as soon as it gets the lock, since the cable is down by then.
	pumping sync.WaitGroup

	mu        sync.Mutex
	onClose   func()
	onFailure func(error)
	failed    bool
}

// fail reports err to the end's onFailure, once.
func (pp *pipePort) fail(err error) {
	pp.mu.Lock()
	if pp.failed {
		pp.mu.Unlock()
		return
	}
	pp.failed = true
	fn := pp.onFailure
	pp.mu.Unlock()
	if fn != nil {
		fn(err)
	}
}

// Attach implements stack.LinkEndpoint. Detaching shuts the cable down:
// gVisor's Stack.Wait detaches every NIC and then waits for its endpoint
// before closing it, so stopping only on Close would deadlock there.
func (pp *pipePort) Attach(d stack.NetworkDispatcher) {
	pp.Endpoint.Attach(d)
	if d == nil {
		pp.pipe.shutdown(pp, false)
		return
	}
	pp.pipe.start()
}

// WritePackets implements stack.LinkWriter. It never blocks. When the
// queue is full it takes the frames it has room for, counts the rest
// (DroppedQueueFull) and answers tcpip.ErrNoBufferSpace, as a Linux qdisc
// answers NET_XMIT_DROP: the sender learns its frame never left
// (tapstack's TCP deems it lost at once, UDP hides it as Linux does).
func (pp *pipePort) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if pp.pipe.isDown() {
		pp.droppedClosed.Add(uint64(pkts.Len()))
		return pkts.Len(), nil
	}
	n, err := pp.Endpoint.WritePackets(pkts)
	pp.queued.Add(uint64(n))
	if err == nil && n < pkts.Len() {
		// channel.Endpoint stops at the first frame that does not fit
		// and reports success for the ones before; the rest are lost.
		pp.droppedFull.Add(uint64(pkts.Len() - n))
		err = &tcpip.ErrNoBufferSpace{}
	}
	return n, err
}

// offloadIn is what an end with WithPipeGSO does with an inbound frame,
// as a TAP device with offloads does with the kernel's: a frame whose
// checksum its sender left partial (needsCsum) never crossed a wire and
// is vouched for (validated), any other has its checksums verified here
// (ok is false if they fail: drop it), and the stack verifies none
// (CapabilityRXChecksumOffload). When a middleware above may corrupt
// frames on their way in (tap.NewFault with Inbound.Corrupt), the end
// vouches for nothing: partial checksums are completed and the stack
// verifies them all.
func (pp *pipePort) offloadIn(frame []byte, needsCsum bool) (validated, ok bool) {
	if pp.fullCsum.Load() {
		if needsCsum {
			if l, ok := parseIPFrame(frame); ok && l.checksumOffset() >= 0 && l.end-l.l4 >= l.minTransport() {
				completePartial(frame[:l.end], l.l4, l.checksumOffset())
			}
		}
		return false, true
	}
	if needsCsum {
		return true, true
	}
	switch pp.frags.verify(frame) {
	case fragBadChecksum:
		pp.peer.droppedBadChecksum.Add(1)
		return true, false
	case fragOverLimits:
		pp.peer.droppedFragLimit.Add(1)
		return true, false
	}
	return true, true
}

// Capabilities implements stack.LinkEndpoint: an end with WithPipeGSO
// checks inbound checksums itself (offloadIn).
func (pp *pipePort) Capabilities() stack.LinkEndpointCapabilities {
	c := pp.Endpoint.Capabilities()
	if pp.gso && !pp.fullCsum.Load() {
		c |= stack.CapabilityRXChecksumOffload
	}
	return c
}

// requireFullChecksums: see offloadIn.
func (e *PipeEnd) requireFullChecksums() { e.port.fullCsum.Store(true) }

// currentSegment implements segmentSource (rejoin.go): it is read on the
// pump's goroutine, inside the delivery.
func (e *PipeEnd) currentSegment(*stack.PacketBuffer) wireSegment { return e.port.delivering }

// pipeGSOMax is the largest packet an end with WithPipeGSO takes, IP
// header included: the IPv4 total length field's limit, as a TAP's.
const pipeGSOMax = 0xffff

// GSOMaxSize implements stack.GSOEndpoint.
func (pp *pipePort) GSOMaxSize() uint32 {
	if pp.gso {
		return pipeGSOMax
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint: host GSO with WithPipeGSO,
// so that gVisor's TCP uses it as on a TAP.
func (pp *pipePort) SupportedGSO() stack.SupportedGSO {
	if pp.gso {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// GSOMaxSize implements stack.GSOEndpoint (see [WithPipeGSO]).
func (e *PipeEnd) GSOMaxSize() uint32 { return e.port.GSOMaxSize() }

// SupportedGSO implements stack.GSOEndpoint (see [WithPipeGSO]).
func (e *PipeEnd) SupportedGSO() stack.SupportedGSO { return e.port.SupportedGSO() }

var _ stack.GSOEndpoint = (*PipeEnd)(nil)

// Close implements stack.LinkEndpoint: it shuts the cable down and discards
// the queued frames. It does not wait for the pumps; Wait does. The stack
// clears the close action before it closes the endpoint itself (RemoveNIC),
// so an action still set means that someone closed the end under its
// stack: a failure of this end as well as of the other.
func (pp *pipePort) Close() {
	pp.mu.Lock()
	action := pp.onClose
	pp.onClose = nil
	pp.mu.Unlock()
	if action != nil {
		action()
	}
	pp.pipe.shutdown(pp, action != nil)
	pp.Endpoint.Close()
}

// Wait implements stack.LinkEndpoint: it waits for the pump that drains
// this end to exit (see pumping). The pumps run only between the first
// Attach and the shutdown, so Wait does not block on a cable that was
// never attached.
func (pp *pipePort) Wait() {
	p := pp.pipe
	p.mu.Lock()
	running := p.started && !p.down
	p.mu.Unlock()
	if running {
		// Still up: by the stack.LinkEndpoint contract the caller must
		// first stop us (detach or close); waiting now would never end.
		return
	}
	pp.pumping.Wait()
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (pp *pipePort) SetOnCloseAction(action func()) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.onClose = action
}

// OnFailure registers fn to be called, once, when the cable shuts down
// without this end's stack asking for it: the other end's stack removed
// its NIC or closed, or this end was closed under its stack. fn gets
// [ErrPipeClosed]; it may run with the other stack's locks held and must
// not block. stack.Stack's AddNIC registers one that takes the NIC down.
func (e *PipeEnd) OnFailure(fn func(error)) {
	e.port.mu.Lock()
	defer e.port.mu.Unlock()
	e.port.onFailure = fn
}

// OutboundRoom implements stack.QueueingLink: how many more frames this
// end's outbound queue takes before it holds so many (busyFrames) that
// tapstack's TCP should send no new data until the pump has taken some
// (OnOutboundRoom; TCP small queues), as a TAP device's does. A queue
// shorter than that (WithPipeQueue) is never busy: it overflows, as
// asked.
func (e *PipeEnd) OutboundRoom() int {
	return busyFrames - int(e.port.queued.Load()-e.port.done.Load())
}

// OnOutboundRoom implements stack.QueueingLink: fn is called on the pump
// that carries this end's frames each time it has carried a burst of
// them: the stack's TCP, holding new data back while the queue was busy,
// sends it then rather than at its next ACK.
func (e *PipeEnd) OnOutboundRoom(fn func()) { e.port.roomOpened.set(fn) }

// FlushOutbound waits until the frames written on this end so far have
// been delivered to the other end (or dropped), or timeout has passed, and
// reports whether they were. stack.Stack's Close calls it between sending
// its resets and removing the NIC, which would discard them.
func (e *PipeEnd) FlushOutbound(timeout time.Duration) bool {
	pp := e.port
	target := pp.queued.Load()
	deadline := time.Now().Add(timeout)
	for pp.done.Load() < target {
		if pp.pipe.isDown() || !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}
