package tcp

import (
	"syscall"

	"github.com/tapstack/tapstack/event"
)

// CloseWrite closes the sending side (shutdown(2) SHUT_WR; the CLOSE call
// of RFC 9293 3.10.4 for one direction): a FIN follows the queued data,
// and receiving goes on. ESTABLISHED moves to FIN-WAIT-1 and CLOSE-WAIT to
// LAST-ACK. Before the handshake completes the FIN waits for it.
func (e *Endpoint) CloseWrite() error {
	e.mu.Lock()
	opened := e.beginStamp()
	err := e.closeWriteLocked("shutdown")
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
	return err
}

func (e *Endpoint) closeWriteLocked(call string) error {
	if e.done() {
		// As Linux's inet_shutdown on a socket in TCP_CLOSE: ENOTCONN
		// after a reset (whose error Read and Write report) as after
		// a completed close, a FIN already queued or not.
		return syscall.ENOTCONN
	}
	if e.finQueued {
		return nil
	}
	switch e.state {
	case event.SynSent, event.SynReceived:
		e.finQueued = true // sent once ESTABLISHED (queuedClose)
	case event.Established:
		e.finQueued = true
		e.transition(event.FinWait1, userCause(call))
		e.output()
	case event.CloseWait:
		e.finQueued = true
		e.transition(event.LastAck, userCause(call))
		e.output()
	}
	return nil
}

// CloseRead closes the receiving side (shutdown(2) SHUT_RD): Read returns
// io.EOF once nothing is queued, instead of waiting for more. RFC 9293
// has no such call; we do what Linux does (tcp_shutdown leaves the
// receive queue alone): data already queued, and data that arrives later,
// is acknowledged, queued and still readable, so nothing the peer was
// told it delivered is thrown away unseen. A Close that finds it unread
// resets the connection (RFC 2525 2.17), as with any unread data. On a
// connection already reset or closed (CLOSED, TIME-WAIT) it fails with
// ENOTCONN, as Linux's inet_shutdown on a socket in TCP_CLOSE does, and
// still shuts the receiving side of one that was established, as Linux
// still sets RCV_SHUTDOWN.
func (e *Endpoint) CloseRead() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == event.Closed && !e.wasEstablished {
		return syscall.ENOTCONN
	}
	e.rcvClosed = true
	e.notify()
	if e.done() {
		return syscall.ENOTCONN
	}
	return nil
}

// done reports a connection whose user socket Linux would hold in
// TCP_CLOSE: reset, closed, or in TIME-WAIT (tcp_time_wait hands that to
// a timewait sock and closes the socket). The caller holds e.mu.
func (e *Endpoint) done() bool {
	return e.state == event.Closed || e.state == event.TimeWait
}

// Close is the CLOSE call (RFC 9293 3.10.4) for both directions. Queued
// data is still sent, followed by a FIN; the connection goes on through
// FIN-WAIT or LAST-ACK to CLOSED on its own. If received data was never
// read it is lost, and the peer is told with a RST instead of a FIN, as
// Linux does (RFC 2525 2.17). In SYN-SENT the connection is deleted.
func (e *Endpoint) Close() error {
	e.rmu.Lock() // a Read copying out holds the receive buffer's front
	e.mu.Lock()
	opened := e.beginStamp()
	e.closeLocked()
	e.endStamp(opened)
	e.mu.Unlock()
	e.rmu.Unlock()
	// Sent here, on the caller's goroutine, and with no deferred closure
	// between: a server's goroutine per connection often meets its first
	// deep call in Close, and gVisor's IP write path below is 2 KiB of
	// stack (IPTables.CheckOutput's frame alone is 1.7 KB).
	e.flush()
	return nil
}

// closeLocked is Close's work under e.mu: what it sends is flushed by
// the caller once the lock is released.
func (e *Endpoint) closeLocked() {
	if e.userClosed {
		return
	}
	e.userClosed = true
	e.notify()
	unread := e.rcvBuf.Size() > 0
	e.releaseRcvBuf()
	switch e.state {
	case event.Closed, event.TimeWait:
		return
	case event.SynSent:
		e.transition(event.Closed, userCause("close"))
		return
	default:
		// Every other state, CLOSING and LAST-ACK included: a
		// half-close (CloseWrite) may have sent our FIN before the
		// peer's text and FIN came, and that text is as lost. As
		// Linux's __tcp_close, which resets on data_was_unread in
		// every state but LISTEN and CLOSE (RFC 1122 4.2.2.13, RFC
		// 2525 2.17).
		if unread {
			e.sendActiveReset()
			e.transition(event.Closed, userCause("close with unread data"))
			return
		}
	}
	// From here on the connection is an orphan until CLOSED or
	// TIME-WAIT. Like Linux (__tcp_close, tcp_check_oom), beyond
	// tcp_max_orphans it is aborted instead.
	if !e.proto.adoptOrphan(e) {
		e.proto.limits.OrphanResets.Add(1)
		if e.state.Synchronized() {
			e.sendActiveReset()
		}
		e.transition(event.Closed, userCause("close: too many orphans (MaxOrphans)"))
		return
	}
	if err := e.closeWriteLocked("close"); err != nil {
		return
	}
	if e.state == event.FinWait2 {
		e.setTimer(timerTimeWait, e.proto.opts.FinWait2Timeout)
	}
}

// Reset is the ABORT call (RFC 9293 3.10.5): queued data is discarded, a
// RST is sent in a synchronized state, and the connection is deleted.
// SO_LINGER with a zero timeout closes this way.
func (e *Endpoint) Reset() {
	e.rmu.Lock() // a Read copying out holds the receive buffer's front
	e.mu.Lock()
	e.userClosed = true
	e.releaseRcvBuf()
	switch e.state {
	case event.Closed:
	case event.SynSent, event.TimeWait:
		e.transition(event.Closed, userCause("abort"))
	default:
		e.sendActiveReset()
		e.transition(event.Closed, userCause("abort"))
	}
	e.mu.Unlock()
	e.rmu.Unlock()
	e.flush()
}

// adoptOrphan counts e as an orphan, or reports false if MaxOrphans
// orphans exist already. The caller holds e.mu.
func (p *Protocol) adoptOrphan(e *Endpoint) bool {
	if e.orphan {
		return true
	}
	limit := int64(p.opts.MaxOrphans)
	for range 1 << 10 { // contention bound: give up rather than spin
		n := p.orphans.Load()
		if n >= limit {
			return false
		}
		if p.orphans.CompareAndSwap(n, n+1) {
			e.orphan = true
			return true
		}
	}
	return false
}

// shutdown is Protocol.Shutdown's CLOSE for one connection: Close, except
// that a connection still in SYN-SENT is not deleted but completes its
// handshake and then sends its FIN (queuedClose), as a close of a
// connection in SYN-RECEIVED does.
func (e *Endpoint) shutdown() {
	e.mu.Lock()
	if e.state == event.SynSent && !e.userClosed {
		e.userClosed = true
		e.finQueued = true
		e.notify()
		if !e.proto.adoptOrphan(e) {
			e.proto.limits.OrphanResets.Add(1)
			e.transition(event.Closed, userCause("shutdown: too many orphans (MaxOrphans)"))
		}
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	_ = e.Close()
}
