package tcp_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

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
	return icmpv6Error(header.ICMPv6DstUnreachable, code, stackAddr6, q)
}

// dial6 opens a connection from the stack to [2001:db8::2]:80 and reads
// its SYN.
func dial6(t *testing.T) (*peer6, *tcp.Endpoint, out6) {
	t.Helper()
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
	return p, ep, s
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
			p, ep, s := dial6(t)
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

// tcpTo is seg encoded for the stack from the peer, checksummed over
// IPv6's pseudo-header with dst as the destination.
func (p *peer6) tcpTo(dst netip.Addr, s seg) []byte {
	b := p.Encode(s)
	b[header.TCPChecksumOffset], b[header.TCPChecksumOffset+1] = 0, 0
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr6(peerAddr6), addr6(dst), uint16(len(b)))
	header.TCP(b).SetChecksum(^checksum.Checksum(b, xsum))
	return b
}

// injectRaw sends an IPv6 packet from src to dst whose first next header
// is next, with ext (extension headers) and then payload.
func (p *peer6) injectRaw(src, dst netip.Addr, next uint8, ext, payload []byte) {
	pl := append(append([]byte(nil), ext...), payload...)
	pkt := make([]byte, header.IPv6MinimumSize+len(pl))
	header.IPv6(pkt).Encode(&header.IPv6Fields{PayloadLength: uint16(len(pl)), TransportProtocol: header.TCPProtocolNumber,
		HopLimit: 64, SrcAddr: addr6(src), DstAddr: addr6(dst)})
	pkt[6] = next // the fixed header's Next Header
	copy(pkt[header.IPv6MinimumSize:], pl)
	pb := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	p.Link.InjectInbound(ipv6.ProtocolNumber, pb)
	pb.DecRef()
}

// TestSegmentArrives6: what reaches the engine over IPv6, passing from
// the start. A SYN to a listener on [::]:80 is answered with MSS 1440
// (a 1500-byte link less 60, RFC 8200 8.3) behind the extension headers
// RFC 8200 4.1 lets a host skip (Hop-by-Hop and Destination Options with
// padding), in an atomic fragment (RFC 8200 4.5, RFC 6946) and in two
// fragments, reassembled before TCP sees them. A bad checksum over the
// IPv6 pseudo-header is DropBadChecksum. gVisor drops before us, counted
// in its own stats, a SYN from an IPv4-mapped address (RFC 6890 2.2.3;
// Linux's ip6_rcv_core drops those too: a dual-stack listener would take
// it for the IPv4 peer, ::ffff:127.0.0.1 for the host itself), to the
// all-nodes multicast address (RFC 9293 3.10.7.2 MUST-57,
// InvalidSegmentsReceived) and to the subnet-router anycast address,
// which is not ours. Every segment we send has flow label 0: RFC 6437 3
// allows it (Linux's auto_flowlabels would set one per connection).
func TestSegmentArrives6(t *testing.T) {
	syn := seg{Flags: "S", Seq: 0, MSS: 1440}
	for _, tc := range []struct {
		name   string
		send   func(p *peer6)
		answer bool
		reason event.DropReason
	}{
		{"plain", func(p *peer6) { p.injectRaw(peerAddr6, stackAddr6, 6, nil, p.tcpTo(stackAddr6, syn)) }, true, event.DropNone},
		{"hop-by-hop and destination options", func(p *peer6) {
			ext := []byte{
				60, 0, 1, 4, 0, 0, 0, 0, // Hop-by-Hop: PadN, next Destination Options
				6, 0, 1, 4, 0, 0, 0, 0, // Destination Options: PadN, next TCP
			}
			p.injectRaw(peerAddr6, stackAddr6, 0, ext, p.tcpTo(stackAddr6, syn))
		}, true, event.DropNone},
		{"atomic fragment", func(p *peer6) {
			p.injectRaw(peerAddr6, stackAddr6, 44, []byte{6, 0, 0, 0, 0, 0, 0, 1}, p.tcpTo(stackAddr6, syn))
		}, true, event.DropNone},
		{"two fragments", func(p *peer6) {
			b := p.tcpTo(stackAddr6, syn)
			p.injectRaw(peerAddr6, stackAddr6, 44, []byte{6, 0, 0, 1, 0, 0, 0, 7}, b[:8]) // offset 0, more
			p.injectRaw(peerAddr6, stackAddr6, 44, []byte{6, 0, 0, 8, 0, 0, 0, 7}, b[8:]) // offset 8 bytes, last
		}, true, event.DropNone},
		{"bad checksum", func(p *peer6) {
			b := p.tcpTo(stackAddr6, syn)
			b[header.TCPChecksumOffset] ^= 0xff
			p.injectRaw(peerAddr6, stackAddr6, 6, nil, b)
		}, false, event.DropBadChecksum},
		{"IPv4-mapped source", func(p *peer6) {
			src := netip.MustParseAddr("::ffff:127.0.0.1")
			b := p.Encode(syn)
			b[header.TCPChecksumOffset], b[header.TCPChecksumOffset+1] = 0, 0
			xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr6(src), addr6(stackAddr6), uint16(len(b)))
			header.TCP(b).SetChecksum(^checksum.Checksum(b, xsum))
			p.injectRaw(src, stackAddr6, 6, nil, b)
		}, false, event.DropNone},
		{"all-nodes multicast", func(p *peer6) {
			dst := netip.MustParseAddr("ff02::1")
			p.injectRaw(peerAddr6, dst, 6, nil, p.tcpTo(dst, syn))
		}, false, event.DropNone},
		{"subnet-router anycast", func(p *peer6) {
			dst := netip.MustParseAddr("2001:db8::")
			p.injectRaw(peerAddr6, dst, 6, nil, p.tcpTo(dst, syn))
		}, false, event.DropNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer6(t, tcp.Options{})
			if _, err := p.TCP.Listen(netip.AddrPortFrom(netip.IPv6Unspecified(), tcptest.ListenPort), 16); err != nil {
				t.Fatal(err)
			}
			tc.send(p)
			o, ok := p.next()
			if ok != tc.answer || ok && o.flags != "S." {
				t.Fatalf("answered with %v, %v; want a SYN-ACK: %v", o, ok, tc.answer)
			}
			if ok {
				ip := header.IPv6(o.packet)
				opts := header.ParseSynOptions(header.TCP(o.packet[header.IPv6MinimumSize:]).Options(), true)
				if _, flow := ip.TOS(); opts.MSS != 1440 || flow != 0 {
					t.Errorf("SYN-ACK with MSS %d, flow label %#x; want 1440, 0", opts.MSS, flow)
				}
			}
			st := p.TCP.Stats()
			if tc.reason != event.DropNone {
				if n := st.Dropped(tc.reason); n != 1 {
					t.Errorf("Dropped(%v) = %d, want 1", tc.reason, n)
				}
			} else if !tc.answer && st.SegmentsIn.Load() != 0 {
				t.Errorf("the engine saw %d segments, want none", st.SegmentsIn.Load())
			}
			if tc.name == "all-nodes multicast" {
				if n := p.Stack.Netstack().Stats().TCP.InvalidSegmentsReceived.Value(); n != 1 {
					t.Errorf("gVisor's InvalidSegmentsReceived = %d, want 1", n)
				}
			}
		})
	}
}

