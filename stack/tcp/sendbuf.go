package tcp

import (
	"sort"

	"gvisor.dev/gvisor/pkg/buffer"
)

// sendBuffer holds the send buffer's bytes (SND.UNA's side first, then
// those not yet sent) as the views the user's writes made, each with its
// first byte's offset in the connection's stream, so that the bytes of a
// segment are found by a binary search (sndData), not by walking the
// views from the front as gVisor's buffer.Buffer.SubApply does. With
// small writes a view holds a write or a few: 100-byte writes to the
// kernel over a 10 ms round trip kept ~10,000 views in a full 1 MiB
// buffer, and walking them for every segment sent took 54% of the
// sender's CPU: 22.6 µs to find a segment at the end of such a buffer,
// against 1.3 µs by search (BenchmarkSendDataSmallViews).
//
// Its methods are named after buffer.Buffer's where they mean the same.
type sendBuffer struct {
	// buf[0] is a header whose off counts the views popped from the front
	// since the array was last compacted; the views held, oldest first,
	// are buf[1+popped:]. Popping moves the count and compacting (when an
	// append finds the array full) moves the views down, so that a buffer
	// that fills and drains forever allocates nothing, and one that
	// empties starts again at the array's front. A view's first byte is
	// at its off, counted from the first byte appended since the buffer
	// was last empty: only the views' offsets relative to one another
	// matter, and they grow with each view.
	buf []sendView
}

// sendView is one view of the buffer and the offset of its first byte.
type sendView struct {
	v   *buffer.View
	off uint64
}

// keepViews is the most views' room an emptied buffer keeps for the next
// writes; a larger array (after many small writes) is freed. A full
// default send buffer of 64 KiB views, 4 MiB, is 64 views and the header,
// which append grows to an array of 128 (2 KiB): kept, so a connection
// that sends burst after burst does not grow it again each time
// (TestSendBufferRefillAllocs).
const keepViews = 128

// views returns the views held, oldest first.
func (b *sendBuffer) views() []sendView {
	if len(b.buf) == 0 {
		return nil
	}
	return b.buf[1+b.buf[0].off:]
}

// maxMergeChunk bounds the chunks a write is copied into rather than
// given a view of its own: a write goes into the last view's free room
// only when that view's chunk is at most this large, and only while none
// of the view's bytes has been sent. A sent view's chunk is shared with
// the packet that carries them, perhaps still in flight, and gVisor's
// View.Write copies a shared chunk whole before writing (copy on write).
// Without merging, a buffer of 1-byte writes would hold a 64-byte chunk
// per byte.
const maxMergeChunk = 4 << 10

// roomFor returns the last view if n bytes can be copied into its room,
// else nil: it has the room, its chunk is small, and none of its bytes is
// among the first sent of the buffer, those handed out for segments.
func (b *sendBuffer) roomFor(n int, sent int64) *buffer.View {
	vs := b.views()
	if len(vs) == 0 {
		return nil
	}
	last := vs[len(vs)-1]
	room := last.v.AvailableSize()
	if room >= n && last.v.Size()+room <= maxMergeChunk && int64(last.off-vs[0].off) >= sent {
		return last.v
	}
	return nil
}

// Size returns the bytes held.
func (b *sendBuffer) Size() int64 {
	vs := b.views()
	if len(vs) == 0 {
		return 0
	}
	last := vs[len(vs)-1]
	return int64(last.off + uint64(last.v.Size()) - vs[0].off)
}

// Append adds v's bytes at the end and takes ownership of v; sent is
// how many of the buffer's first bytes have been handed out for segments
// (CloneRange). Bytes that fit the last view's room, when its chunk is
// small and unsent (roomFor), are copied there.
func (b *sendBuffer) Append(v *buffer.View, sent int64) {
	n := v.Size()
	if n == 0 {
		v.Release()
		return
	}
	if last := b.roomFor(n, sent); last != nil {
		_, _ = last.Write(v.AsSlice())
		v.Release()
		return
	}
	b.push(v)
}

