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
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tapstack/tapstack/stack"
)

// UDPConn is a UDP socket on a tapstack stack, like *net.UDPConn: a
// net.PacketConn, and a net.Conn once connected (DialUDP). UDP is
// gVisor's (transport/udp); tapstack adapts it to package net's API, with
// deadlines on the stack's clock as Conn's. It is safe for concurrent
// use; Close unblocks every blocked call.
//
// A datagram to a port nobody holds makes the receiver answer ICMP port
// unreachable (RFC 1122 4.1.3.1); a connected UDPConn that gets one
// fails its next Read or Write with ECONNREFUSED, once, as Linux's does.
// It does the same with the other ICMP errors Linux calls hard
// (stack/udp_errors.go): EMSGSIZE for fragmentation needed, EHOSTUNREACH
// for administratively prohibited, and so on; net and host unreachable
// are soft, and not reported, as on Linux without IP_RECVERR.
type UDPConn struct {
	sock  *socket
	proto tcpip.NetworkProtocolNumber // of the endpoint
	s     *stack.Stack
}

var (
	_ net.PacketConn = (*UDPConn)(nil)
	_ net.Conn       = (*UDPConn)(nil)
)

// ListenPacket opens a datagram socket on s, like net.ListenPacket:
// network "udp", "udp4" or "udp6" for UDP (address such as ":53",
// "192.0.2.2:0"; an empty or zero port picks an ephemeral one), or
// "ip4:icmp" ("ip4:1") and "ip6:ipv6-icmp" ("ip6:58") for ICMP echo (see
// ListenICMP).
func ListenPacket(s *stack.Stack, network, address string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
		ap, err := resolveLocal(network, address)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		return listenUDP(s, network, ap)
	}
	if strings.HasPrefix(network, "ip4:") || strings.HasPrefix(network, "ip6:") || strings.HasPrefix(network, "ip:") {
		a, err := resolveICMPAddr(network, address)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		return ListenICMP(s, network, a)
	}
	return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
}

// ListenUDP opens a UDP socket bound to laddr, like net.ListenUDP. A nil
// laddr, or one with no IP or an unspecified one (0.0.0.0 or ::), binds
// every address of the stack; with network "udp" that socket takes IPv4
// and IPv6 (an IPv6 socket without IPV6_V6ONLY, as Linux's default), with
// "udp6" IPv6 only, with "udp4" IPv4 only. Port 0 picks an ephemeral
// port.
func ListenUDP(s *stack.Stack, network string, laddr *net.UDPAddr) (*UDPConn, error) {
	return listenUDP(s, network, udpAddr(laddr))
}

// listenUDP binds local. Package net's "udp" on a wildcard is one
// dual-stack IPv6 socket whichever wildcard the caller gave
// (favoriteAddrFamily, for a listen): 0.0.0.0 too binds [::]. Errors name
// the address as the caller gave it, as package net's do.
func listenUDP(s *stack.Stack, network string, local netip.AddrPort) (*UDPConn, error) {
	at := local
	if network == "udp" && local.Addr() == netip.IPv4Unspecified() {
		at = netip.AddrPortFrom(netip.IPv6Unspecified(), local.Port())
	}
	return bindUDP(s, network, local, at)
}

// bindUDP opens a socket for network bound to at; errors name local.
func bindUDP(s *stack.Stack, network string, local, at netip.AddrPort) (*UDPConn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: net.UDPAddrFromAddrPort(local), Err: wrapErrno("bind", err)}
	}
	if s == nil {
		return nil, opErr(errors.New("conn: nil stack"))
	}
	proto, v6only, err := udpFamily(network, at.Addr(), netip.Addr{})
	if err != nil {
		return nil, opErr(err)
	}
	// A link-local address is bound on its zone's interface
	// (__inet6_bind): EINVAL without one, EADDRNOTAVAIL from gVisor's
	// Bind when that interface does not hold the address.
	nic, err := linkNIC(at.Addr())
	if err != nil {
		return nil, opErr(err)
	}
	c, err := newUDPConn(s, network, proto, v6only)
	if err != nil {
		return nil, opErr(err)
	}
	if terr := c.sock.ep.Bind(zonedAddress(at, nic)); terr != nil {
		c.sock.ep.Close()
		return nil, opErr(errno(terr))
	}
	c.fixAddrs()
	return c, nil
}

