package tcp_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestSynRetransmit: the SYN is retransmitted on the RTO, starting at the
// initial 1 s (RFC 6298 2.1) and doubling each time (5.5): at 1, 3 and 7 s.
// After SynRetries retransmissions the connection fails with ETIMEDOUT at
// 15 s, sending nothing more.
func TestSynRetransmit(t *testing.T) {
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{SynRetries: 3}))
	ep := p.Connect()
	p.Expect(seg{Flags: "S", Seq: 0})
	for _, at := range []time.Duration{time.Second, 3 * time.Second, 7 * time.Second} {
		p.Advance(at - p.Elapsed() - 1)
		p.ExpectNothing()
		p.Advance(1)
		p.Expect(seg{Flags: "S", Seq: 0})
		p.WantState(ep, event.SynSent)
	}
	p.Advance(15*time.Second - p.Elapsed() - 1)
	p.WantState(ep, event.SynSent)
	p.Advance(1)
	p.ExpectNothing()
	p.WantState(ep, event.Closed)
	if ok, err := ep.Established(); ok || !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Established() = %v, %v; want false, ETIMEDOUT", ok, err)
	}
}

// TestSynAckRetransmit: a half-open connection retransmits its SYN-ACK on
// the same schedule and is forgotten after SynAckRetries; the listener is
// unharmed.
func TestSynAckRetransmit(t *testing.T) {
	p, _ := tcptest.SynReceived(t, tcptest.WithTCP(tcp.Options{SynAckRetries: 2}))
	for _, at := range []time.Duration{time.Second, 3 * time.Second} {
		p.Advance(at - p.Elapsed() - 1)
		p.ExpectNothing()
		p.Advance(1)
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	}
	p.Advance(7*time.Second - p.Elapsed())
	p.ExpectNothing()
	if n := len(p.TCP.Connections()); n != 0 {
		t.Fatalf("%d connections after giving up, want 0", n)
	}
	if q := p.Listener.Queues(); q.SynQueueLen != 0 {
		t.Fatalf("SYN queue %d, want 0", q.SynQueueLen)
	}
	p.WantState(p.Listener, event.Listen)
}

// TestUserTimeoutHandshake: the user timeout (RFC 5482; RFC 9293 3.8.3)
// bounds the opening handshake too, since the SYN is the first octet sent
// and waits for its acknowledgment like any other. We follow Linux (since
// 5.4, tcp_write_timeout): in SYN-SENT, and in the SYN-RECEIVED of a
// simultaneous open, whichever of SynRetries and the user timeout runs
// out first ends the open with ETIMEDOUT, and the last retransmission
// timer is cut short to end at the user timeout
// (tcp_clamp_rto_to_user_timeout). With 5 s, counted from the first SYN:
// retransmissions at 1 and 3 s (RFC 6298 2.1, 5.5), the next RTO (7 s)
// clamped to 5 s, where the connection gives up without sending again,
// long before SynRetries' 127 s.
func TestUserTimeoutHandshake(t *testing.T) {
	for _, tc := range []struct {
		name  string
		open  func(*testing.T, tcptest.Option) (*tcptest.Peer, *tcp.Endpoint, seg)
		state event.State
	}{
		{"SYN-SENT", func(t *testing.T, o tcptest.Option) (*tcptest.Peer, *tcp.Endpoint, seg) {
			p, ep := tcptest.SynSent(t, o)
			return p, ep, seg{Flags: "S", Seq: 0}
		}, event.SynSent},
		{"SYN-RECEIVED", func(t *testing.T, o tcptest.Option) (*tcptest.Peer, *tcp.Endpoint, seg) {
			// Figure 8 of 3.5: the peer's SYN crosses ours, and our
			// SYN-ACK goes unanswered.
			p, ep := tcptest.SynSent(t, o)
			p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
			p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
			return p, ep, seg{Flags: "S.", Seq: 0, Ack: 1}
		}, event.SynReceived},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &events{}
			p, ep, again := tc.open(t, tcptest.WithTCP(tcp.Options{Observer: rec.observe}))
			ep.SetUserTimeout(5 * time.Second)
			for _, at := range []time.Duration{time.Second, 3 * time.Second} {
				p.Advance(at - p.Elapsed() - 1)
				p.ExpectNothing()
				p.Advance(1)
				p.Expect(again)
				p.WantState(ep, tc.state)
			}
			p.Advance(5*time.Second - p.Elapsed() - 1)
			p.WantState(ep, tc.state)
			p.Advance(1)
			p.ExpectNothing()
			p.WantState(ep, event.Closed)
			if ok, err := ep.Established(); ok || !errors.Is(err, syscall.ETIMEDOUT) {
				t.Fatalf("Established() = %v, %v; want false, ETIMEDOUT", ok, err)
			}
			p.TCP.SyncEvents()
			for _, ev := range rec.of(event.KindState) {
				if ev.To == event.Closed && ev.Cause.Detail != "user timeout (RFC 5482)" {
					t.Errorf("closed by %q, want the user timeout", ev.Cause.Detail)
				}
			}
		})
	}
}

