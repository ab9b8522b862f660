package tcp_test

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Replies to unacceptable segments (RFC 9293 3.10.7.4) and their
// per-connection limit, Options.InvalidRateLimit (Linux's
// tcp_invalid_ratelimit, 500 ms).

const invalidRate = 500 * time.Millisecond // the default InvalidRateLimit

// peerIPv4 wraps the TCP segment b in an IPv4 header from the peer to the
// stack, for tests that inject the same packet many times with
// Peer.InjectIPv4, without tcptest's trace.
func peerIPv4(b []byte) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+len(b))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(tcptest.PeerAddr.As4()), DstAddr: tcpip.AddrFrom4(tcptest.StackAddr.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], b)
	return pkt
}

// TestZeroWindowDataAcked: a data segment at RCV.NXT while our window is
// zero is not acceptable (3.10.7.4's table), yet "special allowance
// should be made to accept valid ACKs": its ACK field is processed, its
// text dropped (DropZeroWindow), and it is answered with an ACK that
// repeats the zero window, every time (data is exempt from
// InvalidRateLimit, as in Linux). Once the
// user reads, the window update goes at once and the next probe's byte is
// taken.
func TestZeroWindowDataAcked(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: 2000}))
	ep.Write([]byte("abc"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("abc")})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
	p.Expect(seg{Flags: ".", Seq: 4, Ack: 1461, Win: 540, Check: tcptest.CheckWin}) // a quick ACK
	p.Inject(seg{Flags: "P.", Seq: 1461, Ack: 1, Payload: payload(1460, 540)})
	p.Expect(seg{Flags: ".", Seq: 4, Ack: 2001, Win: 0, Check: tcptest.CheckWin})

	// A one-byte probe into the zero window, as BSD and gVisor send
	// them; it acknowledges "abc".
	probe := seg{Flags: "P.", Seq: 2001, Ack: 4, Payload: []byte("x")}
	p.Inject(probe)
	p.Expect(seg{Flags: ".", Seq: 4, Ack: 2001, Win: 0, Check: tcptest.CheckWin})
	if n := ep.SendQueued(); n != 0 {
		t.Errorf("%d bytes still queued: the probe's ACK was not taken", n)
	}
	wantCount(t, "Dropped(zero window)", p.TCP.Stats().Dropped(event.DropZeroWindow), 1)

	// Every probe is answered, as in Linux: the reply to a data segment
	// is not rate limited (tcp_oow_rate_limited), and each one tells the
	// prober the window is still closed.
	p.Inject(probe)
	p.Expect(seg{Flags: ".", Seq: 4, Ack: 2001, Win: 0, Check: tcptest.CheckWin})
	p.Inject(probe)
	p.Expect(seg{Flags: ".", Seq: 4, Ack: 2001, Win: 0, Check: tcptest.CheckWin})
	wantCount(t, "Dropped(zero window)", p.TCP.Stats().Dropped(event.DropZeroWindow), 3)
	wantCount(t, "Dropped(ACK rate limited)", p.TCP.Stats().Dropped(event.DropAckRateLimited), 0)

	// The user reads: the window update goes, unlimited.
	if got := readAll(t, ep); len(got) != 2000 {
		t.Fatalf("read %d bytes, want 2000", len(got))
	}
	p.Expect(seg{Flags: ".", Seq: 4, Ack: 2001, Win: 2000})
	p.Inject(probe)
	p.ExpectNothing() // taken; its ACK is delayed
	buf := make([]byte, 4)
	if n, err := ep.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("Read = %q, %v; want the probe's byte", buf[:n], err)
	}
	p.WantState(ep, event.Established)
}

// TestZeroWindowRstAndFin: the allowance covers a RST; a FIN after text
// into a zero window lies beyond the window and goes with the text.
func TestZeroWindowRstAndFin(t *testing.T) {
	full := func(t *testing.T) (*tcptest.Peer, *tcp.Endpoint) {
		p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: 1460}))
		p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
		p.Advance(40 * time.Millisecond)
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1461, Win: 0, Check: tcptest.CheckWin})
		return p, ep
	}
	t.Run("FIN", func(t *testing.T) {
		p, ep := full(t)
		p.Inject(seg{Flags: "FP.", Seq: 1461, Ack: 1, Payload: []byte("x")})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1461, Win: 0, Check: tcptest.CheckWin})
		p.WantState(ep, event.Established)
	})
	t.Run("RST", func(t *testing.T) {
		p, ep := full(t)
		p.Inject(seg{Flags: "R.", Seq: 1461, Ack: 1, Payload: []byte("x")})
		p.ExpectNothing()
		p.WantState(ep, event.Closed)
	})
}

