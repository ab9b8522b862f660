package tap

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FaultConfig says which faults a [Fault] applies. Its own fields are the
// faults for outbound frames (from the stack to the wire); Inbound, if set,
// gives the faults for inbound frames (from the wire to the stack). Each
// probability is in [0, 1] and is drawn independently per frame.
type FaultConfig struct {
	// Loss is the probability that a frame is dropped. A super-frame
	// (GSO on the way out, GRO on the way in) is one frame: the wire
	// segments it stands for are lost together, as netem drops a GSO
	// packet whole. A loss rate per wire segment needs a link without
	// offloads (tap.WithOffloads(false), tap.WithPipeGSO(false)).
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
	// are never corrupted. A corrupted segment is lost alone, as on a
	// wire (and as netem corrupts one segment of a GSO packet): the
	// middleware hides the link's GSO, a TAP device below that
	// coalesces segments leaves it out of its super-frames, and a
	// super-frame from the wire (the kernel's TSO, a pipe's GSO) is
	// handed up as its wire segments, of which one is corrupted. With
	// Inbound.Corrupt set, every inbound fault acts on wire segments, and
	// the runs of a super-frame's segments that the faults leave intact
	// reach the stack joined again, as GRO joins them after a wire
	// (FaultStats.Rejoined).
	Corrupt float64
	// Mark is the probability that an ECN-capable IP packet (its ECN
	// field, the low two bits of the IPv4 TOS byte or of the IPv6 traffic
	// class, ECT(0) or ECT(1)) is marked CE, congestion experienced, as an
	// AQM router marks the packets it would otherwise drop (RFC 3168 5;
	// netem's ecn option does the same with its loss). The IPv4 header
	// checksum is updated as Linux's INET_ECN_set_ce updates it (a header
	// whose checksum was wrong stays wrong); the transport checksum does
	// not cover the field. Other frames (not-ECT, CE already, ARP, not
	// IP) are never changed, and are not dropped either: that is Loss's
	// job. While Mark is positive every frame Loss spared takes a draw,
	// ECN-capable or not, so a seed decides the other faults alike for a
	// sender with ECN and one without.
	Mark float64
	// BlackHoleMTU, if positive, is the MTU of a path MTU black hole
	// (RFC 2923 2.1): an IP packet longer than BlackHoleMTU bytes (its IP
	// header included, the link header not) is dropped, and no ICMP
	// "fragmentation needed" or ICMPv6 "packet too big" tells the sender,
	// as when a firewall drops those. Smaller packets, and frames that
	// are not IP (ARP), pass. A super-frame (GSO on the way out, GRO on
	// the way in) is judged by the wire segments it stands for and passes
	// or is dropped whole. It is decided first, before Loss: a packet the
	// black hole takes reaches no router further on. It takes no draw,
	// so a seed decides the other faults for the packets it lets through
	// as it would were the ones it took never sent.
	BlackHoleMTU int
	// Delay holds every frame back for this long before sending it, and
	// Jitter adds a uniformly drawn extra in [0, Jitter) per frame. These
	// waits, and Rate's, end within tens of microseconds of their time
	// in an otherwise idle process too: on Linux they are a timerfd's,
	// since a Go timer is a millisecond late there (fineTimer).
	// Frames keep their order (a frame never leaves before the one ahead
	// of it, as with netem's rate option); reordering is Reorder's job.
	Delay, Jitter time.Duration
	// Rate, if positive, limits the link to this many bits per second: a
	// frame leaves when the ones before it have been serialized.
	Rate int64
	// MaxDelayed bounds the frames waiting out Delay, Jitter or Rate
	// (default 1024); more are dropped and counted, as by a full queue.
	MaxDelayed int
	// Source drives every random decision of this direction. Give a
	// seeded source, such as rand.NewPCG(seed, 0), for a reproducible run.
	// If Source is nil and Seed is not zero, outbound decisions come from
	// rand.NewPCG(Seed, 0) and inbound ones from rand.NewPCG(Seed, 1), and
	// FaultEvents report the seed; with neither, a source is seeded from
	// crypto/rand.
	Source rand.Source
	Seed   uint64

	// Inbound, if not nil, gives the faults applied to frames arriving
	// from the wire. Its Inbound, Observer and Seed fields are ignored;
	// its Source, if nil, is derived from the outbound one.
	Inbound *FaultConfig

	// Observer, if not nil, is told about every fault applied, in either
	// direction, before the frame concerned moves on (for an inbound
	// frame: just before the stack sees it, or instead, when it is lost).
	// It runs on the goroutine moving the frame and must not block.
	Observer func(FaultEvent)
}

// FaultDir is the direction of a frame through a [Fault].
type FaultDir uint8

// The directions.
const (
	FaultOutbound FaultDir = iota + 1 // from the stack to the wire
	FaultInbound                      // from the wire to the stack
)

func (d FaultDir) String() string {
	switch d {
	case FaultOutbound:
		return "outbound"
	case FaultInbound:
		return "inbound"
	}
	return "FaultDir(" + strconv.Itoa(int(d)) + ")"
}

// FaultKind names a fault.
type FaultKind uint8

// The faults.
const (
	FaultLoss      FaultKind = iota + 1 // dropped by the Loss draw
	FaultDuplicate                      // sent twice
	FaultReorder                        // held back and sent after its successor
	FaultCorrupt                        // one byte changed
	FaultDelay                          // held back for Delay/Jitter/Rate
	FaultQueueFull                      // dropped: MaxDelayed frames were already waiting
	// FaultNotSent is no fault of ours: the link below refused an
	// outbound frame, its queue full (it took the first n of a batch, as
	// tap.Pipe's does), so the frame never reached the wire. It is
	// reported so that a capture above marks that very frame; its
	// FaultEvent has the frame's ordinal and no probability.
	FaultNotSent
	FaultMark      // an ECN-capable packet marked CE (Mark)
	FaultBlackHole // dropped: longer than BlackHoleMTU, with no ICMP error
)

