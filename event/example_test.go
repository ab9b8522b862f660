package event_test

import (
	"fmt"
	"net/netip"

	"github.com/tapstack/tapstack/event"
)

// An Observer that prints a lifecycle trace and counts drops by reason,
// fed the events the engine makes when a peer opens a connection to a
// listener on port 80 (RFC 9293 3.5, figure 6) and then sends a RST
// outside the window (RFC 5961 3.2). A program passes such a function as
// tcp.Options.Observer; here the events are written out by hand, as they
// would arrive.
func Example() {
	conn := event.ConnID{
		Local:  netip.MustParseAddrPort("192.0.2.1:80"),
		Remote: netip.MustParseAddrPort("192.0.2.2:40000"),
	}
	dropped := map[event.DropReason]int{}
	observe := event.Observer(func(ev event.Event) {
		if ev.Kind == event.KindDrop {
			dropped[ev.Drop]++
		}
		fmt.Println(ev)
	})

	syn := event.SegmentInfo{SrcPort: 40000, DstPort: 80, Seq: 1000, Flags: event.FlagSyn, Window: 65535, MSS: 1460, WS: 7}
	synAck := event.SegmentInfo{SrcPort: 80, DstPort: 40000, Seq: 5000, Ack: 1001, Flags: event.FlagSyn | event.FlagAck,
		Window: 65535, MSS: 1460, WS: 7}
	ack := event.SegmentInfo{SrcPort: 40000, DstPort: 80, Seq: 1001, Ack: 5001, Flags: event.FlagAck, Window: 512, WS: -1}
	rst := event.SegmentInfo{SrcPort: 40000, DstPort: 80, Seq: 900000, Flags: event.FlagRst, WS: -1}

	observe(event.Event{Kind: event.KindState, Conn: conn, From: event.Closed, To: event.SynReceived,
		Cause: event.Cause{Kind: event.CauseSegment, Detail: syn.String()}})
	observe(event.Event{Kind: event.KindSend, Conn: conn, Send: event.SendSynAck, Segment: synAck})
	observe(event.Event{Kind: event.KindState, Conn: conn, From: event.SynReceived, To: event.Established,
		Cause: event.Cause{Kind: event.CauseSegment, Detail: ack.String()}})
	observe(event.Event{Kind: event.KindDrop, Conn: conn, Drop: event.DropRstInvalid, Segment: rst})
	fmt.Println("dropped:", dropped)
	fmt.Println(event.Established.Synchronized(), event.SynReceived.Synchronized())

	// Output:
	// 192.0.2.1:80-192.0.2.2:40000 CLOSED -> SYN-RECEIVED (segment 40000 > 80: Flags [S], seq 1000, win 65535, options [mss 1460,wscale 7], length 0)
	// 192.0.2.1:80-192.0.2.2:40000 send SYN-ACK: 80 > 40000: Flags [S.], seq 5000, ack 1001, win 65535, options [mss 1460,wscale 7], length 0
	// 192.0.2.1:80-192.0.2.2:40000 SYN-RECEIVED -> ESTABLISHED (segment 40000 > 80: Flags [.], seq 1001, ack 5001, win 512, length 0)
	// 192.0.2.1:80-192.0.2.2:40000 drop (RST invalid): 40000 > 80: Flags [R], seq 900000, win 0, length 0
	// dropped: map[RST invalid:1]
	// true false
}
