package conn

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// Conn is a TCP connection on a tapstack stack. It is safe for concurrent
// use; Close unblocks every blocked call.
type Conn struct {
	ep    *tcp.Endpoint
	clock tcpip.Clock // the stack's: deadlines and linger run on it
	// The addresses, made when first asked for (LocalAddr, RemoteAddr,
	// an error): most connections never are, and making them at once
	// was four of a connection's allocations and 128 bytes of its heap.
	laddr, raddr atomic.Pointer[net.TCPAddr]
	rd, wd       deadline
	ctx          context.Context // stack.Options.ConnContext's, for Context

	readMu  turn // one reader at a time, so reads do not interleave
	writeMu turn // one writer at a time, so writes do not interleave

	closing atomic.Bool // the first Close took it
	network network     // OpError.Net: in the padding after closing
	closed  chan struct{}

	mu        sync.Mutex
	linger    int // seconds; < 0: default
	keepalive net.KeepAliveConfig
}

var _ net.Conn = (*Conn)(nil)

// network is "tcp", "tcp4" or "tcp6" in a byte: the network a Conn was
// dialed or accepted on, which package net puts in OpError.Net.
type network uint8

const (
	networkTCP network = iota
	networkTCP4
	networkTCP6
)

// networkOf returns the network of name, "tcp" for any but "tcp4" and
// "tcp6".
func networkOf(name string) network {
	switch name {
	case "tcp4":
		return networkTCP4
	case "tcp6":
		return networkTCP6
	}
	return networkTCP
}

func (n network) String() string {
	switch n {
	case networkTCP4:
		return "tcp4"
	case networkTCP6:
		return "tcp6"
	}
	return "tcp"
}

// newConn wraps an established engine connection, dialed or accepted on
// network; ctx is what Context returns.
func newConn(ep *tcp.Endpoint, clock tcpip.Clock, ctx context.Context, nw network) *Conn {
	return &Conn{
		network: nw,
		ep:      ep,
		clock:   clock,
		ctx:     ctx,
		rd:      deadline{clock: clock},
		wd:      deadline{clock: clock},
		readMu:  make(turn, 1),
		writeMu: make(turn, 1),
		closed:  make(chan struct{}),
		linger:  -1,
	}
}

// Endpoint returns the engine's connection, for Info and State.
func (c *Conn) Endpoint() *tcp.Endpoint { return c.ep }

// State returns the connection's RFC 9293 state; it keeps answering after
// Close, until the engine deletes the connection (CLOSED).
func (c *Conn) State() event.State { return c.ep.State() }

// Info returns a TCP_INFO-like snapshot of the connection.
func (c *Conn) Info() tcp.Info { return c.ep.Info() }

// Context returns the connection's context, made when Dial or Accept
// handed the connection over by the stack's Options.ConnContext: with a
// tracer there (observe/otel), it carries the TCP connection's span, so
// that an application's own spans can be its children or link to it
// (trace.SpanContextFromContext). Without that hook it is the context
// given to DialContext, without its cancellation or deadline, or
// context.Background for an accepted connection. Closing the connection
// does not cancel it.
func (c *Conn) Context() context.Context { return c.ctx }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.addr(&c.laddr, true) }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.addr(&c.raddr, false) }

// addr returns the local or remote address, making it on first use. The
// connection's 4-tuple never changes, so two callers racing make equal
// addresses, and both get the one stored first.
func (c *Conn) addr(p *atomic.Pointer[net.TCPAddr], local bool) *net.TCPAddr {
	if a := p.Load(); a != nil {
		return a
	}
	id := c.ep.ID()
	ap := id.Remote
	if local {
		ap = id.Local
	}
	if needsZone(ap.Addr()) {
		// As package net's: a link-local address comes with its
		// zone, the interface (linkNIC), which sockaddr_in6's
		// sin6_scope_id carries for it.
		ap = netip.AddrPortFrom(ap.Addr().WithZone(strconv.Itoa(int(c.ep.NIC()))), ap.Port())
	}
	p.CompareAndSwap(nil, net.TCPAddrFromAddrPort(ap))
	return p.Load()
}

func (c *Conn) isClosed() bool { return closedChan(c.closed) }

