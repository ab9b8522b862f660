package conn

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// DefaultBacklog is the accept queue limit Listen uses, Linux's SOMAXCONN.
const DefaultBacklog = 4096

// ListenConfig holds options for listening.
type ListenConfig struct {
	// Backlog bounds the accept queue with Linux's meaning: backlog+1
	// established connections wait for Accept. Zero means DefaultBacklog;
	// use a negative value for a real backlog of 0.
	Backlog int
}

// Listener is a net.Listener on a tapstack stack.
type Listener struct {
	l     *tcp.Listener
	clock tcpip.Clock // the stack's: deadlines run on it
	addr  *net.TCPAddr
	dl    *deadline

	closeOnce sync.Once
	closed    chan struct{}
}

var _ net.Listener = (*Listener)(nil)

// Listen listens on address (":8080", "192.0.2.2:80") on s.
func Listen(s *stack.Stack, network, address string) (*Listener, error) {
	return (&ListenConfig{}).Listen(s, network, address)
}

// Listen listens on address with the configured backlog.
func (lc *ListenConfig) Listen(s *stack.Stack, network, address string) (*Listener, error) {
	opErr := func(err error, addr net.Addr) error {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = os.NewSyscallError("bind", errno)
		}
		return &net.OpError{Op: "listen", Net: network, Addr: addr, Err: err}
	}
	if s == nil {
		return nil, opErr(errors.New("conn: nil stack"), nil)
	}
	ap, err := resolve(network, address)
	if err != nil {
		return nil, opErr(err, nil)
	}
	backlog := lc.Backlog
	switch {
	case backlog == 0:
		backlog = DefaultBacklog
	case backlog < 0:
		backlog = 0
	}
	l, err := s.TCP().Listen(ap, backlog)
	if err != nil {
		return nil, opErr(err, net.TCPAddrFromAddrPort(ap))
	}
	clock := s.Clock()
	return &Listener{
		l:      l,
		clock:  clock,
		addr:   net.TCPAddrFromAddrPort(l.Addr()),
		dl:     newDeadline(clock),
		closed: make(chan struct{}),
	}, nil
}

// Endpoint returns the engine's listener, for its queue lengths and
// limits.
func (l *Listener) Endpoint() *tcp.Listener { return l.l }

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Accept waits for and returns the next connection.
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptTCP() }

// AcceptTCP is Accept returning a *Conn.
func (l *Listener) AcceptTCP() (*Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
	}
	for {
		if closedChan(l.closed) {
			return nil, opErr(net.ErrClosed)
		}
		changed := l.l.Changed()
		ep, err := l.l.Accept()
		if err == nil {
			return newConn(ep, l.clock), nil
		}
		if err != tcp.ErrWouldBlock {
			return nil, opErr(net.ErrClosed)
		}
		select {
		case <-changed:
		case <-l.dl.wait():
			return nil, opErr(timeoutError{})
		case <-l.closed:
			return nil, opErr(net.ErrClosed)
		}
	}
}

// SetDeadline sets the deadline for Accept calls, pending ones included,
// as a time on the stack's clock; the zero time removes it.
func (l *Listener) SetDeadline(t time.Time) error {
	if closedChan(l.closed) {
		return &net.OpError{Op: "set", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
	l.dl.set(t)
	return nil
}

// Close stops listening; connections not yet accepted are reset.
func (l *Listener) Close() error {
	err := error(&net.OpError{Op: "close", Net: "tcp", Addr: l.addr, Err: net.ErrClosed})
	l.closeOnce.Do(func() {
		err = nil
		close(l.closed)
		l.dl.release()
		l.l.Close()
	})
	return err
}
