package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// Dialer holds options for connecting, like net.Dialer.
type Dialer struct {
	// Stack is the stack to dial from. Required.
	Stack *stack.Stack
	// Timeout bounds the whole dial, name resolution included as with
	// net.Dialer, on the stack's clock as the engine's SYN
	// retransmissions are; zero means no timeout beyond the engine's SYN
	// retries (and the resolver's own). A deadline of the context passed
	// to DialContext also applies: it is the caller's, on the real clock.
	Timeout time.Duration
	// LocalAddr fixes the local address or port: a *net.TCPAddr for TCP,
	// a *net.UDPAddr for UDP.
	LocalAddr net.Addr
	// KeepAlive, if positive, turns keepalive probes on with this idle
	// time and interval. Unlike net.Dialer, zero means off: RFC 9293
	// 3.8.4 requires keepalives to be off by default.
	KeepAlive time.Duration
	// KeepAliveConfig, if Enable is set, configures keepalive probes
	// instead of KeepAlive (see Conn.SetKeepAliveConfig).
	KeepAliveConfig net.KeepAliveConfig
	// Resolver looks up host names that are not IP addresses. Nil means
	// only IP addresses and "localhost" (127.0.0.1 and ::1, RFC 6761
	// 6.3). Resolver(s, servers...) makes one that asks DNS servers
	// through the stack.
	Resolver *net.Resolver
	// Control, if set, is called before each connection attempt with the
	// network ("tcp4", "udp6"...) and the address being dialed, as
	// net.Dialer's is; an error aborts the attempt. A tapstack socket has
	// no file descriptor: the RawConn's methods fail with EOPNOTSUPP.
	Control func(network, address string, c syscall.RawConn) error
}

