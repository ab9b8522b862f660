package tcp_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// D-SACK (RFC 2883) as a receiver: a segment whose text we had already
// makes the next ACK, sent at once, report the duplicate range in its
// first SACK block; the normal blocks follow; the duplicate is reported
// once.

type sackBlocks = [][2]uint32

// noQuickAck shows the delayed ACK from the first segment, so that an ACK
// a duplicate sends at once stands out from it.
var noQuickAck = tcptest.WithTCP(tcp.Options{NoQuickAck: true})

// withAndWithoutTS runs f on a SACK connection with and without timestamps
// (which leave room for 3 SACK blocks instead of 4), with the fixture
// options extra.
func withAndWithoutTS(t *testing.T, f func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint), extra ...tcptest.Option) {
	for _, ts := range []bool{false, true} {
		t.Run(fmt.Sprintf("timestamps=%v", ts), func(t *testing.T) {
			opts := append([]tcptest.Option{}, extra...)
			if ts {
				opts = append(opts, tcptest.WithTimestamps())
			}
			p, ep := sackPeer(t, opts...)
			f(t, p, ep)
		})
	}
}

// TestDSACKBelowRcvNxt: the peer retransmits a segment we acknowledged
// (our ACK was lost). It fails the sequence check (RFC 9293 3.10.7.4) and
// the ACK that answers it carries the D-SACK; the next ACK does not.
func TestDSACKBelowRcvNxt(t *testing.T) {
	withAndWithoutTS(t, func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
		data := payload(0, 3000)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1000]})
		p.Inject(seg{Flags: ".", Seq: 1001, Ack: 1, Payload: data[1000:2000]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 2001, Check: tcptest.CheckSACK})

		p.Inject(seg{Flags: ".", Seq: 1001, Ack: 1, Payload: data[1000:2000]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 2001, SACK: sackBlocks{{1001, 2001}}})
		p.ExpectNothing()

		// Reported once: the (delayed) ACK of new data has no block.
		p.Inject(seg{Flags: ".", Seq: 2001, Ack: 1, Payload: data[2000:3000]})
		p.ExpectNothing()
		p.Advance(40 * time.Millisecond)
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 3001, Check: tcptest.CheckSACK})
		if got := readAll(t, ep); !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, want the 3000 sent, once each", len(got))
		}
		wantCount(t, "old sequence drops", p.TCP.Stats().Dropped(event.DropOldSequence), 1)
	}, noQuickAck) // the ACK of new data is delayed
}

// TestDSACKPartlyBelowRcvNxt: a segment that begins below RCV.NXT and
// brings new bytes too is trimmed (3.10.7.4) and taken; the bytes cut off
// are reported as the D-SACK, and the ACK goes at once instead of being
// delayed.
func TestDSACKPartlyBelowRcvNxt(t *testing.T) {
	withAndWithoutTS(t, func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
		data := payload(0, 1500)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1000]})
		p.ExpectNothing()
		p.Inject(seg{Flags: ".", Seq: 501, Ack: 1, Payload: data[500:1500]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1501, SACK: sackBlocks{{501, 1001}}})
		p.Advance(time.Second)
		p.ExpectNothing()
		if got := readAll(t, ep); !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, want the 1500 sent, once each", len(got))
		}
	}, noQuickAck) // the ACK of new data is delayed
}

// TestDSACKHeldData: duplicates of out-of-order text we hold. The D-SACK
// comes first, then the block that holds it (RFC 2883 4, second rule),
// then the other blocks, most recent first. An in-order segment that
// overlaps held text duplicates it too.
func TestDSACKHeldData(t *testing.T) {
	withAndWithoutTS(t, func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
		data := payload(0, 6000)
		p.Inject(seg{Flags: ".", Seq: 2001, Ack: 1, Payload: data[2000:3000]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{2001, 3001}}})
		// The whole segment again.
		p.Inject(seg{Flags: ".", Seq: 2001, Ack: 1, Payload: data[2000:3000]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{2001, 3001}, {2001, 3001}}})
		// Half old, half new: the old half is the D-SACK, the grown
		// range the second block.
		p.Inject(seg{Flags: ".", Seq: 2501, Ack: 1, Payload: data[2500:3500]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{2501, 3001}, {2001, 3501}}})
		// Nothing repeated: no D-SACK, the newest block first.
		p.Inject(seg{Flags: ".", Seq: 5001, Ack: 1, Payload: data[5000:6000]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: sackBlocks{{5001, 6001}, {2001, 3501}}})
		// In order, overlapping held [2001, 2501).
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:2500]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 3501, SACK: sackBlocks{{2001, 2501}, {5001, 6001}}})
		p.Inject(seg{Flags: ".", Seq: 3501, Ack: 1, Payload: data[3500:5000]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 6001, Check: tcptest.CheckSACK})
		if got := readAll(t, ep); !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, want the 6000 sent, once each", len(got))
		}
	})
}

// TestDSACKRoom: beside the D-SACK there is room for three SACK blocks
// without timestamps, two with them (RFC 2883 and RFC 2018 3: 40 bytes of
// options); sackOptionSize says how much room the option takes.
func TestDSACKRoom(t *testing.T) {
	withAndWithoutTS(t, func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
		room := 4
		if p.Timestamps {
			room = 3
		}
		if got := ep.SACKOptionSize(); got != 0 {
			t.Errorf("SACKOptionSize %d with nothing held, want 0", got)
		}
		data := payload(0, 8000)
		for i := range 4 {
			off := 1000 + 2000*i
			p.Inject(seg{Flags: ".", Seq: uint32(off + 1), Ack: 1, Payload: data[off : off+1000]})
			p.Drain()
			if got, want := ep.SACKOptionSize(), 4+8*min(i+1, room); got != want {
				t.Errorf("SACKOptionSize %d with %d ranges held, want %d", got, i+1, want)
			}
		}
		p.Inject(seg{Flags: ".", Seq: 3001, Ack: 1, Payload: data[3000:3100]})
		want := sackBlocks{{3001, 3101}, {3001, 4001}, {7001, 8001}, {5001, 6001}}
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: want[:room]})
	})
}

// TestNoDSACKWithoutSACK: without SACK in force a duplicate gets a plain
// ACK.
func TestNoDSACKWithoutSACK(t *testing.T) {
	p, _ := tcptest.Established(t)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1000)})
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1001})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 1000)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1001, Check: tcptest.CheckSACK})
}

// TestDSACKRetransmittedFIN: a FIN received twice is a duplicate sequence
// number too; like Linux (tcp_send_dupack), the ACK reports it.
func TestDSACKRetransmittedFIN(t *testing.T) {
	p, _ := tcptest.CloseWait(t, tcptest.WithSynOptions(seg{MSS: 1460, SACKPerm: true}))
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2, SACK: sackBlocks{{1, 2}}})
}
