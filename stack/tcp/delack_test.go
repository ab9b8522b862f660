package tcp_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// The receiver's ACK policy (delack.go): RFC 1122's delayed ACK, with
// Linux's quick-ACK and ping-pong modes on top.

// TestDelayedAck: without quick-ACK mode, a single in-order segment is
// acknowledged after the delayed-ACK timeout (RFC 9293 3.8.6.3; 40 ms
// like Linux), a second full one at once (RFC 5681 4.2: at least every
// second full-sized segment).
func TestDelayedAck(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
	p.ExpectNothing()
	p.Advance(40*time.Millisecond - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 101})
	if n := p.TCP.Stats().Sent(event.SendDelayedAck); n != 1 {
		t.Errorf("%d ACKs sent as delayed ACKs, want 1", n)
	}

	p.Inject(seg{Flags: ".", Seq: 101, Ack: 1, Payload: payload(100, 1460)})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1561, Ack: 1, Payload: payload(1560, 1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 3021})
	p.Advance(time.Second)
	p.ExpectNothing() // the delayed ACK was cancelled by the immediate one
	if got := readAll(t, ep); !bytes.Equal(got, payload(0, 3020)) {
		t.Fatalf("Read %d bytes, want 3020 in order", len(got))
	}
}

// TestAckCoalescedSegment: "every second full-sized segment" counts
// bytes against the largest segment the peer has sent (Linux
// tcp_measure_rcv_mss): one segment of two MSS, as a peer's GSO or our
// own GRO makes, is ACKed at once, as the two it stands for would be.
func TestAckCoalescedSegment(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
	p.ExpectNothing() // one full segment: delayed
	p.Inject(seg{Flags: ".", Seq: 1461, Ack: 1, Payload: payload(1460, 2920)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.Inject(seg{Flags: ".", Seq: 4381, Ack: 1, Payload: payload(4380, 2920)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 7301})
}

// TestQuickAck: the first data of a connection is ACKed at once, for up
// to 16 ACKs (half the window in full frames, Linux TCP_MAX_QUICKACKS),
// so a sender in slow start is not held back by our delayed ACK; then
// the delayed ACK returns; after an idle spell longer than the RTO the
// quick ACKs start again (Linux tcp_event_data_recv).
func TestQuickAck(t *testing.T) {
	p, ep := tcptest.Established(t)
	in := &inOrder{p: p}
	in.spendQuickAcks()
	if got := ep.Info(); got.RTO <= 0 {
		t.Fatalf("RTO %v", got.RTO)
	}

	// Idle for longer than the RTO: quick again.
	p.Advance(ep.Info().RTO + time.Millisecond)
	in.send()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq})
}

// inOrder feeds a connection 100-byte segments in order, from sequence
// number 1.
type inOrder struct {
	p   *tcptest.Peer
	seq uint32 // the next segment's
}

func (in *inOrder) send() {
	if in.seq == 0 {
		in.seq = 1
	}
	in.p.Inject(seg{Flags: "P.", Seq: in.seq, Ack: 1, Payload: payload(int(in.seq-1), 100)})
	in.seq += 100
}

// spendQuickAcks sends the first data: 16 segments ACKed at once, then
// one whose ACK waits for the delayed-ACK timer.
func (in *inOrder) spendQuickAcks() {
	for range 16 {
		in.send()
		in.p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq})
	}
	in.send()
	in.p.ExpectNothing() // the quick ACKs are spent
	in.p.Advance(40 * time.Millisecond)
	in.p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq})
}

// TestPingPong: once we answer data within the delayed-ACK time, the
// exchange is interactive and the ACK waits to ride on the reply
// (RFC 9293 3.8.6.3; Linux ping-pong mode). A reply that does not come
// in time lets the delayed ACK go and ends ping-pong mode, so the next
// request is ACKed at once again.
func TestPingPong(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("ping")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 5}) // the first data: a quick ACK
	ep.Write([]byte("pong"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 5, Payload: []byte("pong")})
	p.Inject(seg{Flags: ".", Seq: 5, Ack: 5})

	// Interactive now: the ACK of the next request rides on the reply.
	p.Inject(seg{Flags: "P.", Seq: 5, Ack: 5, Payload: []byte("ping")})
	p.ExpectNothing()
	ep.Write([]byte("pong"))
	p.Expect(seg{Flags: "P.", Seq: 5, Ack: 9, Payload: []byte("pong")})
	p.Inject(seg{Flags: ".", Seq: 9, Ack: 9})
	p.Advance(40 * time.Millisecond)
	p.ExpectNothing() // the piggybacked ACK cancelled the delayed one

	// No reply this time: the delayed ACK goes, ping-pong ends.
	p.Inject(seg{Flags: "P.", Seq: 9, Ack: 9, Payload: []byte("ping")})
	p.ExpectNothing()
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 9, Ack: 13})
	p.Inject(seg{Flags: "P.", Seq: 13, Ack: 9, Payload: []byte("ping")})
	p.Expect(seg{Flags: ".", Seq: 9, Ack: 17})
}

