// Package tcptest is a scripted TCP peer for segment-level tests of
// tapstack's engine, in the spirit of packetdrill: a test injects segments
// and states the exact segments it expects back, with tcpdump's relative
// sequence numbers, on a fake clock.
//
// The fixture is one tapstack stack with a faketime.ManualClock and one
// interface, 192.0.2.1/24, on a gVisor link/channel endpoint without a link
// header (raw IPv4: no ARP). The peer is 192.0.2.2: it builds IPv4+TCP
// packets with correct checksums and injects them, and reads what the
// stack wrote to the channel.
//
// Everything the engine sends leaves synchronously, during the call that
// produced it: the handling of an injected packet, a timer run by
// Advance, or a user call on an Endpoint. So when Inject, Advance or a user
// call returns, every segment it caused is already queued for Expect, and
// ExpectNothing can assert silence without waiting.
//
//	p, ep := tcptest.Established(t)
//	p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hi")})
//	p.ExpectNothing()          // the ACK is delayed (RFC 9293 3.8.6.3)
//	p.Advance(40 * time.Millisecond)
//	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 3})
//
// The peer offers no TCP timestamps unless asked: WithTimestamps (or
// Peer.Timestamps) makes it offer them in the fixtures' handshakes and
// stamp every injected segment with a TSopt echoing the stack's last
// TSval, and Seg's TS, TSVal and TSEcr send or check the option by hand.
//
// Failures print the expectation, the segment that came instead and the
// whole trace so far, as tcpdump-style lines. When the test ends, the
// Peer also fails it if the engine asked for a state change that its
// transition table does not hold.
package tcptest

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// Addresses of the fixture.
var (
	StackAddr = netip.MustParseAddr("192.0.2.1")
	PeerAddr  = netip.MustParseAddr("192.0.2.2")
)

// Defaults of the fixture.
const (
	MTU        = 1500
	ListenPort = 80    // port of the listener made by Listen and friends
	PeerPort   = 40000 // the peer's port
	PeerISS    = 1000  // the peer's initial sequence number, absolute
	PeerWin    = 65535 // the peer's default window field
	PeerTSBase = 5000  // the peer's timestamp clock at the fixture's start (ms)
	queueLen   = 4096  // outbound segments the channel holds before dropping
)

// Peer is the scripted peer and its fixture.
type Peer struct {
	t testing.TB

	Clock *faketime.ManualClock
	Stack *stack.Stack
	TCP   *tcp.Protocol
	Link  *channel.Endpoint

	// Listener is the listener made by Listen and the fixtures built on
	// it; nil otherwise.
	Listener *tcp.Listener

	// StackPort and PeerPort are the ports of the connection under test.
	// Change them to talk to another port.
	StackPort, PeerPort uint16

	// Win is the window field injected segments carry by default.
	Win uint16

	// SynOptions are the options the fixtures' handshakes put on the
	// peer's SYN or SYN-ACK (MSS 1460, no window scale, by default), and
	// the ECN flags its Flags name (E, W; states.go).
	SynOptions Seg

	// Timestamps makes the peer stamp every injected segment with a
	// TSopt (RFC 7323 3.2), its SYN and SYN-ACK included: TSVal from
	// TSClock, TSEcr the last TSval the stack sent (0 without ACK). A Seg
	// with TS or CheckTS set is sent as it says instead. Off by default:
	// the fixtures' peer offers no timestamps unless WithTimestamps.
	Timestamps bool
	// TSBase is the peer's timestamp clock at the fixture's start.
	TSBase uint32
	// LastTSVal is the TSval of the last segment read from the stack that
	// carried a TSopt: what the peer echoes.
	LastTSVal uint32

	peerISS  uint32
	stackISS uint32
	learned  bool // stackISS comes from a SYN the stack sent

	start time.Time
	trace []string

	// GSO: the link offers segmentation offload (WithGSO). GSOPackets
	// counts the packets of several segments the stack wrote, which Next
	// cuts into the wire segments they stand for, as the link would;
	// split holds the ones not yet returned.
	GSOPackets   int
	split        [][]byte
	splitPartial bool // the packet split came from left its checksum partial (Seg.Partial)

	batch *batchLink    // WithBatches
	link  *refusingLink // the NIC's link (SetGSO)

	refuse    int  // packets the link refuses next (RefuseNext)
	refuseAll bool // the link refuses every packet (RefuseAll)
	room      int  // frames the link's queue takes before it is busy (SetLinkRoom)
	roomSet   bool

	during      func() // WhileWriting's
	duringAfter int    // the writes to let go by before it runs
}

