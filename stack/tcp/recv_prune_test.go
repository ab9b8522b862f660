package tcp_test

import (
	"bytes"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// The out-of-order queue at its limits: a range limit of one range per KiB
// of receive buffer (at least 32), and a heap limit of twice the buffer
// shared with unread in-order text. Past them, ranges above the segment
// are pruned (Linux tcp_prune_ofo_queue) or the segment is dropped.

// drops records drop events.
type drops struct{ events }

func (d *drops) of(r event.DropReason) []event.Event {
	var out []event.Event
	for _, ev := range d.events.of(event.KindDrop) {
		if ev.Drop == r {
			out = append(out, ev)
		}
	}
	return out
}

// TestHoleFloodRangeLimit: a 32 KiB buffer holds 32 ranges. The 33rd hole,
// above them all, is dropped (DropOutOfOrderQueueFull) and not
// acknowledged; a hole below them takes the place of the highest
// (DropOutOfOrderPruned), and the ACK reports the new block first. Once
// the peer fills the holes and sends the pruned byte again, the user reads
// the stream as sent.
func TestHoleFloodRangeLimit(t *testing.T) {
	var d drops
	p, ep := sackPeer(t, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: 32 << 10, Observer: d.observe}))
	data := payload(0, 200)
	hole := func(k int) uint32 { return uint32(4*k + 3) } // 1-byte ranges, 3 bytes apart
	for k := 1; k <= 32; k++ {
		s := hole(k)
		p.Inject(seg{Flags: ".", Seq: s, Ack: 1, Payload: data[s-1 : s]})
		var want sackBlocks
		for j := k; j > k-4 && j >= 1; j-- {
			want = append(want, [2]uint32{hole(j), hole(j) + 1})
		}
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: want})
	}
	if _, _, ranges, _, limit := ep.OutOfOrder(); ranges != 32 || limit != 32 {
		t.Fatalf("%d ranges held of %d, want 32 of 32", ranges, limit)
	}

	// Above everything: dropped, no ACK.
	p.Inject(seg{Flags: ".", Seq: hole(33), Ack: 1, Payload: data[hole(33)-1 : hole(33)]})
	p.ExpectNothing()
	st := p.TCP.Stats()
	wantCount(t, "queue-full drops", st.Dropped(event.DropOutOfOrderQueueFull), 1)
	if ev := d.of(event.DropOutOfOrderQueueFull); len(ev) != 1 || ev[0].Segment.Seq != tcptest.PeerISS+hole(33) {
		t.Fatalf("queue-full drop events %v", ev)
	}

	// Below the highest: the highest range goes.
	p.Inject(seg{Flags: ".", Seq: 5, Ack: 1, Payload: data[4:5]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{5, 6}, {hole(31), hole(31) + 1}, {hole(30), hole(30) + 1}, {hole(29), hole(29) + 1}}})
	wantCount(t, "pruned ranges", st.Dropped(event.DropOutOfOrderPruned), 1)
	if ev := d.of(event.DropOutOfOrderPruned); len(ev) != 1 || ev[0].Segment.Seq != tcptest.PeerISS+hole(32) || ev[0].Segment.Len != 1 {
		t.Fatalf("prune events %v", ev)
	}

	// The peer fills every hole, the pruned byte and the dropped one
	// included.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:hole(33)+10]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: hole(33) + 11, SACK: sackBlocks{{5, 6}}}) // the D-SACK of the held bytes below
	if got := readAll(t, ep); !bytes.Equal(got, data[:hole(33)+10]) {
		t.Fatalf("read %q, want %q", got, data[:hole(33)+10])
	}
	if b, mem, ranges, _, _ := ep.OutOfOrder(); b != 0 || mem != 0 || ranges != 0 {
		t.Fatalf("queue holds %d bytes, %d charged, %d ranges after the holes filled", b, mem, ranges)
	}
}

// TestOutOfOrderMemoryLimit: segments of 1025 bytes fill just over half
// of the 2 KiB chunk a 1500-byte link gives them, so they are held in place
// (not copied) and each range pins 2 KiB and more. A 48 KiB buffer offers
// a 48 KiB window but only 96 KiB of heap: the highest of the ranges that
// fit the window do not fit the heap limit and are dropped
// (DropOutOfOrderQueueFull), unacknowledged; a segment below them all then
// takes the place of the highest (DropOutOfOrderPruned). Once the peer
// fills the holes and sends the rest again, the user reads the stream as
// sent.
func TestOutOfOrderMemoryLimit(t *testing.T) {
	var d drops
	const rcvBuf = 48 << 10
	p, ep := sackPeer(t, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: rcvBuf, Observer: d.observe}))
	const size, gap, first = 1025, 1, 1501
	data := payload(0, rcvBuf)
	held, dropped := 0, 0
	for k := 0; ; k++ {
		s := uint32(first + k*(size+gap))
		if int(s)-1+size > rcvBuf {
			break
		}
		p.Inject(seg{Flags: ".", Seq: s, Ack: 1, Payload: data[s-1 : int(s)-1+size]})
		if _, ok := p.Next(); ok {
			held++
		} else {
			dropped++
		}
	}
	_, mem, ranges, memLimit, rangeLimit := ep.OutOfOrder()
	t.Logf("%d ranges of %d bytes held, charged %d of %d; %d dropped", held, size, mem, memLimit, dropped)
	switch {
	case ranges != held || ranges >= rangeLimit:
		t.Fatalf("%d ranges held (limit %d), %d acknowledged", ranges, rangeLimit, held)
	case mem > memLimit || mem+size+2048 < memLimit:
		t.Fatalf("charged %d of %d: over, or room left for one more", mem, memLimit)
	case dropped == 0 || int(p.TCP.Stats().Dropped(event.DropOutOfOrderQueueFull)) != dropped || len(d.of(event.DropOutOfOrderQueueFull)) != dropped:
		t.Fatalf("%d segments not acknowledged, %d counted as queue-full drops", dropped, p.TCP.Stats().Dropped(event.DropOutOfOrderQueueFull))
	}

	// Below all: the highest range makes room.
	rng := func(k int) [2]uint32 {
		s := uint32(first + k*(size+gap))
		return [2]uint32{s, s + size}
	}
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 1, Payload: data[1 : 1+size]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{2, 2 + size}, rng(held - 2), rng(held - 3), rng(held - 4)}})
	wantCount(t, "pruned ranges", p.TCP.Stats().Dropped(event.DropOutOfOrderPruned), 1)
	if ev := d.of(event.DropOutOfOrderPruned); len(ev) != 1 || ev[0].Segment.Seq != tcptest.PeerISS+rng(held - 1)[0] || ev[0].Segment.Len != size {
		t.Fatalf("prune events %v", ev)
	}

	// The peer fills the holes and sends everything again.
	var got []byte
	for off := 0; off < rcvBuf; off += 1460 {
		end := min(off+1460, rcvBuf)
		p.Inject(seg{Flags: ".", Seq: uint32(off + 1), Ack: 1, Payload: data[off:end]})
		p.Drain()
		got = append(got, readAll(t, ep)...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d sent", len(got), len(data))
	}
}

