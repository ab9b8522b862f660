package tcp

import (
	"strconv"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
)

// Segments the link refused. A link whose outbound queue is full
// (tap.Pipe's, a TAP device's writer queue) takes the frames it has room
// for and answers tcpip.ErrNoBufferSpace for the rest: those never left.
// Linux meets the same in __tcp_transmit_skb when the qdisc answers
// NET_XMIT_DROP (local congestion): the segment stays unsent in the
// write queue, tcp_write_xmit stops, and the sender enters CWR
// (tcp_enter_cwr), where the congestion control picks ssthresh and PRR
// brings the window down to it as after a loss, with nothing to undo:
// the queue that overflowed is the sender's own, and no D-SACK or
// timestamp will ever say otherwise.
//
// The engine builds segments under the connection's lock and writes them
// after releasing it (flush), so when the link refuses one, SND.NXT has
// moved past it. What the engine does comes as near to Linux as that
// allows:
//   - new data at the tail of what was sent, with nothing sent after it,
//     is taken back (takeBackRefused): SND.NXT returns to its first
//     byte, its records leave the retransmission queue, and the bytes
//     wait in the send buffer to go again, as Linux's stay in its write
//     queue. The window comes down as in CWR;
//   - a refused segment that something sent later overtook (later data,
//     or a bare ACK, which carries SND.NXT past it) cannot be taken
//     back: it is deemed lost at once, and fast recovery starts with no
//     undo record. RACK would find it lost too, but only once a
//     segment sent after it is delivered, which never happens when the
//     link refused the whole tail of a burst;
//   - a refused retransmission is lost again, waiting to go; but a
//     refused copy of a segment not deemed lost (a tail loss probe's
//     copy, RFC 6675's rescue retransmission) leaves the segment as it
//     was, its first copy in flight, as Linux's tcp_send_loss_probe
//     leaves it when __tcp_retransmit_skb fails. The window comes down
//     as in CWR.
//
// Then, when nothing is left in flight, no ACK will come to send the
// rest: Linux's probe0 timer tries one segment again after an RTO, then
// every 500 ms (TCP_RESOURCE_PROBE_INTERVAL) while the link refuses it,
// without backoff, counting the tries (tcpi_probes) against
// tcp_retries2 and TCP_USER_TIMEOUT, the user timeout from the first
// try (tcp_send_probe0, tcp_probe_timer). The engine does the same on
// its persist timer (resourceProbeTimeout). Where a retransmission the
// RTO sent is refused, Linux tries again in 500 ms without doubling the
// RTO; the engine has doubled it already when the refusal comes back,
// and keeps it so. A zero-window probe the link refused is tried again
// in 500 ms, counted but not backed off, as Linux's tcp_send_probe0 does
// (windowProbeRefused).
//
// Each answer is the refused copy's: the engine learns of a refusal once
// the write pass is over, and a retransmission of the same segment made
// meanwhile, by another goroutine or later in the pass, is a newer copy,
// which the answer leaves alone (deemRefusedLost).
//
// It happens in memory: once a fault middleware turns tap.Pipe's
// segmentation offload off, every segment is a frame, and CUBIC's window
// outgrows the pipe's 1,024 frames. It happens over a TAP whose kernel
// side does not read.

// refusal is what a refused packet carried: the sequence space of its
// segments (SYN and FIN included), and how many wire segments it stood
// for (a GSO packet, several).
type refusal struct {
	seq      seqnum.Value
	len      seqnum.Size
	segments int
	key      event.SegKey // its first wire segment, as a capture sees it
	cwr      bool         // it carried CWR (RFC 3168 6.1.2), which must go again
	no       uint16       // its number among the connection's refused packets with data or a FIN (numberRefusal); 0 for another
}

// numberRefusal numbers ref among the packets with data or a FIN that the
// link refused the connection, from 1, and from 1 again after 65535
// (linkRefusals). Its event carries the number of the packet its key is
// from (Event.Attempt), and a capture numbers the frames its link refused
// the same way: so it tells the refused frame from another copy of the
// segment with the same key, a retransmission the link took or the same
// data refused again once taken back, which may reach it before the
// event does (pcap's refusalNote). A SYN or SYN-ACK is not counted: a
// listener answers with a cookie before the connection exists. The caller
// holds outMu.
func (e *Endpoint) numberRefusal(ref refusal) refusal {
	if ref.key.Flags&event.FlagSyn != 0 || ref.key.Len == 0 && ref.key.Flags&event.FlagFin == 0 {
		return ref
	}
	e.linkRefusals++
	if e.linkRefusals == 0 {
		e.linkRefusals = 1
	}
	ref.no = e.linkRefusals
	return ref
}