type config struct {
	tcp     tcp.Options
	peerISS uint32
	mtu     uint32
	synOpts Seg
	active  bool
	ts      bool
	gso     bool
	bursts  burstMode
	// clock: WithClock's wrapper of the fake clock; nil: none.
	clock func(*faketime.ManualClock) tcpip.Clock
}

// Option configures a fixture.
type Option func(*config)

// WithTCP sets the engine's options. The Observer, if any, is kept.
func WithTCP(o tcp.Options) Option { return func(c *config) { c.tcp = o } }

// WithPeerISS sets the peer's initial sequence number (absolute); the
// default is PeerISS.
func WithPeerISS(iss uint32) Option { return func(c *config) { c.peerISS = iss } }

// WithMTU sets the link's MTU; the default is 1500.
func WithMTU(mtu uint32) Option { return func(c *config) { c.mtu = mtu } }

// WithSynOptions sets the options of the peer's SYN or SYN-ACK in the
// handshakes the fixtures perform: MSS, WS, SACKPerm and TS (with TSVal)
// of o are used.
func WithSynOptions(o Seg) Option { return func(c *config) { c.synOpts = o } }

// WithTimestamps turns the peer's Timestamps on (see Peer.Timestamps): the
// fixtures' SYN or SYN-ACK offer the TSopt and every injected segment
// carries one, so timestamps are in force on the connections they make.
func WithTimestamps() Option { return func(c *config) { c.ts = true } }

// WithGSO makes the link offer host GSO (stack.GSOEndpoint), as a TAP with
// offloads does: the engine may write one packet of several segments with
// a partial checksum, which Next cuts into wire segments (see
// Peer.GSOPackets).
func WithGSO() Option { return func(c *config) { c.gso = true } }

// WithBatches makes the link mark the end of each burst of inbound
// frames (stack.BatchingLink), as a TAP device's reader and tap.Pipe's
// pump do, and turns on tcp.Options.AckPerBurst: every injected segment
// belongs to the burst that Peer.EndBatch ends.
func WithBatches() Option { return func(c *config) { c.bursts = burstsAckPerBurst } }

// WithBurstMarks is WithBatches without tcp.Options.AckPerBurst: the link
// marks its bursts and the engine's default policy applies (batch.go):
// coalesced text (segments longer than the MSS), and full-sized text
// while the path shows no loss, draws its burst's first ACK at once and
// the rest at the burst's end.
func WithBurstMarks() Option {
	return func(c *config) { c.bursts = burstsMarked }
}

// burstMode is whether the fixture's link marks the ends of its bursts,
// and whether the engine then acknowledges once per burst.
type burstMode uint8

const (
	burstsNone        burstMode = iota // no marks (the default)
	burstsMarked                       // WithBurstMarks: marks, the engine's default policy
	burstsAckPerBurst                  // WithBatches: marks and tcp.Options.AckPerBurst
)

// refusingLink is the fixture's link: the channel, which refuses what
// the stack writes when told to (RefuseNext), as a link whose queue is
// full does, and offers segmentation offload while gso is set (WithGSO,
// SetGSO).
type refusingLink struct {
	*channel.Endpoint
	p          *Peer
	gso        atomic.Bool
	roomOpened func() // OnOutboundRoom's
}

// SupportedGSO implements stack.GSOEndpoint. The engine asks it on every
// packet it builds (through its route), so a change takes effect on the
// next packet, as ethtool -K on a TAP's offloads does.
func (l *refusingLink) SupportedGSO() gstack.SupportedGSO {
	if l.gso.Load() {
		return gstack.HostGSOSupported
	}
	return gstack.GSONotSupported
}

// WritePackets implements stack.LinkWriter: a write while refusals are
// due takes none of its packets (the engine writes one at a time) and
// answers tcpip.ErrNoBufferSpace, tap.Pipe's answer when its queue is
// full.
func (l *refusingLink) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	n, err := l.write(pkts)
	if p := l.p; p.during != nil {
		if p.duringAfter--; p.duringAfter == 0 {
			fn := p.during
			p.during = nil
			fn()
		}
	}
	return n, err
}

// write is WritePackets without WhileWriting.
func (l *refusingLink) write(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	p := l.p
	if p.refuse == 0 && !p.refuseAll {
		if p.roomSet {
			p.room -= pkts.Len() // queued: nothing drains until SetLinkRoom
		}
		return l.Endpoint.WritePackets(pkts)
	}
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		b := append([]byte(nil), v.AsSlice()...)
		v.Release()
		if seg, _, _, err := p.decode(b); err == nil {
			p.log("< refused by the link: " + p.line(true, seg, true))
		} else {
			p.log("< refused by the link: a packet tcptest cannot read")
		}
	}
	p.refuse = max(p.refuse-pkts.Len(), 0)
	return 0, &tcpip.ErrNoBufferSpace{}
}

