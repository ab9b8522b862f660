package tcp

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// checkQueue fails the test at step if the queue is inconsistent
// (queueErr).
func checkQueue(t *testing.T, q *rtxQueue, step int) {
	t.Helper()
	if err := queueErr(q); err != nil {
		t.Fatalf("step %d: %v", step, err)
	}
}

// queueErr recomputes everything the queue keeps incrementally and
// reports any difference: the byte and segment counters, lostWaiting,
// the transmission-order list (exactly the records in flight, in order
// of transmission), and that a record of several segments is a first
// transmission nothing has marked, in a queue with nothing SACKed.
func queueErr(q *rtxQueue) error {
	var sacked, lost, retrans, segs uint32
	var waiting int32
	inFlight := map[uint64]bool{}
	for i := q.head; i < q.tail(); i++ {
		s := q.at(i)
		if i > q.head && q.at(i-1).end != s.start {
			return fmt.Errorf("record %d starts at %d, its predecessor ends at %d", i, s.start, q.at(i-1).end)
		}
		segs += s.segs()
		if s.segs() > 1 && s.flags&^segAppLimited != 0 {
			return fmt.Errorf("record %d holds %d segments with flags %#x", i, s.segs(), s.flags)
		}
		if s.segs() > 1 && q.sacked != 0 {
			return fmt.Errorf("record %d holds %d segments while %d bytes are SACKed", i, s.segs(), q.sacked)
		}
		if s.has(segSacked) {
			sacked += s.len()
		}
		if s.has(segLost) {
			lost += s.len()
		}
		if s.has(segRetrans) {
			retrans += s.len()
		}
		if s.awaitingRetransmit() {
			waiting++
		}
		if !s.has(segSacked) && !s.awaitingRetransmit() {
			inFlight[i] = true
		}
		if u := q.unsacked(i); u < i || (u < q.tail() && q.at(u).has(segSacked)) {
			return fmt.Errorf("unsacked(%d) = %d", i, u)
		}
	}
	if sacked != q.sacked || lost != q.lost || retrans != q.retrans || waiting != q.lostWaiting || segs != q.segs {
		return fmt.Errorf("counters sacked %d lost %d retrans %d waiting %d segs %d, recomputed %d %d %d %d %d",
			q.sacked, q.lost, q.retrans, q.lostWaiting, q.segs, sacked, lost, retrans, waiting, segs)
	}
	n := 0
	var prev *txSeg
	for i := q.tHead; i != 0; i = q.at(i - 1).next {
		if n++; n > q.n {
			return fmt.Errorf("transmission list loops")
		}
		if !inFlight[i-1] {
			return fmt.Errorf("record %d on the transmission list is not in flight", i-1)
		}
		s := q.at(i - 1)
		if prev != nil && s.xmit.Before(prev.xmit) {
			return fmt.Errorf("transmission list out of order at record %d", i-1)
		}
		prev = s
	}
	if n != len(inFlight) {
		return fmt.Errorf("%d records on the transmission list, %d in flight", n, len(inFlight))
	}
	if i, ok := q.nextLost(); ok != (waiting > 0) || ok && !q.at(i).awaitingRetransmit() {
		return fmt.Errorf("nextLost = %d, %v with %d waiting", i, ok, waiting)
	}
	return nil
}