// ListenMulticastUDP opens a UDP socket on gaddr's port that has joined
// the group gaddr.IP on interface nic, like net.ListenMulticastUDP: it
// binds the wildcard address, so datagrams to the group and port arrive.
func ListenMulticastUDP(s *stack.Stack, network string, nic tcpip.NICID, gaddr *net.UDPAddr) (*UDPConn, error) {
	g := udpAddr(gaddr)
	if !g.Addr().IsMulticast() {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: gaddr, Err: &net.AddrError{Err: "not a multicast address", Addr: g.Addr().String()}}
	}
	var any netip.Addr
	if g.Addr().Is4() {
		any = netip.IPv4Unspecified()
	} else {
		any = netip.IPv6Unspecified()
	}
	// The family of the group, as net.ListenMulticastUDP's socket,
	// not the dual-stack socket of a "udp" listen on 0.0.0.0.
	at := netip.AddrPortFrom(any, g.Port())
	c, err := bindUDP(s, network, at, at)
	if err != nil {
		return nil, err
	}
	if err := c.JoinGroup(nic, g.Addr()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// DialUDP opens a UDP socket connected to raddr, like net.DialUDP: it
// sends only to raddr, takes datagrams only from it, and learns of ICMP
// port unreachable (ECONNREFUSED). laddr may be nil; its zero port picks
// an ephemeral one. Nothing is sent by dialing.
func DialUDP(s *stack.Stack, network string, laddr, raddr *net.UDPAddr) (*UDPConn, error) {
	if raddr == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errMissingAddress}
	}
	return dialUDP(s, network, udpAddr(laddr), udpAddr(raddr))
}

func dialUDP(s *stack.Stack, network string, local, remote netip.AddrPort) (*UDPConn, error) {
	opErr := func(call string, err error) error {
		var src net.Addr
		if local.IsValid() {
			src = net.UDPAddrFromAddrPort(local)
		}
		return &net.OpError{Op: "dial", Net: network, Source: src, Addr: net.UDPAddrFromAddrPort(remote), Err: wrapErrno(call, err)}
	}
	if s == nil {
		return nil, opErr("connect", errors.New("conn: nil stack"))
	}
	proto, v6only, err := udpFamily(network, local.Addr(), remote.Addr())
	if err != nil {
		return nil, opErr("connect", err)
	}
	// A link-local address, local or remote, is used on its zone's
	// interface, as __ip6_datagram_connect binds the socket to
	// sin6_scope_id's device, and refuses a link-local peer without
	// one (EINVAL).
	lnic, err := linkNIC(local.Addr())
	if err != nil {
		return nil, opErr("bind", err)
	}
	rnic, err := linkNIC(remote.Addr())
	if err != nil {
		return nil, opErr("connect", err)
	}
	c, err := newUDPConn(s, network, proto, v6only)
	if err != nil {
		return nil, opErr("connect", err)
	}
	// A laddr with a port and no IP (&net.UDPAddr{Port: 53}) binds the
	// port on every address, as net.DialUDP does.
	if local.IsValid() || local.Port() != 0 {
		if terr := c.sock.ep.Bind(zonedAddress(local, lnic)); terr != nil {
			c.sock.ep.Close()
			return nil, opErr("bind", errno(terr))
		}
	}
	ra := remote
	if ra.Addr().IsUnspecified() {
		// As Linux: connecting to 0.0.0.0 or :: means this host.
		if ra.Addr().Is4() {
			ra = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ra.Port())
		} else {
			ra = netip.AddrPortFrom(netip.IPv6Loopback(), ra.Port())
		}
	}
	if terr := c.sock.ep.Connect(zonedAddress(ra, rnic)); terr != nil {
		c.sock.ep.Close()
		err := errno(terr)
		if _, ok := terr.(*tcpip.ErrUnknownNICID); ok {
			// A zone that names no interface: no route, as
			// Linux's route lookup for an unknown oif answers.
			err = syscall.ENETUNREACH
		}
		return nil, opErr("connect", err)
	}
	c.fixAddrs()
	return c, nil
}

