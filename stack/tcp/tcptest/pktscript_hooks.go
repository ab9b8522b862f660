package tcptest

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/tapstack/tapstack/stack"
)

// This file holds what the packetdrill runner (package pktscript) needs of
// the fixture beyond New.

// NewScripted is New for a runner that moves time itself and talks IPv6
// as well: the stack runs on wrap(clock) instead of the fixture's manual
// clock (the runner wraps it to learn when the next timer falls due, so
// that it can stop the clock at the instant a segment leaves), and the
// interface gets addrs besides 192.0.2.1/24. Peer.Clock is the manual
// clock underneath.
func NewScripted(t testing.TB, wrap func(*faketime.ManualClock) tcpip.Clock, addrs []netip.Prefix, opts ...Option) *Peer {
	t.Helper()
	c := configure(opts)
	clock := faketime.NewManualClock()
	s := stack.New(stack.Options{Clock: wrap(clock), TCP: c.tcp})
	link := channel.New(queueLen, c.mtu, "")
	rl := &refusingLink{Endpoint: link} // RefuseAll: a qdisc that drops every packet
	all := append([]netip.Prefix{netip.PrefixFrom(StackAddr, 24)}, addrs...)
	if _, err := s.AddNIC(rl, all...); err != nil {
		t.Fatalf("tcptest: AddNIC: %v", err)
	}
	p := &Peer{
		t:          t,
		Clock:      clock,
		Stack:      s,
		TCP:        s.TCP(),
		Link:       link,
		StackPort:  ListenPort,
		PeerPort:   PeerPort,
		Win:        PeerWin,
		SynOptions: c.synOpts,
		Timestamps: c.ts,
		TSBase:     PeerTSBase,
		peerISS:    c.peerISS,
		start:      clock.Now(),
	}
	rl.p = p
	t.Cleanup(func() {
		s.Close()
		link.Close()
	})
	return p
}

// OutboundCapacity is how many packets the fixture's link holds for the
// peer to read before it drops: a runner must read at least this often.
const OutboundCapacity = queueLen
