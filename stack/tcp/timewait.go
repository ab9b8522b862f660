package tcp

import (
	"sync"
	"sync/atomic"
	"weak"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TIME-WAIT as a compact record (RFC 9293 3.6 and 3.10.7.4), like Linux's
// inet_timewait_sock. For 2*MSL a closed connection only has to answer a
// retransmitted FIN, reject old duplicates and let a new SYN reopen it
// (RFC 1122 4.2.2.13): for that it needs its 4-tuple, SND.NXT, RCV.NXT,
// the window it promised and its timestamps, not buffers, timers, a route
// and a demuxer entry. So on entering TIME-WAIT the Endpoint gives all of
// those up and a timeWait record takes its place in the engine's table:
// 344 bytes against 2.5 KB for an established connection, as
// BenchmarkTimeWaitEntry measures them, bounded by Options.MaxTimeWait
// like Linux's tcp_max_tw_buckets.
//
// The record is not in gVisor's demuxer: a segment for its 4-tuple
// reaches the listener on the port (Listener.packetArrives) or, without
// one, HandleUnknownDestinationPacket, and both look in the table first.
// A segment the demuxer handed the Endpoint a moment before it left goes
// the same way (Protocol.strayArrives): there is one place for
// TIME-WAIT's rules, and the Endpoint never answers from TIME-WAIT.
// All records share one clock timer: they all last Options.TimeWait, so
// a list in the order they were made (or restarted) is a list in the
// order they expire.
//
// The Endpoint the user holds stays in TIME-WAIT (State, Info) and holds
// its received data for Read; the record reaches it through a weak
// pointer, so that a user who dropped it does not keep it alive, and
// moves it to CLOSED when the record goes.

// timeWait is one connection in TIME-WAIT.
type timeWait struct {
	id       stack.TransportEndpointID
	netProto tcpip.NetworkProtocolNumber
	nic      tcpip.NICID
	portHeld bool // an active opener's port (ports.go), kept as Linux keeps the bind bucket

	sndNxt, rcvNxt seqnum.Value
	rcvWnd         uint32 // the window we promised: RCV.NXT+rcvWnd is the right edge
	maxSndWnd      uint32 // for RFC 5961 5.2's bound on old ACKs
	rcvWndShift    uint8
	tsOK           bool
	invalidAckSent bool
	tsRecent       uint32
	tsOffset       uint32
	tsRecentAge    tcpip.MonotonicTime
	invalidAckAt   tcpip.MonotonicTime

	since    tcpip.MonotonicTime // entered TIME-WAIT
	deadline tcpip.MonotonicTime // 2*MSL after since, or after the last retransmitted FIN

	prev, next *timeWait // the table's list, by deadline
	ep         weak.Pointer[Endpoint]
}

// timeWaitTable holds the records of one engine.
type timeWaitTable struct {
	mu         sync.Mutex
	m          map[stack.TransportEndpointID]*timeWait
	head, tail *timeWait
	timer      tcpip.Timer
	armed      bool
	closed     bool
}

// LimitStats count the times a resource limit of Options was reached.
type LimitStats struct {
	TimeWaitOverflows atomic.Uint64 // connections deleted instead of entering TIME-WAIT: MaxTimeWait reached (Linux TCPTimeWaitOverflow)
	OrphanResets      atomic.Uint64 // Close calls turned into an abort: MaxOrphans reached (Linux TCPAbortOnMemory)
	ConnectionLimit   atomic.Uint64 // Connect calls and SYNs refused: MaxConnections reached
	PathMTUEvictions  atomic.Uint64 // path MTUs forgotten before they expired: 4,096 destinations had reported smaller ones (pmtu.go)
	EventsDropped     atomic.Uint64 // events never delivered: a connection or a listener already queued maxQueuedEvents (2,048) for an observer that fell behind (Endpoint.flush)
	OrphanProbeAborts atomic.Uint64 // orphans given up behind a zero window their peer kept answering: OrphanRetries probes backed off to MaxRTO (Linux's tcp_probe_timer for a SOCK_DEAD socket; also in Stats.Timeouts)
	ReceiveMemory     atomic.Uint64 // segments whose text was dropped: the connections held ReceiveMemoryLimit bytes of received data (also Stats.Dropped(event.DropReceiveMemory); Linux's TCPRcvQDrop and TCPOFODrop)
}

// Usage is what the engine holds now, against the limits of Options.
type Usage struct {
	Connections int // connections other than TIME-WAIT, half-open ones included (MaxConnections)
	TimeWait    int // connections in TIME-WAIT (MaxTimeWait)
	Orphans     int // closed by the user, not yet CLOSED or TIME-WAIT (MaxOrphans)
	// ReceiveMemory is the bytes of received data the connections hold:
	// in-order text not yet read, and the heap out-of-order text pins
	// (ReceiveMemoryLimit).
	ReceiveMemory int
}

// Limits returns the counters of limits reached.
func (p *Protocol) Limits() *LimitStats { return &p.limits }

// Usage returns what the engine holds now.
func (p *Protocol) Usage() Usage {
	p.mu.Lock()
	n := len(p.endpoints)
	p.mu.Unlock()
	p.tw.mu.Lock()
	tw := len(p.tw.m)
	p.tw.mu.Unlock()
	return Usage{Connections: n, TimeWait: tw, Orphans: int(p.orphans.Load()), ReceiveMemory: int(p.rcvMem.Load())}
}

// enterTimeWait is what entering TIME-WAIT does (transition calls it):
// 3.10.7.4 "start the time-wait timer, turn off the other timers", with the
// connection handed over to a compact record. Beyond MaxTimeWait there is
// no record: the connection is deleted at once, as Linux does when
// tcp_max_tw_buckets is reached. The caller holds e.mu.
func (e *Endpoint) enterTimeWait(cause event.Cause) {
	p := e.proto
	e.stopAllTimers()
	now := p.clock.NowMonotonic()
	tw := &timeWait{
		id:          e.id,
		netProto:    e.netProto,
		nic:         e.nic,
		sndNxt:      e.sndNxt,
		rcvNxt:      e.rcvNxt,
		maxSndWnd:   e.maxSndWnd,
		rcvWndShift: e.rcvWndShift,
		tsOK:        e.tsOK,
		tsRecent:    e.tsRecent,
		tsOffset:    e.tsOffset,
		tsRecentAge: e.tsRecentAge,
		since:       now,
		deadline:    now.Add(p.opts.TimeWait),
		portHeld:    e.portHeld,
		ep:          weak.Make(e),
	}
	if e.rcvNxt.LessThan(e.rcvAcc) {
		tw.rcvWnd = uint32(e.rcvNxt.Size(e.rcvAcc))
	}
	// Once in the table the record is the table's: its timer may fire
	// at once (a short TimeWait), on another goroutine, before this
	// returns. It then waits for e.mu to close the Endpoint.
	if !p.tw.add(tw, p) {
		p.limits.TimeWaitOverflows.Add(1)
		e.transition(event.Closed, event.Cause{Kind: cause.Kind, Detail: "TIME-WAIT table full (MaxTimeWait): " + cause.Detail, Key: cause.Key})
		return
	}
	e.tw = tw
	e.portHeld = false // the record's now
	if e.registered {
		e.registered = false
		e.unregisterDemux()
	}
	// Data still queued can never be acknowledged; received data stays
	// for Read. The route goes once the last segment (the ACK of the
	// peer's FIN) has left (flush).
	e.sndBuf.Release()
	e.rtxq.reset()
	e.releaseOOO()
	p.unregister(e)
}

// add enters tw in the table, or reports false when the table is full (or
// the engine closed). A record for the same 4-tuple, which the demuxer
// should have made impossible, is replaced.
func (t *timeWaitTable) add(tw *timeWait, p *Protocol) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || len(t.m) >= p.opts.MaxTimeWait {
		return false
	}
	if t.m == nil {
		t.m = make(map[stack.TransportEndpointID]*timeWait)
	}
	if old := t.m[tw.id]; old != nil {
		t.unlink(old)
	}
	t.m[tw.id] = tw
	t.pushBack(tw)
	t.arm(p)
	return true
}

