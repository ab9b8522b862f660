package tcp

import (
	"testing"
	"unsafe"
)

// TestEndpointSizeClass: an Endpoint is the bulk of an idle connection's
// heap, and Go allocates it in a size class with an 8-byte header (an
// object over 512 bytes that holds pointers): at 1,272 bytes it takes
// 1,280; at 1,280 it would take 1,408, 128 bytes more per endpoint, 256
// per connection with both ends in the process, as the bench's idle-heap
// figure showed when ECN's state first went in (5,210 to 5,466 B). A
// field that does not fit the padding (gaps between small fields) must
// make room elsewhere, or this bound move with a measured reason.
func TestEndpointSizeClass(t *testing.T) {
	const limit = 1280 - 8 // the size class, less the malloc header
	if s := unsafe.Sizeof(Endpoint{}); s > limit {
		t.Errorf("Endpoint is %d bytes; at most %d keeps it in the %d-byte size class", s, limit, 1280)
	}
}

// TestSegmentRecordSize: a retransmission queue record is 64 bytes: 48
// before the delivery rate stamps (rate.go), whose 12 bytes round it up
// to 64; a flight of 64K segments is 4 MiB of records.
func TestSegmentRecordSize(t *testing.T) {
	if s := unsafe.Sizeof(txSeg{}); s > 64 {
		t.Errorf("txSeg is %d bytes; want at most 64", s)
	}
}
