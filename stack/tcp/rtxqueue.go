package tcp

import (
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// The retransmission queue: one record per segment sent and not yet
// cumulatively acknowledged, like Linux's rtx queue of skbs. Each record
// knows when it was last sent, whether the peer SACKed it, whether it is
// deemed lost and whether a retransmission of it is in flight. Loss
// detection (RACK, rack.go), loss recovery (recovery.go) and the
// congestion window's "pipe" are all computed from it.
//
// The cost of an ACK is bounded by what it changes, not by the window:
//   - records sit in sequence order in a ring, so the records an ACK
//     frees come off the front, and the one holding a sequence number is
//     found by binary search;
//   - SACKed records are skipped with a union-find "next unSACKed record"
//     link, so a SACK block that repeats what earlier ACKs said costs a
//     couple of jumps, not a walk over the records it covers;
//   - records in flight are also on a list in transmission order, the
//     order RACK (RFC 8985 6.2) examines them in, from which SACKed and
//     lost records leave at once, so RACK's walk stops at the first record
//     not yet overdue;
//   - the bytes SACKed, lost and retransmitted are counters kept as flags
//     change, so pipe (RFC 6675's SetPipe, Linux's tcp_packets_in_flight)
//     is arithmetic;
//   - while nothing is SACKed, lost or sent again, the segments of one
//     burst (a GSO packet's, sent at one instant, with one TSval and one
//     delivery state) share a record, as Linux's TSO skb holds many
//     segments (tcp_skb_pcount), and the records are split into their
//     segments again, as sent, before anything needs one of them alone
//     (split, below).

// Record flags.
const (
	segSacked      uint8 = 1 << iota // the peer SACKed all of it (RFC 2018)
	segLost                          // deemed lost (RACK, the DupThresh rule, an RTO): to be sent again
	segRetrans                       // a retransmission of it is in flight (Linux TCPCB_SACKED_RETRANS)
	segEverRetrans                   // sent more than once: no RTT sample from its ACK (Karn, RFC 6298 3)
	segFin                           // it carries the FIN, the last sequence number
	segAppLimited                    // it left while the application limited sending (rate.go)
)

// txSeg is one segment sent: the sequence space [start, end), which
// counts the FIN's number when segFin is set.
type txSeg struct {
	start, end seqnum.Value
	xmit       tcpip.MonotonicTime // when it was last sent
	tsval      uint32              // our TSval on the last transmission (RFC 7323), for Eifel detection
	flags      uint8
	rtx        uint8  // times retransmitted, for the events ("retransmit #2"); saturates
	mss        uint16 // the size of its segments: one record holds several of them when merged (extend)
	skip       uint64 // union-find parent for SACKed records: a candidate for the next unSACKed one
	prev, next uint64 // transmission-order list, absolute index + 1; 0 is none

	// The connection's delivery state when it last left (rate.go):
	// the low 32 bits of its delivered count, and the microseconds
	// since that count last grew and since the newest segment then
	// delivered had left. A record is 64 bytes with them, 48 without.
	rateDelivered, rateSinceDelivered, rateSinceFirst uint32
}

func (s *txSeg) len() uint32              { return uint32(s.start.Size(s.end)) }
func (s *txSeg) has(f uint8) bool         { return s.flags&f != 0 }
func (s *txSeg) awaitingRetransmit() bool { return s.flags&(segLost|segRetrans|segSacked) == segLost }
func (s *txSeg) sentAfter(t tcpip.MonotonicTime, end seqnum.Value) bool {
	// Linux tcp_skb_sent_after: later, or at the same instant and
	// further in the sequence space (segments sent in one burst share a
	// timestamp on a coarse or fake clock).
	return t.Before(s.xmit) || (s.xmit == t && end.LessThan(s.end))
}

// segs is how many segments the record stands for: one, or those of a
// merged burst, each of mss bytes but the last.
func (s *txSeg) segs() uint32 {
	n := s.len()
	if s.has(segFin) {
		n--
	}
	if m := uint32(s.mss); m != 0 && n > m {
		return (n + m - 1) / m
	}
	return 1
}

// maxInFlightSegments bounds the segments in flight of one connection,
// and so its records, merged or split: what its memory may hold however
// small its segments (a writer with Nagle off sending one byte at a
// time). Linux bounds the same with a congestion window counted in
// packets. When the queue is full, no new segment is sent until an ACK
// frees one (Stats.SendQueueFull counts the stalls).
const maxInFlightSegments = 1 << 16

// rtxQueue is the retransmission queue of one connection.
type rtxQueue struct {
	ring []txSeg // len is zero or a power of two
	head uint64  // absolute index of the oldest record
	n    int

	// The transmission-order list of records in flight: not SACKed and
	// not lost-and-waiting (absolute index + 1; 0 is none).
	tHead, tTail uint64

	// Bytes of sequence space SACKed, deemed lost (retransmitted or
	// not), and retransmitted and in flight.
	sacked, lost, retrans uint32

	// segs counts the segments the records stand for: more than n
	// while some record holds a merged burst.
	segs uint32

	// lostWaiting counts records lost and not yet sent again; none below
	// lostHint is.
	lostWaiting int32
	// mergeFrom is the low 32 bits of the index of the first record
	// pushed after the last split: no burst is merged again until the
	// records split then are all acknowledged (mergeable).
	mergeFrom uint32
	lostHint  uint64

	// isLostFrom and sackedAbove serve RFC 6675's IsLost without RACK
	// (markIsLost): within a fast recovery, every record below isLostFrom
	// is SACKed, deemed lost or sent again, and sackedAbove is the bytes
	// SACKed at or above it.
	isLostFrom  seqnum.Value
	sackedAbove uint32
}

func (q *rtxQueue) empty() bool { return q.n == 0 }
func (q *rtxQueue) full() bool  { return q.segs >= maxInFlightSegments }

// at returns the record with absolute index i.
func (q *rtxQueue) at(i uint64) *txSeg { return &q.ring[i&uint64(len(q.ring)-1)] }

// tail is the absolute index past the newest record.
func (q *rtxQueue) tail() uint64 { return q.head + uint64(q.n) }

// push records a segment just sent for the first time and returns its
// record.
func (q *rtxQueue) push(start, end seqnum.Value, fin bool, now tcpip.MonotonicTime, tsval uint32) *txSeg {
	if q.n == len(q.ring) {
		q.grow()
	}
	i := q.tail()
	s := q.at(i)
	*s = txSeg{start: start, end: end, xmit: now, tsval: tsval, mss: uint16(min(start.Size(end), 0xffff)), skip: i}
	if fin {
		s.flags = segFin
	}
	q.n++
	q.segs++
	q.tAppend(i)
	return s
}

// maxMerged bounds the bytes of one merged record: a GSO packet's.
const maxMerged = 64 << 10

// mergeable returns the newest record if the segment of n bytes at seq,
// sent at now with TSval tsval and no FIN, may join it (extend): nothing
// is SACKed, lost or in flight again, none of the records the last split
// made is left, and the record is a first transmission that ends at seq,
// was sent at the same instant with the same TSval, holds only whole
// segments of n bytes or more, and has room. The caller checks that the
// delivery state is the same too (rateSame).
func (q *rtxQueue) mergeable(seq seqnum.Value, n int, now tcpip.MonotonicTime, tsval uint32) *txSeg {
	if q.n == 0 || q.sacked|q.lost|q.retrans != 0 || int32(uint32(q.head)-q.mergeFrom) < 0 {
		return nil
	}
	q.mergeFrom = uint32(q.head) // keeps the difference small as the indices grow
	i := q.tail() - 1
	s := q.at(i)
	if q.tTail != i+1 || s.flags&^segAppLimited != 0 || s.end != seq || s.xmit != now || s.tsval != tsval {
		return nil
	}
	if m := uint32(s.mss); uint32(n) > m || s.len()%m != 0 || s.len()+uint32(n) > maxMerged {
		return nil
	}
	return s
}

// extend adds k segments of n bytes to the newest record, s: mergeable
// said one may join, and the caller that k whole ones stay within
// maxMerged.
func (q *rtxQueue) extend(s *txSeg, k, n int) {
	s.end = s.end.Add(seqnum.Size(k * n))
	q.segs += uint32(k)
}

// split gives every merged record its segments back, one record each, as
// sent: before SACK blocks are matched to records, duplicate ACKs or a
// timer deem one lost, or a link or a smaller path MTU turns some back.
// It rewrites the ring, so the callers hold no index across it; its cost
// is the queue's, once: no burst is merged again until the records it
// made are acknowledged (mergeable), as a recovery takes a round trip or
// more anyway. No record is SACKed while one is merged (mergeable wants
// none SACKed, and every SACK block splits first), so every record's
// union-find link is its own index, and split keeps each record's new
// index there while it works.
//
// It splits in place, allocating nothing once the ring has room for
// every segment: a tail loss probe splits the queue in a clean bulk
// transfer too, a few times per 256 MiB in memory, and a new ring each
// time was most of what a steady transfer still allocated. The records
// are rewritten from the newest down, each into indices at or above its
// own, so none is overwritten before it is read.
func (q *rtxQueue) split() bool {
	if q.segs == uint32(q.n) {
		return false
	}
	if len(q.ring) < int(q.segs) {
		size := max(minRing, len(q.ring))
		for size < int(q.segs) {
			size *= 2
		}
		q.resize(size)
	}
	// Each record's new index, in its union-find link.
	first := q.head
	for i := q.head; i < q.tail(); i++ {
		s := q.at(i)
		s.skip = first
		first += uint64(s.segs())
	}
	newTail := first
	// The transmission-order links, pointed at the new indices: a record
	// follows the last segment of the one before it and is followed by
	// the first of the one after it; its own segments follow each other.
	last := func(i uint64) uint64 { s := q.at(i); return s.skip + uint64(s.segs()) - 1 }
	for i := q.head; i < q.tail(); i++ {
		s := q.at(i)
		if s.prev != 0 {
			s.prev = last(s.prev-1) + 1
		}
		if s.next != 0 {
			s.next = q.at(s.next-1).skip + 1
		}
	}
	if q.tHead != 0 {
		q.tHead = q.at(q.tHead-1).skip + 1
		q.tTail = last(q.tTail-1) + 1
	}
	if h := min(max(q.lostHint, q.head), q.tail()); h < q.tail() {
		q.lostHint = q.at(h).skip
	} else {
		q.lostHint = newTail
	}
	for i := q.tail(); i > q.head; {
		i--
		s := *q.at(i)
		from, to := s.skip, s.skip+uint64(s.segs())
		listed := s.prev != 0 || q.tHead == from+1
		seq, m := s.start, seqnum.Size(s.mss)
		for j := from; j < to; j++ {
			p := q.at(j)
			*p = s
			p.start, p.skip = seq, j
			if j+1 < to {
				p.end = seq.Add(m)
				p.flags &^= segFin
			}
			seq = p.end
			p.prev, p.next = 0, 0
			if listed {
				p.prev, p.next = j, j+2 // the segments before and after, +1
				if j == from {
					p.prev = s.prev
				}
				if j+1 == to {
					p.next = s.next
				}
			}
		}
	}
	q.n = int(q.segs)
	q.mergeFrom = uint32(q.tail())
	return true
}

// minRing is the records a retransmission queue starts with: a SYN and a
// FIN, or a request or two, fit, and a connection that never sends more
// keeps 192 bytes for them, not the 768 of 16 records; one that sends in
// bulk doubles it a few more times on its first flight.
const minRing = 4

func (q *rtxQueue) grow() { q.resize(max(minRing, 2*len(q.ring))) }

// resize moves the records into a ring of size, a power of two that
// holds them.
func (q *rtxQueue) resize(size int) {
	ring := make([]txSeg, size)
	for i := q.head; i < q.tail(); i++ {
		ring[i&uint64(size-1)] = *q.at(i)
	}
	q.ring = ring
}

// find returns the index of the record that holds seq, if any.
func (q *rtxQueue) find(seq seqnum.Value) (uint64, bool) {
	lo, hi := q.head, q.tail()
	for lo < hi {
		mid := lo + (hi-lo)/2
		if q.at(mid).end.LessThanEq(seq) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == q.tail() || seq.LessThan(q.at(lo).start) {
		return 0, false
	}
	return lo, true
}

// unsacked returns the first record at or after i that is not SACKed, or
// tail. A SACKed record's skip points further on (never back: records
// are SACKed, not unSACKed, until renege resets them all); the path
// followed is compressed to point at the answer, so a run of SACKed
// records is crossed in one jump the next time (union-find).
func (q *rtxQueue) unsacked(i uint64) uint64 {
	root := i
	for range 1 << 20 {
		if root >= q.tail() || !q.at(root).has(segSacked) {
			break
		}
		root = max(q.at(root).skip, root+1)
	}
	for range 1 << 20 {
		if i >= root {
			break
		}
		s := q.at(i)
		next := max(s.skip, i+1)
		s.skip = root
		i = next
	}
	return min(root, q.tail())
}

// tAppend puts record i at the end of the transmission-order list.
func (q *rtxQueue) tAppend(i uint64) {
	s := q.at(i)
	s.prev, s.next = q.tTail, 0
	if q.tTail != 0 {
		q.at(q.tTail - 1).next = i + 1
	} else {
		q.tHead = i + 1
	}
	q.tTail = i + 1
}

// tUnlink takes record i off the transmission-order list, if it is on it.
func (q *rtxQueue) tUnlink(i uint64) {
	s := q.at(i)
	if s.prev == 0 && q.tHead != i+1 {
		return // not on the list
	}
	if s.prev != 0 {
		q.at(s.prev - 1).next = s.next
	} else {
		q.tHead = s.next
	}
	if s.next != 0 {
		q.at(s.next - 1).prev = s.prev
	} else {
		q.tTail = s.prev
	}
	s.prev, s.next = 0, 0
}

// popFront removes the oldest record, fully acknowledged.
func (q *rtxQueue) popFront() {
	s := q.at(q.head)
	q.uncount(s, s.len())
	q.segs -= s.segs()
	q.tUnlink(q.head)
	if s.awaitingRetransmit() {
		q.lostWaiting--
	}
	q.head++
	q.n--
	if q.lostHint < q.head {
		q.lostHint = q.head
	}
}

// popBack removes the newest record: a first transmission the link
// refused, taken back (refused.go).
func (q *rtxQueue) popBack() {
	i := q.tail() - 1
	s := q.at(i)
	q.uncount(s, s.len())
	q.segs -= s.segs()
	q.tUnlink(i)
	if s.awaitingRetransmit() {
		q.lostWaiting--
	}
	q.n--
}

// uncount takes n bytes of s out of the counters its flags put them in.
func (q *rtxQueue) uncount(s *txSeg, n uint32) {
	if s.has(segSacked) {
		q.sacked -= n
	}
	if s.has(segLost) {
		q.lost -= n
	}
	if s.has(segRetrans) {
		q.retrans -= n
	}
}

// trimFront cuts the oldest record so that it starts at una: the peer
// acknowledged part of it (it cut the segment differently, or our
// retransmission at a smaller MSS). Only the front record can be cut.
func (q *rtxQueue) trimFront(una seqnum.Value) {
	s := q.at(q.head)
	if s.start.LessThan(una) && una.LessThan(s.end) {
		q.uncount(s, uint32(s.start.Size(una)))
		q.segs -= s.segs()
		s.start = una
		q.segs += s.segs()
	}
}

// sack marks every record inside [a, b) SACKed and calls fn for each one
// newly marked. A record only partly inside stays unmarked: its bytes are
// not counted as SACKed, so at worst some are sent again.
func (q *rtxQueue) sack(a, b seqnum.Value, fn func(i uint64, s *txSeg)) {
	i, ok := q.find(a)
	if !ok {
		return
	}
	if s := q.at(i); s.start.LessThan(a) {
		i++ // only partly inside
	}
	for i = q.unsacked(i); i < q.tail(); i = q.unsacked(i + 1) {
		s := q.at(i)
		if b.LessThan(s.end) {
			return
		}
		if s.awaitingRetransmit() {
			q.lostWaiting--
		}
		q.uncount(s, s.len())
		s.flags = (s.flags | segSacked) &^ (segLost | segRetrans)
		q.sacked += s.len()
		if !s.start.LessThan(q.isLostFrom) {
			q.sackedAbove += s.len()
		}
		s.skip = i + 1
		q.tUnlink(i)
		fn(i, s)
	}
}

// markLost deems record i lost: it will be sent again. A retransmission
// of it that was in flight is lost too (RACK detects lost
// retransmissions, RFC 8985 2.3).
func (q *rtxQueue) markLost(i uint64) {
	s := q.at(i)
	if s.has(segSacked) || s.awaitingRetransmit() {
		return
	}
	if s.has(segRetrans) {
		q.retrans -= s.len()
		s.flags &^= segRetrans
	}
	if !s.has(segLost) {
		q.lost += s.len()
		s.flags |= segLost
	}
	q.tUnlink(i)
	q.lostWaiting++
	if i < q.lostHint {
		q.lostHint = i
	}
}

// retransmitRefused takes back the mark of record i's retransmission,
// which the link refused: no copy of it is in flight but the earlier
// ones (refused.go). It stays on the transmission-order list at the time
// of the refused copy, and sent more than once (segEverRetrans), as
// Linux's __tcp_retransmit_skb leaves a failed copy's timestamp and
// TCPCB_EVER_RETRANS: no RTT sample is taken from a time nothing left.
func (q *rtxQueue) retransmitRefused(i uint64) {
	if s := q.at(i); s.has(segRetrans) {
		q.retrans -= s.len()
		s.flags &^= segRetrans
	}
}

// startIsLost begins IsLost's marking (markIsLost) at una, SND.UNA.
func (q *rtxQueue) startIsLost(una seqnum.Value) {
	q.isLostFrom, q.sackedAbove = una, q.sacked
}

// markIsLost deems lost every record neither SACKed nor lost nor sent
// again that has more than limit bytes SACKed above it: RFC 6675's IsLost
// with DupThresh = limit/SMSS + 1, in bytes as the scoreboard counts them
// (with full-sized segments the same as the RFC's and Linux's count of
// segments, tcp_mark_head_lost). What IsLost says of a sequence number
// only grows with what is SACKed above it, so the records deemed lost are
// those below a point that only moves up: the walk starts where the last
// one stopped (isLostFrom, as Linux's lost_skb_hint), and crosses SACKed
// runs in one jump (unsacked), so a recovery's ACKs together cost its
// holes, not the window each. It returns how many it deemed lost.
func (q *rtxQueue) markIsLost(limit uint32) int {
	n := 0
	q.isLostWalk(func(i uint64, s *txSeg, above uint32) bool {
		if above <= limit {
			return false
		}
		if s.flags&(segLost|segRetrans) == 0 {
			q.markLost(i)
			n++
		}
		return true
	})
	return n
}

// isLostWalk hands visit the records not SACKed from the resume point of
// markIsLost and nextRule3 (isLostFrom, below which every record is
// SACKed, deemed lost or sent again), each with the bytes SACKed above
// it, until visit says to stop; each record visit goes on past moves the
// resume point past it.
func (q *rtxQueue) isLostWalk(visit func(i uint64, s *txSeg, above uint32) bool) {
	i, ok := q.isLostStart()
	if !ok {
		return
	}
	for i = q.unsacked(i); i < q.tail(); i = q.unsacked(i + 1) {
		s := q.at(i)
		// Between isLostFrom and s all is SACKed: unsacked jumped it.
		above := q.sackedAbove - uint32(q.isLostFrom.Size(s.start))
		if !visit(i, s, above) {
			return
		}
		q.isLostFrom, q.sackedAbove = s.end, above
	}
}

// isLostStart returns the record that holds isLostFrom, where the walks
// of markIsLost and nextRule3 resume; none when the queue is empty or
// isLostFrom is at SND.NXT, with nothing sent above it.
func (q *rtxQueue) isLostStart() (uint64, bool) {
	if q.empty() {
		return 0, false
	}
	if front := q.at(q.head).start; q.isLostFrom.LessThan(front) {
		q.startIsLost(front) // SND.UNA passed it: everything SACKed is above
	}
	return q.find(q.isLostFrom)
}

// nextRule3 returns the first record neither SACKed nor deemed lost nor
// sent again that has bytes SACKed above it: RFC 6675 NextSeg's S3 of
// rule (3), above HighRxt (1.a) and below the highest octet SACKed (1.b),
// whether IsLost holds for it or not. It walks from markIsLost's resume
// point, below which every record is SACKed, deemed lost or sent again,
// and moves that point past the records it finds deemed lost or sent
// again, as markIsLost does: a recovery's calls together cost its holes,
// not the window each. A record it passes, sent again by this rule or
// the rescue, is not deemed lost by IsLost after, as RFC 6675 sends
// nothing at or below HighRxt again in a recovery.
func (q *rtxQueue) nextRule3() (uint64, bool) {
	if q.sacked == 0 {
		return 0, false // nothing SACKed: no S3 (1.b)
	}
	var next uint64
	found := false
	q.isLostWalk(func(i uint64, s *txSeg, above uint32) bool {
		if above == 0 {
			return false // nothing SACKed above it (1.b)
		}
		if s.flags&(segLost|segRetrans) == 0 {
			next, found = i, true
			return false
		}
		return true
	})
	return next, found
}

// nextLost returns the lowest record waiting to be sent again.
func (q *rtxQueue) nextLost() (uint64, bool) {
	if q.lostWaiting == 0 {
		return 0, false
	}
	i := max(q.lostHint, q.head)
	for ; i < q.tail(); i++ {
		if q.at(i).awaitingRetransmit() {
			q.lostHint = i
			return i, true
		}
	}
	q.lostHint = i
	return 0, false
}

// retransmitted records that record i was just sent again.
func (q *rtxQueue) retransmitted(i uint64, now tcpip.MonotonicTime, tsval uint32) {
	s := q.at(i)
	if s.awaitingRetransmit() {
		q.lostWaiting--
	}
	if !s.has(segRetrans) {
		q.retrans += s.len()
	}
	s.flags |= segRetrans | segEverRetrans
	if s.rtx < 255 {
		s.rtx++
	}
	s.xmit, s.tsval = now, tsval
	q.tUnlink(i)
	q.tAppend(i)
}

// renege forgets every SACK: the receiver dropped data it had SACKed
// (RFC 2018 8), which an RTO with SACKed data at SND.UNA reveals.
func (q *rtxQueue) renege() {
	for i := q.head; i < q.tail(); i++ {
		s := q.at(i)
		s.flags &^= segSacked
		s.skip = i
	}
	q.sacked = 0
	q.rebuildTimeList()
}

// unmarkLost forgets every loss mark: the congestion response was undone
// because the losses were not real (a spurious retransmission or
// timeout), so records waiting to be sent again are in flight after all.
func (q *rtxQueue) unmarkLost() {
	for i := q.head; i < q.tail(); i++ {
		q.at(i).flags &^= segLost
	}
	q.lost, q.lostWaiting = 0, 0
	q.rebuildTimeList()
}

// rebuildTimeList puts every record in flight back on the
// transmission-order list, in order. It walks the whole queue: it runs
// only when loss marks or SACKs are forgotten, not per ACK.
func (q *rtxQueue) rebuildTimeList() {
	var idx []uint64
	for i := q.head; i < q.tail(); i++ {
		s := q.at(i)
		s.prev, s.next = 0, 0
		if !s.has(segSacked) && !s.awaitingRetransmit() {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b uint64) int {
		sa, sb := q.at(a), q.at(b)
		switch {
		case sa.xmit.Before(sb.xmit):
			return -1
		case sb.xmit.Before(sa.xmit):
			return 1
		}
		return 0
	})
	q.tHead, q.tTail = 0, 0
	for _, i := range idx {
		q.tAppend(i)
	}
}

// reset empties the queue and lets its memory go.
func (q *rtxQueue) reset() {
	*q = rtxQueue{}
}
