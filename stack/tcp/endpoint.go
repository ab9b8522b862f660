package tcp

import (
	"io"
	"math"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Endpoint is one TCP connection: its TCB, its buffers and its timers.
// Its methods are the user calls of RFC 9293 3.10 on a connection, none of
// which blocks: SEND (Write), RECEIVE (Read), CLOSE (Close, CloseWrite),
// ABORT (Reset) and STATUS (State, Info, ID); OPEN is Protocol.Connect
// and Listener.Accept. Segments reach it from gVisor's demuxer through an
// unexported adapter (netstack.go).
//
// An Endpoint owns no goroutine. Segments arrive on the network's
// goroutine, timers fire on the clock's, user calls on the caller's; all
// serialize on mu.
type Endpoint struct {
	proto    *Protocol
	netProto tcpip.NetworkProtocolNumber
	nic      tcpip.NICID
	id       stack.TransportEndpointID

	// outMu serializes writing queued packets to the route, so segments
	// leave in the order they were made. It is never held with mu, nor
	// while the observer runs.
	outMu     sync.Mutex
	outSpare  []*stack.PacketBuffer // the batch flushOut writes, under outMu
	evDeliver *eventDelivery        // who delivers events, when the engine has an observer (flushOut)

	// wmu lets one SEND at a time (Write, WriteMore, WriteFrom) copy
	// its bytes in without mu (write). It is taken before mu, never
	// after.
	wmu sync.Mutex
	// rmu lets one RECEIVE at a time (Read, ReadTo) copy bytes out
	// without mu (Read), and Close and Reset, which let go of the
	// receive buffer, wait for that copy. It is taken before mu, never
	// after.
	rmu sync.Mutex

	mu         sync.Mutex
	stateSince tcpip.MonotonicTime
	tcb
	state      event.State
	registered bool
	portHeld   bool // an actively opened connection's local port, in proto.ports (ports.go)
	tsOK       bool // timestamps in force (below); here, it fits the padding
	route      *stack.Route
	listener   *Listener // set while queued on a listener, not yet accepted
	outq       []*stack.PacketBuffer
	// outECN is the ECN field of each packet in outq and its spare,
	// made only for a connection using ECN (ecn.go): the others send
	// not-ECT and keep nothing for it.
	outECN *outECN
	events []event.Event // for the observer, delivered by flush after mu is released

	// Agreed at the handshake.
	sndMSS      int // largest payload we send (RFC 9293 3.7.1, RFC 6691)
	rcvMSS      int // the MSS we advertised
	maxSndWnd   uint32
	sndWndShift uint8 // RFC 7323 window scale applied to the peer's window field
	rcvWndShift uint8 // scale we apply to our window field
	wsOK        bool  // both SYNs carried the window scale option
	sackOK      bool  // both SYNs carried SACK-permitted (RFC 2018)

	// Timestamps (RFC 7323 3 and 4.3): in force (tsOK) when both SYNs
	// carried the TSopt. TS.Recent is the peer's TSval we echo,
	// tsRecentAge when it was set (for 5.5's 24-day limit), Last.ACK.sent
	// the ACK field of the last segment we sent; tsNewest is the newest
	// TSval of the peer's acceptable segments, which TS.Recent, held at
	// the earliest one an ACK covers, lags (peerRetransmitted).
	tsRecentAge tcpip.MonotonicTime
	tsOffset    uint32 // added to the stack's tsClock: our TSval
	tsRecent    uint32
	lastAckSent seqnum.Value
	tsNewest    uint32

	// Send side. sndBuf holds bytes from sndBufSeq on: first those sent
	// and not yet acknowledged, then those not yet sent.
	sndBuf      sendBuffer
	sndBufLimit int
	sndBufSeq   seqnum.Value
	finQueued   bool // the user closed sending: a FIN follows sndBuf
	nodelay     bool
	// sndBufLocked: the user set the send buffer, which then no longer
	// grows (expandSendBuffer); rcvBufLocked, the receive buffer
	// (growReceiveBuffer). Here, the latter fits the padding.
	sndBufLocked bool
	rcvBufLocked bool

	// Receive side.
	rcvBuf      buffer.Buffer // in-order bytes not yet read by the user
	rcvBufLimit int
	rcvRunEnd   uint32   // where the last bytes delivered ended in their chunk, an address cut to 32 bits (appendCompact); here, it fits the padding rcvSpace's order left
	ecn         ecnState // ECN (ecn.go); here, it fits the padding before rcvSpace
	// The connection's life, for the user's calls. Here, they fit the
	// padding before rcvSpace, as ecn does (TestEndpointSizeClass).
	userClosed     bool         // Close was called: nobody reads any more
	wasEstablished bool         // the handshake completed once
	keepalive      bool         // keepalive is on (keepIdle, below)
	invalidAckSent bool         // invalidAckAt holds a time
	pmtuExpires    uint32       // when the path MTU ICMP reported for the peer, which bounds sndMSS, expires, in whole seconds of the clock (pmtuSeconds, pathMTUExpiry); 0: none. Here, it fits the padding before rcvSpace
	rcvSpace       rcvSpace     // the receive buffer's auto-tuning (rcvbuf.go)
	ooo            reassembly   // out-of-order text held, its SACK blocks and D-SACK (reassembly.go)
	finReceived    bool         // the peer's FIN was taken in order
	rcvClosed      bool         // CloseRead: Read returns io.EOF once the queue is empty
	sackAtBatchEnd bool         // out-of-order text since the last ACK waits for the burst's end (compressSack)
	oooAcks        uint8        // ACKs of out-of-order text sent since in-order text last arrived (compressSack)
	rcvAcc         seqnum.Value // right window edge we advertised; never moves left
	unacked        int          // segments taken since the last ACK we sent

	// The ACK policy (delack.go): the peer's measured segment size,
	// quick-ACK mode, ping-pong mode, and when data last arrived.
	rcvSegMax    int32
	quickAcks    int32
	rcvCoalesced bool // the latest text came in one segment longer than our MSS: coalesced (GRO, a GSO pipe)
	pingpong     bool
	dataSeen     bool
	tsqHeld      bool   // new data waits for room in the link's queue, e is in proto.tsq.held (smallqueues.go); here, it fits the padding
	segmentAcks  uint32 // ACKs still to send per second full segment, not per burst, since text came out of order or twice (batch.go)
	lastDataAt   tcpip.MonotonicTime

	// Retransmission, RFC 6298, and the record of every segment in
	// flight (rtxqueue.go).
	srtt, rttvar, rto time.Duration
	retries           int    // RTO expiries in a row without progress
	synTSval          uint32 // TSval of the latest SYN or SYN-ACK sent (handshake.go)
	drainCheck        bool   // unregistered: flush tells a Shutdown waiting for the last connection, once the last segment left
	stampState        stampState
	synMSS            uint16 // the peer's MSS, clamped by userMSS, less the timestamp option: the most sndMSS can rise to whatever the path (Linux's mss_clamp; plpmtud.go); here, it fits the padding
	rtxq              rtxQueue
	stampAt           tcpip.MonotonicTime // the clock of the work in hand, while stampState says it holds it (stamp.go)
	train             *train              // new segments output sends back to back, while it runs (send.go)
	rttValid          bool
	inBatch           bool // the segment being processed came in a burst whose end its link marks (batch.go)
	ackAtBatchEnd     bool // an ACK waits for the burst's end, e is in proto.batch.pending
	swsOverride       bool // the persist timer lets a short segment past SWS avoidance
	// Corking (cork.go): TCP_CORK set; the send buffer's tail was
	// written with MSG_MORE; that write's own output is running; a push
	// past the cork (TCP_NODELAY set) is running.
	cork, sndMore, corkWrite, pushOnce bool

	// Congestion control (cc.go) and loss recovery (recovery.go, RACK-TLP
	// in rack.go). recover is NewReno's "recover" and RFC 6675's
	// RecoveryPoint: SND.NXT when recovery began.
	cc             CongestionControl
	cwnd, ssthresh uint32
	dupAcks        int32
	plainDupAcks   int32 // duplicate ACKs without SACK blocks (dupAckLoss)
	renoSacked     int32 // without SACK: segments the duplicate ACKs say arrived above SND.UNA
	recover        seqnum.Value
	rack           rack
	undo           undoState
	frtoStep       uint8 // which ACK after the timeout's retransmission comes next: 1 or 2
	frto           bool  // F-RTO (RFC 5682) is judging the last timeout
	frtoNewData    bool  // F-RTO step 2.b: send new data next, not retransmissions
	rescueSent     bool  // RFC 6675's rescue retransmission went out in this recovery
	recoveryProbed bool  // a tail loss probe went out in this fast recovery since its last progress (rack.go)
	caState        caState
	userMSS        uint16 // the user's MSS clamp (TCP_MAXSEG), 0 for none: with the peer's, the most the MSS can rise to; here, it fits the padding

	// PRR (RFC 6937): bytes delivered and sent since fast recovery began,
	// and RecoverFS, the flight then.
	prrDelivered, prrOut, recoverFS uint64

	roundEnd       seqnum.Value // SND.NXT when the current round trip began
	cwndUsageSeq   seqnum.Value // the end of the round trip cwnd use is tracked for
	maxFlight      uint32       // the most in flight in that round trip
	wasCwndLimited bool         // the window limited sending in that round trip
	// orphan: the user closed the connection before it reached CLOSED or
	// TIME-WAIT; it counts against Options.MaxOrphans. Here, it fits the
	// padding.
	orphan bool
	// pmtuGen is the path MTU table's generation, its low 16 bits, when
	// sndMSS was last sized by the path MTU (sizingMTU, followPathMTU):
	// Linux's icsk_pmtu_cookie, in spirit. A connection that sent nothing
	// while a multiple of 65,536 entries were learned misses them until
	// an ICMP of its own (pathMTUArrives). Here, it fits the padding.
	pmtuGen uint16
	// linkRefusals numbers the packets with data or a FIN the link
	// refused (numberRefusal). The holder of outMu writes it; here, it
	// fits the padding.
	linkRefusals uint16

	persistProbes int32 // zero-window probes the peer has not answered, or tries of what the link refused (resourceProbe)
	resourceProbe bool  // the persist timer tries again what the link refused (refused.go), not a zero window
	rtoReverts    uint8 // RTO backoffs an ICMP unreachable took back since SND.UNA last moved (RFC 6069; icmpld.go): the RTO doubled retries-rtoReverts times (Linux's icsk_backoff); here, it fits the padding
	// persistBackoff counts the persist timer's backoffs since the
	// window closed, which an answer that leaves it closed does not
	// undo (Linux's icsk_backoff; orphanProbesGiveUp), saturating; a
	// probe the link refused takes its own back (windowProbeRefused).
	// Here, it fits the padding.
	persistBackoff uint8
	rcvGrowSegs    uint16              // the route's initrwnd: the window's cap in segments of rcvMSS, growing (routemetrics.go); 0: none. Here, it fits the padding
	progressAt     tcpip.MonotonicTime // SND.UNA last moved, or data left with none in flight
	chrono         chrono              // busy, window- and buffer-limited times (chrono.go)
	rate           *rateState          // delivery rate estimation (rate.go); nil until the first write or data sent
	dataSentAt     tcpip.MonotonicTime // data (new or again) last left (Linux's lsndtime), for the restart after idle
	userTimeout    time.Duration       // RFC 5482 UTO; 0 is off

	timers timerSet

	// Keepalive (RFC 9293 3.8.4), off by default.
	keepIdle   time.Duration
	keepIntvl  time.Duration
	keepCount  int32
	keepProbes int32 // probes sent since the peer was last heard from
	softErr    error // last ICMP error in a synchronized state (Linux sk_err_soft)

	// mtup is the packetization-layer path MTU search (plpmtud.go),
	// made when probing starts: at the handshake with MTUProbingOn, at
	// a suspected black hole with MTUProbingBlackHole.
	mtup *mtuProbe
	pace *pacer // nil unless paced (pacing.go)

	// When this connection last answered an unacceptable segment, for
	// the per-connection limit of Options.InvalidRateLimit (reset.go);
	// invalidAckSent, above, says whether it has.
	invalidAckAt tcpip.MonotonicTime

	// tw is the compact record that stands for this connection while it
	// is in TIME-WAIT (timewait.go); the Endpoint is then out of the
	// demuxer and the engine's table.
	tw *timeWait

	err     error // hard error reported to the user once
	changed chan struct{}
	wakeups *[2]chan struct{} // ReadWakeup, WriteWakeup; made on first use

	bytesSent, bytesAcked, bytesReceived, retransmitted uint64
}

// newEndpoint makes a connection in CLOSED with buffers and timers set up.
func (p *Protocol) newEndpoint(netProto tcpip.NetworkProtocolNumber, id stack.TransportEndpointID, r *stack.Route) *Endpoint {
	e := &Endpoint{
		proto:       p,
		netProto:    netProto,
		nic:         r.NICID(),
		id:          id,
		route:       r,
		sndBufLimit: p.opts.SendBufferSize,
		rcvBufLimit: p.opts.ReceiveBufferSize,
		rto:         p.opts.InitialRTO,
		evDeliver:   p.newEventDelivery(),
	}
	e.stateSince = p.clock.NowMonotonic()
	// RFC 6691: the MSS option counts neither IP nor TCP options.
	e.rcvMSS = p.announcedMSS(r, e.nic, id.RemoteAddress)
	e.rcvWndShift = uint8(windowScaleFor(max(e.rcvBufLimit, p.opts.ReceiveBufferMax)))
	e.rack.reoWndMult = 1
	if p.opts.pacingOn() {
		e.pace = &pacer{maxRate: p.opts.pacingCap()} // pacing.go
	}
	return e
}

// The range of a user's MSS clamp, as Linux's TCP_MAXSEG takes it
// (TCP_MIN_MSS, MAX_TCP_WINDOW).
const (
	minUserMSS = 88
	maxUserMSS = 32767
)

// minSndMSS is the floor of the send MSS, whatever the peer announced or
// the path allows: 48 bytes, Linux's TCP_MIN_SND_MSS (include/net/tcp.h,
// the default of its tcp_min_snd_mss sysctl; __tcp_mtu_to_mss), room for
// 40 bytes of TCP options and 8 of data. Above it the peer's MSS is never
// exceeded (RFC 9293 3.7.1, MUST-16); below it we depart from the RFC as
// Linux does since 2019 (CVE-2019-11479): a peer announcing a tiny MSS
// would have us spend a segment, and its overhead, per few bytes. As in
// Linux's tcp_mtu_to_mss, the floor applies before the timestamp option is
// taken off (mssFloor).
const minSndMSS = 48

// mssFloor is minSndMSS less the timestamp option when it is in force: the
// smallest payload a segment may be cut to.
func (e *Endpoint) mssFloor() int {
	if e.tsOK {
		return minSndMSS - tsOptionSize
	}
	return minSndMSS
}

// clampUserMSS applies the user's clamp (0: none) to the MSS we announce,
// and keeps it for the one we send (setSendMSS): it bounds both, as
// Linux's user_mss does.
func (e *Endpoint) clampUserMSS(clamp int) {
	e.rcvMSS = clampMSS(e.rcvMSS, clamp)
	if clamp > 0 && clamp <= 0xffff {
		e.userMSS = uint16(clamp)
	}
}

// clampMSS returns mss under the user's clamp (0: none).
func clampMSS(mss, clamp int) int {
	if clamp > 0 && clamp < mss {
		return clamp
	}
	return mss
}

// ID returns the connection's 4-tuple.
func (e *Endpoint) ID() event.ConnID { return connIDOf(e.id) }

// NIC returns the interface the connection's segments leave by: a
// link-local address's zone (ConnectOptions.NIC).
func (e *Endpoint) NIC() tcpip.NICID { return e.nic }

func (e *Endpoint) connID() event.ConnID { return connIDOf(e.id) }

func connIDOf(id stack.TransportEndpointID) event.ConnID {
	var c event.ConnID
	if id.LocalAddress.Len() > 0 {
		a, _ := netip.AddrFromSlice(id.LocalAddress.AsSlice())
		c.Local = netip.AddrPortFrom(a, id.LocalPort)
	} else {
		c.Local = netip.AddrPortFrom(netip.IPv4Unspecified(), id.LocalPort)
	}
	if id.RemoteAddress.Len() > 0 {
		a, _ := netip.AddrFromSlice(id.RemoteAddress.AsSlice())
		c.Remote = netip.AddrPortFrom(a, id.RemotePort)
	}
	return c
}

// State returns the connection's current RFC 9293 state.
func (e *Endpoint) State() event.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// Changed returns a channel that is closed at the next change of the
// connection: data or a FIN arrived, buffer space opened (once at least
// half of what the send buffer holds is free: sendSpaceOpened), the state
// moved or an error occurred. Take it before trying an operation, then wait on
// it if the operation returned ErrWouldBlock.
func (e *Endpoint) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.changed == nil {
		e.changed = make(chan struct{})
	}
	return e.changed
}

