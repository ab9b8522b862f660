package tcp

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// streamByte is byte i of the test stream.
func streamByte(i uint32) byte { return byte('a' + i%26) }

// frame returns the text [off, off+n) of the test stream the way a link
// delivers it: a view into a chunk sized for a whole frame of headroom
// bytes of headers and the text.
func frame(off, n uint32, headroom int) buffer.Buffer {
	b := make([]byte, headroom+int(n))
	for i := range n {
		b[headroom+int(i)] = streamByte(off + i)
	}
	v := buffer.NewViewWithData(b)
	v.TrimFront(headroom)
	return buffer.MakeWithView(v)
}

// span is a range relative to a base sequence number.
type span struct{ start, end uint32 }

func (s span) String() string { return fmt.Sprintf("[%d,%d)", s.start, s.end) }

// hold inserts text [off, off+n) of the stream at base+off, without limits.
func hold(r *reassembly, base seqnum.Value, off, n uint32) { holdFrom(r, base, off, n, 54) }

// holdFrom is hold with the text in a frame of headroom bytes of headers.
func holdFrom(r *reassembly, base seqnum.Value, off, n uint32, headroom int) {
	data := frame(off, n, headroom)
	p := r.prepare(base.Add(seqnum.Size(off)), &data)
	r.commit(&p)
	data.Release()
}

// check compares r's ranges with want and verifies each range's text, its
// charge and the totals.
func check(t *testing.T, r *reassembly, base seqnum.Value, want []span) {
	t.Helper()
	var got []span
	mem, n := 0, 0
	if r.oooTree != nil && r.tree != nil { // the tree is made on first use
		r.tree.Ascend(func(x *oooRange) bool {
			s := span{uint32(x.start - base), uint32(x.end - base)}
			got = append(got, s)
			text := x.data.Flatten()
			if len(text) != int(s.end-s.start) {
				t.Errorf("range %v holds %d bytes", s, len(text))
			} else {
				for i := range text {
					if text[i] != streamByte(s.start+uint32(i)) {
						t.Errorf("range %v: byte %d is %q, want %q", s, i, text[i], streamByte(s.start+uint32(i)))
						break
					}
				}
			}
			cost := rangeOverhead
			views := x.data.AsViewList()
			for v := views.Front(); v != nil; v = v.Next() {
				cost += viewOverhead + v.Capacity()
			}
			if cost != x.charge {
				t.Errorf("range %v charged %d, pins %d", s, x.charge, cost)
			}
			mem += x.charge
			n += len(text)
			return true
		})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ranges %v, want %v", got, want)
	}
	if r.mem != mem || r.bytes != n {
		t.Errorf("queue counts %d bytes charged %d, ranges hold %d charged %d", r.bytes, r.mem, n, mem)
	}
}

func blocksOf(r *reassembly, base seqnum.Value, room int) []span {
	out := make([]header.SACKBlock, room)
	k := r.sackBlocks(out)
	var s []span
	for _, b := range out[:k] {
		s = append(s, span{uint32(b.Start - base), uint32(b.End - base)})
	}
	return s
}