func (t *timeWaitTable) pushBack(tw *timeWait) {
	tw.prev, tw.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = tw
	} else {
		t.head = tw
	}
	t.tail = tw
}

func (t *timeWaitTable) unlink(tw *timeWait) {
	if tw.prev != nil {
		tw.prev.next = tw.next
	} else {
		t.head = tw.next
	}
	if tw.next != nil {
		tw.next.prev = tw.prev
	} else {
		t.tail = tw.prev
	}
	tw.prev, tw.next = nil, nil
}

// remove takes tw out of the table and reports whether it was there:
// whoever removes a record finishes it. t.mu must not be held.
func (t *timeWaitTable) remove(tw *timeWait) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[tw.id] != tw {
		return false
	}
	delete(t.m, tw.id)
	t.unlink(tw)
	return true
}

func (t *timeWaitTable) lookup(id stack.TransportEndpointID) *timeWait {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

// restart is 3.10.7.4's "restart the 2 MSL time-wait timeout": the record
// moves to the end of the list, which stays in deadline order since every
// record lasts the same TimeWait. t.mu is held.
func (t *timeWaitTable) restart(tw *timeWait, p *Protocol) {
	if t.m[tw.id] != tw {
		return
	}
	tw.deadline = p.clock.NowMonotonic().Add(p.opts.TimeWait)
	t.unlink(tw)
	t.pushBack(tw)
}

// arm points the clock timer at the first deadline, unless it is already
// armed: the timer may then fire early, finding nothing due, and re-arm,
// but never late, since deadlines only grow along the list. t.mu is held.
func (t *timeWaitTable) arm(p *Protocol) {
	if t.armed || t.head == nil || t.closed {
		return
	}
	d := max(t.head.deadline.Sub(p.clock.NowMonotonic()), 0)
	t.armed = true
	if t.timer == nil {
		t.timer = p.clock.AfterFunc(d, p.expireTimeWait)
		return
	}
	t.timer.Reset(d)
}

// expireTimeWait runs on the table's timer: 3.10.8, "If the time-wait
// timeout expires on a connection, delete the TCB."
func (p *Protocol) expireTimeWait() {
	t := &p.tw
	now := p.clock.NowMonotonic()
	var due []*timeWait
	t.mu.Lock()
	t.armed = false
	for tw := t.head; tw != nil && !now.Before(tw.deadline) && len(due) < 1<<16; tw = t.head {
		delete(t.m, tw.id)
		t.unlink(tw)
		due = append(due, tw)
	}
	t.arm(p)
	p.holdEvents(len(due))
	t.mu.Unlock()
	if p.timeWaitTaken != nil {
		p.timeWaitTaken()
	}
	for _, tw := range due {
		p.finishTimeWait(tw, timerCause(timerTimeWait))
		p.holdEvents(-1)
	}
}

// holdEvents makes SyncEvents wait for n more (or, negative, fewer)
// reports to come, with an observer. Records taken out of the table have
// left Connections before finishTimeWait reports their CLOSED, and
// SyncEvents promises that once no connection is left the observer has
// heard why: without the hold, a capture closed then missed the CLOSED.
func (p *Protocol) holdEvents(n int) {
	if p.opts.Observer != nil && n != 0 {
		p.pendingEvents.Add(int64(n))
	}
}

// finishTimeWait deletes a record that its caller took out of the table:
// the port goes back, and the connection is CLOSED, through the Endpoint
// when the user still holds it, or in an event of its own otherwise.
func (p *Protocol) finishTimeWait(tw *timeWait, cause event.Cause) {
	if tw.portHeld {
		tw.portHeld = false
		p.ports.release(tw.id.LocalAddress, tw.id.LocalPort)
	}
	if e := tw.ep.Value(); e != nil {
		e.mu.Lock()
		if e.tw == tw {
			e.tw = nil
			e.transition(event.Closed, cause)
		}
		e.mu.Unlock()
		e.flush()
		return
	}
	// The record's own TIME-WAIT -> CLOSED goes through the table as
	// transition's edges do.
	if !edgeAllowed(event.TimeWait, event.Closed, cause.Kind) {
		p.refuseTimeWaitClosed(tw, &cause)
		return
	}
	p.stats.transitions[event.TimeWait][event.Closed].Add(1)
	if p.opts.Observer != nil {
		p.emitTimeWaitClosed(tw, &cause)
	}
}

// emitTimeWaitClosed reports a record's TIME-WAIT -> CLOSED. It and
// refuseTimeWaitClosed are apart from finishTimeWait, which runs on a
// timer's goroutine of its own, so that their events do not grow that
// goroutine's stack each time.
func (p *Protocol) emitTimeWaitClosed(tw *timeWait, cause *event.Cause) {
	p.emit(event.Event{Kind: event.KindState, Conn: connIDOf(tw.id), From: event.TimeWait, To: event.Closed, Cause: *cause, Key: cause.Key})
}

func (p *Protocol) refuseTimeWaitClosed(tw *timeWait, cause *event.Cause) {
	p.emit(p.refuseTransition(connIDOf(tw.id), event.TimeWait, event.Closed, *cause))
}

// dropTimeWait deletes the record of a connection that is moving to
// CLOSED on its own (an abort, a listener closing): its transition reports
// the change. The caller holds e.mu.
func (p *Protocol) dropTimeWait(e *Endpoint) {
	tw := e.tw
	e.tw = nil
	if p.tw.remove(tw) && tw.portHeld {
		tw.portHeld = false
		p.ports.release(tw.id.LocalAddress, tw.id.LocalPort)
	}
}

// closeTimeWait deletes every record, or those of one NIC (nic != 0), with
// cause: the stack is closing, or the NIC went down.
func (p *Protocol) closeTimeWait(nic tcpip.NICID, cause event.Cause) {
	t := &p.tw
	var gone []*timeWait
	t.mu.Lock()
	if nic == 0 {
		t.closed = true
		if t.timer != nil {
			t.timer.Stop()
		}
	}
	for tw := t.head; tw != nil; {
		next := tw.next
		if nic == 0 || tw.nic == nic {
			delete(t.m, tw.id)
			t.unlink(tw)
			gone = append(gone, tw)
		}
		tw = next
	}
	p.holdEvents(len(gone))
	t.mu.Unlock()
	for _, tw := range gone {
		p.finishTimeWait(tw, cause)
		p.holdEvents(-1)
	}
}

// timeWaitEndpoints returns the connections in TIME-WAIT for Connections:
// the Endpoint a user still holds, or else a detached one that reports the
// record's state, TCB and age, and that Reset deletes.
func (p *Protocol) timeWaitEndpoints() []*Endpoint {
	t := &p.tw
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Endpoint, 0, len(t.m))
	for tw := t.head; tw != nil; tw = tw.next {
		if e := tw.ep.Value(); e != nil {
			out = append(out, e)
			continue
		}
		out = append(out, &Endpoint{
			proto:      p,
			netProto:   tw.netProto,
			nic:        tw.nic,
			id:         tw.id,
			state:      event.TimeWait,
			stateSince: tw.since,
			tcb: tcb{
				sndUna: tw.sndNxt, sndNxt: tw.sndNxt,
				rcvNxt: tw.rcvNxt, rcvWnd: tw.rcvWnd,
			},
			rcvWndShift:    tw.rcvWndShift,
			tsOK:           tw.tsOK,
			finReceived:    true,
			finQueued:      true,
			userClosed:     true,
			wasEstablished: true,
			tw:             tw,
			evDeliver:      p.newEventDelivery(),
		})
	}
	return out
}

