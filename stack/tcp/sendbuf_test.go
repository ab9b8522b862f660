package tcp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
)

// TestSendBuffer: a send buffer fed writes of random sizes (copied in
// by Write or appended as views; small ones merged into the last view,
// large ones views of their own), trimmed from the front as ACKs would,
// and read back in random ranges as segments are (half of them kept a
// while, their chunks shared as a packet in flight shares them, while
// more is written), holds the bytes a plain byte slice does, range by
// range, and the segments kept still hold theirs when released; a range
// past the end gives what there is. Offsets keep counting across the
// buffer emptying.
func TestSendBuffer(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var b sendBuffer
	defer b.Release()
	var ref []byte // what the buffer should hold
	var sent int64 // how many of its first bytes segments have taken
	type inFlight struct {
		v    *buffer.View
		want []byte
	}
	var held []inFlight // clones of segments "in flight"
	release := func() {
		for _, h := range held {
			if !bytes.Equal(h.v.AsSlice(), h.want) {
				t.Fatalf("a segment in flight changed: first differing byte at %d of %d", firstDiff(h.v.AsSlice(), h.want), len(h.want))
			}
			h.v.Release()
		}
		held = held[:0]
	}
	defer release()
	next := byte(0)
	for step := 0; step < 20000; step++ {
		switch op := r.IntN(10); {
		case op < 5: // a write
			n := 1 + r.IntN(100)
			if r.IntN(8) == 0 {
				n = 1 + r.IntN(70000)
			}
			p := make([]byte, n)
			for i := range p {
				p[i], next = next, next+1
			}
			ref = append(ref, p...)
			if r.IntN(2) == 0 {
				b.Write(p, sent)
			} else {
				b.Append(buffer.NewViewWithData(p), sent)
			}
		case op < 7: // an ACK
			n := r.IntN(len(ref) + 1)
			b.TrimFront(int64(n), nil)
			ref = ref[n:]
			sent = max(sent-int64(n), 0)
		default: // a segment
			off, n := r.IntN(len(ref)+1), 1+r.IntN(3000)
			var got []byte
			b.CloneRange(off, n, func(v *buffer.View) {
				got = append(got, v.AsSlice()...)
				// Half the segments stay "in flight" a while, their
				// chunks shared, while more is written.
				if r.IntN(2) == 0 {
					held = append(held, inFlight{v, bytes.Clone(v.AsSlice())})
				} else {
					v.Release()
				}
			})
			sent = max(sent, int64(min(len(ref), off+n)))
			want := ref[off:min(len(ref), off+n)]
			if !bytes.Equal(got, want) {
				t.Fatalf("step %d: [%d, +%d) of %d bytes: got %d bytes, want %d (first differing at %d)", step, off, n, len(ref), len(got), len(want), firstDiff(got, want))
			}
		}
		if len(held) > 8 {
			release()
		}
		if b.Size() != int64(len(ref)) {
			t.Fatalf("step %d: Size %d, want %d", step, b.Size(), len(ref))
		}
	}
}