// TestRtxQueueRandom drives the retransmission queue with random sends,
// bursts merged into one record, cumulative ACKs (whole and partial),
// SACK blocks (aligned or not), loss marks, retransmissions, renege, undo
// and splits, checking its invariants after every step. A SACK block or a
// loss mark goes to a queue split first, as the engine's do.
func TestRtxQueueRandom(t *testing.T) {
	for seed := range uint64(20) {
		f := newRandomFlight(seed, 9)
		rng := f.rng
		var q rtxQueue
		var now tcpip.MonotonicTime
		merged, splits := 0, 0
		for step := range 3000 {
			now = now.Add(time.Duration(rng.IntN(3)) * time.Millisecond)
			switch op := rng.IntN(12); {
			case op >= 10 && !q.full():
				// A burst of segments of one size, the last maybe
				// shorter: merged where the queue allows.
				mss := 1 + rng.IntN(1500)
				for k := range 1 + rng.IntN(50) {
					n := mss
					if k > 0 && rng.IntN(8) == 0 {
						n = 1 + rng.IntN(mss)
					}
					if s := q.mergeable(f.nxt, n, now, 0); s != nil {
						q.extend(s, 1, n)
						merged++
					} else if !q.full() {
						q.push(f.nxt, f.nxt.Add(seqnum.Size(n)), false, now, 0)
					} else {
						break
					}
					f.nxt = f.nxt.Add(seqnum.Size(n))
				}
			case op < 4 && !q.full():
				f.send(&q, now)
			case op == 4 && !q.empty():
				f.ack(&q) // a cumulative ACK somewhere in flight
			case op < 7 && f.una != f.nxt:
				if splitLikeReference(t, &q, step) {
					splits++
					checkSplit(t, &q, step)
				}
				f.sack(&q)
			case op == 7 && !q.empty():
				splitLikeReference(t, &q, step)
				q.markLost(q.head + uint64(rng.IntN(q.n)))
			case op == 8:
				if i, ok := q.nextLost(); ok {
					q.retransmitted(i, now, 0)
				}
			case op == 9 && rng.IntN(20) == 0:
				if rng.IntN(2) == 0 {
					q.renege()
				} else {
					q.unmarkLost()
				}
			}
			checkQueue(t, &q, step)
		}
		if merged == 0 || splits == 0 {
			t.Errorf("seed %d: %d segments merged, %d splits: the test exercised neither", seed, merged, splits)
		}
	}
}

// TestRtxQueueSplitRelinks: split keeps the transmission order whatever
// it is, a record's segments in a row where the record stood, and leaves
// a record that is off the list (lost, waiting to be sent again) off it
// as segments. Queues of merged and single records are built at random,
// their records linked in a random order with some left off, and split
// as the reference does it.
func TestRtxQueueSplitRelinks(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 17))
		var q rtxQueue
		q.head = uint64(rng.IntN(1000))
		seq := seqnum.Value(rng.Uint32())
		var now tcpip.MonotonicTime
		for range 1 + rng.IntN(40) {
			mss := 1 + rng.IntN(1500)
			s := q.push(seq, seq.Add(seqnum.Size(mss)), false, now, 0)
			k := rng.IntN(5)
			q.extend(s, k, mss)
			if k > 0 && mss > 1 && rng.IntN(3) == 0 {
				q.extend(s, 1, 1+rng.IntN(mss-1)) // a shorter last segment
			}
			seq = s.end
		}
		if rng.IntN(4) == 0 {
			s := q.at(q.tail() - 1) // it carries the FIN too
			s.flags |= segFin
			s.end = s.end.Add(1)
		}
		q.tHead, q.tTail = 0, 0
		for _, k := range rng.Perm(q.n) {
			i := q.head + uint64(k)
			if rng.IntN(4) == 0 {
				q.at(i).prev, q.at(i).next = 0, 0 // off the list
				continue
			}
			q.tAppend(i)
		}
		q.lostHint = q.head + uint64(rng.IntN(q.n+3))
		splitLikeReference(t, &q, int(seed))
	}
}

// splitLikeReference splits q, and a copy of it with splitReference,
// and fails the test at step unless both give the same records at the
// same indices, linked in the same transmission order.
func splitLikeReference(t *testing.T, q *rtxQueue, step int) bool {
	t.Helper()
	ref := *q
	ref.ring = slices.Clone(q.ring)
	did, want := q.split(), splitReference(&ref)
	if did != want {
		t.Fatalf("step %d: split reported %v, the reference %v", step, did, want)
	}
	got, exp := *q, ref
	got.ring, exp.ring = nil, nil
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("step %d: after the split the queue is %+v, the reference's %+v", step, got, exp)
	}
	for i := q.head; i < q.tail(); i++ {
		if *q.at(i) != *ref.at(i) {
			t.Fatalf("step %d: record %d after the split is %+v, the reference's %+v", step, i, *q.at(i), *ref.at(i))
		}
	}
	return did
}

