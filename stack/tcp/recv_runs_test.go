package tcp_test

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestRunsOfOneChunkLinked: in-order segments whose payloads are views of
// one chunk, each beginning where the one before ended, as a TAP device
// without GRO cuts a kernel super-frame read into a 64 KiB chunk into its
// wire segments. The first is copied (it might be alone in its chunk);
// each after it is linked, whether the user left the ones before it in
// the receive buffer or read them at once. Pieces that do not continue
// one another in their chunk (frames read one after the other into one
// buffer, headers between them), or shorter than 512 bytes, are still
// copied, so that none pins a chunk it does not fill. The user reads
// the bytes as sent in every case.
func TestRunsOfOneChunkLinked(t *testing.T) {
	const hdr = 66 // where a super-frame's payload begins in its chunk: Ethernet, IPv4 and TCP with timestamps
	for _, tc := range []struct {
		name       string
		size, gap  int // each segment's payload, and the bytes between two in the chunk
		n          int
		readEach   bool // the user reads each segment before the next comes
		wantLinked int
	}{
		{"a split super-frame, unread", 1448, 0, 20, false, 19},
		{"a split super-frame, read as it comes", 1448, 0, 20, true, 19},
		{"frames one after the other in one buffer", 1448, hdr, 20, false, 0},
		{"short pieces", 400, 0, 20, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := sackPeer(t)
			tcb := ep.Info().TCB
			raw := &rawPeer{p: p, peerPort: tcptest.PeerPort, stackPort: p.StackPort}
			chunk := buffer.NewViewSize(buffer.MaxChunkSize)
			data := payload(0, tc.n*tc.size)
			at := func(i int) int { return hdr + i*(tc.size+tc.gap) }
			for i := range tc.n {
				copy(chunk.AsSlice()[at(i):], data[i*tc.size:(i+1)*tc.size])
			}
			var got []byte
			linked := 0
			for i := range tc.n {
				piece := chunk.Clone()
				piece.TrimFront(at(i))
				piece.CapLength(tc.size)
				raw.injectView(uint32(tcb.IRS)+1+uint32(i*tc.size), uint32(tcb.ISS)+1, header.TCPFlagAck, 0xffff, piece)
				views := tcp.RcvBufViews(ep)
				if len(views) == 0 {
					t.Fatalf("segment %d: nothing in the receive buffer", i)
				}
				if views[len(views)-1] == &chunk.AsSlice()[at(i)] {
					linked++
				}
				if tc.readEach {
					got = append(got, readAll(t, ep)...)
				}
				raw.discard()
			}
			got = append(got, readAll(t, ep)...)
			chunk.Release()
			t.Logf("%d segments of %d bytes: %d linked into the chunk they came in, the rest copied", tc.n, tc.size, linked)
			if linked != tc.wantLinked {
				t.Errorf("%d segments linked, want %d", linked, tc.wantLinked)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("read %d bytes, not the %d sent", len(got), len(data))
			}
		})
	}
}
