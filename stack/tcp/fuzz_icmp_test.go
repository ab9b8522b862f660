package tcp_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// FuzzICMP sends a stack with a live connection (3 bytes in flight) and a
// listener one ICMP (v6 false) or ICMPv6 (v6 true) message of any type,
// code and 4 bytes of rest-of-header (info: a Next-Hop MTU, a Packet Too
// Big's MTU), whose body is body, after, by mode:
//   - bit 0: the IP header of a segment the stack sent on the connection;
//   - bit 1: then the connection's ports, so that the body goes on at the
//     quoted sequence number;
//   - bit 2: then a sequence number in flight or near it, SND.UNA-1 to
//     SND.UNA+6 by body[0], so that the quote checks out (RFC 5927).
//
// Whatever the message, nothing panics, the connection stays ESTABLISHED
// (an ICMP error is soft in a synchronized state, RFC 1122 4.2.3.9; a
// Packet Too Big may only lower the MSS, to no less than the engine's
// floor), the listener stays in LISTEN, at most one ICMP drop is counted,
// and the connection still carries data: an ACK of the 3 bytes takes
// them, and a write after it is sent.
func FuzzICMP(f *testing.F) {
	type seed struct {
		v6        bool
		typ, code uint8
		info      uint32
		mode      uint8
		body      []byte
	}
	for _, s := range []seed{
		{false, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4HostUnreachable), 0, 7, []byte{1}},
		{false, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4PortUnreachable), 0, 7, []byte{0}},
		{false, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4FragmentationNeeded), 576, 7, []byte{1}},
		{false, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4FragmentationNeeded), 0, 7, []byte{1}},
		{false, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4SourceHostIsolated), 0, 7, []byte{2}},
		{false, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4HostUnreachable), 0, 3, []byte{0, 0}},
		{false, uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4HostUnreachable), 0, 1, []byte{1, 2, 3}},
		{false, uint8(header.ICMPv4TimeExceeded), 0, 0, 7, []byte{1}},
		{false, uint8(header.ICMPv4ParamProblem), 0, 0, 7, []byte{7}},
		{false, uint8(header.ICMPv4TimeExceeded), 1, 0, 7, []byte{6}},
		{false, uint8(header.ICMPv4SrcQuench), 0, 0, 7, []byte{1}},
		{true, uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6AddressUnreachable), 0, 7, []byte{1}},
		{true, uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6PortUnreachable), 0, 7, []byte{1}},
		{true, uint8(header.ICMPv6PacketTooBig), 0, 1280, 7, []byte{1}},
		{true, uint8(header.ICMPv6PacketTooBig), 0, 1000, 7, []byte{1}},
		{true, uint8(header.ICMPv6TimeExceeded), 0, 0, 3, nil},
		{true, uint8(header.ICMPv6TimeExceeded), 0, 0, 7, []byte{1}},
		{true, uint8(header.ICMPv6ParamProblem), 0, 0, 7, []byte{2}},
	} {
		f.Add(s.v6, s.typ, s.code, s.info, s.mode, s.body)
	}
	f.Fuzz(func(t *testing.T, v6 bool, typ, code uint8, info uint32, mode uint8, body []byte) {
		if len(body) > 1500 {
			return
		}
		fzRunICMP(t, v6, typ, code, info, mode, body)
	})
}

