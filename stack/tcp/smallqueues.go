package tcp

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// TCP small queues, as Linux's (tcp_small_queue_check, tcp_wfree and
// tcp_tsq_handler). A link with an outbound queue that says how busy it
// is (stack.QueueingLink: a TAP device's writer, tap.Pipe's pump) keeps
// a connection from filling it: while the queue holds busyFrames of the
// stack's frames, new data waits (sendNewDataN) rather than be refused
// and add to the delay of every frame after it. What lets the data go
// is the link taking frames out of its queue, which it says by calling
// roomOpened, as the completion of a transmitted skb lets a throttled
// Linux socket send (TSQ_THROTTLED, tcp_tsq_write): the connection sends
// what its windows allow then, soon after, on a goroutine of its own.
//
// An ACK lets it go as well, as before the link's call came: the data in
// flight draws one. The ACK alone was too late: the kernel's receiver
// over a TAP without offloads acknowledges every second segment, and the
// writer emptied a queue of 256 frames in well under the time the ACK of
// its last segments took to come, so the queue sat empty and the sender
// idle in between: tapstack to the kernel 0.9-1.3 Gbit/s where gVisor's
// TCP, which has no small queues, sent 2.4-3.2 (0.28-0.43x); now 3.9-4.4
// (1.48-1.80x), with no frame refused (TestKernelSmallQueues).

// tsqState is the engine's side of the links' queues: the connections
// whose new data waits for room, and the timer that lets them go.
type tsqState struct {
	held      connList    // tsqHeld set
	scheduled atomic.Bool // timer is set to release them
	mu        sync.Mutex
	timer     tcpip.Timer // releaseHeld's, made at the first release
}

// queueLink records room (Protocol.linkRoom), which says how many more
// frames the outbound queue of interface nic takes before it is busy,
// and returns what the link calls whenever it has taken frames out of
// that queue (tcpbind.Binding.QueueLink).
func (p *Protocol) queueLink(nic tcpip.NICID, room func() int) func() {
	if int(nic) < maxLinkNIC {
		p.linkRoom[nic].Store(&room)
	}
	return p.roomOpened
}

// linkBusy reports whether the outbound queue of interface nic would be
// busy with pending more frames (sendNewDataN).
func (p *Protocol) linkBusy(nic tcpip.NICID, pending int) bool {
	if int(nic) >= maxLinkNIC {
		return false
	}
	room := p.linkRoom[nic].Load()
	return room != nil && pending >= (*room)()
}

// holdForRoom marks e as a connection whose new data waits for room in
// its link's queue. The caller holds e.mu.
func (e *Endpoint) holdForRoom() { e.proto.tsq.held.mark(e, &e.tsqHeld) }

// roomOpened is a link's word that it took frames out of its outbound
// queue: the connections held for room send what their windows allow,
// soon, on a goroutine of the clock's (releaseHeld), not on the link's,
// whose writer goes on writing what its queue still holds meanwhile, as
// Linux's TX completion defers a throttled socket's sending to a
// tasklet. With no connection held it is an atomic load; with one, the
// words that come before the release runs ask for nothing more.
func (p *Protocol) roomOpened() {
	q := &p.tsq
	if q.held.n.Load() == 0 || !q.scheduled.CompareAndSwap(false, true) {
		return
	}
	q.mu.Lock()
	if q.timer == nil {
		q.timer = p.clock.AfterFunc(0, p.releaseHeld)
	} else {
		q.timer.Reset(0)
	}
	q.mu.Unlock()
}

// releaseHeld sends, for every connection held for room, what its
// windows allow. One whose link is still busy is held again, until the
// link's next word or its next ACK.
func (p *Protocol) releaseHeld() {
	p.tsq.scheduled.Store(false) // a word from now on sets the timer again
	p.tsq.held.serve(func(e *Endpoint) *bool { return &e.tsqHeld }, func(e *Endpoint) {
		e.proto.stats.LinkRoomSends.Add(1)
		e.output()
	})
}
