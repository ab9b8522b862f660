package tcp_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TCP-LD (RFC 6069), as Linux's tcp_ld_RTO_revert: a net or host
// unreachable that quotes the segment the RTO is retransmitting says the
// path is down, not congested, and takes back one doubling of the RTO.

// backedOff sends "x" on an established connection and lets the peer stay
// silent through two retransmission timeouts: the RTO is four times the
// first, backed off twice. It returns the first RTO.
func backedOff(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) time.Duration {
	t.Helper()
	ep.Write([]byte("x"))
	x := seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")}
	p.Expect(x)
	rto := ep.Info().RTO
	p.Advance(rto)
	p.Expect(x)
	p.Advance(2 * rto)
	p.Expect(x)
	if i := ep.Info(); i.RTO != 4*rto || i.Backoff != 2 {
		t.Fatalf("after two timeouts: RTO %v, backoff %d; want %v, 2", i.RTO, i.Backoff, 4*rto)
	}
	return rto
}

// TestRTORevertOnUnreachable: "x" backed off twice (RTO 4R); R after the
// second retransmission a host unreachable quoting it (SEG.SEQ ==
// SND.UNA) arrives. The RTO goes back to 2R, the backoff to 1, and the
// timer fires 2R after that retransmission left, R from now, not 4R. The
// peer answers it: the path is back, and new data goes out at once. The
// ICMP error stays a soft error all along.
func TestRTORevertOnUnreachable(t *testing.T) {
	var notes []string
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: func(ev event.Event) {
		if ev.Kind == event.KindRecovery && strings.Contains(ev.Note, "RFC 6069") {
			notes = append(notes, ev.Note+"; "+ev.Cause.Detail)
		}
	}}))
	rto := backedOff(t, p, ep)
	x := seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")}
	p.Advance(rto)
	p.InjectIPv4(icmpUnreachable(p, header.ICMPv4HostUnreachable, 1))
	p.WantState(ep, event.Established)
	if i := ep.Info(); i.RTO != 2*rto || i.Backoff != 1 {
		t.Errorf("after the host unreachable: RTO %v, backoff %d; want %v, 1", i.RTO, i.Backoff, 2*rto)
	}
	wantCount(t, "RTOReverts", p.TCP.Stats().RTOReverts.Load(), 1)
	p.TCP.SyncEvents()
	if want := "RTO backoff reverted (RFC 6069); ICMP no route to host"; len(notes) != 1 || notes[0] != want {
		t.Errorf("recovery notes %q, want one %q", notes, want)
	}
	p.Advance(rto - time.Millisecond)
	p.ExpectNothing()
	p.Advance(time.Millisecond)
	p.Expect(x)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	ep.Write([]byte("y"))
	p.Expect(seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("y")})
}

// TestRTORevertRetransmitsAtOnce: the revert leaves an RTO (2R) that has
// already run out since the last retransmission (3R ago): it goes at
// once, as Linux's tcp_ld_RTO_revert calls tcp_retransmit_timer, a
// timeout like any other (backed off again to 4R).
func TestRTORevertRetransmitsAtOnce(t *testing.T) {
	p, ep := tcptest.Established(t)
	rto := backedOff(t, p, ep)
	p.Advance(3 * rto)
	timeouts := p.TCP.Stats().RetransmitTimeouts.Load()
	p.InjectIPv4(icmpUnreachable(p, header.ICMPv4NetUnreachable, 1))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	wantCount(t, "RetransmitTimeouts", p.TCP.Stats().RetransmitTimeouts.Load(), timeouts+1)
	wantCount(t, "RTOReverts", p.TCP.Stats().RTOReverts.Load(), 1)
	if i := ep.Info(); i.RTO != 4*rto || i.Backoff != 2 {
		t.Errorf("after the retransmission: RTO %v, backoff %d; want %v, 2", i.RTO, i.Backoff, 4*rto)
	}
}

