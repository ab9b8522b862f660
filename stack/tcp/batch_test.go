package tcp_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// ACK once per drained burst (batch.go): on a link that marks the end of
// its bursts, the ACK that a second full-sized segment makes due waits
// for the burst's end, one cumulative ACK for the burst; every ACK the
// RFCs want at once still goes at once.

// batchFixture is an established connection on a link that marks its
// bursts, out of quick-ACK mode so that the per-segment rule applies.
func batchFixture(t *testing.T) (*tcptest.Peer, *tcp.Endpoint) {
	return tcptest.Established(t, tcptest.WithBatches(), tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
}

// TestAckPerBurst: six full segments in one burst draw two ACKs: the
// burst's first at the second segment, as per segment, and one at the
// burst's end for the rest (per segment, they would draw three). The
// next burst starts over.
func TestAckPerBurst(t *testing.T) {
	p, ep := batchFixture(t)
	for i := range 6 {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*1460), Ack: 1, Payload: payload(i*1460, 1460)})
		if i == 1 {
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 2*1460})
		}
		p.ExpectNothing()
	}
	p.EndBatch()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 6*1460})
	p.ExpectNothing()
	p.EndBatch() // nothing new: no ACK
	p.ExpectNothing()
	p.Advance(time.Second)
	p.ExpectNothing() // the delayed ACK was cancelled by the burst's
	if n := p.TCP.Stats().AcksDeferred.Load(); n != 1 {
		t.Errorf("AcksDeferred %d, want 1", n)
	}
	// The next burst: its first ACK at its second segment again, and
	// a burst of two has nothing left for its end.
	for i := 6; i < 8; i++ {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*1460), Ack: 1, Payload: payload(i*1460, 1460)})
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 8*1460})
	p.EndBatch()
	p.ExpectNothing()
	if n := p.TCP.Stats().AcksDeferred.Load(); n != 1 {
		t.Errorf("AcksDeferred %d after a burst of two, want still 1", n)
	}
	if got := readAll(t, ep); !bytes.Equal(got, payload(0, 8*1460)) {
		t.Fatalf("Read %d bytes, want %d in order", len(got), 8*1460)
	}
}

// TestBurstOfOneSegmentWaitsForDelayedAck: a burst that makes no ACK due
// (one full segment) leaves it to the delayed-ACK timer, as without
// bursts.
func TestBurstOfOneSegmentWaitsForDelayedAck(t *testing.T) {
	p, _ := batchFixture(t)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
	p.EndBatch()
	p.ExpectNothing()
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1461})
}

// TestBurstNeverDelaysRequiredAcks: within a burst, out-of-order text
// (RFC 5681 4.2: a duplicate ACK at once), the text that
// fills the hole (an ACK at once), and a FIN are acknowledged at once,
// not at the burst's end.
func TestBurstNeverDelaysRequiredAcks(t *testing.T) {
	p, _ := batchFixture(t)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
	p.ExpectNothing()
	// A hole: 1461..2921 missing.
	p.Inject(seg{Flags: ".", Seq: 2921, Ack: 1, Payload: payload(2920, 1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1461})
	p.Inject(seg{Flags: ".", Seq: 1461, Ack: 1, Payload: payload(1460, 1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.Inject(seg{Flags: "F.", Seq: 4381, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4382})
	p.EndBatch()
	p.ExpectNothing()
}

// TestBurstAckRidesOnData: an ACK waiting for the burst's end is not sent
// if a data segment carried it first.
func TestBurstAckRidesOnData(t *testing.T) {
	p, ep := batchFixture(t)
	for i := range 4 {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*1460), Ack: 1, Payload: payload(i*1460, 1460)})
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2921}) // the burst's first
	p.ExpectNothing()
	ep.Write(payload(0, 100))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 5841, Len: 100})
	p.EndBatch()
	p.ExpectNothing()
}

// TestNoBurstsAckPerTwoSegments: on a link that does not mark bursts (the
// fixture's default), the second full segment is ACKed at once.
func TestNoBurstsAckPerTwoSegments(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1461, Ack: 1, Payload: payload(1460, 1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2921})
	if n := p.TCP.Stats().AcksDeferred.Load(); n != 0 {
		t.Errorf("AcksDeferred %d on a link without bursts", n)
	}
}

// TestCoalescedAckPerBurst: by default (no AckPerBurst), segments longer
// than the MSS, as a GSO pipe or the TAP's GRO hands them over, wait for
// the burst's end: three super-frames of four segments each draw one ACK
// at the end of their burst, not one each as Linux's per-GRO-packet rule
// would send (batch.go). A lone super-frame is ACKed at its burst's end,
// not after the delayed-ACK timeout.
func TestCoalescedAckPerBurst(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithBurstMarks(), tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	const super = 4 * 1460
	for i := range 3 {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*super), Ack: 1, Payload: payload(i*super, super)})
		p.ExpectNothing()
	}
	p.EndBatch()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 3*super})
	p.ExpectNothing()

	p.Inject(seg{Flags: ".", Seq: 1 + 3*super, Ack: 1, Payload: payload(3*super, super)})
	p.ExpectNothing()
	p.EndBatch()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 4*super})
	p.Advance(time.Second)
	p.ExpectNothing()
	if n := p.TCP.Stats().AcksDeferred.Load(); n != 2 {
		t.Errorf("AcksDeferred %d, want 2", n)
	}
	if got := readAll(t, ep); !bytes.Equal(got, payload(0, 4*super)) {
		t.Fatalf("Read %d bytes, want %d in order", len(got), 4*super)
	}
}

// TestFullSegmentsAckPerTwoInBursts: without AckPerBurst, full-sized
// segments on a link that marks its bursts keep the per-segment rule, an
// ACK for every second one at once: behaviour under loss, where the
// sender's ACK clock needs them, is the same as on a link without marks.
func TestFullSegmentsAckPerTwoInBursts(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithBurstMarks(), tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	for i := range 4 {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*1460), Ack: 1, Payload: payload(i*1460, 1460)})
		if i%2 == 0 {
			p.ExpectNothing()
		} else {
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + uint32((i+1)*1460)})
		}
	}
	p.EndBatch()
	p.ExpectNothing()
	if n := p.TCP.Stats().AcksDeferred.Load(); n != 0 {
		t.Errorf("AcksDeferred %d, want 0", n)
	}
}