// ReadWakeup returns a channel that receives a token at each change that
// closes Changed's channel, for the one goroutine at a time that waits to
// read. Unlike Changed it is made once per connection, not once per wait,
// so a reader that blocks on every segment allocates nothing. Take it,
// try the operation, and wait on it if the operation returned
// ErrWouldBlock: a change after the try leaves a token, so none is
// missed; a token left from before only costs one more try.
func (e *Endpoint) ReadWakeup() <-chan struct{} { return e.wakeup(0) }

// WriteWakeup is ReadWakeup for the one goroutine at a time that waits to
// write.
func (e *Endpoint) WriteWakeup() <-chan struct{} { return e.wakeup(1) }

func (e *Endpoint) wakeup(i int) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.wakeups == nil {
		e.wakeups = new([2]chan struct{})
	}
	if e.wakeups[i] == nil {
		e.wakeups[i] = make(chan struct{}, 1)
	}
	return e.wakeups[i]
}

// notify wakes whoever waits on Changed, ReadWakeup or WriteWakeup. The
// caller holds e.mu.
func (e *Endpoint) notify() {
	if e.changed != nil {
		close(e.changed)
		e.changed = nil
	}
	if w := e.wakeups; w != nil {
		for _, c := range w {
			select {
			case c <- struct{}{}:
			default: // a token is waiting already, or nobody made c (nil)
			}
		}
	}
}