// TestReassemblyInsert places text by every way it can meet held ranges:
// apart, abutting, overlapping, covering, duplicating. Each case runs at a
// base below the 2^32 wrap, so its ranges straddle it.
func TestReassemblyInsert(t *testing.T) {
	for _, tc := range []struct {
		name   string
		holds  []span
		want   []span
		dsack  *span  // pending D-SACK after the last insert
		blocks []span // the SACK option, 4 blocks of room
	}{
		{"apart", []span{{10, 20}, {30, 40}}, []span{{10, 20}, {30, 40}}, nil, []span{{30, 40}, {10, 20}}},
		{"abut after", []span{{10, 20}, {20, 30}}, []span{{10, 30}}, nil, []span{{10, 30}}},
		{"abut before", []span{{20, 30}, {10, 20}}, []span{{10, 30}}, nil, []span{{10, 30}}},
		{"fill between", []span{{10, 20}, {30, 40}, {20, 30}}, []span{{10, 40}}, nil, []span{{10, 40}}},
		{"exact duplicate", []span{{10, 20}, {30, 40}, {10, 20}}, []span{{10, 20}, {30, 40}}, &span{10, 20}, []span{{10, 20}, {10, 20}, {30, 40}}},
		{"inside", []span{{10, 20}, {12, 15}}, []span{{10, 20}}, &span{12, 15}, []span{{12, 15}, {10, 20}}},
		{"overlap front", []span{{10, 20}, {5, 15}}, []span{{5, 20}}, &span{10, 15}, []span{{10, 15}, {5, 20}}},
		{"overlap back", []span{{10, 20}, {15, 25}}, []span{{10, 25}}, &span{15, 20}, []span{{15, 20}, {10, 25}}},
		{"cover", []span{{10, 20}, {5, 25}}, []span{{5, 25}}, &span{10, 20}, []span{{10, 20}, {5, 25}}},
		{"cover many", []span{{10, 12}, {14, 16}, {18, 20}, {0, 30}}, []span{{0, 30}}, &span{10, 12}, []span{{10, 12}, {0, 30}}},
		{"bridge two", []span{{10, 20}, {30, 40}, {15, 35}}, []span{{10, 40}}, &span{15, 20}, []span{{15, 20}, {10, 40}}},
		{"inside merged", []span{{10, 20}, {20, 30}, {12, 28}}, []span{{10, 30}}, &span{12, 28}, []span{{12, 28}, {10, 30}}},
		{"recent first", []span{{50, 60}, {10, 20}, {30, 40}, {70, 80}, {35, 36}}, []span{{10, 20}, {30, 40}, {50, 60}, {70, 80}}, &span{35, 36}, []span{{35, 36}, {30, 40}, {70, 80}, {10, 20}}},
	} {
		for _, base := range []seqnum.Value{1000, 0xffffffe0} {
			t.Run(fmt.Sprintf("%s/base=%#x", tc.name, uint32(base)), func(t *testing.T) {
				var r reassembly
				for _, h := range tc.holds {
					hold(&r, base, h.start, h.end-h.start)
				}
				check(t, &r, base, tc.want)
				switch {
				case tc.dsack == nil && r.dsackSet:
					t.Errorf("D-SACK %v pending, want none", span{uint32(r.dsack.Start - base), uint32(r.dsack.End - base)})
				case tc.dsack != nil && (!r.dsackSet || (span{uint32(r.dsack.Start - base), uint32(r.dsack.End - base)}) != *tc.dsack):
					t.Errorf("D-SACK %v (pending %v), want %v", span{uint32(r.dsack.Start - base), uint32(r.dsack.End - base)}, r.dsackSet, *tc.dsack)
				}
				if got := blocksOf(&r, base, 4); fmt.Sprint(got) != fmt.Sprint(tc.blocks) {
					t.Errorf("SACK blocks %v, want %v", got, tc.blocks)
				}
				r.reset()
				check(t, &r, base, nil)
			})
		}
	}
}

// TestReassemblyTakeInOrder: as RCV.NXT reaches held text, the lowest
// range comes out from RCV.NXT on, and bytes it held below RCV.NXT (they
// also came in order) extend the D-SACK.
func TestReassemblyTakeInOrder(t *testing.T) {
	base := seqnum.Value(0xfffffff0)
	var r reassembly
	hold(&r, base, 10, 10)
	hold(&r, base, 30, 10)
	if _, ok := r.takeInOrder(base + 5); ok {
		t.Fatal("took a range above RCV.NXT")
	}
	data, ok := r.takeInOrder(base + 15)
	if !ok || !bytes.Equal(data.Flatten(), []byte("pqrst")) {
		t.Fatalf("took %q, %v; want the text [15,20)", data.Flatten(), ok)
	}
	data.Release()
	if !r.dsackSet || r.dsack.Start != base+10 || r.dsack.End != base+15 {
		t.Errorf("D-SACK %v %v, want [10,15)", r.dsackSet, r.dsack)
	}
	check(t, &r, base, []span{{30, 40}})
	if got := blocksOf(&r, base, 4); fmt.Sprint(got) != "[[10,15) [30,40)]" {
		t.Errorf("SACK blocks %v", got)
	}
	// A range wholly below RCV.NXT comes out empty.
	data, ok = r.takeInOrder(base + 45)
	if !ok || data.Size() != 0 {
		t.Fatalf("took %d bytes, %v; want the range, empty", data.Size(), ok)
	}
	check(t, &r, base, nil)
}

// TestReassemblyFIN: a FIN held out of order ends the stream: text at or
// beyond it is not held; a FIN below held text is not taken.
func TestReassemblyFIN(t *testing.T) {
	const base = seqnum.Value(100)
	var r reassembly
	hold(&r, base, 10, 10)
	if r.holdFIN(base + 15) {
		t.Fatal("took a FIN inside held text")
	}
	if !r.holdFIN(base + 50) {
		t.Fatal("refused a FIN above all held text")
	}
	if r.holdFIN(base + 60) {
		t.Fatal("took a second FIN")
	}
	hold(&r, base, 45, 10)
	check(t, &r, base, []span{{10, 20}, {45, 50}})
	data := frame(50, 5, 54)
	p := r.prepare(base+50, &data)
	if !p.afterFin || p.newBytes != 0 {
		t.Fatalf("text after the FIN planned as %+v", p)
	}
	r.abort()
	data.Release()
	check(t, &r, base, []span{{10, 20}, {45, 50}})
	r.reset()
	if r.fin {
		t.Fatal("FIN held after reset")
	}
}