// opError wraps err as package net does: errnos inside an os.SyscallError
// named after the call, all inside a *net.OpError.
func (c *Conn) opError(op string, err error) error { return c.opErrorCall(op, op, err) }

// opErrorCall is opError for an operation whose errno package net names
// after another call: CloseWrite's "close" fails in "shutdown".
func (c *Conn) opErrorCall(op, call string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = os.NewSyscallError(call, errno)
	}
	return &net.OpError{Op: op, Net: c.network.String(), Source: c.addr(&c.laddr, true), Addr: c.addr(&c.raddr, false), Err: err}
}

// turn is a lock that a caller waiting for it can give up: a channel
// holding the one token. Close releases the callers queued behind a
// blocked Read or Write at once, rather than one by one as each gets the
// lock; and a caller waiting for its turn is blocked on a channel, which
// testing/synctest sees as blocked (a sync.Mutex it cannot).
type turn chan struct{}

// take waits for the turn and reports true, or reports false once closed
// is closed. It is not inlined: its select would take room in the frame
// of Write and Read, which stay on the stack under the network layer
// (await).
//
//go:noinline
func (t turn) take(closed <-chan struct{}) bool {
	select {
	case t <- struct{}{}:
		return true
	case <-closed:
		return false
	}
}

func (t turn) give() { <-t }

// Read reads data the peer sent. It returns io.EOF after the peer's FIN.
// A zero-length b returns 0, nil at once, as package net's Read does.
func (c *Conn) Read(b []byte) (int, error) { return c.read(nil, b) }

// ReadContext is Read that also returns when ctx is done, for callers
// that cancel by context rather than by deadline. The error is then a
// *net.OpError wrapping ctx's error (context.Canceled, or a timeout that
// matches both context.DeadlineExceeded and os.ErrDeadlineExceeded).
// The read deadline applies as well.
func (c *Conn) ReadContext(ctx context.Context, b []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, c.opError("read", mapContextErr(err))
	}
	n, err := c.read(ctx.Done(), b)
	var te timeoutError
	if errors.As(err, &te) && ctx.Err() != nil {
		err = c.opError("read", mapContextErr(ctx.Err()))
	}
	return n, err
}

func (c *Conn) read(done <-chan struct{}, b []byte) (int, error) {
	if !c.readMu.take(c.closed) {
		return 0, c.opError("read", net.ErrClosed)
	}
	defer c.readMu.give()
	if c.isClosed() {
		return 0, c.opError("read", net.ErrClosed)
	}
	if len(b) == 0 {
		return 0, nil
	}
	if c.rd.passed() {
		// Like package net, a passed deadline fails the call even when
		// data is waiting.
		return 0, c.opError("read", timeoutError{})
	}
	// The connection's read wakeup, not Changed: it is made once per
	// connection, where Changed makes a channel per wait. It is taken
	// when a read would first block, and the read tried again.
	var wake <-chan struct{}
	for {
		n, err := c.ep.Read(b)
		if err != tcp.ErrWouldBlock {
			if err != nil && err != io.EOF && c.isClosed() {
				// Close raced this call: package net reports that as
				// net.ErrClosed, whatever the engine said.
				err = net.ErrClosed
			}
			return n, c.opError("read", err)
		}
		if wake == nil {
			wake = c.ep.ReadWakeup()
			continue
		}
		if err := c.await("read", wake, &c.rd, done); err != nil {
			return 0, err
		}
	}
}

// WriteTo writes what the connection receives to w until the peer's FIN,
// an error or the read deadline, as *net.TCPConn's WriteTo does: io.Copy(w,
// c) calls it. The bytes go to w from the receive buffer's own memory,
// without the copy into a buffer of io.Copy's, and the window reopens as
// they leave. At the FIN it returns nil (io.WriterTo's contract). Errors,
// w's included, are *net.OpError with Op "writeto", as package net's; the
// bytes the engine handed a w that failed are gone, as they are when
// io.Copy's Write fails.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	return c.pump("writeto", c.readMu, &c.rd, c.ep.ReadWakeup, func() (int64, error) { return c.ep.ReadTo(w) })
}