// TestUnacceptableRateLimit: every ACK the RFCs ask for in reply to an
// unacceptable segment shares one per-connection limit: the first is
// sent, any other within InvalidRateLimit is counted as
// DropAckRateLimited and not sent, whatever its kind, challenge ACKs
// (RFC 5961) included, except the reply to a segment with text or a FIN
// and no SYN, which Linux never limits. After the interval the next one
// goes again.
func TestUnacceptableRateLimit(t *testing.T) {
	kinds := []struct {
		name   string
		in     seg
		reason event.DropReason
		length bool // text or a FIN, no SYN: answered whatever the limit
	}{
		{"data beyond the window", seg{Flags: "P.", Seq: 1 << 30, Ack: 1, Payload: []byte("x")}, event.DropOutOfWindow, true},
		{"FIN beyond the window", seg{Flags: "F.", Seq: 1 << 30, Ack: 1}, event.DropOutOfWindow, true},
		{"old duplicate", seg{Flags: ".", Seq: 0, Ack: 1}, event.DropOldSequence, false},
		{"PAWS", seg{Flags: ".", Seq: 1, Ack: 1, TS: true, TSVal: 1}, event.DropPAWS, false},
		{"ACK of unsent data", seg{Flags: ".", Seq: 1, Ack: 1000}, event.DropAckUnsent, false},
		{"RST in the window (challenge)", seg{Flags: "R", Seq: 100}, event.DropRstInvalid, false},
		{"SYN (challenge)", seg{Flags: "S", Seq: 1}, event.DropSynUnexpected, false},
		{"ACK too old (challenge)", seg{Flags: ".", Seq: 1, Ack: 1 + 3<<30}, event.DropInvalidAck, false},
	}
	for _, first := range kinds {
		for _, second := range kinds {
			t.Run(first.name+", then "+second.name, func(t *testing.T) {
				p, ep := tcptest.Established(t, tcptest.WithTimestamps())
				// TS.Recent is the peer's last TSval; a TSval of 1
				// is older, so only the PAWS case is rejected by it.
				p.Inject(first.in)
				p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
				p.Inject(second.in)
				// As Linux (tcp_oow_rate_limited), the reply to a
				// segment with text or a FIN is never limited and
				// does not use the budget: no ACK loop carries either.
				limited := uint64(1)
				if first.length || second.length {
					p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
					limited = 0
				} else {
					p.ExpectNothing()
				}
				wantCount(t, "Dropped(ACK rate limited)", p.TCP.Stats().Dropped(event.DropAckRateLimited), limited)
				want := uint64(1)
				if first.reason == second.reason {
					want = 2
				}
				wantCount(t, "Dropped("+second.reason.String()+")", p.TCP.Stats().Dropped(second.reason), want)
				p.Advance(invalidRate)
				p.Inject(second.in)
				p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
				p.WantState(ep, event.Established)
			})
		}
	}
}

// TestUnacceptableRateLimitOff: a negative InvalidRateLimit answers every
// unacceptable segment, as before the limit existed.
func TestUnacceptableRateLimitOff(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithTCP(tcp.Options{InvalidRateLimit: -1}))
	for range 5 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1000})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	}
	wantCount(t, "Dropped(ACK rate limited)", p.TCP.Stats().Dropped(event.DropAckRateLimited), 0)
}

// TestAckUnsentFlood: 100,000 ACKs of data never sent (RFC 9293 3.10.7.4
// fifth step, RFC 5961 5.2: "send an ACK, drop the segment") in one
// instant of fake time get one ACK, not 100,000; every one is counted,
// and the connection still moves data afterwards.
func TestAckUnsentFlood(t *testing.T) {
	const n = 100_000
	p, ep := tcptest.Established(t)
	pkt := peerIPv4(p.Encode(seg{Flags: ".", Seq: 1, Ack: 1000}))
	for range n {
		p.InjectIPv4(pkt)
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	st := p.TCP.Stats()
	wantCount(t, "Dropped(ACK of unsent data)", st.Dropped(event.DropAckUnsent), n)
	wantCount(t, "Dropped(ACK rate limited)", st.Dropped(event.DropAckRateLimited), n-1)
	wantCount(t, "Sent(ack)", st.Sent(event.SendAck), 1)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("still here")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 11}) // the first data: a quick ACK
	ep.Write([]byte("yes"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 11, Payload: []byte("yes")})
}

// TestTimeWaitFinAlwaysAcked: a retransmitted FIN in TIME-WAIT is not
// rate limited: the peer in LAST-ACK cannot close without our ACK, and
// its retransmission timer may be shorter than InvalidRateLimit.
func TestTimeWaitFinAlwaysAcked(t *testing.T) {
	p, ep := tcptest.TimeWait(t)
	for range 3 {
		p.Advance(200 * time.Millisecond)
		p.Inject(seg{Flags: "F.", Seq: 1, Ack: 2})
		p.Expect(seg{Flags: ".", Seq: 2, Ack: 2})
	}
	p.WantState(ep, event.TimeWait)
}

