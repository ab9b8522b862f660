package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestReorderingDegree: the reordering degree starts at 3 (Linux's
// tcp_reordering, RFC 5681's DupThresh) and rises to the distance, in
// segments, from a segment delivered late, never retransmitted, to the
// highest sequence number delivered (Linux's tcp_check_sack_reordering,
// tcpi_reordering); each ACK that shows reordering is counted
// (tcpi_reord_seen), whether or not it raises the degree.
func TestReorderingDegree(t *testing.T) {
	type step struct {
		ack    uint32
		sack   [][2]uint32
		degree uint32
		seen   uint32
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"late by 7, then by 10", []step{
			{1, [][2]uint32{{9001, 10001}}, 3, 0},               // in order so far
			{1, [][2]uint32{{3001, 4001}, {9001, 10001}}, 7, 1}, // 3001 delivered below 10001
			{10001, nil, 10, 2},                                 // 1:3001 and 4001:9001 filled below 10001
		}},
		{"late by 3 or less", []step{
			{1, [][2]uint32{{7001, 8001}}, 3, 0},
			{1, [][2]uint32{{5001, 6001}, {7001, 8001}}, 3, 1}, // 8001-5001 is 3 segments: not more than 3
			{1, [][2]uint32{{5001, 8001}}, 3, 2},               // 6001:7001, 2 below
			{8001, nil, 8, 3},                                  // 1:5001 below 8001
		}},
		{"in order", []step{
			{4001, nil, 3, 0},
			{10001, nil, 3, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: 1000, SACKPerm: true}))
			if _, err := ep.Write(payload(0, 10000)); err != nil {
				t.Fatal(err)
			}
			if n := len(p.Drain()); n != 10 {
				t.Fatalf("sent %d segments, want 10 (the initial window)", n)
			}
			for _, s := range tc.steps {
				p.Inject(seg{Flags: ".", Seq: 1, Ack: s.ack, SACK: s.sack})
				p.Drain()
				in := ep.Info()
				if in.Reordering != s.degree || in.ReorderEvents != s.seen {
					t.Fatalf("after ack %d sack %v: reordering %d, seen %d; want %d, %d", s.ack, s.sack, in.Reordering, in.ReorderEvents, s.degree, s.seen)
				}
			}
		})
	}
}
