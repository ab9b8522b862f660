package tcp_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Path MTU discovery over IPv6 (RFC 8201) as packet traces. tcptest's
// peer speaks IPv4; peer6 wraps the segments it encodes in IPv6 and reads
// the stack's IPv6 segments itself. Addresses are from the documentation
// prefix 2001:db8::/32 (RFC 3849).

var (
	stackAddr6 = netip.MustParseAddr("2001:db8::1")
	peerAddr6  = netip.MustParseAddr("2001:db8::2")
)

// peer6 is tcptest's peer talking IPv6 to the stack's 2001:db8::1.
type peer6 struct {
	t *testing.T
	*tcptest.Peer
}

func newPeer6(t *testing.T, o tcp.Options) *peer6 {
	t.Helper()
	p := tcptest.NewScripted(t, func(c *faketime.ManualClock) tcpip.Clock { return c },
		[]netip.Prefix{netip.PrefixFrom(stackAddr6, 64)}, tcptest.WithTCP(o))
	return &peer6{t: t, Peer: p}
}

func addr6(a netip.Addr) tcpip.Address { return tcpip.AddrFrom16(a.As16()) }

// inject sends seg (relative numbers, as tcptest.Seg) over IPv6.
func (p *peer6) inject(s seg) {
	p.t.Helper()
	b := p.Encode(s) // checksummed over IPv4's pseudo-header: redo it
	b[header.TCPChecksumOffset], b[header.TCPChecksumOffset+1] = 0, 0
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr6(peerAddr6), addr6(stackAddr6), uint16(len(b)))
	header.TCP(b).SetChecksum(^checksum.Checksum(b, xsum))
	p.injectIPv6(peerAddr6, header.TCPProtocolNumber, b)
}

// injectIPv6 sends payload from src to the stack in an IPv6 packet.
func (p *peer6) injectIPv6(src netip.Addr, proto tcpip.TransportProtocolNumber, payload []byte) {
	pkt := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(pkt).Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)), TransportProtocol: proto,
		HopLimit: 64, SrcAddr: addr6(src), DstAddr: addr6(stackAddr6)})
	copy(pkt[header.IPv6MinimumSize:], payload)
	pb := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	p.Link.InjectInbound(ipv6.ProtocolNumber, pb)
	pb.DecRef()
}

// out6 is a segment the stack sent over IPv6: relative numbers, and the
// packet as it was for quoting in an ICMPv6 error.
type out6 struct {
	flags    string
	seq, ack uint32
	payload  []byte
	packet   []byte
}

func (o out6) String() string {
	return fmt.Sprintf("[%s] seq %d:%d ack %d", o.flags, o.seq, o.seq+uint32(len(o.payload)), o.ack)
}

// next reads the next segment the stack sent, checking that it is a
// well-formed IPv6 TCP segment from the stack to the peer.
func (p *peer6) next() (out6, bool) {
	p.t.Helper()
	pkt := p.Link.Read()
	if pkt == nil {
		return out6{}, false
	}
	v := pkt.ToView()
	pkt.DecRef()
	b := append([]byte(nil), v.AsSlice()...)
	v.Release()
	ip := header.IPv6(b)
	if !ip.IsValid(len(b)) || ip.NextHeader() != uint8(header.TCPProtocolNumber) ||
		ip.SourceAddress() != addr6(stackAddr6) || ip.DestinationAddress() != addr6(peerAddr6) {
		p.t.Fatalf("not an IPv6 TCP segment from the stack to the peer: % x", b)
	}
	tb := b[header.IPv6MinimumSize : header.IPv6MinimumSize+int(ip.PayloadLength())]
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tb)))
	if checksum.Checksum(tb, xsum) != 0xffff {
		p.t.Fatalf("bad TCP checksum: % x", b)
	}
	h := header.TCP(tb)
	if h.Flags()&header.TCPFlagSyn != 0 {
		p.SetStackISS(h.SequenceNumber(), true)
	}
	iss, _ := p.StackISS()
	return out6{
		flags:   tcptest.FlagString(h.Flags()),
		seq:     h.SequenceNumber() - iss,
		ack:     h.AckNumber() - p.PeerISS(),
		payload: append([]byte(nil), tb[h.DataOffset():]...),
		packet:  b,
	}, true
}