// OutboundRoom implements stack.QueueingLink: what SetLinkRoom said, or
// a queue that is never busy.
func (l *refusingLink) OutboundRoom() int {
	if !l.p.roomSet {
		return math.MaxInt32
	}
	return l.p.room
}

// OnOutboundRoom implements stack.QueueingLink: DrainLink calls fn.
func (l *refusingLink) OnOutboundRoom(fn func()) { l.roomOpened = fn }

// SetLinkRoom makes the link's outbound queue take n more frames before
// it is busy (stack.QueueingLink), as a TAP device's queue says: each
// packet the stack writes takes one, and none drains until the next
// SetLinkRoom or DrainLink. The engine holds new data back while the
// queue is busy (TCP small queues). By default the queue is never busy.
// The link says nothing of the change: the engine learns of it when it
// next asks, at its next ACK.
func (p *Peer) SetLinkRoom(n int) { p.room, p.roomSet = n, true }

// DrainLink is SetLinkRoom(n) said by the link: its queue took frames
// out, as a TAP device's writer does with each write, and it tells the
// engine (stack.QueueingLink's OnOutboundRoom), which sends the data it
// held back on a timer of no delay, which DrainLink lets fire.
func (p *Peer) DrainLink(n int) {
	p.t.Helper()
	p.SetLinkRoom(n)
	if fn := p.link.roomOpened; fn != nil {
		fn()
	}
	p.Advance(0)
}

// SetGSO makes the link offer host GSO from now on, or stop offering it:
// WithGSO in the middle of a connection. The engine's next packet follows
// (Peer.GSOPackets).
func (p *Peer) SetGSO(on bool) { p.link.gso.Store(on) }

// RefuseNext makes the link refuse the next n packets the stack writes,
// its queue full: they never reach the peer (Next does not see them), and
// the trace shows them as refused.
func (p *Peer) RefuseNext(n int) { p.refuse = n }

// RefuseAll makes the link refuse every packet the stack writes while on
// is true, as a qdisc that holds nothing (pfifo limit 0) does.
func (p *Peer) RefuseAll(on bool) { p.refuseAll = on }

// WhileWriting runs fn once, inside the n-th write of the link from now
// (1: the next), once the link has taken or refused that packet: as
// another goroutine would act (a segment arriving, a timer firing) while
// the engine writes, its lock released, and before it learns what the
// link refused. What fn makes the engine send waits for that write pass
// to end, as it would wait for the goroutine writing.
func (p *Peer) WhileWriting(n int, fn func()) { p.during, p.duringAfter = fn, n }

// batchLink is the fixture's link with the burst marks of WithBatches.
type batchLink struct {
	*refusingLink
	end func()
}

// OnBatchEnd implements stack.BatchingLink.
func (l *batchLink) OnBatchEnd(fn func()) { l.end = fn }

// EndBatch ends the burst of segments injected since the last one, as
// the link of WithBatches does when it has delivered what it had; without
// WithBatches it does nothing.
func (p *Peer) EndBatch() {
	p.t.Helper()
	if p.batch != nil && p.batch.end != nil {
		p.log("# end of burst")
		p.batch.end()
	}
}

// WithClock gives the stack wrap(the fake clock) to read instead of the
// fake clock itself, to count its readings, say. Peer.Advance still moves
// the fake clock.
func WithClock(wrap func(*faketime.ManualClock) tcpip.Clock) Option {
	return func(c *config) { c.clock = wrap }
}

// ActiveOpen makes Established and the close-state fixtures open the
// connection actively (Connect) instead of through Listen and Accept.
func ActiveOpen() Option { return func(c *config) { c.active = true } }