// Dial connects to address ("192.0.2.1:80", "[2001:db8::1]:80",
// "localhost:7") on s over network, as net.Dial does: "tcp", "tcp4" or
// "tcp6" give a *Conn, "udp", "udp4" or "udp6" a *UDPConn (type-assert
// for their own methods, as with net.Dial's *net.TCPConn). Host names
// other than localhost need a Dialer with a Resolver. A TCP dial to a
// link-local address needs its zone, the number of the interface to
// leave by ("[fe80::1%1]:80"), as Linux needs one.
func Dial(s *stack.Stack, network, address string) (net.Conn, error) {
	return (&Dialer{Stack: s}).DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context: cancelling it or reaching its
// deadline aborts the attempt, and no connection appears later.
func DialContext(ctx context.Context, s *stack.Stack, network, address string) (net.Conn, error) {
	return (&Dialer{Stack: s}).DialContext(ctx, network, address)
}

// Dial connects as DialContext does with a background context.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address over network: "tcp", "tcp4", "tcp6"
// (a *Conn), or "udp", "udp4", "udp6" (a *UDPConn). It has
// net.Dialer.DialContext's signature, so it plugs into
// http.Transport.DialContext and net.Resolver.Dial. When a host name
// resolves to several addresses they are tried in turn. The returned
// error is a *net.OpError.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "udp", "udp4", "udp6":
		c, err := d.DialUDP(ctx, network, address)
		if err != nil {
			return nil, err // not a typed nil in a net.Conn
		}
		return c, nil
	}
	c, err := d.DialTCP(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialTCP is DialContext for TCP, returning the *Conn.
func (d *Dialer) DialTCP(ctx context.Context, network, address string) (*Conn, error) {
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
	switch network {
	case "tcp", "tcp4", "tcp6":
	case "udp", "udp4", "udp6":
		// Dial and DialContext return a *Conn, which is TCP's.
		return nil, opErr(fmt.Errorf("conn: %s is not TCP: use DialUDP, or Dialer.DialContext for a net.Conn of any network", network), nil)
	default:
		return nil, opErr(net.UnknownNetworkError(network), nil)
	}
	var local netip.AddrPort
	if d.LocalAddr != nil {
		la, ok := d.LocalAddr.(*net.TCPAddr)
		if !ok {
			return nil, opErr(fmt.Errorf("conn: LocalAddr is %T, not *net.TCPAddr", d.LocalAddr), nil)
		}
		local = la.AddrPort()
	}
	clock := d.Stack.Clock()
	timeout, stop := after(clock, d.Timeout)
	defer stop()
	raddrs, err := d.resolveRemote(ctx, network, address, timeout)
	if err != nil {
		return nil, opErr(err, nil)
	}
	var first error
	for _, raddr := range raddrs {
		c, err := d.dialTCP(ctx, network, local, raddr, timeout)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil || closedChan(timeout) {
			break
		}
	}
	return nil, first
}

// dialTCP makes one attempt at raddr.
func (d *Dialer) dialTCP(ctx context.Context, network string, local, raddr netip.AddrPort, timeout <-chan struct{}) (*Conn, error) {
	opErr := func(err error) error {
		var be *tcp.BindError
		var errno syscall.Errno
		switch {
		case errors.As(err, &be):
			// The local address or port: package net's bind(2)
			// fails before its connect(2) (sock_posix.go dial).
			err = os.NewSyscallError("bind", be.Errno)
		case errors.As(err, &errno):
			err = os.NewSyscallError("connect", errno)
		}
		return &net.OpError{Op: "dial", Net: network, Source: d.LocalAddr, Addr: net.TCPAddrFromAddrPort(raddr), Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(mapContextErr(err))
	}
	if err := d.control(network, raddr); err != nil {
		return nil, opErr(err)
	}
	nic, err := linkNIC(raddr.Addr())
	if err != nil {
		return nil, opErr(err)
	}
	ep, err := d.Stack.TCP().ConnectWith(local, raddr, tcp.ConnectOptions{NIC: nic})
	if err != nil {
		return nil, opErr(err)
	}
	// Changed is taken once the handshake is found not complete, and the
	// check made again, so that a connection established at once does
	// not keep a channel made for nothing.
	var changed <-chan struct{}
	for {
		ok, err := ep.Established()
		if err != nil {
			return nil, opErr(err)
		}
		if ok {
			// The connection outlives the dial: its context keeps
			// the dial's values, not its deadline or cancellation.
			c := newConn(ep, d.Stack.Clock(), d.Stack.ConnContext(context.WithoutCancel(ctx), ep.ID()), networkOf(network))
			// On a connection just made these cannot fail: a
			// negative field of KeepAliveConfig leaves the engine's
			// default, as package net leaves the kernel's.
			switch {
			case d.KeepAliveConfig.Enable:
				_ = c.SetKeepAliveConfig(d.KeepAliveConfig)
			case d.KeepAlive > 0:
				_ = c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: d.KeepAlive, Interval: d.KeepAlive})
			}
			return c, nil
		}
		if changed == nil {
			changed = ep.Changed()
			continue
		}
		select {
		case <-changed:
			changed = nil
		case <-ctx.Done():
			ep.Reset()
			return nil, opErr(mapContextErr(ctx.Err()))
		case <-timeout:
			// Package net reports a Dialer.Timeout as it reports a
			// context deadline.
			ep.Reset()
			return nil, opErr(timeoutError{ctx: true})
		}
	}
}

// DialUDP is DialContext for UDP, returning the *UDPConn: a socket
// connected to the first address address resolves to (nothing is sent,
// so there is nothing to try further).
func (d *Dialer) DialUDP(ctx context.Context, network, address string) (*UDPConn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Source: d.LocalAddr, Err: err}
	}
	if d.Stack == nil {
		return nil, opErr(errors.New("conn: Dialer has no Stack"))
	}
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, opErr(net.UnknownNetworkError(network))
	}
	var local netip.AddrPort
	if d.LocalAddr != nil {
		la, ok := d.LocalAddr.(*net.UDPAddr)
		if !ok {
			return nil, opErr(fmt.Errorf("conn: LocalAddr is %T, not *net.UDPAddr", d.LocalAddr))
		}
		local = udpAddr(la)
	}
	timeout, stop := after(d.Stack.Clock(), d.Timeout)
	defer stop()
	raddrs, err := d.resolveRemote(ctx, network, address, timeout)
	if err != nil {
		return nil, opErr(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(mapContextErr(err))
	}
	if err := d.control(network, raddrs[0]); err != nil {
		return nil, opErr(err)
	}
	return dialUDP(d.Stack, network, local, raddrs[0])
}

