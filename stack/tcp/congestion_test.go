package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestLimitedTransmit: the first two duplicate ACKs each let one new
// segment out beyond cwnd (RFC 3042), so the third duplicate, and fast
// retransmit, come even when the window is nearly all in flight.
func TestLimitedTransmit(t *testing.T) {
	p, ep := tcptest.Established(t)
	data := payload(0, 12*1460) // two segments more than the initial window
	ep.Write(data)
	for i := range 10 {
		p.Expect(seg{Flags: trainFlags(i, 10), Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460})
	}
	p.ExpectNothing() // cwnd is full
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1 + 10*1460, Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: "P.", Seq: 1 + 11*1460, Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.ExpectNothing()
}

// TestEarlyRetransmit: with fewer than four segments outstanding and
// nothing new to send, fast retransmit fires after oseg-1 duplicate ACKs
// (RFC 5827), instead of waiting for an RTO that three duplicates could
// never prevent.
func TestEarlyRetransmit(t *testing.T) {
	p, ep := tcptest.Established(t)
	data := payload(0, 3*1460)
	ep.Write(data)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1}) // oseg 3: the second duplicate is enough
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	if n := p.TCP.Stats().Sent(event.SendFastRetransmit); n != 1 {
		t.Errorf("fast retransmits %d, want 1", n)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.ExpectNothing()
	p.WantState(ep, event.Established)
}