// FaultEvent reports one fault a [Fault] applied to one frame.
type FaultEvent struct {
	Dir    FaultDir
	Kind   FaultKind
	N      uint64        // ordinal of this fault among faults of its kind in its direction: #1, #2, ...
	Frame  uint64        // ordinal of the frame among frames offered in its direction
	Prob   float64       // the configured probability (loss, duplicate, reorder, corrupt, mark)
	Seed   uint64        // FaultConfig.Seed, when Seeded
	Seeded bool          // the decisions come from a seed the user chose
	Offset int           // corrupt: offset of the changed byte in the frame
	Delay  time.Duration // delay: how long the frame is held back
	Size   int           // black hole: the IP packet's length, or a super-frame's wire segments'
	MTU    int           // black hole: FaultConfig.BlackHoleMTU
	// MSS is a super-frame's (GSO on the way out, GRO on the way in):
	// the size of the wire segments' payload it stands for (gso_size),
	// so that an observer can show it as the wire carried it, as a
	// capture above does with an inbound one the fault lost, which the
	// stack never saw. It is 0 for a frame of one wire segment.
	MSS int
	// Copy says the report is about the second copy of a frame the
	// middleware sent twice (FaultDuplicate): the one sent first when
	// the frame was also reordered. Both copies share the frame's
	// ordinal (Frame); a capture above holds one frame for them, and
	// tells by Copy which one the link refused (FaultNotSent), was
	// delayed or dropped for a full delay queue.
	Copy bool
	// Data is the frame, link header included, as a capture above the
	// middleware sees it: an outbound frame as the stack sent it (before
	// it was corrupted or marked), an inbound frame as it reaches the
	// stack (corrupted, marked) or as it was when it was lost. It is
	// valid only during the Observer call.
	Data []byte
}

// String says what happened in the words of packet comments:
// "dropped (loss 5%, seed 7, #312)".
func (ev FaultEvent) String() string {
	var what, knob string
	switch ev.Kind {
	case FaultLoss:
		what, knob = "dropped", "loss "+pct(ev.Prob)
	case FaultDuplicate:
		what, knob = "duplicated", "dup "+pct(ev.Prob)
	case FaultReorder:
		what, knob = "reordered: sent after the next frame", "reorder "+pct(ev.Prob)
	case FaultCorrupt:
		what, knob = "corrupted byte "+strconv.Itoa(ev.Offset), "corrupt "+pct(ev.Prob)
	case FaultMark:
		what, knob = "marked CE", "mark "+pct(ev.Prob)
	case FaultBlackHole:
		// No draw decided it; what a reader must know is that the
		// sender was not told (RFC 2923 2.1).
		what = "dropped: " + strconv.Itoa(ev.Size) + " bytes, over the black hole's MTU " + strconv.Itoa(ev.MTU)
		knob = "no ICMP"
	case FaultDelay:
		what = "delayed " + ev.Delay.Round(time.Microsecond).String()
	case FaultQueueFull:
		what = "dropped: delay queue full"
	case FaultNotSent:
		what = "not sent: the link's queue was full"
	default:
		what = "fault " + strconv.Itoa(int(ev.Kind))
	}
	s := what + " ("
	if knob != "" {
		s += knob + ", "
	}
	if ev.Seeded {
		s += "seed " + strconv.FormatUint(ev.Seed, 10) + ", "
	}
	return s + "#" + strconv.FormatUint(ev.N, 10) + ")"
}

// pct prints a probability as a percentage with no trailing zeros.
func pct(p float64) string {
	return strconv.FormatFloat(p*100, 'f', -1, 64) + "%"
}

// FaultStats counts the frames a [Fault] saw and the faults it applied in
// one direction.
type FaultStats struct {
	Frames         uint64 // frames offered to the middleware
	Lost           uint64
	Duplicated     uint64
	Reordered      uint64 // frames held back to be sent after their successor
	Corrupted      uint64
	Delayed        uint64
	DroppedDelayed uint64 // frames dropped because MaxDelayed frames were waiting
	NotSent        uint64 // outbound frames the link below refused, its queue full (FaultNotSent)
	Marked         uint64 // ECN-capable packets marked CE (FaultMark)
	BlackHoled     uint64 // IP packets dropped as longer than BlackHoleMTU (FaultBlackHole)
	Rejoined       uint64 // inbound wire segments handed on joined again into super-frames: runs of a split super-frame left intact (rejoin.go)
}

// Fault is link middleware that injects faults into the frames of the
// endpoint it wraps, in each direction as its [FaultConfig] says.
//
// Fault wraps the endpoint the NIC sees, so the frames it sees already carry
// their link header (added or parsed by the wrapped ethernet endpoint); that
// is how it finds the transport bytes to corrupt.
type Fault struct {
	nested.Endpoint

	timers sync.WaitGroup // armed timer callbacks (reordering, delays)

	mu      sync.Mutex
	closed  bool
	out, in *lane // in is nil without FaultConfig.Inbound
	obs     func(FaultEvent)

	batchEnd hook // OnBatchEnd

	// segs is the device below that hands super-frames up as their wire
	// segments for the inbound faults (nil if none does), and rejoin
	// the run of them passed on intact, not yet handed on (rejoin.go).
	segs   segmentSource
	rejoin rejoinRun

	// writing counts the writes to the link below between their call
	// and the report of what the link refused (LinkDrops).
	writing atomic.Int32

	scratch sync.Pool // of *faultScratch: a frame through the middleware allocates nothing
}

// faultScratch is what one pass of frames through the middleware works
// in: the actions decided for them, and the batch written on.
type faultScratch struct {
	acts []action
	out  stack.PacketBufferList // references of its own while the batch is written
	sent [][]byte               // out's frames as the stack sent them, where a fault changed them (action.sent)
	ords []uint64               // out's frames' ordinals (action.frame)
	dups []bool                 // out's frames that are a Duplicate's copy (action.copy)
}

func (f *Fault) getScratch() *faultScratch {
	if s, ok := f.scratch.Get().(*faultScratch); ok {
		return s
	}
	return new(faultScratch)
}

// putScratch gives s back with acts, its slice as the pass left it,
// cleared: the pool holds no frame or report.
func (f *Fault) putScratch(s *faultScratch, acts []action) {
	clear(acts)
	s.acts = acts[:0]
	clear(s.sent)
	s.sent = s.sent[:0]
	s.ords = s.ords[:0]
	s.dups = s.dups[:0]
	f.scratch.Put(s)
}