// udpFamily picks the endpoint's network protocol for network and the
// addresses, as package net does: udp4 and udp6 allow only their family;
// "udp" follows the addresses, IPv6 dual-stack when none is given.
func udpFamily(network string, local, remote netip.Addr) (tcpip.NetworkProtocolNumber, bool, error) {
	given := func(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() }
	is4 := func(a netip.Addr) bool { return a.Is4() || a.Is4In6() }
	for _, a := range []netip.Addr{local, remote} {
		// An unspecified address of either family means "any" in both.
		if !given(a) {
			continue
		}
		if (network == "udp4" && !is4(a)) || (network == "udp6" && is4(a)) {
			return 0, false, &net.AddrError{Err: "address family does not match " + network, Addr: a.String()}
		}
	}
	switch network {
	case "udp4":
		return header.IPv4ProtocolNumber, false, nil
	case "udp6":
		return header.IPv6ProtocolNumber, true, nil
	case "udp":
	default:
		return 0, false, net.UnknownNetworkError(network)
	}
	switch {
	case given(remote):
		return netProtoOf(remote), false, nil
	case given(local):
		return netProtoOf(local), false, nil
	case local.Is4() || remote.Is4():
		// 0.0.0.0 given explicitly: an IPv4 socket, as Go's net makes
		// for a dial (listenUDP has made a listen's 0.0.0.0 [::]).
		return header.IPv4ProtocolNumber, false, nil
	}
	return header.IPv6ProtocolNumber, false, nil
}

func newUDPConn(s *stack.Stack, network string, proto tcpip.NetworkProtocolNumber, v6only bool) (*UDPConn, error) {
	wq := new(waiter.Queue)
	ep, terr := s.Netstack().NewEndpoint(udp.ProtocolNumber, proto, wq)
	if terr != nil {
		return nil, errno(terr)
	}
	if proto == header.IPv6ProtocolNumber {
		ep.SocketOptions().SetV6Only(v6only)
	}
	// Go's net sets SO_BROADCAST on every UDP socket it makes.
	ep.SocketOptions().SetBroadcast(true)
	return &UDPConn{sock: newSocket(ep, wq, s.Clock(), network), proto: proto, s: s}, nil
}

// fixAddrs reads the bound (and connected) addresses once.
func (c *UDPConn) fixAddrs() {
	if la, err := c.sock.ep.GetLocalAddress(); err == nil {
		c.sock.laddr = net.UDPAddrFromAddrPort(udpFromFull(la, c.proto))
	}
	if ra, err := c.sock.ep.GetRemoteAddress(); err == nil {
		c.sock.raddr = net.UDPAddrFromAddrPort(udpFromFull(ra, c.proto))
	}
}

// udpFromFull converts a gVisor address of a socket of family proto for
// a *net.UDPAddr. gVisor gives a socket bound to no address no address
// at all; package net reads getsockname, where Linux's inet_getname and
// inet6_getname give the family's wildcard: [::] for an IPv6 socket
// (dual-stack or not), 0.0.0.0 for an IPv4 one.
func udpFromFull(fa tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) netip.AddrPort {
	ap := addrPort(fa)
	if ap.Addr().IsValid() {
		return ap
	}
	if proto == header.IPv4ProtocolNumber {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())
	}
	return netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
}

// LocalAddr returns the bound address, a *net.UDPAddr.
func (c *UDPConn) LocalAddr() net.Addr { return c.sock.laddr }

// RemoteAddr returns the connected peer, a *net.UDPAddr, or nil.
func (c *UDPConn) RemoteAddr() net.Addr {
	if c.sock.raddr == nil {
		return nil
	}
	return c.sock.raddr
}

