package tcp

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// TestReopenISS: a connection a new SYN opens over a TIME-WAIT record
// starts its sequence space above the old one's, at old SND.NXT + 65535
// + 2 (Linux's tcp_timewait_state_process), across the wrap of the
// sequence space, and never at 0, which openChild reads as "choose an ISN"
// (Linux moves 0 to 1 for the same reason).
func TestReopenISS(t *testing.T) {
	for _, tc := range []struct{ sndNxt, want seqnum.Value }{
		{2, 65539},
		{0xfff00000, 0xfff10001},
		{0xfffffff0, 65521},
		{0xfffeffff, 1}, // 2^32 - 65537: the sum wraps to 0
		{0xfffefffe, 0xffffffff},
	} {
		if got := reopenISS(tc.sndNxt); got != tc.want {
			t.Errorf("old SND.NXT %d: ISN %d, want %d", tc.sndNxt, got, tc.want)
		}
	}
}