// OnBatchEnd implements stack's BatchingLink: fn is passed to the link
// below, whose bursts the middleware passes on, and called after each
// inbound frame the middleware delivers later on its own (held back for
// reordering, delayed), which is a burst of its own.
func (f *Fault) OnBatchEnd(fn func()) {
	f.batchEnd.set(fn)
	below := fn
	if f.segs != nil {
		// A run of segments waiting to be joined goes before the
		// burst's end is told.
		below = func() {
			f.flushRejoin()
			fn()
		}
	}
	walkBelow(f.Endpoint.Child(), func(l stack.LinkEndpoint) bool {
		b, ok := l.(interface{ OnBatchEnd(func()) })
		if ok {
			b.OnBatchEnd(below)
		}
		return ok
	})
}

// SupportedGSO implements stack.GSOEndpoint. A middleware that corrupts
// outbound frames offers no segmentation offload: a stack using it would
// leave checksums partial, and the host (the kernel behind a TAP, the
// other end of a pipe) finishes them over the corrupted bytes, as a NIC
// would, so the corruption would pass unseen. Without it every segment
// carries its full checksum, which the receiver checks.
func (f *Fault) SupportedGSO() stack.SupportedGSO {
	if f.out.cfg.Corrupt > 0 {
		return stack.GSONotSupported
	}
	return f.Endpoint.SupportedGSO()
}

// laterBurstEnd ends the burst of inbound frames a timer of the
// middleware delivered.
func (f *Fault) laterBurstEnd(dir FaultDir) {
	if dir == FaultInbound {
		f.batchEnd.call()
	}
}

// lane is the fault state of one direction. Its fields are guarded by the
// Fault's mu.
type lane struct {
	f      *Fault
	dir    FaultDir
	cfg    FaultConfig
	rng    *rand.Rand
	seed   uint64
	seeded bool
	stats  FaultStats

	// The frame held back for reordering, with its sequence number so a
	// stale timer can tell that the frame it was armed for is gone.
	held      *laneFrame
	heldSeq   uint64
	heldTimer *time.Timer

	// Frames waiting out Delay/Jitter/Rate, in the order they are due.
	delayed    []delayedFrame
	delayClock *fineTimer // made for the first delayed frame; closed with the Fault
	flushing   bool       // a flush is armed or running
	lastDue    time.Time  // frames keep their order
	rateFree   time.Time  // when the link has serialized what it took
}

// laneFrame is a frame a lane moves on or keeps, with the network
// protocol an inbound frame is delivered with. A lane that keeps it holds
// a reference to pkt.
type laneFrame struct {
	pkt   *stack.PacketBuffer
	proto tcpip.NetworkProtocolNumber
	notes [3]*FaultEvent // reported just before an inbound frame moves on
	// sent is an outbound frame as the stack sent it, when a fault
	// changed it (corrupted, marked) and someone listens: the bytes a
	// capture above holds, which the frame's later reports carry.
	sent []byte
	// frame is its ordinal (FaultEvent.Frame): a held frame's reports
	// made when it moves on name it, not the frame that overtook it.
	frame uint64
	// copy: the second copy a Duplicate made (FaultEvent.Copy).
	copy bool
}

type delayedFrame struct {
	due   time.Time
	delay *FaultEvent // an inbound frame's delay, reported when it moves on
	laneFrame
}

var _ stack.LinkEndpoint = (*Fault)(nil)

// NewFault returns inner wrapped in fault injection. Give the result to the
// stack instead of inner. A direction that delays frames (Delay, Jitter,
// Rate) keeps a timer descriptor and its goroutine, made for its first
// delayed frame, until Close; the stack closes its link when it closes.
func NewFault(inner stack.LinkEndpoint, cfg FaultConfig) *Fault {
	f := &Fault{obs: cfg.Observer}
	f.out = newLane(f, FaultOutbound, cfg, cfg.Source, cfg.Seed, 0)
	if cfg.Inbound != nil {
		src := cfg.Inbound.Source
		if src == nil && cfg.Seed == 0 {
			// Derive the inbound stream from the outbound one, so one
			// seeded Source makes both directions reproducible.
			src = rand.NewPCG(f.out.rng.Uint64(), f.out.rng.Uint64())
		}
		f.in = newLane(f, FaultInbound, *cfg.Inbound, src, cfg.Seed, 1)
		requireWireFrames(inner)
		if cfg.Inbound.Corrupt > 0 {
			requireFullChecksums(inner)
			walkBelow(inner, func(l stack.LinkEndpoint) bool {
				f.segs, _ = l.(segmentSource)
				return f.segs != nil
			})
		}
	}
	if cfg.Corrupt > 0 {
		checkOutboundChecksums(inner)
	}
	f.Endpoint.Init(inner, f)
	return f
}

// requireFullChecksums asks every endpoint under link that vouches for
// inbound checksums (a TAP device with offloads, a pipe's end with GSO)
// to deliver complete checksums and leave their check to the stack, and
// to deliver super-frames as their wire segments: a frame this middleware
// corrupts on its way in must be caught there, as a NIC would have caught
// it on the wire, and lose one segment, as on the wire.
func requireFullChecksums(link stack.LinkEndpoint) {
	askBelow(link, func(v interface{ requireFullChecksums() }) { v.requireFullChecksums() })
}

// requireWireFrames asks every endpoint under link that joins the wire
// segments it reads (a TAP device without offloads: gro.go) to hand each
// to the stack as it was read: the inbound faults stand for the wire
// between the kernel and the device, and draw for each wire segment, as
// a wire's faults strike before a receiving host's GRO joins anything.
func requireWireFrames(link stack.LinkEndpoint) {
	askBelow(link, func(v interface{ requireWireFrames() }) { v.requireWireFrames() })
}

// checkOutboundChecksums asks every endpoint under link that joins the
// stack's segments into super-frames (a TAP device that coalesces) to
// leave out a segment whose checksum fails: a frame this middleware
// corrupts on its way out must be lost alone, as on a wire, not with the
// intact segments a super-frame would join to it.
func checkOutboundChecksums(link stack.LinkEndpoint) {
	askBelow(link, func(v interface{ checkOutboundChecksums() }) { v.checkOutboundChecksums() })
}

// askBelow calls ask for every endpoint under link (link included) that
// has the method T asks for.
func askBelow[T any](link stack.LinkEndpoint, ask func(T)) {
	walkBelow(link, func(l stack.LinkEndpoint) bool {
		if v, ok := l.(T); ok {
			ask(v)
		}
		return false
	})
}