// twVerdict is what a segment to a TIME-WAIT record comes to.
type twVerdict uint8

const (
	twDone   twVerdict = iota // handled: dropped, answered or closed
	twReopen                  // a new SYN: the record is gone, the listener takes the SYN
)

// timeWaitArrives is SEGMENT ARRIVES (RFC 9293 3.10.7.4) for a connection
// in TIME-WAIT, whose record tw the caller found; l is the listener on the
// port, if any. It returns twReopen with the ISN to use when a new SYN
// reopens the connection; the caller hands the SYN to l.
func (p *Protocol) timeWaitArrives(tw *timeWait, seg *segment, l *Listener) (twVerdict, seqnum.Value) {
	t := &p.tw
	c := connIDOf(tw.id)
	now := p.clock.NowMonotonic()
	t.mu.Lock()
	if t.m[tw.id] != tw {
		t.mu.Unlock()
		p.drop(c, seg, event.DropClosed) // deleted meanwhile
		return twDone, 0
	}
	const noReply = event.SendCause(event.NumSendCauses)
	reply := noReply // the ACK the segment earns, if any
	limited := false // the reply goes under InvalidRateLimit
	reason := event.DropNone
	var close *event.Cause
	quiet := false // an acceptable segment that asks for nothing

	tsValid := now.Sub(tw.tsRecentAge) < pawsIdle
	// RFC 7323 5.3 (R1), PAWS: with timestamps in force, a TSval older
	// than TS.Recent marks an old duplicate; a RST is judged by its
	// sequence number alone, as in Endpoint.pawsReject. It is decided
	// before anything else, a reopening SYN included.
	pawsReject := tw.tsOK && seg.TS && !seg.has(header.TCPFlagRst) && tsBefore(seg.TSVal, tw.tsRecent) && tsValid
	// RFC 6191 2: when the old incarnation used timestamps and the SYN
	// carries a TSopt (the engine's timestamps are on, so the new one
	// will use them too), a TSval newer than TS.Recent tells a new SYN
	// from an old duplicate, whatever its sequence number: a peer's ISN,
	// random since RFC 6528, falls at or below RCV.NXT half the time. As
	// Linux, a newer TSval is enough whether or not TS.Recent is still
	// valid (RFC 7323 5.5).
	newerTS := tw.tsOK && seg.TS && tsBefore(tw.tsRecent, seg.TSVal)
	switch {
	// A new SYN may reopen the connection (RFC 1122 4.2.2.13) when it
	// is above everything the old connection received, or, RFC 6191 2,
	// when its TSval is newer, provided the new ISN is above the old
	// sequence space; Linux (tcp_timewait_state_process) does so with
	// ISN = old SND.NXT + 65535 + 2, and so do we, by either rule. Not a
	// SYN that fails PAWS: RFC 1122 asks to return to TIME-WAIT if the
	// SYN turns out to be an old duplicate, and RFC 7323 5.3 and RFC 6191
	// 2 say a TSval older than TS.Recent shows it is one. Linux reopens
	// only when !paws_reject. Without that check an old duplicate SYN,
	// or a blind forger who need only pick a sequence number above
	// RCV.NXT, would end TIME-WAIT early. A SYN that does not reopen
	// goes on below: an ACK, as Linux's TCP_TW_ACK, under PAWS, the
	// sequence check or, at RCV.NXT, the fourth step.
	case seg.has(header.TCPFlagSyn) && !seg.has(header.TCPFlagAck|header.TCPFlagRst) && !pawsReject && (tw.rcvNxt.LessThan(seg.Seq) || newerTS) && l != nil:
		delete(t.m, tw.id)
		t.unlink(tw)
		t.mu.Unlock()
		p.finishTimeWait(tw, event.Cause{Kind: event.CauseSegment, Detail: "new SYN in TIME-WAIT " + seg.String(), Key: seg.wire})
		return twReopen, reopenISS(tw.sndNxt)

	// RFC 7323 5.3 (R1), PAWS, before the sequence check: an old
	// duplicate, a SYN among them, is answered with an ACK and dropped
	// (Linux: TCP_TW_ACK, counted in PAWSEstabRejected).
	case pawsReject:
		reason, reply, limited = event.DropPAWS, event.SendAck, true

	// First, the sequence number, as Endpoint.acceptable.
	case !twAcceptable(tw, seg):
		reason = event.DropOutOfWindow
		if seg.Seq.Add(seg.Len()).LessThanEq(tw.rcvNxt) {
			reason = event.DropOldSequence
		}
		switch {
		case seg.has(header.TCPFlagRst):
		case seg.has(header.TCPFlagFin) && !seg.has(header.TCPFlagSyn) && seg.Seq.Add(seg.Len()) == tw.rcvNxt:
			// Eighth step, TIME-WAIT: a retransmitted FIN is
			// acknowledged, always, and restarts the 2 MSL timeout.
			// (With a SYN it is no retransmission of the peer's FIN:
			// its ACK is limited, as Linux's tcp_oow_rate_limited
			// limits any SYN's.)
			// Only a FIN restarts it, as the RFC says: Linux
			// (tcp_timewait_state_process) re-arms it for any
			// segment with ACK set outside the window, which lets a
			// peer hold the record as long as it sends junk.
			t.restart(tw, p)
			reply = event.SendAck
		default:
			reply, limited = event.SendAck, true
		}

	// Second, the RST bit (RFC 5961 3.2): at RCV.NXT it deletes the
	// TCB; elsewhere in the window it earns a challenge ACK. With
	// RFC1337, TIME-WAIT outlives any RST (RFC 1337 3, F1), as Linux's
	// tcp_timewait_state_process with tcp_rfc1337=1, which also leaves
	// the timer as it runs.
	case seg.has(header.TCPFlagRst):
		if p.opts.RFC1337 {
			reason = event.DropRstTimeWait
		} else if seg.Seq == tw.rcvNxt {
			p.stats.ResetsReceived.Add(1)
			cs := p.segmentCause(seg)
			close = &cs
		} else {
			reason, reply, limited = event.DropRstInvalid, event.SendChallengeAck, true
		}

	// Fourth, a SYN that does not reopen: a challenge ACK (RFC 5961 4.2).
	case seg.has(header.TCPFlagSyn):
		reason, reply, limited = event.DropSynUnexpected, event.SendChallengeAck, true

	// Fifth, the ACK field.
	case !seg.has(header.TCPFlagAck):
		reason = event.DropNoAck
	case tw.sndNxt.LessThan(seg.Ack):
		reason, reply, limited = event.DropAckUnsent, event.SendAck, true
	case seg.Ack.LessThan(tw.sndNxt - seqnum.Value(tw.maxSndWnd)):
		reason, reply, limited = event.DropInvalidAck, event.SendChallengeAck, true

	default:
		// An acceptable segment: "The only thing that can arrive in
		// this state is a retransmission of the remote FIN"; anything
		// else is a duplicate ACK, and text is ignored. RFC 7323 4.3:
		// its TSval may update TS.Recent (Last.ACK.sent is RCV.NXT).
		if tw.tsOK && seg.TS && seg.Seq.LessThanEq(tw.rcvNxt) && (!tsBefore(seg.TSVal, tw.tsRecent) || !tsValid) {
			tw.tsRecent, tw.tsRecentAge = seg.TSVal, now
		}
		quiet = true
	}
	// The per-connection limit of Endpoint.invalidAckAllowed, kept in
	// the record, with its exemption: the ACK of text or a FIN without a
	// SYN goes whatever the limit (replyUnlimited), as Linux's
	// tcp_timewait_state_process answers through tcp_oow_rate_limited.
	// A challenge ACK is limited whatever the segment, as
	// Endpoint.challengeAck's.
	suppressed := false
	if reply != noReply && limited && !(reply == event.SendAck && replyUnlimited(seg)) {
		if lim := p.opts.InvalidRateLimit; lim >= 0 && tw.invalidAckSent && now.Sub(tw.invalidAckAt) < lim {
			reply, suppressed = noReply, true
		} else {
			tw.invalidAckSent, tw.invalidAckAt = true, now
		}
	}
	if close != nil {
		delete(t.m, tw.id)
		t.unlink(tw)
	}
	twc := *tw // what the reply needs, read under the lock
	t.mu.Unlock()

	if reason != event.DropNone {
		p.drop(c, seg, reason)
	}
	if quiet && p.opts.Observer != nil {
		// Nothing is left to acknowledge or to send: say so, so the
		// segment is not unexplained.
		p.emit(event.Event{Kind: event.KindAck, Conn: c, Segment: seg.info(), Key: seg.wire,
			Note: "in TIME-WAIT: nothing left to acknowledge"})
	}
	if suppressed {
		p.drop(c, seg, event.DropAckRateLimited)
	}
	if reply == event.SendChallengeAck && !p.challenge.allow(now) {
		p.drop(c, seg, event.DropChallengeRateLimited)
		reply = noReply
	}
	if reply != noReply {
		p.timeWaitAck(&twc, reply)
	}
	if close != nil {
		p.finishTimeWait(tw, *close)
	}
	return twDone, 0
}

