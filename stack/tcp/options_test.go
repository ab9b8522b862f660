package tcp

import (
	"bytes"
	"testing"

	"github.com/tapstack/tapstack/event"
)

// TestSynOptionLayout: SYN options in Linux's order (tcp_options_write),
// the TSopt 4-byte aligned (RFC 7323 appendix A).
func TestSynOptionLayout(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    synOptions
		want []byte
	}{
		{"mss, ws", synOptions{mss: 1460, ws: 5}, []byte{2, 4, 5, 180, 1, 3, 3, 5}},
		{"mss, ts, ws", synOptions{mss: 1460, ws: 7, ts: true, tsVal: 0x01020304},
			[]byte{2, 4, 5, 180, 1, 1, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7}},
		{"mss, ts", synOptions{mss: 1460, ws: -1, ts: true, tsVal: 1, tsEcr: 2},
			[]byte{2, 4, 5, 180, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}},
		{"mss, sack, ts, ws", synOptions{mss: 1460, ws: 7, sackPerm: true, ts: true, tsVal: 1},
			[]byte{2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}},
	} {
		var b [40]byte
		n := encodeSynOptions(tc.o, b[:])
		if !bytes.Equal(b[:n], tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, b[:n], tc.want)
		}
		if n%4 != 0 {
			t.Errorf("%s: %d bytes, not a multiple of 4", tc.name, n)
		}
	}
}

// TestParseTimestamp: the fast path and the walk agree, and malformed
// lists do not panic or find a TSopt that is not there.
func TestParseTimestamp(t *testing.T) {
	var b [12]byte
	encodeTimestamp(7, 9, b[:])
	if v, e, ok := parseTimestamp(b[:]); !ok || v != 7 || e != 9 {
		t.Errorf("NOP NOP TS: %d %d %v", v, e, ok)
	}
	syn := []byte{2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7}
	if v, e, ok := parseTimestamp(syn); !ok || v != 1 || e != 2 {
		t.Errorf("SYN layout: %d %d %v", v, e, ok)
	}
	for _, bad := range [][]byte{{8}, {8, 10, 0}, {1, 1, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0}, {0, 8, 10}, {5, 0}, {5, 1}} {
		if _, _, ok := parseTimestamp(bad); ok {
			t.Errorf("% x: found a TSopt", bad)
		}
	}
	info := event.SegmentInfo{SrcPort: 1, DstPort: 2, Flags: 0x10, WS: -1, TS: true, TSVal: 7, TSEcr: 9}
	if s := info.String(); s != "1 > 2: Flags [.], seq 0, ack 0, win 0, options [TS val 7 ecr 9], length 0" {
		t.Errorf("String() = %q", s)
	}
}