// control calls d.Control, if set, with the network of raddr's family.
func (d *Dialer) control(network string, raddr netip.AddrPort) error {
	if d.Control == nil {
		return nil
	}
	n := network
	if n == "tcp" || n == "udp" {
		if raddr.Addr().Is4() {
			n += "4"
		} else {
			n += "6"
		}
	}
	return d.Control(n, raddr.String(), noRawConn{})
}

// noRawConn is the syscall.RawConn handed to Control functions: a
// tapstack socket has no file descriptor.
type noRawConn struct{}

func (noRawConn) Control(func(uintptr)) error    { return syscall.EOPNOTSUPP }
func (noRawConn) Read(func(uintptr) bool) error  { return syscall.EOPNOTSUPP }
func (noRawConn) Write(func(uintptr) bool) error { return syscall.EOPNOTSUPP }

func mapContextErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return timeoutError{ctx: true}
	}
	return err
}

// family returns "4", "6" or "" (either) for a tcp or udp network.
func family(network string) string {
	switch network {
	case "tcp4", "udp4":
		return "4"
	case "tcp6", "udp6":
		return "6"
	}
	return ""
}

func knownNetwork(network string) bool {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		return true
	}
	return false
}

// splitPort splits address into host and port as package net does: an
// empty port is 0 (ephemeral when listening), a name is looked up in
// the host's services table.
func splitPort(network, address string) (string, uint16, error) {
	if address == "" {
		return "", 0, nil // as net.Listen("tcp", "")
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", 0, err
	}
	if port == "" {
		return host, 0, nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		n, lerr := net.LookupPort(network, port)
		if lerr != nil {
			return "", 0, &net.AddrError{Err: "invalid port", Addr: address}
		}
		p = uint64(n)
	}
	return host, uint16(p), nil
}

// linkNIC is the interface a link-local address's zone names: a link-local
// address means something only on one link (RFC 4291 2.5.6), so package
// net passes the zone to connect(2) as sin6_scope_id, and Linux's
// tcp_v6_connect binds the socket to that interface and refuses a
// link-local address without one (EINVAL). A stack's interfaces have no
// names, so the zone is the interface's number, as a numeric zone is to
// package net; a name is no interface (package net makes an unknown
// name index 0), and EINVAL as well. Any other address needs no zone:
// 0, the routes choose.
func linkNIC(a netip.Addr) (tcpip.NICID, error) {
	if !needsZone(a) {
		return 0, nil
	}
	n, err := strconv.ParseUint(a.Zone(), 10, 31)
	if err != nil || n == 0 {
		return 0, syscall.EINVAL
	}
	return tcpip.NICID(n), nil
}

// needsZone reports an IPv6 link-local unicast address (IPv4's link-local
// addresses have no zone in Linux or package net).
func needsZone(a netip.Addr) bool { return a.Is6() && a.IsLinkLocalUnicast() }

// matchFamily checks a against network's family, with package net's
// error for an address of the other (filterAddrList's
// errNoSuitableAddress).
func matchFamily(network string, a netip.Addr) error {
	switch f := family(network); {
	case f == "4" && !a.Is4(), f == "6" && !a.Is6():
		return &net.AddrError{Err: "no suitable address found", Addr: a.String()}
	}
	return nil
}