// overtaken is the end of the sequence space that the packets written
// after a refusal claimed (data, or the SND.NXT a bare ACK carries): the
// wire saw sequence numbers up to there, so a refused record that
// starts below it cannot be taken back. Its zero value: nothing written
// after.
type overtaken struct {
	end seqnum.Value
	set bool
}

// add counts a packet written after the refusal, as refusalOf read it.
func (o *overtaken) add(r refusal) {
	if end := r.seq.Add(r.len); !o.set || o.end.LessThan(end) {
		o.end, o.set = end, true
	}
}

// covers reports whether the wire saw sequence numbers past start.
func (o overtaken) covers(start seqnum.Value) bool {
	return o.set && start.LessThan(o.end)
}

// afterRefusal is what the packets written after a pass's first refusal,
// or queued to be written after it, claimed (writeAfterRefusal,
// linkRefused): the sequence space the ones the link took overtook, and
// the copies among them all, taken or refused, of sequence space an
// earlier packet of the pass carried: retransmissions built while the
// pass was under way. The answer to a refusal comes once the pass is
// over, and a record a newer copy left since is not the refused copy's
// any more (deemRefusedLost).
type afterRefusal struct {
	overtaken overtaken
	top       seqnum.Value // the end of the sequence space the pass carried so far
	topSet    bool
	copies    []laterCopy
}

// laterCopy is a packet that carried sequence space a packet before it
// in the pass carried: [start, end), after how many of its refusals.
type laterCopy struct {
	start, end seqnum.Value
	after      int
}

// wrote counts a packet of the pass, as refusalOf read it, written (or
// queued) after refusals of its packets. New data only moves top up, so
// copies holds the packets that went back below it, which are few: the
// cost of copiedAfter is theirs, not the pass's.
func (a *afterRefusal) wrote(r refusal, refusals int) {
	if r.len == 0 {
		return // a bare ACK or a window probe: no copy of anything
	}
	end := r.seq.Add(r.len)
	if a.topSet && r.seq.LessThan(a.top) {
		a.copies = append(a.copies, laterCopy{start: r.seq, end: end, after: refusals})
	}
	if !a.topSet || a.top.LessThan(end) {
		a.top, a.topSet = end, true
	}
}

// copiedAfter reports whether a packet written or queued after the
// pass's refusal k carried any of [start, end).
func (a *afterRefusal) copiedAfter(k int, start, end seqnum.Value) bool {
	for _, c := range a.copies {
		if c.after > k && c.start.LessThan(end) && start.LessThan(c.end) {
			return true
		}
	}
	return false
}

// refusalOf reads a refusal from the TCP header and payload of pkt, as
// buildPacket made it.
func refusalOf(pkt *stack.PacketBuffer) refusal {
	h := header.TCP(pkt.TransportHeader().Slice())
	if len(h) < header.TCPMinimumSize {
		return refusal{segments: 1}
	}
	n := pkt.Data().Size()
	f := h.Flags()
	ref := refusal{seq: seqnum.Value(h.SequenceNumber()), len: seqnum.Size(n), segments: 1,
		key: event.SegKey{Seq: h.SequenceNumber(), Ack: h.AckNumber(), Flags: event.Flags(f), Len: n},
		cwr: f&header.TCPFlagCwr != 0}
	if mss := int(pkt.GSOOptions.MSS); pkt.GSOOptions.Type != stack.GSONone && mss > 0 && n > mss {
		// The link cuts it as tcp_gso_segment does: PSH and FIN
		// on the last segment only (sendPacket).
		ref.segments = (n + mss - 1) / mss
		ref.key.Len = mss
		ref.key.Flags = event.Flags(f &^ (header.TCPFlagPsh | header.TCPFlagFin))
	}
	if f&header.TCPFlagSyn != 0 || f&header.TCPFlagFin != 0 {
		ref.len++
	}
	return ref
}