// ReadFrom reads r until io.EOF or an error and sends what it reads, as
// *net.TCPConn's ReadFrom does: io.Copy(c, r) calls it when r is not an
// io.WriterTo. r is read straight into the send buffer, without the copy
// into a buffer of io.Copy's, in reads of at most 64 KiB and the room
// the buffer has; it returns once the buffer has taken what r gave. The
// write deadline applies. Errors, r's included, are *net.OpError with Op
// "readfrom", as package net's.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	// Each Read asks for about what r gave last: twice it after a read
	// under half of what was asked (at least 4 KiB), twice as much after
	// a full one (at most 64 KiB). The engine's view for a Read is
	// cleared first, and clearing 64 KiB for a reader that gives 100
	// bytes took most of each call (WriteFromN).
	limit := readFromMax
	return c.pump("readfrom", c.writeMu, &c.wd, c.ep.WriteWakeup, func() (int64, error) {
		n, err := c.ep.WriteFromN(r, limit)
		switch {
		case n >= int64(limit):
			limit = min(2*limit, readFromMax)
		case n > 0 && n < int64(limit/2):
			limit = max(2*int(n), readFromMin)
		}
		return n, err
	})
}

// readFromMin and readFromMax bound the Reads of ReadFrom.
const (
	readFromMin = 4 << 10
	readFromMax = 64 << 10
)

// pump is WriteTo's and ReadFrom's loop: step moves what it can between
// the engine's buffer and the user's writer or reader, holding the turn
// mu of its direction, until io.EOF (the end, no error) or an error;
// while the engine would block, it waits for wakeup, the deadline dl or
// Close.
func (c *Conn) pump(op string, mu turn, dl *deadline, wakeup func() <-chan struct{}, step func() (int64, error)) (int64, error) {
	if !mu.take(c.closed) {
		return 0, c.opError(op, net.ErrClosed)
	}
	defer mu.give()
	var total int64
	var wake <-chan struct{} // as in read
	for {
		if c.isClosed() {
			return total, c.opError(op, net.ErrClosed)
		}
		if dl.passed() {
			// Checked before every step, as package net checks its
			// deadline before every read of its loop.
			return total, c.opError(op, timeoutError{})
		}
		n, err := step()
		total += n
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			return total, nil
		case err != tcp.ErrWouldBlock:
			if c.isClosed() {
				err = net.ErrClosed // as in read
			}
			return total, c.opError(op, err)
		}
		if wake == nil {
			wake = wakeup()
			continue
		}
		c.await(op, wake, dl, nil) // the loop's top checks Close and dl
	}
}

// Write writes all of b unless an error or the write deadline stops it.
// It returns once the send buffer has taken the bytes.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.beginWrite(); err != nil {
		return 0, err
	}
	defer c.writeMu.give()
	total := 0
	var wake <-chan struct{} // as in read
	for {
		n, err := c.ep.Write(b[total:])
		total += n
		if err == nil && total == len(b) {
			return total, nil
		}
		if err != nil && err != tcp.ErrWouldBlock {
			return total, c.writeError(err)
		}
		if n > 0 {
			continue
		}
		if wake == nil {
			wake = c.ep.WriteWakeup()
			continue
		}
		if err := c.awaitWrite(wake); err != nil {
			return total, err
		}
	}
}

// beginWrite takes Write's turn, or returns the error that stops the
// call before it starts: the connection closed, the write deadline
// passed. Like await, it keeps its work out of Write's frame.
//
//go:noinline
func (c *Conn) beginWrite() error {
	if !c.writeMu.take(c.closed) {
		return c.opError("write", net.ErrClosed)
	}
	var err error
	switch {
	case c.isClosed():
		err = c.opError("write", net.ErrClosed)
	case c.wd.passed():
		err = c.opError("write", timeoutError{})
	default:
		return nil
	}
	c.writeMu.give()
	return err
}

// writeError is the error of a Write the engine refused: net.ErrClosed
// if Close raced it, as package net reports it, whatever the engine said.
//
//go:noinline
func (c *Conn) writeError(err error) error {
	if c.isClosed() {
		err = net.ErrClosed
	}
	return c.opError("write", err)
}

// awaitWrite is await for Write, whose frame is the smaller for its
// fewer arguments.
//
//go:noinline
func (c *Conn) awaitWrite(wake <-chan struct{}) error { return c.await("write", wake, &c.wd, nil) }

