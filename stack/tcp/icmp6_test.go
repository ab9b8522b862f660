package tcp_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
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
// hands TCP (port unreachable) and messages the watcher takes (address
// unreachable, time exceeded). A message addressed to another host is no message to us
// (gVisor hands raw endpoints the copy before it routes the packet) and
// neither acts nor counts; a quote of the first fragment acts as any, as
// gVisor's handleControl skips the Fragment header.
func TestICMPv6Hostile(t *testing.T) {
	foreign6 := netip.MustParseAddr("2001:db8::99")
	for _, msg := range []struct {
		typ  header.ICMPv6Type
		code header.ICMPv6Code
		want syscall.Errno
	}{
		{header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, syscall.ECONNREFUSED},
		{header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, syscall.EHOSTUNREACH},
		{header.ICMPv6TimeExceeded, header.ICMPv6HopLimitExceeded, syscall.EHOSTUNREACH},
	} {
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
			t.Run("type "+strconv.Itoa(int(msg.typ))+" code "+strconv.Itoa(int(msg.code))+", "+tc.name, func(t *testing.T) {
				p, ep, s := dial6(t)
				b := icmpv6Error(msg.typ, msg.code, tc.dst, tc.quote(append([]byte(nil), s.packet...)))
				p.injectRaw(routerAddr6, tc.dst, uint8(header.ICMPv6ProtocolNumber), nil, b)
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
				if _, err := ep.Established(); !errors.Is(err, msg.want) {
					t.Errorf("Established() = %v, want %v", err, msg.want)
				}
			})
		}
	}
}

// TestICMPv6OneOwner: every ICMPv6 error has one owner, gVisor's
// HandleError path for no route, port unreachable and packet too big,
// the watcher for the other Destination Unreachable codes, Time Exceeded
// and Parameter Problem, so none is acted on or counted twice: one
// out-of-window quote of each counts one drop.
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
		{header.ICMPv6TimeExceeded, header.ICMPv6HopLimitExceeded},
		{header.ICMPv6ParamProblem, header.ICMPv6ErroneousHeader},
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

// icmpv6Watched lists the ICMPv6 errors other than Destination
// Unreachable that gVisor's IPv6 passes to no transport and the engine's
// ICMPv6 watcher takes (icmp6.go), with what Linux's icmpv6_err_convert
// makes of them: Time Exceeded (RFC 4443 3.3), hop limit or reassembly
// alike, EHOSTUNREACH and not fatal; any Parameter Problem (RFC 4443 3.4)
// EPROTO and fatal.
var icmpv6Watched = []struct {
	name  string
	typ   header.ICMPv6Type
	code  header.ICMPv6Code
	want  syscall.Errno
	fatal bool
}{
	{"time exceeded in transit", header.ICMPv6TimeExceeded, header.ICMPv6HopLimitExceeded, syscall.EHOSTUNREACH, false},
	{"time exceeded reassembling", header.ICMPv6TimeExceeded, header.ICMPv6ReassemblyTimeout, syscall.EHOSTUNREACH, false},
	{"parameter problem, erroneous header field", header.ICMPv6ParamProblem, header.ICMPv6ErroneousHeader, syscall.EPROTO, true},
	{"parameter problem, unrecognized next header", header.ICMPv6ParamProblem, header.ICMPv6UnknownHeader, syscall.EPROTO, true},
	{"parameter problem, unrecognized option", header.ICMPv6ParamProblem, header.ICMPv6UnknownOption, syscall.EPROTO, true},
}

// quoting is the IPv6 packet the stack sent, sent, with its TCP sequence
// number set to seq relative to the stack's ISS, for an ICMPv6 error to
// quote.
func (p *peer6) quoting(sent out6, seq uint32) []byte {
	q := append([]byte(nil), sent.packet...)
	iss, _ := p.StackISS()
	binary.BigEndian.PutUint32(q[header.IPv6MinimumSize+4:], iss+seq)
	return q
}

// TestICMPv6WatchedSynSent: a time exceeded or parameter problem quoting
// our SYN ends the dial, as Linux's tcp_v6_err ends one in SYN-SENT on
// any error it takes, fatal or not (RFC 1122 4.2.3.9 allows it), with the
// errno icmpv6_err_convert gives it. One quoting another sequence number
// than ISS is a blind forgery (RFC 5927 4.1): counted, and the handshake
// goes on. gVisor's IPv6 only counts both types, so the dial waited out
// its SYN retransmissions for ETIMEDOUT.
func TestICMPv6WatchedSynSent(t *testing.T) {
	for _, tc := range icmpv6Watched {
		t.Run(tc.name, func(t *testing.T) {
			p, ep, s := dial6(t)
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, icmpv6Error(tc.typ, tc.code, stackAddr6, p.quoting(s, 0)))
			p.WantState(ep, event.Closed)
			if _, err := ep.Established(); !errors.Is(err, tc.want) {
				t.Fatalf("dial error %v, want %v", err, tc.want)
			}
			if o, ok := p.next(); ok {
				t.Fatalf("sent %v after the error, want nothing", o)
			}
		})
		t.Run(tc.name+", quoting ISS+1", func(t *testing.T) {
			p, ep, s := dial6(t)
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, icmpv6Error(tc.typ, tc.code, stackAddr6, p.quoting(s, 1)))
			p.WantState(ep, event.SynSent)
			wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), 1)
			p.inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1440})
			if o, ok := p.next(); !ok || o.flags != "." || o.seq != 1 || o.ack != 1 {
				t.Fatalf("SYN-ACK answered with %v, %v; want ACK 1:1", o, ok)
			}
			p.WantState(ep, event.Established)
		})
	}
}