// Established reports whether the handshake completed, and the error that
// ended the connection if it failed before that.
func (e *Endpoint) Established() (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.state == event.SynSent || e.state == event.SynReceived:
		return false, nil
	case e.err != nil && !e.everEstablished():
		return false, e.err
	case e.state == event.Closed && !e.everEstablished():
		return false, syscall.ECONNABORTED
	}
	return true, nil
}

func (e *Endpoint) everEstablished() bool { return e.wasEstablished }

// Read copies received bytes into b (RFC 9293 3.10.3 RECEIVE). It returns
// io.EOF once the peer's FIN has been read past, the connection's error
// after a reset or a timeout, and ErrWouldBlock when nothing is there yet.
//
// A read of readUnlockedMin bytes or more copies them without the
// connection's lock, from clones of the receive buffer's first views:
// segments that arrive meanwhile are taken in, and ACKs processed, rather
// than wait for the copy. Linux gets the same from its socket backlog: a
// segment that finds the socket owned by a reader copying out waits in
// the backlog, not the softirq. Held under the lock, a 256 KiB copy kept
// the pipe's delivering goroutine parked on it, with the other core idle
// (in a runtime trace of a bulk transfer in memory, 12% of the time had
// a P idle and a goroutine runnable). The window reopens when the copy is
// done, as it did.
func (e *Endpoint) Read(b []byte) (int, error) {
	e.rmu.Lock()
	e.mu.Lock()
	opened := e.beginStamp()
	var n int
	var err error
	if len(b) < readUnlockedMin || e.rcvBuf.Size() < readUnlockedMin {
		n, err = e.readLocked(b)
	} else {
		e.endStamp(opened)
		n = e.readUnlocked(b)
		opened = e.beginStamp()
		e.consumed(n) // rmu kept the front: no other reader, no Close or Reset
	}
	e.endStamp(opened)
	e.mu.Unlock()
	e.rmu.Unlock()
	e.flush()
	return n, err
}

// readUnlocked copies the receive buffer's first bytes into b without
// e.mu, and returns how many. The caller holds e.mu and e.rmu;
// readUnlocked releases e.mu for the copy and takes it again. Clones
// share the views' memory and keep it: an append to the buffer's last
// view finds its chunk shared, and links a new view instead of writing
// into the room after our bytes (buffer.Append).
func (e *Endpoint) readUnlocked(b []byte) int {
	var front [readUnlockedViews]*buffer.View
	k, n := 0, min(len(b), int(e.rcvBuf.Size()))
	left := n
	views := e.rcvBuf.AsViewList()
	for v := views.Front(); v != nil && left > 0 && k < len(front); v = v.Next() {
		c := v.Clone()
		if c.Size() > left {
			c.CapLength(left)
		}
		left -= c.Size()
		front[k] = c
		k++
	}
	e.mu.Unlock()
	if e.proto.duringReadUnlocked != nil {
		e.proto.duringReadUnlocked()
	}
	done := 0
	for _, v := range front[:k] {
		done += copy(b[done:], v.AsSlice())
		v.Release()
	}
	e.mu.Lock()
	return n - left
}

