package tcp_test

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// icmpUnreachable builds an ICMPv4 destination unreachable from the peer
// about a segment the stack sent on the connection under test: the
// original IPv4 header and the first 8 bytes of its TCP header (RFC 792),
// whose sequence number is seq, relative to the stack's ISS.
func icmpUnreachable(p *tcptest.Peer, code header.ICMPv4Code, seq uint32) []byte {
	stackAddr := tcpip.AddrFromSlice(tcptest.StackAddr.AsSlice())
	peerAddr := tcpip.AddrFromSlice(tcptest.PeerAddr.AsSlice())
	inner := make([]byte, header.IPv4MinimumSize+8)
	ip := header.IPv4(inner)
	ip.Encode(&header.IPv4Fields{TotalLength: 60, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: stackAddr, DstAddr: peerAddr})
	ip.SetChecksum(^ip.CalculateChecksum())
	binary.BigEndian.PutUint16(inner[20:], p.StackPort)
	binary.BigEndian.PutUint16(inner[22:], p.PeerPort)
	iss, _ := p.StackISS()
	binary.BigEndian.PutUint32(inner[24:], iss+seq)

	msg := make([]byte, header.ICMPv4MinimumSize+len(inner))
	ic := header.ICMPv4(msg)
	ic.SetType(header.ICMPv4DstUnreachable)
	ic.SetCode(code)
	copy(msg[header.ICMPv4MinimumSize:], inner)
	ic.SetChecksum(^checksum.Checksum(msg, 0))

	pkt := make([]byte, header.IPv4MinimumSize+len(msg))
	out := header.IPv4(pkt)
	out.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber), SrcAddr: peerAddr, DstAddr: stackAddr})
	out.SetChecksum(^out.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], msg)
	return pkt
}

// TestICMPUnreachableSynSent: a hard ICMP error during the handshake ends
// the dial with the errno Linux gives (tcp_v4_err, icmp_err_convert).
func TestICMPUnreachableSynSent(t *testing.T) {
	for _, tc := range []struct {
		code header.ICMPv4Code
		want syscall.Errno
	}{
		{header.ICMPv4HostUnreachable, syscall.EHOSTUNREACH},
		{header.ICMPv4NetUnreachable, syscall.ENETUNREACH},
		{header.ICMPv4PortUnreachable, syscall.ECONNREFUSED},
		{header.ICMPv4ProtoUnreachable, syscall.ENOPROTOOPT},
		{header.ICMPv4SourceRouteFailed, syscall.EOPNOTSUPP},
		{header.ICMPv4DestinationHostUnknown, syscall.EHOSTDOWN},
		{header.ICMPv4SourceHostIsolated, syscall.ENONET},
	} {
		t.Run(tc.want.Error(), func(t *testing.T) {
			p, ep := tcptest.SynSent(t)
			p.InjectIPv4(icmpUnreachable(p, tc.code, 0))
			p.WantState(ep, event.Closed)
			if _, err := ep.Established(); !errors.Is(err, tc.want) {
				t.Fatalf("dial error %v, want %v", err, tc.want)
			}
			p.ExpectNothing()
		})
	}
}

// TestICMPUnreachableEstablished: in a synchronized state an ICMP error is
// soft (RFC 1122 4.2.3.9): the connection goes on, and only if it later
// times out does the user see the ICMP error instead of ETIMEDOUT, as in
// Linux's tcp_write_err.
func TestICMPUnreachableEstablished(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{MaxRetries: 1}))
	ep.Write([]byte("x"))
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.InjectIPv4(icmpUnreachable(p, header.ICMPv4HostUnreachable, 1))
	p.WantState(ep, event.Established)
	rto := ep.Info().RTO
	p.Advance(rto)
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.Advance(2 * rto)
	p.WantState(ep, event.Closed)
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Fatalf("Read after the timeout: %v, want EHOSTUNREACH", err)
	}
}

// TestICMPSoftErrorClearedByAck: a soft error (RFC 1122 4.2.3.9) only
// explains a timeout that follows it; once the peer acknowledges new data
// the path works again, and Linux's tcp_ack clears sk_err_soft
// ("Something worked..."). A host unreachable followed by an ACK of the
// data, and an hour later a timeout, reports ETIMEDOUT, not the host
// unreachable of an hour before.
func TestICMPSoftErrorClearedByAck(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{MaxRetries: 1}))
	ep.Write([]byte("x"))
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.InjectIPv4(icmpUnreachable(p, header.ICMPv4HostUnreachable, 1))
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 2})
	p.Advance(time.Hour)
	ep.Write([]byte("y"))
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("y")})
	rto := ep.Info().RTO
	p.Advance(rto)
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("y")})
	p.Advance(2 * rto)
	p.WantState(ep, event.Closed)
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read after the timeout: %v, want ETIMEDOUT", err)
	}
}