func configure(opts []Option) config {
	c := config{peerISS: PeerISS, mtu: MTU, synOpts: Seg{MSS: 1460}}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// New makes a stack with one interface and a peer facing it, on a fresh
// manual clock. The stack is closed when the test ends.
func New(t testing.TB, opts ...Option) *Peer {
	t.Helper()
	return newPeer(t, configure(opts))
}

func newPeer(t testing.TB, c config) *Peer {
	t.Helper()
	clock := faketime.NewManualClock()
	if c.bursts == burstsAckPerBurst {
		c.tcp.AckPerBurst = true // the engine's side of the burst marks
	}
	var sc tcpip.Clock = clock
	if c.clock != nil {
		sc = c.clock(clock)
	}
	s := stack.New(stack.Options{Clock: sc, TCP: c.tcp})
	link := channel.New(queueLen, c.mtu, "")
	rl := &refusingLink{Endpoint: link}
	rl.gso.Store(c.gso)
	var nicLink gstack.LinkEndpoint = rl
	var bl *batchLink
	if c.bursts != burstsNone {
		bl = &batchLink{refusingLink: rl}
		nicLink = bl
	}
	if _, err := s.AddNIC(nicLink, netip.PrefixFrom(StackAddr, 24)); err != nil {
		t.Fatalf("tcptest: AddNIC: %v", err)
	}
	p := &Peer{
		t:          t,
		Clock:      clock,
		Stack:      s,
		TCP:        s.TCP(),
		Link:       link,
		StackPort:  ListenPort,
		PeerPort:   PeerPort,
		Win:        PeerWin,
		SynOptions: c.synOpts,
		Timestamps: c.ts,
		TSBase:     PeerTSBase,
		peerISS:    c.peerISS,
		start:      clock.Now(),
		batch:      bl,
		link:       rl,
	}
	rl.p = p
	t.Cleanup(func() {
		s.Close()
		link.Close()
		p.checkTransitions()
	})
	return p
}

// checkTransitions fails the test if the engine asked for a state change
// its transition table does not hold (stack/tcp/transitions.go): every
// test built on a Peer walks the table with the edges it takes. It runs
// when the test ends, after the stack closed, so the aborts of Close are
// checked too.
func (p *Peer) checkTransitions() {
	st := p.TCP.Stats()
	if n := st.RecoveryMovesRefused.Load(); n > 0 {
		p.t.Errorf("tcptest: the engine asked for %d move(s) between loss recovery's states that its table does not hold (caMoves, stack/tcp/recovery.go)", n)
	}
	if st.TransitionsRefused.Load() == 0 {
		return
	}
	for from := range event.NumStates {
		for to := range event.NumStates {
			if n := st.Refused(event.State(from), event.State(to)); n > 0 {
				p.t.Errorf("tcptest: the engine asked for %v -> %v, an edge its transition table does not hold (stack/tcp/transitions.go); refused %d time(s)",
					event.State(from), event.State(to), n)
			}
		}
	}
}

// PeerISS returns the peer's initial sequence number, absolute.
func (p *Peer) PeerISS() uint32 { return p.peerISS }

// StackISS returns tapstack's initial sequence number as learned from its
// SYN or SYN-ACK, and whether it has been learned. Before that, relative
// numbers of the stack's side are absolute.
func (p *Peer) StackISS() (uint32, bool) { return p.stackISS, p.learned }

// SetStackISS sets the base of tapstack's relative sequence numbers, for a
// test that wants to use absolute numbers (0) or to forget a connection.
func (p *Peer) SetStackISS(iss uint32, learned bool) { p.stackISS, p.learned = iss, learned }

// Advance moves the fake clock by d, running every timer that falls due;
// segments the timers send are queued when it returns.
func (p *Peer) Advance(d time.Duration) {
	p.t.Helper()
	p.Clock.Advance(d)
	p.log(fmt.Sprintf("--- clock advanced %v", d))
}

// Elapsed is the fake time since the fixture started.
func (p *Peer) Elapsed() time.Duration { return p.Clock.Now().Sub(p.start) }

// TSClock is the peer's timestamp clock: TSBase plus the fake time
// elapsed, in milliseconds.
func (p *Peer) TSClock() uint32 { return p.TSBase + uint32(p.Elapsed().Milliseconds()) }

// stamp adds the peer's automatic TSopt to seg when Timestamps is on and
// seg does not say otherwise.
func (p *Peer) stamp(seg Seg) Seg {
	if !p.Timestamps || seg.TS || seg.Check&CheckTS != 0 {
		return seg
	}
	seg.TS, seg.TSVal, seg.TSEcr = true, p.TSClock(), 0
	if f, err := ParseFlags(seg.Flags); err == nil && f&header.TCPFlagAck != 0 {
		seg.TSEcr = p.LastTSVal
	}
	return seg
}

// Inject sends seg from the peer to the stack.
func (p *Peer) Inject(seg Seg) {
	p.t.Helper()
	b, err := p.encode(seg)
	if err != nil {
		p.t.Fatalf("tcptest: Inject(%s): %v", seg.format(false), err)
	}
	p.log("> " + p.line(false, p.injected(seg), true))
	pkt := p.wrap(b)
	if seg.ECN != 0 {
		ip := header.IPv4(pkt)
		ip.SetTOS(seg.ECN&3, 0)
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	p.InjectIPv4(pkt)
}

// injected renders what Inject puts on the wire, for the trace.
func (p *Peer) injected(seg Seg) Seg {
	seg = p.stamp(seg)
	if seg.Win == 0 && seg.Check&CheckWin == 0 {
		seg.Win = p.Win
	}
	if seg.WS == 0 && seg.Check&CheckWS == 0 {
		seg.WS = NoWS
	}
	return seg
}

// Encode returns the TCP segment (header, options, payload) that Inject
// would send for seg, with a correct checksum: a start for hand-made
// malformed segments.
func (p *Peer) Encode(seg Seg) []byte {
	p.t.Helper()
	b, err := p.encode(seg)
	if err != nil {
		p.t.Fatalf("tcptest: Encode(%s): %v", seg.format(false), err)
	}
	return b
}

func (p *Peer) encode(seg Seg) ([]byte, error) {
	seg = p.stamp(seg)
	flags, err := ParseFlags(seg.Flags)
	if err != nil {
		return nil, err
	}
	var opts [header.TCPOptionsMaximumSize]byte
	n := 0
	if seg.MSS != 0 {
		n += header.EncodeMSSOption(uint32(seg.MSS), opts[n:])
	}
	if seg.SACKPerm {
		n += header.EncodeNOP(opts[n:])
		n += header.EncodeNOP(opts[n:])
		n += header.EncodeSACKPermittedOption(opts[n:])
	}
	if seg.TS {
		n += header.EncodeNOP(opts[n:])
		n += header.EncodeNOP(opts[n:])
		n += header.EncodeTSOption(seg.TSVal, seg.TSEcr, opts[n:])
	}
	if seg.WS > 0 || (seg.WS == 0 && seg.Check&CheckWS != 0) {
		n += header.EncodeNOP(opts[n:])
		n += header.EncodeWSOption(seg.WS, opts[n:])
	}
	if len(seg.SACK) > 0 {
		// RFC 2018 3: two NOPs keep the 8n+2 bytes of blocks aligned.
		if len(seg.SACK) > header.TCPMaxSACKBlocks || n+2+2+8*len(seg.SACK) > len(opts) {
			return nil, fmt.Errorf("%d SACK blocks do not fit in %d bytes of options", len(seg.SACK), len(opts)-n)
		}
		var blocks [header.TCPMaxSACKBlocks]header.SACKBlock
		for i, b := range seg.SACK {
			blocks[i] = header.SACKBlock{Start: seqnum.Value(b[0] + p.stackISS), End: seqnum.Value(b[1] + p.stackISS)}
		}
		n += header.EncodeNOP(opts[n:])
		n += header.EncodeNOP(opts[n:])
		n += header.EncodeSACKBlocks(blocks[:len(seg.SACK)], opts[n:])
	}
	n += header.AddTCPOptionPadding(opts[:], n) // returns the padding only
	hdrLen := header.TCPMinimumSize + n
	b := make([]byte, hdrLen+len(seg.Payload))
	win := seg.Win
	if win == 0 && seg.Check&CheckWin == 0 {
		win = p.Win
	}
	ack := seg.Ack
	if flags&header.TCPFlagAck != 0 {
		ack += p.stackISS
	}
	h := header.TCP(b)
	h.Encode(&header.TCPFields{
		SrcPort:    p.PeerPort,
		DstPort:    p.StackPort,
		SeqNum:     p.peerISS + seg.Seq,
		AckNum:     ack,
		DataOffset: uint8(hdrLen),
		Flags:      flags,
		WindowSize: win,
	})
	copy(b[header.TCPMinimumSize:], opts[:n])
	copy(b[hdrLen:], seg.Payload)
	FixChecksum(b)
	return b, nil
}

// FixChecksum sets the checksum of the TCP segment b (from the peer to
// the stack) to the correct value. b must hold at least 18 bytes.
func FixChecksum(b []byte) {
	if len(b) < header.TCPChecksumOffset+2 {
		return
	}
	b[header.TCPChecksumOffset], b[header.TCPChecksumOffset+1] = 0, 0
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr(PeerAddr), addr(StackAddr), uint16(len(b)))
	xsum = checksum.Checksum(b, xsum)
	header.TCP(b).SetChecksum(^xsum)
}

// InjectTCP wraps b, any bytes, in a valid IPv4 header from the peer to
// the stack and injects it as a TCP segment. With fixChecksum, the TCP
// checksum is set to the correct value first (if b is long enough to hold
// it). The trace records it as raw bytes.
func (p *Peer) InjectTCP(b []byte, fixChecksum bool) {
	p.t.Helper()
	b = append([]byte(nil), b...)
	if fixChecksum {
		FixChecksum(b)
	}
	p.log(fmt.Sprintf("> raw TCP, %d bytes: % x", len(b), abbrev(b)))
	p.InjectIPv4(p.wrap(b))
}

// wrap puts the IPv4 header from the peer to the stack in front of b.
func (p *Peer) wrap(b []byte) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+len(b))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		TTL:         64,
		Protocol:    uint8(header.TCPProtocolNumber),
		SrcAddr:     addr(PeerAddr),
		DstAddr:     addr(StackAddr),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], b)
	return pkt
}

