package tcp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
)

// TestSendBuffer: a send buffer fed writes of random sizes (small ones
// merged into the last view, large ones views of their own), trimmed
// from the front as ACKs would, and read back in random ranges as
// segments are (half of them kept a while, their chunks shared as a
// packet in flight shares them, while more is written into the last
// view), holds the bytes a plain byte slice does, range by range;
// a range past the end gives what there is. Offsets keep counting across
// the buffer emptying.
func TestSendBuffer(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var b sendBuffer
	defer b.Release()
	var ref []byte          // what the buffer should hold
	var held []*buffer.View // clones of segments "in flight"
	defer func() {
		for _, v := range held {
			v.Release()
		}
	}()
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
			_ = b.Append(buffer.NewViewWithData(p))
		case op < 7: // an ACK
			n := r.IntN(len(ref) + 1)
			b.TrimFront(int64(n))
			ref = ref[n:]
		default: // a segment
			off, n := r.IntN(len(ref)+1), 1+r.IntN(3000)
			var got []byte
			b.SubApply(off, n, func(v *buffer.View) {
				got = append(got, v.AsSlice()...)
				// Half the segments stay "in flight" a while, their
				// chunks shared, while more is written.
				if r.IntN(2) == 0 {
					held = append(held, v.Clone())
				}
			})
			want := ref[off:min(len(ref), off+n)]
			if !bytes.Equal(got, want) {
				t.Fatalf("step %d: [%d, +%d) of %d bytes: got %d bytes, want %d (first differing at %d)", step, off, n, len(ref), len(got), len(want), firstDiff(got, want))
			}
		}
		if len(held) > 8 {
			for _, v := range held {
				v.Release()
			}
			held = held[:0]
		}
		if b.Size() != int64(len(ref)) {
			t.Fatalf("step %d: Size %d, want %d", step, b.Size(), len(ref))
		}
	}
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
// own (as when each write finds the last view's chunk shared with a
// packet in flight), found by the send buffer and, for comparison, by
// gVisor's buffer.Buffer, which walks its views from the front.
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
			apply := sb.SubApply
			if impl != "sendBuffer" {
				apply = gb.SubApply
			}
			off := total - seg
			for b.Loop() {
				var out buffer.Buffer
				apply(off, seg, func(v *buffer.View) { _ = out.Append(v.Clone()) })
				out.Release()
			}
		})
	}
}
