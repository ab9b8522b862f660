package tcp_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestSynCookieMSS6: a SYN cookie carries the peer's MSS as an index into
// a table of four, and over IPv6 the table is Linux's for IPv6
// (net/ipv6/syncookies.c msstab: 1280, 1480, 1500 and 9000 less 60), not
// IPv4's {536, 1300, 1440, 1460}: a peer behind the minimum IPv6 MTU,
// announcing 1220, is sent 1220-byte segments, not 536-byte ones, and a
// SYN without the option is taken as 1220 (RFC 9293 3.7.1: the default
// send MSS is 1220 for IPv6), as takeSynOptions takes it without cookies.
func TestSynCookieMSS6(t *testing.T) {
	for _, tc := range []struct{ mss, want uint16 }{
		{1220, 1220}, {1400, 1220}, {1420, 1420}, {1440, 1440}, {0, 1220},
	} {
		t.Run(strconv.Itoa(int(tc.mss)), func(t *testing.T) {
			p := newPeer6(t, tcp.Options{SynQueueLimit: 1, NoTimestamps: true})
			l, err := p.TCP.Listen(netip.AddrPortFrom(stackAddr6, tcptest.ListenPort), 16)
			if err != nil {
				t.Fatal(err)
			}
			p.PeerPort = 50000 // a half-open entry fills the SYN queue
			p.inject(seg{Flags: "S", Seq: 0, MSS: 1440})
			if o, ok := p.next(); !ok || o.flags != "S." {
				t.Fatalf("SYN answered with %v, %v; want SYN-ACK", o, ok)
			}
			p.PeerPort = 40001
			p.inject(seg{Flags: "S", Seq: 0, MSS: tc.mss})
			if o, ok := p.next(); !ok || o.flags != "S." {
				t.Fatalf("SYN answered with %v, %v; want the cookie SYN-ACK", o, ok)
			}
			if n := p.TCP.Stats().Listen.CookiesSent.Load(); n != 1 {
				t.Fatalf("CookiesSent %d, want 1", n)
			}
			p.inject(seg{Flags: ".", Seq: 1, Ack: 1})
			ep, err := l.Accept()
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			if got := ep.Info().SndMSS; got != int(tc.want) {
				t.Errorf("send MSS %d after a cookie for a peer's %d, want %d", got, tc.mss, tc.want)
			}
		})
	}
}

// destinationUnreachable is an ICMPv6 Destination Unreachable (RFC 4443
// 3.1) with code from the router 2001:db8::fe, quoting the packet the
// stack sent.
func destinationUnreachable(quoted []byte, code header.ICMPv6Code) []byte {
	q := quoted[:min(len(quoted), header.IPv6MinimumMTU-header.IPv6MinimumSize-header.ICMPv6DstUnreachableMinimumSize)]
	msg := make([]byte, header.ICMPv6DstUnreachableMinimumSize+len(q))
	ic := header.ICMPv6(msg)
	ic.SetType(header.ICMPv6DstUnreachable)
	ic.SetCode(code)
	copy(msg[header.ICMPv6DstUnreachableMinimumSize:], q)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic[:header.ICMPv6DstUnreachableMinimumSize],
		Src: addr6(routerAddr6), Dst: addr6(stackAddr6), PayloadCsum: checksum.Checksum(q, 0), PayloadLen: len(q)}))
	return msg
}

// TestDestinationUnreachable6: an ICMPv6 Destination Unreachable quoting
// our SYN ends the open with the errno Linux's icmpv6_err_convert gives
// its code, as tcp_v6_err ends a connection in SYN-SENT on any of them:
// no route (0) ENETUNREACH, administratively prohibited (1, a firewall's
// reject) EACCES, beyond the scope of the source address (2) and address
// unreachable (3, a router's failed neighbour discovery for the dialed
// host, RFC 4443 3.1) EHOSTUNREACH, port unreachable (4) ECONNREFUSED,
// failed ingress/egress policy (5) and reject route (6) EACCES. gVisor's
// IPv6 passes only codes 0 and 4 on to the transport, so a dial to a host
// that is not there waited out its SYN retransmissions (two minutes)
// for ETIMEDOUT where Linux says "no route to host" at once. A message
// with a bad checksum, or quoting a sequence number we did not send
// (RFC 5927), changes nothing.
func TestDestinationUnreachable6(t *testing.T) {
	for _, tc := range []struct {
		name string
		code header.ICMPv6Code
		seq  uint32 // relative to ISS
		bad  bool   // checksum
		want error  // nil: still SYN-SENT
	}{
		{"no route", header.ICMPv6NetworkUnreachable, 0, false, syscall.ENETUNREACH},
		{"administratively prohibited", header.ICMPv6Prohibited, 0, false, syscall.EACCES},
		{"beyond scope", header.ICMPv6BeyondScope, 0, false, syscall.EHOSTUNREACH},
		{"address unreachable", header.ICMPv6AddressUnreachable, 0, false, syscall.EHOSTUNREACH},
		{"port unreachable", header.ICMPv6PortUnreachable, 0, false, syscall.ECONNREFUSED},
		{"policy", header.ICMPv6Policy, 0, false, syscall.EACCES},
		{"reject route", header.ICMPv6RejectRoute, 0, false, syscall.EACCES},
		{"address unreachable, bad checksum", header.ICMPv6AddressUnreachable, 0, true, nil},
		{"address unreachable, not our SYN", header.ICMPv6AddressUnreachable, 1000, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer6(t, tcp.Options{})
			ep, err := p.TCP.Connect(netip.AddrPort{}, netip.AddrPortFrom(peerAddr6, 80))
			if err != nil {
				t.Fatal(err)
			}
			p.PeerPort, p.StackPort = 80, ep.ID().Local.Port()
			s, ok := p.next()
			if !ok || s.flags != "S" {
				t.Fatalf("sent %v, %v; want a SYN", s, ok)
			}
			quoted := append([]byte(nil), s.packet...)
			iss, _ := p.StackISS()
			binary.BigEndian.PutUint32(quoted[header.IPv6MinimumSize+4:], iss+tc.seq)
			msg := destinationUnreachable(quoted, tc.code)
			if tc.bad {
				msg[2] ^= 0xff
			}
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, msg)
			if tc.want == nil {
				p.WantState(ep, event.SynSent)
				return
			}
			p.WantState(ep, event.Closed)
			if _, err := ep.Established(); !errors.Is(err, tc.want) {
				t.Errorf("Established() = %v, want %v", err, tc.want)
			}
		})
	}
}
