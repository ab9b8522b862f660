package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestWindowFollowsAckOfOldSegment: the peer's first segment is lost and
// its second arrives, out of order, setting the send window (SND.WL1 =
// its sequence number). The peer's retransmission of the first segment
// has a lower sequence number but carries its latest ACK and a smaller
// window. The ACK moves SND.UNA, so the window it carries is taken
// (Linux's tcp_may_update_window) and the right edge stays where the peer
// put it. Under RFC 9293's SND.WL1/SND.WL2 rule alone the older window
// stayed, counted from the new SND.UNA, and the stack sent text beyond
// anything the peer had offered.
func TestWindowFollowsAckOfOldSegment(t *testing.T) {
	p, ep := tcptest.Established(t)
	shift := max(ep.Info().SndWndScale, 0) // -1: no window scaling
	win := func(bytes int) uint16 { return uint16(bytes >> shift) }
	// The peer's second segment, 101..201, arrives first: SND.WL1 = 101,
	// and two segments' worth from SND.UNA = 1, right edge 2921.
	p.Inject(seg{Flags: "P.", Seq: 101, Ack: 1, Win: win(2920), Payload: payload(100, 100)})
	p.Drain()
	if _, err := ep.Write(payload(0, 6000)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 1461, Ack: 1, Len: 1460}) // PSH: the window is full
	p.ExpectNothing()
	// The retransmission of its first segment, 1..101, acknowledges
	// 1461 with one segment's worth of window: right edge 2921 still.
	// Nothing new may go out.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1461, Win: win(1460), Payload: payload(0, 100)})
	for _, s := range p.Drain() {
		if s.Len > 0 {
			t.Errorf("sent %v beyond the right edge the peer offered, 2921", s)
		}
	}
	// Its next ACK opens the window again from the right edge on.
	p.Inject(seg{Flags: ".", Seq: 201, Ack: 2921, Win: win(2920)})
	p.Expect(seg{Flags: ".", Seq: 2921, Ack: 201, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 4381, Ack: 201, Len: 1460})
}

// TestWindowIgnoresOldAck: an old ACK, SEG.ACK < SND.UNA, is acceptable
// (RFC 5961 5.2) but updates no window: RFC 9293 3.10.7.4 updates it only
// if SND.UNA =< SEG.ACK =< SND.NXT, and Linux's tcp_ack takes it to
// old_ack without tcp_ack_update_window. The peer's segment 101..201 (ACK
// 1, two segments' worth of window) is delayed behind its retransmission
// of 1..101, which acknowledges 2921 with one segment's worth: right edge
// 4381. When the delayed segment arrives, its SEG.SEQ is above SND.WL1,
// but its window counts from 1, not from SND.UNA = 2921; taken, it put the
// right edge at 5841, beyond anything the peer offered.
func TestWindowIgnoresOldAck(t *testing.T) {
	p, ep := tcptest.Established(t)
	shift := max(ep.Info().SndWndScale, 0) // -1: no window scaling
	win := func(bytes int) uint16 { return uint16(bytes >> shift) }
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: win(2920)})
	if _, err := ep.Write(payload(0, 8000)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 1461, Ack: 1, Len: 1460}) // PSH: the window is full
	p.ExpectNothing()
	// The retransmission of the peer's 1..101 acknowledges 2921 and
	// offers 1460: right edge 4381, one more segment.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2921, Win: win(1460), Payload: payload(0, 100)})
	p.Expect(seg{Flags: ".", Seq: 2921, Ack: 101})
	p.Expect(seg{Flags: ".", Seq: 2921, Ack: 101, Len: 1460})
	p.ExpectNothing()
	// The delayed 101..201, ACK 1: its text is taken, its window is not.
	// Nothing new may go out, only the (delayed) ACK of the text.
	p.Inject(seg{Flags: ".", Seq: 101, Ack: 1, Win: win(2920), Payload: payload(100, 100)})
	p.ExpectNothing()
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 4381, Ack: 201})
	p.ExpectNothing()
	if tcb := ep.Info().TCB; tcb.SndWnd != 1460 || tcb.SndWL1-tcb.IRS != 1 || tcb.SndWL2-tcb.ISS != 2921 {
		t.Errorf("SND.WND %d, SND.WL1 %d, SND.WL2 %d (relative); want 1460, 1, 2921 (the retransmission's)",
			tcb.SndWnd, tcb.SndWL1-tcb.IRS, tcb.SndWL2-tcb.ISS)
	}
	// The peer's next ACK opens the window from SND.UNA = 4381 on.
	p.Inject(seg{Flags: ".", Seq: 201, Ack: 4381, Win: win(2920)})
	p.Expect(seg{Flags: ".", Seq: 4381, Ack: 201, Len: 1460})
	p.Expect(seg{Flags: ".", Seq: 5841, Ack: 201, Len: 1460, Check: tcptest.IgnorePSH})
	p.ExpectNothing()
}