// TestDataRetransmit: on the RTO the oldest segment is sent again, the
// congestion window falls to one segment (RFC 5681 3.1 equation 4) and the
// RTO doubles (RFC 6298 5.5); the next ACK grows cwnd by slow start and
// the rest goes again (go-back-N from SND.UNA).
func TestDataRetransmit(t *testing.T) {
	p, ep := tcptest.Established(t)
	rto := ep.Info().RTO
	data := payload(0, 3*1460)
	ep.Write(data)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Len: 1460})
	p.Advance(rto - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.ExpectNothing()
	if i := ep.Info(); i.Cwnd != 1460 || i.RTO != 2*rto || i.Retransmits != 1 {
		t.Errorf("after RTO: cwnd %d, RTO %v, retransmits %d; want 1460, %v, 1", i.Cwnd, i.RTO, i.Retransmits, 2*rto)
	}
	p.Advance(2*rto - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1461})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Payload: data[1460:2920]})
	p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Payload: data[2920:]})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.Advance(time.Minute)
	p.ExpectNothing()
	p.WantState(ep, event.Established)
}

// TestDataRetransmitGiveUp: after MaxRetries retransmissions the
// connection fails with ETIMEDOUT (RFC 9293 3.8.3, R2).
func TestDataRetransmitGiveUp(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{MaxRetries: 2}))
	rto := ep.Info().RTO
	ep.Write([]byte("x"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.Advance(rto)
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.Advance(2 * rto)
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.Advance(4*rto - 1)
	p.WantState(ep, event.Established)
	p.Advance(1)
	p.ExpectNothing()
	p.WantState(ep, event.Closed)
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read: %v, want ETIMEDOUT", err)
	}
	if n := p.TCP.Stats().Timeouts.Load(); n != 1 {
		t.Errorf("Timeouts %d, want 1", n)
	}
}

// TestDataRetransmitGiveUpByTime: MaxRetries bounds the time of the
// retransmissions, not their count, as Linux's retransmits_timed_out
// does: 15 stand for the 924.6 s that 15 timeouts take from an RTO of
// 200 ms doubled up to 120 s (tcp_model_timeout). With an RTO of 1 s (the
// route's rto_min here) the timeouts come at 1, 3, 7, ... 847 and 967 s:
// the one at 967 s gives up, after 13 retransmissions, where counting 15
// took 1,207 s.
func TestDataRetransmitGiveUpByTime(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{MinRTO: time.Second}))
	if rto := ep.Info().RTO; rto < time.Second || rto > time.Second+time.Millisecond {
		t.Fatalf("RTO %v, want 1s", rto)
	}
	ep.Write([]byte("x"))
	start := p.Elapsed()
	x := seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")}
	p.Expect(x)
	tries := 0
	for i := 0; i < 30 && ep.State() != event.Closed; i++ {
		p.Advance(ep.Info().RTO)
		if ep.State() != event.Closed {
			p.Expect(x)
			tries++
		}
	}
	p.WantState(ep, event.Closed)
	if took := p.Elapsed() - start; tries != 13 || took < 967*time.Second || took > 968*time.Second {
		t.Errorf("gave up after %d retransmissions, at %v; want 13, at 967 s", tries, took)
	}
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read: %v, want ETIMEDOUT", err)
	}
}

