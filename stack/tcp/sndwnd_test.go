package tcp_test

import (
	"testing"

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