// TestICMPv6WatchedSimultaneousOpen: a dial that reached SYN-RECEIVED
// from SYN-SENT (RFC 9293 3.5 figure 8) ends on either type quoting our
// SYN-ACK, as Linux's tcp_v6_err ends TCP_SYN_RECV as it does
// TCP_SYN_SENT, fatal or not.
func TestICMPv6WatchedSimultaneousOpen(t *testing.T) {
	for _, tc := range icmpv6Watched {
		t.Run(tc.name, func(t *testing.T) {
			p, ep, _ := dial6(t)
			p.inject(seg{Flags: "S", Seq: 0, MSS: 1440})
			s, ok := p.next()
			if !ok || s.flags != "S." {
				t.Fatalf("SYN answered with %v, %v; want SYN-ACK", s, ok)
			}
			p.WantState(ep, event.SynReceived)
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, icmpv6Error(tc.typ, tc.code, stackAddr6, p.quoting(s, 0)))
			p.WantState(ep, event.Closed)
			if _, err := ep.Established(); !errors.Is(err, tc.want) {
				t.Fatalf("dial error %v, want %v", err, tc.want)
			}
		})
	}
}

// TestICMPv6WatchedSynReceived: a listener's half-open entry quoted by a
// parameter problem ends, its SYN queue slot freed, and one quoted by a
// time exceeded stays: Linux's tcp_v6_err hands a request sock to
// tcp_req_err with abort set to what icmpv6_err_convert calls fatal, and
// a time exceeded is not (the route may heal; the SYN-ACK is
// retransmitted).
func TestICMPv6WatchedSynReceived(t *testing.T) {
	for _, tc := range icmpv6Watched {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer6(t, tcp.Options{})
			l, s := p.halfOpen()
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, icmpv6Error(tc.typ, tc.code, stackAddr6, p.quoting(s, 0)))
			want, entries := event.SynReceived, 1
			if tc.fatal {
				want, entries = event.Closed, 0
			}
			if n := l.Queues().SynQueueLen; n != entries {
				t.Errorf("SYN queue %d entries, want %d", n, entries)
			}
			wantCount(t, "Listen.HalfOpenUnreachable", p.TCP.Stats().Listen.HalfOpenUnreachable.Load(), uint64(1-entries))
			for _, ep := range p.TCP.Connections() {
				if ep.State() != want {
					t.Errorf("half-open connection in %v, want %v", ep.State(), want)
				}
			}
		})
	}
}

// TestICMPv6WatchedEstablished: in a synchronized state either type is a
// soft error (RFC 1122 4.2.3.9; Linux's tcp_v6_err stores it in
// sk_err_soft, fatal or not): the connection goes on, and the user sees
// the error in place of ETIMEDOUT when it later times out. One quoting
// beyond SND.NXT is counted and forgotten (RFC 5927 4.1).
func TestICMPv6WatchedEstablished(t *testing.T) {
	for _, tc := range icmpv6Watched {
		for _, seq := range []uint32{1, 9} {
			t.Run(tc.name+", seq "+strconv.Itoa(int(seq)), func(t *testing.T) {
				p := newPeer6(t, tcp.Options{MaxRetries: 1})
				ep := p.established()
				ep.Write([]byte("x"))
				s, ok := p.next()
				if !ok || s.flags != "P." {
					t.Fatalf("sent %v, %v; want the data", s, ok)
				}
				p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, icmpv6Error(tc.typ, tc.code, stackAddr6, p.quoting(s, seq)))
				p.WantState(ep, event.Established)
				want, dropped := error(tc.want), uint64(0)
				if seq != 1 {
					want, dropped = syscall.ETIMEDOUT, 1
				}
				wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), dropped)
				rto := ep.Info().RTO
				p.Advance(rto)
				p.Advance(2 * rto)
				p.WantState(ep, event.Closed)
				if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, want) {
					t.Fatalf("Read after the timeout: %v, want %v", err, want)
				}
			})
		}
	}
}

// TestICMPv6DropEvent: a time exceeded quoting a 4-tuple no socket holds
// is reported as a drop of the quoted connection with the errno it
// stands for, as a destination unreachable is with its code.
func TestICMPv6DropEvent(t *testing.T) {
	var r events
	p := newPeer6(t, tcp.Options{Observer: r.observe})
	ep := p.established()
	ep.Write([]byte("x"))
	s, ok := p.next()
	if !ok {
		t.Fatal("the data was not sent")
	}
	q := p.quoting(s, 1)
	binary.BigEndian.PutUint16(q[header.IPv6MinimumSize:], 1)
	p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, icmpv6Error(header.ICMPv6TimeExceeded, header.ICMPv6HopLimitExceeded, stackAddr6, q))
	drops := r.of(event.KindDrop)
	if len(drops) != 1 || drops[0].Drop != event.DropICMPNoConnection ||
		!strings.Contains(drops[0].Segment.String(), "ICMP error (no route to host) quoting 1 > 40000") {
		t.Fatalf("drop events %v, want one ICMP no-connection drop for a time exceeded", drops)
	}
}
