package viewrefs

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
)

// TestProbe: the reference count of gVisor's chunks is where the package
// looks for it. If this fails, a new gVisor moved or changed it: the send
// buffer's and the TAP reader's chunks come cleared from the pool again
// until layout finds it anew.
func TestProbe(t *testing.T) {
	if !Available() {
		t.Fatal("View.chunk's reference count not found, or not counting as expected")
	}
	v := buffer.NewViewSize(64 << 10)
	defer v.Release()
	if !Exclusive(v) {
		t.Error("a new view does not read as its chunk's only holder")
	}
	clones := []*buffer.View{v.Clone(), v.Clone()}
	if Exclusive(v) || Exclusive(clones[0]) {
		t.Error("a view with clones reads as its chunk's only holder")
	}
	clones[0].Release()
	if Exclusive(v) {
		t.Error("a view with one clone left reads as its chunk's only holder")
	}
	clones[1].Release()
	if !Exclusive(v) {
		t.Error("a view whose clones are released does not read as its chunk's only holder")
	}
}

// TestHeld: a Held list lets its oldest view go when full, and gives
// back, reset, the first of the oldest views it looks at whose chunk
// nothing else holds, skipping those still shared and looking no
// further than it is told.
func TestHeld(t *testing.T) {
	var h Held
	defer h.Release()
	var views, clones []*buffer.View
	for range 4 {
		v := buffer.NewViewSize(64)
		views = append(views, v)
		clones = append(clones, v.Clone()) // held elsewhere
		if old := h.Add(v, 3); old != nil {
			if old != views[0] {
				t.Fatal("Add let another view go than the oldest")
			}
			old.Release()
		}
	}
	if h.Len() != 3 {
		t.Fatalf("%d views held, want 3", h.Len())
	}
	if v := h.TakeFree(3); v != nil {
		t.Fatal("TakeFree gave a view whose chunk is held elsewhere")
	}
	clones[3].Release() // the newest, beyond a scan of 2
	if v := h.TakeFree(2); v != nil {
		t.Fatal("TakeFree looked past the views it was told to")
	}
	clones[2].Release()
	v := h.TakeFree(2)
	if v != views[2] || v.Size() != 0 {
		t.Fatalf("TakeFree gave %v, want the second oldest, reset", v)
	}
	v.Release()
	if h.Len() != 2 {
		t.Fatalf("%d views held after one was taken, want 2", h.Len())
	}
	for _, c := range clones[:2] {
		c.Release()
	}
}