// splitReference is split as it was first written: into a new ring,
// with a table of each record's new index and a list of the records in
// transmission order.
func splitReference(q *rtxQueue) bool {
	if q.segs == uint32(q.n) {
		return false
	}
	size := max(minRing, len(q.ring))
	for size < int(q.segs) {
		size *= 2
	}
	ring := make([]txSeg, size)
	at := func(i uint64) *txSeg { return &ring[i&uint64(size-1)] }
	first := make([]uint64, q.n+1)
	first[0] = q.head
	for k := range q.n {
		first[k+1] = first[k] + uint64(q.at(q.head+uint64(k)).segs())
	}
	moved := func(i uint64) uint64 { return first[i-q.head] }
	for k := range q.n {
		s := q.at(q.head + uint64(k))
		seq, m := s.start, seqnum.Size(s.mss)
		for j := first[k]; j < first[k+1]; j++ {
			p := at(j)
			*p = *s
			p.start, p.prev, p.next, p.skip = seq, 0, 0, j
			if j+1 < first[k+1] {
				p.end = seq.Add(m)
				p.flags &^= segFin
			}
			seq = p.end
		}
	}
	var order []uint64
	for t := q.tHead; t != 0; t = q.at(t - 1).next {
		order = append(order, t-1)
	}
	q.lostHint = moved(min(max(q.lostHint, q.head), q.tail()))
	q.ring, q.n = ring, int(q.segs)
	q.tHead, q.tTail = 0, 0
	for _, i := range order {
		for j := moved(i); j < moved(i+1); j++ {
			q.tAppend(j)
		}
	}
	q.mergeFrom = uint32(q.tail())
	return true
}

// checkSplit checks a queue just split: one segment per record, of its
// mss at most.
func checkSplit(t *testing.T, q *rtxQueue, step int) {
	t.Helper()
	for i := q.head; i < q.tail(); i++ {
		if s := q.at(i); s.segs() != 1 || s.len() > uint32(s.mss) {
			t.Fatalf("step %d: record %d after a split: %d bytes, %d segments of %d", step, i, s.len(), s.segs(), s.mss)
		}
	}
}

// TestRtxQueueSackSkips: a SACK block that repeats ranges already SACKed
// costs jumps over them, not a visit to every record: after one block
// covering 10,000 records, the next unSACKed record is found in a few
// steps, which is what keeps an ACK's cost flat as the window grows.
func TestRtxQueueSackSkips(t *testing.T) {
	var q rtxQueue
	var now tcpip.MonotonicTime
	seq := seqnum.Value(1000)
	for range 10_002 {
		q.push(seq, seq.Add(100), false, now, 0)
		seq = seq.Add(100)
	}
	q.sack(q.at(q.head+1).start, q.at(q.head+10_001).start, func(uint64, *txSeg) {})
	if got := q.unsacked(q.head + 1); got != q.head+10_001 {
		t.Fatalf("unsacked = %d, want %d", got, q.head+10_001)
	}
	// With the path compressed, the same query is a couple of jumps.
	hops := 0
	for i := q.head + 1; i < q.tail() && q.at(i).has(segSacked); i = q.at(i).skip {
		hops++
	}
	if hops > 3 {
		t.Errorf("%d hops over 10,000 SACKed records after one query, want a few", hops)
	}
	checkQueue(t, &q, 0)
}

// TestRtxQueueIsLostRandom: markIsLost, which resumes where it stopped,
// deems lost exactly the records RFC 6675's IsLost, computed afresh over
// the whole queue, says are lost: neither SACKed nor sent again, with
// more than limit bytes SACKed above them. Sends, SACK blocks, cumulative
// ACKs (whole and partial) and retransmissions come at random between
// calls, and a new recovery starts the marking again now and then.
func TestRtxQueueIsLostRandom(t *testing.T) {
	for seed := range uint64(20) {
		f := newRandomFlight(seed, 23)
		rng := f.rng
		var q rtxQueue
		var now tcpip.MonotonicTime
		q.startIsLost(f.una)
		marked := 0
		for step := range 3000 {
			switch op := rng.IntN(10); {
			case op < 3 && !q.full():
				f.send(&q, now)
			case op == 3 && !q.empty() && rng.IntN(3) == 0:
				f.ack(&q)
			case op < 7 && f.una != f.nxt:
				f.sack(&q)
			case op == 7:
				if i, ok := q.nextLost(); ok {
					q.retransmitted(i, now, 0)
				}
			case op == 8 && rng.IntN(10) == 0:
				q.startIsLost(f.una)
			default:
				const limit = 2 * 1000
				marked += q.markIsLost(limit)
				var above uint32
				for i := q.tail(); i > q.head; i-- {
					s := q.at(i - 1)
					if s.has(segSacked) {
						above += s.len()
						continue
					}
					lost := s.flags&(segLost|segRetrans) != 0
					if above > limit && !lost {
						t.Fatalf("seed %d step %d: record %d, %d bytes SACKed above it, not deemed lost", seed, step, i-1, above)
					}
					if above <= limit && s.has(segLost) {
						t.Fatalf("seed %d step %d: record %d deemed lost with %d bytes SACKed above it", seed, step, i-1, above)
					}
				}
			}
			checkQueue(t, &q, step)
		}
		if marked == 0 {
			t.Errorf("seed %d: nothing deemed lost: the test exercised nothing", seed)
		}
	}
}