// resolveLocal parses a local address for Listen: an empty host is every
// address of network's family (IPv4 and IPv6 for "tcp" and "udp"), an
// empty or zero port an ephemeral one. A host name must be an IP address
// or localhost.
func resolveLocal(network, address string) (netip.AddrPort, error) {
	if !knownNetwork(network) {
		return netip.AddrPort{}, net.UnknownNetworkError(network)
	}
	host, port, err := splitPort(network, address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	var a netip.Addr
	switch {
	case host == "":
		a = netip.IPv4Unspecified()
		if family(network) != "4" {
			a = netip.IPv6Unspecified()
		}
	case isLocalhost(host):
		a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if family(network) == "6" {
			a = netip.IPv6Loopback()
		}
	default:
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, &net.AddrError{Err: "a local address must be an IP address", Addr: host}
		}
		// An IPv6 link-local address keeps its zone, the interface
		// to bind on (linkNIC), as in resolveRemote.
		if a = a.Unmap(); !needsZone(a) {
			a = a.WithZone("")
		}
		// "[::]" in tcp4 is "any", as "" (package net tries 0.0.0.0
		// after :: for it, internetAddrList); "0.0.0.0" in tcp6 is
		// refused, as package net refuses it.
		if a.IsUnspecified() && family(network) == "4" {
			a = netip.IPv4Unspecified()
		} else if err := matchFamily(network, a); err != nil {
			return netip.AddrPort{}, err
		}
	}
	return netip.AddrPortFrom(a, port), nil
}

// isLocalhost reports a name that always means this host (RFC 6761 6.3).
func isLocalhost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// resolveRemote turns address into the addresses to try, in order: an IP
// literal, localhost (127.0.0.1 and ::1 as network allows), or what
// d.Resolver answers. An empty host is this host, as in package net. A
// lookup ends when timeout closes (Dialer.Timeout).
func (d *Dialer) resolveRemote(ctx context.Context, network, address string, timeout <-chan struct{}) ([]netip.AddrPort, error) {
	host, port, err := splitPort(network, address)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	switch {
	case host == "" || isLocalhost(host):
		addrs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			// An IPv6 link-local address keeps its zone, the
			// interface (linkNIC); any other's means nothing to
			// Linux's tcp_v6_connect, which reads sin6_scope_id
			// for a link-local address only.
			if a = a.Unmap(); !needsZone(a) {
				a = a.WithZone("")
			}
			if err := matchFamily(network, a); err != nil {
				return nil, err
			}
			if a.IsUnspecified() {
				// "0.0.0.0:80" and "[::]:80" dial this host, as in
				// package net (and Linux's connect(2)).
				if a.Is4() {
					a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
				} else {
					a = netip.IPv6Loopback()
				}
			}
			return []netip.AddrPort{netip.AddrPortFrom(a, port)}, nil
		}
		if d.Resolver == nil {
			return nil, &net.DNSError{Err: "no resolver: set Dialer.Resolver (see conn.Resolver) or use an IP address", Name: host, IsNotFound: true}
		}
		ipnet := "ip"
		if f := family(network); f != "" {
			ipnet += f
		}
		addrs, err = d.lookup(ctx, ipnet, host, timeout)
		if err != nil {
			return nil, err
		}
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		a = a.Unmap()
		if matchFamily(network, a) == nil {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	if len(out) == 0 {
		return nil, &net.AddrError{Err: "no suitable address found", Addr: host}
	}
	return out, nil
}

// lookup asks d.Resolver for host's addresses and gives up with a timeout
// when timeout closes: net.Dialer's Timeout covers name resolution too.
// The lookup is cancelled then; a resolver made by Resolver ends at once
// (its sockets time out with the context), another when it notices.
func (d *Dialer) lookup(ctx context.Context, ipnet, host string, timeout <-chan struct{}) ([]netip.Addr, error) {
	if timeout == nil {
		return d.Resolver.LookupNetIP(ctx, ipnet, host)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		addrs []netip.Addr
		err   error
	}
	done := make(chan result, 1) // the lookup never blocks on it
	go func() {
		addrs, err := d.Resolver.LookupNetIP(lctx, ipnet, host)
		done <- result{addrs, err}
	}()
	select {
	case r := <-done:
		return r.addrs, r.err
	case <-timeout:
		return nil, timeoutError{ctx: true}
	}
}