// TestFastRetransmit: without SACK, the third duplicate ACK retransmits
// the segment at SND.UNA at once, without waiting for the RTO (RFC 5681
// 3.2). Reno's ssthresh is FlightSize/2; the window then follows PRR (RFC
// 9937) rather than RFC 5681's inflation: each duplicate ACK stands for a
// segment delivered and pipe is 1 segment, below ssthresh, but a
// duplicate ACK does not advance SND.UNA, so the slow-start reduction
// bound sends only what was delivered (no extra MSS): cwnd is pipe plus
// one segment, as in Linux's tcp_cwnd_reduction.
func TestFastRetransmit(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{CongestionControl: "reno"}))
	data := payload(0, 5*1460)
	ep.Write(data)
	for i := range 5 {
		flags := "."
		if i == 4 {
			flags = "P."
		}
		p.Expect(seg{Flags: flags, Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460})
	}
	for range 2 {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		p.ExpectNothing()
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.ExpectNothing()
	if i := ep.Info(); i.Ssthresh != 3650 || i.Cwnd != 2920 || i.CAState != "fast recovery" {
		t.Errorf("%s, ssthresh %d, cwnd %d; want fast recovery, 3650, 2920", i.CAState, i.Ssthresh, i.Cwnd)
	}
	if n := p.TCP.Stats().Sent(event.SendFastRetransmit); n != 1 {
		t.Errorf("fast retransmits %d, want 1", n)
	}
}

// TestAckAfterGoBackN: after an RTO, SND.NXT goes back to SND.UNA, yet the
// peer may acknowledge everything sent before the timeout (only the ACKs
// were lost). That ACK is acceptable (RFC 5961 5.2 bounds it by what was
// sent) and must not be dropped as an ACK of unsent data.
func TestAckAfterGoBackN(t *testing.T) {
	p, ep := tcptest.Established(t)
	rto := ep.Info().RTO
	data := payload(0, 3*1460)
	ep.Write(data)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Len: 1460})
	p.Advance(rto)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.ExpectNothing()
	if i := ep.Info(); i.TCB.SndUna != i.TCB.ISS+4381 || i.SendQueued != 0 {
		t.Fatalf("after the ACK of all data: SND.UNA %d (ISS+%d), %d bytes queued; want ISS+4381, 0",
			i.TCB.SndUna, i.TCB.SndUna-i.TCB.ISS, i.SendQueued)
	}
	if n := p.TCP.Stats().Dropped(event.DropAckUnsent); n != 0 {
		t.Errorf("%d ACKs dropped as unsent data", n)
	}
}

// TestRTOKeepsBackoffWithoutSample: Karn's algorithm (RFC 6298 5.5 and the
// paragraph after 5.7, RFC 1122 4.2.3.1): the RTO backed off by a timeout
// stays backed off until a valid RTT measurement, even when new data is
// acknowledged. An ACK that covers only a retransmitted segment gives no
// measurement (no timestamps here), so the RTO stays doubled; the ACK of
// data sent once gives one and the backoff goes. Linux does the same: it
// resets icsk_backoff only in tcp_ack_update_rtt, on a valid sample.
func TestRTOKeepsBackoffWithoutSample(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Advance(100 * time.Millisecond)
	// A first exchange gives an RTT sample: SRTT 10 ms.
	ep.Write(payload(0, 100))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 100})
	p.Advance(10 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 101})
	rto := ep.Info().RTO
	ep.Write(payload(100, 2*1460))
	p.Expect(seg{Flags: ".", Seq: 101, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 1561, Ack: 1, Len: 1460})
	p.Advance(rto)
	p.Expect(seg{Flags: ".", Seq: 101, Ack: 1, Len: 1460})
	if got := ep.Info().RTO; got != 2*rto {
		t.Fatalf("RTO %v after the timeout, want %v", got, 2*rto)
	}
	// The ACK of the retransmission alone: new data acknowledged, no
	// RTT sample. The RTO keeps its backoff, and the timer restarted for
	// the rest (RFC 6298 5.3) runs for it.
	p.Advance(10 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1561})
	p.Expect(seg{Flags: "P.", Seq: 1561, Ack: 1, Len: 1460}) // deemed lost by the timeout
	p.ExpectNothing()
	if got := ep.Info().RTO; got != 2*rto {
		t.Errorf("RTO %v after an ACK that covers only a retransmitted segment, want the backed-off %v", got, 2*rto)
	}
	p.Advance(2*rto - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: "P.", Seq: 1561, Ack: 1, Len: 1460})
	if got := ep.Info().RTO; got != 4*rto {
		t.Fatalf("RTO %v after the second timeout, want %v", got, 4*rto)
	}
	p.Advance(10 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 3021})
	if got := ep.Info().RTO; got != 4*rto {
		t.Errorf("RTO %v after the ACK of the second retransmission, want the backed-off %v", got, 4*rto)
	}
	// Data sent once, acknowledged: a valid sample, and the backoff goes.
	ep.Write(payload(3020, 100))
	p.Expect(seg{Flags: "P.", Seq: 3021, Ack: 1, Len: 100})
	p.Advance(10 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 3121})
	if got := ep.Info().RTO; got >= 2*rto {
		t.Errorf("RTO %v after an RTT sample, want the backoff gone (below %v)", got, 2*rto)
	}
}