// TestReassemblyPrune: pruneAbove takes the highest range only while it
// lies above the given sequence number, and forgets its SACK block.
func TestReassemblyPrune(t *testing.T) {
	const base = seqnum.Value(7)
	var r reassembly
	for i := range uint32(6) {
		hold(&r, base, 10+10*i, 5)
	}
	if got := blocksOf(&r, base, 4); fmt.Sprint(got) != "[[60,65) [50,55) [40,45) [30,35)]" {
		t.Fatalf("SACK blocks %v", got)
	}
	start, n, ok := r.pruneAbove(base + 55)
	if !ok || start != base+60 || n != 5 {
		t.Fatalf("pruned %v %d %v, want [60,65)", start-base, n, ok)
	}
	if _, _, ok := r.pruneAbove(base + 50); ok {
		t.Fatal("pruned a range that touches the text")
	}
	check(t, &r, base, []span{{10, 15}, {20, 25}, {30, 35}, {40, 45}, {50, 55}})
	// The pruned block is gone; the fourth is filled from the highest
	// range not yet listed.
	if got := blocksOf(&r, base, 4); fmt.Sprint(got) != "[[50,55) [40,45) [30,35) [20,25)]" {
		t.Fatalf("SACK blocks %v", got)
	}
}

// TestCopyOut: a piece that fills less than half its chunk is copied into
// a chunk of its own size; a bigger one shares the frame.
func TestCopyOut(t *testing.T) {
	for _, tc := range []struct {
		n, headroom int
		shared      bool
		capacity    int
	}{
		{1, 1499, false, 64},     // one new byte of a full frame
		{100, 1400, false, 128},  // a small piece
		{1024, 900, true, 2048},  // half of its chunk: shared
		{1460, 54, true, 2048},   // a full segment
		{1, 40, false, 64},       // a tiny frame: 64-byte chunk
		{40, 10, true, 64},       // most of a tiny frame
		{2000, 100, false, 2048}, // 2100 in a 4096 chunk: copied
	} {
		data := frame(0, uint32(tc.n), tc.headroom)
		views := data.AsViewList()
		v := views.Front()
		nv, _ := copyOut(v, 0)
		if got := nv.Capacity(); got != tc.capacity {
			t.Errorf("%d bytes after %d: kept in a chunk of %d, want %d", tc.n, tc.headroom, got, tc.capacity)
		}
		if shared := &nv.AsSlice()[0] == &v.AsSlice()[0]; shared != tc.shared {
			t.Errorf("%d bytes after %d: shared %v, want %v", tc.n, tc.headroom, shared, tc.shared)
		}
		if !bytes.Equal(nv.AsSlice(), v.AsSlice()) {
			t.Errorf("%d bytes after %d: copy differs", tc.n, tc.headroom)
		}
		nv.Release()
		data.Release()
	}
}

