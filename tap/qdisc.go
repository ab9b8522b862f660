package tap

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// NewQDisc returns a queueing discipline for a NIC whose link is w
// (gVisor's stack.NICOptions.QDisc) that writes every packet straight
// through to w, as gVisor's default one does, without allocating: the
// default makes a packet list per packet, which escapes to the heap at
// the link's WritePackets, one allocation for every segment a stack
// sends. The lists here are pooled. package stack's AddNIC uses it for
// every interface.
func NewQDisc(w stack.LinkWriter) stack.QueueingDiscipline {
	return &directQDisc{w: w}
}

type directQDisc struct {
	w     stack.LinkWriter
	lists sync.Pool // of *stack.PacketBufferList, empty
}

// WritePacket implements stack.QueueingDiscipline.
func (q *directQDisc) WritePacket(pkt *stack.PacketBuffer) tcpip.Error {
	l, _ := q.lists.Get().(*stack.PacketBufferList)
	if l == nil {
		l = new(stack.PacketBufferList)
	}
	// The list holds a reference of its own, so that Reset, which
	// releases it, empties the list and keeps its storage.
	l.PushBack(pkt.IncRef())
	_, err := q.w.WritePackets(*l)
	l.Reset()
	q.lists.Put(l)
	return err
}

// Close implements stack.QueueingDiscipline.
func (*directQDisc) Close() {}