// InjectIPv4 injects a whole IPv4 packet as it is.
func (p *Peer) InjectIPv4(b []byte) {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	p.Link.InjectInbound(ipv4.ProtocolNumber, pkt)
	pkt.DecRef()
}

// Next returns the next segment the stack sent, with relative numbers,
// and false if there is none. A packet that is not a well-formed TCP
// segment from the stack to the peer fails the test.
func (p *Peer) Next() (Seg, bool) {
	p.t.Helper()
	var b []byte
	partial := p.splitPartial
	if len(p.split) > 0 {
		b, p.split = p.split[0], p.split[1:]
	} else {
		pkt := p.Link.Read()
		if pkt == nil {
			return Seg{}, false
		}
		g := pkt.GSOOptions
		v := pkt.ToView()
		pkt.DecRef()
		b = append([]byte(nil), v.AsSlice()...)
		v.Release()
		partial, p.splitPartial = g.NeedsCsum, g.NeedsCsum
		if g.Type != gstack.GSONone {
			segs, err := cutGSO(b, int(g.MSS), g.NeedsCsum)
			if err != nil {
				p.fail("tcptest: the stack sent a bad GSO packet: %v\n% x", err, b)
			}
			if len(segs) > 1 {
				p.GSOPackets++
				p.log(fmt.Sprintf("# GSO packet of %d segments of %d bytes", len(segs), g.MSS))
			}
			b, p.split = segs[0], segs[1:]
		}
	}
	seg, src, dst, err := p.decode(b)
	if err != nil {
		p.fail("tcptest: the stack sent a bad packet: %v\n% x", err, b)
	}
	seg.Partial = partial
	if src != p.StackPort || dst != p.PeerPort {
		p.log(fmt.Sprintf("< IP %v.%d > %v.%d: %s", StackAddr, src, PeerAddr, dst, seg))
		p.fail("tcptest: segment on ports %d > %d, want %d > %d", src, dst, p.StackPort, p.PeerPort)
	}
	if seg.TS {
		p.LastTSVal = seg.TSVal
	}
	p.log("< " + p.line(true, seg, true))
	return seg, true
}

