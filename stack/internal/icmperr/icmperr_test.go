package icmperr

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Read, message by message: what a watcher takes, what it leaves, and the
// name of each quote gVisor's IP would discard, as a raw endpoint sees the
// packets on a NIC holding 192.0.2.1 and 2001:db8::1.

var (
	us4    = tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	peer4  = tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	other4 = tcpip.AddrFrom4([4]byte{192, 0, 2, 9})
	us6    = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	peer6  = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
	other6 = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 0x99})
)

func newStack(t *testing.T) *stack.Stack {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	t.Cleanup(s.Close)
	if err := s.CreateNIC(1, channel.New(8, 1500, "")); err != nil {
		t.Fatal(err)
	}
	for _, a := range []tcpip.Address{us4, us6} {
		proto := header.IPv4ProtocolNumber
		if a.Len() == 16 {
			proto = header.IPv6ProtocolNumber
		}
		if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: a.WithPrefix()}, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// tcpSegment is 20 bytes of a TCP header from port 80 to 40000.
func tcpSegment() []byte {
	b := make([]byte, header.TCPMinimumSize)
	header.TCP(b).Encode(&header.TCPFields{SrcPort: 80, DstPort: 40000, SeqNum: 1000, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck})
	return b
}

// quoted4 is the IPv4 packet we sent, as an error quotes it.
func quoted4(src tcpip.Address, fragOff uint16, ihl uint8) []byte {
	b := make([]byte, header.IPv4MinimumSize)
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: 40, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: peer4, FragmentOffset: fragOff})
	if ihl != 0 {
		b[0] = 0x40 | ihl
	}
	return append(b, tcpSegment()...)
}

// packet4 is an ICMPv4 message to dst as a raw endpoint gets it.
func packet4(dst tcpip.Address, typ header.ICMPv4Type, code header.ICMPv4Code, quote []byte, badSum bool) *stack.PacketBuffer {
	ic := make([]byte, header.ICMPv4MinimumSize)
	header.ICMPv4(ic).SetType(typ)
	header.ICMPv4(ic).SetCode(code)
	sum := ^checksum.Checksum(ic, checksum.Checksum(quote, 0))
	if badSum {
		sum++
	}
	header.ICMPv4(ic).SetChecksum(sum)
	ip := make([]byte, header.IPv4MinimumSize)
	header.IPv4(ip).Encode(&header.IPv4Fields{TotalLength: uint16(len(ip) + len(ic) + len(quote)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber), SrcAddr: peer4, DstAddr: dst})
	return rawPacket(header.IPv4ProtocolNumber, ip, ic, quote)
}

// quoted6 is the IPv6 packet we sent, with a Fragment header at offset
// fragOff (in 8-byte units) when frag.
func quoted6(src tcpip.Address, frag bool, fragOff uint16) []byte {
	b := make([]byte, header.IPv6MinimumSize)
	next := header.TCPProtocolNumber
	if frag {
		next = header.IPv6FragmentHeader
	}
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: 20, TransportProtocol: next, HopLimit: 64, SrcAddr: src, DstAddr: peer6})
	if frag {
		f := make([]byte, header.IPv6FragmentHeaderSize)
		f[0] = uint8(header.TCPProtocolNumber)
		f[2], f[3] = byte(fragOff>>5), byte(fragOff<<3)
		b = append(b, f...)
	}
	return append(b, tcpSegment()...)
}

// packet6 is an ICMPv6 error to dst as a raw endpoint gets it.
func packet6(dst tcpip.Address, typ header.ICMPv6Type, code header.ICMPv6Code, quote []byte) *stack.PacketBuffer {
	ic := make([]byte, header.ICMPv6MinimumSize)
	header.ICMPv6(ic).SetType(typ)
	header.ICMPv6(ic).SetCode(code)
	header.ICMPv6(ic).SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: ic, Src: peer6, Dst: dst, PayloadCsum: checksum.Checksum(quote, 0), PayloadLen: len(quote),
	}))
	ip := make([]byte, header.IPv6MinimumSize)
	header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(len(ic) + len(quote)), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64, SrcAddr: peer6, DstAddr: dst})
	return rawPacket(header.IPv6ProtocolNumber, ip, ic, quote)
}