// TestOutOfOrderSmallPiecesShareChunks: one-byte segments that each
// continue the last are copied into the last chunk of the range they
// extend, not each into a chunk of its own: 1,000 bytes held cost a few
// chunks, not 1,000.
func TestOutOfOrderSmallPiecesShareChunks(t *testing.T) {
	p, ep := sackPeer(t)
	const n = 1000
	data := payload(0, n+2)
	for i := range n {
		s := uint32(3 + i)
		p.Inject(seg{Flags: ".", Seq: s, Ack: 1, Payload: data[s-1 : s]})
	}
	if acks := len(p.Drain()); acks != n {
		t.Fatalf("%d ACKs for %d segments", acks, n)
	}
	held, mem, ranges, _, _ := ep.OutOfOrder()
	t.Logf("%d one-byte segments: %d bytes held in %d range, charged %d", n, held, ranges, mem)
	if held != n || ranges != 1 || mem > 3*n {
		t.Fatalf("%d bytes held in %d ranges, charged %d: more than 3 bytes a byte", held, ranges, mem)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:2]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: n + 3, Check: tcptest.CheckSACK})
	if got := readAll(t, ep); !bytes.Equal(got, data) {
		t.Fatalf("read %q, want %q", got, data)
	}
}

// TestFinHeldOutOfOrder: a FIN that arrives before the text under it is
// held and SACKed with its text, one sequence number longer, as Linux
// reports a segment's end_seq; text beyond it is dropped
// (DropDataAfterFin); once the hole fills, the FIN is taken and the
// connection moves to CLOSE-WAIT.
func TestFinHeldOutOfOrder(t *testing.T) {
	p, ep := sackPeer(t)
	data := payload(0, 300)
	p.Inject(seg{Flags: "F.", Seq: 201, Ack: 1, Payload: data[200:300]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{201, 302}}})
	p.Inject(seg{Flags: ".", Seq: 302, Ack: 1, Payload: []byte("beyond")})
	p.ExpectNothing()
	wantCount(t, "data after FIN drops", p.TCP.Stats().Dropped(event.DropDataAfterFin), 1)
	// The FIN again, with and without its text: duplicates (the first
	// block a D-SACK, of the text: a D-SACK reports what came twice as
	// it is held, without the FIN), not text after the FIN.
	p.Inject(seg{Flags: "F.", Seq: 201, Ack: 1, Payload: data[200:300]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{201, 301}, {201, 302}}})
	p.Inject(seg{Flags: "F.", Seq: 301, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{201, 302}}})
	wantCount(t, "data after FIN drops", p.TCP.Stats().Dropped(event.DropDataAfterFin), 1)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:200]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 302, Check: tcptest.CheckSACK})
	p.WantState(ep, event.CloseWait)
	if got := readAll(t, ep); !bytes.Equal(got, data) {
		t.Fatalf("read %q", got)
	}
}

// TestFinOnlyHeldOutOfOrder: a bare FIN above RCV.NXT is held and SACKed
// as the one sequence number it occupies, so the sender's RACK can tell
// that only the text below it is missing; text that fills part of the gap
// below it is acknowledged at once (RFC 5681 4.2), its block first (RFC
// 2018 4) and the FIN's after it, and the text that reaches it takes it.
func TestFinOnlyHeldOutOfOrder(t *testing.T) {
	p, ep := sackPeer(t)
	data := payload(0, 100)
	p.Inject(seg{Flags: "F.", Seq: 101, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{101, 102}}})
	p.Inject(seg{Flags: ".", Seq: 61, Ack: 1, Payload: data[60:80]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{61, 81}, {101, 102}}})
	p.Inject(seg{Flags: ".", Seq: 81, Ack: 1, Payload: data[80:]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{61, 102}}})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:50]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 51, SACK: sackBlocks{{61, 102}}})
	p.Inject(seg{Flags: ".", Seq: 51, Ack: 1, Payload: data[50:60]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 102, Check: tcptest.CheckSACK})
	p.WantState(ep, event.CloseWait)
	if got := readAll(t, ep); !bytes.Equal(got, data) {
		t.Fatalf("read %q", got)
	}
}
