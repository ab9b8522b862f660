package tcp

import "github.com/tapstack/tapstack/event"

// Receive memory, stack-wide (Options.ReceiveMemoryLimit). Each
// connection bounds what it holds by its receive buffer: the window for
// in-order text, twice the buffer for out-of-order text (oooLimits). A
// peer that opens many connections multiplies that by MaxConnections, and
// out-of-order text needs nothing of the user to stay: a peer that sends
// every segment but the first pins up to twice the buffer on each of its
// connections. Linux bounds all sockets' buffers together by tcp_mem; we
// do the same for received data, which is what a peer controls (what a
// connection sends waits on its own user's writes).
//
// Protocol.rcvMem counts what the connections hold: in-order text not yet
// read (its bytes), and out-of-order text (the heap it pins, reassembly's
// mem). Every change is counted where it happens: deliver and consumed,
// the receive buffer's release, and the out-of-order queue's changes
// (chargeOOO).
//
// Near the limit, no window opens further (advertise): what a peer was
// promised stays promised (RFC 9293 3.8.6.2.2 asks not to shrink the
// window), but no more is offered than the stack has room for, as Linux
// clamps rcv_ssthresh under memory pressure (tcp_adjust_rcv_ssthresh).
// At the limit, text that would take the stack past it is dropped
// (DropReceiveMemory, LimitStats.ReceiveMemory): in order, with an ACK at
// once so the peer learns of it, as Linux's tcp_data_queue when
// tcp_try_rmem_schedule fails (ICSK_ACK_NOW, TCPRcvQDrop); out of order,
// after the connection's own ranges above it are pruned, without one, as
// its tcp_data_queue_ofo (TCPOFODrop). In-order text for a connection
// that holds nothing unread is taken all the same, as Linux's
// sk_forced_mem_schedule takes it: every connection can make progress,
// and the stack exceeds the limit by at most a segment per connection
// (one the link joined, GRO, up to 64 KiB).

// rcvMemRoom is how many more bytes of received data the stack's
// connections may hold; negative past the limit.
func (p *Protocol) rcvMemRoom() int {
	return p.opts.ReceiveMemoryLimit - int(p.rcvMem.Load())
}

// rcvMemRefuses reports whether n bytes of in-order text must be dropped
// for the stack's receive memory: they do not fit, and the connection
// holds unread text already (a connection holding none takes them).
func (e *Endpoint) rcvMemRefuses(n int) bool {
	return e.rcvBuf.Size() > 0 && e.proto.rcvMemRoom() < n
}

// dropForMemory drops seg, in-order text the stack has no memory for,
// and acknowledges RCV.NXT at once: the peer learns the text did not
// stay before its retransmission timer says so (Linux's ICSK_ACK_NOW).
func (e *Endpoint) dropForMemory(seg *segment) {
	e.proto.limits.ReceiveMemory.Add(1)
	e.drop(seg, event.DropReceiveMemory)
	e.sendAck(event.SendAck)
}

// chargeOOO counts the change of the out-of-order queue's heap since it
// was before.
func (e *Endpoint) chargeOOO(before int) {
	if d := e.ooo.mem - before; d != 0 {
		e.proto.rcvMem.Add(int64(d))
	}
}

// releaseRcvBuf discards the text the user did not read.
func (e *Endpoint) releaseRcvBuf() {
	if n := e.rcvBuf.Size(); n > 0 {
		e.proto.rcvMem.Add(-n)
	}
	e.rcvBuf.Release()
}

// releaseOOO discards the out-of-order queue of a connection that ends.
func (e *Endpoint) releaseOOO() {
	before := e.ooo.mem
	e.ooo.release()
	e.chargeOOO(before)
}