func fzRunICMP(t *testing.T, v6 bool, typ, code uint8, info uint32, mode uint8, body []byte) {
	var p *tcptest.Peer
	var ep *tcp.Endpoint
	var p6 *peer6
	if v6 {
		p6 = newPeer6(t, tcp.Options{})
		p, ep = p6.Peer, p6.established()
		ep.Write([]byte("abc"))
		if o, ok := p6.next(); !ok || len(o.payload) != 3 {
			t.Fatalf("sent %v, %v; want the 3 bytes", o, ok)
		}
	} else {
		p, ep = tcptest.Established(t)
		ep.Write([]byte("abc"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("abc")})
	}
	iss, _ := p.StackISS()
	var quoted []byte
	if mode&1 != 0 {
		quoted = fzQuotedIP(v6)
	}
	if mode&2 != 0 {
		quoted = binary.BigEndian.AppendUint16(quoted, p.StackPort)
		quoted = binary.BigEndian.AppendUint16(quoted, p.PeerPort)
		if mode&4 != 0 {
			d := uint32(0)
			if len(body) > 0 {
				d = uint32(body[0] % 8)
			}
			quoted = binary.BigEndian.AppendUint32(quoted, iss+d)
		}
	}
	quoted = append(quoted, body...)
	msg := make([]byte, 8+len(quoted))
	msg[0], msg[1] = typ, code
	binary.BigEndian.PutUint32(msg[4:], info)
	copy(msg[8:], quoted)
	if v6 {
		ic := header.ICMPv6(msg)
		ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic[:8],
			Src: addr6(routerAddr6), Dst: addr6(stackAddr6), PayloadCsum: checksum.Checksum(quoted, 0), PayloadLen: len(quoted)}))
		p6.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, msg)
	} else {
		header.ICMPv4(msg).SetChecksum(^checksum.Checksum(msg, 0))
		p.InjectIPv4(fzIPv4(msg))
	}

	if s := ep.State(); s != event.Established {
		t.Fatalf("ICMP type %d code %d moved the connection to %v", typ, code, s)
	}
	if s := p.Listener; s != nil && s.State() != event.Listen {
		t.Fatalf("listener in %v", s.State())
	}
	if mss := ep.Info().SndMSS; mss < 36 { // minSndMSS less the timestamps option
		t.Fatalf("send MSS %d, below the floor", mss)
	}
	drops := uint64(0)
	for _, r := range icmpDropReasons {
		drops += p.TCP.Stats().Dropped(r)
	}
	if drops > 1 {
		t.Fatalf("%d ICMP drops counted for one message", drops)
	}
	// The connection still works: whatever was sent (a Packet Too Big
	// resends what no longer fits; gVisor answers an echo request) is
	// passed over, the 3 bytes ACKed, and new data goes out.
	for range 64 {
		pkt := p.Link.Read()
		if pkt == nil {
			break
		}
		pkt.DecRef()
	}
	ack := seg{Flags: ".", Seq: 1, Ack: 4}
	if v6 {
		p6.inject(ack)
	} else {
		p.Inject(ack)
	}
	if una := ep.Info().BytesAcked; una != 3 {
		t.Fatalf("%d bytes acknowledged, want 3", una)
	}
	if _, err := ep.Write([]byte("d")); err != nil {
		t.Fatalf("Write after the ICMP: %v", err)
	}
	sent := false
	if v6 {
		o, ok := p6.next()
		sent = ok && string(o.payload) == "d"
	} else {
		s, ok := p.Next()
		sent = ok && string(s.Payload) == "d"
	}
	if !sent {
		t.Fatalf("nothing sent after the ICMP")
	}
}

// fzQuotedIP is the IP header of a segment from the stack to the peer, as
// an ICMP error quotes it.
func fzQuotedIP(v6 bool) []byte {
	if v6 {
		b := make([]byte, header.IPv6MinimumSize)
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: header.TCPMinimumSize, TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: addr6(stackAddr6), DstAddr: addr6(peerAddr6)})
		return b
	}
	b := make([]byte, header.IPv4MinimumSize)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber), SrcAddr: addr4(tcptest.StackAddr), DstAddr: addr4(tcptest.PeerAddr)})
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}

func addr4(a netip.Addr) tcpip.Address { return tcpip.AddrFrom4(a.As4()) }

// fzIPv4 wraps an ICMPv4 message in an IPv4 packet from the peer.
func fzIPv4(msg []byte) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+len(msg))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: addr4(tcptest.PeerAddr), DstAddr: addr4(tcptest.StackAddr)})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], msg)
	return pkt
}
