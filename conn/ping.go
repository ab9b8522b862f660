package conn

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/tapstack/tapstack/stack"
)

// EchoReply is one answered echo request.
type EchoReply struct {
	From netip.Addr    // who answered
	Seq  int           // the request's sequence number
	Len  int           // ICMP bytes received: header and data
	TTL  uint8         // the reply's TTL or hop limit; 0 if unknown
	RTT  time.Duration // from the request's write to the reply's read, on the stack's clock
}

// Echo sends an echo request (RFC 792; RFC 4443 4.1) with sequence number
// seq and data to dst, and waits for its reply until ctx is done or the
// read deadline passes. Replies to other sequence numbers (late ones)
// are read and skipped. The round-trip time is measured on the stack's
// monotonic clock.
func (c *ICMPConn) Echo(ctx context.Context, dst netip.Addr, seq int, data []byte) (EchoReply, error) {
	dst = dst.Unmap()
	var typ icmp.Type = ipv4.ICMPTypeEcho
	proto := 1 // iana.ProtocolICMP
	if c.v6 {
		typ, proto = ipv6.ICMPTypeEchoRequest, 58 // iana.ProtocolIPv6ICMP
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: c.ID(), Seq: seq & 0xffff, Data: data}}
	// With no pseudo-header the ICMPv6 checksum is left to the stack,
	// which fills in both families' checksums anyway.
	b, err := msg.Marshal(nil)
	if err != nil {
		return EchoReply{}, err
	}
	if err := ctx.Err(); err != nil {
		return EchoReply{}, c.sock.opError("write", nil, mapContextErr(err))
	}
	start := c.sock.clock.NowMonotonic()
	if _, err := c.writeTo(b, dst); err != nil {
		return EchoReply{}, err
	}
	buf := make([]byte, len(b)+64)
	for range 1 << 16 { // every other sequence number once, at most
		n, from, ttl, err := c.readReply(buf, ctx.Done())
		if err != nil {
			if ctx.Err() != nil {
				return EchoReply{}, c.sock.opError("read", nil, mapContextErr(ctx.Err()))
			}
			return EchoReply{}, err
		}
		rtt := c.sock.clock.NowMonotonic().Sub(start)
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.Seq != seq&0xffff || from != dst && !dst.IsUnspecified() && !dst.IsMulticast() {
			continue
		}
		return EchoReply{From: from, Seq: e.Seq, Len: n, TTL: ttl, RTT: rtt}, nil
	}
	return EchoReply{}, c.sock.opError("read", nil, errors.New("no matching echo reply"))
}

// Ping sends one echo request to addr from s and returns the round-trip
// time, on the stack's clock. It waits until ctx is done: give it a
// deadline. The error is a *net.OpError: EHOSTUNREACH or ENETUNREACH
// when there is no route, a timeout (errors.Is context.DeadlineExceeded)
// when no reply came.
func Ping(ctx context.Context, s *stack.Stack, addr netip.Addr) (time.Duration, error) {
	network := "ip4:icmp"
	if a := addr.Unmap(); a.Is6() {
		network = "ip6:ipv6-icmp"
	}
	c, err := ListenICMP(s, network, netip.Addr{})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r, err := c.Echo(ctx, addr, 1, []byte("tapstack ping\x00\x01\x02"))
	if err != nil {
		return 0, err
	}
	return r.RTT, nil
}
