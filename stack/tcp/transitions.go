package tcp

import (
	"fmt"

	"github.com/tapstack/tapstack/event"
)

// The state machine as data. Every state change the engine makes is an
// edge of this table, checked by transition before it is taken: the
// edges of RFC 9293's state diagram (3.3.2, figure 5), those its text
// adds (a RST, ABORT, a timeout delete the TCB from any state), and the
// engine's departures from both, each with the behaviour it follows
// (Linux's, another RFC's) and why. An edge not in the table is refused:
// the state stays, Stats counts it, and a KindTransitionRefused event says
// which. README.md's state diagram is this table, rendered by
// TestTransitionTableReadme.

// causes is a set of event.CauseKinds: what may drive an edge.
type causes uint8

func (c causes) has(k event.CauseKind) bool { return k < 8 && c&(1<<k) != 0 }

// states is a set of states.
type states uint16

func (s states) has(x event.State) bool { return int(x) < event.NumStates && s&(1<<x) != 0 }

// Sets of causes and states the table uses.
const (
	bySegment causes = 1 << event.CauseSegment
	byTimer   causes = 1 << event.CauseTimer
	byUser    causes = 1 << event.CauseUser
	byLink    causes = 1 << event.CauseLink

	// openStates are the states of a TCB that exists: all but CLOSED and
	// LISTEN.
	openStates states = 1<<event.SynSent | 1<<event.SynReceived | 1<<event.Established | 1<<event.FinWait1 |
		1<<event.FinWait2 | 1<<event.CloseWait | 1<<event.Closing | 1<<event.LastAck | 1<<event.TimeWait
)

func stateSet(ss ...event.State) states {
	var s states
	for _, x := range ss {
		s |= 1 << x
	}
	return s
}

// edge is one row of the transition table.
type edge struct {
	from states
	to   event.State
	by   causes // what may drive it: segment, timer, user call, link
	// what happens, in the RFC's words where it has them
	event string
	// where the edge is written: an RFC section, or the behaviour followed
	rule string
	// departure marks an edge that is not RFC 9293's: Linux's behaviour
	// or another RFC's, for the reason in rule.
	departure bool
	// unused marks an edge the RFC allows that this engine never takes,
	// and why.
	unused string
}