// decode parses an outbound IPv4 packet, checks its checksums and turns
// its segment into relative numbers, learning tapstack's ISS from a SYN.
func (p *Peer) decode(b []byte) (Seg, uint16, uint16, error) {
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) {
		return Seg{}, 0, 0, fmt.Errorf("invalid IPv4 header")
	}
	if ip.Protocol() != uint8(header.TCPProtocolNumber) {
		return Seg{}, 0, 0, fmt.Errorf("protocol %d, want TCP", ip.Protocol())
	}
	if ip.SourceAddress() != addr(StackAddr) || ip.DestinationAddress() != addr(PeerAddr) {
		return Seg{}, 0, 0, fmt.Errorf("addresses %v > %v", ip.SourceAddress(), ip.DestinationAddress())
	}
	if ip.CalculateChecksum() != 0xffff {
		return Seg{}, 0, 0, fmt.Errorf("bad IPv4 header checksum")
	}
	if ip.TTL() == 0 {
		return Seg{}, 0, 0, fmt.Errorf("TTL 0")
	}
	tb := b[ip.HeaderLength():ip.TotalLength()]
	if len(tb) < header.TCPMinimumSize {
		return Seg{}, 0, 0, fmt.Errorf("TCP header truncated: %d bytes", len(tb))
	}
	h := header.TCP(tb)
	off := int(h.DataOffset())
	if off < header.TCPMinimumSize || off > len(tb) {
		return Seg{}, 0, 0, fmt.Errorf("data offset %d of %d bytes", off, len(tb))
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tb)))
	if checksum.Checksum(tb, xsum) != 0xffff {
		return Seg{}, 0, 0, fmt.Errorf("bad TCP checksum")
	}
	flags := h.Flags()
	if flags&header.TCPFlagSyn != 0 && !p.learned {
		p.stackISS, p.learned = h.SequenceNumber(), true
	}
	tos, _ := ip.TOS()
	seg := Seg{
		Flags:   flagLetters(flags),
		Seq:     h.SequenceNumber() - p.stackISS,
		Win:     h.WindowSize(),
		WS:      NoWS,
		Payload: append([]byte{}, tb[off:]...),
		ECN:     tos & 3,
	}
	if flags&header.TCPFlagAck != 0 {
		seg.Ack = h.AckNumber() - p.peerISS
	} else {
		seg.Ack = h.AckNumber()
	}
	seg.Len = len(seg.Payload)
	parseOptions(tb[header.TCPMinimumSize:off], &seg)
	for i := range seg.SACK {
		seg.SACK[i][0] -= p.peerISS
		seg.SACK[i][1] -= p.peerISS
	}
	return seg, h.SourcePort(), h.DestinationPort(), nil
}