// A Read copies without the connection's lock from readUnlockedMin bytes
// on (below, taking clones and the lock twice costs more than the copy),
// and from at most readUnlockedViews views at a time (a view is up to 64
// KiB; what is left is the next Read's).
const (
	readUnlockedMin   = 16 << 10
	readUnlockedViews = 32
)

func (e *Endpoint) readLocked(b []byte) (int, error) {
	if e.rcvBuf.Size() > 0 {
		if len(b) == 0 {
			return 0, nil
		}
		n, _ := e.rcvBuf.ReadAt(b, 0)
		e.consumed(n)
		return n, nil
	}
	return 0, e.readErr()
}

// consumed removes n bytes the user has taken from the front of the
// receive buffer, and lets the window follow.
func (e *Endpoint) consumed(n int) {
	e.rcvBuf.TrimFront(int64(n))
	e.proto.rcvMem.Add(int64(-n))
	e.growReceiveBuffer() // rcvbuf.go
	e.maybeSendWindowUpdate()
}

// readErr is why a RECEIVE with the receive buffer empty returns nothing:
// the connection's error, io.EOF after the peer's FIN, ENOTCONN, or
// ErrWouldBlock while more may come.
func (e *Endpoint) readErr() error {
	switch {
	case e.err != nil:
		return e.err
	case e.finReceived || e.rcvClosed:
		return io.EOF
	case e.state == event.Closed:
		return syscall.ENOTCONN
	}
	return ErrWouldBlock
}

// Readable reports whether Read would return without ErrWouldBlock.
func (e *Endpoint) Readable() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rcvBuf.Size() > 0 || e.readErr() != ErrWouldBlock
}

// Write queues bytes for sending (RFC 9293 3.10.2 SEND) and returns how
// many the send buffer took. It returns ErrWouldBlock when the buffer is
// full, EPIPE once the sending side is closed, and the connection's error
// after a reset or a timeout.
func (e *Endpoint) Write(b []byte) (int, error) {
	n, err := e.write(b, false)
	e.flush() // write's last push (write)
	return n, err
}

// write is SEND for Write and WriteMore (more: Linux's MSG_MORE). It
// takes the room the send buffer has for b when called, then copies b in
// a chunk (maxChunk) at a time, without mu, and sends a chunk before
// copying the next while little is in flight (pushBelow): the link would
// otherwise run dry before the copy ends. Linux's tcp_sendmsg likewise
// pushes the segments it fills while it copies, and its autocorking
// holds a push back while the socket's earlier packets still wait in the
// qdisc or the device, that is, while the link has work. The engine
// does not see the link's queue; what is in flight stands for it.
//
// A Write of 1 MiB used to copy all of it under mu before sending any.
// Over a TAP to the kernel, which acknowledges at once, the link then ran
// dry for the whole memmove (up to 1.2 ms at a time in an execution trace
// of 256 MiB sent), while the ACKs of what was in flight, and the
// goroutine that would send what was queued, waited for mu. Measured in
// interleaved pairs, tapstack ÷ gVisor sending 256 MiB to the kernel:
// 0.90× before; 0.87× copying without mu but sending at the end of each
// call; 1.00× sending every 64-256 KiB; 1.02× with this rule. Sending
// every 64 KiB regardless cost 6-9% more CPU per GiB over tap.Pipe, where
// each send wakes the peer's goroutine and draws an ACK of its own, and
// the link is rarely dry; this rule costs nothing there.
//
// A chunk of maxMergeChunk (4 KiB) or less is copied under mu instead,
// straight into the room of the send buffer's last view when it has
// some (sendBuffer.Write): a copy that short costs less than a chunk of
// its own from gVisor's pool, which the send buffer would copy again to
// merge it, and 100-byte writes to a peer in memory moved 0.91 Gbit/s
// when each was copied twice, 1.45 now.
//
// wmu keeps the room taken for this call, and each call's bytes
// together, against another SEND on the connection (Write, WriteMore,
// WriteFrom) while mu is released.
//
// A piece of 64 KiB is copied into a chunk the send buffer let go of,
// when one is free, rather than into a new one from gVisor's pool, which
// clears it first (chunkreuse.go).
//
// The caller flushes the last push, after write returns: a Write of a
// response in one chunk then reaches gVisor's network layer from the
// caller's small frame rather than from write's 216 bytes, nearer the
// top of the goroutine's stack (writePacket).
func (e *Endpoint) write(b []byte, more bool) (int, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.mu.Lock()
	room, err := e.sendRoom(len(b))
	e.mu.Unlock()
	if err != nil {
		return 0, err
	}
	b = b[:min(len(b), room)]
	total, pending := 0, 0
	for total < len(b) {
		p := b[total:min(len(b), total+maxChunk)]
		var v *buffer.View
		if len(p) == maxChunk {
			v = e.proto.chunks.take()
		}
		switch {
		case v != nil:
			_, _ = v.Write(p) // the copy, without mu, into a chunk not cleared
			e.proto.stats.ChunksReused.Add(1)
		case len(p) > maxMergeChunk:
			v = buffer.NewViewWithData(p) // the copy, without mu
		}
		n := len(p)
		e.mu.Lock()
		opened := e.beginStamp()
		if err := e.takeCopied(v, p); err != nil {
			e.endStamp(opened)
			e.mu.Unlock()
			if total > 0 {
				return total, nil // what was queued stands; the next SEND reports err
			}
			return 0, err
		}
		total += n
		pending += n
		push := total == len(b) || e.flightSize() < pushBelow
		if push {
			// Every chunk but the last is followed by more of this
			// call's bytes: its short tail waits for them and it is no
			// push point.
			e.queued(pending, more || total < len(b))
			pending = 0
		}
		e.endStamp(opened)
		e.mu.Unlock()
		if push && total < len(b) {
			e.flush()
		}
	}
	return total, nil
}

// takeCopied appends v, bytes a SEND copied without mu, to the send
// buffer, or, v nil, copies p there (a small write, copied under mu into
// the room the last view has: sendBuffer.Write); the caller holds mu. If
// the connection failed or was closed for sending while they were
// copied, they are not queued, as a SEND then would not be: v is
// released and that error returned. The room was taken before the copy
// and no other SEND can have used it since (wmu); only SetBuffers can
// have shrunk it, and the bytes then go over the new limit rather than
// be lost.
func (e *Endpoint) takeCopied(v *buffer.View, p []byte) error {
	if _, err := e.sendRoom(0); err != nil && err != ErrWouldBlock {
		if v != nil {
			v.Release()
		}
		return err
	}
	if v == nil {
		e.sndBuf.Write(p, e.bufSent())
	} else {
		e.sndBuf.Append(v, e.bufSent())
	}
	return nil
}

