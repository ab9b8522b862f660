// Package limit bounds how many connections a net.Listener has open at
// once, like golang.org/x/net/netutil.LimitListener, with a choice of what
// happens to the excess.
//
// With Wait, the excess waits: Accept does not take a connection from the
// inner listener until a slot is free, so the excess queues in the inner
// listener's accept queue (and, once that is full, in its SYN queue or the
// clients' retransmissions: see examples/backlog). Without Wait, the excess
// is accepted and closed at once, which the client sees as a connection
// closed before it could say anything.
//
// The count is exact under concurrency: a slot is taken before a
// connection is handed out and given back exactly once, when the
// connection is first closed.
package limit

import (
	"net"
	"sync"
	"sync/atomic"
)

// Options choose what happens to connections beyond the limit.
type Options struct {
	// Wait makes Accept wait for a free slot before accepting. By
	// default a connection beyond the limit is closed at once.
	Wait bool
}

// Limited is a net.Listener with at most n connections open.
type Limited struct {
	net.Listener
	sem  chan struct{} // one token per open connection
	wait bool

	closeOnce sync.Once
	done      chan struct{}
	open      atomic.Int64 // connections handed out and not yet closed
	rejected  atomic.Uint64
}

// Listener wraps inner so that at most n connections it returned are open
// at once. n must be at least 1.
func Listener(inner net.Listener, n int, opts Options) *Limited {
	if n < 1 {
		panic("limit: n < 1")
	}
	return &Limited{Listener: inner, sem: make(chan struct{}, n), wait: opts.Wait, done: make(chan struct{})}
}

// Open returns how many connections Accept returned that are not yet
// closed. (A slot reserved by an Accept still waiting on the inner
// listener is not counted.)
func (l *Limited) Open() int { return int(l.open.Load()) }

// Rejected returns how many connections were closed at once for want of a
// slot (never, with Wait).
func (l *Limited) Rejected() uint64 { return l.rejected.Load() }

// Accept returns the next connection once it has a slot.
func (l *Limited) Accept() (net.Conn, error) {
	if l.wait {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		return l.wrap(c), nil
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return l.wrap(c), nil
		default:
			l.rejected.Add(1)
			c.Close()
		}
	}
}

// Close closes the inner listener and wakes an Accept waiting for a slot.
// Connections already accepted stay open.
func (l *Limited) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *Limited) wrap(c net.Conn) net.Conn {
	l.open.Add(1)
	return &conn{Conn: c, release: l.release}
}

func (l *Limited) release() {
	l.open.Add(-1)
	<-l.sem
}

// conn gives its slot back on the first Close.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
