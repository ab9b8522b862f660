package tcp

import (
	"fmt"
	"math"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sendSegment builds a segment from the TCB and queues it. Every segment
// that carries ACK carries RCV.NXT and our current window, and counts as
// the acknowledgment that a delayed ACK was waiting for. It takes
// ownership of payload. The caller holds e.mu.
func (e *Endpoint) sendSegment(cause event.SendCause, flags header.TCPFlags, seq seqnum.Value, payload buffer.Buffer, opts []byte) {
	attempt := 0
	switch cause {
	case event.SendSynRetransmit, event.SendSynAckRetransmit:
		attempt = e.retries // the RTO expiries so far: "#2" is the second retransmission
	case event.SendKeepalive:
		attempt = int(e.keepProbes)
	case event.SendWindowProbe:
		attempt = int(e.persistProbes)
	}
	e.sendSegmentN(cause, attempt, flags, seq, payload, opts)
}

// sendSegmentN is sendSegment with the attempt number the events report.
func (e *Endpoint) sendSegmentN(cause event.SendCause, attempt int, flags header.TCPFlags, seq seqnum.Value, payload buffer.Buffer, opts []byte) {
	e.sendPacket(cause, attempt, flags, seq, payload, opts, 0)
}

// sendPacket is sendSegmentN for a packet that may carry several
// segments: with gsoSize > 0 and more payload than that, it is a GSO
// super-segment the link cuts into segments of gsoSize bytes (the last
// may be shorter), each with the header's fields but its own sequence
// number, PSH and FIN on the last only, as Linux's tcp_gso_segment cuts
// them. Counters and send events describe those wire segments.
func (e *Endpoint) sendPacket(cause event.SendCause, attempt int, flags header.TCPFlags, seq seqnum.Value, payload buffer.Buffer, opts []byte, gsoSize int) {
	if e.route == nil {
		payload.Release()
		return
	}
	n := int(payload.Size())
	if gsoSize <= 0 || n <= gsoSize {
		gsoSize = 0
	}
	if e.pace != nil && n > 0 {
		segs := 1
		if gsoSize > 0 {
			segs = (n + gsoSize - 1) / gsoSize
		}
		e.paced(n, segs) // pacing.go
	}
	ecn := e.ecnMark(cause, attempt, &flags, n)
	segLen := n
	if gsoSize > 0 {
		segLen = gsoSize
	}
	// RFC 7323 3.2: with timestamps in force, the TSopt goes on every
	// segment. A RST may omit it; we send it on the RSTs of a connection
	// (3.2 says SHOULD, and Linux's tcp_send_active_reset does too), not
	// on the replies of replyRST, which has no connection to take it from.
	var optBuf [header.TCPOptionsMaximumSize]byte
	synNote := ""
	if opts == nil && (e.tsOK || e.sackOK) {
		opts = e.segmentOptions(flags, segLen, &optBuf)
	}
	f := outFields{srcPort: e.id.LocalPort, dstPort: e.id.RemotePort, seq: seq, flags: flags, opts: opts}
	if flags&header.TCPFlagAck != 0 {
		f.ack = e.rcvNxt
		e.lastAckSent = e.rcvNxt // Last.ACK.sent, RFC 7323 4.3
		e.ackSent()              // delack.go
		e.stopTimer(timerDelayedAck)
	}
	if flags&header.TCPFlagRst == 0 {
		if flags&header.TCPFlagSyn != 0 {
			// RFC 7323 2.2: the window field of a SYN is never scaled.
			// A retransmitted SYN-ACK may offer less than an ACK sent
			// since (a challenge ACK in SYN-RECEIVED) promised: the
			// promise stands, the right edge never moves left (RFC
			// 9293 3.8.6.2.2).
			wnd, grow := e.proto.synWindow(e.rcvBufLimit, e.rcvMSS, e.nic, e.id.RemoteAddress)
			f.window = uint16(wnd)
			e.rcvWnd = uint32(f.window)
			if e.rcvGrowSegs = grow; grow > 0 && e.observed() {
				synNote = fmt.Sprintf("window %d: the route's initrwnd, %d segments of %d", wnd, grow, e.rcvMSS)
			}
			if edge := e.rcvNxt.Add(seqnum.Size(e.rcvWnd)); flags&header.TCPFlagAck == 0 || e.rcvAcc.LessThan(edge) {
				e.rcvAcc = edge
			}
		} else {
			f.window = e.advertise()
		}
	}
	var pkt *stack.PacketBuffer
	switch {
	case gsoSize > 0:
		pkt = buildGSOPacket(e.route, &f, payload, gsoSize)
	case n > 0 && e.route.HasHostGSOCapability():
		// One segment with data, on a link that finishes checksums
		// (a TAP with offloads, tap.Pipe with GSO): its checksum is
		// left partial too, as Linux leaves every segment's
		// (CHECKSUM_PARTIAL) and gVisor's TCP every packet's, rather
		// than summed here over the payload. At a large MTU every
		// segment is one: summed here, a 64 KiB segment's checksum
		// took a tenth of a bulk transfer's CPU, and the link, which
		// takes a partial frame as it is, copied each complete one
		// (tap.Pipe, a 64 KiB copy per frame). A segment alone is a
		// packet of one gso_size, its own length: the link cuts
		// nothing (a path MTU probe is longer than the MSS).
		pkt = buildGSOPacket(e.route, &f, payload, n)
	default:
		pkt = buildPacket(e.route, &f, payload)
	}
	note := synNote
	if p := e.pace; p != nil && n > 0 && p.heldAt != (tcpip.MonotonicTime{}) {
		note = e.pacedNote() // pacing.go: this packet waited for its time
	}
	if gsoSize == 0 {
		e.proto.countSent(cause, &f)
		if e.observed() {
			e.emitSend(cause, &f, n, attempt, note)
		}
	} else {
		// One count and one event per wire segment, as the link will
		// cut them.
		segs := (n + gsoSize - 1) / gsoSize
		st := &e.proto.stats
		st.SegmentsOut.Add(uint64(segs)) // no RST rides in a GSO packet
		st.Sends[cause].Add(uint64(segs))
		st.GSOPackets.Add(1)
		if e.observed() {
			e.emitGSOSends(cause, &f, n, gsoSize, attempt, note)
		}
	}
	e.queue(pkt, ecn)
}

// emitSend reports a segment about to leave; note, if any, says more of
// why it left when it did.
func (e *Endpoint) emitSend(cause event.SendCause, f *outFields, n, attempt int, note string) {
	ev := sendEvent(e.connID(), cause, f, n, attempt)
	ev.Note = note
	e.emit(ev)
}

// emitGSOSends reports the wire segments of a GSO packet of n bytes,
// cut at gsoSize, about to leave: one event each, at the same instant,
// the first with the note.
func (e *Endpoint) emitGSOSends(cause event.SendCause, f *outFields, n, gsoSize, attempt int, note string) {
	base, at := sendEvent(e.connID(), cause, f, gsoSize, attempt), e.proto.clock.Now()
	w := *f
	for off := 0; off < n; off += gsoSize {
		size := min(gsoSize, n-off)
		w.seq = f.seq.Add(seqnum.Size(off))
		w.flags = f.flags
		if off+size < n {
			w.flags &^= header.TCPFlagPsh | header.TCPFlagFin
		}
		ev := base
		ev.Segment.Seq, ev.Segment.Flags, ev.Segment.Len = uint32(w.seq), event.Flags(w.flags), size
		ev.Key.Seq, ev.Key.Flags, ev.Key.Len = uint32(w.seq), event.Flags(w.flags), size
		if off == 0 {
			ev.Note = note
		}
		e.emitAt(ev, at)
	}
}

// sendAck sends a bare ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
func (e *Endpoint) sendAck(cause event.SendCause) {
	e.sendSegment(cause, header.TCPFlagAck, e.sndNxt, buffer.Buffer{}, nil)
}

// advertise computes the window to put on a segment and records the right
// edge it promises. RFC 9293 3.8.6.2.2: the right edge never moves left
// (no shrinking), and it moves right only in steps of at least
// min(buffer/2, MSS), which is the receiver's half of silly window
// syndrome avoidance.
//
// With window scaling the field counts units of 2^shift bytes (RFC 7323
// 2.3), and a window rounded down to a unit would put the edge up to
// 2^shift-1 bytes left of the one promised. As Linux's tcp_select_window,
// which aligns the current window up (ALIGN(cur_win, 1 << rcv_wscale))
// when the new one would be smaller, the promise is rounded up to a whole
// unit instead: the edge moves right by less than a unit. Linux does so
// whatever room is left and drops what its memory accounting cannot take;
// here the window is the only bound on unread text, so the round-up is
// taken only while the buffer holds the unit it adds. Otherwise (a full
// buffer, a peer creeping the edge on in segments smaller than a unit)
// the edge seems to move left by less than a unit, as RFC 7323 2.4
// allows; RCV.WND's right edge (rcvAcc) stays where it was promised.
func (e *Endpoint) advertise() uint16 {
	// No more than the stack has room for (rcvmem.go): near its
	// receive memory limit, what was promised stays, and no more opens.
	free := min(e.rcvBufLimit-int(e.rcvBuf.Size())-e.ooo.bytes, e.proto.rcvMemRoom())
	if free < 0 {
		free = 0
	}
	promised := 0
	if e.rcvNxt.LessThan(e.rcvAcc) {
		promised = int(e.rcvNxt.Size(e.rcvAcc))
	}
	wnd := promised
	if free-promised >= min(e.rcvBufLimit/2, e.rcvMSS) {
		wnd = free
	}
	if g := e.rcvGrowSegs; g > 0 {
		// The route's initrwnd, growing (routemetrics.go): it caps
		// what more is offered, never what was promised.
		wnd = min(wnd, max(promised, int(g)*e.rcvMSS))
	}
	raw := wnd >> e.rcvWndShift
	if unit := 1 << e.rcvWndShift; raw<<e.rcvWndShift < promised {
		up := (promised + unit - 1) >> e.rcvWndShift
		if room := e.rcvBufLimit - int(e.rcvBuf.Size()); up<<e.rcvWndShift < room+unit {
			raw = up
		}
	}
	if raw > 0xffff {
		raw = 0xffff
	}
	e.rcvWnd = uint32(raw) << e.rcvWndShift
	if edge := e.rcvNxt.Add(seqnum.Size(e.rcvWnd)); e.rcvAcc.LessThan(edge) {
		e.rcvAcc = edge
	}
	return uint16(raw)
}

// maybeSendWindowUpdate runs after the user read: if the window we would
// advertise has grown by the SWS threshold beyond what we promised while
// the promise had fallen below half the buffer, tell the peer now rather
// than at the next data segment, which may never come (3.8.6.2.2). As
// Linux (tcp_cleanup_rbuf), only a window at least twice the one
// promised is worth a segment of its own: a reader that drains the buffer
// in small reads while data streams in otherwise draws an update per
// read, more segments than the ACKs themselves (1,357 updates beside 301
// ACKs for 128 MB over tap.Pipe); the ACKs of the data carry the window
// anyway.
func (e *Endpoint) maybeSendWindowUpdate() {
	if !e.state.Synchronized() || e.finReceived {
		return
	}
	// The most the window field can say with the agreed scale.
	maxWnd := min(e.rcvBufLimit, 0xffff<<e.rcvWndShift)
	free := min(e.rcvBufLimit-int(e.rcvBuf.Size())-e.ooo.bytes, maxWnd)
	promised := 0
	if e.rcvNxt.LessThan(e.rcvAcc) {
		promised = int(e.rcvNxt.Size(e.rcvAcc))
	}
	if promised < maxWnd/2 && free >= 2*promised && free-promised >= min(maxWnd/2, e.rcvMSS) {
		e.sendAck(event.SendWindowUpdate)
	}
}

// sndData returns a reference-counted slice of the send buffer: n bytes
// starting at sequence number seq.
func (e *Endpoint) sndData(seq seqnum.Value, n int) buffer.Buffer {
	var out buffer.Buffer
	if n == 0 {
		return out
	}
	off := int(e.sndBufSeq.Size(seq))
	e.sndBuf.CloneRange(off, n, func(v *buffer.View) { _ = out.Append(v) })
	return out
}

// sndEnd is the sequence number just past the last byte in the send buffer:
// where the FIN goes.
func (e *Endpoint) sndEnd() seqnum.Value { return e.sndBufSeq.Add(seqnum.Size(e.sndBuf.Size())) }

// transmit sends the data segment at seq of n bytes, with FIN if fin, and
// leaves SND.NXT alone. Data segments carry ACK (3.10.7.4: once
// synchronized, every segment carries the current acknowledgment) and PSH
// when they empty the buffer, which ends the user's last write (3.9.1:
// Linux pushes at the end of every write), or when push says so (the
// end of a train, below). attempt numbers a retransmission.
func (e *Endpoint) transmit(seq seqnum.Value, n int, fin bool, cause event.SendCause, attempt int, push bool) {
	flags := header.TCPFlagAck
	if n > 0 && (push || seq.Add(seqnum.Size(n)) == e.sndEnd() && e.pushAtEnd()) {
		flags |= header.TCPFlagPsh
	}
	if fin {
		flags |= header.TCPFlagFin
	}
	e.sendSegmentN(cause, attempt, flags, seq, e.sndData(seq, n), nil)
}

// A train is a run of new segments output sends back to back, cut where
// Linux would cut its GSO packets (gsoSegs). Linux marks the last segment
// of every GSO packet of more than one segment PSH (tcp_transmit_skb:
// "force a PSH flag on all (GSO) packets to expedite GRO flush at
// receiver"), so a Linux receiver's GRO delivers the train at once
// instead of waiting for more, and a packetdrill script sees the PSH
// where Linux puts it. Segments are held until output knows whether
// another follows them in the train; their state (SND.NXT, the
// retransmission queue) moved when they were planned, so only the packets
// wait, and never past output.
//
// Where the link segments for us (gsoSegsMax > 1: a TAP with offloads, a
// pipe with WithPipeGSO), the held segments of a train go as one packet
// of up to 64 KiB, a GSO super-segment that the link (the kernel, a NIC)
// cuts into the wire segments the engine planned, as Linux's
// tcp_write_xmit hands tcp_transmit_skb one skb of several MSS. Only the
// packet is shared: the retransmission queue, SACK scoreboard and RACK
// hold one record per wire segment, a retransmission is one segment, and
// every wire segment has its own send event and counters.
type train struct {
	count int // segments in the train so far, the held ones included
	limit int // segments in one train: gsoSegs when output began

	// The held run: segments not yet built, contiguous from seq, n
	// bytes in all, each seg bytes but the last, which may be shorter
	// (and carry the FIN). segs is 0 when nothing is held.
	seq   seqnum.Value
	n     int
	seg   int
	segs  int
	fin   bool
	cause event.SendCause
	max   int // segments one packet may carry: gsoSegsMax when output began
}

// trainStarts reports whether the next segment starts a packet: no run
// of segments is held for one, or the held run is a full packet (always,
// without GSO: a packet is one segment).
func (e *Endpoint) trainStarts() bool {
	t := e.train
	return t == nil || t.segs == 0 || t.segs >= t.max
}

// framesPending is how many frames e has made and not yet handed to the
// link: the packets queued for flush (outq) and the segments the train
// holds, not yet built, each counted as a frame (with GSO they will be
// fewer).
func (e *Endpoint) framesPending() int {
	n := len(e.outq)
	if e.train != nil {
		n += e.train.segs
	}
	return n
}

// gsoSegs is how many segments Linux puts in one GSO packet
// (tcp_tso_autosize): about a millisecond's worth at the pacing rate
// (sk_pacing_shift 10: rate/1024), at least MinGSOSegments (Linux's
// tcp_min_tso_segs, 2), plus a share of 64 KiB on paths under 16 ms of
// minimum RTT (tcp_tso_rtt_log 9), at most 64 KiB. The pacing rate
// (pacingRate, pacing.go) is cwnd segments per SRTT, doubled in slow
// start below half ssthresh and 1.2 times after (tcp_update_pacing_rate),
// at most SetMaxPacingRate's; before an RTT sample it is that cap, or
// unbounded. Nor does a packet take more than half the congestion window
// (tcp_cwnd_test). BBR sets the least itself (bbr_min_tso_segs).
func (e *Endpoint) gsoSegs() int {
	const gsoMax = 1 << 16
	mss := max(e.sndMSS, 1)
	bytes := gsoMax
	rate := e.pacingRate()
	minSegs := e.proto.opts.MinGSOSegments
	if b, ok := e.cc.(*bbr); ok {
		minSegs = b.minGSOSegments(rate)
	}
	if rate > 0 {
		bytes = int(min(rate>>10, gsoMax))
		if r := e.rack.minRTT.v.Microseconds() >> 9; e.rack.minRTT.v > 0 && r < 32 {
			bytes = min(bytes+gsoMax>>r, gsoMax)
		}
	}
	segs := max(min(max(bytes/mss, minSegs), gsoMax/mss), 1)
	// At most half the congestion window in one packet, so that at
	// least two are in flight (tcp_cwnd_test: "for better scheduling,
	// ensure we have at least 2 GSO packets in flight").
	return min(segs, max(int(e.cwnd)/mss/2, 1))
}

// gsoSegsMax is how many full segments one packet may carry on the
// connection's route: 1 when the link does not segment (each segment is
// its own packet), else as many as fit the link's largest super-frame
// (stack.GSOEndpoint.GSOMaxSize, IP header included) beside the
// headers.
func (e *Endpoint) gsoSegsMax() int {
	r := e.route
	if r == nil || !(r.HasHostGSOCapability() || r.HasGVisorGSOCapability()) {
		return 1
	}
	hdrs := int(r.MaxHeaderLength()) + header.TCPMinimumSize + header.TCPOptionsMaximumSize
	return max((int(r.GSOMaxSize())-hdrs)/max(e.sndMSS, 1), 1)
}

// sendNew transmits new data at seq, through the train while output runs.
func (e *Endpoint) sendNew(seq seqnum.Value, n int, fin bool, cause event.SendCause) {
	if e.train == nil || n == 0 {
		e.trainEnd()
		e.transmit(seq, n, fin, cause, 0, false)
		return
	}
	t := e.train
	if t.segs > 0 && !t.joins(seq, n, cause) {
		e.sendHeld(false)
	}
	if t.segs == 0 {
		t.seq, t.n, t.seg, t.fin, t.cause = seq, 0, n, false, cause
	}
	t.n += n
	t.segs++
	t.fin = fin
	t.count++
	if t.count >= t.limit {
		e.trainEnd() // a full GSO packet
	}
}

// joins reports whether the segment at seq of n bytes may ride in the held
// packet: it follows the held run, which so far is all full segments and
// has room, and is no longer than they are (a GSO packet's segments are
// all gso_size but the last).
func (t *train) joins(seq seqnum.Value, n int, cause event.SendCause) bool {
	return t.segs < t.max && !t.fin && cause == t.cause && n <= t.seg &&
		t.n == t.segs*t.seg && seq == t.seq.Add(seqnum.Size(t.n))
}

// sendHeld builds the held run: one packet, a GSO super-segment when it
// holds more than one segment. push puts PSH on its last segment.
func (e *Endpoint) sendHeld(push bool) {
	t := e.train
	switch {
	case t.segs == 1:
		e.transmit(t.seq, t.n, t.fin, t.cause, 0, push)
	case t.segs > 1:
		flags := header.TCPFlagAck
		if push || t.seq.Add(seqnum.Size(t.n)) == e.sndEnd() && e.pushAtEnd() {
			flags |= header.TCPFlagPsh
		}
		if t.fin {
			flags |= header.TCPFlagFin
		}
		e.sendPacket(t.cause, 0, flags, t.seq, e.sndData(t.seq, t.n), nil, t.seg)
	}
	t.segs, t.n = 0, 0
}

// trainEnd sends the held segments, the train's last: with PSH if the
// train had more than one, or if the persist timer forced it out (as
// Linux's tcp_write_wakeup marks its segment).
func (e *Endpoint) trainEnd() {
	t := e.train
	if t == nil {
		return
	}
	e.sendHeld(t.count > 1 || e.swsOverride)
	t.count = 0
}

// output sends what the windows allow (RFC 9293 3.7 and 3.8.6.2.1): first
// the segments deemed lost, lowest first (RFC 6675 NextSeg rule 1, Linux
// tcp_xmit_retransmit_queue), then new data, while a whole segment fits
// in the congestion window (cwndFits, RFC 6675 5 (C)) and new data fits
// the peer's window, in segments of at most the send MSS, with Nagle's
// algorithm (3.7.4) holding back a short segment while data is
// unacknowledged; then, in SACK recovery without RACK, NextSeg's rules 3
// and 4, in that order (rule3Segment, rescueRetransmit).
func (e *Endpoint) output() {
	switch e.state {
	case event.Established, event.CloseWait, event.FinWait1, event.Closing, event.LastAck:
	default:
		return
	}
	opened := e.beginStamp()
	defer e.endStamp(opened)
	if e.pmtuExpires != 0 || e.pmtuGen != e.proto.pmtu.generation() {
		// pmtu.go: the MSS follows a path MTU another connection to
		// the peer learned, and rises again once one expires.
		e.pathMTUChanged()
	}
	limited, sent := false, false
	if e.rtxq.empty() && e.sndNxt.LessThan(e.sndEnd()) && e.sndNxt.LessThan(e.sndUna.Add(seqnum.Size(e.sndWnd))) {
		// New data may leave with none in flight: after an idle
		// spell, the window restarts first (congestion.go), before
		// it sizes the packets.
		if rc := e.rateController(); rc != nil {
			e.rateRestart(rc) // BBR ignores restart after idle (tcp_slow_start_after_idle_check)
		} else {
			now := e.now()
			e.sendStart(now) // cc.go: CUBIC's curve skips the idle spell
			e.restartAfterIdle(now)
		}
	}
	// The train lives while output runs: an idle connection does not
	// carry it (trains are pooled per engine).
	t, _ := e.proto.trains.Get().(*train)
	if t == nil {
		t = new(train)
	}
	*t = train{limit: e.gsoSegs(), max: e.gsoSegsMax()}
	e.train = t
	for range 1 << 16 {
		if t.count == 0 && e.pace != nil && e.outputPending() && e.pacingWait() {
			break // pacing.go: the next packet waits for its time
		}
		if e.frtoNewData {
			// F-RTO step 2.b (RFC 5682 2.1): up to two new segments
			// and nothing else, so that the next ACK, acknowledging
			// data never retransmitted or not, decides (Linux's
			// REXMIT_NEW). With no new data to send, retransmit.
			e.frtoNewData = false
			n := 0
			for n < 2 && e.sendNewData(event.SendData, false) {
				n++
			}
			if n > 0 {
				sent = true
				break
			}
		}
		if i, ok := e.rtxq.nextLost(); ok {
			if !e.cwndFits(e.retransmitSize(i)) {
				limited = true
				break
			}
			cause := event.SendFastRetransmit
			if e.caState == caLoss {
				cause = event.SendRetransmit
			}
			e.retransmitSeg(i, cause)
			sent = true
			continue
		}
		if e.mtup != nil { // path MTU probing (plpmtud.go)
			if probed, wait := e.mtuProbeSend(); probed {
				sent = true
				continue
			} else if wait {
				break
			}
		}
		if e.sendNewData(event.SendData, false) {
			sent = true
			e.sendPacketRest()
			continue
		}
		if i, ok := e.rule3Segment(); ok {
			// RFC 6675 NextSeg rule (3), before the rescue of rule
			// (4): a whole segment, or nothing, as for rule (1).
			if !e.cwndFits(e.retransmitSize(i)) {
				limited = true
				break
			}
			e.retransmitSeg(i, event.SendFastRetransmit)
			sent = true
			continue
		}
		if e.rescueRetransmit() {
			sent = true
			continue
		}
		limited = !e.cwndFits(e.segmentSize())
		break
	}
	e.trainEnd()
	e.train = nil
	e.proto.trains.Put(t)
	e.cwndValidate(limited)
	e.chronoAfterOutput()
	if sent {
		// A new tail: the probe is due 2·SRTT after it (RFC 8985
		// 7.2). Nothing sent leaves the probe where it was, as Linux
		// schedules it only when tcp_write_xmit sent something.
		e.schedulePTO()
	}
}

// sendPacketRest sends, after sendNewData put a full segment of new data
// in the held packet, the full segments that follow it into the same
// packet, while the windows let them: what output's loop would send one
// iteration at a time, with only what can change from one segment to the
// next asked again (the send buffer, the peer's window, the congestion
// window, the room left in the packet and the train), as Linux's
// tcp_write_xmit sizes a TSO packet at once (tcp_cwnd_test,
// tcp_snd_wnd_test), and counts them at once (sentNewRun). Every segment
// still gets its send event, and its record or its place in a merged one
// (rtxqueue.go). It leaves to sendNewData a segment that would be short or
// carry the FIN, start a packet (where TCP small queues ask the link) and
// any segment while a path MTU search runs (its probe may go between
// two) or the window is being reduced (PRR counts each). Over a TAP to the
// kernel, sendNewData segment by segment was 9% of tapstack's CPU sending
// in bulk, most of what its TCP took.
func (e *Endpoint) sendPacketRest() {
	t := e.train
	mss := t.seg
	if t.segs == 0 || t.fin || t.cause != event.SendData || t.n != t.segs*mss ||
		mss != e.segmentSize() || e.mtup != nil || e.reducing() || e.proto.onePerSegment {
		return
	}
	// As many full segments as the packet, the train, the queue, the
	// send buffer, the peer's window and the congestion window take,
	// counted at once: each segment adds its length to what is in
	// flight (cwndFits), and the one that would end the data with the
	// FIN queued is left to sendNewData.
	seq := e.sndNxt
	wndEnd := e.sndUna.Add(seqnum.Size(e.sndWnd))
	pipe := e.inflight()
	if wndEnd.LessThan(seq) || pipe >= e.cwnd {
		return
	}
	k := min(t.max-t.segs, t.limit-t.count, maxInFlightSegments-int(e.rtxq.segs),
		int(seq.Size(e.sndEnd()))/mss, int(seq.Size(wndEnd))/mss, int(e.cwnd-pipe)/mss)
	if k > 0 && e.finQueued && seq.Add(seqnum.Size(k*mss)) == e.sndEnd() {
		k--
	}
	if k > 0 {
		now, ts := e.now(), e.tsNow() // the stamp output holds open
		e.sentNewRun(seq, k, mss, now, ts)
	}
}

// sentNewRun is sentNew for k full segments of mss bytes at seq, all of
// which join the held packet (sendPacketRest counted what fits): the
// train, SND.NXT and the records take them at once.
func (e *Endpoint) sentNewRun(seq seqnum.Value, k, mss int, now tcpip.MonotonicTime, ts uint32) {
	t := e.train
	n := k * mss
	t.n += n
	t.segs += k
	t.count += k
	e.bytesSent += uint64(n)
	e.sndNxt = seq.Add(seqnum.Size(n))
	e.recordSent(seq, k, mss, false, now, ts)
	if t.count >= t.limit {
		e.trainEnd() // a full GSO packet
	}
}

// sentNew puts the new segment at seq of n bytes, with the FIN if fin, in
// the train (sendNew), and on the books: SND.NXT moves past it, and its
// record in the retransmission queue has the time it left, now, our
// TSval, ts, and the delivery state for its rate sample (rate.go).
func (e *Endpoint) sentNew(seq seqnum.Value, n int, fin bool, cause event.SendCause, now tcpip.MonotonicTime, ts uint32) {
	e.sendNew(seq, n, fin, cause)
	e.bytesSent += uint64(n)
	e.sndNxt = seq.Add(seqnum.Size(n))
	if fin {
		e.sndNxt++
	}
	e.recordSent(seq, 1, n, fin, now, ts)
}

// recordSent puts k segments of n bytes at seq, sent at now with TSval ts
// (the last with the FIN if fin), in the retransmission queue, with the
// delivery state for their rate samples (rate.go). A segment that
// continues the burst of the newest record, sent at the same instant in
// the same delivery state (rtxQueue.mergeable, rateSame), joins it while
// the connection is in open state with no path MTU probe out: one record
// then stands for the burst (rtxqueue.go), and an ACK frees it at once.
// Records per segment were 5-6% of a bulk sender's CPU in memory, each
// written on one core and read back by the ACK on the other.
func (e *Endpoint) recordSent(seq seqnum.Value, k, n int, fin bool, now tcpip.MonotonicTime, ts uint32) {
	q := &e.rtxq
	merge := !fin && e.caState == caOpen && (e.mtup == nil || e.mtup.probeSize == 0)
	for k > 0 {
		m := 1
		var s *txSeg
		if merge {
			s = q.mergeable(seq, n, now, ts)
		}
		if s != nil && e.rateSame(s, now) {
			m = min(k, (maxMerged-int(s.len()))/n)
			q.extend(s, m, n)
		} else {
			end := seq.Add(seqnum.Size(n))
			if fin {
				end++
			}
			idle := q.empty()
			e.rateSent(q.push(seq, end, fin, now, ts), now, idle)
		}
		seq = seq.Add(seqnum.Size(m * n))
		k -= m
	}
}

// splitRecords gives the merged bursts of the retransmission queue their
// segments back (rtxQueue.split), before anything treats one alone: the
// caller holds no record index across it.
func (e *Endpoint) splitRecords() {
	if e.rtxq.split() {
		e.proto.stats.RecordSplits.Add(1)
	}
}

// sendNewData sends the segment at SND.NXT if the windows, the MSS, Nagle
// and the FIN rules let it, and reports whether it sent one. A probe
// (the tail loss probe) does not need room in the congestion window.
func (e *Endpoint) sendNewData(cause event.SendCause, probe bool) bool {
	// SACK blocks ride on data segments too (RFC 2018 4): the payload
	// makes room for them, as Linux's tcp_current_mss does.
	return e.sendNewDataN(cause, probe, e.segmentSize())
}

// sendNewDataSized is sendNewData for a segment of up to size bytes, not
// the MSS: a path MTU probe (plpmtud.go).
func (e *Endpoint) sendNewDataSized(cause event.SendCause, size int) bool {
	return e.sendNewDataN(cause, false, size)
}

func (e *Endpoint) sendNewDataN(cause event.SendCause, probe bool, mss int) bool {
	// A FIN alone is not held back by the congestion window, as Linux
	// (tcp_cwnd_test: "don't be strict about the congestion window for
	// the final FIN"): one sequence number, no data.
	finOnly := e.finQueued && e.sndNxt == e.sndEnd()
	if !probe && !finOnly && e.inflight() >= e.cwnd {
		return false // not even a byte fits
	}
	if e.rtxq.full() {
		e.proto.stats.SendQueueFull.Add(1)
		return false
	}
	if !probe && !e.rtxq.empty() && e.route != nil && e.trainStarts() && e.proto.linkBusy(e.route.NICID(), e.framesPending()) {
		// TCP small queues (Linux tcp_small_queue_check): the link's
		// outbound queue holds many frames already, with those not
		// yet handed to it, so new data waits until the link has
		// taken frames out of it, or the next ACK (smallqueues.go),
		// rather than overflow the queue and be refused (refused.go),
		// and rather than add to the delay of every segment after it.
		// Linux counts each socket's bytes below it; a link here says
		// only how busy its queue is, so a connection with data in
		// flight also waits while others fill the queue (with nothing
		// in flight it never waits). It is asked once per packet, at
		// the first segment of a train, as Linux asks once per skb:
		// the segments that join a held run leave in its frame, and
		// asking for each took 3% of a bulk transfer's CPU in memory
		// (the link's counters are written by the goroutine that
		// drains its queue, on the other core).
		e.proto.stats.LinkBusy.Add(1)
		e.holdForRoom()
		return false
	}
	end := e.sndEnd()
	unsent := 0
	if e.sndNxt.LessThan(end) {
		unsent = int(e.sndNxt.Size(end))
	}
	// What the peer's window allows (3.8.6.2.1 counts data only).
	rwnd := 0
	if wndEnd := e.sndUna.Add(seqnum.Size(e.sndWnd)); e.sndNxt.LessThan(wndEnd) {
		rwnd = int(e.sndNxt.Size(wndEnd))
	}
	n := min(unsent, mss, rwnd)
	if !probe && !finOnly && !e.cwndFits(n) {
		// The whole segment must fit in the congestion window; a
		// segment cut to the room left would be a silly one, so it
		// waits for the next ACK, as Linux's whole-packet window does.
		return false
	}
	// The FIN goes out with the last data byte, or alone, once
	// everything before it has been sent (last), if the peer's window
	// has room for it: it occupies a sequence number, and a receiver
	// drops a segment beyond RCV.NXT + RCV.WND, a FIN into a zero window
	// too (3.10.7.4; Linux's tcp_data_queue, TCPZeroWindowDrop). Linux's
	// tcp_snd_wnd_test counts the FIN in the segment's end for the same
	// reason. Short of room the data that fits goes without it, and the
	// FIN waits like data: for the ACK that opens the window, or, with
	// nothing in flight, for the persist timer (3.8.6.1). Sent into the
	// closed window it was in flight, so the persist timer did not run,
	// and its retransmissions alone decided the connection's fate.
	last := e.finQueued && e.sndNxt.Add(seqnum.Size(n)) == end
	fin := last && n < rwnd
	inflight := !e.rtxq.empty()
	if n == 0 && !fin {
		if (unsent > 0 || last) && e.sndWnd == 0 && !inflight && !e.timerArmed(timerPersist) {
			e.startPersist()
		}
		return false
	}
	if n < mss && !fin && n < unsent && n < int(e.maxSndWnd/2) && !probe && !e.swsOverride {
		// Sender-side SWS avoidance (3.8.6.2.1): a short segment the
		// window cuts from more data waits, unless it is half the
		// largest window the peer ever offered. With nothing in
		// flight no ACK will come to open the window, so the persist
		// timer is the override timeout of (d): when it fires, what
		// fits goes (persistTimeout). Linux does the same
		// (tcp_snd_wnd_test, then tcp_write_wakeup).
		if !inflight && !e.timerArmed(timerPersist) {
			e.startPersist()
		}
		return false
	}
	if n < mss && !last && inflight && n == unsent && !e.nodelay && !e.pushOnce && !probe {
		// Nagle (3.7.4): a short segment waits for the outstanding
		// data to be acknowledged, unless the user turned it off. A
		// tail loss probe is exempt, as Linux sends it (TCP_NAGLE_OFF
		// in tcp_send_loss_probe): no ACK is coming to release it. So
		// is the end of the stream, whether the FIN fits with it or
		// waits for room (Linux exempts the FIN's segment).
		return false
	}
	if n < mss && !last && n == unsent && !probe && e.corked() {
		// Corked (cork.go): the short tail waits for more data; with
		// nothing in flight, at most until the persist timer.
		if !inflight && !e.timerArmed(timerPersist) {
			e.startPersist()
		}
		return false
	}
	if cause == event.SendData && n == 0 {
		cause = event.SendFin
	}
	// The time the segment leaves and its TSval clock: a train leaves
	// within microseconds, and output holds a stamp open for all of it
	// (stamp.go), as reading the clock per segment was a seventh of the
	// sender's CPU.
	now, ts := e.now(), e.tsNow()
	if !inflight && e.persistProbes == 0 {
		// The user timeout counts from here (RFC 5482); while probes
		// go unanswered, from the first of them.
		e.progressAt = now
	}
	seq := e.sndNxt
	if n > 0 {
		e.dataSent(now) // delack.go: a reply?
		e.dataSentAt = now
	}
	if e.reducing() {
		e.prrOut += uint64(n)
	}
	e.sentNew(seq, n, fin, cause, now, ts)
	e.stopTimer(timerPersist)
	if !e.timerArmed(timerRetransmit) {
		// RFC 6298 5.1: start the timer when a segment with data (or
		// a FIN) is sent and the timer is not running.
		e.setTimer(timerRetransmit, e.rtoFromNow())
	}
	return true
}

// cwndFits reports whether a segment of n bytes may leave under the
// congestion window: pipe + n ≤ cwnd. RFC 5681 2: a TCP MUST NOT send
// data past SND.UNA + min(cwnd, rwnd); RFC 6675 5 (C) sends while
// cwnd − pipe ≥ 1 SMSS. Linux counts whole packets against a
// whole-packet window (tcp_cwnd_test), which comes to the same: a window
// of 7.5 segments with 7 in flight sends nothing more. With nothing in
// flight a segment always goes if the window is open at all, as Linux's
// window is never below one packet: a window smaller than one segment
// (the MSS grew back after a path MTU expired) would otherwise hold the
// data with no ACK or timer to come.
func (e *Endpoint) cwndFits(n int) bool {
	pipe := e.inflight()
	return pipe < e.cwnd && (pipe == 0 || uint64(pipe)+uint64(n) <= uint64(e.cwnd))
}

// segmentSize is the payload of a full-sized segment: the MSS less the
// SACK blocks it carries (RFC 2018 4), as Linux's tcp_current_mss.
func (e *Endpoint) segmentSize() int {
	return max(e.sndMSS-e.sackOptionSize(), 1)
}

// retransmitSize is the payload of the first segment retransmitSeg would
// send for record i.
func (e *Endpoint) retransmitSize(i uint64) int {
	s := e.rtxq.at(i)
	n := int(s.start.Size(s.end))
	if s.has(segFin) {
		n--
	}
	return min(n, e.sndMSS)
}

// retransmitSeg sends record i of the retransmission queue again, cut to
// the current MSS if the path MTU shrank since it was first sent.
func (e *Endpoint) retransmitSeg(i uint64, cause event.SendCause) {
	q := &e.rtxq
	s := q.at(i)
	dataEnd := s.end
	fin := s.has(segFin)
	if fin {
		dataEnd--
	}
	attempt := int(s.rtx) + 1
	if p := e.mtup; p != nil && p.probeSize != 0 && s.start == p.probeSeq {
		// A path MTU probe sent again, by the tail loss probe or a
		// rule that deemed it lost: it went unanswered, and its data
		// goes in pieces whose acknowledgment says nothing of its
		// size (plpmtud.go).
		e.mtuProbeFailed("unanswered: sent again")
	}
	e.trainEnd() // the new data before it goes first
	for seq, k := s.start, 0; k < 1<<16; k++ {
		n := min(int(seq.Size(dataEnd)), e.sndMSS)
		last := seq.Add(seqnum.Size(n)) == dataEnd
		if e.reducing() {
			e.prrOut += uint64(n)
		}
		e.transmit(seq, n, fin && last, cause, attempt, false)
		// A retransmission's bytes are bytes sent, as Linux's
		// tcpi_bytes_sent counts them (__tcp_transmit_skb; RFC 4898
		// tcpEStatsPerfHCDataOctetsOut: "including retransmitted data").
		e.bytesSent += uint64(n)
		e.retransmitted++
		e.proto.stats.Retransmits.Add(1)
		seq = seq.Add(seqnum.Size(n))
		if last {
			break
		}
	}
	if e.undo.active {
		// One more retransmission a D-SACK must show spurious before
		// the episode can be undone; the first one's TSval dates it
		// for Eifel detection (Linux undo_retrans, retrans_stamp).
		e.undo.retrans++
		if !e.undo.stamped {
			e.undo.stamped, e.undo.stampTS = true, e.tsNow()
		}
	}
	now := e.now()
	e.dataSentAt = now // data left: the restart after idle counts from here, as Linux's lsndtime
	q.retransmitted(i, now, e.tsNow())
	e.rateSent(q.at(i), now, false) // rate.go
	if i == q.head || !e.timerArmed(timerRetransmit) {
		// Linux restarts the timer when the first segment is sent
		// again, so the retransmission has its own full RTO.
		e.setTimer(timerRetransmit, e.rtoFromNow())
	}
}

// startPersist arms the persist timer: the peer's window is closed and
// data waits (RFC 9293 3.8.6.1).
func (e *Endpoint) startPersist() {
	if e.persistProbes == 0 {
		e.progressAt = e.now()
	}
	e.setTimer(timerPersist, e.rtoFromNow())
}

// probesGiveUp ends the connection with ETIMEDOUT, for why, once the
// persist timer's probes went unanswered MaxRetries times (OrphanRetries
// once the user closed) or the user timeout ran out, as Linux's
// tcp_probe_timer decides; it reports whether it did.
func (e *Endpoint) probesGiveUp(why string) bool {
	limit := e.proto.opts.MaxRetries
	if e.userClosed {
		limit = e.proto.opts.OrphanRetries
	}
	if int(e.persistProbes) < limit && !e.userTimedOut() {
		return false
	}
	e.proto.stats.Timeouts.Add(1)
	e.fail(e.timeoutErr(), e.giveUpCause(event.Cause{Kind: event.CauseTimer, Detail: why}))
	return true
}

// persistTimeout sends a zero-window probe (RFC 9293 3.8.6.1) for data or
// a FIN that waits for the window (sendNewDataN). We follow Linux
// (tcp_write_wakeup, tcp_xmit_probe_skb) and probe with an ACK carrying
// SND.UNA-1, which any TCP answers with its current window, instead of
// pushing one byte, or the FIN, past the window. Probes back off like the
// RTO, but for one the link refused, which is tried again in 500 ms
// (windowProbeRefused). As long as the peer answers them the connection
// waits (RFC 1122 4.2.2.17), unless the user has closed it
// (orphanProbesGiveUp); a peer that stays silent for MaxRetries probes
// (OrphanRetries once the user has closed) or past the user timeout has
// gone, and the connection fails with ETIMEDOUT, as Linux's
// tcp_probe_timer decides.
func (e *Endpoint) persistTimeout() {
	if e.resourceProbe {
		e.resourceProbeTimeout() // refused.go
		return
	}
	if !e.state.Synchronized() || e.sndNxt == e.sndEnd() && !e.finQueued {
		return // nothing waits: at SND.NXT = the data's end a FIN queued is unsent
	}
	if e.sndWnd > 0 {
		// A window too small to fill, with nothing in flight: the
		// override timeout of 3.8.6.2.1 (d) sends what fits.
		e.swsOverride = true
		e.output()
		e.swsOverride = false
		return
	}
	if e.probesGiveUp("persist: the peer answered no window probe") || e.orphanProbesGiveUp() {
		return
	}
	e.persistProbes++
	e.sendSegment(event.SendWindowProbe, header.TCPFlagAck, e.sndUna-1, buffer.Buffer{}, nil)
	e.backoff()
	if e.persistBackoff < math.MaxUint8 {
		e.persistBackoff++
	}
	e.setTimer(timerPersist, e.rtoFromNow())
}

// orphanProbesGiveUp ends an orphan behind a zero window, answered or
// not, once its probes have backed off to MaxRTO and OrphanRetries
// times in all, and reports whether it did. RFC 1122 4.2.2.17 keeps a
// connection open while the receiver answers its probes, but nobody will
// read what an orphan waits to deliver: a peer that answers every probe
// with a closed window would hold it, and its send buffer, for ever
// (MaxOrphans bounds how many, not how long). Linux's tcp_probe_timer
// gives a SOCK_DEAD socket up when the backed-off interval has reached
// TCP_RTO_MAX (alive is false) and icsk_backoff, which an answer that
// leaves the window closed does not reset, has reached
// tcp_orphan_retries; with a soft error from ICMP, at once
// (tcp_orphan_retries). It counts in Stats.Timeouts, as Linux's
// tcp_write_err counts TCPAbortOnTimeout, and in
// LimitStats.OrphanProbeAborts. A connection the user has not closed
// keeps the rule of probesGiveUp: kept while it answers.
func (e *Endpoint) orphanProbesGiveUp() bool {
	if !e.userClosed || e.rto < e.proto.opts.MaxRTO {
		return false
	}
	if e.softErr == nil && int(e.persistBackoff) < e.proto.opts.OrphanRetries {
		return false
	}
	e.proto.stats.Timeouts.Add(1)
	e.proto.limits.OrphanProbeAborts.Add(1)
	e.fail(e.timeoutErr(), e.giveUpCause(event.Cause{Kind: event.CauseTimer, Detail: "persist: an orphan's window stayed closed through OrphanRetries probes at the maximum backoff"}))
	return true
}
