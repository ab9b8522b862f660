package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	// KeepAlive, if positive, turns keepalive probes on for accepted
	// connections with this idle time and interval. Unlike
	// net.ListenConfig, zero means off (RFC 9293 3.8.4).
	KeepAlive time.Duration
	// KeepAliveConfig, if Enable is set, configures keepalive probes of
	// accepted connections instead of KeepAlive.
	KeepAliveConfig net.KeepAliveConfig
	// Control, if set, is called before binding with the network
	// ("tcp4", "udp6"...) and the local address, as net.ListenConfig's
	// is; an error aborts Listen. A tapstack socket has no file
	// descriptor: the RawConn's methods fail with EOPNOTSUPP.
	Control func(network, address string, c syscall.RawConn) error
}

// Listener is a net.Listener on a tapstack stack.
type Listener struct {
	l       *tcp.Listener
	s       *stack.Stack // for the contexts of accepted connections
	clock   tcpip.Clock  // the stack's: deadlines run on it
	addr    *net.TCPAddr
	dl      *deadline
	family  string // "4", "6": connections of the other family are refused
	network string // "tcp", "tcp4", "tcp6": OpError.Net, its conns' too
	ka      net.KeepAliveConfig

	closeOnce sync.Once
	closed    chan struct{}
}

var _ net.Listener = (*Listener)(nil)

// Listen listens on address (":8080", "192.0.2.2:80", "[::]:80") on s,
// like net.Listen. network "tcp" on an empty or unspecified host takes
// IPv4 and IPv6; "tcp4" only IPv4, "tcp6" only IPv6 (IPV6_V6ONLY). An
// empty or zero port picks an ephemeral one (see Addr).
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
	switch network {
	case "tcp", "tcp4", "tcp6":
	case "udp", "udp4", "udp6":
		// As net.Listen: a listener is for streams.
		return nil, opErr(fmt.Errorf("conn: Listen is for TCP; use ListenPacket or ListenUDP for %s", network), nil)
	default:
		return nil, opErr(net.UnknownNetworkError(network), nil)
	}
	ap, err := resolveLocal(network, address)
	if err != nil {
		return nil, opErr(err, nil)
	}
	if err := lc.control(network, ap); err != nil {
		return nil, opErr(err, net.TCPAddrFromAddrPort(ap))
	}
	backlog := lc.Backlog
	switch {
	case backlog == 0:
		backlog = DefaultBacklog
	case backlog < 0:
		backlog = 0
	}
	// The engine reads the wildcard's family as the socket's: the zero
	// address is dual-stack (package net's "tcp" on [::] or 0.0.0.0),
	// 0.0.0.0 IPv4 only ("tcp4"), :: IPv6 only ("tcp6", IPV6_V6ONLY), so
	// a "tcp4" and a "tcp6" listener share a port as on Linux and the
	// other family's SYNs find no listener and are reset.
	// A link-local address is bound on its zone's interface, as
	// Linux's __inet6_bind binds the socket to sin6_scope_id's device
	// and refuses a link-local address without one (EINVAL).
	nic, err := linkNIC(ap.Addr())
	if err != nil {
		return nil, opErr(err, net.TCPAddrFromAddrPort(ap))
	}
	fam := family(network)
	engAP := netip.AddrPortFrom(ap.Addr().WithZone(""), ap.Port())
	if ap.Addr().IsUnspecified() && fam == "" {
		engAP = netip.AddrPortFrom(netip.Addr{}, ap.Port())
	}
	l, err := s.TCP().ListenOn(engAP, nic, backlog)
	if err != nil {
		return nil, opErr(err, net.TCPAddrFromAddrPort(ap))
	}
	addr := l.Addr()
	if nic != 0 {
		addr = netip.AddrPortFrom(addr.Addr().WithZone(ap.Addr().Zone()), addr.Port())
	}
	switch {
	case !engAP.Addr().IsValid():
		// The engine listens on no address at all, for both families;
		// say so as package net does, whose "tcp" wildcard listener
		// is a dual-stack IPv6 socket on :: whether given 0.0.0.0 or
		// :: (favoriteAddrFamily): "[::]:80".
		addr = netip.AddrPortFrom(netip.IPv6Unspecified(), addr.Port())
	case ap.Addr().IsUnspecified():
		addr = netip.AddrPortFrom(ap.Addr(), addr.Port()) // "tcp4", "tcp6"
	}
	if !ap.Addr().IsUnspecified() {
		fam = "" // bound to one address: one family already
	}
	ka := lc.KeepAliveConfig
	if !ka.Enable && lc.KeepAlive > 0 {
		ka = net.KeepAliveConfig{Enable: true, Idle: lc.KeepAlive, Interval: lc.KeepAlive}
	}
	clock := s.Clock()
	return &Listener{
		l:       l,
		s:       s,
		clock:   clock,
		addr:    net.TCPAddrFromAddrPort(addr),
		dl:      newDeadline(clock),
		family:  fam,
		network: network,
		ka:      ka,
		closed:  make(chan struct{}),
	}, nil
}

// ListenPacket is ListenPacket with the configuration's Control.
func (lc *ListenConfig) ListenPacket(s *stack.Stack, network, address string) (net.PacketConn, error) {
	if lc.Control != nil && knownNetwork(network) {
		ap, err := resolveLocal(network, address)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		if err := lc.control(network, ap); err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Addr: net.UDPAddrFromAddrPort(ap), Err: err}
		}
	}
	return ListenPacket(s, network, address)
}

func (lc *ListenConfig) control(network string, ap netip.AddrPort) error {
	if lc.Control == nil {
		return nil
	}
	n := network
	if family(n) == "" {
		if ap.Addr().Is4() {
			n += "4"
		} else {
			n += "6"
		}
	}
	return lc.Control(n, ap.String(), noRawConn{})
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
		return &net.OpError{Op: "accept", Net: l.network, Addr: l.addr, Err: err}
	}
	for {
		if closedChan(l.closed) {
			return nil, opErr(net.ErrClosed)
		}
		if l.dl.passed() {
			// Like package net (internal/poll's FD.Accept checks the
			// deadline before accept(2)) and like Read: a passed
			// deadline fails the call even with a connection waiting,
			// which stays queued for the next Accept.
			return nil, opErr(timeoutError{})
		}
		changed := l.l.Changed()
		ep, err := l.l.Accept()
		if err == nil {
			if r := ep.ID().Remote.Addr(); (l.family == "4" && !r.Is4()) || (l.family == "6" && !r.Is6()) {
				// Not expected (the engine's listener takes one
				// family); a connection of the other is reset.
				ep.Reset()
				continue
			}
			c := newConn(ep, l.clock, l.s.ConnContext(context.Background(), ep.ID()), networkOf(l.network))
			if l.ka.Enable {
				// Cannot fail on a connection just made (a
				// negative field leaves the engine's default).
				_ = c.SetKeepAliveConfig(l.ka)
			}
			return c, nil
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
		return &net.OpError{Op: "set", Net: l.network, Addr: l.addr, Err: net.ErrClosed}
	}
	l.dl.set(t)
	return nil
}

// Close stops listening; connections not yet accepted are reset.
func (l *Listener) Close() error {
	err := error(&net.OpError{Op: "close", Net: l.network, Addr: l.addr, Err: net.ErrClosed})
	l.closeOnce.Do(func() {
		err = nil
		close(l.closed)
		l.dl.release()
		l.l.Close()
	})
	return err
}
