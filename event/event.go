package event

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ConnID is a connection's 4-tuple as seen from one stack. A listener has
// no remote address.
type ConnID struct {
	Local, Remote netip.AddrPort
}

func (c ConnID) String() string {
	if !c.Remote.IsValid() {
		return c.Local.String()
	}
	return c.Local.String() + "-" + c.Remote.String()
}

// SegKey identifies a segment as it was on the wire: link middleware
// such as the pcap writer matches events to frames with it and
// Event.Conn.
type SegKey struct {
	Seq, Ack uint32
	Flags    Flags
	Len      int // payload bytes
}

// Kind says what an Event reports.
type Kind uint8

// The event kinds.
const (
	KindState             Kind = iota + 1 // From -> To, with Cause
	KindSend                              // a segment left, with Send and Segment
	KindDrop                              // a segment was discarded, with Drop and Segment
	KindQueue                             // a listener's queues changed, with Queue
	KindRetransmitTimeout                 // the RTO fired; RTO is the new backed-off value
	KindReceive                           // segment text was taken: Note says how (in order, held out of order, ...)
	KindAck                               // an inbound acknowledgment was processed: Note says what it did ("SND.UNA +2896", "dup ACK #3"), Cwnd and Ssthresh after it
	KindRecovery                          // loss detection or recovery changed course: Note says how (entering fast recovery, lost segments marked, undo), Cwnd and Ssthresh after it
	KindPathMTU                           // an ICMP error lowered the path MTU: Note gives the MTU and the new MSS
	KindTransitionRefused                 // the engine refused a state change From -> To that its transition table does not hold; the state stayed From

	// UDP datagrams (gVisor's transport/udp carries them; the stack
	// observes them, see udp.go). Every inbound datagram that reaches UDP
	// is reported once, by the kind of its outcome; Conn is the datagram's
	// ends from the stack's viewpoint (Local ours) and Key.Len its payload
	// bytes, which with Conn identify its frame.
	KindUDPDeliver // an inbound datagram was queued to a socket (Note: to how many, when more than one)
	KindUDPNoPort  // an inbound datagram for a port no socket holds; Note says whether ICMP port unreachable answers it
	KindUDPDrop    // an inbound datagram was discarded: Drop says why (receive buffer full, bad checksum, malformed header)
	KindUDPSend    // a socket sent a datagram; Conn.Local's address is unspecified when the socket is bound to no address
)

var kindNames = [...]string{
	KindState:             "state",
	KindSend:              "send",
	KindDrop:              "drop",
	KindQueue:             "queue",
	KindRetransmitTimeout: "retransmission timeout",
	KindReceive:           "receive",
	KindAck:               "ack",
	KindRecovery:          "recovery",
	KindPathMTU:           "path MTU",
	KindTransitionRefused: "transition refused",
	KindUDPDeliver:        "udp deliver",
	KindUDPNoPort:         "udp no port",
	KindUDPDrop:           "udp drop",
	KindUDPSend:           "udp send",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// QueueInfo is a listener's queue occupancy and limits.
type QueueInfo struct {
	SynQueueLen, SynQueueLimit       int
	AcceptQueueLen, AcceptQueueLimit int
}

// Event is one observable thing the engine did. Which fields are set
// depends on Kind.
type Event struct {
	Time    time.Time
	Kind    Kind
	Conn    ConnID
	From    State
	To      State
	Cause   Cause
	Send    SendCause
	Drop    DropReason
	Segment SegmentInfo // the segment concerned (Send, Drop); String() gives a tcpdump-style line
	Key     SegKey      // the segment concerned, as on the wire (Send, Drop, State caused by a segment, and Recovery when the link refused it)
	Queue   QueueInfo
	Note    string // e.g. "SYN queued", "accept queue overflow"
	RTO     time.Duration
	// Err is, for a KindState move to CLOSED, the error the connection's
	// user gets from then on (a *net.OpError's Err: syscall.ECONNRESET,
	// ETIMEDOUT, or the ICMP error heard that explains a timeout), nil
	// for an orderly close.
	Err error
	// Attempt is, for a retransmission, which one (1 for the first); for
	// a keepalive, the probe number; for a KindRecovery with Key (the
	// link refused that segment), which of the packets with data or a FIN
	// the link refused the connection it was, from 1, and from 1 again
	// after 65535, as link middleware numbers the frames it saw refused
	// to tell that one from a copy with the same Key.
	Attempt int

	// Cwnd and Ssthresh are the congestion window and slow-start
	// threshold in bytes after the event (Ack, Recovery, RetransmitTimeout).
	Cwnd, Ssthresh uint32
	// For KindAck: how far SND.UNA moved, how many bytes the SACK
	// blocks newly covered, and which duplicate ACK this is (RFC 5681 2;
	// 0 when it is not one).
	Acked, Sacked uint32
	DupAck        int
	// For KindAck: the RTT estimate after the ACK (RFC 6298 2: SRTT and
	// RTTVAR, zero until the first sample), and the bytes in flight as
	// the sender counts them (RFC 6675's pipe: sent, not acknowledged,
	// not SACKed, not deemed lost, plus retransmissions). RTO is set too.
	SRTT, RTTVar time.Duration
	InFlight     uint32
}

// AckString summarizes a KindAck event: "SND.UNA +2896, cwnd 14480",
// "dup ACK #3, SACKed +1448, cwnd 14480; fast retransmit".
func (ev Event) AckString() string {
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
	}
	if ev.Acked > 0 {
		fmt.Fprintf(&b, "SND.UNA +%d", ev.Acked)
	}
	if ev.DupAck > 0 {
		sep()
		fmt.Fprintf(&b, "dup ACK #%d", ev.DupAck)
	}
	if ev.Sacked > 0 {
		sep()
		fmt.Fprintf(&b, "SACKed +%d", ev.Sacked)
	}
	if b.Len() == 0 {
		b.WriteString("no new data acknowledged")
	}
	fmt.Fprintf(&b, ", cwnd %d", ev.Cwnd)
	if ev.Note != "" {
		b.WriteString("; ")
		b.WriteString(ev.Note)
	}
	return b.String()
}