// transitionTable is the table. Read-only: nothing writes it after
// initialization.
var transitionTable = [...]edge{
	// RFC 9293, figure 5.
	{from: stateSet(event.Closed), to: event.Listen, by: byUser, event: "passive OPEN", rule: "RFC 9293 3.10.1",
		unused: "a Listener is made in LISTEN; Listen is its passive OPEN"},
	{from: stateSet(event.Listen), to: event.Closed, by: byUser, event: "CLOSE: delete the TCB", rule: "RFC 9293 3.10.4",
		unused: "Listener.Close; a listener reports no state events"},
	{from: stateSet(event.Closed), to: event.SynSent, by: byUser, event: "active OPEN: send SYN", rule: "RFC 9293 3.10.1"},
	{from: stateSet(event.Listen), to: event.SynReceived, by: bySegment, event: "rcv SYN: send SYN,ACK", rule: "RFC 9293 3.10.7.2",
		unused: "a SYN to a listener makes a new TCB (CLOSED → SYN-RECEIVED); the listener stays in LISTEN"},
	{from: stateSet(event.Listen), to: event.SynSent, by: byUser, event: "SEND: send SYN", rule: "RFC 9293 3.10.2",
		unused: "a listener cannot be turned into an active open (nor can it in the sockets API)"},
	{from: stateSet(event.SynSent), to: event.SynReceived, by: bySegment, event: "rcv SYN (simultaneous open): send SYN,ACK", rule: "RFC 9293 3.10.7.3"},
	{from: stateSet(event.SynSent), to: event.Established, by: bySegment, event: "rcv SYN,ACK of our SYN: send ACK", rule: "RFC 9293 3.10.7.3"},
	{from: stateSet(event.SynSent), to: event.Closed, by: byUser, event: "CLOSE: delete the TCB", rule: "RFC 9293 3.10.4"},
	{from: stateSet(event.SynReceived), to: event.Established, by: bySegment, event: "rcv ACK of our SYN", rule: "RFC 9293 3.10.7.4"},
	{from: stateSet(event.SynReceived), to: event.Listen, by: bySegment, event: "rcv RST (passive OPEN)", rule: "RFC 9293 3.10.7.4",
		unused: "the half-open TCB is deleted (SYN-RECEIVED → CLOSED); its listener never left LISTEN"},
	{from: stateSet(event.SynReceived), to: event.FinWait1, by: byUser, event: "CLOSE: send FIN", rule: "RFC 9293 3.10.4",
		unused: "as in Linux, the FIN waits for the handshake: SYN-RECEIVED → ESTABLISHED → FIN-WAIT-1"},
	{from: stateSet(event.Established), to: event.FinWait1, by: byUser, event: "CLOSE: send FIN", rule: "RFC 9293 3.10.4"},
	{from: stateSet(event.Established), to: event.CloseWait, by: bySegment, event: "rcv FIN: send ACK", rule: "RFC 9293 3.10.7.4; the ACK waits on the delayed-ACK timer, or rides on our FIN, as Linux's tcp_fin"},
	{from: stateSet(event.FinWait1), to: event.FinWait2, by: bySegment, event: "rcv ACK of our FIN", rule: "RFC 9293 3.10.7.4"},
	{from: stateSet(event.FinWait1), to: event.Closing, by: bySegment, event: "rcv FIN: send ACK", rule: "RFC 9293 3.10.7.4"},
	{from: stateSet(event.FinWait2), to: event.TimeWait, by: bySegment, event: "rcv FIN: send ACK", rule: "RFC 9293 3.10.7.4"},
	{from: stateSet(event.CloseWait), to: event.LastAck, by: byUser, event: "CLOSE: send FIN", rule: "RFC 9293 3.10.4"},
	{from: stateSet(event.Closing), to: event.TimeWait, by: bySegment, event: "rcv ACK of our FIN", rule: "RFC 9293 3.10.7.4"},
	{from: stateSet(event.LastAck), to: event.Closed, by: bySegment, event: "rcv ACK of our FIN: delete the TCB", rule: "RFC 9293 3.10.7.4"},
	{from: stateSet(event.TimeWait), to: event.Closed, by: byTimer, event: "2 MSL timeout: delete the TCB", rule: "RFC 9293 3.10.8"},

	// RFC 9293's text.
	{from: stateSet(event.FinWait1), to: event.TimeWait, by: bySegment, event: "rcv FIN that also ACKs our FIN", rule: "RFC 9293 3.10.7.4",
		unused: "the fifth step takes the ACK first (FIN-WAIT-1 → FIN-WAIT-2), then the eighth the FIN (→ TIME-WAIT)"},
	{from: stateSet(event.SynSent, event.SynReceived, event.Established, event.FinWait1, event.FinWait2,
		event.CloseWait, event.Closing, event.LastAck, event.TimeWait), to: event.Closed, by: bySegment,
		event: "rcv acceptable RST: delete the TCB", rule: "RFC 9293 3.10.7.3, 3.10.7.4 (RFC 5961 3.2); in TIME-WAIT not with Options.RFC1337 (RFC 1337 3)"},
	{from: openStates, to: event.Closed, by: byUser, event: "ABORT: send RST where the peer believes in the connection; delete the TCB",
		rule: "RFC 9293 3.10.5"},
	{from: stateSet(event.SynSent, event.SynReceived, event.Established, event.FinWait1, event.FinWait2,
		event.CloseWait, event.Closing, event.LastAck), to: event.Closed, by: byTimer,
		event: "retransmissions, window probes or keepalives unanswered; USER TIMEOUT: delete the TCB",
		rule:  "RFC 9293 3.8.3, 3.8.4, 3.10.8"},

	// Departures.
	{from: stateSet(event.Closed), to: event.SynReceived, by: bySegment, departure: true,
		event: "rcv SYN on a listener: a new TCB sends SYN,ACK",
		rule:  "Linux (request sock): the listener stays in LISTEN and each SYN gets a TCB of its own, in the SYN queue"},
	{from: stateSet(event.Closed), to: event.Established, by: bySegment, departure: true,
		event: "rcv ACK returning a valid SYN cookie: the TCB is rebuilt from it",
		rule:  "RFC 4987 3.6, Linux cookie_v4_check: no state was kept for the SYN"},
	{from: stateSet(event.SynReceived, event.Established, event.CloseWait), to: event.Closed, by: byUser | bySegment, departure: true,
		event: "the listener closed: a queued or half-open connection is reset or forgotten",
		rule:  "Linux inet_csk_listen_stop: nobody can accept it any more"},
	{from: stateSet(event.SynReceived), to: event.Closed, by: bySegment, departure: true,
		event: "final ACK finds the accept queue full, with AbortOnOverflow: send RST",
		rule:  "Linux tcp_abort_on_overflow"},
	{from: stateSet(event.Established, event.FinWait1, event.FinWait2, event.CloseWait, event.SynReceived, event.Closing, event.LastAck), to: event.Closed, by: byUser, departure: true,
		event: "CLOSE with received data unread: send RST, not FIN",
		rule:  "RFC 2525 2.17, Linux tcp_close: the peer learns its data was lost; in CLOSING and LAST-ACK too, after a half-close"},
	{from: stateSet(event.Established, event.FinWait1, event.FinWait2), to: event.Closed, by: bySegment, departure: true,
		event: "rcv new data after the user closed: send RST",
		rule:  "Linux tcp_rcv_state_process (RFC 2525 2.17): the data can never be read"},
	{from: openStates, to: event.Closed, by: byUser, departure: true,
		event: "CLOSE beyond MaxOrphans: send RST",
		rule:  "Linux tcp_max_orphans (TCPAbortOnMemory): an orphan is aborted rather than kept"},
	{from: stateSet(event.FinWait2), to: event.Closed, by: byTimer, departure: true,
		event: "FIN-WAIT-2 timeout of a closed connection: send RST",
		rule:  "Linux tcp_fin_timeout: RFC 9293 lets FIN-WAIT-2 last forever, but nobody can read an orphan's data"},
	{from: stateSet(event.TimeWait), to: event.Closed, by: bySegment, departure: true,
		event: "rcv new SYN above RCV.NXT: the listener takes it, with ISS above the old sequence space",
		rule:  "RFC 1122 4.2.2.13, Linux tcp_timewait_state_process"},
	{from: stateSet(event.TimeWait), to: event.Closed, by: bySegment, departure: true,
		event: "TIME-WAIT not kept: MaxTimeWait connections are in it already",
		rule:  "Linux tcp_max_tw_buckets (TCPTimeWaitOverflow): memory stays bounded under many closes"},
	{from: stateSet(event.SynSent), to: event.Closed, by: bySegment, departure: true,
		event: "rcv ICMP unreachable during the handshake: the dial fails",
		rule:  "RFC 1122 4.2.3.9, RFC 5927, Linux tcp_v4_err: a hard error ends an open, only later ones are soft"},
	{from: openStates, to: event.Closed, by: byLink, departure: true,
		event: "the interface's link failed: fail with ENETDOWN, send nothing",
		rule:  "Linux: a device that goes away takes its connections' routes; blocked calls return at once"},
}

