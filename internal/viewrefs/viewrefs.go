// Package viewrefs tells whether a gVisor buffer view holds the only
// reference to its chunk, so that its owner may write into the chunk
// again rather than take a new one, which gVisor's pool clears first
// (buffer.newChunk). Linux's TCP does the same with a socket's page
// (skb_page_frag_refill); stack/tcp's send buffer and tap's reader do it
// with their 64 KiB chunks, keeping those still held elsewhere in a Held
// list until they are not.
//
// gVisor keeps the reference count private. It is read with one atomic
// load, at the offset reflection finds in the types at the first use, by
// name and kind (View.chunk, a *chunk; its embedded chunkRefs; their
// refCount, an atomicbitops.Int64; the int64 value in it), after a check
// that the count behaves as expected: 1 for a new view, 2 with a clone of
// it, 1 again once the clone is released. If the types or the behaviour
// differ in another gVisor version, Available reports false, and the
// callers take new chunks from the pool as before (TestProbe fails to
// say so).
//
// The count is 1 only while the owner's view is the one reference: no
// other view can then appear (only a holder can Clone), so the answer
// stays true until the owner shares the chunk again. The load is atomic,
// as gVisor's DecRef is: a former holder's reads of the chunk happen
// before its release, and so before the owner writes the chunk again.
// A speculative reference (TryIncRef) makes the count differ from 1, and
// the chunk reads as shared.
package viewrefs

import (
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"gvisor.dev/gvisor/pkg/buffer"
)

// Available reports whether Exclusive can answer: the reference count was
// found where expected and counts as expected.
func Available() bool { return layout().ok }

// Exclusive reports whether v holds the only reference to its chunk. It
// must be called only when Available reports true, by v's owner.
func Exclusive(v *buffer.View) bool { return layout().refs(v) == 1 }

// refsLayout says where a view's chunk's reference count is: the offset
// of View.chunk, and that of the count in the chunk.
type refsLayout struct {
	chunk, count uintptr
	ok           bool // found and checked
}

func (l refsLayout) refs(v *buffer.View) int64 {
	chunk := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(v), l.chunk))
	return atomic.LoadInt64((*int64)(unsafe.Add(chunk, l.count)))
}

// layout finds the layout once, and checks it.
var layout = sync.OnceValue(func() refsLayout {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return refsLayout{} // atomicbitops.Int64 differs on 32-bit machines
	}
	f, ok := reflect.TypeFor[buffer.View]().FieldByName("chunk")
	if !ok || len(f.Index) != 1 || f.Type.Kind() != reflect.Pointer || f.Type.Elem().Name() != "chunk" {
		return refsLayout{}
	}
	l := refsLayout{chunk: f.Offset}
	t := f.Type.Elem()
	for _, step := range []struct{ name, typ string }{{"chunkRefs", "chunkRefs"}, {"refCount", "Int64"}, {"value", "int64"}} {
		if t.Kind() != reflect.Struct {
			return refsLayout{}
		}
		g, ok := t.FieldByName(step.name)
		if !ok || len(g.Index) != 1 || g.Type.Name() != step.typ {
			return refsLayout{}
		}
		l.count += g.Offset
		t = g.Type
	}
	if t.Kind() != reflect.Int64 || l.count%8 != 0 {
		return refsLayout{}
	}
	v := buffer.NewView(64)
	defer v.Release()
	alone := l.refs(v)
	c := v.Clone()
	shared := l.refs(v)
	c.Release()
	l.ok = alone == 1 && shared == 2 && l.refs(v) == 1
	return l
})

// Held is a bounded list of views whose chunks their owner means to write
// again once nothing else holds them, oldest first: the send buffer's
// chunks that packets or a receiver still hold, the TAP reader's chunks
// of frames the stack still holds. It is not safe for concurrent use.
type Held struct {
	views []*buffer.View
}

// Len reports how many views are held.
func (h *Held) Len() int { return len(h.views) }

// Add appends v. If max views are held already, the oldest leaves to
// make room and is returned, for the caller to release (the likeliest to
// stay held: a reader that does not read).
func (h *Held) Add(v *buffer.View, max int) (evicted *buffer.View) {
	if len(h.views) >= max {
		evicted = h.views[0]
		h.views = slices.Delete(h.views, 0, 1) // clears the slot it frees
	}
	h.views = append(h.views, v)
	return evicted
}

// TakeFree removes and returns, reset, the first of the scan oldest views
// whose chunk nothing else holds, or nil if none is. Available must
// report true.
func (h *Held) TakeFree(scan int) *buffer.View {
	for i, v := range h.views[:min(len(h.views), scan)] {
		if Exclusive(v) {
			h.views = slices.Delete(h.views, i, i+1)
			v.Reset()
			return v
		}
	}
	return nil
}

// Release releases every view held and empties the list.
func (h *Held) Release() {
	for i, v := range h.views {
		v.Release()
		h.views[i] = nil
	}
	h.views = h.views[:0]
}
