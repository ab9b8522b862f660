package tcp

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/event"
)

// ACK once per drained batch. A link that hands the stack bursts of
// frames (a TAP device's reader draining what the kernel queued, a pipe's
// pump) and says when a burst ends (tcpbind.Binding.BatchLink) lets the
// receiver answer a burst of in-order text with one cumulative ACK at its
// end. Only the ACK that "more than one full frame unacknowledged" makes
// due moves (delack.go), and only to the end of the burst in which it
// fell due, which comes before the link waits for more; every ACK the
// RFCs want at once (out-of-order text or a hole filled, RFC 5681 4.2; a
// FIN; a window update; quick-ACK mode; a D-SACK) still goes at once.
//
// Which text waits for the burst's end:
//
//   - Coalesced text, always: a segment longer than our MSS, which a
//     GSO pipe or the TAP's GRO made of many wire segments. Linux ACKs
//     each GRO packet at once, and a link whose super-frames hold ~40
//     segments each then draws one ACK per super-frame, each of which
//     costs the sender a wakeup, a pass through its IP layer and its
//     ACK processing: tapstack to tapstack over a GSO tap.Pipe, 19,200
//     ACKs per GiB against gVisor's 1,800-2,700, and 1.2-1.5x gVisor's
//     CPU per GiB. One ACK per burst is gVisor's rule (its processor
//     ACKs once per batch of segments it handled): 3,900 ACKs per GiB
//     when this rule came, CPU per GiB 1.0x gVisor's. The ACK clock is
//     not starved: the burst ends as soon as the link has nothing
//     queued, so a sender
//     that waits for this ACK gets it at once, and a burst holds several
//     super-frames only when the sender sent them back to back. The
//     burst's first super-frame is ACKed at once, as full-sized text
//     is (below): with the burst's end the only ACK, the kernel sending
//     over a TAP with 1% of the frames lost each way waited for its
//     probe timeout whenever that ACK was lost, then 40 ms for our
//     delayed ACK of the probe's one segment, five times in 64 MiB:
//     3.6 Gbit/s where gVisor's TCP took 9.3 (0.50x, 9 rounds); with
//     the first ACK at once, 16.5 against 11.6 (1.50x, 7 rounds); at 3%
//     each way 0.34-0.35 Gbit/s (0.83-0.92x, two runs of 5 rounds),
//     then 1.8-7.3 (4.3-24x; the kernel's RTOs make the spread). On a
//     clean path the kernel's rate stayed within the runs' noise (0.97x
//     and 1.03x gVisor's in two runs of five 1 GiB rounds; 1.14x and
//     1.04x before), and a GSO tap.Pipe carries 1,290-1,360 ACKs per GiB
//     where it carried 700-760 (gVisor's TCP: 1,730-2,190).
//   - Full-sized text, while the path shows no loss: what Linux's GRO
//     and NAPI polling effectively do on a link without offloads, GRO
//     merging a burst into one segment that draws one ACK. The burst's
//     first ACK still goes at once, at its second full segment, and the
//     rest of the burst is acknowledged at its end: two ACKs a burst.
//     With one, a sender whose whole flight came in one burst heard
//     nothing of it when that ACK was lost, and waited for a probe (5%
//     loss each way, tapstack to tapstack: 44-53 tail loss probes per
//     16 MiB against 4-7 per segment; with the first ACK at once, 7-18).
//     Even so it costs a lossy path's ACK clock (options.go), so text
//     out of order or twice (a hole, a retransmission: enterQuickAck)
//     sends the receiver back to the per-segment rule for the next 1,024
//     ACKs (ackPerBurst, disorderSegmentAcks): at 5% loss each way that
//     is every ACK, and a clean path gets two ACKs per burst. Options
//     AckPerBurst and NoAckPerBurst fix either rule.
//
// Links that do not mark their bursts keep the per-segment rule.

// maxLinkNIC bounds the interface numbers whose links may report to the
// engine: the ends of their bursts (here) and the room in their outbound
// queues (send.go, linkBusy). An interface beyond it keeps the
// per-segment ACK rule and has no small queues.
const maxLinkNIC = 256

// batchState is the engine's side of the bursts: which interfaces mark
// them, and the connections whose ACK waits for a burst's end.
type batchState struct {
	nics    [maxLinkNIC]atomic.Bool
	pending connList // ackAtBatchEnd set
}

// connList is a list of connections that wait for a link's word (the end
// of a burst, room in its queue), each at most once: a flag of its own,
// under its e.mu, says it is in. The word takes the list whole.
type connList struct {
	n     atomic.Int32 // len(list), read without mu: a word with nobody waiting costs a load
	mu    sync.Mutex
	list  []*Endpoint
	spare []*Endpoint // storage given back while list had some (serve's connections waiting again)
}

// mark sets flag, one of e's fields, and puts e in the list, unless the
// flag is set already (e is in the list, and serve clears the flag as it
// takes e out). The caller holds e.mu.
func (l *connList) mark(e *Endpoint, flag *bool) {
	if *flag {
		return
	}
	*flag = true
	l.add(e)
}