// TestQuickAckOnRetransmission: text we already have means the peer
// missed our ACK; the ACK goes at once, and the ACKs after it do too,
// even in ping-pong mode (Linux tcp_data_queue: tcp_enter_quickack_mode).
func TestQuickAckOnRetransmission(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("ping")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 5})
	ep.Write([]byte("pong"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 5, Payload: []byte("pong")})
	p.Inject(seg{Flags: "P.", Seq: 5, Ack: 5, Payload: []byte("ping")})
	p.ExpectNothing() // ping-pong: waiting for the reply
	p.Inject(seg{Flags: "P.", Seq: 5, Ack: 5, Payload: []byte("ping")})
	p.Expect(seg{Flags: ".", Seq: 5, Ack: 9})
	p.Inject(seg{Flags: "P.", Seq: 9, Ack: 5, Payload: []byte("ping")})
	p.Expect(seg{Flags: ".", Seq: 5, Ack: 13}) // quick, ping-pong is over
}

// TestQuickAckNotOnCopy: with timestamps, text we have that carries the
// TSval it had the first time is a copy the network made, not the peer
// retransmitting (peerRetransmitted): it is ACKed at once, but it says
// nothing of our ACKs, and the receiver stays in ping-pong mode. The same
// text with a later TSval is a retransmission, and the ACKs after it go
// at once (TestQuickAckOnRetransmission).
func TestQuickAckNotOnCopy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		later time.Duration // between the text and its repeat
		quick bool          // the next text's ACK goes at once
	}{
		{"copy", 0, false},
		{"copy a tick later", time.Millisecond, false}, // the original set TS.Recent; the copy is no newer
		{"retransmission", 3 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.WithTimestamps())
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("ping")})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 5})
			ep.Write([]byte("pong"))
			p.Expect(seg{Flags: "P.", Seq: 1, Ack: 5, Payload: []byte("pong")})
			ping := seg{Flags: "P.", Seq: 5, Ack: 5, Payload: []byte("ping"), TS: true, TSVal: p.TSClock(), TSEcr: p.LastTSVal}
			p.Inject(ping)
			p.ExpectNothing() // ping-pong: waiting for the reply
			p.Advance(tc.later)
			if tc.quick {
				ping.TSVal = p.TSClock() // sent again now
			}
			p.Inject(ping)
			p.Expect(seg{Flags: ".", Seq: 5, Ack: 9}) // at once either way
			p.Inject(seg{Flags: "P.", Seq: 9, Ack: 5, Payload: []byte("ping")})
			if tc.quick {
				p.Expect(seg{Flags: ".", Seq: 5, Ack: 13}) // ping-pong is over
				return
			}
			p.ExpectNothing() // still ping-pong: the delayed ACK
			p.Advance(40 * time.Millisecond)
			p.Expect(seg{Flags: ".", Seq: 5, Ack: 13})
		})
	}
}

// TestCopyJudgedByNewestTSval: TS.Recent stays at the earliest segment a
// delayed ACK will cover (RFC 7323 4.3), so a copy of a later segment
// carries a TSval newer than TS.Recent; it is judged by the newest TSval
// taken in, and is still a copy: no quick ACKs after it.
func TestCopyJudgedByNewestTSval(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithTimestamps())
	in := &inOrder{p: p}
	in.spendQuickAcks()
	a := seg{Flags: "P.", Seq: in.seq, Ack: 1, Payload: payload(int(in.seq-1), 100), TS: true, TSVal: p.TSClock(), TSEcr: p.LastTSVal}
	p.Inject(a) // TS.Recent: a's TSval
	p.ExpectNothing()
	p.Advance(time.Millisecond)
	b := seg{Flags: "P.", Seq: in.seq + 100, Ack: 1, Payload: payload(int(in.seq+99), 100), TS: true, TSVal: p.TSClock(), TSEcr: p.LastTSVal}
	p.Inject(b) // past Last.ACK.sent: TS.Recent stays a's
	p.ExpectNothing()
	p.Inject(b) // b's copy, a tick newer than TS.Recent
	p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq + 200})
	in.seq += 200
	in.send()
	p.ExpectNothing() // no quick ACK: the delayed ACK
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq})
}

