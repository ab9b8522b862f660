package tcp_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// icmpQuote describes the segment an ICMP error quotes: ports as the
// stack sent them (stack > peer) and the sequence number, absolute. full
// quotes the whole 20-byte TCP header instead of RFC 792's 8 bytes.
type icmpQuote struct {
	src, dst uint16
	seq      uint32
	full     bool
}

// icmpError builds an ICMPv4 destination unreachable with code, sent by
// the peer to the stack, quoting the stack's IPv4 header and q's TCP
// header, as a router or the peer's host would.
func icmpError(code header.ICMPv4Code, q icmpQuote) []byte {
	stackAddr := tcpip.AddrFrom4(tcptest.StackAddr.As4())
	peerAddr := tcpip.AddrFrom4(tcptest.PeerAddr.As4())
	tcpLen := 8
	if q.full {
		tcpLen = header.TCPMinimumSize
	}
	inner := make([]byte, header.IPv4MinimumSize+tcpLen)
	ip := header.IPv4(inner)
	ip.Encode(&header.IPv4Fields{TotalLength: 60, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: stackAddr, DstAddr: peerAddr})
	ip.SetChecksum(^ip.CalculateChecksum())
	th := inner[header.IPv4MinimumSize:]
	binary.BigEndian.PutUint16(th[0:], q.src)
	binary.BigEndian.PutUint16(th[2:], q.dst)
	binary.BigEndian.PutUint32(th[4:], q.seq)
	if q.full {
		th[12] = 5 << 4
		th[13] = uint8(header.TCPFlagAck)
	}

	return icmpv4Packet(header.ICMPv4DstUnreachable, code, inner)
}

// icmpv4Packet is an ICMPv4 message of type typ and code from the peer to
// the stack, its body inner (the quote, for an error).
func icmpv4Packet(typ header.ICMPv4Type, code header.ICMPv4Code, inner []byte) []byte {
	stackAddr := tcpip.AddrFrom4(tcptest.StackAddr.As4())
	peerAddr := tcpip.AddrFrom4(tcptest.PeerAddr.As4())
	msg := make([]byte, header.ICMPv4MinimumSize+len(inner))
	ic := header.ICMPv4(msg)
	ic.SetType(typ)
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

// quote is the quote of a segment the stack sent on the connection under
// test, with seq relative to the stack's ISS.
func quote(p *tcptest.Peer, seq uint32) icmpQuote {
	iss, _ := p.StackISS()
	return icmpQuote{src: p.StackPort, dst: p.PeerPort, seq: iss + seq}
}

// TestICMPQuoteSynSent: in SYN-SENT the only segment sent is the SYN at
// ISS (RFC 5927 4.1: SND.UNA =< SEG.SEQ < SND.NXT, that is ISS). A port
// unreachable quoting it ends the dial; one quoting anything else is a
// blind forgery, dropped and counted, and the handshake goes on.
func TestICMPQuoteSynSent(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  uint32 // relative to ISS
		full bool
		act  bool
	}{
		{"SYN's ISS, 8 bytes quoted", 0, false, true},
		{"SYN's ISS, whole header quoted", 0, true, true},
		{"ISS+1", 1, false, false},
		{"ISS-1", 0xffffffff, false, false},
		{"far off", 1 << 31, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r events
			p, ep := tcptest.SynSent(t, tcptest.WithTCP(tcp.Options{Observer: r.observe}))
			q := quote(p, tc.seq)
			q.full = tc.full
			p.InjectIPv4(icmpError(header.ICMPv4PortUnreachable, q))
			p.ExpectNothing()
			if tc.act {
				p.WantState(ep, event.Closed)
				if _, err := ep.Established(); !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("dial error %v, want ECONNREFUSED", err)
				}
				wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), 0)
				return
			}
			p.WantState(ep, event.SynSent)
			wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), 1)
			drops := r.of(event.KindDrop)
			if len(drops) != 1 || drops[0].Drop != event.DropICMPOutOfWindow || drops[0].Conn != ep.ID() ||
				!strings.Contains(drops[0].Segment.String(), "ICMP error (connection refused)") {
				t.Errorf("drop events %v, want one ICMP out-of-window drop for %v", drops, ep.ID())
			}
			// The handshake completes as if nothing had happened.
			p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
			p.WantState(ep, event.Established)
		})
	}
}

// TestICMPQuoteSynReceived: a half-open connection of a listener has sent
// only its SYN-ACK at ISS; an error quoting anything else is dropped and
// counted. One quoting ISS ends the entry for a net or host unreachable,
// as Linux's tcp_v4_err hands a request sock to tcp_req_err with abort
// set for these codes (and for time exceeded and parameter problem,
// which gVisor does not pass on): the peer cannot be reached, so its SYN
// queue slot is freed rather than held through SynAckRetries. It has no
// user to tell. Other codes (port unreachable here) leave it as it is.
func TestICMPQuoteSynReceived(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    header.ICMPv4Code
		seq     uint32 // relative to ISS
		dropped bool   // the entry is gone
	}{
		{"host unreachable, ISS", header.ICMPv4HostUnreachable, 0, true},
		{"net unreachable, ISS", header.ICMPv4NetUnreachable, 0, true},
		{"port unreachable, ISS", header.ICMPv4PortUnreachable, 0, false},
		{"host unreachable, ISS+5", header.ICMPv4HostUnreachable, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.SynReceived(t)
			p.InjectIPv4(icmpError(tc.code, quote(p, tc.seq)))
			p.ExpectNothing()
			outOfWindow := uint64(0)
			if tc.seq != 0 {
				outOfWindow = 1
			}
			wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), outOfWindow)
			if !tc.dropped {
				p.WantState(ep, event.SynReceived)
				wantCount(t, "Listen.HalfOpenUnreachable", p.TCP.Stats().Listen.HalfOpenUnreachable.Load(), 0)
				if q := p.Listener.Queues(); q.SynQueueLen != 1 {
					t.Fatalf("SYN queue %d entries, want 1", q.SynQueueLen)
				}
				return
			}
			p.WantState(ep, event.Closed)
			wantCount(t, "Listen.HalfOpenUnreachable", p.TCP.Stats().Listen.HalfOpenUnreachable.Load(), 1)
			wantCount(t, "ListenDrops", p.TCP.Stats().ListenDrops.Load(), 1)
			if q := p.Listener.Queues(); q.SynQueueLen != 0 {
				t.Fatalf("SYN queue %d entries, want 0", q.SynQueueLen)
			}
			// The listener goes on: the peer's SYN again opens a new
			// entry, answered with a SYN-ACK.
			p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
			p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
		})
	}
}