// TestSendBufferSmallWrites: 100-byte writes made while some of the
// buffer is unsent (Nagle holding a tail) join one another in 4 KiB
// chunks, a segment's bytes in a view or two; a view some of whose bytes
// were sent takes no more (its chunk is shared with the packet); and
// writes each sent before the next (TCP_NODELAY) keep chunks of their own
// size, which pin no more memory than their bytes need while in flight.
func TestSendBufferSmallWrites(t *testing.T) {
	p := make([]byte, 100)
	views := func(b *sendBuffer) (n, capacity int) {
		b.Apply(func(v *buffer.View) { n, capacity = n+1, capacity+v.Capacity() })
		return n, capacity
	}

	var held sendBuffer
	held.Write(p, 0) // the first write, sent at once
	for range 999 {
		held.Write(p, 100) // the rest held back
	}
	// Two of a write's own size (all sent when each came), then 40
	// writes to a 4 KiB chunk.
	if n, _ := views(&held); n != 2+(998+39)/40 {
		t.Errorf("1,000 writes of 100 bytes held back: %d views, want %d", n, 2+(998+39)/40)
	}
	held.Release()

	var split sendBuffer
	for range 10 {
		split.Write(p, 0)
	}
	before, _ := views(&split)
	split.Write(p, 1000) // all sent: a view of its own
	if n, _ := views(&split); n != before+1 {
		t.Errorf("a write after all was sent: %d views, want %d", n, before+1)
	}
	q := p[:20]
	split.Write(q, 1000) // into its room: none of it sent
	if n, _ := views(&split); n != before+1 {
		t.Errorf("a write into an unsent view's room: %d views, want %d", n, before+1)
	}
	split.Write(q, 1110) // the last view partly sent: another
	if n, _ := views(&split); n != before+2 {
		t.Errorf("a write after a segment took half the last view: %d views, want %d", n, before+2)
	}
	split.Release()

	var nodelay sendBuffer
	for i := range 1000 {
		nodelay.Write(p, int64(100*i))
	}
	if n, capacity := views(&nodelay); n != 1000 || capacity > 1000*128 {
		t.Errorf("1,000 writes of 100 bytes each sent before the next: %d views of %d bytes in all, want 1,000 of at most %d", n, capacity, 1000*128)
	}
	nodelay.Release()
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkSendDataSmallViews: the bytes of one segment at the end of a
// full 1 MiB send buffer made of 100-byte writes each in a view of its
// own (as when each write found the last view's bytes sent), found by
// the send buffer and, for comparison, by gVisor's buffer.Buffer, which
// walks its views from the front.
func BenchmarkSendDataSmallViews(b *testing.B) {
	const write, total, seg = 100, 1 << 20, 1448
	p := make([]byte, write)
	for _, impl := range []string{"sendBuffer", "buffer.Buffer"} {
		b.Run(impl, func(b *testing.B) {
			var sb sendBuffer
			var gb buffer.Buffer
			defer sb.Release()
			defer gb.Release()
			for n := 0; n < total; n += write {
				v := buffer.NewViewWithData(p)
				if impl == "sendBuffer" {
					if len(sb.buf) == 0 {
						sb.buf = append(sb.buf, sendView{})
					}
					sb.buf = append(sb.buf, sendView{v: v, off: uint64(n)}) // a view each: no merging
				} else {
					gb.Append(v)
				}
			}
			off := total - seg
			for b.Loop() {
				var out buffer.Buffer
				if impl == "sendBuffer" {
					sb.CloneRange(off, seg, func(v *buffer.View) { _ = out.Append(v) })
				} else {
					gb.SubApply(off, seg, func(v *buffer.View) { _ = out.Append(v.Clone()) })
				}
				out.Release()
			}
		})
	}
}

// BenchmarkSmallWrites: 100-byte writes into a send buffer whose segments
// are cut at 1,448 bytes once that much is unsent (as Nagle cuts them
// while data is in flight) and acknowledged a segment behind, per write:
// copied into the buffer (Write, what the engine does with a write of
// 4 KiB or less) and, for comparison, each copied into a view of its own
// first and appended (what it did before).
func BenchmarkSmallWrites(b *testing.B) {
	const write, seg = 100, 1448
	p := make([]byte, write)
	for _, impl := range []string{"Write", "Append"} {
		b.Run(impl, func(b *testing.B) {
			var sb sendBuffer
			defer sb.Release()
			var sent int64
			var inFlight buffer.Buffer // the last segment, not yet acknowledged
			defer inFlight.Release()
			b.ReportAllocs()
			b.SetBytes(write)
			for b.Loop() {
				if impl == "Write" {
					sb.Write(p, sent)
				} else {
					sb.Append(buffer.NewViewWithData(p), sent)
				}
				if sb.Size()-sent < seg {
					continue
				}
				sb.TrimFront(int64(inFlight.Size()), nil) // the previous segment's ACK
				sent -= inFlight.Size()
				inFlight.Release()
				sb.CloneRange(int(sent), seg, func(v *buffer.View) { _ = inFlight.Append(v) })
				sent += seg
			}
		})
	}
}

// TestSendBufferRefillAllocs: a buffer that fills with a full default
// send buffer's worth of 64 KiB views (4 MiB: 64 views and the header,
// an array of 128 once append has grown it), empties as the ACKs come,
// and fills again, as a connection does burst after burst, keeps its
// array: no allocation of its own per burst. With room for 64 kept, the
// array went and grew again, seven allocations a burst, the most an
// in-memory transfer of 16 MiB bursts allocated per segment
// (BenchmarkAllocsPerSegment).
func TestSendBufferRefillAllocs(t *testing.T) {
	const views, size = 64, 64 << 10
	var b sendBuffer
	defer b.Release()
	var pool []*buffer.View
	for range views {
		pool = append(pool, buffer.NewView(size))
	}
	burst := func() {
		for _, v := range pool {
			b.push(v)
		}
		// Each view goes whole; the test keeps it, so it is not released.
		for vs := b.views(); len(vs) > 0; vs = b.views() {
			vs[0] = sendView{}
			b.buf[0].off++
		}
		b.TrimFront(0, nil)
	}
	burst() // the array grows to its size
	if n := testing.AllocsPerRun(10, burst); n != 0 {
		t.Errorf("%.0f allocations a burst of %d views, want 0", n, views)
	}
}