func (p *peer6) drain() []out6 {
	var all []out6
	for range 1000 {
		o, ok := p.next()
		if !ok {
			break
		}
		all = append(all, o)
	}
	return all
}

// halfOpen makes a listener on [2001:db8::1]:80 and sends it a SYN from
// the peer, [2001:db8::2]:40000, with MSS 1440 (a 1500-byte link): the
// listener holds a half-open entry. It returns the listener and the
// SYN-ACK.
func (p *peer6) halfOpen() (*tcp.Listener, out6) {
	p.t.Helper()
	l, err := p.TCP.Listen(netip.AddrPortFrom(stackAddr6, tcptest.ListenPort), 16)
	if err != nil {
		p.t.Fatal(err)
	}
	p.inject(seg{Flags: "S", Seq: 0, MSS: 1440})
	o, ok := p.next()
	if !ok || o.flags != "S." || o.ack != 1 {
		p.t.Fatalf("SYN answered with %v, %v; want SYN-ACK", o, ok)
	}
	return l, o
}

// established opens a connection from the peer, [2001:db8::2]:40000, to a
// listener on [2001:db8::1]:80, with MSS 1440 (a 1500-byte link).
func (p *peer6) established() *tcp.Endpoint {
	p.t.Helper()
	l, _ := p.halfOpen()
	p.inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := l.Accept()
	if err != nil {
		p.t.Fatal(err)
	}
	if mss := ep.Info().SndMSS; mss != 1440 {
		p.t.Fatalf("MSS %d, want 1440", mss)
	}
	return ep
}

// packetTooBig is an ICMPv6 Packet Too Big (RFC 4443 3.2) from a router
// on the path, 2001:db8::fe, reporting mtu and quoting the packet the
// stack sent (as much of it as fits in the minimum MTU, RFC 4443 2.4 (c)),
// with its TCP sequence number replaced by seq (absolute).
func packetTooBig(quoted []byte, seq uint32, mtu uint32) []byte {
	q := append([]byte(nil), quoted...)
	binary.BigEndian.PutUint32(q[header.IPv6MinimumSize+4:], seq)
	max := header.IPv6MinimumMTU - header.IPv6MinimumSize - header.ICMPv6PacketTooBigMinimumSize
	q = q[:min(len(q), max)]
	msg := make([]byte, header.ICMPv6PacketTooBigMinimumSize+len(q))
	ic := header.ICMPv6(msg)
	ic.SetType(header.ICMPv6PacketTooBig)
	ic.SetMTU(mtu)
	copy(msg[header.ICMPv6PacketTooBigMinimumSize:], q)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic[:header.ICMPv6PacketTooBigMinimumSize],
		Src: addr6(routerAddr6), Dst: addr6(stackAddr6), PayloadCsum: checksum.Checksum(q, 0), PayloadLen: len(q)}))
	return msg
}

var routerAddr6 = netip.MustParseAddr("2001:db8::fe")