// bufSent is how many of the send buffer's first bytes have been sent
// (SND.NXT past the buffer's first byte): the views holding them share
// their chunks with packets. A FIN sent counts one more.
func (e *Endpoint) bufSent() int64 {
	if e.sndNxt.LessThan(e.sndBufSeq) {
		return 0 // the SYN not yet sent: nothing of the buffer
	}
	return int64(e.sndBufSeq.Size(e.sndNxt))
}

// pushBelow: write sends a chunk before copying the next while less
// than this is in flight, about what a TAP to the kernel carries while
// the next chunk is copied.
const pushBelow = 4 * maxChunk

// sendRoom is how many bytes a SEND of want may queue now, or why none:
// the connection's error, EPIPE once the sending side is closed,
// ErrWouldBlock while the send buffer is full.
func (e *Endpoint) sendRoom(want int) (int, error) {
	switch {
	case e.err != nil:
		return 0, e.err
	case e.finQueued || e.userClosed || !canSend(e.state):
		return 0, syscall.EPIPE
	}
	room := e.sndBufLimit - int(e.sndBuf.Size())
	if want > 0 {
		e.rateWrite(room < want) // rate.go: did the sender run dry before this write?
	}
	if room < want {
		e.chronoStart(chronoSndbufLimited) // until an ACK makes room
	}
	if room <= 0 {
		return 0, ErrWouldBlock
	}
	return room, nil
}

// queued sends what n bytes just appended to the send buffer allow; more
// is WriteMore's "more data follows".
func (e *Endpoint) queued(n int, more bool) {
	if n > 0 {
		e.chronoStart(chronoBusy)
		e.sndMore = more
	}
	if e.state.Synchronized() {
		e.corkWrite = more
		e.output()
		e.corkWrite = false
	}
}

// Writable reports whether Write would take at least one byte or fail.
func (e *Endpoint) Writable() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err != nil || e.finQueued || !canSend(e.state) || int(e.sndBuf.Size()) < e.sndBufLimit
}

// SendQueued returns how many bytes wait in the send buffer, sent or not,
// that the peer has not acknowledged.
func (e *Endpoint) SendQueued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return int(e.sndBuf.Size())
}

// SetNoDelay turns Nagle's algorithm (RFC 9293 3.7.4) off (true) or on.
// Turning it off also sends what waits now, corked or not, as Linux's
// TCP_NODELAY pushes the pending data (TCP_NAGLE_PUSH); the cork stays.
func (e *Endpoint) SetNoDelay(on bool) {
	e.mu.Lock()
	e.nodelay = on
	if on && e.state.Synchronized() {
		e.pushOnce = true
		e.output()
		e.pushOnce = false
	}
	e.mu.Unlock()
	e.flush()
}

// SetBuffers changes the send and receive buffer limits; zero leaves one
// unchanged. The window scale was fixed at the handshake, so a receive
// buffer set afterwards can only use the window the scale allows.
func (e *Endpoint) SetBuffers(send, receive int) {
	e.mu.Lock()
	if send > 0 {
		e.sndBufLimit, e.sndBufLocked = send, true
	}
	if receive > 0 {
		e.rcvBufLimit, e.rcvBufLocked = receive, true
		if e.state == event.Closed || e.state == event.Listen {
			e.rcvWndShift = uint8(windowScaleFor(receive))
		}
	}
	e.notify()
	e.mu.Unlock()
}

// expandSendBuffer doubles the send buffer, up to twice the congestion
// window and SendBufferMax, when an ACK finds that the buffer itself was
// what held the sender back: the user waited for room (the send buffer
// chronograph ran), everything it had written was sent but for a tail
// shorter than a segment, and neither the congestion window nor the
// peer's window was full (flight is what was in flight before the ACK).
// The connection then went at the pace of the writer's wake-ups, one
// buffer per round trip, rather than the path's. Linux grows the buffer
// to 2 * cwnd segments of memory up to tcp_wmem[2] whenever the window
// is not full (tcp_sndbuf_expand); we grow only while the buffer is the
// limit, by doubling: a buffer that holds data the windows do not admit
// yet costs memory and cache for nothing (grown to 2 * cwnd, up to 4 MiB,
// regardless, it cost 1.27-1.51x gVisor's CPU per GiB in memory, against
// 1.01-1.08x without).
//
// The short tail is what a full buffer leaves whenever its size is not a
// multiple of the MSS (the default 1 MiB is 724 segments of 1,448 bytes
// and 224 more): Nagle holds it while data is in flight (3.7.4), and it
// can grow into a full segment only when the writer adds to it, which the
// full buffer does not let it. With "everything sent" read strictly, a
// writer that kept the buffer full never saw it grow while ACKs came
// before the flight drained: tapstack sending to the kernel over a TAP
// with 5 ms of delay each way stayed at 1 MiB in flight, 0.75-0.79
// Gbit/s against gVisor's TCP's 1.6-2.4 (TestSendBufferGrowsTailHeld,
// TestKernelSendBufferGrows).
func (e *Endpoint) expandSendBuffer(flight uint32) {
	if e.sndBufLocked || e.sndBufLimit >= e.proto.opts.SendBufferMax ||
		(e.sndNxt.LessThan(e.sndEnd()) && e.sndNxt.Size(e.sndEnd()) >= seqnum.Size(e.sndMSS)) ||
		flight+uint32(e.sndMSS) > e.cwnd || flight+uint32(e.sndMSS) > e.sndWnd {
		return
	}
	e.sndBufLimit = min(2*e.sndBufLimit, max(2*int(e.cwnd), e.sndBufLimit), e.proto.opts.SendBufferMax)
}