// TestAppendCompactSharedChunk: in-order text cut from a sender's 64 KiB
// views, as two tapstacks' segments cross an in-memory link. The second
// segment is the first view's last 1,824 bytes and the next view's first
// 61,888: the small piece is linked, not copied, while the receive buffer
// holds the rest of its chunk; after a read has taken that rest, the same
// piece is copied, as before.
func TestAppendCompactSharedChunk(t *testing.T) {
	const size, first = buffer.MaxChunkSize, 63712
	chunk := func(off uint32) *buffer.View {
		v := buffer.NewView(size)
		b := make([]byte, size)
		for i := range b {
			b[i] = streamByte(off + uint32(i))
		}
		_, _ = v.Write(b)
		return v
	}
	// cut returns a buffer of v's bytes [from, to), sharing v's chunk.
	cut := func(v *buffer.View, from, to int) buffer.Buffer {
		c := v.Clone()
		c.TrimFront(from)
		c.CapLength(to - from)
		return buffer.MakeWithView(c)
	}
	for _, tc := range []struct {
		name     string
		readHead bool // the reader takes the first segment before the second arrives
		linked   bool
	}{
		{"rest of the chunk unread: linked", false, true},
		{"rest of the chunk read: copied", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := chunk(0), chunk(size)
			var rcv buffer.Buffer
			var run uint32
			seg1 := cut(a, 0, first)
			appendCompact(&rcv, &seg1, &run)
			if tc.readHead {
				rcv.TrimFront(first)
			}
			seg2 := cut(a, first, size)
			tail := cut(b, 0, 61888)
			seg2.Merge(&tail)
			appendCompact(&rcv, &seg2, &run)

			views := rcv.AsViewList()
			piece := views.Front()
			if !tc.readHead {
				piece = piece.Next()
			}
			if linked := &piece.AsSlice()[0] == &a.AsSlice()[first]; linked != tc.linked || piece.Size() != size-first {
				t.Errorf("the 1,824-byte piece: %d bytes, linked %v, want linked %v", piece.Size(), linked, tc.linked)
			}
			next := piece.Next()
			if next == nil || &next.AsSlice()[0] != &b.AsSlice()[0] {
				t.Errorf("the next view's 61,888 bytes were not linked")
			}
			from := 0
			if tc.readHead {
				from = first
			}
			want := make([]byte, 0, size+61888-from)
			for i := from; i < size+61888; i++ {
				want = append(want, streamByte(uint32(i)))
			}
			if got := rcv.Flatten(); !bytes.Equal(got, want) {
				t.Errorf("the receive buffer's text differs from the stream")
			}
			rcv.Release()
			a.Release()
			b.Release()
		})
	}
}

// TestChargeConstants: the overheads charged per range and per view are
// at least the sizes of the structures they stand for.
func TestChargeConstants(t *testing.T) {
	if s := unsafe.Sizeof(buffer.View{}); viewOverhead < int(s)+32 {
		t.Errorf("viewOverhead %d < View %d + chunk header 32", viewOverhead, s)
	}
	if s := unsafe.Sizeof(oooRange{}); rangeOverhead < int(s)+8 {
		t.Errorf("rangeOverhead %d < oooRange %d + a tree slot", rangeOverhead, s)
	}
}

// heapAlloc returns the live heap after two collections (the second
// empties sync.Pool's victim caches, where gVisor's views and chunks go).
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestReassemblyChargeIsHonest holds 20,000 one-byte ranges, each the one
// new byte of a full-size frame (the case that pinned 2 KiB a byte), and
// compares the heap they keep with what they are charged.
func TestReassemblyChargeIsHonest(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 ranges")
	}
	const n = 20_000
	const base = seqnum.Value(1)
	var r reassembly
	before := heapAlloc()
	for i := range uint32(n) {
		holdFrom(&r, base, 2*i+1, 1, 1499)
	}
	after := heapAlloc()
	grown := int64(after) - int64(before)
	t.Logf("%d one-byte ranges: heap +%d bytes (%.0f a range), charged %d (%.0f a range)",
		n, grown, float64(grown)/n, r.mem, float64(r.mem)/n)
	if grown > int64(r.mem) {
		t.Errorf("heap grew by %d bytes, more than the %d charged", grown, r.mem)
	}
	if grown < int64(r.mem)/4 {
		t.Errorf("heap grew by %d bytes, a quarter of the %d charged: the charge is not honest", grown, r.mem)
	}
	r.reset()
	runtime.KeepAlive(&r)
}

