package tcp

import "github.com/tapstack/tapstack/event"

// canSend reports whether the user may still queue data in s (3.10.2).
func canSend(s event.State) bool {
	return s == event.Established || s == event.CloseWait || s == event.SynSent || s == event.SynReceived
}

// segmentCause is the cause a segment gives a state change. Its text
// (the segment, tcpdump-style) is for the observer alone: without one it
// is not made, since formatting it was a sixth of the CPU of opening and
// closing a connection.
func (e *Endpoint) segmentCause(s *segment) event.Cause {
	return e.proto.segmentCause(s)
}

func (p *Protocol) segmentCause(s *segment) event.Cause {
	c := event.Cause{Kind: event.CauseSegment, Key: s.wire}
	if p.opts.Observer != nil {
		c.Detail = s.String()
	}
	return c
}
func timerCause(k timerKind) event.Cause {
	return event.Cause{Kind: event.CauseTimer, Detail: k.String()}
}
func userCause(call string) event.Cause { return event.Cause{Kind: event.CauseUser, Detail: call} }

// transition is the only writer of e.state (RFC 9293 3.3.2, figure 5).
// It takes only an edge of the transition table (transitions.go) driven
// by a cause the table allows, and refuses any other: the state stays,
// and the refusal is counted and reported. Every change is reported to
// the observer with its cause and counted by edge (Stats.Transitions),
// and the side effects that belong to entering a state live here, in one
// place:
// entering ESTABLISHED wakes a dialer or queues the connection for Accept,
// entering TIME-WAIT starts the 2*MSL timer, and entering CLOSED deletes the
// TCB (3.10.7.4: "enter the CLOSED state, delete the TCB").
//
// The caller holds e.mu.
func (e *Endpoint) transition(to event.State, cause event.Cause) {
	from := e.state
	if from == to {
		return
	}
	if !edgeAllowed(from, to, cause.Kind) {
		e.refuseTransition(from, to, &cause)
		return
	}
	e.proto.stats.transitions[from][to].Add(1)
	e.state = to
	e.stateSince = e.now()
	if e.observed() {
		e.emitState(from, to, &cause)
	}

	switch to {
	case event.Established:
		e.wasEstablished = true
		if !e.dataSeen {
			e.lastDataAt = e.stateSince // LastDataRecv counts from here
		}
		if from == event.SynSent {
			e.proto.stats.ActiveOpens.Add(1)
		} else {
			e.proto.stats.PassiveOpens.Add(1)
		}
		if e.listener != nil && !e.listener.established(e) {
			// The listener closed while this handshake completed. As
			// for the connections it had queued (Listener.Close),
			// reset: nobody can accept this one.
			e.listener = nil
			e.sendActiveReset()
			e.transition(event.Closed, cause)
			return
		}
	case event.FinWait2:
		// A connection the user has closed does not wait forever for
		// the peer's FIN (Linux's tcp_fin_timeout; transitions.go).
		if e.userClosed {
			e.setTimer(timerTimeWait, e.proto.opts.FinWait2Timeout)
		}
	case event.TimeWait:
		// 3.10.7.4 eighth step: start the time-wait timer, turn off the
		// other timers. Data still queued can never be acknowledged.
		e.enterTimeWait(cause) // a compact record takes over (timewait.go)
	case event.Closed:
		e.stopAllTimers()
		e.release()
	}
	e.notify()
}

// emitState reports a transition.
func (e *Endpoint) emitState(from, to event.State, cause *event.Cause) {
	ev := event.Event{Kind: event.KindState, Conn: e.connID(), From: from, To: to, Cause: *cause, Key: cause.Key}
	if to == event.Closed {
		// What the user sees, which the cause alone does not say: a
		// timer that gave up reports the ICMP error heard before it
		// (timeoutErr), as Linux's tcp_write_err does.
		ev.Err = e.err
	}
	e.emit(ev)
}

// refuseTransition counts and reports a transition the table does not
// hold (Protocol.refuseTransition).
func (e *Endpoint) refuseTransition(from, to event.State, cause *event.Cause) {
	e.emit(e.proto.refuseTransition(e.connID(), from, to, *cause))
}
