package event_test

import (
	"net/netip"
	"testing"

	"github.com/tapstack/tapstack/event"
)

// TestNames: every state, kind, drop reason and send cause has its own
// name, and values out of range say so rather than borrowing one.
func TestNames(t *testing.T) {
	seen := map[string]bool{}
	for s := range event.NumStates {
		n := event.State(s).String()
		if seen[n] {
			t.Errorf("state %d: name %q used twice", s, n)
		}
		seen[n] = true
	}
	if got := event.State(event.NumStates).String(); got != "State(11)" {
		t.Errorf("State(11) = %q", got)
	}
	for _, tc := range []struct {
		n    int
		name func(int) string
	}{
		{event.NumDropReasons, func(i int) string { return event.DropReason(i).String() }},
		{event.NumSendCauses, func(i int) string { return event.SendCause(i).String() }},
	} {
		names := map[string]bool{}
		for i := range tc.n {
			n := tc.name(i)
			if n == "" || names[n] {
				t.Errorf("%d: name %q empty or used twice", i, n)
			}
			names[n] = true
		}
	}
	if got := event.DropReason(event.NumDropReasons).String(); got == event.DropTupleInUse.String() {
		t.Errorf("an unknown drop reason reads as %q", got)
	}
	if event.Established.Synchronized() == false || event.SynReceived.Synchronized() || event.State(200).Synchronized() {
		t.Error("Synchronized disagrees with RFC 9293 3.5.2")
	}
}

// TestSegmentString: flags and options read as tcpdump prints them.
func TestSegmentString(t *testing.T) {
	for _, tc := range []struct {
		s    event.SegmentInfo
		want string
	}{
		{event.SegmentInfo{SrcPort: 40000, DstPort: 80, Seq: 100, Ack: 201, Flags: event.FlagSyn | event.FlagAck, Window: 65535,
			MSS: 1460, WS: 7, TS: true, TSVal: 7, TSEcr: 9},
			"40000 > 80: Flags [S.], seq 100, ack 201, win 65535, options [mss 1460,TS val 7 ecr 9,wscale 7], length 0"},
		{event.SegmentInfo{SrcPort: 1, DstPort: 2, Seq: 5, Flags: event.FlagPsh | event.FlagAck | event.FlagFin, WS: -1, Len: 3},
			"1 > 2: Flags [FP.], seq 5:8, ack 0, win 0, length 3"},
		{event.SegmentInfo{Note: "truncated TCP header"}, "truncated TCP header"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
	if got := event.Flags(0).String(); got != "none" {
		t.Errorf("no flags: %q", got)
	}
	c := event.ConnID{Local: netip.MustParseAddrPort("192.0.2.1:80"), Remote: netip.MustParseAddrPort("192.0.2.2:40000")}
	if got := c.String(); got != "192.0.2.1:80-192.0.2.2:40000" {
		t.Errorf("ConnID: %q", got)
	}
}
