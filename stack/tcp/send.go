package tcp

import (
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// sendSegment builds a segment from the TCB and queues it. Every segment
// that carries ACK carries RCV.NXT and our current window, and counts as
// the acknowledgment that a delayed ACK was waiting for. It takes
// ownership of payload. The caller holds e.mu.
func (e *Endpoint) sendSegment(cause SendCause, flags header.TCPFlags, seq seqnum.Value, payload buffer.Buffer, opts []byte) {
	if e.route == nil {
		payload.Release()
		return
	}
	// RFC 7323 3.2: with timestamps in force, the TSopt goes on every
	// segment. A RST may omit it; we send it on the RSTs of a connection
	// (3.2 says SHOULD, and Linux's tcp_send_active_reset does too), not
	// on the replies of replyRST, which has no connection to take it from.
	var optBuf [header.TCPOptionsMaximumSize]byte
	if opts == nil && (e.tsOK || e.sackOK) {
		opts = e.segmentOptions(flags, int(payload.Size()), &optBuf)
	}
	f := outFields{srcPort: e.id.LocalPort, dstPort: e.id.RemotePort, seq: seq, flags: flags, opts: opts}
	if flags&header.TCPFlagAck != 0 {
		f.ack = e.RcvNxt
		e.lastAckSent = e.RcvNxt // Last.ACK.sent, RFC 7323 4.3
		e.unacked = 0
		e.stopTimer(timerDelayedAck)
	}
	if flags&header.TCPFlagRst == 0 {
		if flags&header.TCPFlagSyn != 0 {
			// RFC 7323 2.2: the window field of a SYN is never scaled.
			f.window = uint16(min(e.rcvBufLimit, 0xffff))
			e.RcvWnd = uint32(f.window)
			e.rcvAcc = e.RcvNxt.Add(seqnum.Size(e.RcvWnd))
		} else {
			f.window = e.advertise()
		}
	}
	n := int(payload.Size())
	pkt := buildPacket(e.route, &f, payload)
	attempt := 0
	switch cause {
	case SendRetransmit, SendSynRetransmit, SendSynAckRetransmit:
		attempt = e.retries // the RTO expiries so far: "#2" is the second retransmission
	case SendFastRetransmit:
		attempt = 1
	case SendKeepalive:
		attempt = e.keepProbes
	}
	e.proto.countSent(cause, &f)
	if e.proto.opts.Observer != nil {
		e.emit(sendEvent(e.connID(), cause, &f, n, attempt))
	}
	e.queue(pkt)
}

// sendAck sends a bare ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
func (e *Endpoint) sendAck(cause SendCause) {
	e.sendSegment(cause, header.TCPFlagAck, e.SndNxt, buffer.Buffer{}, nil)
}

// advertise computes the window to put on a segment and records the right
// edge it promises. RFC 9293 3.8.6.2.2: the right edge never moves left
// (no shrinking), and it moves right only in steps of at least
// min(buffer/2, MSS), which is the receiver's half of silly window
// syndrome avoidance.
func (e *Endpoint) advertise() uint16 {
	free := e.rcvBufLimit - int(e.rcvBuf.Size()) - e.ooo.bytes
	if free < 0 {
		free = 0
	}
	promised := 0
	if e.RcvNxt.LessThan(e.rcvAcc) {
		promised = int(e.RcvNxt.Size(e.rcvAcc))
	}
	wnd := promised
	if free-promised >= min(e.rcvBufLimit/2, e.rcvMSS) {
		wnd = free
	}
	raw := wnd >> e.rcvWndShift
	if raw > 0xffff {
		raw = 0xffff
	}
	e.RcvWnd = uint32(raw) << e.rcvWndShift
	if edge := e.RcvNxt.Add(seqnum.Size(e.RcvWnd)); e.rcvAcc.LessThan(edge) {
		e.rcvAcc = edge
	}
	return uint16(raw)
}

// maybeSendWindowUpdate runs after the user read: if the window we would
// advertise has grown by the SWS threshold beyond what we promised while
// the promise had fallen below half the buffer, tell the peer now rather
// than at the next data segment, which may never come (3.8.6.2.2).
func (e *Endpoint) maybeSendWindowUpdate() {
	if !e.state.synchronized() || e.finReceived {
		return
	}
	// The most the window field can say with the agreed scale.
	maxWnd := min(e.rcvBufLimit, 0xffff<<e.rcvWndShift)
	free := min(e.rcvBufLimit-int(e.rcvBuf.Size())-e.ooo.bytes, maxWnd)
	promised := 0
	if e.RcvNxt.LessThan(e.rcvAcc) {
		promised = int(e.RcvNxt.Size(e.rcvAcc))
	}
	if promised < maxWnd/2 && free-promised >= min(maxWnd/2, e.rcvMSS) {
		e.sendAck(SendWindowUpdate)
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
	e.sndBuf.SubApply(off, n, func(v *buffer.View) { _ = out.Append(v.Clone()) })
	return out
}

// sndEnd is the sequence number just past the last byte in the send buffer:
// where the FIN goes.
func (e *Endpoint) sndEnd() seqnum.Value { return e.sndBufSeq.Add(seqnum.Size(e.sndBuf.Size())) }

// transmit sends the data segment at seq of n bytes, with FIN if fin, and
// leaves SND.NXT alone. Data segments carry ACK (3.10.7.4: once
// synchronized, every segment carries the current acknowledgment) and PSH
// when they empty the buffer.
func (e *Endpoint) transmit(seq seqnum.Value, n int, fin bool, cause SendCause) {
	flags := header.TCPFlagAck
	if n > 0 && seq.Add(seqnum.Size(n)) == e.sndEnd() {
		flags |= header.TCPFlagPsh
	}
	if fin {
		flags |= header.TCPFlagFin
	}
	e.sendSegment(cause, flags, seq, e.sndData(seq, n), nil)
}

// output sends what the windows allow (RFC 9293 3.7 and 3.8.6.2.1): up to
// min(SND.WND, cwnd) in flight, in segments of at most the send MSS, with
// Nagle's algorithm (3.7.4) holding back a short segment while data is
// unacknowledged. Segments below the highest sequence ever sent are
// retransmissions after a timeout (go-back-N from SND.UNA). During SACK
// loss recovery, RFC 6675 decides instead (recoveryOutput).
func (e *Endpoint) output() {
	switch e.state {
	case Established, CloseWait, FinWait1, Closing, LastAck:
	default:
		return
	}
	if e.inRecovery && e.sackOK {
		e.recoveryOutput()
		return
	}
	for range 1 << 16 {
		inflight := uint32(e.SndUna.Size(e.SndNxt))
		wnd := min(e.SndWnd, e.cwnd+e.limitedTransmit())
		avail := 0
		if wnd > inflight {
			avail = int(wnd - inflight)
		}
		if !e.sendNext(avail) {
			return
		}
	}
}

// sendNext sends the segment at SND.NXT, of at most avail data bytes, if
// the MSS, Nagle and the FIN rules let it, and reports whether it sent
// one. After go-back-N, data the peer has SACKed since is skipped, not
// sent again.
func (e *Endpoint) sendNext(avail int) bool {
	end := e.sndEnd()
	sackLimited := false
	if e.SndNxt.LessThan(e.sndMax) && e.scoreboard.n > 0 {
		for _, r := range e.scoreboard.ranges() {
			if r.Start.LessThanEq(e.SndNxt) && e.SndNxt.LessThan(r.End) {
				e.SndNxt = r.End // the ranges do not touch: one skip is enough
				continue
			}
			if e.SndNxt.LessThan(r.Start) {
				if d := int(e.SndNxt.Size(r.Start)); d < avail {
					avail, sackLimited = d, true
				}
				break
			}
		}
	}
	unsent := 0
	if e.SndNxt.LessThan(end) {
		unsent = int(e.SndNxt.Size(end))
	}
	inflight := uint32(e.SndUna.Size(e.SndNxt))
	n := min(unsent, e.sndMSS, avail)
	// The FIN goes out with the last data byte, or alone, once
	// everything before it has been sent. It occupies one sequence
	// number but no window (3.8.6.2.1 counts data only).
	fin := e.finQueued && e.SndNxt.Add(seqnum.Size(n)) == end
	if n == 0 && !fin {
		if unsent > 0 && e.SndWnd == 0 && inflight == 0 && !e.timerArmed(timerPersist) {
			e.setTimer(timerPersist, e.rto)
		}
		return false
	}
	if n < e.sndMSS && !fin && inflight > 0 && !sackLimited {
		// Nagle (3.7.4): a short segment waits for the outstanding
		// data to be acknowledged, unless the user turned it off.
		// A window-limited short segment waits too: sender-side
		// SWS avoidance (3.8.6.2.1), unless it is half the largest
		// window the peer ever offered.
		if n < unsent {
			if n < int(e.maxSndWnd/2) {
				return false
			}
		} else if !e.nodelay {
			return false
		}
	}
	cause := SendData
	if n == 0 {
		cause = SendFin
	}
	retransmission := e.SndNxt.LessThan(e.sndMax)
	if retransmission {
		cause = SendRetransmit
		e.retransmitted++
		e.proto.stats.Retransmits.Add(1)
	} else if n > 0 && !e.rttTiming && !e.tsOK {
		// Karn's algorithm (RFC 6298 3): time only new data. With
		// timestamps every ACK of new data is a sample (RFC 7323
		// 4.1), so no segment is timed.
		e.rttTiming = true
		e.rttSeq = e.SndNxt.Add(seqnum.Size(n))
		e.rttStart = e.proto.clock.NowMonotonic()
	}
	e.transmit(e.SndNxt, n, fin, cause)
	if !retransmission {
		e.bytesSent += uint64(n)
	}
	e.SndNxt = e.SndNxt.Add(seqnum.Size(n))
	if fin {
		e.SndNxt++
	}
	if e.sndMax.LessThan(e.SndNxt) {
		e.sndMax = e.SndNxt
	}
	e.stopTimer(timerPersist)
	if !e.timerArmed(timerRetransmit) {
		// RFC 6298 5.1: start the timer when a segment with data (or
		// a FIN) is sent and the timer is not running.
		e.setTimer(timerRetransmit, e.rto)
	}
	return true
}

// persistTimeout sends a zero-window probe (RFC 9293 3.8.6.1). We follow
// Linux (tcp_xmit_probe_skb) and probe with an ACK carrying SND.UNA-1,
// which any TCP answers with its current window, instead of pushing one
// byte past the window. Probes back off like the RTO and go on for as long
// as the peer answers them.
func (e *Endpoint) persistTimeout() {
	if !e.state.synchronized() || e.SndWnd > 0 || e.sndEnd() == e.SndNxt {
		return
	}
	e.sendSegment(SendWindowProbe, header.TCPFlagAck, e.SndUna-1, buffer.Buffer{}, nil)
	e.backoff()
	e.setTimer(timerPersist, e.rto)
}
