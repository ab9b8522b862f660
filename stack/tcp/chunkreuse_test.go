package tcp_test

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestChunkReuse traces chunk reuse (chunkreuse.go) with writes of 64
// KiB, each a chunk's worth: the first write's chunk comes from gVisor's
// pool; once its bytes are acknowledged and the peer has taken its
// packets off the link, the next write is copied into it; while the
// packets of a write still wait on the link, acknowledged or not, their
// chunk is not written, and they carry the bytes that were sent.
func TestChunkReuse(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{WS: 7, MSS: 1460}))
	stats := p.TCP.Stats()
	const size = 64 << 10
	fill := func(c byte) []byte { return bytes.Repeat([]byte{c}, size) }
	next := uint32(1) // the stack's next relative sequence number

	// send writes data and acknowledges what the stack sends until all of
	// it is acknowledged. Without hold, the peer reads each packet off the
	// link, which lets it go; with hold, the packets are kept, and
	// returned, as a link's queue or a capture keeps them.
	send := func(data []byte, hold bool) (got []byte, held []*gstack.PacketBuffer) {
		t.Helper()
		if n, err := ep.Write(data); err != nil || n != len(data) {
			t.Fatalf("Write: %d, %v", n, err)
		}
		end := next + uint32(len(data))
		for rounds := 0; next != end; rounds++ {
			if rounds == 100 {
				t.Fatalf("%d bytes of %d acknowledged after 100 rounds", next-(end-uint32(len(data))), len(data))
			}
			for {
				if !hold {
					s, ok := p.Next()
					if !ok {
						break
					}
					got = append(got, s.Payload...)
					next = s.Seq + uint32(s.Len)
					continue
				}
				pkt := p.Link.Read()
				if pkt == nil {
					break
				}
				held = append(held, pkt)
				seq, payload := segmentOf(pkt)
				got = append(got, payload...)
				iss, _ := p.StackISS()
				next = seq - iss + uint32(len(payload))
			}
			p.Inject(seg{Flags: ".", Seq: 1, Ack: next})
		}
		return got, held
	}

	if got, _ := send(fill('a'), false); !bytes.Equal(got, fill('a')) {
		t.Fatalf("the first write's segments carried %q..., want a's", got[:min(len(got), 16)])
	}
	if n := stats.ChunksReused.Load(); n != 0 {
		t.Fatalf("%d chunks reused before any was let go of", n)
	}
	if got, _ := send(fill('b'), false); !bytes.Equal(got, fill('b')) {
		t.Fatalf("the write into a reused chunk sent %q..., want b's", got[:min(len(got), 16)])
	}
	if n := stats.ChunksReused.Load(); n != 1 {
		t.Fatalf("%d chunks reused after a write once the first's was acknowledged and read, want 1", n)
	}

	// The packets of 'c' stay on the link after their ACK: the chunk
	// 'a' and 'b' used, which 'c' takes, is held.
	_, held := send(fill('c'), true)
	if n := stats.ChunksReused.Load(); n != 2 {
		t.Fatalf("%d chunks reused, want 2", n)
	}
	for _, c := range []byte{'d', 'e'} {
		if got, _ := send(fill(c), false); !bytes.Equal(got, fill(c)) {
			t.Fatalf("%q sent %q..., want %q's", c, got[:min(len(got), 16)], c)
		}
	}
	var still []byte
	for _, pkt := range held {
		_, payload := segmentOf(pkt)
		still = append(still, payload...)
		pkt.DecRef()
	}
	if !bytes.Equal(still, fill('c')) {
		i := bytes.IndexFunc(still, func(r rune) bool { return r != 'c' })
		t.Fatalf("packets waiting on the link were overwritten: byte %d of %d is %q, want 'c'", i, len(still), still[i])
	}
	if n := stats.ChunksReused.Load(); n != 3 {
		t.Fatalf("%d chunks reused, want 3: 'd' from the pool, the only chunk let go of being held; 'e' into 'd''s", n)
	}
	// Let go of, 'c''s chunk is free: a write of two chunks' worth takes
	// it and 'e''s.
	ff := append(fill('f'), fill('f')...)
	if got, _ := send(ff, false); !bytes.Equal(got, ff) {
		t.Fatalf("'f' sent %q..., want f's", got[:min(len(got), 16)])
	}
	if n := stats.ChunksReused.Load(); n != 5 {
		t.Fatalf("%d chunks reused, want 5", n)
	}
}

// TestChunkReuseWholeBuffer: the chunks of a whole send buffer, let go
// of while the writer has nothing more to write (as one ACK of a burst
// lets 4 MiB go at once, tap.Pipe's receiver acknowledging each burst of
// frames once: batch.go), all wait for the next writes: 64 chunks of 64,
// where a cache of 16 kept 16 and gVisor's pool took the rest back, to
// clear them before handing them out again.
func TestChunkReuseWholeBuffer(t *testing.T) {
	const size = 4 << 20
	p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{WS: 7, MSS: 1460}),
		tcptest.WithTCP(tcp.Options{SendBufferSize: size}))
	stats := p.TCP.Stats()
	next := uint32(1)
	send := func(c byte) {
		t.Helper()
		data := bytes.Repeat([]byte{c}, size)
		if n, err := ep.Write(data); err != nil || n != size {
			t.Fatalf("Write: %d, %v", n, err)
		}
		var got []byte
		end := next + size
		for rounds := 0; next != end; rounds++ {
			if rounds == 1000 {
				t.Fatalf("%d bytes of %d acknowledged after 1,000 rounds", len(got), size)
			}
			for {
				s, ok := p.Next()
				if !ok {
					break
				}
				got = append(got, s.Payload...)
				next = s.Seq + uint32(s.Len)
			}
			p.Inject(seg{Flags: ".", Seq: 1, Ack: next})
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%q's write sent other bytes", c)
		}
	}
	send('a')
	if n := stats.ChunksReused.Load(); n != 0 {
		t.Fatalf("%d chunks reused before any was let go of", n)
	}
	send('b')
	if n := stats.ChunksReused.Load(); n != size>>16 {
		t.Fatalf("%d chunks reused of the %d the first write let go of", n, size>>16)
	}
}

// segmentOf returns the sequence number and payload of the TCP segment
// in an IPv4 packet the stack sent.
func segmentOf(pkt *gstack.PacketBuffer) (uint32, []byte) {
	v := pkt.ToView()
	defer v.Release()
	ip := header.IPv4(v.AsSlice())
	seg := header.TCP(ip.Payload())
	return seg.SequenceNumber(), append([]byte(nil), seg.Payload()...)
}