func rawPacket(net tcpip.NetworkProtocolNumber, ip, ic, quote []byte) *stack.PacketBuffer {
	all := append(append(append([]byte(nil), ip...), ic...), quote...)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(all)})
	pkt.NetworkHeader().Consume(len(ip))
	pkt.TransportHeader().Consume(len(ic))
	pkt.NetworkProtocolNumber = net
	pkt.NICID = 1
	return pkt
}

func TestRead(t *testing.T) {
	s := newStack(t)
	seg := quoted4(us4, 0, 0)
	seg6 := quoted6(us6, false, 0)
	for _, tc := range []struct {
		name string
		pkt  *stack.PacketBuffer
		ok   bool
		drop event.DropReason
		tlen int // the transport quote's length when ok
	}{
		{"host unreachable", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, seg, false), true, event.DropNone, 20},
		{"time exceeded", packet4(us4, header.ICMPv4TimeExceeded, 0, seg, false), true, event.DropNone, 20},
		{"parameter problem", packet4(us4, header.ICMPv4ParamProblem, 0, seg, false), true, event.DropNone, 20},
		{"8 bytes of TCP header", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, seg[:28], false), true, event.DropNone, 8},
		{"to another host", packet4(other4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, seg, false), false, 0, 0},
		{"bad checksum", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, seg, true), false, 0, 0},
		{"echo reply", packet4(us4, header.ICMPv4EchoReply, 0, seg, false), false, 0, 0},
		{"code 16", packet4(us4, header.ICMPv4DstUnreachable, 16, seg, false), false, 0, 0},
		{"7 bytes of TCP header", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, seg[:27], false), true, event.DropICMPShortQuote, 0},
		{"cut in the IP header", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, seg[:16], false), true, event.DropICMPShortQuote, 0},
		{"foreign source", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, quoted4(other4, 0, 0), false), true, event.DropICMPForeignQuote, 20},
		{"later fragment", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, quoted4(us4, 1480, 0), false), true, event.DropICMPFragmentQuote, 20},
		{"header length 16", packet4(us4, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, quoted4(us4, 0, 4), false), true, event.DropICMPBadQuote, 0},
		{"v6 address unreachable", packet6(us6, header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, seg6), true, event.DropNone, 20},
		{"v6 to another host", packet6(other6, header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, seg6), false, 0, 0},
		{"v6 echo reply", packet6(us6, header.ICMPv6EchoReply, 0, seg6), false, 0, 0},
		{"v6 first fragment", packet6(us6, header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, quoted6(us6, true, 0)), true, event.DropNone, 20},
		{"v6 later fragment", packet6(us6, header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, quoted6(us6, true, 185)), true, event.DropICMPFragmentQuote, 20},
		{"v6 foreign source", packet6(us6, header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, quoted6(other6, false, 0)), true, event.DropICMPForeignQuote, 20},
		{"v6 short quote", packet6(us6, header.ICMPv6DstUnreachable, header.ICMPv6AddressUnreachable, seg6[:44]), true, event.DropICMPShortQuote, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.pkt.DecRef()
			e, ok := Read(s, tc.pkt)
			if ok != tc.ok {
				t.Fatalf("Read reports %v, want %v (%+v)", ok, tc.ok, e)
			}
			if !ok {
				return
			}
			if e.Drop != tc.drop || len(e.Transport) != tc.tlen {
				t.Errorf("drop %q, %d bytes of transport quote; want %q, %d", e.Drop, len(e.Transport), tc.drop, tc.tlen)
			}
			if e.Drop == event.DropNone && (e.Protocol != header.TCPProtocolNumber || header.TCP(e.Transport).SourcePort() != 80) {
				t.Errorf("quote of protocol %d, source port %d; want TCP from 80", e.Protocol, header.TCP(e.Transport).SourcePort())
			}
		})
	}
}