// Info is a snapshot of a connection, like Linux's TCP_INFO.
type Info struct {
	ID               event.ConnID
	State            event.State
	StateAge         time.Duration
	TCB              TCB
	RTT, RTTVar, RTO time.Duration
	Cwnd, Ssthresh   uint32 // bytes
	SndMSS, RcvMSS   int
	// PathMTU is the MTU the send MSS is bounded by, as Linux's
	// tcpi_pmtu: the route's, or less where ICMP reported less (pmtu.go);
	// 0 without a route. Path MTU probing (plpmtud.go) does not change
	// it: a black hole shows as an MSS below what it allows.
	PathMTU                  int
	SndWndScale, RcvWndScale int  // -1 when window scaling is off
	Timestamps               bool // the Timestamps option is in force (RFC 7323 3)
	SACK                     bool // both SYNs carried SACK-permitted: SACK blocks both ways, RACK-TLP loss detection
	// ECN is in force (RFC 3168: both SYNs agreed); ECNSeen, text
	// arrived ECN-capable or CE-marked; ECNEcho, the receiver sets ECE
	// on its ACKs until the peer's CWR (Linux's TCPI_OPT_ECN,
	// TCPI_OPT_ECN_SEEN and TCP_ECN_DEMAND_CWR).
	ECN, ECNSeen, ECNEcho bool
	CongestionControl     string
	CAState               string        // loss recovery: "open", "CWR", "fast recovery" or "RTO recovery"
	MinRTT                time.Duration // the smallest RTT sample of the last 300 s (RACK's min_RTT)
	InFlight              uint32        // pipe: bytes sent and not known to have left the network
	Sacked, Lost          uint32        // bytes above SND.UNA the peer SACKed; bytes deemed lost
	ReorderingSeen        bool          // the peer's ACKs showed reordering (RACK widens its window)
	// Reordering is how far, in segments, the peer's ACKs showed the
	// network reorder: 3 until SACKs show more (Linux's
	// tcpi_reordering); ReorderEvents counts the ACKs that showed any
	// (tcpi_reord_seen).
	Reordering, ReorderEvents uint32
	// BytesSent counts the data bytes put on the wire, retransmissions
	// included (Linux's tcpi_bytes_sent); BytesAcked and BytesReceived
	// count each data byte once, as SND.UNA and RCV.NXT passed it, the
	// SYN's and FIN's sequence numbers left out. Retransmits counts the
	// segments sent again, a SYN or SYN-ACK on its timer included
	// (tcpi_total_retrans; Linux's tcpi_retransmits is another thing,
	// the timeouts in a row).
	BytesSent, BytesAcked  uint64
	BytesReceived          uint64
	Retransmits            uint64
	SendQueued, RecvQueued int
	// SendBuffer is the send buffer's size now: SendBufferSize, grown
	// while it held the sender back up to SendBufferMax
	// (expandSendBuffer), or what the user set.
	SendBuffer int
	// PacingRate is the rate, in bytes a second, the connection is paced
	// at, or would be (Linux's tcpi_pacing_rate; 0 before an RTT sample);
	// MaxPacingRate SetMaxPacingRate's cap (tcpi_max_pacing_rate:
	// math.MaxUint64 for none); Paced whether pacing is on (pacing.go);
	// PacingWaits how many trains waited for their time.
	PacingRate, MaxPacingRate uint64
	Paced                     bool
	PacingWaits               uint64
	// DeliveryRate is the latest delivery rate sample, in bytes a
	// second (rate.go; Linux's tcpi_delivery_rate): the data an ACK
	// found delivered over the time that took, or 0 before one;
	// DeliveryRateAppLimited says the application, not the path,
	// limited it (tcpi_delivery_rate_app_limited); Delivered counts the
	// segments delivered (tcpi_delivered).
	DeliveryRate           uint64
	DeliveryRateAppLimited bool
	Delivered              uint64
	// RecvBuffer is the receive buffer's size now, which bounds the
	// window: ReceiveBufferSize, grown with the user's reading up to
	// ReceiveBufferMax (growReceiveBuffer), or what the user set.
	RecvBuffer int
	// LastDataRecv is the time since data last arrived, or since the
	// connection was established if none has (Linux tcpi_last_data_recv).
	LastDataRecv time.Duration
	// BusyTime is how long data was queued or in flight; RwndLimited
	// and SndbufLimited how much of it new data waited for the peer's
	// window or the user for room in the send buffer (Linux's
	// tcpi_busy_time, tcpi_rwnd_limited, tcpi_sndbuf_limited).
	BusyTime, RwndLimited, SndbufLimited time.Duration
	// Probes counts the probes the peer has not answered: zero-window
	// probes, tries again of what the link refused (refused.go) or
	// keepalives (Linux's tcpi_probes, icsk_probes_out). Backoff is how
	// many times the RTO has doubled since the peer last acknowledged
	// new data: retransmission timeouts, and zero-window probes since
	// the window closed, which back off alike; tries of what the link
	// refused, and window probes it refused, do not (tcpi_backoff,
	// icsk_backoff).
	Probes, Backoff int
	// BBR is the path model of a connection under BBR (bbr.go; Linux's
	// tcp_bbr_info), nil under another congestion control.
	BBR *BBRInfo
}

// Info returns a snapshot of the connection.
func (e *Endpoint) Info() Info {
	e.mu.Lock()
	defer e.mu.Unlock()
	sws, rws := int(e.sndWndShift), int(e.rcvWndShift)
	if !e.wsOK {
		sws, rws = -1, -1
	}
	var lastData time.Duration
	if e.wasEstablished {
		lastData = e.now().Sub(e.lastDataAt)
	}
	busy, rwndLim, sndbufLim := e.chronoTimes()
	backoff := e.rtoBackoff()
	if !e.resourceProbe && e.sndWnd == 0 {
		backoff += int(e.persistBackoff) // the probes that left, not those the link refused (windowProbeRefused)
	}
	maxPacing, waits := uint64(math.MaxUint64), uint64(0)
	if e.pace != nil {
		maxPacing, waits = e.pace.maxRate, e.pace.waits
	}
	deliveryRate, appLimited, delivered := e.deliveryRate()
	cc := e.congestion()
	var bbrInfo *BBRInfo
	if b, ok := cc.(*bbr); ok {
		bbrInfo = b.info()
	}
	return Info{
		BBR:                    bbrInfo,
		DeliveryRate:           deliveryRate,
		DeliveryRateAppLimited: appLimited,
		Delivered:              delivered,
		PacingRate:             e.pacingRate(),
		MaxPacingRate:          maxPacing,
		Paced:                  e.pace != nil,
		PacingWaits:            waits,
		Probes:                 int(e.persistProbes) + int(e.keepProbes),
		Backoff:                backoff,
		BusyTime:               busy,
		RwndLimited:            rwndLim,
		SndbufLimited:          sndbufLim,
		LastDataRecv:           lastData,
		ID:                     e.connID(),
		State:                  e.state,
		StateAge:               e.now().Sub(e.stateSince),
		TCB:                    e.tcb.snapshot(),
		RTT:                    e.srtt,
		RTTVar:                 e.rttvar,
		RTO:                    e.rto,
		Cwnd:                   e.cwnd,
		Ssthresh:               e.ssthresh,
		SndMSS:                 e.sndMSS,
		RcvMSS:                 e.rcvMSS,
		PathMTU:                e.pathMTU(),
		SndWndScale:            sws,
		RcvWndScale:            rws,
		Timestamps:             e.tsOK,
		SACK:                   e.sackOK,
		ECN:                    e.ecn.on,
		ECNSeen:                e.ecn.seen,
		ECNEcho:                e.ecn.echo,
		CongestionControl:      ccName(cc),
		CAState:                e.caState.String(),
		MinRTT:                 e.rack.minRTT.v,
		InFlight:               e.inflight(),
		Sacked:                 e.rtxq.sacked,
		Lost:                   e.rtxq.lost,
		ReorderingSeen:         e.rack.reordering,
		Reordering:             e.reorderingDegree(),
		ReorderEvents:          e.rack.reordSeen,
		BytesSent:              e.bytesSent,
		BytesAcked:             e.bytesAcked,
		BytesReceived:          e.bytesReceived,
		Retransmits:            e.retransmitted,
		SendQueued:             int(e.sndBuf.Size()),
		RecvQueued:             int(e.rcvBuf.Size()),
		SendBuffer:             e.sndBufLimit,
		RecvBuffer:             e.rcvBufLimit,
	}
}