// add puts e in the list.
func (l *connList) add(e *Endpoint) {
	l.mu.Lock()
	if l.list == nil {
		l.list, l.spare = l.spare, nil
	}
	l.list = append(l.list, e)
	l.n.Store(int32(len(l.list)))
	l.mu.Unlock()
}

// take empties the list and returns what it held, for giveBack once the
// caller has seen to each.
func (l *connList) take() []*Endpoint {
	l.mu.Lock()
	list := l.list
	l.list = nil
	l.n.Store(0)
	l.mu.Unlock()
	return list
}

// serve takes the list and, for each connection whose flag (one of its
// fields, named by flag) is still set, clears it and calls fn under its
// e.mu, then sends what fn made. It runs on the link's goroutine, or a
// timer's, with no engine lock held.
func (l *connList) serve(flag func(*Endpoint) *bool, fn func(*Endpoint)) {
	list := l.take()
	for _, e := range list {
		e.mu.Lock()
		if f := flag(e); *f {
			*f = false
			fn(e)
		}
		e.mu.Unlock()
		e.flush()
	}
	l.giveBack(list)
}

// giveBack keeps taken's storage for the next waiters: no allocation
// per word in steady state, even where the connections served wait
// again at once (a link still busy), in a list of its own meanwhile.
func (l *connList) giveBack(taken []*Endpoint) {
	clear(taken)
	l.mu.Lock()
	if l.list == nil {
		l.list = taken[:0]
	} else {
		l.spare = taken[:0]
	}
	l.mu.Unlock()
}

// batchLink marks interface nic as one whose link says when a burst of
// frames ends, and returns what the link calls then
// (tcpbind.Binding.BatchLink).
func (p *Protocol) batchLink(nic tcpip.NICID) func() {
	if int(nic) < maxLinkNIC {
		p.batch.nics[nic].Store(true)
	}
	return p.batchEnd
}

// batching reports whether a segment that came in through nic is part of
// a burst whose end the link will mark.
func (p *Protocol) batching(nic tcpip.NICID) bool {
	return int(nic) < maxLinkNIC && p.batch.nics[nic].Load()
}

// deferAck asks for an ACK for e at the end of the current burst, if
// text is then still unacknowledged. The caller holds e.mu.
func (e *Endpoint) deferAck() { e.proto.batch.pending.mark(e, &e.ackAtBatchEnd) }

// batchEnd is a burst's end: every connection whose ACK waits for it
// sends it now, unless an ACK has left since (ackSent clears the mark).
// It runs on the link's goroutine, with no engine lock held.
func (p *Protocol) batchEnd() {
	if p.batch.pending.n.Load() == 0 {
		return
	}
	p.batch.pending.serve(func(e *Endpoint) *bool { return &e.ackAtBatchEnd }, func(e *Endpoint) {
		if e.state.Synchronized() && (e.lastAckSent != e.rcvNxt || e.sackAtBatchEnd) {
			e.sendAck(event.SendAck)
			e.proto.stats.AcksDeferred.Add(1)
		}
	})
}

// SACK compression. On a path whose queue holds hundreds of segments
// (the kernel sending over a TAP without offloads: its queue to the
// device, 1,000 frames, fills behind the reader), a loss leaves hundreds
// of segments out of order behind its hole, and RFC 5681 4.2 has each
// draw an ACK at once. Each such ACK's SACK blocks cost the kernel's
// sender ~23 µs inside our write of it, on the goroutine that delivers
// the next frames: at 1% loss each way, 21,000 ACKs per 32 MiB and 0.42-
// 0.49 Gbit/s, where gVisor's TCP, with a window that keeps the queue
// short, moved 0.53-0.92. Linux compresses SACKs since 4.18
// (tcp_sack_compress: three duplicate ACKs at once, then one per 44
// segments or 5% of the RTT, at most 1 ms). tapstack does it with the
// burst's end, at most 64 frames later, for the timer, and only for a
// long run: the first compressAfter ACKs after in-order text go at once.
// With three, as Linux, gVisor's sender in memory at 5% loss each way
// fell from 96 to 25 goodput MB/s and 2.7 RTOs per 16 MiB; with 16, a
// first RTO appeared in tapstack to tapstack with mixed faults; with 32,
// both are as without compression, and the kernel over the TAP moves
// 0.99-1.18 Gbit/s. Only text that grows the range the latest SACK block
// reports waits: the next ACK's first block then says all of it (RFC
// 2018 4). Text that starts a range or fills another hole is ACKed at
// once: letting it wait lost the change to the sender when more ranges
// changed than an ACK has room for, and the kernel retransmitted 66-594
// segments we held (its D-SACK count).
const compressAfter = 32

// compressSack decides for the ACK of out-of-order text that extends
// (grows the latest SACK block's range) or not: false sends it at once,
// true leaves it to the end of the burst the text came in, with the SACK
// blocks of everything held by then. Each ACK it leaves to go at once
// counts in oooAcks, up to compressAfter. The caller holds e.mu.
func (e *Endpoint) compressSack(extends bool) bool {
	if !e.inBatch || !e.sackOK || e.proto.opts.NoSackCompression {
		return false
	}
	if e.oooAcks < compressAfter || !extends {
		e.oooAcks = min(e.oooAcks+1, compressAfter)
		return false
	}
	e.sackAtBatchEnd = true
	e.deferAck()
	return true
}