// walkBelow calls fn for link and each endpoint it wraps, down the chain
// of Child endpoints, until fn says stop (bounded, against a cycle), as
// the stack's walkLink does.
func walkBelow(link stack.LinkEndpoint, fn func(stack.LinkEndpoint) (stop bool)) {
	for range 32 {
		if fn(link) {
			return
		}
		c, ok := link.(interface{ Child() stack.LinkEndpoint })
		if !ok {
			return
		}
		link = c.Child()
	}
}

func newLane(f *Fault, dir FaultDir, cfg FaultConfig, src rand.Source, seed, stream uint64) *lane {
	if cfg.ReorderTimeout <= 0 {
		cfg.ReorderTimeout = 10 * time.Millisecond
	}
	if cfg.MaxDelayed <= 0 {
		cfg.MaxDelayed = 1024
	}
	l := &lane{f: f, dir: dir, cfg: cfg}
	switch {
	case src != nil:
	case seed != 0:
		src = rand.NewPCG(seed, stream)
		l.seed, l.seeded = seed, true
	default:
		var s [16]byte
		_, _ = crand.Read(s[:])
		src = rand.NewPCG(binary.LittleEndian.Uint64(s[:8]), binary.LittleEndian.Uint64(s[8:]))
	}
	l.rng = rand.New(src)
	return l
}

// Stats returns the counters of outbound frames.
func (f *Fault) Stats() FaultStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.stats
}

// InboundStats returns the counters of inbound frames (all zero without
// FaultConfig.Inbound).
func (f *Fault) InboundStats() FaultStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.in == nil {
		return FaultStats{}
	}
	return f.in.stats
}

// hit draws one decision; f.mu must be held (rand.Rand is not safe for
// concurrent use, and a single stream per direction keeps a seeded run
// reproducible).
func (l *lane) hit(p float64) bool {
	return p > 0 && l.rng.Float64() < p
}

// event makes the report of a fault on frame (the lane's current one),
// with its bytes when someone listens: sent if not nil, else pkt's.
func (l *lane) event(k FaultKind, pkt *stack.PacketBuffer, sent []byte, prob float64) *FaultEvent {
	if l.f.obs == nil {
		return nil
	}
	ev := &FaultEvent{Dir: l.dir, Kind: k, Frame: l.stats.Frames, Prob: prob, Seed: l.seed, Seeded: l.seeded}
	switch k {
	case FaultLoss:
		ev.N = l.stats.Lost
	case FaultDuplicate:
		ev.N = l.stats.Duplicated
	case FaultReorder:
		ev.N = l.stats.Reordered
	case FaultCorrupt:
		ev.N = l.stats.Corrupted
	case FaultDelay:
		ev.N = l.stats.Delayed
	case FaultQueueFull:
		ev.N = l.stats.DroppedDelayed
	case FaultNotSent:
		ev.N = l.stats.NotSent
	case FaultMark:
		ev.N = l.stats.Marked
	case FaultBlackHole:
		ev.N = l.stats.BlackHoled
	}
	switch {
	case sent != nil:
		ev.Data = sent
	case pkt != nil:
		ev.Data = pkt.ToView().AsSlice()
	}
	if pkt != nil {
		if g := pkt.GSOOptions; (g.Type == stack.GSOTCPv4 || g.Type == stack.GSOTCPv6) && g.MSS > 0 {
			ev.MSS = int(g.MSS)
		}
	}
	return ev
}

// frameEvent makes the report of a fault on fr, which may be a frame the
// lane held back and sends after others (Reorder): the report names fr's
// ordinal, so that an observer that tells frames apart by it (a capture
// above, among frames identical byte for byte) puts it on fr. f.mu is
// held.
func (l *lane) frameEvent(k FaultKind, fr laneFrame) *FaultEvent {
	ev := l.event(k, fr.pkt, fr.sent, 0)
	if ev != nil {
		ev.Frame, ev.Copy = fr.frame, fr.copy
	}
	return ev
}

// sentBytes returns the bytes of pkt, an outbound frame a fault is about
// to change, for the reports of the frame (laneFrame.sent); nil when no
// one listens or the frame is inbound. f.mu is held.
func (l *lane) sentBytes(pkt *stack.PacketBuffer) []byte {
	if l.f.obs == nil || l.dir != FaultOutbound {
		return nil
	}
	return pkt.ToView().AsSlice()
}

// action is one step, done in order after f.mu is released: report a
// fault, move a frame on (write it to the wire, or deliver it to the
// stack), or release a reference the lane held once the frames have moved.
type action struct {
	kind  actKind
	ev    *FaultEvent
	pkt   *stack.PacketBuffer
	proto tcpip.NetworkProtocolNumber
	sent  []byte // actMove: laneFrame.sent
	frame uint64 // actMove: laneFrame.frame
	copy  bool   // actMove: laneFrame.copy
}

type actKind uint8

const (
	actReport actKind = iota
	actMove
	actRelease
)

// report appends the report of a fault, if anyone listens.
func report(acts []action, ev *FaultEvent) []action {
	if ev == nil {
		return acts
	}
	return append(acts, action{kind: actReport, ev: ev})
}

// reportNotes appends the reports of a frame's notes that are set.
func reportNotes(acts []action, notes [3]*FaultEvent) []action {
	for _, ev := range notes {
		acts = report(acts, ev)
	}
	return acts
}