// TestTimeWait6: TIME-WAIT keeps its rules over IPv6, passing from the
// start: the record answers a RST in the window with a challenge ACK
// (RFC 5961 3.2), a SYN above RCV.NXT reopens the 4-tuple through the
// listener (RFC 1122 4.2.2.13, RFC 6191), and a segment for no
// connection is answered <SEQ=SEG.ACK><CTL=RST> (RFC 9293 3.10.7.1), each
// checksummed over IPv6's pseudo-header (peer6.next checks).
func TestTimeWait6(t *testing.T) {
	p := newPeer6(t, tcp.Options{NoTimestamps: true})
	ep := p.established()
	ep.Close()
	if o, ok := p.next(); !ok || o.flags != "F." {
		t.Fatalf("Close sent %v, %v; want FIN", o, ok)
	}
	p.inject(seg{Flags: "F.", Seq: 1, Ack: 2})
	if o, ok := p.next(); !ok || o.flags != "." || o.seq != 2 || o.ack != 2 {
		t.Fatalf("FIN answered with %v, %v; want ACK 2:2", o, ok)
	}
	p.WantState(ep, event.TimeWait)
	p.inject(seg{Flags: "R", Seq: 100})
	if o, ok := p.next(); !ok || o.flags != "." || o.ack != 2 {
		t.Errorf("RST in the window answered with %v, %v; want a challenge ACK", o, ok)
	}
	p.inject(seg{Flags: "S", Seq: 100000})
	if o, ok := p.next(); !ok || o.flags != "S." || o.ack != 100001 {
		t.Errorf("SYN above RCV.NXT answered with %v, %v; want a SYN-ACK", o, ok)
	}
	if n := p.TCP.Usage().TimeWait; n != 0 {
		t.Errorf("%d in TIME-WAIT after the SYN reopened it", n)
	}
	p.PeerPort = 41234
	p.inject(seg{Flags: ".", Seq: 5, Ack: 7})
	if o, ok := p.next(); !ok || o.flags != "R" || o.seq != 7 {
		t.Errorf("ACK for no connection answered with %v, %v; want RST at its ACK", o, ok)
	}
}

// TestDestinationUnreachable6SynReceived: an ICMPv6 Destination
// Unreachable quoting a listener's SYN-ACK ends the half-open entry when
// Linux's icmpv6_err_convert calls the code fatal (port unreachable,
// administratively prohibited, policy, reject route), which tcp_v6_err
// hands tcp_req_err as abort, and leaves it for the others (no route,
// address unreachable), as for IPv4 (TestICMPQuoteSynReceived).
func TestDestinationUnreachable6SynReceived(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    header.ICMPv6Code
		dropped bool
	}{
		{"no route", header.ICMPv6NetworkUnreachable, false},
		{"address unreachable", header.ICMPv6AddressUnreachable, false},
		{"port unreachable", header.ICMPv6PortUnreachable, true},
		{"administratively prohibited", header.ICMPv6Prohibited, true},
		{"reject route", header.ICMPv6RejectRoute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer6(t, tcp.Options{})
			l, s := p.halfOpen()
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, destinationUnreachable(s.packet, tc.code))
			want, entries := event.SynReceived, 1
			if tc.dropped {
				want, entries = event.Closed, 0
			}
			if n := l.Queues().SynQueueLen; n != entries {
				t.Errorf("SYN queue %d entries, want %d", n, entries)
			}
			if got := p.TCP.Stats().Listen.HalfOpenUnreachable.Load(); got != uint64(1-entries) {
				t.Errorf("Listen.HalfOpenUnreachable = %d, want %d", got, 1-entries)
			}
			for _, ep := range p.TCP.Connections() {
				if ep.State() != want {
					t.Errorf("half-open connection in %v, want %v", ep.State(), want)
				}
			}
		})
	}
}
