package tcp

import (
	"sync/atomic"

	"github.com/tapstack/tapstack/event"
)

// Stats are the engine's counters. They are per stack, safe to read at any
// time, and never reset.
type Stats struct {
	ActiveOpens    atomic.Uint64
	PassiveOpens   atomic.Uint64
	SegmentsIn     atomic.Uint64
	SegmentsOut    atomic.Uint64 // wire segments: a GSO packet counts each segment it stands for
	Retransmits    atomic.Uint64 // segments sent again, SYNs and SYN-ACKs on their timer included (Linux's RetransSegs)
	ResetsSent     atomic.Uint64
	ResetsReceived atomic.Uint64
	Timeouts       atomic.Uint64 // connections that gave up retransmitting

	// Loss recovery (recovery.go, rack.go), as Linux's TcpExt counters.
	RetransmitTimeouts atomic.Uint64 // data retransmission timer expiries (TCPTimeouts)
	RTOReverts         atomic.Uint64 // RTO backoffs taken back by an ICMP net or host unreachable quoting SND.UNA (RFC 6069, TCP-LD; Linux's tcp_ld_RTO_revert counts none)
	PathMTUReductions  atomic.Uint64 // path MTUs lowered by ICMP (RFC 1191, RFC 8201)
	MTUBlackHoles      atomic.Uint64 // retransmission timeouts that suspected a path MTU black hole and cut the MSS (RFC 4821 7.7; plpmtud.go)
	MTUProbes          atomic.Uint64 // path MTU probes sent (RFC 4821)
	MTUProbeSuccesses  atomic.Uint64 // probes acknowledged: the MSS rose (Linux's TCPMTUPSuccess)
	MTUProbeFailures   atomic.Uint64 // probes lost or timed out: the search narrowed, no congestion (TCPMTUPFail)
	FastRecoveries     atomic.Uint64 // fast recoveries begun
	TailLossProbes     atomic.Uint64 // tail loss probes sent (TCPLossProbes)
	TLPRecoveries      atomic.Uint64 // losses a probe repaired (TCPLossProbeRecovery)
	DSACKsReceived     atomic.Uint64 // D-SACK blocks received (TCPDSACKRecv)
	Undos              atomic.Uint64 // congestion responses undone as spurious
	SpuriousRTOs       atomic.Uint64 // timeouts F-RTO found spurious (TCPSpuriousRTOs)
	Renegings          atomic.Uint64 // receivers that dropped SACKed data (TCPSACKReneging)
	ReorderingSeen     atomic.Uint64 // connections that saw reordering
	IdleRestarts       atomic.Uint64 // windows cut back after an idle spell (RFC 5681 4.1; Linux's tcp_cwnd_restart)
	SendQueueFull      atomic.Uint64 // new segments held back: maxInFlightSegments in flight
	GSOPackets         atomic.Uint64 // packets of several segments handed to a link that segments them (send.go)
	LinkRefused        atomic.Uint64 // wire segments the link refused, its queue full: never sent; new data at the tail taken back, the rest deemed lost (refused.go)
	LinkBusy           atomic.Uint64 // times new data waited, the link's outbound queue busy with the stack's frames (TCP small queues, smallqueues.go)
	LinkRoomSends      atomic.Uint64 // times connections holding such data were let go by the link's word that it took frames out of its queue (a NIC's transmit completion, for Linux's TSQ; smallqueues.go), to send what their windows allow
	ResourceProbes     atomic.Uint64 // tries again, one segment, of what the link refused with nothing left in flight (Linux's probe0 on local congestion, refused.go)
	ECNConnections     atomic.Uint64 // connections that agreed to use ECN at the handshake (RFC 3168 6.1.1; ecn.go)
	CEReceived         atomic.Uint64 // segments with text that arrived marked CE, Congestion Experienced (ecn.go)
	ECNReductions      atomic.Uint64 // windows reduced for the peer's ECN echo: CWR episodes begun (ecn.go)
	AcksDeferred       atomic.Uint64 // ACKs sent at the end of a burst of inbound frames, for text that waited for it (batch.go)
	RecvBufferGrown    atomic.Uint64 // receive buffers grown with their user's reading (rcvbuf.go)
	RoutesFound        atomic.Uint64 // routes asked of the network layer (FindRoute) for connections and replies (routes.go)
	RoutesReused       atomic.Uint64 // routes a new connection or reply took from a live connection instead (routes.go)
	RecordSplits       atomic.Uint64 // times the retransmission queue gave merged bursts their segments back, one record each, before loss detection or recovery needed one alone (rtxqueue.go)
	ChunksReused       atomic.Uint64 // 64 KiB pieces of writes copied into a chunk the send buffer had let go of and nobody held, not one gVisor's pool cleared first (chunkreuse.go)
	StraySegments      atomic.Uint64 // segments handed to a connection a moment after it left for TIME-WAIT or CLOSED, answered as if it had not been found (Protocol.strayArrives)
	Drops              [event.NumDropReasons]atomic.Uint64
	Sends              [event.NumSendCauses]atomic.Uint64
	ListenOverflows    atomic.Uint64 // like Linux ListenOverflows
	ListenDrops        atomic.Uint64 // like Linux ListenDrops
	Listen             ListenStats   // each decision of the SYN and accept queues

	// TransitionsRefused counts state changes the engine asked for that
	// its transition table (transitions.go) does not hold: a bug, refused
	// (the state stays) and reported as a KindTransitionRefused event.
	TransitionsRefused atomic.Uint64
	// RecoveryMovesRefused counts moves between loss recovery's states
	// (open, CWR, fast recovery, RTO recovery) that its table, caMoves
	// in recovery.go, does not hold: a bug, refused likewise.
	RecoveryMovesRefused atomic.Uint64

	transitions, refused [event.NumStates][event.NumStates]atomic.Uint64
}

// Transitions returns how many connections moved from from to to.
func (s *Stats) Transitions(from, to event.State) uint64 {
	if int(from) >= event.NumStates || int(to) >= event.NumStates {
		return 0
	}
	return s.transitions[from][to].Load()
}

// Refused returns how many state changes from from to to were refused:
// the edge is not in the transition table.
func (s *Stats) Refused(from, to event.State) uint64 {
	if int(from) >= event.NumStates || int(to) >= event.NumStates {
		return 0
	}
	return s.refused[from][to].Load()
}

// Dropped returns how many segments were dropped for reason r.
func (s *Stats) Dropped(r event.DropReason) uint64 {
	if int(r) >= len(s.Drops) {
		return 0
	}
	return s.Drops[r].Load()
}

// Sent returns how many segments were sent with cause c.
func (s *Stats) Sent(c event.SendCause) uint64 {
	if int(c) >= len(s.Sends) {
		return 0
	}
	return s.Sends[c].Load()
}