// Read reads one datagram from the connected peer; a datagram longer
// than b is truncated, the rest lost, as recv(2) does. An empty b returns
// 0, nil at once and takes no datagram, as package net's Read does
// (internal/poll's FD.Read makes no syscall for it); ReadFrom with an
// empty b takes one, as recvfrom(2) does.
func (c *UDPConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		if c.sock.isClosed() {
			return 0, c.sock.opError("read", nil, net.ErrClosed)
		}
		return 0, nil
	}
	n, _, _, err := c.sock.read(b)
	return n, c.sock.opErrorIn("read", "read", nil, err)
}

// ReadFrom reads one datagram and returns its sender, a *net.UDPAddr.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDP is ReadFrom returning a *net.UDPAddr.
func (c *UDPConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDPAddrPort is ReadFrom returning a netip.AddrPort.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, _, from, err := c.sock.read(b)
	if err != nil {
		return 0, netip.AddrPort{}, c.sock.opError("read", nil, err)
	}
	return n, addrPort(from), nil
}

// ReadMsgUDPAddrPort reads one datagram as recvmsg(2) does. flags has
// syscall.MSG_TRUNC set when b was shorter than the datagram. No control
// messages are produced: oobn is 0.
func (c *UDPConn) ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error) {
	n, total, from, err := c.sock.read(b)
	if err != nil {
		return 0, 0, 0, netip.AddrPort{}, c.sock.opErrorIn("read", "recvmsg", nil, err)
	}
	if total > n {
		flags |= syscall.MSG_TRUNC
	}
	return n, 0, flags, addrPort(from), nil
}

// ReadMsgUDP is ReadMsgUDPAddrPort returning a *net.UDPAddr.
func (c *UDPConn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, oobn, flags, ap, err := c.ReadMsgUDPAddrPort(b, oob)
	if err != nil {
		return n, oobn, flags, nil, err
	}
	return n, oobn, flags, net.UDPAddrFromAddrPort(ap), nil
}

// WriteMsgUDP sends b as one datagram to addr, or to the connected peer
// when addr is nil, as sendmsg(2) does. An addr on a connected UDPConn
// fails with net.ErrWriteToConnected, a nil one on an unconnected UDPConn
// with "missing address", as package net's do before any syscall
// (udpsock_posix.go writeMsg). oob must be empty: no control message is
// supported, and one is refused (EOPNOTSUPP) rather than ignored, since
// IP_PKTINFO or a TTL ignored would send the datagram otherwise than
// asked.
func (c *UDPConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	if addr == nil {
		return c.writeMsg(b, oob, netip.AddrPort{}, nil)
	}
	return c.writeMsg(b, oob, addr.AddrPort(), addr)
}

// WriteMsgUDPAddrPort is WriteMsgUDP with a netip.AddrPort; the zero
// AddrPort means the connected peer.
func (c *UDPConn) WriteMsgUDPAddrPort(b, oob []byte, addr netip.AddrPort) (n, oobn int, err error) {
	var na net.Addr
	if addr.IsValid() {
		na = net.UDPAddrFromAddrPort(addr)
	}
	return c.writeMsg(b, oob, addr, na)
}

func (c *UDPConn) writeMsg(b, oob []byte, addr netip.AddrPort, na net.Addr) (int, int, error) {
	connected := c.sock.raddr != nil
	switch {
	case connected && na != nil:
		return 0, 0, c.sock.opError("write", na, net.ErrWriteToConnected)
	case !connected && na == nil:
		return 0, 0, c.sock.opError("write", nil, errMissingAddress)
	case len(oob) > 0:
		return 0, 0, c.sock.opErrorIn("write", "sendmsg", na, syscall.EOPNOTSUPP)
	}
	var n int
	var err error
	if connected {
		n, err = c.udpWrite(b, nil)
	} else {
		n, err = c.sendTo(b, addr)
	}
	return n, 0, c.sock.opErrorIn("write", "sendmsg", na, err)
}

