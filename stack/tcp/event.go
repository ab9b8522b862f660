package tcp

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// ConnID is a connection's 4-tuple as seen from this stack. A listener has
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

// SegKey identifies a segment as it was on the wire: link middleware such
// as the pcap writer matches events to frames with it and Event.Conn.
type SegKey struct {
	Seq, Ack uint32
	Flags    uint8
	Len      int // payload bytes
}

// EventKind says what an Event reports.
type EventKind uint8

// The event kinds.
const (
	EventState             EventKind = iota + 1 // From -> To, with Cause
	EventSend                                   // a segment left, with Send and Segment
	EventDrop                                   // a segment was discarded, with Drop and Segment
	EventQueue                                  // a listener's queues changed, with Queue
	EventRetransmitTimeout                      // the RTO fired; RTO is the new backed-off value
	EventReceive                                // segment text was taken: Note says how (in order, held out of order, ...)
	EventAck                                    // an inbound acknowledgment was processed: Note says what it did ("SND.UNA +2896", "dup ACK #3"), Cwnd and Ssthresh after it
	EventRecovery                               // loss detection or recovery changed course: Note says how (entering fast recovery, lost segments marked, undo), Cwnd and Ssthresh after it
	EventPathMTU                                // an ICMP error lowered the path MTU: Note gives the MTU and the new MSS
)

// QueueInfo is a listener's queue occupancy and limits.
type QueueInfo struct {
	SynQueueLen, SynQueueLimit       int
	AcceptQueueLen, AcceptQueueLimit int
}

// Event is one observable thing the engine did. Which fields are set
// depends on Kind.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Conn    ConnID
	From    State
	To      State
	Cause   Cause
	Send    SendCause
	Drop    DropReason
	Segment SegmentInfo // the segment concerned (Send, Drop); String() gives a tcpdump-style line
	Key     SegKey      // the segment concerned, as on the wire (Send, Drop, and State caused by a segment)
	Queue   QueueInfo
	Note    string // e.g. "SYN queued", "accept queue overflow"
	RTO     time.Duration
	Attempt int // for a retransmission: which one (1 for the first); for a keepalive: the probe number

	// Cwnd and Ssthresh are the congestion window and slow-start
	// threshold in bytes after the event (Ack, Recovery, RetransmitTimeout).
	Cwnd, Ssthresh uint32
	// For EventAck: how far SND.UNA moved, how many bytes the SACK
	// blocks newly covered, and which duplicate ACK this is (RFC 5681 2;
	// 0 when it is not one).
	Acked, Sacked uint32
	DupAck        int
}

// AckString summarizes an EventAck: "SND.UNA +2896, cwnd 14480",
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
	case EventState:
		return fmt.Sprintf("%s %s -> %s (%s)", ev.Conn, ev.From, ev.To, ev.Cause)
	case EventSend:
		if ev.Attempt > 0 {
			return fmt.Sprintf("%s send %s #%d: %s", ev.Conn, ev.Send, ev.Attempt, ev.Segment)
		}
		return fmt.Sprintf("%s send %s: %s", ev.Conn, ev.Send, ev.Segment)
	case EventDrop:
		return fmt.Sprintf("%s drop (%s): %s", ev.Conn, ev.Drop, ev.Segment)
	case EventQueue:
		return fmt.Sprintf("%s %s: syn queue %d/%d, accept queue %d/%d", ev.Conn, ev.Note,
			ev.Queue.SynQueueLen, ev.Queue.SynQueueLimit, ev.Queue.AcceptQueueLen, ev.Queue.AcceptQueueLimit)
	case EventRetransmitTimeout:
		return fmt.Sprintf("%s retransmission timeout, rto %v", ev.Conn, ev.RTO)
	case EventReceive:
		return fmt.Sprintf("%s receive (%s): %s", ev.Conn, ev.Note, ev.Segment)
	case EventAck:
		return fmt.Sprintf("%s ack (%s): %s", ev.Conn, ev.AckString(), ev.Segment)
	case EventPathMTU:
		return fmt.Sprintf("%s %s", ev.Conn, ev.Note)
	case EventRecovery:
		return fmt.Sprintf("%s recovery: %s, cwnd %d, ssthresh %d", ev.Conn, ev.Note, ev.Cwnd, ev.Ssthresh)
	}
	return "unknown event"
}

// Observer receives events. It is never called with an engine lock held:
// a connection's events are queued under its lock and delivered, in the
// order they were made, once the lock is released, usually by the
// goroutine that made them (a link's, a timer's, a user's). So an
// observer may call back into the engine (Info, Stats, Queues, even
// Write), but it should be quick: that goroutine waits for it. Events of
// different connections may be delivered concurrently. An event about an
// outbound segment is delivered before the segment is written to the link
// unless two goroutines work on the connection at once; then it may come
// just after. Endpoint.SyncEvents waits for a connection's events.
type Observer func(Event)

// Stats are the engine's counters. They are per stack, safe to read at any
// time, and never reset.
type Stats struct {
	ActiveOpens    atomic.Uint64
	PassiveOpens   atomic.Uint64
	SegmentsIn     atomic.Uint64
	SegmentsOut    atomic.Uint64
	Retransmits    atomic.Uint64
	ResetsSent     atomic.Uint64
	ResetsReceived atomic.Uint64
	Timeouts       atomic.Uint64 // connections that gave up retransmitting

	// Loss recovery (recovery.go, rack.go), as Linux's TcpExt counters.
	RetransmitTimeouts atomic.Uint64 // data retransmission timer expiries (TCPTimeouts)
	PathMTUReductions  atomic.Uint64 // path MTUs lowered by ICMP (RFC 1191, RFC 8201)
	FastRecoveries     atomic.Uint64 // fast recoveries begun
	TailLossProbes     atomic.Uint64 // tail loss probes sent (TCPLossProbes)
	TLPRecoveries      atomic.Uint64 // losses a probe repaired (TCPLossProbeRecovery)
	DSACKsReceived     atomic.Uint64 // D-SACK blocks received (TCPDSACKRecv)
	Undos              atomic.Uint64 // congestion responses undone as spurious
	SpuriousRTOs       atomic.Uint64 // timeouts F-RTO found spurious (TCPSpuriousRTOs)
	Renegings          atomic.Uint64 // receivers that dropped SACKed data (TCPSACKReneging)
	ReorderingSeen     atomic.Uint64 // connections that saw reordering
	SendQueueFull      atomic.Uint64 // new segments held back: maxInFlightSegments in flight
	Drops              [numDropReasons]atomic.Uint64
	Sends              [numSendCauses]atomic.Uint64
	ListenOverflows    atomic.Uint64 // like Linux ListenOverflows
	ListenDrops        atomic.Uint64 // like Linux ListenDrops
	Listen             ListenStats   // each decision of the SYN and accept queues
}

// Dropped returns how many segments were dropped for reason r.
func (s *Stats) Dropped(r DropReason) uint64 {
	if int(r) >= len(s.Drops) {
		return 0
	}
	return s.Drops[r].Load()
}

// Sent returns how many segments were sent with cause c.
func (s *Stats) Sent(c SendCause) uint64 {
	if int(c) >= len(s.Sends) {
		return 0
	}
	return s.Sends[c].Load()
}
