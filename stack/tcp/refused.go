package tcp

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
)

// Segments the link refused. A link whose outbound queue is full
// (tap.Pipe's, a TAP device's writer queue) takes the frames it has room
// for and answers tcpip.ErrNoBufferSpace for the rest: those never left.
// Linux meets the same in __tcp_transmit_skb when the qdisc answers
// NET_XMIT_DROP: the segment stays unsent, tcp_write_xmit stops, and the
// sender enters CWR (tcp_enter_cwr), where the congestion control picks
// ssthresh and PRR brings the window down to it as after a loss, with
// nothing to undo: the queue that overflowed is the sender's own, the
// drop is congestion beyond doubt, and no D-SACK or timestamp will ever
// say otherwise.
//
// The engine builds segments under the connection's lock and writes them
// after releasing it (flush), so when the link refuses one, SND.NXT has
// moved past it and later segments may have left. What comes nearest to
// Linux: the refused segments are deemed lost at once, and fast recovery
// starts with no undo record. RACK would find them lost too, but only
// once a segment sent after them is delivered, which never happens when
// the link refused the whole tail of a burst: the probe timer found
// those, 2·SRTT later. It happens in memory: once a fault middleware
// turns tap.Pipe's segmentation offload off, every segment is a frame,
// and CUBIC's window outgrows the pipe's 1,024 frames. The refused
// segments go again as PRR lets them, clocked by the ACKs of those that
// left; when none left, the probe timer, armed here, sends one to draw
// an ACK, and the RTO is behind it.

// refusal is what a refused packet carried: the sequence space of its
// segments (SYN and FIN included), and how many wire segments it stood
// for (a GSO packet, several).
type refusal struct {
	seq      seqnum.Value
	len      seqnum.Size
	segments int
	key      event.SegKey // its first wire segment, as a capture sees it
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
		key: event.SegKey{Seq: h.SequenceNumber(), Ack: h.AckNumber(), Flags: event.Flags(f), Len: n}}
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

// linkRefused deems lost the records of the retransmission queue the
// refused packets held, and starts fast recovery for them if none is
// under way; an episode that a refusal joins can no longer be undone. A
// refused segment with no sequence space (a bare ACK, a window update) is
// only counted: the next segment carries the same news. The caller holds
// e.mu.
func (e *Endpoint) linkRefused(refs []refusal) {
	if !e.state.Synchronized() || e.rtxq.empty() {
		return
	}
	q := &e.rtxq
	lost := 0
	var first *refusal
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
		for ok && i < q.tail() && q.at(i).start.LessThan(end) {
			if !q.at(i).awaitingRetransmit() && !q.at(i).has(segSacked) {
				q.markLost(i)
				lost++
				if first == nil {
					first = ref
				}
			}
			i++
		}
	}
	if lost == 0 {
		return
	}
	what := "the link refused " + plural(lost, "segment") + ", its queue full: deemed lost"
	if e.caState == caOpen || e.caState == caCWR {
		e.startRecovery()
		what = "fast recovery: " + what
	}
	// Linux tcp_enter_cwr: undo_marker = 0. The loss is real: no
	// D-SACK, timestamp or F-RTO may call the episode spurious.
	e.undo.active = false
	e.frto = false
	if e.caState == caRecovery {
		e.prr(0, lost, false)
		e.schedulePTO()
	}
	if e.observed() {
		// Keyed to the first refused segment: a capture puts it on
		// that frame, not on whichever comes next.
		e.emit(event.Event{Kind: event.KindRecovery, Conn: e.connID(), Note: what, Cwnd: e.cwnd, Ssthresh: e.ssthresh, Key: first.key})
	}
}
