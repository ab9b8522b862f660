package tcp_test

import (
	"bytes"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// SACK blocks ride on every segment that carries an ACK while we hold
// out-of-order data, data segments included (RFC 2018 4), as far as they
// fit in the MSS beside the text.

// frameSize is the IPv4 packet size of seg as tapstack encodes it: the
// TSopt in 12 bytes, the SACK option in 4 plus 8 a block.
func frameSize(seg tcptest.Seg) int {
	n := 20 + 20 + seg.Len
	if seg.TS {
		n += 12
	}
	if len(seg.SACK) > 0 {
		n += 4 + 8*len(seg.SACK)
	}
	return n
}

// TestSACKOnDataSegments: while the stack holds the peer's out-of-order
// data, its own data segments report it. A short segment has room for
// the blocks; a segment the sender shrinks by SACKOptionSize fits them
// exactly in the MTU; any segment, however the sender sized it, stays
// within the MTU, with the latest block first when it carries blocks.
func TestSACKOnDataSegments(t *testing.T) {
	withAndWithoutTS(t, func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
		ep.SetNoDelay(true)
		in := payload(0, 2000)
		p.Inject(seg{Flags: ".", Seq: 1001, Ack: 1, Payload: in[1000:]})
		held := sackBlocks{{1001, 2001}}
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: held})

		out := payload(0, 10000)
		if _, err := ep.Write(out[:100]); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: out[:100], SACK: held})

		mss := ep.Info().SndMSS
		if got := ep.SACKOptionSize(); got != 12 {
			t.Fatalf("SACKOptionSize %d with one range held, want 12", got)
		}
		n := mss - ep.SACKOptionSize()
		if _, err := ep.Write(out[100 : 100+n]); err != nil {
			t.Fatal(err)
		}
		got := p.Expect(seg{Flags: "P.", Seq: 101, Ack: 1, Payload: out[100 : 100+n], SACK: held})
		if size := frameSize(got); size != tcptest.MTU {
			t.Errorf("a segment shrunk by SACKOptionSize is %d bytes, want the MTU %d", size, tcptest.MTU)
		}

		// Three full segments' worth, sized by the sender as it will.
		if _, err := ep.Write(out[100+n : 100+n+3*mss]); err != nil {
			t.Fatal(err)
		}
		sent := 0
		for _, s := range p.Drain() {
			if size := frameSize(s); size > tcptest.MTU {
				t.Errorf("segment %v is %d bytes, more than the MTU", s, size)
			}
			if len(s.SACK) > 0 && s.SACK[0] != held[0] {
				t.Errorf("segment %v: first block %v, want %v", s, s.SACK[0], held[0])
			}
			sent += s.Len
		}
		if sent != 3*mss {
			t.Errorf("sent %d bytes, want %d", sent, 3*mss)
		}

		// The peer's hole fills: the next data segment has no blocks.
		p.Inject(seg{Flags: ".", Seq: 1, Ack: uint32(101 + n + 3*mss), Payload: in[:1000]})
		p.Expect(seg{Flags: ".", Seq: uint32(101 + n + 3*mss), Ack: 2001, Check: tcptest.CheckSACK})
		if _, err := ep.Write(out[:10]); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: "P.", Seq: uint32(101 + n + 3*mss), Ack: 2001, Len: 10, Check: tcptest.CheckSACK})
		if got := readAll(t, ep); !bytes.Equal(got, in) {
			t.Fatalf("read %d bytes, want the 2000 sent", len(got))
		}
	})
}

// TestSACKOnDataSegmentsRoom: with four ranges held, a new data segment
// is cut so that all the blocks that fit the options fit beside it: four
// without timestamps, three with them (Linux's tcp_current_mss). A
// retransmission keeps its size, so it carries as many blocks as fit,
// most recent first.
func TestSACKOnDataSegmentsRoom(t *testing.T) {
	withAndWithoutTS(t, func(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
		ep.SetNoDelay(true)
		mss := ep.Info().SndMSS
		out := payload(0, 3*mss)
		// A segment sent before anything is held, with room left for
		// two blocks beside it.
		m := mss - (4 + 8*2) - 7
		if _, err := ep.Write(out[:m]); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: m})
		in := payload(0, 8000)
		for i := range 4 {
			off := 1000 + 2000*i
			p.Inject(seg{Flags: ".", Seq: uint32(off + 1), Ack: 1, Payload: in[off : off+1000]})
			p.Drain()
		}
		all := sackBlocks{{7001, 8001}, {5001, 6001}, {3001, 4001}, {1001, 2001}}
		room := 4
		if p.Timestamps {
			room = 3
		}
		if got := ep.SACKOptionSize(); got != 4+8*room {
			t.Fatalf("SACKOptionSize %d, want %d", got, 4+8*room)
		}
		// Its retransmission carries the two blocks that fit.
		p.Advance(ep.Info().RTO)
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: m, SACK: all[:2]})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: uint32(1 + m)})
		// New data is cut to leave room for every block.
		n := mss - ep.SACKOptionSize()
		if _, err := ep.Write(out[m : m+n]); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: "P.", Seq: uint32(1 + m), Ack: 1, Len: n, SACK: all[:room]})
	})
}
