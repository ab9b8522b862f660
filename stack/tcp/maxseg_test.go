package tcp_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestMaxSegment: a user's MSS clamp, Linux's TCP_MAXSEG set before
// connect or on a listener. The SYN or SYN-ACK offers the clamp instead of
// the route's 1460 (RFC 9293 3.7.1: the MSS option is the receiver's to
// choose), and segments sent are at most the clamp, whatever the peer
// offered: a write of 3000 bytes leaves as 1100 + 1100, then the 800
// Nagle held.
func TestMaxSegment(t *testing.T) {
	data := payload(0, 3000)
	sends := func(p *tcptest.Peer, ep *tcp.Endpoint) {
		t.Helper()
		if _, err := ep.Write(data); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1100]})
		p.Expect(seg{Flags: "P.", Seq: 1101, Ack: 1, Payload: data[1100:2200]})
		p.ExpectNothing() // Nagle holds the short tail
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 2201})
		p.Expect(seg{Flags: "P.", Seq: 2201, Ack: 1, Payload: data[2200:]})
		if in := ep.Info(); in.SndMSS != 1100 || in.RcvMSS != 1100 {
			t.Errorf("SndMSS %d, RcvMSS %d; want 1100 both", in.SndMSS, in.RcvMSS)
		}
	}
	t.Run("connect", func(t *testing.T) {
		p := tcptest.New(t)
		ep := p.ConnectWith(tcp.ConnectOptions{MaxSegment: 1100})
		p.Expect(seg{Flags: "S", Seq: 0, MSS: 1100})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
		sends(p, ep)
	})
	t.Run("listener", func(t *testing.T) {
		p, l := tcptest.Listen(t)
		if err := l.SetMaxSegment(1100); err != nil {
			t.Fatal(err)
		}
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1300})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1100})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		sends(p, ep)
	})
	t.Run("below the peer's", func(t *testing.T) {
		// A clamp above what the peer offers changes nothing: the
		// peer's MSS bounds what we send (RFC 9293 3.7.1).
		p := tcptest.New(t)
		ep := p.ConnectWith(tcp.ConnectOptions{MaxSegment: 1400})
		p.Expect(seg{Flags: "S", Seq: 0, MSS: 1400})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1100})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
		if in := ep.Info(); in.SndMSS != 1100 {
			t.Errorf("SndMSS %d, want the peer's 1100", in.SndMSS)
		}
	})
	t.Run("out of range", func(t *testing.T) {
		p, l := tcptest.Listen(t)
		for _, n := range []int{-1, 87, 32768} {
			if err := l.SetMaxSegment(n); !errors.Is(err, syscall.EINVAL) {
				t.Errorf("SetMaxSegment(%d) = %v, want EINVAL", n, err)
			}
			if _, err := p.TCP.ConnectWith(netip.AddrPort{}, netip.AddrPortFrom(tcptest.PeerAddr, 40001), tcp.ConnectOptions{MaxSegment: n}); !errors.Is(err, syscall.EINVAL) {
				t.Errorf("ConnectWith(MaxSegment %d) = %v, want EINVAL", n, err)
			}
		}
	})
}