// TestBytesSentCountsRetransmissions: Info.BytesSent counts every byte
// of data put on the wire, a retransmission's again, as Linux's
// tcpi_bytes_sent (RFC 4898 tcpEStatsPerfHCDataOctetsOut, "including
// retransmitted data"), which ss prints as bytes_sent and the OpenTelemetry
// tracer as tcp.bytes_sent; BytesAcked counts each byte once. Three
// segments go, the RTO sends the first again: 4 segments' bytes sent, 3
// acknowledged.
func TestBytesSentCountsRetransmissions(t *testing.T) {
	p, ep := tcptest.Established(t)
	rto := ep.Info().RTO
	data := payload(0, 3*1460)
	ep.Write(data)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Len: 1460})
	if i := ep.Info(); i.BytesSent != 3*1460 {
		t.Errorf("bytes sent %d after the first flight, want %d", i.BytesSent, 3*1460)
	}
	p.Advance(rto)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.ExpectNothing()
	if i := ep.Info(); i.BytesSent != 4*1460 || i.BytesAcked != 3*1460 || i.Retransmits != 1 {
		t.Errorf("bytes sent %d, acked %d, %d retransmissions; want %d, %d, 1", i.BytesSent, i.BytesAcked, i.Retransmits, 4*1460, 3*1460)
	}
}

// TestRetransmitsCountHandshake: a SYN or SYN-ACK sent again on its timer
// is a retransmitted segment in Info.Retransmits and Stats.Retransmits,
// as Linux counts it in tcpi_total_retrans and RetransSegs (tcp_retransmit_skb
// for the SYN; tcp_rtx_synack, and the child's total_retrans taken from
// the request's num_retrans in tcp_create_openreq_child), and as the
// tracer's tcp.retransmits does.
func TestRetransmitsCountHandshake(t *testing.T) {
	t.Run("SYN", func(t *testing.T) {
		p, ep := tcptest.SynSent(t)
		p.Advance(time.Second)
		p.Expect(seg{Flags: "S", Seq: 0})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
		p.WantState(ep, event.Established)
		if n, st := ep.Info().Retransmits, p.TCP.Stats().Retransmits.Load(); n != 1 || st != 1 {
			t.Errorf("Info.Retransmits %d, Stats.Retransmits %d; want 1 and 1", n, st)
		}
	})
	t.Run("SYN-ACK", func(t *testing.T) {
		p, ep := tcptest.SynReceived(t)
		p.Advance(time.Second)
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		p.WantState(ep, event.Established)
		if n, st := ep.Info().Retransmits, p.TCP.Stats().Retransmits.Load(); n != 1 || st != 1 {
			t.Errorf("Info.Retransmits %d, Stats.Retransmits %d; want 1 and 1", n, st)
		}
	})
}