// Write copies p to the end of the buffer; sent is as for Append. Bytes
// that fit the last view's room (roomFor) are copied there,
// under the caller's lock and with no allocation. Otherwise they go into
// a new view, with room for more when some of the buffer is unsent: a
// writer then outruns the segments (Nagle holds a short tail while data
// is in flight, RFC 9293 3.7.4, or the windows are full), and the next
// small writes join this one; a chunk of the write's own size would take
// none of them (100 bytes get a 128-byte chunk), and a segment made of
// 100-byte writes would be fifteen views to clone and release. When all
// is sent, each write is likely its own segment (TCP_NODELAY, or the
// first write after an idle spell), the view is shared as soon as it
// goes, and a larger chunk would only pin memory while it is in flight.
func (b *sendBuffer) Write(p []byte, sent int64) {
	if len(p) == 0 {
		return
	}
	if last := b.roomFor(len(p), sent); last != nil {
		_, _ = last.Write(p)
		return
	}
	size := len(p)
	if sent < b.Size() {
		size = max(size, maxMergeChunk)
	}
	v := buffer.NewView(size)
	_, _ = v.Write(p)
	b.push(v)
}

// push adds v, which holds bytes, as the last view.
func (b *sendBuffer) push(v *buffer.View) {
	var off uint64
	if vs := b.views(); len(vs) > 0 {
		last := vs[len(vs)-1]
		off = last.off + uint64(last.v.Size())
	}
	switch {
	case len(b.buf) == 0:
		b.buf = append(b.buf, sendView{}) // the header
	case len(b.buf) == cap(b.buf) && b.buf[0].off > 0:
		// Full, with room at the front: move the views down.
		k := copy(b.buf[1:], b.buf[1+b.buf[0].off:])
		clear(b.buf[1+k:])
		b.buf = b.buf[:1+k]
		b.buf[0].off = 0
	}
	b.buf = append(b.buf, sendView{v: v, off: off})
}

// TrimFront drops the first n bytes (those acknowledged); the views it
// lets go of go to cache, or are released if it is nil.
func (b *sendBuffer) TrimFront(n int64, cache *chunkCache) {
	for vs := b.views(); n > 0 && len(vs) > 0; vs = vs[1:] {
		first := &vs[0]
		sz := int64(first.v.Size())
		if n < sz {
			first.v.TrimFront(int(n))
			first.off += uint64(n)
			return
		}
		n -= sz
		if cache != nil {
			cache.give(first.v)
		} else {
			first.v.Release()
		}
		*first = sendView{}
		b.buf[0].off++
	}
	if len(b.buf) > 0 && len(b.views()) == 0 {
		// Empty: start again at the front, or free a large array.
		if cap(b.buf) > keepViews {
			b.buf = nil
		} else {
			b.buf = b.buf[:1]
			b.buf[0].off = 0
		}
	}
}

// CloneRange calls fn with views of the bytes [offset, offset+length) of
// the buffer, in order, sharing their chunks; fn owns each view (one
// clone per view, where buffer.Buffer.SubApply's caller clones what
// SubApply cloned to trim). Bytes outside the buffer are left out.
func (b *sendBuffer) CloneRange(offset, length int, fn func(*buffer.View)) {
	vs := b.views()
	if len(vs) == 0 || offset < 0 || length <= 0 {
		return
	}
	want := vs[0].off + uint64(offset)
	// The first view that ends after want.
	i := sort.Search(len(vs), func(i int) bool {
		return vs[i].off+uint64(vs[i].v.Size()) > want
	})
	for first := true; i < len(vs) && length > 0; i, first = i+1, false {
		d := vs[i].v.Clone()
		if first {
			d.TrimFront(int(want - vs[i].off))
		}
		if length < d.Size() {
			d.CapLength(length)
		}
		length -= d.Size()
		fn(d)
	}
}

// Release frees every view.
func (b *sendBuffer) Release() {
	for _, sv := range b.views() {
		sv.v.Release()
	}
	b.buf = nil
}

// Apply calls fn with each view held, in order; fn must not keep or
// change them.
func (b *sendBuffer) Apply(fn func(*buffer.View)) {
	for _, sv := range b.views() {
		fn(sv.v)
	}
}
