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
