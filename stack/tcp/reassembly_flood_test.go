package tcp_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// A hole flood: a peer inside the window sends many small segments, each
// leaving a hole before it, so the receiver holds many out-of-order ranges
// and answers each segment with a duplicate ACK carrying SACK blocks.

// rawPeer injects segments from the peer's address straight into the link,
// with absolute sequence numbers and no trace: fast enough for floods. It
// reads the stack's replies with Replies.
type rawPeer struct {
	p                      *tcptest.Peer
	peerPort, stackPort    uint16
	buf                    []byte
	replies, repliesToPort int
}

// inject sends one segment: seq, ack absolute; win the raw window field.
func (r *rawPeer) inject(seq, ack uint32, flags header.TCPFlags, win uint16, payload []byte) {
	size := header.IPv4MinimumSize + header.TCPMinimumSize + len(payload)
	if cap(r.buf) < size {
		r.buf = make([]byte, size)
	}
	b := r.buf[:size]
	src := tcpip.AddrFrom4(tcptest.PeerAddr.As4())
	dst := tcpip.AddrFrom4(tcptest.StackAddr.As4())
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(size), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcpb := b[header.IPv4MinimumSize:]
	h := header.TCP(tcpb)
	h.Encode(&header.TCPFields{SrcPort: r.peerPort, DstPort: r.stackPort, SeqNum: seq, AckNum: ack,
		DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: win})
	copy(tcpb[header.TCPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcpb)))
	h.SetChecksum(^checksum.Checksum(tcpb, xsum))
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	r.p.Link.InjectInbound(ipv4.ProtocolNumber, pkt)
	pkt.DecRef()
}

// discard throws away every segment the stack queued, counting them.
func (r *rawPeer) discard() {
	for range 1 << 20 {
		pkt := r.p.Link.Read()
		if pkt == nil {
			return
		}
		r.replies++
		pkt.DecRef()
	}
}

// holeFlood is one connection under a hole flood: 1-byte segments at
// RCV.NXT+2k+1 for k in [0, 2*holes), every other byte, so that every
// segment that is not a duplicate leaves a hole of its own.
type holeFlood struct {
	raw      rawPeer
	ep       *tcp.Endpoint
	irs, iss uint32 // absolute
	slots    int
	rng      *rand.Rand
	one      [1]byte
}

// newHoleFlood establishes a SACK connection whose receive buffer allows
// holes ranges (the range limit is the buffer size / 1024) and opens the
// window wide with one held byte.
func newHoleFlood(tb testing.TB, holes int) *holeFlood {
	rcvBuf := max(1<<20, holes*1024)
	p, ep := tcptest.Established(tb, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: rcvBuf}),
		tcptest.WithSynOptions(seg{MSS: 1460, SACKPerm: true, WS: 7}))
	tcb := ep.Info().TCB
	f := &holeFlood{
		raw:   rawPeer{p: p, peerPort: p.PeerPort, stackPort: p.StackPort},
		ep:    ep,
		irs:   uint32(tcb.IRS),
		iss:   uint32(tcb.ISS),
		slots: 2 * holes,
		rng:   rand.New(rand.NewPCG(1, 2)),
	}
	// The first ACK after the handshake advertises the whole buffer.
	f.send(f.slots - 1)
	f.raw.discard()
	return f
}

// send injects the 1-byte segment of slot k.
func (f *holeFlood) send(k int) {
	f.one[0] = byte(k)
	f.raw.inject(f.irs+1+uint32(2*k+1), f.iss+1, header.TCPFlagAck, 0xffff, f.one[:])
}

// prefill sends holes distinct slots in random order.
func (f *holeFlood) prefill(holes int) {
	for i, k := range f.rng.Perm(f.slots)[:holes] {
		f.send(k)
		if i%256 == 0 {
			f.raw.discard()
		}
	}
	f.raw.discard()
}

// BenchmarkHoleFlood measures the cost of one segment of a hole flood
// while the receiver already holds 1k, 10k or 100k holes: each op is a
// 1-byte segment at a random slot (half of them duplicates of held bytes,
// half new holes) and the duplicate ACK it provokes. The per-op cost
// should not grow with the number of holes.
//
//	go test -run - -bench HoleFlood -benchmem ./stack/tcp
func BenchmarkHoleFlood(b *testing.B) {
	for _, holes := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("holes=%dk", holes/1000), func(b *testing.B) {
			f := newHoleFlood(b, holes)
			f.prefill(holes)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				f.send(f.rng.IntN(f.slots))
				f.raw.discard()
			}
		})
	}
}
