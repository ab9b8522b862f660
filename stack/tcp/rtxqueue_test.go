package tcp

import (
	"fmt"
	"math/rand/v2"
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
		rng := rand.New(rand.NewPCG(seed, 9))
		var q rtxQueue
		var now tcpip.MonotonicTime
		una := seqnum.Value(rng.Uint32())
		nxt := una
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
					if s := q.mergeable(nxt, n, now, 0); s != nil {
						q.extend(s, 1, n)
						merged++
					} else if !q.full() {
						q.push(nxt, nxt.Add(seqnum.Size(n)), false, now, 0)
					} else {
						break
					}
					nxt = nxt.Add(seqnum.Size(n))
				}
			case op < 4 && !q.full():
				n := seqnum.Size(1 + rng.IntN(1500))
				q.push(nxt, nxt.Add(n), false, now, 0)
				nxt = nxt.Add(n)
			case op == 4 && !q.empty():
				// A cumulative ACK somewhere in flight.
				ack := una.Add(seqnum.Size(rng.IntN(int(una.Size(nxt)) + 1)))
				for !q.empty() && q.at(q.head).end.LessThanEq(ack) {
					q.popFront()
				}
				if !q.empty() {
					q.trimFront(ack)
				}
				una = ack
			case op < 7 && una != nxt:
				if q.split() {
					splits++
					checkSplit(t, &q, step)
				}
				a := una.Add(seqnum.Size(rng.IntN(int(una.Size(nxt)))))
				b := a.Add(seqnum.Size(1 + rng.IntN(int(a.Size(nxt)))))
				q.sack(a, b, func(uint64, *txSeg) {})
			case op == 7 && !q.empty():
				q.split()
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