// BenchmarkHeldPiece compares the two ways of holding one new byte of a
// full-size frame: a clone that shares the frame's chunk (what the queue
// did before copyOut) and a copy. It reports the heap kept and the time
// taken per piece, the frame's making included.
//
//	go test -run - -bench HeldPiece -benchmem ./stack/tcp
func BenchmarkHeldPiece(b *testing.B) {
	for _, mode := range []string{"share", "copy"} {
		b.Run(mode, func(b *testing.B) {
			const n = 10_000
			held := make([]buffer.Buffer, n)
			var heap int64
			for b.Loop() {
				b.StopTimer()
				before := heapAlloc()
				b.StartTimer()
				for i := range held {
					data := frame(uint32(i), 1, 1499)
					views := data.AsViewList()
					v := views.Front()
					if mode == "share" {
						_ = held[i].Append(v.Clone())
					} else {
						nv, _ := copyOut(v, 0)
						_ = held[i].Append(nv)
					}
					data.Release()
				}
				b.StopTimer()
				heap += int64(heapAlloc()) - int64(before)
				for i := range held {
					held[i].Release()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/float64(b.N*n), "heap-B/piece")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/piece")
		})
	}
}

// FuzzReassembly drives one queue through any sequence of segments
// (placed anywhere in a 4 KB window, one to 64 bytes), advances of
// RCV.NXT, FINs and small limits, and checks it against a model after
// every step: the ranges are exactly the bytes the model holds, sorted,
// disjoint and not touching, each with the right text and charge; the
// limits hold; every SACK block is a held range or the D-SACK.
//
//	go test -run - -fuzz FuzzReassembly ./stack/tcp
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{0, 10, 0, 5, 0, 30, 0, 5, 1, 12, 0, 30, 2, 40, 0, 0})
	f.Add([]byte{3, 0, 1, 0, 0, 0, 1, 200, 0, 2, 0, 3, 2, 5, 0, 0, 1, 0, 0, 63})
	f.Add(bytes.Repeat([]byte{0, 7, 0, 0, 1, 3, 1, 0}, 40))
	f.Fuzz(func(t *testing.T, ops []byte) {
		const window = 4096
		base := seqnum.Value(0xfffff000)
		rcvNxt := uint32(0)                     // relative to base
		model := make([]bool, 512*200+2*window) // bytes held, by offset from base
		var r reassembly
		memLimit, rangeLimit := 6000, 16
		fin, finAt := false, uint32(0)
		for i := 0; i+4 <= len(ops) && i < 4*512; i += 4 {
			op, off, n := ops[i]%4, uint32(ops[i+1])|uint32(ops[i+2])<<8, uint32(ops[i+3])%64+1
			switch op {
			case 0, 1: // a segment above RCV.NXT
				start := rcvNxt + 1 + off%(window-64)
				data := frame(start, n, int(ops[i])%1500)
				p := r.prepare(base.Add(seqnum.Size(start)), &data)
				if p.afterFin {
					r.abort()
					data.Release()
					break
				}
				over := func() bool { return r.memAfter(&p) > memLimit || r.rangesAfter(&p) > rangeLimit }
				if p.newBytes > 0 {
					for range rangeLimit + 1 {
						if !over() {
							break
						}
						s, k, ok := r.pruneAbove(p.end)
						if !ok {
							break
						}
						for j := uint32(s - base); j < uint32(s-base)+uint32(k); j++ {
							model[j] = false
						}
					}
					if over() {
						r.abort()
						data.Release()
						break
					}
				}
				r.commit(&p)
				for j := start; j < uint32(p.end-base); j++ {
					model[j] = true
				}
				data.Release()
			case 2: // text arrives in order up to a new RCV.NXT
				to := rcvNxt + off%200
				if fin && to > finAt {
					to = finAt
				}
				for range r.ranges() + 1 {
					d, ok := r.takeInOrder(base.Add(seqnum.Size(to)))
					if !ok {
						break
					}
					to += uint32(d.Size())
					d.Release()
				}
				for j := rcvNxt; j < to; j++ {
					model[j] = false
				}
				rcvNxt = to
				if fin && rcvNxt == finAt {
					r.reset()
					fin = false
					clear(model)
				}
			case 3: // a FIN
				at := rcvNxt + 1 + off%window
				if r.holdFIN(base.Add(seqnum.Size(at))) {
					if fin {
						t.Fatal("a second FIN taken")
					}
					fin, finAt = true, at
				}
			}
			var want []span
			for j := rcvNxt; j < rcvNxt+window+64; j++ {
				if !model[j] {
					continue
				}
				if j == rcvNxt {
					t.Fatalf("byte %d held at RCV.NXT", j)
				}
				if k := len(want); k > 0 && want[k-1].end == j {
					want[k-1].end++
				} else {
					want = append(want, span{j, j + 1})
				}
			}
			check(t, &r, base, want)
			if r.mem > memLimit || r.ranges() > rangeLimit {
				t.Fatalf("queue charged %d in %d ranges, limits %d and %d", r.mem, r.ranges(), memLimit, rangeLimit)
			}
			for _, b := range blocksOf(&r, base, 4) {
				if r.dsackSet && b == (span{uint32(r.dsack.Start - base), uint32(r.dsack.End - base)}) {
					continue
				}
				// A held FIN is SACKed too: its own block, or the
				// range below it reported one longer.
				found := fin && b == span{uint32(finAt), uint32(finAt) + 1}
				for _, w := range want {
					if fin && w.end == uint32(finAt) {
						w.end++
					}
					found = found || w == b
				}
				if !found {
					t.Fatalf("SACK block %v is no held range (%v, FIN %v at %d)", b, want, fin, finAt)
				}
			}
			if t.Failed() {
				t.FailNow()
			}
		}
		r.reset()
	})
}