// decide applies the lane's faults to one frame and appends what is to
// happen to acts. f.mu is held. The caller's reference to pkt stays the
// caller's; frames kept for later take their own.
//
// Outbound frames were captured above the middleware before it decided,
// so their faults are reported at once; an inbound fault is reported just
// before its frame reaches the stack (or instead, when it is lost), so a
// capture above can tell which frame it concerns.
func (l *lane) decide(acts []action, pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber, now time.Time) []action {
	l.stats.Frames++
	if l.cfg.BlackHoleMTU > 0 {
		// Before any draw: the packet never reaches a router (or a
		// wire) further on, and the draws stay those of the others.
		if size, ok := wireSize(pkt, proto); ok && size > l.cfg.BlackHoleMTU {
			l.stats.BlackHoled++
			ev := l.event(FaultBlackHole, pkt, nil, 0)
			if ev != nil {
				ev.Size, ev.MTU = size, l.cfg.BlackHoleMTU
			}
			return report(acts, ev)
		}
	}
	if l.hit(l.cfg.Loss) {
		l.stats.Lost++
		return report(acts, l.event(FaultLoss, pkt, nil, l.cfg.Loss))
	}
	// A fault that changes the frame (marks it, corrupts it) moves on a
	// copy, which the lane owns. An outbound frame's reports carry it as
	// the stack sent it (sent), the bytes a capture above holds.
	owned := false
	var sent []byte
	var markEv, corruptEv *FaultEvent
	if l.hit(l.cfg.Mark) {
		// An AQM router upstream marks; the wire, after it, corrupts.
		if c := markCE(pkt, proto, l.dir == FaultInbound); c != nil {
			l.stats.Marked++
			sent = l.sentBytes(pkt)
			markEv = l.event(FaultMark, c, sent, l.cfg.Mark)
			pkt, owned = c, true
		}
	}
	if l.hit(l.cfg.Corrupt) {
		if c, off := corrupt(pkt, l.dir == FaultInbound, l.rng); c != nil {
			l.stats.Corrupted++
			if !owned {
				sent = l.sentBytes(pkt)
			}
			if corruptEv = l.event(FaultCorrupt, c, sent, l.cfg.Corrupt); corruptEv != nil {
				corruptEv.Offset = off
				if markEv != nil && l.dir == FaultInbound {
					markEv.Data = corruptEv.Data // the frame as the stack gets it
				}
			}
			if owned {
				pkt.DecRef() // the marked copy, which c copied
			}
			pkt, owned = c, true
		}
	}
	copies := 1
	var dupEv *FaultEvent
	if l.hit(l.cfg.Duplicate) {
		l.stats.Duplicated++
		copies = 2
		dupEv = l.event(FaultDuplicate, pkt, sent, l.cfg.Duplicate)
	}
	if l.dir == FaultOutbound {
		acts = report(report(report(acts, markEv), corruptEv), dupEv)
		markEv, corruptEv, dupEv = nil, nil, nil
	}
	fr := laneFrame{pkt: pkt, proto: proto, notes: [3]*FaultEvent{markEv, corruptEv}, sent: sent, frame: l.stats.Frames}
	if l.held == nil && l.hit(l.cfg.Reorder) {
		l.stats.Reordered++
		ev := l.event(FaultReorder, pkt, sent, l.cfg.Reorder)
		if l.dir == FaultOutbound {
			acts = report(acts, ev)
			ev = nil
		}
		if !owned {
			pkt.IncRef()
		}
		if copies == 2 {
			// The duplicate goes now, the original after the next frame.
			dup := fr
			dup.notes[2], dup.copy = dupEv, true
			acts = l.emit(acts, dup, now)
			fr.notes = [3]*FaultEvent{}
		}
		fr.notes[2] = ev
		l.hold(fr)
		return acts
	}
	acts = l.emit(acts, fr, now)
	if copies == 2 {
		fr.notes[2], fr.copy = dupEv, true
		acts = l.emit(acts, fr, now)
	}
	if owned {
		acts = append(acts, action{kind: actRelease, pkt: pkt})
	}
	if l.held != nil {
		// This frame overtook the held one; now send the held one.
		held := *l.held
		l.unhold()
		acts = l.emit(acts, held, now)
		acts = append(acts, action{kind: actRelease, pkt: held.pkt})
	}
	return acts
}

// emit moves fr on now, or queues it for Delay/Jitter/Rate; its notes
// are reported just before it moves. f.mu is held.
func (l *lane) emit(acts []action, fr laneFrame, now time.Time) []action {
	if l.cfg.Delay <= 0 && l.cfg.Jitter <= 0 && l.cfg.Rate <= 0 {
		acts = reportNotes(acts, fr.notes)
		return append(acts, action{kind: actMove, pkt: fr.pkt, proto: fr.proto, sent: fr.sent, frame: fr.frame, copy: fr.copy})
	}
	if len(l.delayed) >= l.cfg.MaxDelayed {
		l.stats.DroppedDelayed++
		acts = reportNotes(acts, fr.notes)
		return report(acts, l.frameEvent(FaultQueueFull, fr))
	}
	due := now
	if l.cfg.Rate > 0 {
		// Serialization: the frame leaves once the link has sent what it
		// took before, at Rate bits per second.
		start := now
		if l.rateFree.After(start) {
			start = l.rateFree
		}
		bits := int64(fr.pkt.Size()) * 8
		l.rateFree = start.Add(time.Duration(bits * int64(time.Second) / l.cfg.Rate))
		due = l.rateFree
	}
	due = due.Add(l.cfg.Delay)
	if l.cfg.Jitter > 0 {
		due = due.Add(time.Duration(l.rng.Int64N(int64(l.cfg.Jitter))))
	}
	if due.Before(l.lastDue) {
		due = l.lastDue // frames keep their order
	}
	l.lastDue = due
	l.stats.Delayed++
	fr.pkt.IncRef()
	d := delayedFrame{due: due, laneFrame: fr}
	if ev := l.frameEvent(FaultDelay, fr); ev != nil {
		ev.Delay = due.Sub(now)
		if l.dir == FaultOutbound {
			acts = report(acts, ev)
		} else {
			d.delay = ev
		}
	}
	l.delayed = append(l.delayed, d)
	if !l.flushing {
		l.armDelay(due.Sub(now))
	}
	return acts
}

// hold keeps fr (whose reference the caller took) back for reordering and
// arms the timer that sends it if no successor comes. f.mu is held.
func (l *lane) hold(fr laneFrame) {
	l.held = &fr
	l.heldSeq++
	seq := l.heldSeq
	l.f.timers.Add(1)
	l.heldTimer = time.AfterFunc(l.cfg.ReorderTimeout, func() {
		defer l.f.timers.Done()
		l.flushHeld(seq)
	})
}

// unhold forgets the held frame; the caller takes over its reference.
// f.mu is held.
func (l *lane) unhold() {
	if l.heldTimer.Stop() {
		l.f.timers.Done()
	}
	l.held, l.heldTimer = nil, nil
}

// flushHeld sends the held frame on its own after ReorderTimeout.
func (l *lane) flushHeld(seq uint64) {
	f := l.f
	f.mu.Lock()
	if f.closed || l.held == nil || l.heldSeq != seq {
		f.mu.Unlock()
		return
	}
	held := *l.held
	l.held, l.heldTimer = nil, nil
	s := f.getScratch()
	acts := l.emit(s.acts[:0], held, time.Now())
	acts = append(acts, action{kind: actRelease, pkt: held.pkt})
	f.mu.Unlock()
	f.run(l.dir, acts, s, nil)
	f.putScratch(s, acts)
	f.laterBurstEnd(l.dir)
}

