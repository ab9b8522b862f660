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
)

// icmpv6Error is an ICMPv6 error of typ and code from the router
// 2001:db8::fe to dst, with quoted as its body.
func icmpv6Error(typ header.ICMPv6Type, code header.ICMPv6Code, dst netip.Addr, quoted []byte) []byte {
	msg := make([]byte, header.ICMPv6MinimumSize+len(quoted))
	ic := header.ICMPv6(msg)
	ic.SetType(typ)
	ic.SetCode(code)
	copy(msg[header.ICMPv6MinimumSize:], quoted)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic[:header.ICMPv6MinimumSize],
		Src: addr6(routerAddr6), Dst: addr6(dst), PayloadCsum: checksum.Checksum(quoted, 0), PayloadLen: len(quoted)}))
	return msg
}

// withFragmentHeader is the IPv6 packet b with a Fragment header (RFC
// 8200 4.5) of offset off (in 8-byte units) put in after its fixed
// header, as a quote of one fragment of it.
func withFragmentHeader(b []byte, off uint16) []byte {
	out := make([]byte, 0, len(b)+header.IPv6FragmentHeaderSize)
	out = append(out, b[:header.IPv6MinimumSize]...)
	frag := make([]byte, header.IPv6FragmentHeaderSize)
	frag[0] = b[6] // the next header after it: TCP
	binary.BigEndian.PutUint16(frag[2:], off<<3)
	out = append(append(out, frag...), b[header.IPv6MinimumSize:]...)
	out[6] = uint8(header.IPv6FragmentHeader)
	return out
}

// TestICMPv6Hostile: ICMPv6 errors quoting our SYN that gVisor's IPv6
// discards before TCP sees them are counted under the same names as for
// IPv4 (TestICMPHostile), once, and end nothing: a quote cut inside the
// IPv6 header or before the 8 bytes of TCP header (RFC 4443 2.4 (c) has
// the sender quote as much as fits), a quote of a later fragment, whose 8
// bytes are no TCP header, a quote of a segment from an address not ours,
// a quote of a 4-tuple no socket holds. Each is tried with a code gVisor
// hands TCP (port unreachable) and one the watcher takes (address
// unreachable). A message addressed to another host is no message to us
// (gVisor hands raw endpoints the copy before it routes the packet) and
// neither acts nor counts; a quote of the first fragment acts as any, as
// gVisor's handleControl skips the Fragment header.
func TestICMPv6Hostile(t *testing.T) {
	foreign6 := netip.MustParseAddr("2001:db8::99")
	for _, code := range []header.ICMPv6Code{header.ICMPv6PortUnreachable, header.ICMPv6AddressUnreachable} {
		for _, tc := range []struct {
			name  string
			dst   netip.Addr // of the ICMPv6 message
			quote func(syn []byte) []byte
			drop  event.DropReason
			acts  bool
		}{
			{"whole", stackAddr6, func(b []byte) []byte { return b }, event.DropNone, true},
			{"to another host", foreign6, func(b []byte) []byte { return b }, event.DropNone, false},
			{"cut inside the IPv6 header", stackAddr6, func(b []byte) []byte { return b[:header.IPv6MinimumSize-4] }, event.DropICMPShortQuote, false},
			{"4 bytes of TCP", stackAddr6, func(b []byte) []byte { return b[:header.IPv6MinimumSize+4] }, event.DropICMPShortQuote, false},
			{"first fragment", stackAddr6, func(b []byte) []byte { return withFragmentHeader(b, 0) }, event.DropNone, true},
			{"fragment header cut", stackAddr6, func(b []byte) []byte { return withFragmentHeader(b, 0)[:header.IPv6MinimumSize+4] }, event.DropNone, false},
			{"later fragment", stackAddr6, func(b []byte) []byte { return withFragmentHeader(b, 185) }, event.DropICMPFragmentQuote, false},
			{"from a foreign address", stackAddr6, func(b []byte) []byte {
				header.IPv6(b).SetSourceAddress(addr6(foreign6))
				return b
			}, event.DropICMPForeignQuote, false},
			{"no such connection", stackAddr6, func(b []byte) []byte {
				binary.BigEndian.PutUint16(b[header.IPv6MinimumSize:], 1)
				return b
			}, event.DropICMPNoConnection, false},
		} {
			t.Run("code "+strconv.Itoa(int(code))+", "+tc.name, func(t *testing.T) {
				p, ep, s := dial6(t)
				msg := icmpv6Error(header.ICMPv6DstUnreachable, code, tc.dst, tc.quote(append([]byte(nil), s.packet...)))
				p.injectRaw(routerAddr6, tc.dst, uint8(header.ICMPv6ProtocolNumber), nil, msg)
				for _, r := range icmpDropReasons {
					want := uint64(0)
					if r == tc.drop {
						want = 1
					}
					wantCount(t, "Dropped("+r.String()+")", p.TCP.Stats().Dropped(r), want)
				}
				if !tc.acts {
					p.WantState(ep, event.SynSent)
					return
				}
				p.WantState(ep, event.Closed)
				want := map[header.ICMPv6Code]error{header.ICMPv6PortUnreachable: syscall.ECONNREFUSED, header.ICMPv6AddressUnreachable: syscall.EHOSTUNREACH}[code]
				if _, err := ep.Established(); !errors.Is(err, want) {
					t.Errorf("Established() = %v, want %v", err, want)
				}
			})
		}
	}
}

// TestICMPv6OneOwner: every ICMPv6 error has one owner, gVisor's
// HandleError path for no route, port unreachable and packet too big,
// the watcher for the other Destination Unreachable codes, so none is
// acted on or counted twice: one out-of-window quote of each counts one
// drop.
func TestICMPv6OneOwner(t *testing.T) {
	for _, tc := range []struct {
		typ  header.ICMPv6Type
		code header.ICMPv6Code
	}{
		{header.ICMPv6DstUnreachable, header.ICMPv6NetworkUnreachable},
		{header.ICMPv6DstUnreachable, header.ICMPv6Prohibited},
		{header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable},
		{header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable},
		{header.ICMPv6DstUnreachable, header.ICMPv6RejectRoute},
		{header.ICMPv6PacketTooBig, 0},
	} {
		p := newPeer6(t, tcp.Options{})
		ep := p.established()
		ep.Write([]byte("abc"))
		s, ok := p.next()
		if !ok || s.flags != "P." {
			t.Fatalf("sent %v, %v; want the data", s, ok)
		}
		iss, _ := p.StackISS()
		q := append([]byte(nil), s.packet...)
		binary.BigEndian.PutUint32(q[header.IPv6MinimumSize+4:], iss+9)
		msg := icmpv6Error(tc.typ, tc.code, stackAddr6, q)
		if tc.typ == header.ICMPv6PacketTooBig {
			header.ICMPv6(msg).SetMTU(1280)
			header.ICMPv6(msg).SetChecksum(0)
			header.ICMPv6(msg).SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: msg[:header.ICMPv6MinimumSize],
				Src: addr6(routerAddr6), Dst: addr6(stackAddr6), PayloadCsum: checksum.Checksum(q, 0), PayloadLen: len(q)}))
		}
		p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, msg)
		wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), 1)
		p.WantState(ep, event.Established)
	}
}