// linkRefused takes back the refused new data at the tail, deems lost
// the other refused segments but the copies of segments still in flight,
// reduces the window (CWR, or fast recovery for a loss) and, when nothing is left in flight, starts the probes
// that try again. A refused segment with no sequence space (a bare ACK,
// a window update) is only counted: the next segment carries the same
// news. later holds what the packets written after the first refusal
// claimed. The caller holds e.mu.
func (e *Endpoint) linkRefused(refs []refusal, later *afterRefusal) {
	if !e.state.Synchronized() {
		return
	}
	if e.rtxq.empty() {
		e.windowProbeRefused(refs)
		return
	}
	e.splitRecords() // refusals are per packet; a merged burst may span two
	// Packets built since by another goroutine, waiting in the output
	// queue, reach the wire after the refused ones: they overtake them
	// as surely as those the link took, and a copy among them is newer
	// than every refused one.
	for _, pkt := range e.outq {
		r := refusalOf(pkt)
		later.overtaken.add(r)
		later.wrote(r, len(refs))
	}
	taken, first := e.takeBackRefused(refs, later.overtaken)
	lost, copies, firstLost := e.deemRefusedLost(refs, later)
	if taken == 0 && lost == 0 && copies == 0 {
		return
	}
	if first == nil || firstLost != nil && firstLost.seq.LessThan(first.seq) {
		first = firstLost
	}
	real := lost > 0 // a reduction no D-SACK or timestamp may undo
	var recovery, cwr bool
	switch {
	case lost > 0:
		if e.caState == caOpen || e.caState == caCWR {
			e.startRecovery()
			recovery = true
		}
	default:
		if e.caState == caOpen {
			// Linux tcp_enter_cwr: the window comes down, nothing is
			// lost, and there is nothing to undo (undo_marker = 0).
			// Already reducing, Linux changes nothing.
			e.initCwndReduction()
			e.setCAState(caCWR)
			real = true
			cwr = true
		}
	}
	if real {
		// The congestion is real: no D-SACK, timestamp or F-RTO may
		// call the episode spurious.
		e.undo.active = false
	}
	e.frto = false // F-RTO judges by new data that left
	if e.caState == caRecovery && lost > 0 {
		e.prr(0, lost, false)
		e.schedulePTO()
	}
	if e.inflight() == 0 && (lost == 0 || e.caState == caLoss || e.persistProbes > 0) {
		// Nothing left to draw an ACK: Linux's probe0 for refused new
		// data, its 500 ms for a refused retransmission of the RTO's;
		// and the next try when a try was refused. A segment deemed
		// lost otherwise has fast recovery's probe timer (above).
		e.startResourceProbe()
	}
	if e.observed() {
		// Keyed to the first refused segment, and numbered: a capture
		// puts it on that frame, not on whichever comes next, nor on
		// another refused copy of it (numberRefusal).
		e.emit(event.Event{Kind: event.KindRecovery, Conn: e.connID(), Note: refusedNote(lost, taken, copies, recovery, cwr), Cwnd: e.cwnd, Ssthresh: e.ssthresh, Key: first.key, Attempt: int(first.no)})
	}
}

// windowProbeRefused answers the refusal of a zero-window probe
// (persistTimeout: an ACK carrying SND.UNA-1, no data, while data waits
// for a closed window with nothing in flight), if refs holds one.
// persistTimeout backed the timer off when it sent the probe, as for one
// that left, before the refusal could be known. Linux's tcp_send_probe0
// learns of a local drop from tcp_write_wakeup at once, and then counts
// the probe (icsk_probes_out) but does not back off (icsk_backoff), and
// tries again in 500 ms (TCP_RESOURCE_PROBE_INTERVAL), no later than the
// user timeout ends (tcp_clamp_probe0_to_user_timeout). So the backoff is
// taken back, the RTO halved and persistBackoff with it (exact unless the
// doubling stopped at MaxRTO: the next probe's doubling reaches it again
// all the same), and the timer set to 500 ms. The probe stays counted,
// against MaxRetries and the user timeout (probesGiveUp): a link that
// refuses every probe ends the connection, its tries 500 ms apart.
func (e *Endpoint) windowProbeRefused(refs []refusal) {
	if e.sndWnd != 0 || e.resourceProbe || e.persistProbes == 0 || !e.timerArmed(timerPersist) {
		return // no probe was out: the window opened since, or none waits
	}
	for _, r := range refs {
		if r.len != 0 || r.seq != e.sndUna-1 {
			continue
		}
		e.rto = max(e.rto/2, e.minRTO())
		if e.persistBackoff > 0 {
			e.persistBackoff--
		}
		e.setTimer(timerPersist, e.withinUserTimeout(resourceProbeInterval))
		// Not keyed to the refused probe: a capture numbers only
		// refused frames with data or a FIN (numberRefusal), so the
		// note goes on the connection's next frame, the next probe.
		e.emitRecovery("the link refused the zero-window probe, its queue full: the next in 500 ms, not backed off (Linux's tcp_send_probe0)")
		return
	}
}