// twAcceptable is the sequence check of 3.10.7.4 against the window the
// connection last promised.
func twAcceptable(tw *timeWait, seg *segment) bool {
	wnd := seqnum.Size(tw.rcvWnd)
	n := seg.Len()
	switch {
	case n == 0 && wnd == 0:
		return seg.Seq == tw.rcvNxt
	case n == 0:
		return seg.Seq.InWindow(tw.rcvNxt, wnd)
	case wnd == 0:
		return false
	}
	return seg.Seq.InWindow(tw.rcvNxt, wnd) || seg.Seq.Add(n-1).InWindow(tw.rcvNxt, wnd)
}

// timeWaitAck sends <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> from a record,
// with the window it promised and, when timestamps are in force, the
// TSopt (RFC 7323 3.2). It takes a route for the one segment, as replyRST
// does: a record keeps none.
func (p *Protocol) timeWaitAck(tw *timeWait, cause event.SendCause) {
	r, err := p.findRoute(routeQuery{nic: tw.nic, netProto: tw.netProto, local: tw.id.LocalAddress, remote: tw.id.RemoteAddress})
	if err != nil {
		return
	}
	defer p.releaseRoute(r)
	var opts [tsOptionSize]byte
	f := outFields{
		srcPort: tw.id.LocalPort, dstPort: tw.id.RemotePort,
		seq: tw.sndNxt, ack: tw.rcvNxt, flags: header.TCPFlagAck,
		window: uint16(min(tw.rcvWnd>>tw.rcvWndShift, 0xffff)),
	}
	if tw.tsOK {
		f.opts = opts[:encodeTimestamp(p.tsClock()+tw.tsOffset, tw.tsRecent, opts[:])]
	}
	pkt := buildPacket(r, &f, buffer.Buffer{})
	p.countSend(connIDOf(tw.id), cause, &f, 0, 0)
	p.writeOnce(r, pkt)
}

// timeWaitFor is the record for a segment's 4-tuple, if any.
func (p *Protocol) timeWaitFor(id stack.TransportEndpointID) *timeWait {
	return p.tw.lookup(id)
}

// reopenISS is the ISN of a connection a new SYN opens over a TIME-WAIT
// record whose SND.NXT was sndNxt: above the old sequence space by the
// largest unscaled window and two, as Linux's tcp_timewait_state_process
// picks it. Zero is moved to one, as Linux moves it (its isn == 0 means
// "choose one", as openChild's iss does here): without that, one old
// SND.NXT in 2^32 would have the new connection take a random ISN,
// perhaps inside the old one's sequence space.
func reopenISS(sndNxt seqnum.Value) seqnum.Value {
	iss := sndNxt + 65535 + 2
	if iss == 0 {
		iss++
	}
	return iss
}
