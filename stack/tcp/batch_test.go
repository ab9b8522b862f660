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
// (RFC 5681 4.2: a duplicate ACK at once) and the text that fills the
// hole (an ACK at once) are acknowledged at once, not at the burst's
// end. A FIN's ACK follows the delayed-ACK rule Linux gives it
// (finAckPolicy): the burst's end neither sends it nor holds it longer.
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
	p.EndBatch()
	p.ExpectNothing()
	p.Advance(p.TCP.Options().DelayedAck)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4382})
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
// than the MSS, as a GSO pipe or the TAP's GRO hands them over, draw two
// ACKs a burst, not one each as Linux's per-GRO-packet rule would send
// (batch.go): the first super-frame's at once, and one at the burst's end
// for the rest. A lone super-frame is ACKed at once, and its burst's end
// has nothing left to say.
func TestCoalescedAckPerBurst(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithBurstMarks(), tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	const super = 4 * 1460
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, super)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + super})
	for i := 1; i < 3; i++ {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*super), Ack: 1, Payload: payload(i*super, super)})
		p.ExpectNothing()
	}
	p.EndBatch()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 3*super})
	p.ExpectNothing()

	p.Inject(seg{Flags: ".", Seq: 1 + 3*super, Ack: 1, Payload: payload(3*super, super)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 4*super})
	p.EndBatch()
	p.Advance(time.Second)
	p.ExpectNothing()
	if n := p.TCP.Stats().AcksDeferred.Load(); n != 1 {
		t.Errorf("AcksDeferred %d, want 1", n)
	}
	if got := readAll(t, ep); !bytes.Equal(got, payload(0, 4*super)) {
		t.Fatalf("Read %d bytes, want %d in order", len(got), 4*super)
	}
}

// TestCoalescedBurstEndAckLost: why a burst's first super-frame is ACKed
// at once. A sender whose whole flight came in one burst, and whose ACK
// at the burst's end was lost, still heard of the first super-frame, so
// its window opened and its next data draws the ACK that covers the rest.
// Had the burst's end been its only ACK, the sender would hear nothing
// until its probe timeout, and its probe, one full segment in order,
// would wait for the delayed-ACK timer (shown last): the kernel sending
// over a TAP with 1% loss each way stalled 40 ms that way five times in
// 64 MiB, at half gVisor's rate.
func TestCoalescedBurstEndAckLost(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithBurstMarks(), tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	const super = 4 * 1460
	for i := range 3 {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*super), Ack: 1, Payload: payload(i*super, super)})
		if i == 0 {
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + super}) // the sender hears of the flight
		} else {
			p.ExpectNothing()
		}
	}
	p.EndBatch()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 3*super}) // lost on the way

	// The window the first ACK opened: one more super-frame, ACKed at
	// once for everything so far.
	p.Inject(seg{Flags: ".", Seq: 1 + 3*super, Ack: 1, Payload: payload(3*super, super)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 4*super})
	p.EndBatch()

	// A probe of one full segment after silence: the delayed-ACK rule.
	p.Advance(5 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1 + 4*super, Ack: 1, Payload: payload(4*super, 1460)})
	p.EndBatch()
	p.ExpectNothing()
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 4*super + 1460})
}

// TestNoAckPerBurst: with NoAckPerBurst, full-sized segments on a link
// that marks its bursts keep the per-segment rule, an ACK for every
// second one at once, as on a link without marks.
func TestNoAckPerBurst(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithBurstMarks(), tcptest.WithTCP(tcp.Options{NoQuickAck: true, NoAckPerBurst: true}))
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