// packetArrives is SEGMENT ARRIVES for a packet the demuxer gave this
// connection (transportEndpoint.HandlePacket).
func (e *Endpoint) packetArrives(id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	var seg segment
	if r := e.proto.parse(id, pkt, &seg); r != event.DropNone {
		e.proto.drop(e.connID(), &seg, r)
		return
	}
	e.mu.Lock()
	if !e.registered {
		// Found by the demuxer a moment before the connection left it
		// for TIME-WAIT or CLOSED: answered as if it had not been.
		e.mu.Unlock()
		e.proto.strayArrives(id, pkt.NetworkProtocolNumber, pkt.NICID, &seg)
		seg.Payload.Release()
		return
	}
	opened := e.beginStamp()
	e.inBatch = e.proto.batching(pkt.NICID)
	e.segmentArrives(&seg)
	e.inBatch = false
	if e.keepalive {
		e.heardFromPeer()
	}
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
	seg.Payload.Release()
}

// abort is the stack closing (tcpbind.Binding.Abort,
// transportEndpoint.Abort). It is the ABORT call of RFC 9293 3.10.5, so
// that the peer does not go on believing in a connection that is gone:
// in SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2 and CLOSE-WAIT a
// RST, <SEQ=SND.NXT><CTL=RST>, goes first; in CLOSING, LAST-ACK and
// TIME-WAIT (our FIN is out, the peer's is in) and in SYN-SENT the TCB is
// only deleted, as the RFC says and as Linux's tcp_disconnect does
// (tcp_need_reset). Users see ECONNABORTED.
func (e *Endpoint) abort() {
	e.mu.Lock()
	if e.state != event.Closed {
		if e.err == nil {
			e.err = syscall.ECONNABORTED
		}
		switch e.state {
		case event.SynReceived, event.Established, event.FinWait1, event.FinWait2, event.CloseWait:
			e.sendActiveReset()
		}
		e.transition(event.Closed, userCause("stack close"))
	}
	e.mu.Unlock()
	e.flush()
}

// queue puts a finished packet on the output queue. The caller holds e.mu
// and calls flush after releasing it.
func (e *Endpoint) queue(pkt *stack.PacketBuffer, ecn uint8) {
	if o := e.outECN; o != nil {
		for len(o.q) < len(e.outq) {
			o.q = append(o.q, ecnNotECT) // queued before ECN was agreed
		}
		o.q = append(o.q, ecn)
	}
	e.outq = append(e.outq, pkt)
}

// outECN holds the ECN field of each queued packet, in step with outq
// (under mu), and the spare slice flush swaps in (under outMu, as
// outSpare for outq).
type outECN struct {
	q, spare []uint8
}

// spareAt is the ECN field of the packet at i in the batch being
// written (outSpare): Not-ECT without the queue, as for a connection
// that never sends ECT.
func (o *outECN) spareAt(i int) uint8 {
	if o == nil || i >= len(o.spare) {
		return ecnNotECT
	}
	return o.spare[i]
}

// flush delivers queued events to the observer and writes queued
// packets, each in the order they were made; a goroutine that made both
// delivers its events before it writes the packets they explain. It must
// be called without e.mu held. When another goroutine is already
// delivering, or writing, it leaves that work to that one, which loops
// until its queue is empty: this is what keeps a link that delivers on
// the sender's goroutine, or an observer that calls back into the
// engine, from deadlocking.
//
// The two are apart so that packets never wait for an observer another
// goroutine is in: a slow observer (a trace written to disk) had every
// packet of the connection wait behind it, ACKs to a flood of segments
// included, and the queues grow with the flood. So when another
// goroutine is delivering, or the observer itself calls back into the
// connection, a segment may reach the link just before its event reaches
// the observer, as event.Observer allows; and a connection holds at most
// maxQueuedEvents events, beyond which it drops them, counted in
// LimitStats.EventsDropped (emitAt).
func (e *Endpoint) flush() { e.flushOut(false) }

// SyncEvents returns once every event this connection made before the
// call has reached the observer. Events are delivered after the engine's
// locks are released, possibly by another goroutine, so a state can be
// seen (State, Read returning EOF) a moment before the observer hears of
// the change: call SyncEvents before reading what an observer collected.
// It must not be called from inside the observer.
func (e *Endpoint) SyncEvents() {
	if d := e.evDeliver; d != nil {
		d.mu.Lock()
		e.deliverEvents(d)
	}
	e.outMu.Lock()
	e.flushOut(true)
}

// flushOut does flush's work: the events first (deliverEvents), then the
// packets. With held, the caller holds outMu and has delivered the
// events; otherwise it takes outMu, or returns at once if another
// goroutine holds it. It releases outMu
// under mu once it finds no packet queued, so a goroutine that queues one
// after that finds outMu free; one that queued it before, finding outMu
// held, left it to this one. flush is only a call of it, which the
// compiler inlines, so that a Write or a Close reaches the network layer
// one frame nearer the top of its goroutine's stack (writePacket).
func (e *Endpoint) flushOut(held bool) {
	if !held {
		if d := e.evDeliver; d != nil && d.mu.TryLock() {
			e.deliverEvents(d)
		}
		if !e.outMu.TryLock() {
			return
		}
	}
	var release *stack.Route
	var drainCheck, events, done bool
	for range 1 << 20 {
		e.mu.Lock()
		if len(e.outq) == 0 {
			if (e.state == event.Closed || e.tw != nil) && e.route != nil && !e.registered {
				release, e.route = e.route, nil
			}
			drainCheck, e.drainCheck = e.drainCheck, false
			// What a refusal queued (writeAfterRefusal) has its events.
			events = len(e.events) > 0
			e.outMu.Unlock()
			e.mu.Unlock()
			done = true
			break
		}
		// The batch moves to the spare buffers, which only the holder
		// of outMu touches, and is written from there: kept in this
		// frame, its slices made it too big (writePacket).
		r, ecnOut := e.route, e.outECN
		e.outq, e.outSpare = e.outSpare[:0], e.outq
		if ecnOut != nil {
			ecnOut.q, ecnOut.spare = ecnOut.spare[:0], ecnOut.q
		}
		e.mu.Unlock()
		for i := 0; i < len(e.outSpare); i++ {
			if e.proto.writePacket(r, e.outSpare[i], ecnOut.spareAt(i)) {
				e.writeAfterRefusal(r, ecnOut, i)
				break
			}
			e.outSpare[i] = nil
		}
		e.outSpare = e.outSpare[:0]
		if ecnOut != nil {
			ecnOut.spare = ecnOut.spare[:0]
		}
	}
	if !done {
		e.outMu.Unlock() // the bound ran out: the next flush goes on
	}
	if release != nil {
		e.proto.releaseRoute(release)
	}
	if drainCheck {
		e.proto.mu.Lock()
		e.proto.unflushed--
		e.proto.checkDrained()
		e.proto.mu.Unlock()
	}
	if d := e.evDeliver; events && d != nil && d.mu.TryLock() {
		e.deliverEvents(d)
	}
}

