package tcp_test

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestInOrderSmallSegmentsCompact: 20,000 one-byte segments in order that
// the user does not read yet are copied into shared chunks of the receive
// buffer, not each left pinning the chunk it arrived in (64 bytes and a
// view, 144 bytes a byte): the heap grows by a few bytes a byte. The user
// then reads them as sent.
func TestInOrderSmallSegmentsCompact(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 segments")
	}
	const n = 20_000
	p, ep := sackPeer(t)
	tcb := ep.Info().TCB
	raw := &rawPeer{p: p, peerPort: tcptest.PeerPort, stackPort: p.StackPort}
	data := payload(0, n)
	before := heapInUse()
	for i := range n {
		raw.inject(uint32(tcb.IRS)+1+uint32(i), uint32(tcb.ISS)+1, header.TCPFlagAck, 0xffff, data[i:i+1])
		if i%256 == 0 {
			raw.discard()
		}
	}
	raw.discard()
	grown := int64(heapInUse()) - int64(before)
	t.Logf("%d one-byte segments unread: heap +%d bytes (%.1f a byte)", n, grown, float64(grown)/n)
	if grown > 16*n {
		t.Errorf("heap grew by %d bytes for %d bytes unread", grown, n)
	}
	if got := readAll(t, ep); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d sent", len(got), n)
	}
}
