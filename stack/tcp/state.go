package tcp

import "fmt"

// State is a connection state, named as RFC 9293 section 3.3.2 names it.
type State uint8

// The states of RFC 9293 3.3.2. Closed is the zero value: a TCB that does
// not exist yet, or no longer does.
const (
	Closed State = iota
	Listen
	SynSent
	SynReceived
	Established
	FinWait1
	FinWait2
	CloseWait
	Closing
	LastAck
	TimeWait
)

var stateNames = [...]string{
	Closed:      "CLOSED",
	Listen:      "LISTEN",
	SynSent:     "SYN-SENT",
	SynReceived: "SYN-RECEIVED",
	Established: "ESTABLISHED",
	FinWait1:    "FIN-WAIT-1",
	FinWait2:    "FIN-WAIT-2",
	CloseWait:   "CLOSE-WAIT",
	Closing:     "CLOSING",
	LastAck:     "LAST-ACK",
	TimeWait:    "TIME-WAIT",
}

// String returns the RFC's name for s, such as "SYN-RECEIVED".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// synchronized reports whether s is one of the synchronized states of
// RFC 9293 3.5.2: the connection has exchanged SYNs and both sides know
// each other's initial sequence numbers.
func (s State) synchronized() bool {
	return s >= Established
}

// canSend reports whether the user may still queue data in s (3.10.2).
func (s State) canSend() bool {
	return s == Established || s == CloseWait || s == SynSent || s == SynReceived
}

// CauseKind says what drove a transition: a segment, a timer or a user call.
type CauseKind uint8

// The causes of a transition.
const (
	CauseSegment CauseKind = iota + 1
	CauseTimer
	CauseUser
	CauseLink // the interface's link failed (Protocol.NICDown)
)

func (k CauseKind) String() string {
	switch k {
	case CauseSegment:
		return "segment"
	case CauseTimer:
		return "timer"
	case CauseUser:
		return "user"
	case CauseLink:
		return "link"
	}
	return "unknown"
}

// Cause names what made a transition happen. Detail is a tcpdump-style
// segment line, a timer name or a user call ("close").
type Cause struct {
	Kind   CauseKind
	Detail string
	Key    SegKey // for CauseSegment: the segment as it arrived
}

func (c Cause) String() string { return c.Kind.String() + " " + c.Detail }

func segmentCause(s *Segment) Cause {
	return Cause{Kind: CauseSegment, Detail: s.String(), Key: s.wire}
}
func timerCause(k timerKind) Cause { return Cause{Kind: CauseTimer, Detail: k.String()} }
func userCause(call string) Cause  { return Cause{Kind: CauseUser, Detail: call} }

// transition is the only writer of e.state (RFC 9293 3.3.2, figure 5).
// Every change is reported to the observer with its cause, and the side
// effects that belong to entering a state live here, in one place:
// entering ESTABLISHED wakes a dialer or queues the connection for Accept,
// entering TIME-WAIT starts the 2*MSL timer, and entering CLOSED deletes the
// TCB (3.10.7.4: "enter the CLOSED state, delete the TCB").
//
// The caller holds e.mu.
func (e *Endpoint) transition(to State, cause Cause) {
	from := e.state
	if from == to {
		return
	}
	e.state = to
	e.stateSince = e.proto.clock.NowMonotonic()
	e.emit(Event{Kind: EventState, Conn: e.connID(), From: from, To: to, Cause: cause, Key: cause.Key})

	switch to {
	case Established:
		e.wasEstablished = true
		if from == SynSent {
			e.proto.stats.ActiveOpens.Add(1)
		} else {
			e.proto.stats.PassiveOpens.Add(1)
		}
		if e.listener != nil && !e.listener.established(e) {
			// The listener closed while this handshake completed. As
			// for the connections it had queued (Listener.Close),
			// reset: nobody can accept this one.
			e.listener = nil
			e.sendReset(e.SndNxt)
			e.transition(Closed, cause)
			return
		}
	case TimeWait:
		// 3.10.7.4 eighth step: start the time-wait timer, turn off the
		// other timers. Data still queued can never be acknowledged.
		e.enterTimeWait(cause) // a compact record takes over (timewait.go)
	case Closed:
		e.stopAllTimers()
		e.release()
	}
	e.notify()
}