// TestAckPerBurstUntilDisorder: by default, full-sized segments in a
// burst draw two ACKs, the burst's first at its second segment and one at
// its end, while the path shows no loss; a hole sends the receiver back
// to an ACK for every second segment (the sender's ACK clock on a lossy
// path, batch.go) for the next 1,024 of them, after which bursts are
// answered per burst again.
func TestAckPerBurstUntilDisorder(t *testing.T) {
	const big = 8 << 20 // room for every segment without reading: no window updates
	p, _ := tcptest.Established(t, tcptest.WithBurstMarks(), tcptest.WithSynOptions(tcptest.Seg{WS: 7, MSS: 1460}),
		tcptest.WithTCP(tcp.Options{NoQuickAck: true, ReceiveBufferSize: big, ReceiveBufferMax: big}))
	next := uint32(1)
	data := func() {
		t.Helper()
		p.Inject(seg{Flags: ".", Seq: next, Ack: 1, Payload: payload(int(next-1), 1460)})
		next += 1460
	}
	burst := func(n int, perSegment bool) {
		t.Helper()
		for i := range n {
			data()
			if i == 1 || (perSegment && i%2 == 1) {
				p.Expect(seg{Flags: ".", Seq: 1, Ack: next})
			}
			p.ExpectNothing()
		}
		p.EndBatch()
		if !perSegment && n > 2 {
			p.Expect(seg{Flags: ".", Seq: 1, Ack: next})
		}
		p.ExpectNothing()
	}
	burst(6, false)
	// A hole: the segment after next arrives first, drawing a duplicate
	// ACK; the missing one fills it, drawing an ACK at once.
	hole := next
	next += 1460
	data()
	p.Expect(seg{Flags: ".", Seq: 1, Ack: hole})
	p.Inject(seg{Flags: ".", Seq: hole, Ack: 1, Payload: payload(int(hole-1), 1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: next})
	p.EndBatch()
	for range 1024 / 2 {
		burst(4, true) // two ACKs of the 1,024 each
	}
	burst(6, false)
	if n := p.TCP.Stats().AcksDeferred.Load(); n != 2 {
		t.Errorf("AcksDeferred %d, want 2", n)
	}
}

// TestSackCompression: a long run of out-of-order text behind a hole, on a
// link that marks its bursts. The first 32 segments draw a duplicate ACK
// each at once, its SACK block growing; the rest of the burst, each
// growing the same block, draw one ACK at the burst's end that reports
// them all (batch.go compressSack). A segment that starts a range of its
// own is reported at once, and the segment that fills the hole draws an
// ACK at once. With NoSackCompression every one is ACKed at once.
func TestSackCompression(t *testing.T) {
	for _, off := range []bool{false, true} {
		const big = 8 << 20
		p, _ := tcptest.Established(t, tcptest.WithBurstMarks(),
			tcptest.WithSynOptions(tcptest.Seg{WS: 7, MSS: 1460, SACKPerm: true}),
			tcptest.WithTCP(tcp.Options{NoQuickAck: true, ReceiveBufferSize: big, ReceiveBufferMax: big, NoSackCompression: off}))
		const run = 40
		at := func(i int) uint32 { return 1 + uint32(i*1460) } // segment i of the stream
		for i := 1; i <= run; i++ {                            // segment 0 is lost
			p.Inject(seg{Flags: ".", Seq: at(i), Ack: 1, Payload: payload(i*1460, 1460)})
			if i <= 32 || off {
				p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{at(1), at(i + 1)}}})
			}
			p.ExpectNothing()
		}
		p.EndBatch()
		if !off {
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{at(1), at(run + 1)}}})
		}
		p.ExpectNothing()
		// A second hole: segment run+1 is lost, run+2 starts a range.
		p.Inject(seg{Flags: ".", Seq: at(run + 2), Ack: 1, Payload: payload((run+2)*1460, 1460)})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{at(run + 2), at(run + 3)}, {at(1), at(run + 1)}}})
		// The first hole filled: an ACK at once.
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1460)})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: at(run + 1), SACK: [][2]uint32{{at(run + 2), at(run + 3)}}})
		p.EndBatch()
		p.ExpectNothing()
	}
}

// TestSackCompressionKeepsDSACK: text that grows the latest SACK block's
// range, past the first 32 ACKs, but also repeats held text (it bridges
// into the next range) is ACKed at once, with the D-SACK that reports the
// repeat first (RFC 2883), not at the burst's end.
func TestSackCompressionKeepsDSACK(t *testing.T) {
	const big = 8 << 20
	p, _ := tcptest.Established(t, tcptest.WithBurstMarks(),
		tcptest.WithSynOptions(tcptest.Seg{WS: 7, MSS: 1460, SACKPerm: true}),
		tcptest.WithTCP(tcp.Options{NoQuickAck: true, ReceiveBufferSize: big, ReceiveBufferMax: big}))
	at := func(i int) uint32 { return 1 + uint32(i*1460) }
	// Segment 0 is lost; segment 40 arrives first, then 1 to 38.
	p.Inject(seg{Flags: ".", Seq: at(40), Ack: 1, Payload: payload(40*1460, 1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{at(40), at(41)}}})
	for i := 1; i <= 38; i++ {
		p.Inject(seg{Flags: ".", Seq: at(i), Ack: 1, Payload: payload(i*1460, 1460)})
		if i <= 31 {
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{at(1), at(i + 1)}, {at(40), at(41)}}})
		}
		p.ExpectNothing()
	}
	// Segments 39 and 40 in one: it grows [1, 39) and repeats 40.
	p.Inject(seg{Flags: ".", Seq: at(39), Ack: 1, Payload: payload(39*1460, 2*1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{at(40), at(41)}, {at(1), at(41)}}})
	p.EndBatch()
	p.ExpectNothing()
}
