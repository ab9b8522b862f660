package tcptest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// One fixture per RFC 9293 3.3.2 state. Each builds a fresh stack and
// peer, drives the connection there with the engine's public API and
// scripted segments, asserts the state, and leaves no unread segment.
// The relative sequence numbers at exit are documented on each; both sides
// start at 0 for their SYN, so the first data byte of either side is 1.

// Listen returns a peer and a listener on 192.0.2.1:80 (backlog 16).
func Listen(t testing.TB, opts ...Option) (*Peer, *tcp.Listener) {
	t.Helper()
	p := New(t, opts...)
	return p, p.Listen(16)
}

// Listen opens a listener on the stack's address, port p.StackPort.
func (p *Peer) Listen(backlog int) *tcp.Listener {
	p.t.Helper()
	l, err := p.TCP.Listen(netip.AddrPortFrom(StackAddr, p.StackPort), backlog)
	if err != nil {
		p.fail("tcptest: Listen: %v", err)
	}
	p.Listener = l
	p.WantState(l, event.Listen)
	return l
}

// SynSent returns a connection that has sent its SYN (seq 0) to the peer
// and is in SYN-SENT. The SYN has been read and tapstack's ISS learned.
func SynSent(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p := New(t, opts...)
	ep := p.Connect()
	p.Expect(Seg{Flags: p.stackSynFlags(), Seq: 0})
	p.WantState(ep, event.SynSent)
	return p, ep
}

// The ECN flags of the fixtures' handshakes (RFC 3168 6.1.1): the peer's
// SYN or SYN-ACK carries those SynOptions.Flags names (E, W); the
// stack's SYN asks with ECE and CWR under tcp.ECNOn, and its SYN-ACK
// agrees with ECE to a SYN that asks, unless tcp.ECNOff.

// peerSynFlags are the flags of the peer's SYN or SYN-ACK: base and the
// ECN flags SynOptions.Flags names.
func (p *Peer) peerSynFlags(base string) string {
	for _, f := range "EW" {
		if strings.ContainsRune(p.SynOptions.Flags, f) {
			base += string(f)
		}
	}
	return base
}

// stackSynFlags are the flags of the stack's SYN.
func (p *Peer) stackSynFlags() string {
	if p.TCP.Options().ECN == tcp.ECNOn {
		return "SEW"
	}
	return "S"
}

// stackSynAckFlags are the flags of the stack's SYN-ACK to the peer's
// SYN.
func (p *Peer) stackSynAckFlags() string {
	if p.peerSynFlags("") == "EW" && p.TCP.Options().ECN != tcp.ECNOff {
		return "SE."
	}
	return "S."
}

// Connect calls the engine's Connect toward the peer and points
// p.StackPort at the ephemeral port it chose. The SYN is left unread.
func (p *Peer) Connect() *tcp.Endpoint {
	p.t.Helper()
	return p.ConnectWith(tcp.ConnectOptions{})
}

// ConnectWith is Connect with the engine's ConnectOptions.
func (p *Peer) ConnectWith(o tcp.ConnectOptions) *tcp.Endpoint {
	p.t.Helper()
	ep, err := p.TCP.ConnectWith(netip.AddrPort{}, netip.AddrPortFrom(PeerAddr, p.PeerPort), o)
	if err != nil {
		p.fail("tcptest: Connect: %v", err)
	}
	p.StackPort = ep.ID().Local.Port()
	p.SetStackISS(0, false)
	return ep
}

// SynReceived returns a half-open connection of a listener (p.Listener):
// the peer sent its SYN (seq 0) and the stack answered SYN-ACK (seq 0,
// ack 1), which has been read.
func SynReceived(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p, _ := Listen(t, opts...)
	return p, p.synReceived()
}

func (p *Peer) synReceived() *tcp.Endpoint {
	p.t.Helper()
	p.SetStackISS(0, false)
	syn := p.SynOptions
	syn.Flags, syn.Seq, syn.Ack, syn.Payload, syn.Len = p.peerSynFlags("S"), 0, 0, nil, 0
	p.Inject(syn)
	// Options are left to the handshake tests, so that a bug there does
	// not break every fixture.
	p.Expect(Seg{Flags: p.stackSynAckFlags(), Seq: 0, Ack: 1})
	ep := p.find()
	p.WantState(ep, event.SynReceived)
	return ep
}

// find returns the engine's connection with the peer on the current ports.
func (p *Peer) find() *tcp.Endpoint {
	p.t.Helper()
	for _, e := range p.TCP.Connections() {
		id := e.ID()
		if id.Local.Port() == p.StackPort && id.Remote.Port() == p.PeerPort {
			return e
		}
	}
	p.fail("tcptest: no connection %d > %d in the engine", p.StackPort, p.PeerPort)
	return nil
}

