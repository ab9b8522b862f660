package pcap_test

import (
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/tap"
)

// TestFaultBlackHoleCapture: a packet the fault middleware's black hole
// takes is in the capture as a lost one is, in both directions: with the
// fault's comment and a drop verdict, the inbound one though the stack
// never saw it. A packet the black hole lets through has neither.
func TestFaultBlackHoleCapture(t *testing.T) {
	const ipLen = header.IPv4MinimumSize + header.TCPMinimumSize + 100 // ect0Segment's
	for _, tc := range []struct {
		name    string
		mtu     int
		comment string // "": the packets pass
	}{
		{"over", ipLen - 1, "fault: dropped: 140 bytes, over the black hole's MTU 139 (no ICMP, seed 3, #1)"},
		{"at", ipLen, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := captureEachWay(t, tap.FaultConfig{BlackHoleMTU: tc.mtu})
			dropped := tc.comment != ""
			for _, p := range pkts {
				has := dropped && strings.Contains(p.Comment(), tc.comment)
				if p.Dropped != dropped || has != dropped || (!dropped && strings.Contains(p.Comment(), "fault:")) {
					t.Errorf("%v frame: dropped %v, comment %q; want dropped %v, comment %q", p.Direction, p.Dropped, p.Comment(), dropped, tc.comment)
				}
			}
		})
	}
}