// TestRTORevertNot: what does not revert. An error quoting another
// sequence number than SND.UNA (here SND.NXT, which passes RFC 5927's
// check), another code than net or host unreachable (Linux's tcp_v4_err
// reverts for codes 0 and 1 alone: not for a port unreachable, nor for
// destination network unknown (6) or an administratively prohibited
// network or host (9, 10, 13), which gVisor hands on as net or host
// unreachable without their code), or one before any timeout (nothing
// backed off: Linux's icsk_retransmits and icsk_backoff are zero) leaves
// the RTO and the timer as they were; each is still a soft error.
func TestRTORevertNot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		code     header.ICMPv4Code
		seq      uint32
		timeouts bool
	}{
		{"SND.NXT", header.ICMPv4HostUnreachable, 2, true},
		{"port unreachable", header.ICMPv4PortUnreachable, 1, true},
		{"destination network unknown", header.ICMPv4DestinationNetworkUnknown, 1, true},
		{"network administratively prohibited", header.ICMPv4NetProhibited, 1, true},
		{"host administratively prohibited", header.ICMPv4HostProhibited, 1, true},
		{"communication administratively prohibited", header.ICMPv4AdminProhibited, 1, true},
		{"no timeout yet", header.ICMPv4HostUnreachable, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			rto, backoff := ep.Info().RTO, 0
			if tc.timeouts {
				rto, backoff = 4*backedOff(t, p, ep), 2
			} else {
				ep.Write([]byte("x"))
				p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
			}
			p.InjectIPv4(icmpUnreachable(p, tc.code, tc.seq))
			if i := ep.Info(); i.RTO != rto || i.Backoff != backoff {
				t.Errorf("RTO %v, backoff %d; want %v, %d unchanged", i.RTO, i.Backoff, rto, backoff)
			}
			wantCount(t, "RTOReverts", p.TCP.Stats().RTOReverts.Load(), 0)
			p.Advance(rto - time.Millisecond)
			p.ExpectNothing()
			p.Advance(time.Millisecond)
			p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
		})
	}
}

// TestRTORevertSoftError: a path that stays down, each retransmission
// answered by a host unreachable. Every one takes its backoff back, so the
// RTO stays at R; the connection gives up by time, as Linux's
// retransmits_timed_out does, once MaxRetries (3) retransmissions would
// have taken from 200 ms doubled (3 s), not after 3 tries: RFC 6069's
// point is to keep trying, quickly, through the disruption. The user
// then sees the ICMP error it heard (EHOSTUNREACH), not ETIMEDOUT.
func TestRTORevertSoftError(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{MaxRetries: 3}))
	ep.Write([]byte("x"))
	start := p.Elapsed()
	x := seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")}
	p.Expect(x)
	rto := ep.Info().RTO
	tries := 0
	for i := 0; i < 100 && ep.State() != event.Closed; i++ {
		p.Advance(rto)
		if ep.State() == event.Closed {
			break
		}
		p.Expect(x)
		tries++
		p.InjectIPv4(icmpUnreachable(p, header.ICMPv4HostUnreachable, 1))
		if got := ep.Info().RTO; got != rto {
			t.Fatalf("RTO %v after the unreachable, want %v", got, rto)
		}
	}
	p.WantState(ep, event.Closed)
	wantCount(t, "RTOReverts", p.TCP.Stats().RTOReverts.Load(), uint64(tries))
	if took, model := p.Elapsed()-start, 3*time.Second; took < model || took >= model+rto {
		t.Errorf("gave up after %v and %d retransmissions; want at %v, the time 3 would take from 200 ms", took, tries, model)
	}
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Fatalf("Read after the timeout: %v, want EHOSTUNREACH", err)
	}
}

// TestRTORevert6: over IPv6 the disruption is a destination unreachable
// with code 0, no route to destination (RFC 6069 3, Linux's tcp_v6_err);
// address unreachable (code 3) reverts nothing, as in Linux.
func TestRTORevert6(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    header.ICMPv6Code
		reverts uint64
	}{
		{"no route", header.ICMPv6NetworkUnreachable, 1},
		{"address unreachable", header.ICMPv6AddressUnreachable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer6(t, tcp.Options{})
			ep := p.established()
			ep.Write([]byte("x"))
			sent := p.drain()
			if len(sent) != 1 {
				t.Fatalf("sent %v, want one segment", sent)
			}
			rto := ep.Info().RTO
			p.Advance(rto)
			p.Advance(2 * rto)
			if n := len(p.drain()); n != 2 {
				t.Fatalf("%d retransmissions, want 2", n)
			}
			p.injectIPv6(routerAddr6, header.ICMPv6ProtocolNumber, destinationUnreachable(sent[0].packet, tc.code))
			want := 4 * rto
			if tc.reverts == 1 {
				want = 2 * rto
			}
			if got := ep.Info().RTO; got != want {
				t.Errorf("RTO %v after the ICMPv6 error, want %v", got, want)
			}
			wantCount(t, "RTOReverts", p.TCP.Stats().RTOReverts.Load(), tc.reverts)
		})
	}
}