// await blocks until wake fires, and returns nil; or until deadline dl
// passes, done (nil: never) is closed or the connection is closed, and
// returns the error of op that says which. It is the blocking path of
// Read, Write and WriteTo, in a frame of their own: their frames are on
// the stack under every segment the call sends, down to gVisor's network
// layer, and the smaller they are, the less a server's goroutine per
// connection grows its stack (tcp.Protocol.writePacket).
//
//go:noinline
func (c *Conn) await(op string, wake <-chan struct{}, dl *deadline, done <-chan struct{}) error {
	select {
	case <-wake:
		return nil
	case <-dl.wait():
		return c.opError(op, timeoutError{})
	case <-done:
		return c.opError(op, timeoutError{ctx: true})
	case <-c.closed:
		return c.opError(op, net.ErrClosed)
	}
}

// Close closes the connection: queued data is sent, then a FIN (or a RST
// if received data was never read, or if SetLinger(0) was called). It
// does not wait for the peer.
func (c *Conn) Close() error {
	// A flag rather than a sync.Once: a later Close returns at once,
	// as package net's does, and the first runs the engine's Close
	// three frames nearer the top of its goroutine's stack, which a
	// server's goroutine per connection may meet here first (see
	// tcp.Endpoint.Close).
	if !c.closing.CompareAndSwap(false, true) {
		// Only a later Close pays for the error: made up front, it
		// cost every connection three allocations.
		return c.opError("close", net.ErrClosed)
	}
	close(c.closed)
	c.rd.release()
	c.wd.release()
	c.mu.Lock()
	linger := c.linger
	c.mu.Unlock()
	if linger == 0 {
		c.ep.Reset()
		return nil
	}
	_ = c.ep.Close()
	if linger > 0 {
		c.lingerWait(time.Duration(linger) * time.Second)
	}
	return nil
}

// lingerWait blocks until the queued data and the FIN are acknowledged
// or d has passed on the stack's clock, like a lingering close(2) on
// Linux.
func (c *Conn) lingerWait(d time.Duration) {
	expired, stop := after(c.clock, d)
	defer stop()
	for {
		changed := c.ep.Changed()
		switch c.ep.State() {
		case event.FinWait1, event.Closing, event.LastAck:
		default:
			return
		}
		select {
		case <-changed:
		case <-expired:
			return
		}
	}
}

// CloseWrite shuts down the sending side: the peer reads EOF after the
// queued data, and this side can still read. Errors are package net's: a
// "close" OpError wrapping the errno of "shutdown", ENOTCONN once the
// connection was reset or has closed.
func (c *Conn) CloseWrite() error {
	if c.isClosed() {
		return c.opError("close", net.ErrClosed)
	}
	return c.opErrorCall("close", "shutdown", c.ep.CloseWrite())
}

// CloseRead shuts down the receiving side: Read returns io.EOF. Errors
// are CloseWrite's.
func (c *Conn) CloseRead() error {
	if c.isClosed() {
		return c.opError("close", net.ErrClosed)
	}
	return c.opErrorCall("close", "shutdown", c.ep.CloseRead())
}

// SetNoDelay turns Nagle's algorithm off (true) or on. New connections
// start with Nagle on, like RFC 9293 3.7.4 asks (Go's net turns it off
// for its own sockets; tapstack keeps the RFC's default visible).
func (c *Conn) SetNoDelay(noDelay bool) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.ep.SetNoDelay(noDelay)
	return nil
}

// SetLinger sets the behaviour of Close, as SO_LINGER: a negative value
// (the default) sends queued data in the background; 0 resets the
// connection at once, discarding queued data; sec > 0 makes Close wait up
// to sec seconds (on the stack's clock) for the data and the FIN to be
// acknowledged.
func (c *Conn) SetLinger(sec int) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.mu.Lock()
	c.linger = sec
	c.mu.Unlock()
	return nil
}

// SetKeepAlive turns keepalive probes on or off. They are off by
// default, as RFC 9293 3.8.4 requires (package net turns them on for its
// own sockets).
func (c *Conn) SetKeepAlive(on bool) error {
	return c.setKeepAlive(func(ka *net.KeepAliveConfig) { ka.Enable = on })
}

// SetKeepAlivePeriod sets the idle time before the first probe and the
// time between probes. A negative d changes nothing, as with package net.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	return c.setKeepAlive(func(ka *net.KeepAliveConfig) {
		if d >= 0 {
			ka.Idle, ka.Interval = d, d
		}
	})
}