// armDelay arms the lane's one delay timer. It is a fineTimer, not a
// time.AfterFunc, so that a delay of microseconds (a Rate's serialization
// of one frame, a short Delay) is one of microseconds even when the
// process has nothing else to do. f.mu is held.
func (l *lane) armDelay(d time.Duration) {
	l.f.timers.Add(1)
	l.flushing = true
	if l.delayClock == nil {
		l.delayClock = newFineTimer(func() {
			defer l.f.timers.Done()
			l.flushDelayed()
		})
	}
	l.delayClock.Reset(d)
}

// flushDelayed sends the frames that are due, in order, then re-arms the
// timer for the next one. Only one flush runs at a time: flushing stays
// set while it runs, so emit does not arm the timer again.
func (l *lane) flushDelayed() {
	f := l.f
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	now := time.Now()
	s := f.getScratch()
	acts := s.acts[:0]
	i := 0
	for ; i < len(l.delayed) && !l.delayed[i].due.After(now); i++ {
		d := l.delayed[i]
		acts = report(reportNotes(acts, d.notes), d.delay)
		acts = append(acts, action{kind: actMove, pkt: d.pkt, proto: d.proto, sent: d.sent, frame: d.frame, copy: d.copy}, action{kind: actRelease, pkt: d.pkt})
	}
	l.delayed = append(l.delayed[:0], l.delayed[i:]...)
	f.mu.Unlock()

	f.run(l.dir, acts, s, nil)
	f.putScratch(s, acts)
	f.laterBurstEnd(l.dir)

	f.mu.Lock()
	defer f.mu.Unlock()
	l.flushing = false
	if f.closed || len(l.delayed) == 0 {
		return
	}
	l.armDelay(max(time.Until(l.delayed[0].due), 0))
}

// run carries out acts in order, without f.mu: a write may deliver
// synchronously and come back to us on the same goroutine. Outbound frames
// are written in one batch, s.out (empty), which takes a reference of its
// own to each for the write; references are released after. When the
// link below refuses frames, its queue full, they are reported
// (FaultNotSent), and run returns how many of caller, the frames
// of the write that brought it here, went before the first refused one,
// with tcpip.ErrNoBufferSpace: a frame the middleware passed on at once
// was refused as if it had no middleware above, and its sender learns so.
// A frame it delayed left the sender's hands when it was taken, as netem
// orphans the skbs it holds: its refusal later is the middleware's to
// report, not the sender's to hear.
func (f *Fault) run(dir FaultDir, acts []action, s *faultScratch, caller []*stack.PacketBuffer) (int, tcpip.Error) {
	out := &s.out
	for _, a := range acts {
		switch a.kind {
		case actReport:
			if f.obs != nil {
				f.obs(*a.ev)
			}
		case actMove:
			if dir == FaultOutbound {
				out.PushBack(a.pkt.IncRef())
				s.sent = append(s.sent, a.sent)
				s.ords = append(s.ords, a.frame)
				s.dups = append(s.dups, a.copy)
			} else {
				c := inboundCopy(a.pkt)
				f.Endpoint.DeliverNetworkPacket(a.proto, c)
				c.DecRef()
			}
		}
	}
	var err tcpip.Error
	taken := len(caller)
	if out.Len() > 0 {
		f.writing.Add(1)
		var n int
		n, err = f.Endpoint.WritePackets(*out)
		_, full := err.(*tcpip.ErrNoBufferSpace)
		if (err == nil || full) && n < out.Len() {
			written, refused := out.AsSlice()[:n], out.AsSlice()[n:]
			f.notSent(refused, s.sent[n:], s.ords[n:], s.dups[n:])
			err = nil
			for i, pkt := range caller {
				// A duplicate is the frame again: the frame left
				// when its first copy did.
				if !slices.Contains(written, pkt) && slices.Contains(refused, pkt) {
					taken, err = i, &tcpip.ErrNoBufferSpace{}
					break
				}
			}
		}
		f.writing.Add(-1)
		out.Reset() // our references go; the slice stays for the next pass
		clear(s.sent)
		s.sent = s.sent[:0]
		s.ords = s.ords[:0]
		s.dups = s.dups[:0]
	}
	for _, a := range acts {
		if a.kind == actRelease {
			a.pkt.DecRef()
		}
	}
	return taken, err
}

// LinkDrops returns count, the link below's count of the frames it
// dropped, as a capture above the middleware reads it
// (pcap.Options.LinkDrops): while a write of the middleware's own is
// under way, one it makes later for a delayed or reordered frame, the
// count may hold a refusal not yet reported (FaultNotSent), and the
// capture would tell it twice, on an unrelated frame and on its own. The
// function then returns the count as it stood before, which the capture
// takes as nothing new; it must be called by one goroutine at a time.
func (f *Fault) LinkDrops(count func() uint64) func() uint64 {
	stable := count()
	return func() uint64 {
		// The count is read first: a write that starts after the test
		// adds nothing to it, and one under way at the test is seen.
		n := count()
		if f.writing.Load() != 0 {
			return stable
		}
		stable = n
		return n
	}
}

// notSent counts and reports the outbound frames the link below refused
// (FaultNotSent), each with its bytes as the stack sent it (sent[i], if
// not nil), its ordinal (ords[i]) and whether it is a Duplicate's copy
// (dups[i]), without f.mu held on return.
func (f *Fault) notSent(pkts []*stack.PacketBuffer, sent [][]byte, ords []uint64, dups []bool) {
	f.mu.Lock()
	evs := make([]*FaultEvent, 0, len(pkts))
	for i, pkt := range pkts {
		f.out.stats.NotSent++
		if ev := f.out.event(FaultNotSent, pkt, sent[i], 0); ev != nil {
			// No draw decided it. The ordinal tells the frame from
			// an identical one sent since (a capture above tells
			// them apart by it): a delayed frame is refused when
			// the middleware writes it, after frames taken later.
			ev.Frame, ev.Copy, ev.Seed, ev.Seeded = ords[i], dups[i], 0, false
			evs = append(evs, ev)
		}
	}
	f.mu.Unlock()
	for _, ev := range evs {
		f.obs(*ev)
	}
}

