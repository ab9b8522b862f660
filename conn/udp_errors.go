package conn

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// errno translates an error of gVisor's netstack (which carries UDP and
// the ICMP echo sockets) into the errno Linux returns for the same
// condition, so that callers test it with errors.Is as they would on a
// kernel socket.
func errno(err tcpip.Error) error {
	switch err.(type) {
	case nil:
		return nil
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrMessageTooLong:
		return syscall.EMSGSIZE
	case *tcpip.ErrPortInUse, *tcpip.ErrDuplicateAddress:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrNetworkUnreachable:
		return syscall.ENETUNREACH
	case *tcpip.ErrHostDown:
		// Of a UDP socket, only from an ICMP destination host unknown
		// (stack/udp_errors.go), EHOSTDOWN as icmp_err_convert says.
		return syscall.EHOSTDOWN
	case *tcpip.ErrNoNet:
		// Source host isolated, likewise.
		return syscall.ENONET
	case *tcpip.ErrMalformedHeader:
		// Of a UDP socket, only from an ICMP parameter problem
		// (stack/udp_errors.go), EPROTO as __udp4_lib_err and
		// icmpv6_err_convert say.
		return syscall.EPROTO
	case *tcpip.ErrClosedForSend:
		return syscall.EPIPE
	case *tcpip.ErrClosedForReceive, *tcpip.ErrInvalidEndpointState, *tcpip.ErrInvalidOptionValue, *tcpip.ErrBadAddress,
		*tcpip.ErrAlreadyBound:
		return syscall.EINVAL
	case *tcpip.ErrBroadcastDisabled, *tcpip.ErrNotPermitted:
		// ErrNotPermitted of a UDP socket also from an ICMPv6
		// administratively prohibited, policy failed or reject
		// route (stack/udp_errors.go), as icmpv6_err_convert says.
		return syscall.EACCES
	case *tcpip.ErrDestinationRequired:
		return syscall.EDESTADDRREQ
	case *tcpip.ErrNotConnected:
		return syscall.ENOTCONN
	case *tcpip.ErrAlreadyConnected:
		return syscall.EISCONN
	case *tcpip.ErrAddressFamilyNotSupported:
		return syscall.EAFNOSUPPORT
	case *tcpip.ErrUnknownProtocol:
		return syscall.EPROTONOSUPPORT
	case *tcpip.ErrNoBufferSpace:
		return syscall.ENOBUFS
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrAborted, *tcpip.ErrConnectionAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrNotSupported, *tcpip.ErrQueueSizeNotSupported:
		return syscall.EOPNOTSUPP
	case *tcpip.ErrUnknownProtocolOption:
		// An unknown socket option, as sk_setsockopt answers one; and
		// an ICMP protocol unreachable (stack/udp_errors.go), as
		// icmp_err_convert does.
		return syscall.ENOPROTOOPT
	case *tcpip.ErrWouldBlock:
		return syscall.EAGAIN
	case *tcpip.ErrUnknownNICID:
		return syscall.ENODEV
	}
	return errors.New(err.String())
}

// wrapErrno puts an errno inside an os.SyscallError named after the
// system call Linux would have made, as package net does.
func wrapErrno(call string, err error) error {
	var e syscall.Errno
	if errors.As(err, &e) {
		if _, ok := err.(*os.SyscallError); !ok {
			return os.NewSyscallError(call, e)
		}
	}
	return err
}

// fullAddress converts ap to gVisor's form. An IPv4-mapped IPv6 address
// stays mapped: gVisor unmaps it for a dual-stack socket and refuses it
// on an IPV6_V6ONLY one, as Linux does.
func fullAddress(ap netip.AddrPort) tcpip.FullAddress {
	a := ap.Addr()
	var addr tcpip.Address
	if a.IsValid() && !a.IsUnspecified() {
		addr = tcpip.AddrFromSlice(a.AsSlice())
	}
	return tcpip.FullAddress{Addr: addr, Port: ap.Port()}
}

// zonedAddress is fullAddress on interface nic (0: any).
func zonedAddress(ap netip.AddrPort, nic tcpip.NICID) tcpip.FullAddress {
	fa := fullAddress(ap)
	fa.NIC = nic
	return fa
}

// addrPort converts gVisor's address to netip. A link-local address
// comes with its zone, the interface, as package net's does
// (sin6_scope_id); any other without.
func addrPort(fa tcpip.FullAddress) netip.AddrPort {
	a, _ := netip.AddrFromSlice(fa.Addr.AsSlice())
	if needsZone(a) && fa.NIC != 0 {
		a = a.WithZone(strconv.Itoa(int(fa.NIC)))
	}
	return netip.AddrPortFrom(a, fa.Port)
}

// netProtoOf is the network protocol of an endpoint for a.
func netProtoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() || a.Is4In6() {
		return header.IPv4ProtocolNumber
	}
	return header.IPv6ProtocolNumber
}

// udpAddr converts a *net.UDPAddr (nil: the zero AddrPort).
func udpAddr(a *net.UDPAddr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
