package tcp

import (
	"unsafe"

	"github.com/google/btree"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// Reassembly of out-of-order text. RFC 9293 3.10.7.4 (seventh step) lets a
// receiver hold segments that arrive above RCV.NXT "for later processing";
// this is where they are held, bounded, until the hole below them fills.
//
// Held text is a set of ranges [start, end) of sequence space, disjoint and
// never touching (a segment that overlaps or abuts a range merges with it),
// kept in a B-tree ordered by start, so a segment costs O(log n) to place
// however many holes a peer has opened. Sequence numbers are compared with
// seqnum's wrap-safe LessThan: everything held lies in the receive window,
// less than 2^30 bytes wide (RFC 7323 2.3), so the order is total.
//
// Every range is charged by the heap it pins, as Linux charges truesize:
// its own bookkeeping plus every buffer chunk its views keep alive. A piece
// of text that would pin a chunk more than twice its size (one new byte of
// a 1460-byte segment whose other bytes were held already pins the whole
// 2 KiB frame) is copied out into a chunk of its own instead (copyOut),
// and a small piece that continues a range is copied into that range's
// last chunk when it has room (appendPiece), as Linux's tcp_try_coalesce.
// BenchmarkHeldPiece measures the choice: a shared one-byte piece of a
// full frame keeps 2 KiB of heap, a copy about 150 bytes.
// When a segment would take the queue past its memory or range limit, the
// ranges above it are pruned, highest first, as Linux's
// tcp_prune_ofo_queue does; if that is not enough the segment is dropped.
// Held text was never acknowledged cumulatively, so pruning it loses
// nothing the peer was told we have, except SACKed bytes, which RFC 2018 8
// lets a receiver renege on.
//
// For SACK (RFC 2018 4) the queue keeps the blocks it reported most
// recently, as Linux's selective_acks, so an ACK is built in O(1) without
// walking the ranges; and the duplicate range a D-SACK (RFC 2883) reports
// on the next ACK.

// Bytes of heap a range costs beyond its text, for the charge. A range is
// an oooRange (40 bytes, allocated as 48) and its slot in a B-tree node
// (nodes of degree btreeDegree hold 7 to 15 item pointers in slices of up
// to 16, plus child pointers: at most about 48 bytes per item). A view is
// a gVisor buffer.View (40 bytes, allocated as 48) and the header of the
// chunk it points to (32 bytes), whose data is charged at its capacity.
// reassembly_test.go checks these against unsafe.Sizeof and the heap.
const (
	rangeOverhead = 48 + 48
	viewOverhead  = 48 + 32
	btreeDegree   = 8
)

// Limits on held ranges. A sender whose segments are at least 512 bytes
// (RFC 9293's default MSS is 536) cannot open more than one hole per 1024
// bytes of window even when every other segment is lost, so a limit of
// one range per KiB of receive buffer costs a legitimate sender nothing;
// the floor keeps small buffers useful.
const (
	oooBytesPerRange = 1024
	minOOORanges     = 32
)

// oooRange is a maximal run of held bytes [start, end).
type oooRange struct {
	start, end seqnum.Value
	data       buffer.Buffer
	charge     int // heap bytes pinned, rangeOverhead included
}

func rangeLess(a, b *oooRange) bool { return a.start.LessThan(b.start) }

// oooPiece is new text about to be held: a copy or a clone of part of a
// segment's payload.
type oooPiece struct {
	start  seqnum.Value
	data   buffer.Buffer
	cost   int  // heap its views pin
	copied bool // every view is a copy of our own
}

// oooPlan is how a segment's text would join the queue: prepare computes
// it, and nothing changes until commit.
type oooPlan struct {
	start, end seqnum.Value // the text, clipped at a held FIN
	newBytes   int          // bytes not held before
	cost       int          // heap the new pieces pin
	touched    int          // ranges the text overlaps or abuts: they merge into one
	afterFin   bool         // the whole text lies at or beyond a held FIN
}

// reassembly is the out-of-order queue of one connection. Its zero value is
// an empty queue; the B-tree is made on first use.
type reassembly struct {
	bytes int // text bytes held: what the advertised window counts
	mem   int // heap bytes held: what the limits count

	// A FIN held out of order: the stream ends at finSeq. Text at or
	// beyond it is never held. Its sequence number is SACKed (see
	// sackBlocks); finLatest says it arrived after the last held text,
	// so a lone FIN block leads the next ACK's blocks.
	fin       bool
	finLatest bool
	finSeq    seqnum.Value

	// The SACK blocks reported most recently, most recent first (RFC 2018
	// 4); every one is a range in the tree.
	recent  [header.TCPMaxSACKBlocks]header.SACKBlock
	nrecent int

	// The duplicate range the next ACK reports first (RFC 2883 4), once.
	dsack    header.SACKBlock
	dsackSet bool

	// The tree and the scratch of insertions, made when text first
	// arrives out of order: a connection that never sees any (most)
	// does not carry them.
	*oooTree
}

// oooTree is the part of a reassembly queue made on first use.
type oooTree struct {
	tree *btree.BTreeG[*oooRange]

	// Scratch for one insert, kept to avoid allocating per segment.
	pivot     oooRange
	found     *oooRange
	touched   []*oooRange
	pieces    []oooPiece
	planDup   header.SACKBlock
	planDupOK bool
	fill      [header.TCPMaxSACKBlocks]header.SACKBlock
	nfill     int
	fillRoom  int

	// Iterators for the tree, made once with it.
	takeFirst func(*oooRange) bool
	collect   func(*oooRange) bool
	fillFrom  func(*oooRange) bool
}

// ranges returns how many ranges are held.
func (r *reassembly) ranges() int {
	if r.oooTree == nil {
		return 0
	}
	return r.tree.Len()
}

func (r *reassembly) init() {
	// No free list: nodes of a drained queue go back to the garbage
	// collector rather than stay pinned by an idle connection.
	r.oooTree = &oooTree{}
	r.tree = btree.NewWithFreeListG(btreeDegree, rangeLess, btree.NewFreeListG[*oooRange](0))
	r.takeFirst = func(x *oooRange) bool { r.found = x; return false }
	r.collect = func(x *oooRange) bool {
		if r.pivot.end.LessThan(x.start) {
			return false
		}
		if x != r.found {
			r.touched = append(r.touched, x)
		}
		return true
	}
	r.fillFrom = func(x *oooRange) bool {
		if r.nfill >= r.fillRoom {
			return false
		}
		for _, b := range r.recent[:r.nrecent] {
			if b.Start == x.start {
				return true
			}
		}
		r.fill[r.nfill] = header.SACKBlock{Start: x.start, End: x.end}
		r.nfill++
		return true
	}
}

// prepare plans holding the text data at seq, which lies above RCV.NXT
// inside the window: it finds the ranges the text overlaps or abuts, the
// parts of it not held yet (cut out as pieces, copied or cloned) and the
// first run of bytes held already (the D-SACK). It changes nothing held;
// commit or abort must follow.
func (r *reassembly) prepare(seq seqnum.Value, data *buffer.Buffer) oooPlan {
	if r.oooTree == nil {
		r.init()
	}
	p := oooPlan{start: seq, end: seq.Add(seqnum.Size(data.Size()))}
	if r.fin && data.Size() > 0 {
		if !seq.LessThan(r.finSeq) {
			p.afterFin = true
			p.end = seq
			return p
		}
		if r.finSeq.LessThan(p.end) {
			p.end = r.finSeq
		}
	}
	r.touched = r.touched[:0]
	r.pieces = r.pieces[:0]
	r.planDupOK = false
	if !p.start.LessThan(p.end) {
		return p
	}

	// The range at or below the start, if it reaches the text, then every
	// range that begins inside it or right at its end.
	r.found = nil
	r.pivot.start, r.pivot.end = p.start, p.end
	r.tree.DescendLessOrEqual(&r.pivot, r.takeFirst)
	if r.found != nil && r.found.end.LessThan(p.start) {
		r.found = nil
	}
	if r.found != nil {
		r.touched = append(r.touched, r.found)
	}
	r.tree.AscendGreaterOrEqual(&r.pivot, r.collect)
	p.touched = len(r.touched)

	cur := p.start
	extends := false // a held range ends at cur
	for _, x := range r.touched {
		if cur.LessThan(x.start) {
			r.addPiece(&p, data, cur, x.start, extends)
		}
		// [max(cur, x.start), min(x.end, p.end)) is held already.
		from, to := cur, x.end
		if cur.LessThan(x.start) {
			from = x.start
		}
		if p.end.LessThan(to) {
			to = p.end
		}
		if from.LessThan(to) {
			r.noteDup(from, to)
		}
		if cur.LessThan(x.end) {
			cur = x.end
		}
		extends = cur == x.end
	}
	if cur.LessThan(p.end) {
		r.addPiece(&p, data, cur, p.end, extends)
	}
	return p
}

// noteDup records [from, to) as duplicated by the segment being planned:
// the first such run, extended by runs that continue it (as Linux's
// tcp_dsack_set and tcp_dsack_extend).
func (r *reassembly) noteDup(from, to seqnum.Value) {
	switch {
	case !r.planDupOK:
		r.planDup, r.planDupOK = header.SACKBlock{Start: from, End: to}, true
	case r.planDup.End == from:
		r.planDup.End = to
	}
}

// addPiece cuts [from, to) out of data, which begins at p.start. A piece
// that continues a held range is copied, if small, into a chunk with room
// for more (commit then fills it), so that text arriving in small pieces
// does not cost a chunk per piece.
func (r *reassembly) addPiece(p *oooPlan, data *buffer.Buffer, from, to seqnum.Value, extends bool) {
	minChunk := 0
	if extends {
		minChunk = extendChunk
	}
	piece := oooPiece{start: from, copied: true}
	data.SubApply(int(p.start.Size(from)), int(from.Size(to)), func(v *buffer.View) {
		nv, copied := copyOut(v, minChunk)
		piece.copied = piece.copied && copied
		piece.cost += viewOverhead + nv.Capacity()
		_ = piece.data.Append(nv)
	})
	p.newBytes += int(piece.data.Size())
	p.cost += piece.cost
	r.pieces = append(r.pieces, piece)
}

// extendChunk is the least chunk a small piece is copied into when it
// continues held text or text the user has yet to read.
const extendChunk = 512

// copyOut returns a view of v's bytes to keep, and whether it is a copy: a
// clone sharing v's chunk when the bytes fill at least half of it,
// otherwise a copy in a chunk of at least minChunk bytes, so that no byte
// kept pins more than about two.
func copyOut(v *buffer.View, minChunk int) (*buffer.View, bool) {
	n := v.Size()
	if 2*n >= v.Capacity() {
		return v.Clone(), false
	}
	nv := buffer.NewView(max(n, minChunk))
	_, _ = nv.Write(v.AsSlice())
	return nv, true
}

// appendCompact appends the bytes of src to dst by copyOut's rule and
// empties src. Copies go into dst's last chunk when it has room, so a
// stream of small pieces shares chunks; clones are linked in as they are,
// never copied. run is where the bytes appended before ended in their
// chunk (runAddrs), kept by the caller from call to call.
//
// A small piece is linked too when the view before it in dst is of the
// same chunk (sameChunk): that chunk is pinned already, so the piece
// pins nothing more, and copying it would be a third copy of the text on
// its way from the sender's write to the reader's. A sender that cuts
// segments from 64 KiB views of its send buffer (tapstack's and gVisor's
// TCP, over an in-memory link that carries their views) makes such a
// piece at every view's end: a 64 KiB segment is a view's last bytes and
// the next view's first, and the smaller part was copied, up to a quarter
// of the text. Once the reader has taken the piece's predecessor, the
// piece alone pins its chunk, but it is then the next to be read.
//
// And a piece of at least runMin bytes is linked when it begins
// where the bytes appended before it ended, in its chunk, and does not
// end at the chunk's end (runs): it is the next of a run of segments cut
// from one chunk, whose bytes fill it. A TAP device without GRO cuts a
// kernel super-frame into its wire segments, each a view of the 64 KiB
// chunk the super-frame was read into; a sender's views over an
// in-memory link without GSO come the same way. The rule above copied
// every one of them: the first was copied, pinning nothing, so the next
// found a copy before it, and so on. Receiving from the kernel over a
// TAP with GRO off, the copies, each into a chunk of its own from
// gVisor's pool, were 28% of tapstack's TCP. Linux links such segments'
// page fragments to the receive queue's last skb (tcp_try_coalesce)
// rather than copy them. A run's last piece may be left alone pinning its
// chunk once the reader took the rest: at most one chunk per connection,
// until read.
func appendCompact(dst, src *buffer.Buffer, run *uint32) {
	views, tail := src.AsViewList(), dst.AsViewList()
	prev := tail.Back()
	small := false
	last := *run
	for v := views.Front(); v != nil && !small; v = v.Next() {
		start, end := runAddrs(v)
		small = 2*v.Size() < v.Capacity() && !sameChunk(prev, v) && !runs(v, start, last)
		prev, last = v, end
	}
	if !small {
		*run = last
		dst.Merge(src) // full-size segments, pieces of chunks dst holds, runs: linked in, as they came
		return
	}
	for v := views.Front(); v != nil; v = v.Next() {
		start, end := runAddrs(v)
		if tail = dst.AsViewList(); 2*v.Size() >= v.Capacity() || sameChunk(tail.Back(), v) || runs(v, start, *run) {
			var b buffer.Buffer
			_ = b.Append(v.Clone()) // into an empty buffer: linked, not copied
			dst.Merge(&b)
		} else {
			nv, _ := copyOut(v, extendChunk)
			_ = dst.Append(nv) // copies into the last chunk if it has room and is not shared
		}
		*run = end
	}
	src.Release()
}

// runMin is the least piece runs links: shorter ones, however many
// continue one another in a chunk, are copied into shared chunks, so that
// a peer's tiny segments do not each cost a view in the receive buffer
// (TestRunsOfOneChunkLinked's short pieces).
const runMin = 512

// runs reports whether v, beginning at address start (runAddrs), is the
// next of a run of pieces cut from one chunk: at least runMin bytes,
// beginning where the last piece ended (runEnd) past its chunk's first
// byte, so that the last piece's bytes were in this chunk, and ending
// before the chunk's end, so that more of the chunk may follow. A chunk's
// data is a slice whose length is its capacity (gVisor's newChunk), so a
// view's capacity beyond its bytes says where in the chunk it begins.
func runs(v *buffer.View, start, runEnd uint32) bool {
	s := v.AsSlice()
	return start == runEnd && len(s) >= runMin && cap(s) < v.Capacity() && !v.Full()
}

// runAddrs returns the addresses of v's first byte and of the byte past
// its last, cut to 32 bits: enough to say that one piece begins where
// another ended, as two chunks of a heap under 4 GiB cannot share an
// address; in a larger heap a false match links a piece that would have
// been copied, and costs memory, never bytes. Only addresses are taken
// (unsafe.Pointer to uintptr); none is made from them.
func runAddrs(v *buffer.View) (start, end uint32) {
	s := v.AsSlice()
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return uint32(p), uint32(p + uintptr(len(s)))
}

// sameChunk reports whether views a and b hold bytes of one chunk. A
// view's bytes are a slice of its chunk's data, whose capacity runs to the
// data's end, so two views of one chunk share their capacity's last byte,
// and views of two chunks, distinct allocations, cannot.
func sameChunk(a, b *buffer.View) bool {
	if a == nil || b == nil || a.Size() == 0 || b.Size() == 0 {
		return false
	}
	return chunkLast(a) == chunkLast(b)
}

// chunkLast is the last byte of the data of v's chunk; v is not empty.
func chunkLast(v *buffer.View) *byte {
	s := v.AsSlice()
	s = s[:cap(s)]
	return &s[len(s)-1]
}

// appendPiece appends a piece's text to data. A copied piece of one view
// goes into data's last chunk when it has room (buffer.Buffer.Append
// copies there unless the chunk is shared); the piece then costs nothing
// more. It returns what the piece costs as held.
func appendPiece(data *buffer.Buffer, piece *oooPiece) int {
	views := piece.data.AsViewList()
	tail := data.AsViewList()
	if !piece.copied || views.Front() != views.Back() || tail.Back() == nil || tail.Back().AvailableSize() < int(piece.data.Size()) {
		data.Merge(&piece.data)
		return piece.cost
	}
	last := tail.Back()
	v := views.Front()
	piece.data = buffer.Buffer{}
	_ = data.Append(v) // takes v: copies it into last, or links it
	if tail = data.AsViewList(); tail.Back() == last {
		return 0
	}
	return viewOverhead + tail.Back().Capacity()
}

// memAfter and rangesAfter are the queue's charge and size if p were
// committed now.
func (r *reassembly) memAfter(p *oooPlan) int {
	m := r.mem + p.cost
	if p.touched == 0 {
		return m + rangeOverhead
	}
	return m - (p.touched-1)*rangeOverhead
}

func (r *reassembly) rangesAfter(p *oooPlan) int { return r.ranges() + 1 - p.touched }

// pruneAbove drops the highest range if it begins above end, and returns
// where it began and how many bytes it held.
func (r *reassembly) pruneAbove(end seqnum.Value) (start seqnum.Value, n int, ok bool) {
	if r.ranges() == 0 {
		return 0, 0, false
	}
	x, _ := r.tree.Max()
	if !end.LessThan(x.start) {
		return 0, 0, false
	}
	r.tree.DeleteMax()
	r.forgetRecent(x.start)
	n = int(x.data.Size())
	r.bytes -= n
	r.mem -= x.charge
	x.data.Release()
	return x.start, n, true
}

// abort forgets a plan, releasing its pieces.
func (r *reassembly) abort() {
	if r.oooTree == nil {
		return
	}
	for i := range r.pieces {
		r.pieces[i].data.Release()
	}
	r.pieces = r.pieces[:0]
	r.touched = r.touched[:0]
}

// commit holds the text of p: its pieces and the ranges it touches become
// one range, reported first in the next SACK option (RFC 2018 4; for a
// duplicate, RFC 2883 4's second block), and the first run of bytes it
// duplicated becomes the pending D-SACK.
func (r *reassembly) commit(p *oooPlan) {
	defer func() {
		r.touched = r.touched[:0]
		r.pieces = r.pieces[:0]
	}()
	if r.planDupOK {
		r.setDSACK(r.planDup.Start, r.planDup.End)
		r.planDupOK = false
	}
	if len(r.pieces) == 0 {
		// Nothing new. A duplicate lies inside one range (the touched
		// ranges would have left a gap otherwise): report it next.
		if len(r.touched) > 0 {
			r.pushRecent(r.touched[0])
		}
		return
	}
	r.bytes += p.newBytes
	r.finLatest = false
	// Ranges and pieces, in sequence order, become one text. They are
	// disjoint, and the pieces are exactly the gaps between the ranges.
	var data buffer.Buffer
	charge, was := 0, 0
	ti, pi := 0, 0
	for range len(r.touched) + len(r.pieces) {
		if pi == len(r.pieces) || (ti < len(r.touched) && r.touched[ti].start.LessThan(r.pieces[pi].start)) {
			data.Merge(&r.touched[ti].data)
			charge += r.touched[ti].charge
			was += r.touched[ti].charge
			ti++
		} else {
			charge += appendPiece(&data, &r.pieces[pi])
			pi++
		}
	}
	if len(r.touched) == 0 {
		m := &oooRange{start: p.start, end: p.end, data: data, charge: charge + rangeOverhead}
		r.tree.ReplaceOrInsert(m)
		r.mem += m.charge
		r.pushRecent(m)
		return
	}
	// The first range absorbs the others and the pieces.
	m := r.touched[0]
	for _, x := range r.touched[1:] {
		r.tree.Delete(x)
	}
	if last := r.touched[len(r.touched)-1]; last.end.LessThan(p.end) {
		m.end = p.end
	} else {
		m.end = last.end // m itself when it is the only one
	}
	if p.start.LessThan(m.start) {
		r.tree.Delete(m) // its key moves down
		m.start = p.start
		r.tree.ReplaceOrInsert(m)
	}
	m.data = data
	m.charge = charge - (len(r.touched)-1)*rangeOverhead
	r.mem += m.charge - was
	r.pushRecent(m)
}

// takeInOrder removes the lowest range if it begins at or below rcvNxt and
// returns its text from rcvNxt on, empty if it ends there or below; ok is
// false when the lowest range begins above rcvNxt. Bytes of the range
// below rcvNxt arrived twice, once held and once in order: they extend the
// D-SACK (as Linux's tcp_ofo_queue).
func (r *reassembly) takeInOrder(rcvNxt seqnum.Value) (data buffer.Buffer, ok bool) {
	if r.ranges() == 0 {
		return data, false
	}
	x, _ := r.tree.Min()
	if rcvNxt.LessThan(x.start) {
		return data, false
	}
	r.tree.DeleteMin()
	r.forgetRecent(x.start)
	r.bytes -= int(x.data.Size())
	r.mem -= x.charge
	if x.start.LessThan(rcvNxt) {
		dupEnd := x.end
		if rcvNxt.LessThan(dupEnd) {
			dupEnd = rcvNxt
		}
		r.extendDSACK(x.start, dupEnd)
	}
	if !rcvNxt.LessThan(x.end) {
		x.data.Release()
		return data, true
	}
	x.data.TrimFront(int64(x.start.Size(rcvNxt)))
	return x.data, true
}

// holdFIN records a FIN that arrived out of order at seq, the end of the
// stream, and reports whether it was taken. A FIN is taken once, and only
// if no held text lies beyond it: a peer that says otherwise contradicts
// itself, and its FIN will come again.
// forgetFIN drops a held FIN that in-order text has overtaken.
func (r *reassembly) forgetFIN() { r.fin = false }

func (r *reassembly) holdFIN(seq seqnum.Value) bool {
	if r.fin {
		return false
	}
	if r.ranges() > 0 {
		if x, _ := r.tree.Max(); seq.LessThan(x.end) {
			return false
		}
	}
	r.fin, r.finSeq, r.finLatest = true, seq, true
	return true
}

// loneFIN reports whether a held FIN needs a SACK block of its own: no
// held range ends where it begins (a range that does is extended over it).
func (r *reassembly) loneFIN() bool {
	if !r.fin {
		return false
	}
	if r.ranges() == 0 {
		return true
	}
	x, _ := r.tree.Max()
	return x.end != r.finSeq
}

// reset releases everything held: the stream ended, or the connection.
// A pending D-SACK stays for the ACK that follows.
func (r *reassembly) reset() {
	if r.oooTree != nil {
		for range r.tree.Len() {
			x, ok := r.tree.DeleteMin()
			if !ok {
				break
			}
			x.data.Release()
		}
	}
	r.bytes, r.mem = 0, 0
	r.fin = false
	r.nrecent = 0
	r.abort()
	if r.oooTree != nil && (cap(r.touched) > 64 || cap(r.pieces) > 64) {
		r.touched, r.pieces = nil, nil // a flood's scratch need not outlive it
	}
}

// release is reset for a connection that ends: the D-SACK goes too.
func (r *reassembly) release() {
	r.reset()
	r.dsackSet = false
	r.oooTree = nil
}

// pushRecent puts x first among the recently reported blocks. Blocks that
// x covers are ranges it absorbed (or x itself before it grew): they go.
func (r *reassembly) pushRecent(x *oooRange) {
	k := 0
	for _, b := range r.recent[:r.nrecent] {
		if x.start.LessThanEq(b.Start) && b.Start.LessThanEq(x.end) {
			continue
		}
		r.recent[k] = b
		k++
	}
	k = min(k, len(r.recent)-1)
	copy(r.recent[1:k+1], r.recent[:k])
	r.recent[0] = header.SACKBlock{Start: x.start, End: x.end}
	r.nrecent = k + 1
}

// forgetRecent removes the block of the range that began at start.
func (r *reassembly) forgetRecent(start seqnum.Value) {
	k := 0
	for _, b := range r.recent[:r.nrecent] {
		if b.Start != start {
			r.recent[k] = b
			k++
		}
	}
	r.nrecent = k
}

// setDSACK makes [start, end) the duplicate the next ACK reports, in place
// of any pending one (Linux tcp_dsack_set).
func (r *reassembly) setDSACK(start, end seqnum.Value) {
	r.dsack, r.dsackSet = header.SACKBlock{Start: start, End: end}, true
}

// extendDSACK adds [start, end) to the pending duplicate if it continues
// or overlaps it, or sets it if none is pending (Linux tcp_dsack_extend).
func (r *reassembly) extendDSACK(start, end seqnum.Value) {
	switch {
	case !r.dsackSet:
		r.setDSACK(start, end)
	case start.LessThanEq(r.dsack.End) && r.dsack.Start.LessThanEq(end):
		if start.LessThan(r.dsack.Start) {
			r.dsack.Start = start
		}
		if r.dsack.End.LessThan(end) {
			r.dsack.End = end
		}
	}
}

// blocks returns how many SACK blocks the next ACK would carry with room
// for at most room: the D-SACK and one per range.
func (r *reassembly) blocks(room int) int {
	n := r.ranges()
	if r.dsackSet {
		n++
	}
	if r.loneFIN() {
		n++
	}
	return min(n, room)
}

// sackBlocks fills out with the next ACK's SACK blocks and returns how
// many: the pending D-SACK first (RFC 2883 4), then the blocks reported
// most recently, most recent first (RFC 2018 4: the first is the one that
// holds the latest segment, the others repeat recent ones), then other
// ranges from the highest down. It walks at most len(out) ranges.
//
// A held FIN is SACKed as the sequence number it occupies, as Linux does
// (tcp_data_queue_ofo reports a segment's end_seq, which counts the FIN):
// the range it ends is reported one longer, or, with no text right below
// it, it has a block of its own, first if it came after all held text,
// otherwise as the highest range. RFC 2018 speaks of data only, but the
// block tells a SACK sender that everything it sent last arrived but the
// holes, so RACK (RFC 8985) can repair a hole right below the FIN; with a
// bare duplicate ACK it could only wait for its timer, and gVisor's TCP
// without SACK waited forever (interop TestGVisorFaults).
func (r *reassembly) sackBlocks(out []header.SACKBlock) int {
	n := 0
	if n < len(out) && r.dsackSet {
		out[n] = r.dsack
		n++
	}
	lone := r.loneFIN()
	finBlock := header.SACKBlock{Start: r.finSeq, End: r.finSeq + 1}
	if lone && r.finLatest && n < len(out) {
		out[n] = finBlock
		n++
		lone = false
	}
	for _, b := range r.recent[:r.nrecent] {
		if n == len(out) {
			return r.overFIN(out[:n], r.dsackSet)
		}
		out[n] = b
		n++
	}
	if lone && n < len(out) {
		out[n] = finBlock
		n++
	}
	if n < len(out) && r.ranges() > r.nrecent {
		// Through r.fill: out must not escape to the heap.
		r.fillRoom, r.nfill = min(len(out)-n, len(r.fill)), 0
		r.tree.Descend(r.fillFrom)
		n += copy(out[n:], r.fill[:r.nfill])
	}
	return r.overFIN(out[:n], r.dsackSet)
}

// overFIN extends the blocks that end where a held FIN begins over its
// sequence number (see sackBlocks) and returns how many blocks there are.
// A D-SACK (the first block, if dsack) reports the duplicate as it came
// and is left as it is.
func (r *reassembly) overFIN(out []header.SACKBlock, dsack bool) int {
	if r.fin {
		for i := range out {
			if out[i].End == r.finSeq && !(dsack && i == 0) {
				out[i].End++
			}
		}
	}
	return len(out)
}
