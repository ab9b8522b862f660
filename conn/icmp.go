package conn

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tapstack/tapstack/stack"
)

// ICMPConn is an ICMP echo socket on a tapstack stack, a net.PacketConn
// that carries ICMP messages as golang.org/x/net/icmp encodes them
// (icmp.Message.Marshal, icmp.ParseMessage): what is written is an echo
// request, ICMP header first; what is read is an echo reply, ICMP
// header first, without the IP header. It is gVisor's ICMP endpoint, and
// behaves as Linux's unprivileged ping socket (SOCK_DGRAM, IPPROTO_ICMP)
// does: the stack sets the echo identifier to the socket's own (ID,
// below) and the checksum, and only echo replies to that identifier are
// delivered.
type ICMPConn struct {
	sock  *socket
	ident uint16
	v6    bool
}

var _ net.PacketConn = (*ICMPConn)(nil)

// icmpNetwork returns whether network names ICMPv4 or ICMPv6.
func icmpNetwork(network string) (v6 bool, err error) {
	switch network {
	case "ip4:icmp", "ip4:1":
		return false, nil
	case "ip6:ipv6-icmp", "ip6:58":
		return true, nil
	}
	return false, net.UnknownNetworkError(network)
}

// resolveICMPAddr parses the local address of an ICMP socket: empty is
// every address, else an IP address or localhost.
func resolveICMPAddr(network, address string) (netip.Addr, error) {
	v6, err := icmpNetwork(network)
	if err != nil {
		return netip.Addr{}, err
	}
	switch {
	case address == "":
		return netip.Addr{}, nil
	case isLocalhost(address):
		if v6 {
			return netip.IPv6Loopback(), nil
		}
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(address, "["), "]"))
	if err != nil {
		return netip.Addr{}, &net.AddrError{Err: "a local address must be an IP address", Addr: address}
	}
	return a.Unmap().WithZone(""), nil
}

// ListenICMP opens an ICMP echo socket: network "ip4:icmp" (or "ip4:1")
// or "ip6:ipv6-icmp" ("ip6:58"), bound to laddr (the zero Addr or an
// unspecified one: every address of the family).
func ListenICMP(s *stack.Stack, network string, laddr netip.Addr) (*ICMPConn, error) {
	opErr := func(err error) error {
		var a net.Addr
		if laddr.IsValid() {
			a = &net.IPAddr{IP: laddr.AsSlice()}
		}
		return &net.OpError{Op: "listen", Net: network, Addr: a, Err: wrapErrno("bind", err)}
	}
	if s == nil {
		return nil, opErr(errors.New("conn: nil stack"))
	}
	v6, err := icmpNetwork(network)
	if err != nil {
		return nil, opErr(err)
	}
	if laddr.IsValid() && !laddr.IsUnspecified() && laddr.Is6() != v6 {
		return nil, opErr(&net.AddrError{Err: "address family does not match " + network, Addr: laddr.String()})
	}
	proto, netProto := icmp.ProtocolNumber4, header.IPv4ProtocolNumber
	if v6 {
		proto, netProto = icmp.ProtocolNumber6, header.IPv6ProtocolNumber
	}
	wq := new(waiter.Queue)
	ep, terr := s.Netstack().NewEndpoint(proto, netProto, wq)
	if terr != nil {
		return nil, opErr(errno(terr))
	}
	// The hop limit of each reply, for ping's ttl=.
	ep.SocketOptions().SetReceiveTTL(true)
	ep.SocketOptions().SetReceiveHopLimit(true)
	var fa tcpip.FullAddress
	if laddr.IsValid() && !laddr.IsUnspecified() {
		fa.Addr = tcpip.AddrFromSlice(laddr.AsSlice())
	}
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, opErr(errno(terr))
	}
	c := &ICMPConn{sock: newSocket(ep, wq, s.Clock(), network), v6: v6}
	if la, terr := ep.GetLocalAddress(); terr == nil {
		c.ident = la.Port
		a, _ := netip.AddrFromSlice(la.Addr.AsSlice())
		if !a.IsValid() {
			a = netip.IPv4Unspecified()
			if v6 {
				a = netip.IPv6Unspecified()
			}
		}
		c.sock.laddr = &net.IPAddr{IP: a.AsSlice()}
	}
	return c, nil
}

// ID returns the echo identifier the stack puts in this socket's
// requests (RFC 792, RFC 4443 4.1): replies carry it back.
func (c *ICMPConn) ID() int { return int(c.ident) }

// LocalAddr returns the bound address, a *net.IPAddr.
func (c *ICMPConn) LocalAddr() net.Addr { return c.sock.laddr }

// ReadFrom reads one echo reply, ICMP header first, and returns its
// sender as a *net.IPAddr.
func (c *ICMPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, _, err := c.readReply(b, nil)
	if err != nil {
		return 0, nil, err
	}
	return n, &net.IPAddr{IP: from.AsSlice()}, nil
}

// readReply reads one echo reply and returns its length, sender and hop
// limit (TTL).
func (c *ICMPConn) readReply(b []byte, done <-chan struct{}) (int, netip.Addr, uint8, error) {
	res, err := c.sock.readMsg(b, done)
	if err != nil {
		return 0, netip.Addr{}, 0, c.sock.opError("read", nil, err)
	}
	from, _ := netip.AddrFromSlice(res.RemoteAddr.Addr.AsSlice())
	ttl := res.ControlMessages.TTL
	if res.ControlMessages.HasHopLimit {
		ttl = res.ControlMessages.HopLimit
	}
	return res.Count, from, ttl, nil
}

// WriteTo sends the ICMP message b, an echo request of the socket's
// family, to addr: a *net.IPAddr, or a *net.UDPAddr whose port is
// ignored (what golang.org/x/net/icmp uses for unprivileged sockets).
func (c *ICMPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	var ip net.IP
	switch a := addr.(type) {
	case *net.IPAddr:
		if a != nil {
			ip = a.IP
		}
	case *net.UDPAddr:
		if a != nil {
			ip = a.IP
		}
	}
	dst, ok := netip.AddrFromSlice(ip)
	if !ok {
		return 0, c.sock.opError("write", addr, syscall.EINVAL)
	}
	return c.writeTo(b, dst.Unmap())
}

func (c *ICMPConn) writeTo(b []byte, dst netip.Addr) (int, error) {
	na := &net.IPAddr{IP: dst.AsSlice()}
	if dst.Is6() != c.v6 {
		return 0, c.sock.opError("write", na, syscall.EAFNOSUPPORT)
	}
	to := tcpip.FullAddress{Addr: tcpip.AddrFromSlice(dst.AsSlice())}
	n, err := c.sock.write(b, &to)
	return n, c.sock.opError("write", na, err)
}

// Close closes the socket; blocked calls return net.ErrClosed.
func (c *ICMPConn) Close() error { return c.sock.close() }

// SetDeadline sets both deadlines on the stack's clock.
func (c *ICMPConn) SetDeadline(t time.Time) error { return c.sock.setDeadline(t, true, true) }

// SetReadDeadline sets the deadline for ReadFrom.
func (c *ICMPConn) SetReadDeadline(t time.Time) error { return c.sock.setDeadline(t, true, false) }

// SetWriteDeadline sets the deadline for WriteTo.
func (c *ICMPConn) SetWriteDeadline(t time.Time) error { return c.sock.setDeadline(t, false, true) }