// SetKeepAliveConfig configures keepalive as net.TCPConn does: a
// negative Idle, Interval or Count leaves that setting as it was, as
// net.KeepAliveConfig documents; a zero one takes the engine's default
// (2 h idle, 75 s interval, 9 probes).
func (c *Conn) SetKeepAliveConfig(cfg net.KeepAliveConfig) error {
	return c.setKeepAlive(func(ka *net.KeepAliveConfig) {
		ka.Enable = cfg.Enable
		if cfg.Idle >= 0 {
			ka.Idle = cfg.Idle
		}
		if cfg.Interval >= 0 {
			ka.Interval = cfg.Interval
		}
		if cfg.Count >= 0 {
			ka.Count = cfg.Count
		}
	})
}

// setKeepAlive applies change to the connection's keepalive settings and
// hands the result to the engine; the settings stored never hold a
// negative value.
func (c *Conn) setKeepAlive(change func(*net.KeepAliveConfig)) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	change(&c.keepalive)
	ka := c.keepalive
	c.ep.SetKeepAlive(ka.Enable, ka.Idle, ka.Interval, ka.Count)
	return nil
}

// SetUserTimeout bounds how long sent data may stay unacknowledged, or
// wait behind the peer's closed window, before the connection fails with
// ETIMEDOUT (RFC 5482's user timeout; Linux's TCP_USER_TIMEOUT socket
// option). Zero, the default, leaves it to the engine's retry limits.
func (c *Conn) SetUserTimeout(d time.Duration) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	if d < 0 {
		return c.opError("set", syscall.EINVAL)
	}
	c.ep.SetUserTimeout(d)
	return nil
}

// SetMaxPacingRate paces the connection's packets at its pacing rate, at
// most bytesPerSec (Linux's SO_MAX_PACING_RATE, which turns on TCP's own
// pacing: the window per round trip, doubled in slow start, 1.2 times
// after); 0 turns pacing off. See tcp.Endpoint.SetMaxPacingRate.
func (c *Conn) SetMaxPacingRate(bytesPerSec uint64) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.ep.SetMaxPacingRate(bytesPerSec)
	return nil
}

// SetCongestionControl changes the connection's congestion control
// ("cubic", "reno" or "bbr"), as Linux's TCP_CONGESTION socket option;
// an unknown name fails with ENOENT.
func (c *Conn) SetCongestionControl(name string) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	if err := c.ep.SetCongestionControl(name); err != nil {
		return c.opError("set", err)
	}
	return nil
}

// SetReadBuffer sets the receive buffer size. A size below 2,304 bytes,
// zero or negative included, sets 2,304 without an error, as Linux
// raises it to SOCK_MIN_RCVBUF (Linux reads a negative size as a huge
// unsigned one and clamps that to rmem_max instead).
func (c *Conn) SetReadBuffer(bytes int) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.ep.SetBuffers(0, max(bytes, minReadBuffer))
	return nil
}

// SetWriteBuffer sets the send buffer size. A size below 4,608 bytes,
// zero or negative included, sets 4,608, as Linux raises it to
// SOCK_MIN_SNDBUF (SetReadBuffer says what Linux does with a negative
// size).
func (c *Conn) SetWriteBuffer(bytes int) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.ep.SetBuffers(max(bytes, minWriteBuffer), 0)
	return nil
}

// minReadBuffer and minWriteBuffer are the smallest buffers SetReadBuffer
// and SetWriteBuffer set: Linux's SOCK_MIN_RCVBUF and SOCK_MIN_SNDBUF on
// 64-bit, to which sk_setsockopt raises a smaller SO_RCVBUF or SO_SNDBUF.
// The engine has no minimum of its own (SetBuffers takes any positive
// size, and zero as "unchanged").
const (
	minReadBuffer  = 2304
	minWriteBuffer = 4608
)

// SetDeadline sets both deadlines. A deadline is a time on the stack's
// clock (see the package documentation); the zero time removes it.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read calls, pending ones included.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.rd.set(t)
	return nil
}

// SetWriteDeadline sets the deadline for Write calls, pending ones included.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.isClosed() {
		return c.opError("set", net.ErrClosed)
	}
	c.wd.set(t)
	return nil
}