// TestPathMTUPacketTooBig6: three full segments (MSS 1440) are in flight
// when a router reports a 1280-byte next hop, IPv6's minimum link MTU,
// quoting the first (RFC 8201 4). The quote checks out (RFC 5927: the
// 4-tuple and a sequence number in flight), so the MSS falls at once to
// 1280 - 40 - 20 = 1220 and the three are sent again cut to fit (Linux
// tcp_simple_retransmit), in order, without a window reduction: the
// drops were not congestion. New data goes out at the new size.
func TestPathMTUPacketTooBig6(t *testing.T) {
	var pmtu []event.Event
	p := newPeer6(t, tcp.Options{Observer: func(ev event.Event) {
		if ev.Kind == event.KindPathMTU {
			pmtu = append(pmtu, ev)
		}
	}})
	ep := p.established()
	data := payload(0, 3*1440)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	sent := p.drain()
	if len(sent) != 3 {
		t.Fatalf("sent %v, want three full segments", sent)
	}
	cwnd := ep.Info().Cwnd
	iss, _ := p.StackISS()
	p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, packetTooBig(sent[0].packet, iss+1, 1280))

	var got []byte
	resent := p.drain()
	for _, s := range resent {
		if n := len(s.payload); n > 1220 || header.IPv6MinimumSize+header.TCPMinimumSize+n > 1280 {
			t.Errorf("segment %v of %d bytes does not fit 1280", s, n)
		}
		if int(s.seq)-1 == len(got) {
			got = append(got, s.payload...)
		}
	}
	if string(got) != string(data) {
		t.Errorf("resent %d bytes in %v, want the %d in flight, in order", len(got), resent, len(data))
	}
	p.TCP.SyncEvents()
	i := ep.Info()
	if i.SndMSS != 1220 || i.Cwnd != cwnd {
		t.Errorf("after the ICMPv6: MSS %d, cwnd %d; want 1220, %d", i.SndMSS, i.Cwnd, cwnd)
	}
	if len(pmtu) != 1 || p.TCP.Stats().PathMTUReductions.Load() != 1 {
		t.Errorf("path MTU events %v, reductions %d; want one", pmtu, p.TCP.Stats().PathMTUReductions.Load())
	}

	p.inject(seg{Flags: ".", Seq: 1, Ack: 1 + 3*1440})
	p.drain()
	if _, err := ep.Write(payload(0, 3000)); err != nil {
		t.Fatal(err)
	}
	next := p.drain()
	if len(next) < 2 || len(next[0].payload) != 1220 || len(next[1].payload) != 1220 {
		t.Errorf("new data went out as %v, want segments of 1220 bytes", next)
	}
}

// TestPathMTUPacketTooBig6Ignored: a Packet Too Big quoting a sequence
// number not in flight (a blind forgery, RFC 5927 4.1, RFC 8201 5.2),
// or reporting an MTU below IPv6's minimum of 1280 (RFC 8201 4: a node
// must not reduce its estimate below it; gVisor's IPv6 hands such an MTU
// to the engine as 0), changes nothing: it is dropped with a named reason
// and counted, nothing is sent, and the MSS stays.
func TestPathMTUPacketTooBig6Ignored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		seq    uint32 // relative to the stack's ISS
		mtu    uint32
		reason event.DropReason
	}{
		{"sequence not in flight", 1 << 20, 1280, event.DropICMPOutOfWindow},
		{"MTU below the minimum", 1, 1000, event.DropICMPBadMTU},
		// RFC 8201 4: a report never raises the estimate; the link's
		// own MTU is 1500.
		{"MTU above the link's", 1, 1600, event.DropICMPBadMTU},
		{"MTU of the link", 1, 1500, event.DropICMPBadMTU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer6(t, tcp.Options{})
			ep := p.established()
			if _, err := ep.Write(payload(0, 2*1440)); err != nil {
				t.Fatal(err)
			}
			sent := p.drain()
			iss, _ := p.StackISS()
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, packetTooBig(sent[0].packet, iss+tc.seq, tc.mtu))
			if out := p.drain(); len(out) != 0 {
				t.Errorf("sent %v after a forged ICMPv6", out)
			}
			if i := ep.Info(); i.SndMSS != 1440 {
				t.Errorf("MSS %d after a forged ICMPv6, want 1440", i.SndMSS)
			}
			st := p.TCP.Stats()
			if n := st.Dropped(tc.reason); n != 1 || st.PathMTUReductions.Load() != 0 {
				t.Errorf("Dropped(%v) = %d, reductions %d; want 1, 0", tc.reason, n, st.PathMTUReductions.Load())
			}
		})
	}
}