// TestRetransmittedFinAlwaysAcked: the peer's FIN was acknowledged but the
// ACK was lost, so the peer retransmits the FIN on its RTO's backoff (200
// ms, then 400 ms). Each copy lies below RCV.NXT and fails the sequence
// check, which asks for <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 9293
// 3.10.7.4, first step). That reply is not held to InvalidRateLimit: as
// Linux's tcp_oow_rate_limited, which exempts any segment with seq !=
// end_seq and no SYN, a FIN counts as length as text does. Without it the
// peer in FIN-WAIT or LAST-ACK would wait for another copy, or never
// close. TIME-WAIT's record answers every such FIN too
// (TestTimeWaitFinAlwaysAcked).
func TestRetransmittedFinAlwaysAcked(t *testing.T) {
	for _, tc := range []struct {
		state  event.State
		open   func(testing.TB, ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint)
		sndNxt uint32
	}{
		{event.CloseWait, tcptest.CloseWait, 1},
		{event.Closing, tcptest.Closing, 2},
		{event.LastAck, tcptest.LastAck, 2},
	} {
		t.Run(tc.state.String(), func(t *testing.T) {
			// Our own FIN, unacknowledged in CLOSING and LAST-ACK,
			// waits out a long RTO: the trace holds the peer's copies
			// and their answers only.
			p, ep := tc.open(t, tcptest.WithTCP(tcp.Options{InitialRTO: 3 * time.Second, MinRTO: 3 * time.Second}))
			for _, rto := range []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond} {
				p.Advance(rto)
				p.Inject(seg{Flags: "F.", Seq: 1, Ack: 1})
				p.Expect(seg{Flags: ".", Seq: tc.sndNxt, Ack: 2})
			}
			p.ExpectNothing()
			p.WantState(ep, tc.state)
			wantCount(t, "Dropped(old sequence)", p.TCP.Stats().Dropped(event.DropOldSequence), 3)
			wantCount(t, "Dropped(ACK rate limited)", p.TCP.Stats().Dropped(event.DropAckRateLimited), 0)
		})
	}
}

// TestUnacceptableMixedFloodOneReply: a peer floods an established
// connection with every kind of segment that asks for a reply, 2,000 of
// each in one instant of fake time: SYNs (RFC 5961 4), RSTs in the
// window but not at RCV.NXT (RFC 5961 3.2), ACKs of data never sent
// (RFC 5961 5.2) and bare ACKs beyond the window (RFC 9293 3.10.7.4).
// They share one per-connection limit, InvalidRateLimit (Linux's
// tcp_invalid_ratelimit, tcp_oow_rate_limited): one reply goes out, and
// every other is a counted drop. From an audit of what a hostile peer
// can make the engine do, where it passed; kept as coverage.
func TestUnacceptableMixedFloodOneReply(t *testing.T) {
	const each = 2_000
	p, ep := tcptest.Established(t)
	tcb := ep.Info().TCB
	raw := &rawPeer{p: p, peerPort: p.PeerPort, stackPort: p.StackPort}
	irs, iss := uint32(tcb.IRS), uint32(tcb.ISS)
	st := p.TCP.Stats()
	out0 := st.SegmentsOut.Load()
	for i := range each {
		raw.inject(irs+1, iss+1, header.TCPFlagSyn, 0xffff, nil)                // SYN in ESTABLISHED
		raw.inject(irs+1+uint32(i%1000)+1, 0, header.TCPFlagRst, 0xffff, nil)   // RST in the window, not at RCV.NXT
		raw.inject(irs+1, iss+1+1000+uint32(i), header.TCPFlagAck, 0xffff, nil) // ACK of unsent data
		raw.inject(irs+1+1<<30, iss+1, header.TCPFlagAck, 0xffff, nil)          // bare ACK beyond the window
		raw.discard()
	}
	out := st.SegmentsOut.Load() - out0
	limited := st.Dropped(event.DropAckRateLimited) + st.Dropped(event.DropChallengeRateLimited)
	if out != 1 || raw.replies != 1 {
		t.Errorf("%d replies (%d on the link) to %d unacceptable segments within one InvalidRateLimit, want 1", out, raw.replies, 4*each)
	}
	if limited != 4*each-1 {
		t.Errorf("%d replies counted as rate limited, want %d", limited, 4*each-1)
	}
	p.WantState(ep, event.Established)
}
