package conn_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"testing/synctest"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// udpICMPError has server send client an ICMP or ICMPv6 error of typ
// and code (rest: the 4 bytes after the checksum, an MTU for some),
// quoting a datagram c sent to the server's port rport, as a router or
// the peer's host would.
func udpICMPError(t *testing.T, client, server *stack.Stack, c *conn.UDPConn, typ, code uint8, rest uint32, rport uint16) {
	t.Helper()
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	src := local.Addr().Unmap()
	v6 := src.Is6()
	var dst netip.Addr
	if v6 {
		dst = netip.MustParseAddr("2001:db8::1")
	} else {
		dst = peerAddr
	}
	udp := make([]byte, header.UDPMinimumSize+7)
	binary.BigEndian.PutUint16(udp[0:], local.Port())
	binary.BigEndian.PutUint16(udp[2:], rport)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	var inner []byte
	if v6 {
		inner = make([]byte, header.IPv6MinimumSize+len(udp))
		header.IPv6(inner).Encode(&header.IPv6Fields{PayloadLength: uint16(len(udp)), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64,
			SrcAddr: tcpip.AddrFrom16(src.As16()), DstAddr: tcpip.AddrFrom16(dst.As16())})
		copy(inner[header.IPv6MinimumSize:], udp)
	} else {
		inner = make([]byte, header.IPv4MinimumSize+len(udp))
		ip := header.IPv4(inner)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(inner)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
			SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4())})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(inner[header.IPv4MinimumSize:], udp)
	}
	msg := make([]byte, 8+len(inner))
	msg[0], msg[1] = typ, code
	binary.BigEndian.PutUint32(msg[4:], rest)
	copy(msg[8:], inner)
	var pkt []byte
	var proto tcpip.NetworkProtocolNumber
	if v6 {
		proto = header.IPv6ProtocolNumber
		pkt = make([]byte, header.IPv6MinimumSize+len(msg))
		out := header.IPv6(pkt)
		out.Encode(&header.IPv6Fields{PayloadLength: uint16(len(msg)), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64,
			SrcAddr: tcpip.AddrFrom16(dst.As16()), DstAddr: tcpip.AddrFrom16(src.As16())})
		ic := header.ICMPv6(msg)
		ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: out.SourceAddress(), Dst: out.DestinationAddress()}))
		copy(pkt[header.IPv6MinimumSize:], msg)
	} else {
		proto = header.IPv4ProtocolNumber
		header.ICMPv4(msg).SetChecksum(^checksum.Checksum(msg, 0))
		pkt = make([]byte, header.IPv4MinimumSize+len(msg))
		out := header.IPv4(pkt)
		out.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
			SrcAddr: tcpip.AddrFrom4(dst.As4()), DstAddr: tcpip.AddrFrom4(src.As4())})
		out.SetChecksum(^out.CalculateChecksum())
		copy(pkt[header.IPv4MinimumSize:], msg)
	}
	mac := client.Netstack().NICInfo()[1].LinkAddress
	if err := server.Netstack().WritePacketToRemote(1, mac, proto, buffer.MakeWithData(pkt)); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
}

