package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestPAWSExemptions: Linux's two exemptions from PAWS (tcp_paws_discard),
// which tapstack follows: a TSval one tick older than TS.Recent passes
// (TCP_PAWS_WINDOW), and so does a reordered duplicate ACK that moves
// nothing (tcp_disordered_ack); an older data segment, or an old ACK that
// would move the window, or one older than an RTO, is still dropped.
func TestPAWSExemptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		seg  seg
		drop bool
	}{
		{"data one tick older", seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("b"), Win: 30000, TSVal: 6999}, false},
		{"data two ticks older", seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("b"), Win: 30000, TSVal: 6998}, true},
		{"duplicate ACK, reordered", seg{Flags: ".", Seq: 2, Ack: 1, Win: 30000, TSVal: 6990}, false},
		{"ACK opening the window", seg{Flags: ".", Seq: 2, Ack: 1, Win: 40000, TSVal: 6990}, true},
		{"ACK older than an RTO", seg{Flags: ".", Seq: 2, Ack: 1, Win: 30000, TSVal: 7000 - 5000}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := tcptest.Established(t, tcptest.WithTimestamps())
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("a"), Win: 30000, TS: true, TSVal: 7000, TSEcr: p.LastTSVal})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 2, TS: true, TSEcr: 7000})
			// The peer's latest ACK: SND.WL1 and TS.Recent from it.
			p.Inject(seg{Flags: ".", Seq: 2, Ack: 1, Win: 30000, TS: true, TSVal: 7000, TSEcr: p.LastTSVal})
			s := tc.seg
			s.TS, s.TSEcr = true, p.LastTSVal
			p.Inject(s)
			p.Drain()
			if got := p.TCP.Stats().Dropped(event.DropPAWS) == 1; got != tc.drop {
				t.Errorf("dropped by PAWS: %v, want %v", got, tc.drop)
			}
		})
	}
}