// errMissingAddress is package net's error for a send to no address on
// an unconnected socket.
var errMissingAddress = errors.New("missing address")

// Write sends b as one datagram to the connected peer.
func (c *UDPConn) Write(b []byte) (int, error) {
	if c.sock.raddr == nil {
		// write(2) on an unconnected socket (Linux's udp_sendmsg).
		return 0, c.sock.opErrorIn("write", "write", nil, syscall.EDESTADDRREQ)
	}
	n, err := c.udpWrite(b, nil)
	if errors.Is(err, syscall.EINVAL) {
		// The route chosen at connect time is gone: look it up again.
		if err = c.reconnect(); err == nil {
			n, err = c.udpWrite(b, nil)
		}
	}
	return n, c.sock.opErrorIn("write", "write", nil, err)
}

// reconnect connects the socket again to its peer, from the same address
// and port, for a new route. gVisor keeps the route a connected socket
// chose at connect time and fails every later send with EINVAL once its
// interface is gone (removed or disabled, or the local address with it),
// even after the address comes back on another interface. Linux's
// udp_sendmsg checks the socket's cached route on every send
// (sk_dst_check) and looks it up again when it is obsolete, which a
// removed or downed device makes it, failing only if no route is found
// (ENETUNREACH). A new connect to the same remote is that lookup: gVisor
// keeps the socket's port and local address, and its registration in the
// demuxer is renewed for the same 4-tuple.
func (c *UDPConn) reconnect() error {
	ra, terr := c.sock.ep.GetRemoteAddress()
	if terr != nil {
		return errno(terr)
	}
	if terr := c.sock.ep.Connect(ra); terr != nil {
		if _, ok := terr.(*tcpip.ErrUnknownNICID); ok {
			// A link-local peer's interface is gone: no route, as
			// for a zone that names no interface at dial time.
			return syscall.ENETUNREACH
		}
		return errno(terr)
	}
	return nil
}

// udpWrite sends b. A datagram the link refused, its queue full, is lost
// like one dropped on the wire: the call succeeds, and the stack counts it
// (UDPStats.SendErrors, UDPConnStats.SendErrors). Linux's udp_send_skb
// hides ENOBUFS the same way unless IP_RECVERR asks for it (SndbufErrors).
func (c *UDPConn) udpWrite(b []byte, to *tcpip.FullAddress) (int, error) {
	n, err := c.sock.write(b, to)
	if errors.Is(err, syscall.ENOBUFS) {
		return len(b), nil
	}
	return n, err
}

// WriteTo sends b as one datagram to addr, a *net.UDPAddr. On a
// connected UDPConn it fails with net.ErrWriteToConnected before sending
// anything, as package net's does (udpsock_posix.go writeTo).
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.sock.opError("write", addr, syscall.EINVAL)
	}
	return c.WriteToUDP(b, ua)
}

// WriteToUDP is WriteTo with a *net.UDPAddr.
func (c *UDPConn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	if addr == nil {
		return 0, c.sock.opError("write", nil, syscall.EINVAL)
	}
	return c.WriteToUDPAddrPort(b, addr.AddrPort())
}

// WriteToUDPAddrPort is WriteTo with a netip.AddrPort.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	na := net.UDPAddrFromAddrPort(addr)
	if c.sock.raddr != nil {
		return 0, c.sock.opError("write", na, net.ErrWriteToConnected)
	}
	n, err := c.sendTo(b, addr)
	return n, c.sock.opErrorIn("write", "sendto", na, err)
}