// WritePackets implements stack.LinkWriter. Decisions are made under f.mu;
// the inner endpoint is written without it.
//
// The caller keeps its references to pkts (gVisor's NIC releases them after
// we return), so frames kept for later take their own reference.
func (f *Fault) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, &tcpip.ErrClosedForSend{}
	}
	now := time.Now()
	s := f.getScratch()
	acts := s.acts[:0]
	for _, pkt := range pkts.AsSlice() {
		acts = f.out.decide(acts, pkt, pkt.NetworkProtocolNumber, now)
	}
	f.mu.Unlock()
	n, err := f.run(FaultOutbound, acts, s, pkts.AsSlice())
	f.putScratch(s, acts)
	switch err.(type) {
	case nil:
	case *tcpip.ErrNoBufferSpace:
		return n, err // the link below refused the frames from the n-th on
	default:
		return 0, err
	}
	// Lost frames count as written: they left the NIC and died on the
	// wire; so do delayed ones, whatever becomes of them.
	return pkts.Len(), nil
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: inbound frames
// meet FaultConfig.Inbound's faults on their way to the stack.
func (f *Fault) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if f.in == nil {
		f.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	s := f.getScratch()
	acts := f.in.decide(s.acts[:0], pkt, proto, time.Now())
	f.mu.Unlock()
	if f.segs != nil {
		f.runSegment(acts, s, pkt, proto, f.segs.currentSegment(pkt))
	} else {
		f.run(FaultInbound, acts, s, nil)
	}
	f.putScratch(s, acts)
}

// Close implements stack.LinkEndpoint: it drops held and delayed frames,
// stops the timers and closes the inner endpoint.
func (f *Fault) Close() {
	f.mu.Lock()
	var drop []*stack.PacketBuffer
	if !f.closed {
		f.closed = true
		for _, l := range []*lane{f.out, f.in} {
			if l == nil {
				continue
			}
			if l.held != nil {
				drop = append(drop, l.held.pkt)
				l.unhold()
			}
			if l.delayClock != nil {
				if l.delayClock.Stop() { // armed: its flush will not run
					f.timers.Done()
				}
				l.delayClock.Close()
			}
			for _, d := range l.delayed {
				drop = append(drop, d.pkt)
			}
			l.delayed = nil
		}
	}
	f.mu.Unlock()
	for _, p := range drop {
		p.DecRef()
	}
	f.dropRejoin()
	f.Endpoint.Close()
}

// Wait implements stack.LinkEndpoint: it waits for running timer callbacks
// and for the inner endpoint's goroutines.
func (f *Fault) Wait() {
	f.timers.Wait()
	f.Endpoint.Wait()
}

// corrupt returns a copy of pkt with one byte after the network header
// changed, and the byte's offset in the frame, or nil if there is no such
// byte. The copy is needed because the sender may share pkt's storage
// (gVisor's TCP keeps it for retransmission), and a retransmitted segment
// must arrive intact. An inbound frame has only its link header parsed, so
// the network header's length is read from its bytes. f.mu is held (r).
func corrupt(pkt *stack.PacketBuffer, inbound bool, r *rand.Rand) (*stack.PacketBuffer, int) {
	link := len(pkt.LinkHeader().Slice())
	v := pkt.ToView()
	b := v.AsSlice()
	network := networkHeaderLen(b[link:])
	start := link + network
	if network == 0 || len(b) <= start {
		v.Release()
		return nil, 0
	}
	// XOR with a non-zero value always changes the byte; a one-byte change
	// always changes the Internet checksum, so the receiver can catch it.
	off := start + r.IntN(len(b)-start)
	b[off] ^= byte(1 + r.IntN(255))
	// Its checksum no longer holds, so the copy is not marked validated.
	return changedCopy(pkt, v, link, inbound), off
}

// changedCopy is a new packet of v, pkt's frame (link header included,
// link bytes long) as a fault changed it, with pkt's header boundaries
// restored, so that layers below (a capture, the pipe) or above (the
// stack) see the same structure as in the original. A super-frame stays
// one (a capture above cuts it into its wire segments). The copy is not
// marked as having its checksum validated; that is for the caller to say.
func changedCopy(pkt *stack.PacketBuffer, v *buffer.View, link int, inbound bool) *stack.PacketBuffer {
	c := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	c.LinkHeader().Consume(link)
	if !inbound {
		c.NetworkHeader().Consume(len(pkt.NetworkHeader().Slice()))
		c.TransportHeader().Consume(len(pkt.TransportHeader().Slice()))
		c.TransportProtocolNumber = pkt.TransportProtocolNumber
		c.EgressRoute = pkt.EgressRoute
	}
	c.GSOOptions = pkt.GSOOptions
	c.NetworkProtocolNumber = pkt.NetworkProtocolNumber
	c.PktType = pkt.PktType
	return c
}

// The ECN field's codepoints (RFC 3168 5): the low two bits of the IPv4
// TOS byte and of the IPv6 traffic class.
const (
	ecnNotECT = 0b00
	ecnCE     = 0b11 // ECT(0) is 0b10, ECT(1) 0b01
)

// markCE returns a copy of pkt, an IP packet of protocol proto, whose
// ECN field says CE, or nil if pkt is not ECN-capable (not-ECT, CE
// already, not an IP packet). Its two header bytes are looked at before
// the frame is copied. The copy is needed as corrupt's is: the sender may
// share pkt's storage. Only the IP header changes, and the transport
// checksum does not cover it, so an inbound copy keeps what the link
// below said of the frame's checksum (vouched for, left partial by the
// kernel).
func markCE(pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber, inbound bool) *stack.PacketBuffer {
	link := len(pkt.LinkHeader().Slice())
	var pre [32]byte
	if link+2 > len(pre) || copyFramePrefix(pre[:link+2], pkt) < link+2 {
		return nil
	}
	if ecn, ok := ecnField(pre[link:link+2], proto); !ok || ecn == ecnNotECT || ecn == ecnCE {
		return nil
	}
	v := pkt.ToView()
	b := v.AsSlice()
	if networkHeaderLen(b[link:]) == 0 {
		v.Release()
		return nil
	}
	setCE(b[link:], proto)
	c := changedCopy(pkt, v, link, inbound)
	c.RXChecksumValidated = pkt.RXChecksumValidated
	return c
}