// Established returns an established connection; both sides are at seq 1,
// ack 1, nothing sent yet. By default the stack opened it passively
// (Listen, SYN, SYN-ACK, ACK, Accept); with ActiveOpen it called Connect.
func Established(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	c := configure(opts)
	p := newPeer(t, c)
	if c.active {
		return p, p.establishActive()
	}
	p.Listen(16)
	return p, p.establishPassive()
}

// EstablishedActive is Established with ActiveOpen.
func EstablishedActive(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	return Established(t, append(opts, ActiveOpen())...)
}

// Established opens one more connection passively on p.Listener, from
// the peer's current port, as the Established fixture does.
func (p *Peer) Established() *tcp.Endpoint {
	p.t.Helper()
	return p.establishPassive()
}

func (p *Peer) establishPassive() *tcp.Endpoint {
	p.t.Helper()
	half := p.synReceived()
	p.Inject(Seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	ep, err := p.Listener.Accept()
	if err != nil {
		p.fail("tcptest: Accept: %v", err)
	}
	if ep != half {
		p.fail("tcptest: Accept returned another connection than the half-open one")
	}
	p.WantState(ep, event.Established)
	return ep
}

func (p *Peer) establishActive() *tcp.Endpoint {
	p.t.Helper()
	ep := p.Connect()
	p.Expect(Seg{Flags: p.stackSynFlags(), Seq: 0})
	synAck := p.SynOptions
	synAck.Flags, synAck.Seq, synAck.Ack, synAck.Payload, synAck.Len = p.peerSynFlags("S."), 0, 1, nil, 0
	p.Inject(synAck)
	p.Expect(Seg{Flags: ".", Seq: 1, Ack: 1})
	p.WantState(ep, event.Established)
	if ok, err := ep.Established(); !ok || err != nil {
		p.fail("tcptest: Established() = %v, %v after the handshake", ok, err)
	}
	return ep
}

// FinWait1 returns a connection the user closed (Close) in ESTABLISHED:
// the stack sent FIN (seq 1, ack 1), which the peer has read and not
// acknowledged. The stack's next seq is 2.
func FinWait1(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := Established(t, opts...)
	if err := ep.Close(); err != nil {
		p.fail("tcptest: Close: %v", err)
	}
	p.Expect(Seg{Flags: "F.", Seq: 1, Ack: 1})
	p.WantState(ep, event.FinWait1)
	return p, ep
}

// FinWait2 is FinWait1 after the peer acknowledged the FIN (seq 1, ack 2).
func FinWait2(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := FinWait1(t, opts...)
	p.Inject(Seg{Flags: ".", Seq: 1, Ack: 2})
	p.ExpectNothing()
	p.WantState(ep, event.FinWait2)
	return p, ep
}

// TimeWait is FinWait2 after the peer's FIN (seq 1, ack 2) and the
// stack's ACK of it (seq 2, ack 2).
func TimeWait(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := FinWait2(t, opts...)
	p.Inject(Seg{Flags: "F.", Seq: 1, Ack: 2})
	p.Expect(Seg{Flags: ".", Seq: 2, Ack: 2})
	p.WantState(ep, event.TimeWait)
	return p, ep
}

// Closing is FinWait1 after the peer's own FIN crossed ours: the peer sent
// FIN (seq 1, ack 1, not acknowledging our FIN) and the stack acknowledged
// it (seq 2, ack 2). Simultaneous close, RFC 9293 3.6 figure 13.
func Closing(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := FinWait1(t, opts...)
	p.Inject(Seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Expect(Seg{Flags: ".", Seq: 2, Ack: 2})
	p.WantState(ep, event.Closing)
	return p, ep
}

// CloseWait returns an established connection after the peer's FIN (seq
// 1, ack 1), acknowledged by the stack (seq 1, ack 2). As Linux's, the
// stack's ACK of a FIN waits on the delayed-ACK timer, a tick on a
// connection that has received no text: the clock has moved on by the
// options' DelayedAck.
func CloseWait(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := Established(t, opts...)
	p.Inject(Seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Advance(p.TCP.Options().DelayedAck)
	p.Expect(Seg{Flags: ".", Seq: 1, Ack: 2})
	p.WantState(ep, event.CloseWait)
	return p, ep
}

// LastAck is CloseWait after the user's Close: the stack sent its FIN
// (seq 1, ack 2), which the peer has read and not acknowledged.
func LastAck(t testing.TB, opts ...Option) (*Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := CloseWait(t, opts...)
	if err := ep.Close(); err != nil {
		p.fail("tcptest: Close: %v", err)
	}
	p.Expect(Seg{Flags: "F.", Seq: 1, Ack: 2})
	p.WantState(ep, event.LastAck)
	return p, ep
}