// parseOptions reads the options tapstack may send. The walk is bounded by
// the option bytes.
func parseOptions(o []byte, seg *Seg) {
	for i := 0; i < len(o); {
		switch o[i] {
		case header.TCPOptionEOL:
			return
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(o) || o[i+1] < 2 || i+int(o[i+1]) > len(o) {
			return
		}
		l := int(o[i+1])
		switch {
		case o[i] == header.TCPOptionMSS && l == 4:
			seg.MSS = uint16(o[i+2])<<8 | uint16(o[i+3])
		case o[i] == header.TCPOptionWS && l == 3:
			seg.WS = int(o[i+2])
		case o[i] == header.TCPOptionSACKPermitted && l == 2:
			seg.SACKPerm = true
		case o[i] == header.TCPOptionSACK && l >= 10 && (l-2)%8 == 0:
			for j := i + 2; j+8 <= i+l; j += 8 {
				seg.SACK = append(seg.SACK, [2]uint32{binary.BigEndian.Uint32(o[j:]), binary.BigEndian.Uint32(o[j+4:])})
			}
		case o[i] == header.TCPOptionTS && l == 10:
			seg.TS = true
			seg.TSVal = binary.BigEndian.Uint32(o[i+2:])
			seg.TSEcr = binary.BigEndian.Uint32(o[i+6:])
		}
		i += l
	}
}

// flagLetters is FlagString with "" for no flags, so that it parses back.
func flagLetters(f header.TCPFlags) string {
	if f == 0 {
		return ""
	}
	return FlagString(f)
}

// DrainAny reads every queued packet, whatever its ports, and returns
// them as tcpdump lines with absolute numbers. It fails the test on a
// packet that is not a well-formed TCP segment from the stack (bad IPv4 or
// TCP checksum, bad data offset): it is for tests, like fuzzing, that
// provoke replies to arbitrary ports.
func (p *Peer) DrainAny() []string {
	p.t.Helper()
	var out []string
	for range queueLen + 1 {
		pkt := p.Link.Read()
		if pkt == nil {
			break
		}
		v := pkt.ToView()
		pkt.DecRef()
		b := append([]byte(nil), v.AsSlice()...)
		v.Release()
		// Decode with absolute numbers, leaving what the peer learned
		// untouched.
		q := Peer{learned: true}
		seg, src, dst, err := q.decode(b)
		if err != nil {
			p.fail("tcptest: the stack sent a bad packet: %v\n% x", err, b)
		}
		l := fmt.Sprintf("IP %v.%d > %v.%d: %s", StackAddr, src, PeerAddr, dst, seg)
		p.log("< " + l)
		out = append(out, l)
	}
	return out
}

// Expect reads the next segment the stack sent and fails the test unless
// it matches want. Flags, Seq, Ack (when ACK is set) and the payload length
// are always compared; the other fields when Seg says so. It returns the
// segment as sent, in relative numbers.
func (p *Peer) Expect(want Seg) Seg {
	p.t.Helper()
	got, ok := p.Next()
	if !ok {
		p.fail("tcptest: expected\n\t%s\ngot nothing", p.line(true, want, false))
	}
	if d := diff(want, got); len(d) > 0 {
		p.fail("tcptest: expected\n\t%s\ngot\n\t%s\ndiffers in: %s", p.line(true, want, false),
			p.line(true, got, true), strings.Join(d, "; "))
	}
	return got
}

// ExpectNothing fails the test if the stack sent anything not yet read.
func (p *Peer) ExpectNothing() {
	p.t.Helper()
	if got, ok := p.Next(); ok {
		p.fail("tcptest: expected nothing, got\n\t%s", p.line(true, got, true))
	}
}

// Drain returns every segment sent and not yet read.
func (p *Peer) Drain() []Seg {
	p.t.Helper()
	var out []Seg
	for range queueLen + 1 {
		s, ok := p.Next()
		if !ok {
			break
		}
		out = append(out, s)
	}
	return out
}

// StateGetter is a tcp.Endpoint or a tcp.Listener.
type StateGetter interface{ State() event.State }

// WantState fails the test unless x is in state want.
func (p *Peer) WantState(x StateGetter, want event.State) {
	p.t.Helper()
	if got := x.State(); got != want {
		p.fail("tcptest: state %v, want %v", got, want)
	}
}

// Logf adds a note to the trace printed on failure.
func (p *Peer) Logf(format string, args ...any) { p.log("# " + fmt.Sprintf(format, args...)) }

// Trace returns the trace so far, one line per segment, clock step or note.
func (p *Peer) Trace() string { return strings.Join(p.trace, "\n") }

func (p *Peer) log(s string) {
	p.trace = append(p.trace, fmt.Sprintf("%10.6f %s", p.Elapsed().Seconds(), s))
}

// fail stops the test with msg and the trace so far.
func (p *Peer) fail(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf(format+"\ntrace (> from peer, < from stack; relative numbers):\n%s", append(args, p.Trace())...)
}

// line renders seg as a tcpdump line; out says it goes from the stack to
// the peer, full that every field is meaningful (not an expectation).
func (p *Peer) line(out bool, seg Seg, full bool) string {
	if out {
		return fmt.Sprintf("IP %v.%d > %v.%d: %s", StackAddr, p.StackPort, PeerAddr, p.PeerPort, seg.format(full))
	}
	return fmt.Sprintf("IP %v.%d > %v.%d: %s", PeerAddr, p.PeerPort, StackAddr, p.StackPort, seg.format(full))
}

func addr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

// cutGSO cuts b, an IPv4 packet the stack wrote as a GSO packet, into the
// wire segments a segmenting link makes of it, as Linux's tcp_gso_segment
// does: payload cut every mss bytes, sequence numbers advanced, PSH and
// FIN on the last segment only, each with its own lengths and complete
// checksums. partial says the TCP checksum holds only the pseudo-header
// sum (NeedsCsum); otherwise the whole packet's checksum is checked.
func cutGSO(b []byte, mss int, partial bool) ([][]byte, error) {
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) {
		return nil, fmt.Errorf("invalid IPv4 header")
	}
	tb := b[ip.HeaderLength():ip.TotalLength()]
	if len(tb) < header.TCPMinimumSize || int(header.TCP(tb).DataOffset()) > len(tb) {
		return nil, fmt.Errorf("TCP header truncated")
	}
	src, dst := ip.SourceAddress(), ip.DestinationAddress()
	if !partial {
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tb)))
		if checksum.Checksum(tb, xsum) != 0xffff {
			return nil, fmt.Errorf("bad TCP checksum on the GSO packet")
		}
	} else if want := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tb))); header.TCP(tb).Checksum() != want {
		return nil, fmt.Errorf("partial checksum %#x, want the pseudo-header's %#x", header.TCP(tb).Checksum(), want)
	}
	if mss <= 0 {
		return nil, fmt.Errorf("GSO MSS %d", mss)
	}
	hdr := int(ip.HeaderLength()) + int(header.TCP(tb).DataOffset())
	payload := b[hdr:ip.TotalLength()]
	var out [][]byte
	for off := 0; off < len(payload) || off == 0; off += mss {
		n := min(mss, len(payload)-off)
		s := append(append([]byte(nil), b[:hdr]...), payload[off:off+n]...)
		sip := header.IPv4(s)
		sip.SetTotalLength(uint16(len(s)))
		sip.SetChecksum(0)
		sip.SetChecksum(^sip.CalculateChecksum())
		t := header.TCP(s[sip.HeaderLength():])
		t.SetSequenceNumber(header.TCP(tb).SequenceNumber() + uint32(off))
		if off+n < len(payload) {
			t.SetFlags(uint8(t.Flags() &^ (header.TCPFlagPsh | header.TCPFlagFin)))
		}
		if off > 0 {
			// CWR on the first segment only, as Linux's tcp_gso_segment.
			t.SetFlags(uint8(t.Flags() &^ header.TCPFlagCwr))
		}
		t.SetChecksum(0)
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(t)))
		t.SetChecksum(^checksum.Checksum(t, xsum))
		out = append(out, s)
		if n == 0 {
			break
		}
	}
	return out, nil
}
