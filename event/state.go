package event

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

// NumStates is the number of states: every State is below it.
const NumStates = int(TimeWait) + 1

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

// Synchronized reports whether s is one of the synchronized states of
// RFC 9293 3.5.2: the connection has exchanged SYNs and both sides know
// each other's initial sequence numbers.
func (s State) Synchronized() bool {
	return s >= Established && int(s) < NumStates
}

// CauseKind says what drove a transition: a segment, a timer, a user call
// or the link.
type CauseKind uint8

// The causes of a transition.
const (
	CauseSegment CauseKind = iota + 1
	CauseTimer
	CauseUser
	CauseLink // the interface's link failed (a TAP device deleted or down, a pipe's other end closed)
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