// refusedNote says what linkRefused did: lost segments deemed lost,
// taken the ones taken back to go again and copies the copies of
// segments whose first copy is in flight, in fast recovery or CWR if it
// began either. Made only for an observer: a stack nobody watches
// allocates nothing when its link refuses.
func refusedNote(lost, taken, copies int, recovery, cwr bool) string {
	what := "the link refused " + plural(lost+taken+copies, "segment") + ", its queue full: "
	switch {
	case taken == 0 && copies == 0:
		what += "deemed lost"
	case lost == 0 && copies == 0:
		what += "not sent, to go again"
	case lost == 0 && taken == 0 && copies == 1:
		what += "a copy, not sent: the first is still in flight"
	case lost == 0 && taken == 0:
		what += "copies, not sent: the first ones are still in flight"
	default:
		var parts []string
		if lost > 0 {
			parts = append(parts, strconv.Itoa(lost)+" deemed lost")
		}
		if taken > 0 {
			parts = append(parts, strconv.Itoa(taken)+" not sent")
		}
		if copies > 0 {
			parts = append(parts, strconv.Itoa(copies)+" copies not sent")
		}
		what += strings.Join(parts, ", ")
	}
	switch {
	case recovery:
		what = "fast recovery: " + what
	case cwr:
		what = "CWR: " + what + " (local congestion)"
	}
	return what
}

// takeBackRefused takes back the refused new data at the tail of the
// retransmission queue: records of first transmissions, not SACKed,
// that a refused packet covers, from the newest down, and that no packet
// the link took after the refusal overtook. A packet overtakes a record
// when the sequence space it claims ends past the record's start: later
// data, or a bare ACK, which carries SND.NXT as it was when built, past
// the refused data. The peer saw that number; taking the data back would
// show it sequence numbers going backwards, which Linux, whose SND.NXT
// never passes unsent data, never shows. SND.NXT returns to the first
// byte taken back, which waits in the send buffer; a FIN taken back goes
// again after it. It returns how many records went and the refusal the
// first of them came from.
func (e *Endpoint) takeBackRefused(refs []refusal, after overtaken) (int, *refusal) {
	q := &e.rtxq
	n := 0
	var first *refusal
	for !q.empty() {
		s := q.at(q.tail() - 1)
		if s.flags&(segSacked|segLost|segRetrans|segEverRetrans) != 0 {
			break // SACKed, lost or sent again: not a plain first transmission
		}
		if after.covers(s.start) {
			break // overtaken: the wire saw sequence numbers past it
		}
		ref := refusedCovering(refs, s.start, s.end)
		if ref == nil {
			break // it left: what came before it cannot be taken back
		}
		data := uint64(s.len())
		if s.has(segFin) {
			data--
		}
		e.bytesSent -= data
		if e.reducing() {
			e.prrOut -= min(e.prrOut, data) // PRR counts what left
		}
		if p := e.mtup; p != nil && p.probeSize != 0 && s.start == p.probeSeq {
			p.probeSize = 0 // the probe never left: it says nothing of the path
		}
		if ref.cwr {
			e.ecnQueueCWR() // the CWR flag goes on the next new data
		}
		e.sndNxt = s.start
		q.popBack()
		first = ref
		n++
	}
	if n > 0 && q.empty() {
		e.stopTimer(timerRetransmit)
		e.stopTimer(timerProbe)
		e.rack.tlpOut = false
	}
	return n, first
}

// refusedCovering returns the refusal whose sequence space holds all of
// [start, end), if any.
func refusedCovering(refs []refusal, start, end seqnum.Value) *refusal {
	for k := range refs {
		r := &refs[k]
		if r.len > 0 && !start.LessThan(r.seq) && end.LessThanEq(r.seq.Add(r.len)) {
			return r
		}
	}
	return nil
}