// TestQuickAckAfterHole: out-of-order text means the peer is losing
// segments, and the segments after the hole are filled are its loss
// recovery's, often one at a time: a delayed ACK there holds the
// recovery for the delayed-ACK time, and every RTT sample it gives
// inflates the peer's SRTT and PTO. So a hole puts the receiver in
// quick-ACK mode (RFC 5681 4.2: out-of-order data is acknowledged at
// once "to accelerate loss recovery").
func TestQuickAckAfterHole(t *testing.T) {
	p, _ := tcptest.Established(t)
	in := &inOrder{p: p}
	in.spendQuickAcks()

	// in.seq is lost; the one after it arrives: a duplicate ACK at once.
	hole := in.seq
	in.seq += 100
	in.send()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: hole})
	next := in.seq
	in.seq = hole
	in.send() // the retransmission fills the hole: an ACK at once
	in.seq = next
	p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq})
	in.send() // the recovery's next segment, alone: at once too
	p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq})
	in.send()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: in.seq})
}

// TestLastDataRecv: Info's LastDataRecv counts from the connection's
// establishment until data arrives, then from the last data (Linux
// tcpi_last_data_recv); an ACK without data does not reset it.
func TestLastDataRecv(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Advance(time.Second)
	if got := ep.Info().LastDataRecv; got != time.Second {
		t.Fatalf("LastDataRecv %v before any data, want 1s", got)
	}
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2})
	p.Advance(10 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 1})
	if got := ep.Info().LastDataRecv; got != 10*time.Millisecond {
		t.Fatalf("LastDataRecv %v, want 10ms", got)
	}
}

// TestFinAck: the ACK of a FIN that arrives in ESTABLISHED waits on the
// delayed-ACK timer, as Linux's (tcp_fin enters ping-pong mode), so an
// application that closes in time puts it on its own FIN and a passive
// close is three segments: a tick (1 ms) on a connection that has
// received no text, DelayedAck after text. It goes at once when more
// than a full frame is unacknowledged with the FIN, when the FIN fills
// a hole, and in FIN-WAIT-2, where our own FIN is out.
func TestFinAck(t *testing.T) {
	const tick = time.Millisecond
	const delack = 40 * time.Millisecond
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint)
	}{
		{"no text: a tick", func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(seg{Flags: "F.", Seq: 1, Ack: 1})
			p.WantState(ep, event.CloseWait)
			p.Advance(tick - 1)
			p.ExpectNothing()
			p.Advance(1)
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 2})
			wantSent(t, p, event.SendDelayedAck, 1)
		}},
		{"no text: the close carries it", func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(seg{Flags: "F.", Seq: 1, Ack: 1})
			p.Advance(tick / 2)
			ep.Close()
			p.Expect(seg{Flags: "F.", Seq: 1, Ack: 2})
			p.Inject(seg{Flags: ".", Seq: 2, Ack: 2})
			p.WantState(ep, event.Closed)
			p.Advance(time.Second)
			p.ExpectNothing()
			wantSent(t, p, event.SendDelayedAck, 0)
		}},
		{"after text: DelayedAck, and the reply carries it", func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			// A request and its FIN together, as an HTTP/1.0 client
			// sends them: quick-ACK mode would ACK the text at once,
			// the FIN's ping-pong mode holds it for the reply.
			p.Inject(seg{Flags: "FP.", Seq: 1, Ack: 1, Payload: []byte("GET /")})
			p.Advance(delack - tick)
			p.ExpectNothing()
			ep.Write([]byte("200"))
			p.Expect(seg{Flags: "P.", Seq: 1, Ack: 7, Payload: []byte("200")})
			p.Inject(seg{Flags: ".", Seq: 7, Ack: 4})
			p.Advance(time.Second)
			p.ExpectNothing() // the timer's ACK was carried by the reply
			wantSent(t, p, event.SendDelayedAck, 0)
			wantSent(t, p, event.SendAck, 0)
		}},
		{"after text: the timer", func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 101}) // the first text: a quick ACK
			p.Inject(seg{Flags: "F.", Seq: 101, Ack: 1})
			p.Advance(delack - 1)
			p.ExpectNothing()
			p.Advance(1)
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 102})
			wantSent(t, p, event.SendDelayedAck, 1)
		}},
		{"a full frame and the FIN: at once", func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(seg{Flags: "F.", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1462})
		}},
		{"the FIN fills a hole: at once", func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(seg{Flags: "F.", Seq: 101, Ack: 1})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1}) // out of order: a duplicate ACK
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 102})
			p.WantState(ep, event.CloseWait)
		}},
		{"FIN-WAIT-2: at once", func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
			ep.Close()
			p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
			p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
			p.WantState(ep, event.FinWait2)
			p.Inject(seg{Flags: "F.", Seq: 1, Ack: 2})
			p.Expect(seg{Flags: ".", Seq: 2, Ack: 2})
			p.WantState(ep, event.TimeWait)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			tc.run(t, p, ep)
		})
	}
}

func wantSent(t *testing.T, p *tcptest.Peer, cause event.SendCause, n uint64) {
	t.Helper()
	if got := p.TCP.Stats().Sent(cause); got != n {
		t.Errorf("%d segments sent as %v, want %d", got, cause, n)
	}
}