func (ev Event) String() string {
	switch ev.Kind {
	case KindState:
		return fmt.Sprintf("%s %s -> %s (%s)", ev.Conn, ev.From, ev.To, ev.Cause)
	case KindSend:
		s := fmt.Sprintf("%s send %s: %s", ev.Conn, ev.Send, ev.Segment)
		if ev.Attempt > 0 {
			s = fmt.Sprintf("%s send %s #%d: %s", ev.Conn, ev.Send, ev.Attempt, ev.Segment)
		}
		if ev.Note != "" {
			s += " (" + ev.Note + ")"
		}
		return s
	case KindDrop:
		return fmt.Sprintf("%s drop (%s): %s", ev.Conn, ev.Drop, ev.Segment)
	case KindQueue:
		return fmt.Sprintf("%s %s: syn queue %d/%d, accept queue %d/%d", ev.Conn, ev.Note,
			ev.Queue.SynQueueLen, ev.Queue.SynQueueLimit, ev.Queue.AcceptQueueLen, ev.Queue.AcceptQueueLimit)
	case KindRetransmitTimeout:
		return fmt.Sprintf("%s retransmission timeout, rto %v", ev.Conn, ev.RTO)
	case KindReceive:
		return fmt.Sprintf("%s receive (%s): %s", ev.Conn, ev.Note, ev.Segment)
	case KindAck:
		return fmt.Sprintf("%s ack (%s): %s", ev.Conn, ev.AckString(), ev.Segment)
	case KindPathMTU:
		return fmt.Sprintf("%s %s", ev.Conn, ev.Note)
	case KindRecovery:
		return fmt.Sprintf("%s recovery: %s, cwnd %d, ssthresh %d", ev.Conn, ev.Note, ev.Cwnd, ev.Ssthresh)
	case KindTransitionRefused:
		return fmt.Sprintf("%s transition %s -> %s refused: %s (%s)", ev.Conn, ev.From, ev.To, ev.Note, ev.Cause)
	case KindUDPDeliver, KindUDPNoPort, KindUDPDrop, KindUDPSend:
		return ev.udpString()
	}
	return "unknown event"
}

// Observer receives events. The engine never calls it with an engine
// lock held: a connection's events are queued under its lock and
// delivered, in the order they were made, once the lock is released,
// usually by the goroutine that made them (a link's, a timer's, a
// user's). So an observer may call back into the engine (Info, Stats,
// Queues, even Write), but it should be quick: that goroutine waits for
// it. Events of different connections may be delivered concurrently. An
// event about an outbound segment is delivered before the segment is
// written to the link unless two goroutines work on the connection at
// once, or the observer itself calls into it; then it may come just
// after: the segment does not wait for an observer another goroutine is
// in. A connection or a listener queues at most 2,048 events for an
// observer that has fallen behind; the engine drops and counts those
// beyond (tcp.LimitStats.EventsDropped), and stack.NewEventQueue puts a
// bounded queue of the caller's size between the engine and a slow
// consumer. The engine's SyncEvents methods wait for events still on
// their way.
type Observer func(Event)
