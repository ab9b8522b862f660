package tcp_test

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// quotedIPv4 is the stack's IPv4 header with opts (a multiple of 4 bytes)
// and fragment offset off (in 8-byte units), then tcpLen bytes of q's TCP
// header: what an ICMP error quotes of a segment we sent.
func quotedIPv4(q icmpQuote, opts []byte, off uint16, tcpLen int) []byte {
	hl := header.IPv4MinimumSize + len(opts)
	b := make([]byte, hl+max(tcpLen, 8))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(hl + header.TCPMinimumSize), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		FragmentOffset: off * 8, SrcAddr: tcpip.AddrFrom4(tcptest.StackAddr.As4()), DstAddr: tcpip.AddrFrom4(tcptest.PeerAddr.As4())})
	b[0] = 0x40 | byte(hl/4)
	copy(b[header.IPv4MinimumSize:], opts)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	th := b[hl:]
	binary.BigEndian.PutUint16(th[0:], q.src)
	binary.BigEndian.PutUint16(th[2:], q.dst)
	binary.BigEndian.PutUint32(th[4:], q.seq)
	return b[:hl+tcpLen]
}

// TestICMPHostile: ICMP messages a connection may be sent, forged or
// odd, none of which may move it. With 3 bytes in flight the connection
// gives up at its first retransmission timeout (MaxRetries 1), and the
// error it reports tells whether an ICMP error was taken as the soft
// error RFC 1122 4.2.3.9 asks for (EHOSTUNREACH, EPROTO) or not
// (ETIMEDOUT):
//   - a quoted IPv4 header with options is skipped by its IHL (gVisor's
//     handleControl), and the error acts as any;
//   - a quote of fewer than the 8 bytes of TCP header RFC 792 requires,
//     or of a fragment other than the first (its 8 bytes are not a TCP
//     header), is dropped before it reaches the connection, as Linux's
//     icmp_unreach does with a quote too short for the header;
//   - source quench (RFC 6633: a host MUST ignore it, as Linux's
//     tcp_v4_err does) and redirect (RFC 1122 3.2.2.2: a route matter, not
//     TCP's; gVisor counts it and changes no route) are ignored;
//   - an error quoting ports no socket holds, or a segment from an
//     address not ours, reaches no one;
//   - time exceeded and parameter problem, which gVisor counts and passes
//     to no transport, act as in Linux's tcp_v4_err (EHOSTUNREACH and
//     EPROTO): the engine's ICMPv4 watcher takes them (icmp4.go).
//
// Every error quoting TCP that is dropped is counted under its own name,
// once: gVisor discards the short, fragment, foreign and unclaimed
// quotes of a destination unreachable before TCP sees them, and the
// watcher names them (they went uncounted before it), as it does for its
// own types.
func TestICMPHostile(t *testing.T) {
	nop4 := []byte{1, 1, 1, 0} // three NOPs and End of Option List
	unreachable := func(b []byte) []byte {
		return icmpv4Packet(header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, b)
	}
	for _, tc := range []struct {
		name  string
		icmp  func(q icmpQuote) []byte
		want  syscall.Errno
		drop  event.DropReason // counted once, or DropNone
		stats func(*tcptest.Peer) uint64
	}{
		{"quote with IP options", func(q icmpQuote) []byte {
			return unreachable(quotedIPv4(q, nop4, 0, 8))
		}, syscall.EHOSTUNREACH, event.DropNone, nil},
		{"quote of 4 bytes of TCP", func(q icmpQuote) []byte {
			return unreachable(quotedIPv4(q, nil, 0, 4))
		}, syscall.ETIMEDOUT, event.DropICMPShortQuote, nil},
		{"quote of IP header only", func(q icmpQuote) []byte {
			return unreachable(quotedIPv4(q, nil, 0, 0))
		}, syscall.ETIMEDOUT, event.DropICMPShortQuote, nil},
		{"quote cut inside the IP options", func(q icmpQuote) []byte {
			return unreachable(quotedIPv4(q, nop4, 0, 8)[:header.IPv4MinimumSize+2])
		}, syscall.ETIMEDOUT, event.DropICMPShortQuote, nil},
		{"quote cut inside the IP header", func(q icmpQuote) []byte {
			return unreachable(quotedIPv4(q, nil, 0, 8)[:header.IPv4MinimumSize-4])
		}, syscall.ETIMEDOUT, event.DropICMPShortQuote, nil},
		{"quote of a later fragment", func(q icmpQuote) []byte {
			return unreachable(quotedIPv4(q, nil, 185, 8))
		}, syscall.ETIMEDOUT, event.DropICMPFragmentQuote, nil},
		{"quote from a foreign address", func(q icmpQuote) []byte {
			return unreachable(foreignQuote(quotedIPv4(q, nil, 0, 8)))
		}, syscall.ETIMEDOUT, event.DropICMPForeignQuote, nil},
		{"source quench", func(q icmpQuote) []byte {
			return icmpv4Packet(header.ICMPv4SrcQuench, 0, quotedIPv4(q, nil, 0, 8))
		}, syscall.ETIMEDOUT, event.DropNone, func(p *tcptest.Peer) uint64 {
			return p.Stack.Netstack().Stats().ICMP.V4.PacketsReceived.SrcQuench.Value()
		}},
		{"redirect", func(q icmpQuote) []byte {
			return icmpv4Packet(header.ICMPv4Redirect, 1, quotedIPv4(q, nil, 0, 8))
		}, syscall.ETIMEDOUT, event.DropNone, func(p *tcptest.Peer) uint64 {
			return p.Stack.Netstack().Stats().ICMP.V4.PacketsReceived.Redirect.Value()
		}},
		{"time exceeded", func(q icmpQuote) []byte {
			return icmpv4Packet(header.ICMPv4TimeExceeded, 0, quotedIPv4(q, nil, 0, 8))
		}, syscall.EHOSTUNREACH, event.DropNone, func(p *tcptest.Peer) uint64 {
			return p.Stack.Netstack().Stats().ICMP.V4.PacketsReceived.TimeExceeded.Value()
		}},
		{"parameter problem", func(q icmpQuote) []byte {
			return icmpv4Packet(header.ICMPv4ParamProblem, 0, quotedIPv4(q, nil, 0, 8))
		}, syscall.EPROTO, event.DropNone, func(p *tcptest.Peer) uint64 {
			return p.Stack.Netstack().Stats().ICMP.V4.PacketsReceived.ParamProblem.Value()
		}},
		{"time exceeded, quote of 4 bytes of TCP", func(q icmpQuote) []byte {
			return icmpv4Packet(header.ICMPv4TimeExceeded, 0, quotedIPv4(q, nil, 0, 4))
		}, syscall.ETIMEDOUT, event.DropICMPShortQuote, nil},
		{"time exceeded, quote of a later fragment", func(q icmpQuote) []byte {
			return icmpv4Packet(header.ICMPv4TimeExceeded, 0, quotedIPv4(q, nil, 185, 8))
		}, syscall.ETIMEDOUT, event.DropICMPFragmentQuote, nil},
		{"parameter problem, quote from a foreign address", func(q icmpQuote) []byte {
			return icmpv4Packet(header.ICMPv4ParamProblem, 0, foreignQuote(quotedIPv4(q, nil, 0, 8)))
		}, syscall.ETIMEDOUT, event.DropICMPForeignQuote, nil},
		{"time exceeded, quoted header length 16", func(q icmpQuote) []byte {
			b := quotedIPv4(q, nil, 0, 8)
			b[0] = 0x44
			return icmpv4Packet(header.ICMPv4TimeExceeded, 0, b)
		}, syscall.ETIMEDOUT, event.DropICMPBadQuote, nil},
		{"no such connection", func(q icmpQuote) []byte {
			q.src, q.dst = 1, 2
			return icmpv4Packet(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, quotedIPv4(q, nil, 0, 8))
		}, syscall.ETIMEDOUT, event.DropICMPNoConnection, nil},
		{"time exceeded, no such connection", func(q icmpQuote) []byte {
			q.src, q.dst = 1, 2
			return icmpv4Packet(header.ICMPv4TimeExceeded, 0, quotedIPv4(q, nil, 0, 8))
		}, syscall.ETIMEDOUT, event.DropICMPNoConnection, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{MaxRetries: 1}))
			ep.Write([]byte("abc"))
			p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("abc")})
			p.InjectIPv4(tc.icmp(quote(p, 1)))
			p.ExpectNothing()
			p.WantState(ep, event.Established)
			if tc.stats != nil {
				wantCount(t, "gVisor's ICMP count of the type", tc.stats(p), 1)
			}
			for _, r := range icmpDropReasons {
				want := uint64(0)
				if r == tc.drop {
					want = 1
				}
				wantCount(t, "Dropped("+r.String()+")", p.TCP.Stats().Dropped(r), want)
			}
			rto := ep.Info().RTO
			p.Advance(rto)
			p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("abc")})
			p.Advance(2 * rto)
			p.WantState(ep, event.Closed)
			if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, tc.want) {
				t.Fatalf("Read after the timeout: %v, want %v", err, tc.want)
			}
		})
	}
}

// icmpDropReasons are the drops an ICMP error may be counted under.
var icmpDropReasons = []event.DropReason{
	event.DropICMPBadQuote, event.DropICMPOutOfWindow, event.DropICMPNoConnection, event.DropICMPBadMTU,
	event.DropICMPShortQuote, event.DropICMPFragmentQuote, event.DropICMPForeignQuote,
}

// foreignQuote is the quoted IPv4 header b with its source changed to an
// address the stack does not hold: a segment someone else sent.
func foreignQuote(b []byte) []byte {
	ip := header.IPv4(b)
	ip.SetSourceAddress(tcpip.AddrFrom4([4]byte{192, 0, 2, 99}))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}
