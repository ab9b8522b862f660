package tcp

import "testing"

// TestRefusedNote: the note of a link refusal, made only for an
// observer, says what was deemed lost, what goes again, and the state the
// sender entered.
func TestRefusedNote(t *testing.T) {
	for _, tc := range []struct {
		lost, taken   int
		recovery, cwr bool
		want          string
	}{
		{0, 4, false, true, "CWR: the link refused 4 segments, its queue full: not sent, to go again (local congestion)"},
		{0, 1, false, false, "the link refused 1 segment, its queue full: not sent, to go again"},
		{2, 0, true, false, "fast recovery: the link refused 2 segments, its queue full: deemed lost"},
		{2, 3, true, false, "fast recovery: the link refused 5 segments, its queue full: 2 deemed lost, 3 not sent"},
		{1, 0, false, false, "the link refused 1 segment, its queue full: deemed lost"},
	} {
		if got := refusedNote(tc.lost, tc.taken, tc.recovery, tc.cwr); got != tc.want {
			t.Errorf("refusedNote(%d, %d, %v, %v) = %q, want %q", tc.lost, tc.taken, tc.recovery, tc.cwr, got, tc.want)
		}
	}
}