// sendTo sends b as one datagram to addr from an unconnected socket; its
// errors are bare, for the caller to wrap with its system call's name.
func (c *UDPConn) sendTo(b []byte, addr netip.AddrPort) (int, error) {
	if !addr.IsValid() {
		return 0, syscall.EINVAL
	}
	if c.proto == header.IPv4ProtocolNumber && !addr.Addr().Unmap().Is4() {
		// An AF_INET socket cannot name an IPv6 peer.
		return 0, syscall.EAFNOSUPPORT
	}
	if c.proto == header.IPv6ProtocolNumber && addr.Addr().Unmap().Is4() && c.sock.ep.SocketOptions().GetV6Only() {
		// Nor an IPV6_V6ONLY one an IPv4 peer, which it would name
		// by its mapped address: Linux's udpv6_sendmsg answers
		// ENETUNREACH, where gVisor finds no route to the host.
		return 0, syscall.ENETUNREACH
	}
	// A link-local peer is reached on its zone's interface; without
	// a zone, only from a socket bound to one (udpv6_sendmsg:
	// EINVAL if neither names a device).
	var nic tcpip.NICID
	if needsZone(addr.Addr()) && (addr.Addr().Zone() != "" || !c.boundToNIC()) {
		var err error
		if nic, err = linkNIC(addr.Addr()); err != nil {
			return 0, err
		}
	}
	if nic == 0 {
		nic = c.boundAddrNIC()
	}
	to := zonedAddress(netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()), nic)
	if c.dualStack() && addr.Addr().Unmap().Is4() {
		// A dual-stack socket sends IPv4 to the mapped address.
		to = fullAddress(netip.AddrPortFrom(netip.AddrFrom16(addr.Addr().As16()), addr.Port()))
	}
	return c.udpWrite(b, &to)
}

// boundAddrNIC is the interface that holds the address an unconnected
// socket is bound to now, or 0. gVisor's Bind records the interface that
// held the address then, and routes every later datagram through it
// (RegisterNICID), as if SO_BINDTODEVICE had been set: once that
// interface is removed, sends fail with ENETUNREACH even after the
// address comes back on another. Linux's bind ties a socket to the
// address alone, and each udp_sendmsg looks the route up afresh; so the
// send names the interface holding the address now.
func (c *UDPConn) boundAddrNIC() tcpip.NICID {
	ap, ok := c.sock.laddr.(*net.UDPAddr)
	if !ok || ap.Zone != "" {
		return 0
	}
	a, ok := netip.AddrFromSlice(ap.IP)
	if !ok || a.IsUnspecified() || a.IsMulticast() {
		return 0
	}
	a = a.Unmap()
	return c.s.Netstack().CheckLocalAddress(0, netProtoOf(a), tcpip.AddrFromSlice(a.AsSlice()))
}

// boundToNIC reports a socket bound to a link-local address, which
// its zone's interface holds.
func (c *UDPConn) boundToNIC() bool {
	ap, ok := c.sock.laddr.(*net.UDPAddr)
	return ok && ap.Zone != ""
}

func (c *UDPConn) dualStack() bool {
	ap, ok := c.sock.laddr.(*net.UDPAddr)
	return ok && ap.IP.To4() == nil && !c.sock.ep.SocketOptions().GetV6Only()
}

// Close closes the socket; blocked calls return net.ErrClosed.
func (c *UDPConn) Close() error { return c.sock.close() }

// SetDeadline sets both deadlines, as times on the stack's clock (see
// the package documentation); the zero time removes them.
func (c *UDPConn) SetDeadline(t time.Time) error { return c.sock.setDeadline(t, true, true) }

// SetReadDeadline sets the deadline for Read calls, pending ones included.
func (c *UDPConn) SetReadDeadline(t time.Time) error { return c.sock.setDeadline(t, true, false) }

// SetWriteDeadline sets the deadline for Write calls.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { return c.sock.setDeadline(t, false, true) }

// SetReadBuffer sets the receive buffer (SO_RCVBUF), 212 KiB by default:
// datagrams that arrive while it is full are dropped and counted
// (stack.UDPStats.ReceiveBufferFull). The size is kept between 4 KiB and
// the stack's maximum, 4 MiB, as Linux keeps it between SOCK_MIN_RCVBUF
// and rmem_max.
func (c *UDPConn) SetReadBuffer(bytes int) error { return c.sock.setBuffer(true, bytes) }