// edgeCauses is transitionTable as a lookup: the causes that may drive
// each edge, none if the edge is not in the table. Read-only.
var edgeCauses = func() (m [event.NumStates][event.NumStates]causes) {
	for _, e := range transitionTable {
		for from := range event.NumStates {
			if e.from.has(event.State(from)) {
				m[from][e.to] |= e.by
			}
		}
	}
	return m
}()

// edgeAllowed reports whether the table holds from -> to driven by a
// cause of kind k.
func edgeAllowed(from, to event.State, k event.CauseKind) bool {
	if int(from) >= event.NumStates || int(to) >= event.NumStates {
		return false
	}
	return edgeCauses[from][to].has(k)
}

// refuseTransition counts and reports a state change the table does not
// hold. It is a bug in the engine if it ever happens: the state stays, so
// the connection goes on in a state the RFC knows, and the event and
// Stats.Refused say which edge was asked for.
func (p *Protocol) refuseTransition(c event.ConnID, from, to event.State, cause event.Cause) event.Event {
	p.stats.TransitionsRefused.Add(1)
	p.stats.refused[from][to].Add(1)
	return event.Event{Kind: event.KindTransitionRefused, Conn: c, From: from, To: to, Cause: cause, Key: cause.Key,
		Note: fmt.Sprintf("%s -> %s by %s is not in the transition table", from, to, cause.Kind)}
}