// TestUDPConnectedICMPError: what a connected UDP socket makes of an ICMP
// error quoting its datagram, as Linux's __udp4_lib_err and
// __udp6_lib_err do without IP_RECVERR: a hard error (icmp_err_convert's
// fatal codes; icmpv6_err_convert's for IPv6) sets sk_err, which the
// next read or write returns and clears; a soft one (net and host
// unreachable, IPv4 codes 0, 1, 5, 11 and 12, IPv6 no route and address
// unreachable, time exceeded) is not reported at all, as RFC 1122
// 4.2.3.9 has TCP take those as transient. Fragmentation needed and
// packet too big are EMSGSIZE, a hard error under the default
// IP_PMTUDISC_WANT. An unconnected socket hears of none of them.
func TestUDPConnectedICMPError(t *testing.T) {
	const (
		unreach4 = uint8(header.ICMPv4DstUnreachable)
		unreach6 = uint8(header.ICMPv6DstUnreachable)
		timeExc4 = uint8(header.ICMPv4TimeExceeded)
		tooBig6  = uint8(header.ICMPv6PacketTooBig)
		param4   = uint8(header.ICMPv4ParamProblem)
		timeExc6 = uint8(header.ICMPv6TimeExceeded)
		param6   = uint8(header.ICMPv6ParamProblem)
		v4, v6   = "192.0.2.1:9", "[2001:db8::1]:9"
		soft     = syscall.Errno(0)
		mtu1280  = 1280
		mtu576   = 576
	)
	for _, tc := range []struct {
		name      string
		raddr     string
		typ, code uint8
		rest      uint32
		want      syscall.Errno
	}{
		{"v4 net unreachable", v4, unreach4, 0, 0, soft},
		{"v4 host unreachable", v4, unreach4, 1, 0, soft},
		{"v4 protocol unreachable", v4, unreach4, 2, 0, syscall.ENOPROTOOPT},
		{"v4 port unreachable", v4, unreach4, 3, 0, syscall.ECONNREFUSED},
		{"v4 fragmentation needed", v4, unreach4, 4, mtu576, syscall.EMSGSIZE},
		{"v4 source route failed", v4, unreach4, 5, 0, soft},
		{"v4 net unknown", v4, unreach4, 6, 0, syscall.ENETUNREACH},
		{"v4 host unknown", v4, unreach4, 7, 0, syscall.EHOSTDOWN},
		{"v4 host isolated", v4, unreach4, 8, 0, syscall.ENONET},
		{"v4 net prohibited", v4, unreach4, 9, 0, syscall.ENETUNREACH},
		{"v4 host prohibited", v4, unreach4, 10, 0, syscall.EHOSTUNREACH},
		{"v4 net unreachable for TOS", v4, unreach4, 11, 0, soft},
		{"v4 host unreachable for TOS", v4, unreach4, 12, 0, soft},
		{"v4 admin prohibited", v4, unreach4, 13, 0, syscall.EHOSTUNREACH},
		{"v4 precedence violation", v4, unreach4, 14, 0, syscall.EHOSTUNREACH},
		{"v4 precedence cutoff", v4, unreach4, 15, 0, syscall.EHOSTUNREACH},
		{"v4 time exceeded", v4, timeExc4, 0, 0, soft},
		{"v4 parameter problem", v4, param4, 0, 0, syscall.EPROTO},
		{"v4 parameter problem, bad length", v4, param4, 2, 0, syscall.EPROTO},
		{"v6 no route", v6, unreach6, 0, 0, soft},
		{"v6 admin prohibited", v6, unreach6, 1, 0, syscall.EACCES},
		{"v6 beyond scope", v6, unreach6, 2, 0, soft},
		{"v6 address unreachable", v6, unreach6, 3, 0, soft},
		{"v6 port unreachable", v6, unreach6, 4, 0, syscall.ECONNREFUSED},
		{"v6 policy failed", v6, unreach6, 5, 0, syscall.EACCES},
		{"v6 reject route", v6, unreach6, 6, 0, syscall.EACCES},
		{"v6 time exceeded", v6, timeExc6, 0, 0, soft},
		{"v6 parameter problem", v6, param6, 0, 0, syscall.EPROTO},
		{"v6 parameter problem, next header", v6, param6, 1, 40, syscall.EPROTO},
		{"v6 packet too big", v6, tooBig6, 0, mtu1280, syscall.EMSGSIZE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
				// The server holds the port: the datagram draws no
				// port unreachable of its own.
				listenUDP(t, server, "udp", &net.UDPAddr{Port: 9})
				c := dialUDP(t, client, "udp", nil, tc.raddr)
				if _, err := c.Write([]byte("anyone?")); err != nil { // resolves the neighbours both ways
					t.Fatal(err)
				}
				synctest.Wait()
				read := start(clock, func() error {
					_, err := c.Read(make([]byte, 10))
					return err
				})
				udpICMPError(t, client, server, c, tc.typ, tc.code, tc.rest, 9)
				if tc.want == soft {
					notYet(t, read, "Read after a soft error")
					if _, err := c.Write([]byte("x")); err != nil {
						t.Errorf("Write after a soft error: %v", err)
					}
					return
				}
				r := now(t, read, "Read after the error")
				wantNetError(t, r.err, "read", "udp", tc.want)
				// Once: reported and cleared, as sock_error clears sk_err.
				if _, err := c.Write([]byte("x")); err != nil {
					t.Errorf("Write after the error was read: %v", err)
				}
				// And on a write too, when it comes first.
				synctest.Wait()
				udpICMPError(t, client, server, c, tc.typ, tc.code, tc.rest, 9)
				_, err := c.Write([]byte("x"))
				wantNetError(t, err, "write", "udp", tc.want)
				c.Close()
			})
		})
	}
}

// TestUDPUnconnectedICMPError: an unconnected socket hears of no ICMP
// error, hard or soft, as Linux's __udp4_lib_err and __udp6_lib_err
// report them only to a connected socket without IP_RECVERR: neither
// those gVisor's IP hands UDP nor those the stack's watcher takes
// (parameter problem, IPv6 administratively prohibited and reject route).
func TestUDPUnconnectedICMPError(t *testing.T) {
	for _, tc := range []struct {
		laddr, to string
		errs      [][2]uint8 // type, code
	}{
		{"192.0.2.2:0", "192.0.2.1:9", [][2]uint8{{3, 2}, {3, 4}, {3, 10}, {3, 13}, {uint8(header.ICMPv4ParamProblem), 0}}},
		{"[2001:db8::2]:0", "[2001:db8::1]:9", [][2]uint8{{1, 1}, {1, 6}, {2, 0}, {uint8(header.ICMPv6ParamProblem), 0}}},
	} {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			listenUDP(t, server, "udp", &net.UDPAddr{Port: 9})
			u := listenUDP(t, client, "udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.laddr)))
			to := netip.MustParseAddrPort(tc.to)
			if _, err := u.WriteToUDPAddrPort([]byte("anyone?"), to); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			for _, e := range tc.errs {
				udpICMPError(t, client, server, u, e[0], e[1], 1280, 9)
				if _, err := u.WriteToUDPAddrPort([]byte("x"), to); err != nil {
					t.Errorf("WriteTo after type %d code %d: %v", e[0], e[1], err)
				}
			}
		})
	}
}