// SetWriteBuffer sets the send buffer (SO_SNDBUF), within the same
// limits.
func (c *UDPConn) SetWriteBuffer(bytes int) error { return c.sock.setBuffer(false, bytes) }

// SetBroadcast allows or forbids sending to a broadcast address
// (SO_BROADCAST). It is allowed by default, as on a socket of Go's net.
func (c *UDPConn) SetBroadcast(on bool) error {
	if c.sock.isClosed() {
		return c.sock.opError("set", nil, net.ErrClosed)
	}
	c.sock.ep.SocketOptions().SetBroadcast(on)
	return nil
}

// JoinGroup joins multicast group on interface nic (IP_ADD_MEMBERSHIP,
// IPV6_JOIN_GROUP): datagrams to the group and the socket's port are
// delivered to it.
func (c *UDPConn) JoinGroup(nic tcpip.NICID, group netip.Addr) error {
	if !group.IsMulticast() {
		return c.sock.opError("set", nil, syscall.EINVAL)
	}
	err := c.sock.ep.SetSockOpt(&tcpip.AddMembershipOption{NIC: nic, MulticastAddr: tcpip.AddrFromSlice(group.AsSlice())})
	return c.sock.opError("set", nil, wrapErrno("setsockopt", errno(err)))
}

// LeaveGroup leaves a group joined with JoinGroup.
func (c *UDPConn) LeaveGroup(nic tcpip.NICID, group netip.Addr) error {
	if !group.IsMulticast() {
		return c.sock.opError("set", nil, syscall.EINVAL)
	}
	err := c.sock.ep.SetSockOpt(&tcpip.RemoveMembershipOption{NIC: nic, MulticastAddr: tcpip.AddrFromSlice(group.AsSlice())})
	return c.sock.opError("set", nil, wrapErrno("setsockopt", errno(err)))
}

// SetMulticastInterface picks the interface multicast datagrams leave by
// (IP_MULTICAST_IF).
func (c *UDPConn) SetMulticastInterface(nic tcpip.NICID) error {
	err := c.sock.ep.SetSockOpt(&tcpip.MulticastInterfaceOption{NIC: nic})
	return c.sock.opError("set", nil, wrapErrno("setsockopt", errno(err)))
}

// SetMulticastLoopback sets whether multicast datagrams this socket sends
// come back to the stack's own members (IP_MULTICAST_LOOP; on by default).
func (c *UDPConn) SetMulticastLoopback(on bool) error {
	c.sock.ep.SocketOptions().SetMulticastLoop(on)
	return nil
}

// UDPConnStats count one socket's datagrams, as Linux's Udp: counters do
// for the whole host (stack.UDPStats has the stack's).
type UDPConnStats struct {
	// Received counts datagrams that reached the socket; Delivered those
	// it queued for reading; ReceiveBufferFull those it refused because
	// its receive buffer (SetReadBuffer) was full or it no longer reads
	// (RcvbufErrors).
	Received, Delivered, ReceiveBufferFull uint64
	// Malformed counts datagrams for the socket with a bad length or
	// checksum.
	Malformed uint64
	// Sent counts datagrams handed to IP; SendErrors those IP could not
	// route or send.
	Sent, SendErrors uint64
}

// Stats returns the socket's counters.
func (c *UDPConn) Stats() UDPConnStats {
	st, ok := c.sock.ep.Stats().(*tcpip.TransportEndpointStats)
	if !ok {
		return UDPConnStats{}
	}
	r := &st.ReceiveErrors
	s := UDPConnStats{
		Received:          st.PacketsReceived.Value(),
		ReceiveBufferFull: r.ReceiveBufferOverflow.Value() + r.ClosedReceiver.Value(),
		Malformed:         r.MalformedPacketsReceived.Value() + r.ChecksumErrors.Value(),
		Sent:              st.PacketsSent.Value(),
		SendErrors:        st.SendErrors.SendToNetworkFailed.Value() + st.SendErrors.NoRoute.Value(),
	}
	s.Delivered = s.Received - min(s.Received, s.ReceiveBufferFull)
	return s
}