// TestRtxQueueRule3Random: nextRule3, which resumes where markIsLost or
// itself stopped, finds exactly the record RFC 6675's NextSeg rule (3),
// computed afresh over the whole queue, says is next: the lowest neither
// SACKed nor deemed lost nor sent again with bytes SACKed above it. Sends,
// SACK blocks, cumulative ACKs, IsLost's marking and retransmissions by
// rules (1) and (3) come at random between calls, and a new recovery
// starts the walk again now and then.
func TestRtxQueueRule3Random(t *testing.T) {
	for seed := range uint64(20) {
		f := newRandomFlight(seed, 29)
		rng := f.rng
		var q rtxQueue
		var now tcpip.MonotonicTime
		q.startIsLost(f.una)
		found := 0
		for step := range 3000 {
			switch op := rng.IntN(10); {
			case op < 3 && !q.full():
				f.send(&q, now)
			case op == 3 && !q.empty() && rng.IntN(3) == 0:
				f.ack(&q)
			case op < 6 && f.una != f.nxt:
				f.sack(&q)
			case op == 6:
				if i, ok := q.nextLost(); ok {
					q.retransmitted(i, now, 0)
				}
			case op == 7:
				q.markIsLost(2 * 1000)
			case op == 8 && rng.IntN(10) == 0:
				q.startIsLost(f.una)
			default:
				want, wantOK := uint64(0), false
				var above uint32
				for i := q.tail(); i > q.head; i-- {
					s := q.at(i - 1)
					if s.has(segSacked) {
						above += s.len()
						continue
					}
					if above > 0 && s.flags&(segLost|segRetrans) == 0 {
						want, wantOK = i-1, true
					}
				}
				got, ok := q.nextRule3()
				if ok != wantOK || ok && got != want {
					t.Fatalf("seed %d step %d: nextRule3 = %d, %v; want %d, %v", seed, step, got, ok, want, wantOK)
				}
				if ok {
					found++
					if rng.IntN(2) == 0 {
						q.retransmitted(got, now, 0)
					}
				}
			}
			checkQueue(t, &q, step)
		}
		if found == 0 {
			t.Errorf("seed %d: no segment for rule (3): the test exercised nothing", seed)
		}
	}
}

// randomFlight is what the random reference tests drive a queue with:
// the flight [una, nxt) it holds and the source of their choices.
type randomFlight struct {
	rng      *rand.Rand
	una, nxt seqnum.Value
}

func newRandomFlight(seed, stream uint64) *randomFlight {
	f := &randomFlight{rng: rand.New(rand.NewPCG(seed, stream))}
	f.una = seqnum.Value(f.rng.Uint32())
	f.nxt = f.una
	return f
}

// send queues a segment of 1 to 1,500 bytes at SND.NXT.
func (f *randomFlight) send(q *rtxQueue, now tcpip.MonotonicTime) {
	n := seqnum.Size(1 + f.rng.IntN(1500))
	q.push(f.nxt, f.nxt.Add(n), false, now, 0)
	f.nxt = f.nxt.Add(n)
}

// ack acknowledges up to a random point of the flight: the records below
// it leave the queue and the one it falls in is trimmed.
func (f *randomFlight) ack(q *rtxQueue) {
	ack := f.una.Add(seqnum.Size(f.rng.IntN(int(f.una.Size(f.nxt)) + 1)))
	for !q.empty() && q.at(q.head).end.LessThanEq(ack) {
		q.popFront()
	}
	if !q.empty() {
		q.trimFront(ack)
	}
	f.una = ack
}

// sack SACKs a random block of the flight, which must not be empty.
func (f *randomFlight) sack(q *rtxQueue) {
	a := f.una.Add(seqnum.Size(f.rng.IntN(int(f.una.Size(f.nxt)))))
	b := a.Add(seqnum.Size(1 + f.rng.IntN(int(a.Size(f.nxt)))))
	q.sack(a, b, func(uint64, *txSeg) {})
}