// maxQueuedEvents bounds the events a connection, or a listener, queues
// for the observer: 2,048, behind at most as many in the hands of the
// goroutine delivering, 4,096 in all, about 1.5 MB. A fast observer
// takes each piece of work's events right after it (an output run
// queues a send event per wire segment, 45 for a 64 KiB packet), so only
// an observer
// that fell that far behind another goroutine's work meets the bound; a
// flood of segments each answered would otherwise queue two events per
// segment for as long as the flood lasts. stack.NewEventQueue drops and
// counts the same way, between the engine and a slow consumer.
const maxQueuedEvents = 2048

// eventDelivery is the delivering of a connection's events, made with
// the connection when the engine has an observer, or of a listener's:
// mu lets one goroutine at a time hand events to the observer, in order,
// from spare, the batch it took out of the queue (deliver). A
// connection's is apart from outMu so that packets do not wait for the
// observer (flush).
type eventDelivery struct {
	mu    sync.Mutex
	spare []event.Event
}

// newEventDelivery returns what a connection delivers its events with,
// or nil when the engine has no observer.
func (p *Protocol) newEventDelivery() *eventDelivery {
	if p.opts.Observer == nil {
		return nil
	}
	return new(eventDelivery)
}

// deliverEvents hands the connection's queued events to the observer
// (eventDelivery.deliver). The caller holds d.mu.
func (e *Endpoint) deliverEvents(d *eventDelivery) {
	d.deliver(&e.mu, &e.events, e.proto)
}

// deliver hands the events queued in *q, which mu guards, to p's
// observer, in order, until none is left. The caller holds d.mu; deliver
// releases it under mu once it finds no event queued, so a goroutine
// that queues one after that finds d.mu free, and one that queued it
// before, finding d.mu held, left it to this one. No other lock is held
// while the observer runs. A connection's and a listener's events go
// this way. It is a function of its own so that flushOut, which every
// Read, Write and segment runs, keeps a small frame: a connection's
// goroutine (an HTTP handler's) grows its stack less.
//
//go:noinline
func (d *eventDelivery) deliver(mu *sync.Mutex, q *[]event.Event, p *Protocol) {
	obs := p.opts.Observer
	for range 1 << 20 {
		mu.Lock()
		if len(*q) == 0 {
			d.mu.Unlock()
			mu.Unlock()
			return
		}
		*q, d.spare = d.spare[:0], *q
		mu.Unlock()
		evs := d.spare
		for i := range evs {
			obs(evs[i])
			evs[i] = event.Event{}
		}
		p.pendingEvents.Add(-1)
		d.spare = evs[:0]
	}
	d.mu.Unlock()
}

// queueEvent appends ev to *q, a connection's or a listener's events,
// under the lock that guards it, unless *q holds maxQueuedEvents already:
// the observer is that far behind (flush), and the event is dropped and
// counted, as stack.EventQueue drops when full. SyncEvents waits for a
// queue that is not empty.
func (p *Protocol) queueEvent(q *[]event.Event, ev event.Event) {
	switch len(*q) {
	case maxQueuedEvents:
		p.limits.EventsDropped.Add(1)
		return
	case 0:
		p.pendingEvents.Add(1) // a batch waits (SyncEvents)
	}
	*q = append(*q, ev)
}

// writeAfterRefusal takes over flushOut's pass at outSpare[from], a
// packet the link refused: it writes the packets queued after it (their
// ECN fields in ecnOut.spare, if ecnOut is not nil), noting what each
// claimed, and hands the refusals to linkRefused, whose events, and what
// it sends, go on flushOut's next pass. It is the rare path, in a frame
// of its own, so that flushOut's stays small (writePacket).
//
//go:noinline
func (e *Endpoint) writeAfterRefusal(r *stack.Route, ecnOut *outECN, from int) {
	q := e.outSpare
	refused := []refusal{e.numberRefusal(e.proto.dropRefused(q[from]))}
	q[from] = nil
	var later afterRefusal // what the packets after a refusal claimed (linkRefused)
	later.wrote(refused[0], 0)
	for i := from + 1; i < len(q); i++ {
		pkt := q[i]
		q[i] = nil
		claims := refusalOf(pkt) // read before the link may release it
		later.wrote(claims, len(refused))
		if e.proto.writePacket(r, pkt, ecnOut.spareAt(i)) {
			refused = append(refused, e.numberRefusal(e.proto.dropRefused(pkt)))
		} else {
			later.overtaken.add(claims)
		}
	}
	e.mu.Lock()
	e.linkRefused(refused, &later)
	e.mu.Unlock()
}

// observed reports whether an observer takes the engine's events. The
// functions on the path of every segment test it and leave the making of
// their events to functions of their own (emitSend, emitState, ...): an
// event is 368 bytes, and each one built in a hot function's frame grew
// the goroutines that run the engine (the accepting server's, a dialer's)
// by that much, observed or not.
func (e *Endpoint) observed() bool { return e.proto.opts.Observer != nil }

// emit queues ev for the observer; flush delivers it once the locks are
// released. The caller holds e.mu.
func (e *Endpoint) emit(ev event.Event) {
	if e.proto.opts.Observer == nil {
		return
	}
	e.emitAt(ev, e.proto.clock.Now())
}

// emitBefore is emit for an event that must come before those emitted
// since mark, len(e.events) then: a capture puts a note on the frame
// of the send event that follows it, and what the note says of that
// send was known only once it went (a tail loss probe, a path MTU
// probe).
func (e *Endpoint) emitBefore(mark int, ev event.Event) {
	if e.proto.opts.Observer == nil {
		return
	}
	if mark >= len(e.events) {
		e.emit(ev)
		return
	}
	if len(e.events) >= maxQueuedEvents {
		e.proto.limits.EventsDropped.Add(1)
		return
	}
	ev.Time = e.proto.clock.Now()
	e.events = slices.Insert(e.events, mark, ev)
}

// emitAt is emit for an event that happened at t (the wire segments of
// one GSO packet share the time it was built).
func (e *Endpoint) emitAt(ev event.Event, t time.Time) {
	if e.proto.opts.Observer == nil {
		return
	}
	ev.Time = t
	e.proto.queueEvent(&e.events, ev)
}

// release deletes the TCB's registrations when the connection enters
// CLOSED: the demuxer entry, the port and the engine's table. The route
// is released by flush once the last packet has left.
func (e *Endpoint) release() {
	if e.registered {
		e.registered = false
		e.unregisterDemux()
	}
	if e.portHeld {
		e.portHeld = false
		e.proto.ports.release(e.id.LocalAddress, e.id.LocalPort)
	}
	if e.listener != nil {
		e.listener.forget(e)
		e.listener = nil
	}
	e.sndBuf.Release()
	e.rtxq.reset()
	e.releaseOOO()
	e.proto.unregister(e)
}

func ccName(cc CongestionControl) string {
	if cc == nil {
		return ""
	}
	return cc.Name()
}