// ecnField returns the ECN field of ip, which begins with the first two
// bytes of an IP header of protocol proto; ok is false if it does not
// (ARP, another protocol, a version that disagrees with proto).
func ecnField(ip []byte, proto tcpip.NetworkProtocolNumber) (ecn uint8, ok bool) {
	switch {
	case proto == header.IPv4ProtocolNumber && ip[0]>>4 == 4:
		return ip[1] & 0b11, true
	case proto == header.IPv6ProtocolNumber && ip[0]>>4 == 6:
		return ip[1] >> 4 & 0b11, true // the traffic class spans bytes 0 and 1
	}
	return 0, false
}

// setCE sets the ECN field of the IP header at the start of ip to CE.
// The IPv4 header checksum is updated for the changed word (RFC 1624 3:
// HC' = ~(~HC + ~m + m')), as Linux's INET_ECN_set_ce updates it, so it
// holds if and only if it held before; IPv6 has no header checksum.
func setCE(ip []byte, proto tcpip.NetworkProtocolNumber) {
	if proto == header.IPv6ProtocolNumber {
		h := header.IPv6(ip)
		tc, flow := h.TOS()
		h.SetTOS(tc|ecnCE, flow)
		return
	}
	h := header.IPv4(ip)
	m := binary.BigEndian.Uint16(ip) // version, IHL and TOS
	tos, _ := h.TOS()
	h.SetTOS(tos|ecnCE, 0)
	h.SetChecksum(^checksum.Combine(checksum.Combine(^h.Checksum(), ^m), binary.BigEndian.Uint16(ip)))
}

// wireSize returns the length of the IP packets pkt, a frame of network
// protocol proto, puts on the wire (link header excluded): the IP
// packet's, as its header gives it (Ethernet may pad a short frame), or
// for a super-frame (pkt.GSOOptions: GSO on the way out, GRO on the way
// in) that of its first and longest wire segment, its network and TCP
// headers and MSS bytes of its payload, as tcp_gso_segment cuts it. A
// super-frame that is not TCP is judged whole. ok is false if pkt is not
// an IP packet of proto (ARP). Only the headers are read, into a buffer
// on the stack.
func wireSize(pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber) (size int, ok bool) {
	link := len(pkt.LinkHeader().Slice())
	var pre [maxHeaders]byte
	n := copyFramePrefix(pre[:], pkt)
	if n <= link {
		return 0, false
	}
	ip := pre[link:n]
	v := ip[0] >> 4
	if !(proto == header.IPv4ProtocolNumber && v == 4 || proto == header.IPv6ProtocolNumber && v == 6) {
		return 0, false
	}
	size = pkt.Size() - link
	network := networkHeaderLen(ip)
	if network == 0 {
		return size, true // a header cut short: judged by the bytes there are
	}
	declared := int(header.IPv4(ip).TotalLength())
	if v == 6 {
		declared = 0 // a payload length of 0 is a jumbogram's: none given
		if pl := header.IPv6(ip).PayloadLength(); pl > 0 {
			declared = header.IPv6MinimumSize + int(pl)
		}
	}
	if declared >= network && declared < size {
		size = declared
	}
	gso := pkt.GSOOptions
	if gso.Type == stack.GSONone || gso.MSS == 0 {
		return size, true
	}
	transport := ip[9] // IPv4's protocol
	if v == 6 {
		transport = ip[6] // IPv6's next header
	}
	if transport != uint8(header.TCPProtocolNumber) || len(ip) < network+header.TCPMinimumSize {
		return size, true
	}
	tcp := int(header.TCP(ip[network:]).DataOffset())
	payload := size - network - tcp
	if tcp < header.TCPMinimumSize || payload <= 0 {
		return size, true
	}
	return network + tcp + min(int(gso.MSS), payload), true
}

// networkHeaderLen is the length of the IPv4 or IPv6 header at the start
// of b, or 0 if b holds neither (ARP, or too short).
func networkHeaderLen(b []byte) int {
	if len(b) < 1 {
		return 0
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < header.IPv4MinimumSize {
			return 0
		}
		n := int(b[0]&0xf) * 4
		if n < header.IPv4MinimumSize {
			return 0
		}
		return n
	case 6:
		if len(b) < header.IPv6MinimumSize {
			return 0
		}
		return header.IPv6MinimumSize
	}
	return 0
}

// ParseRate reads a link rate the way tc-netem writes one: a number with
// an optional unit bit, kbit, mbit, gbit (or bps, kbps, mbps, gbps for
// bytes per second), and returns bits per second. "0" means unlimited.
func ParseRate(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1},
		{"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8},
	}
	num, mult := s, 1.0
	for _, u := range units {
		if len(s) > len(u.suffix) && equalFold(s[len(s)-len(u.suffix):], u.suffix) {
			num, mult = s[:len(s)-len(u.suffix)], u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*mult > 1e15 {
		return 0, fmt.Errorf("rate %q: want a number of bits per second with an optional unit such as 10mbit or 500kbit", s)
	}
	return int64(v * mult), nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (k FaultKind) String() string {
	switch k {
	case FaultLoss:
		return "dropped"
	case FaultDuplicate:
		return "duplicated"
	case FaultReorder:
		return "reordered"
	case FaultCorrupt:
		return "corrupted"
	case FaultDelay:
		return "delayed"
	case FaultQueueFull:
		return "dropped: delay queue full"
	case FaultNotSent:
		return "not sent"
	case FaultMark:
		return "marked CE"
	case FaultBlackHole:
		return "black-holed"
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// inboundCopy is a fresh packet with pkt's frame, its link header already
// consumed as the link below us left it. The network layer consumes the
// headers of the packet it is given, so a frame delivered twice (a
// duplicate, maybe held back first by reordering or delay) must go as a
// new packet each time.
//
// The copy keeps what the link below said of the frame: that its checksum
// was vouched for (left partial by the kernel), and the super-frame it is.
func inboundCopy(pkt *stack.PacketBuffer) *stack.PacketBuffer {
	c := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: pkt.ToBuffer()})
	c.LinkHeader().Consume(len(pkt.LinkHeader().Slice()))
	c.NetworkProtocolNumber, c.PktType = pkt.NetworkProtocolNumber, pkt.PktType
	c.RXChecksumValidated, c.GSOOptions = pkt.RXChecksumValidated, pkt.GSOOptions
	return c
}
