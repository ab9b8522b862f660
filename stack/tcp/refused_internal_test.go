package tcp

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// TestRefusedNote: the note of a link refusal, made only for an
// observer, says what was deemed lost, what goes again, and the state the
// sender entered.
func TestRefusedNote(t *testing.T) {
	for _, tc := range []struct {
		lost, taken, copies int
		recovery, cwr       bool
		want                string
	}{
		{0, 4, 0, false, true, "CWR: the link refused 4 segments, its queue full: not sent, to go again (local congestion)"},
		{0, 1, 0, false, false, "the link refused 1 segment, its queue full: not sent, to go again"},
		{2, 0, 0, true, false, "fast recovery: the link refused 2 segments, its queue full: deemed lost"},
		{2, 3, 0, true, false, "fast recovery: the link refused 5 segments, its queue full: 2 deemed lost, 3 not sent"},
		{1, 0, 0, false, false, "the link refused 1 segment, its queue full: deemed lost"},
		{0, 0, 1, false, true, "CWR: the link refused 1 segment, its queue full: a copy, not sent: the first is still in flight (local congestion)"},
		{0, 0, 2, false, false, "the link refused 2 segments, its queue full: copies, not sent: the first ones are still in flight"},
		{1, 0, 2, false, false, "the link refused 3 segments, its queue full: 1 deemed lost, 2 copies not sent"},
	} {
		if got := refusedNote(tc.lost, tc.taken, tc.copies, tc.recovery, tc.cwr); got != tc.want {
			t.Errorf("refusedNote(%d, %d, %d, %v, %v) = %q, want %q", tc.lost, tc.taken, tc.copies, tc.recovery, tc.cwr, got, tc.want)
		}
	}
}

// TestAfterRefusalCopies: the packets of a pass after its first refusal,
// as writeAfterRefusal and linkRefused count them. New data carries no
// copy of anything; a packet that goes back below what the pass carried
// is a copy, newer than the refusals before it only. Here: 7 refused
// (refusal 0), 8 and 9 taken, 7 again taken, 8 again refused (refusal 1),
// then, queued, 9 again.
func TestAfterRefusalCopies(t *testing.T) {
	seg := func(k int) refusal { return refusal{seq: seqnum.Value(k * 100), len: 100} }
	var a afterRefusal
	a.wrote(seg(7), 0)
	a.wrote(seg(8), 1)
	a.wrote(refusal{seq: seqnum.Value(1000)}, 1) // a bare ACK at SND.NXT
	a.wrote(seg(9), 1)
	a.wrote(seg(7), 1)
	a.wrote(seg(8), 1)
	a.wrote(seg(9), 2)
	for _, tc := range []struct {
		k    int
		seg  int
		want bool
	}{
		{0, 7, true}, {0, 8, true}, {0, 9, true}, {0, 10, false},
		{1, 7, false}, {1, 8, false}, {1, 9, true},
	} {
		s := seg(tc.seg)
		if got := a.copiedAfter(tc.k, s.seq, s.seq.Add(s.len)); got != tc.want {
			t.Errorf("copiedAfter(refusal %d, segment %d) = %v, want %v", tc.k, tc.seg, got, tc.want)
		}
	}
	if len(a.copies) != 3 {
		t.Errorf("%d copies kept, want 3: new data and bare ACKs are none", len(a.copies))
	}
}