// TestICMPQuoteSimultaneousOpen: a connection that reached SYN-RECEIVED
// from SYN-SENT (RFC 9293 3.5 figure 8) is a user's dial still in its
// handshake: as Linux's tcp_v4_err for TCP_SYN_RECV, a hard error quoting
// our SYN ends it with the error, as in SYN-SENT.
func TestICMPQuoteSimultaneousOpen(t *testing.T) {
	p, ep := tcptest.SynSent(t)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.WantState(ep, event.SynReceived)
	p.InjectIPv4(icmpError(header.ICMPv4PortUnreachable, quote(p, 0)))
	p.WantState(ep, event.Closed)
	if _, err := ep.Established(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial error %v, want ECONNREFUSED", err)
	}
	p.ExpectNothing()
}

// TestICMPQuoteEstablished: in a synchronized state an ICMP error is soft
// (RFC 1122 4.2.3.9): it only replaces ETIMEDOUT if the connection later
// gives up. It counts only if it quotes SND.UNA..SND.NXT (as Linux, SND.NXT
// included: our bare ACKs carry it). With 3 bytes in flight at 1..4, the
// quoted sequence number decides which error the user finally sees.
func TestICMPQuoteEstablished(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  uint32
		want syscall.Errno
	}{
		{"SND.UNA", 1, syscall.EHOSTUNREACH},
		{"inside", 3, syscall.EHOSTUNREACH},
		{"SND.NXT", 4, syscall.EHOSTUNREACH},
		{"SND.UNA-1", 0, syscall.ETIMEDOUT},
		{"SND.NXT+1", 5, syscall.ETIMEDOUT},
		{"far off", 1 << 30, syscall.ETIMEDOUT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{MaxRetries: 1}))
			ep.Write([]byte("abc"))
			p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("abc")})
			p.InjectIPv4(icmpError(header.ICMPv4HostUnreachable, quote(p, tc.seq)))
			p.WantState(ep, event.Established)
			dropped := uint64(0)
			if tc.want == syscall.ETIMEDOUT {
				dropped = 1
			}
			wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), dropped)
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

// TestICMPQuoteAfterRetransmission: after a retransmission timeout SND.NXT
// goes back to SND.UNA, but an error about a segment sent before it is
// still about our data: the upper bound is the highest sequence number
// sent, as Linux's snd_nxt, which never moves back.
func TestICMPQuoteAfterRetransmission(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoSACK: true}))
	data := payload(0, 3*1460)
	ep.Write(data)
	for i := range 3 {
		flags := "."
		if i == 2 {
			flags = "P." // the last segment empties the buffer
		}
		p.Expect(seg{Flags: flags, Seq: uint32(1 + i*1460), Ack: 1, Len: 1460})
	}
	p.Advance(ep.Info().RTO)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460}) // go-back-N: SND.NXT = 1+1460
	p.InjectIPv4(icmpError(header.ICMPv4HostUnreachable, quote(p, 1+2*1460)))
	wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), 0)
}

// TestICMPQuoteOtherTuple: the demuxer finds a connection by the quoted
// 4-tuple, so an error quoting another peer port never reaches the
// connection under test; on the listener's port it reaches the listener,
// which sent nothing an error could be about: dropped and counted.
func TestICMPQuoteOtherTuple(t *testing.T) {
	p, ep := tcptest.Established(t)
	ep.Write([]byte("abc"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("abc")})
	q := quote(p, 1)
	q.dst++
	p.InjectIPv4(icmpError(header.ICMPv4PortUnreachable, q))
	wantCount(t, "Dropped(ICMP no connection)", p.TCP.Stats().Dropped(event.DropICMPNoConnection), 1)
	p.WantState(ep, event.Established)
	p.WantState(p.Listener, event.Listen)
	p.ExpectNothing()
}

// TestICMPQuoteTimeWait: a connection in TIME-WAIT has sent only ACKs of a
// closed connection; like Linux (tcp_v4_err), an error about it is
// ignored. Its record is not in the demuxer, so the error reaches the
// listener on the port, which counts it.
func TestICMPQuoteTimeWait(t *testing.T) {
	p, ep := tcptest.TimeWait(t)
	p.InjectIPv4(icmpError(header.ICMPv4PortUnreachable, quote(p, 2)))
	wantCount(t, "Dropped(ICMP no connection)", p.TCP.Stats().Dropped(event.DropICMPNoConnection), 1)
	p.WantState(ep, event.TimeWait)
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 2})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 2})
}