// deemRefusedLost deems lost the records the refused packets held that
// takeBackRefused left: segments sent again, or overtaken by a later
// one.
//
// The answer is the refused copy's alone: a record of which a newer copy
// was built after it (later.copiedAfter), while the pass that was
// refused went on or before its answer came, is that copy's, which left
// or whose own refusal answers for it. Linux never meets the case: it
// transmits under the socket lock, and a qdisc's drop is answered before
// any other copy can be made (__tcp_transmit_skb, tcp_retransmit_skb);
// marking the record lost again sent a third copy after the second had
// left.
//
// A refused retransmission of a segment not deemed lost (a tail loss
// probe's copy, RFC 6675's rescue retransmission) never left, and the
// segment's first copy is in flight as before: only the retransmission's
// mark goes (retransmitRefused), as Linux's tcp_retransmit_skb sets
// TCPCB_RETRANS only once the copy is sent, and tcp_send_loss_probe
// leaves the segment as it was when __tcp_retransmit_skb fails. Deeming
// it lost started fast recovery for a segment nothing showed lost.
//
// It returns how many it deemed lost, how many were such copies, and the
// refusal of the first of either.
func (e *Endpoint) deemRefusedLost(refs []refusal, later *afterRefusal) (lost, copies int, first *refusal) {
	q := &e.rtxq
	for k := range refs {
		ref := &refs[k]
		if ref.len == 0 {
			continue
		}
		end := ref.seq.Add(ref.len)
		if !e.sndUna.LessThan(end) {
			continue // acknowledged since: an earlier copy got through
		}
		start := ref.seq
		if start.LessThan(e.sndUna) {
			start = e.sndUna
		}
		i, ok := q.find(start)
		for ; ok && i < q.tail() && q.at(i).start.LessThan(end); i++ {
			switch s := q.at(i); {
			case later.copiedAfter(k, s.start, s.end):
				continue // a newer copy went after the refused one
			case s.awaitingRetransmit() || s.has(segSacked):
				continue // lost and waiting already, or delivered
			case s.has(segRetrans) && !s.has(segLost):
				q.retransmitRefused(i)
				copies++
			default:
				q.markLost(i)
				lost++
			}
			if first == nil {
				first = ref
			}
		}
	}
	return lost, copies, first
}

// resourceProbeInterval is how often a connection whose every segment in
// flight the link refused tries again (Linux's
// TCP_RESOURCE_PROBE_INTERVAL).
const resourceProbeInterval = 500 * time.Millisecond

// startResourceProbe arms the persist timer to try again what the link
// refused, now that nothing is in flight: after an RTO the first time
// (Linux's tcp_probe0_base), 500 ms after each try after that and after
// a refused retransmission of the RTO's, no later than the user timeout
// ends (tcp_clamp_probe0_to_user_timeout). A try
// already armed stays as it is, as Linux's tcp_check_probe_timer leaves
// a pending timer: refusals of every Write do not put it off.
func (e *Endpoint) startResourceProbe() {
	unsent := e.sndNxt.LessThan(e.sndEnd()) || e.finQueued && e.sndNxt == e.sndEnd()
	if e.rtxq.lostWaiting == 0 && !unsent {
		return
	}
	if e.resourceProbe && e.timerArmed(timerPersist) {
		return
	}
	d := max(e.rto, e.minRTO())
	if e.persistProbes > 0 || e.caState == caLoss {
		// After a try, or after the RTO's own retransmission was
		// refused (tcp_retransmit_timer): 500 ms.
		d = e.withinUserTimeout(resourceProbeInterval)
	}
	e.resourceProbe = true
	e.stopTimer(timerRetransmit)
	e.stopTimer(timerProbe)
	e.stopTimer(timerReorder)
	e.setTimer(timerPersist, d)
}

// resourceProbeTimeout is one try of startResourceProbe's: one segment,
// lost data first, else new data, past the congestion window, as Linux's
// tcp_write_wakeup sends it. If the link refuses it too, linkRefused arms
// the next try; if it leaves, the RTO takes over. The first try starts
// the user timeout's clock (Linux's icsk_probes_tstamp), unless the tries
// follow a refused retransmission of the RTO's, whose silence started it
// already (Linux's tcp_write_timeout counts from the first
// retransmission); past it, or past
// MaxRetries tries (OrphanRetries once the user closed), the connection
// fails with ETIMEDOUT, as Linux's tcp_probe_timer decides.
func (e *Endpoint) resourceProbeTimeout() {
	e.resourceProbe = false
	if !e.state.Synchronized() {
		return
	}
	if e.inflight() > 0 {
		// Something left since: its ACK or its RTO takes over
		// (tcp_send_probe0 with packets out).
		e.persistProbes = 0
		return
	}
	if e.persistProbes == 0 && e.retries == 0 {
		e.progressAt = e.now() // not in an RTO's silence, whose clock runs already
	} else if e.probesGiveUp("the link refused every try (local congestion)") {
		return
	}
	mark := len(e.events)
	if i, ok := e.rtxq.nextLost(); ok {
		e.retransmitSeg(i, event.SendRetransmit)
	} else if !e.sendNewData(event.SendData, true) {
		return // nothing can go (a closed window: the zero-window probes take over)
	}
	e.persistProbes++
	e.proto.stats.ResourceProbes.Add(1)
	e.emitRecoveryBefore(mark, "local congestion: try #"+strconv.Itoa(int(e.persistProbes))+" of what the link refused, one segment (Linux's probe0: 500 ms apart, no backoff)")
}
