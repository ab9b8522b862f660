package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/stack"
)

// Dialer holds options for connecting, like net.Dialer.
type Dialer struct {
	// Stack is the stack to dial from. Required.
	Stack *stack.Stack
	// Timeout bounds the whole dial, on the stack's clock as the engine's
	// SYN retransmissions are; zero means no timeout beyond the engine's
	// SYN retries. A deadline of the context passed to DialContext also
	// applies: it is the caller's, on the real clock.
	Timeout time.Duration
	// LocalAddr, a *net.TCPAddr, fixes the local address or port.
	LocalAddr net.Addr
	// KeepAlive, if positive, turns keepalive probes on with this idle
	// time and interval. Unlike net.Dialer, zero means off: RFC 9293
	// 3.8.4 requires keepalives to be off by default.
	KeepAlive time.Duration
}

// Dial connects to address ("192.0.2.1:80", "[2001:db8::1]:80") on s.
// network is "tcp", "tcp4" or "tcp6". tapstack has no resolver: host must
// be an IP address.
func Dial(s *stack.Stack, network, address string) (*Conn, error) {
	return (&Dialer{Stack: s}).DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context: cancelling it or reaching its
// deadline aborts the attempt, and no connection appears later.
func DialContext(ctx context.Context, s *stack.Stack, network, address string) (*Conn, error) {
	return (&Dialer{Stack: s}).DialContext(ctx, network, address)
}

// Dial connects as DialContext does with a background context.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address. The returned error is a *net.OpError.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (*Conn, error) {
	opErr := func(err error, raddr net.Addr) error {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = os.NewSyscallError("connect", errno)
		}
		return &net.OpError{Op: "dial", Net: network, Source: d.LocalAddr, Addr: raddr, Err: err}
	}
	if d.Stack == nil {
		return nil, opErr(errors.New("conn: Dialer has no Stack"), nil)
	}
	raddr, err := resolve(network, address)
	if err != nil {
		return nil, opErr(err, nil)
	}
	netAddr := net.TCPAddrFromAddrPort(raddr)
	var local netip.AddrPort
	if d.LocalAddr != nil {
		la, ok := d.LocalAddr.(*net.TCPAddr)
		if !ok {
			return nil, opErr(fmt.Errorf("conn: LocalAddr is %T, not *net.TCPAddr", d.LocalAddr), netAddr)
		}
		local = la.AddrPort()
	}
	clock := d.Stack.Clock()
	timeout, stop := after(clock, d.Timeout)
	defer stop()
	if err := ctx.Err(); err != nil {
		return nil, opErr(mapContextErr(err), netAddr)
	}
	ep, err := d.Stack.TCP().Connect(local, raddr)
	if err != nil {
		return nil, opErr(err, netAddr)
	}
	for {
		changed := ep.Changed()
		ok, err := ep.Established()
		if err != nil {
			return nil, opErr(err, netAddr)
		}
		if ok {
			c := newConn(ep, clock)
			if d.KeepAlive > 0 {
				_ = c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: d.KeepAlive, Interval: d.KeepAlive})
			}
			return c, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			ep.Reset()
			return nil, opErr(mapContextErr(ctx.Err()), netAddr)
		case <-timeout:
			// Package net reports a Dialer.Timeout as it reports a
			// context deadline.
			ep.Reset()
			return nil, opErr(timeoutError{ctx: true}, netAddr)
		}
	}
}

func mapContextErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return timeoutError{ctx: true}
	}
	return err
}

// resolve parses an IP:port address for network.
func resolve(network, address string) (netip.AddrPort, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return netip.AddrPort{}, net.UnknownNetworkError(network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, &net.AddrError{Err: "invalid port", Addr: address}
	}
	var a netip.Addr
	if host == "" {
		a = netip.IPv4Unspecified()
		if network == "tcp6" {
			a = netip.IPv6Unspecified()
		}
	} else if a, err = netip.ParseAddr(host); err != nil {
		return netip.AddrPort{}, &net.AddrError{Err: "tapstack has no resolver; use an IP address", Addr: host}
	}
	a = a.Unmap()
	if (network == "tcp4" && !a.Is4()) || (network == "tcp6" && !a.Is6()) {
		return netip.AddrPort{}, &net.AddrError{Err: "address family does not match " + network, Addr: host}
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}
