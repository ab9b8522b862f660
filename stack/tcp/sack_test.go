package tcp_test

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// sackPeer is a peer that offers SACK-permitted (RFC 2018 2).
func sackPeer(t *testing.T, opts ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint) {
	return tcptest.Established(t, append(opts, tcptest.WithSynOptions(seg{MSS: 1460, SACKPerm: true}))...)
}

// TestSACKNegotiation: our SYN offers SACK-permitted; our SYN-ACK answers
// it only if the SYN offered it (RFC 2018 2); NoSACK offers nothing.
func TestSACKNegotiation(t *testing.T) {
	p := tcptest.New(t)
	p.Connect()
	p.Expect(seg{Flags: "S", Seq: 0, SACKPerm: true})

	p, _ = tcptest.Listen(t)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Check: tcptest.CheckSACKPerm})

	p, _ = tcptest.Listen(t)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, SACKPerm: true})

	p, _ = tcptest.Listen(t, tcptest.WithTCP(tcp.Options{NoSACK: true}))
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Check: tcptest.CheckSACKPerm})
}

// TestSACKBlocks: out-of-order data is reported in SACK blocks on the
// duplicate ACKs, the block of the latest segment first (RFC 2018 4);
// once the hole fills, the cumulative ACK carries no blocks.
func TestSACKBlocks(t *testing.T) {
	p, ep := sackPeer(t)
	if !ep.Info().SACK {
		t.Fatal("SACK not in force though both SYNs offered it")
	}
	data := payload(0, 4000)
	p.Inject(seg{Flags: ".", Seq: 1001, Ack: 1, Payload: data[1000:2000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{1001, 2001}}})
	p.Inject(seg{Flags: ".", Seq: 3001, Ack: 1, Payload: data[3000:4000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{3001, 4001}, {1001, 2001}}})
	p.Inject(seg{Flags: ".", Seq: 2001, Ack: 1, Payload: data[2000:3000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{1001, 4001}}})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4001, Check: tcptest.CheckSACK})
	got := make([]byte, 5000)
	if n, _ := ep.Read(got); n != 4000 || string(got[:n]) != string(data) {
		t.Fatalf("read %d bytes, want the 4000 sent in order", n)
	}
}

// TestNoSACKWithoutPermission: a peer that did not offer SACK-permitted
// gets plain duplicate ACKs.
func TestNoSACKWithoutPermission(t *testing.T) {
	p, ep := tcptest.Established(t)
	if ep.Info().SACK {
		t.Fatal("SACK in force though the peer did not offer it")
	}
	p.Inject(seg{Flags: ".", Seq: 1001, Ack: 1, Payload: payload(0, 1000)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Check: tcptest.CheckSACK})
}

// injectSACK injects a bare ACK from the peer with SACK blocks (RFC 2018
// 3), each [start, end) relative to base (the stack's ISS); seq and ack
// are absolute.
func (r *rawPeer) injectSACK(seq, ack uint32, win uint16, base uint32, blocks [][2]uint32) {
	var opts [header.TCPOptionsMaximumSize]byte
	sb := make([]header.SACKBlock, len(blocks))
	for i, b := range blocks {
		sb[i] = header.SACKBlock{Start: seqnum.Value(base + b[0]), End: seqnum.Value(base + b[1])}
	}
	n := header.EncodeNOP(opts[:])
	n += header.EncodeNOP(opts[n:])
	n += header.EncodeSACKBlocks(sb, opts[n:])
	n += header.AddTCPOptionPadding(opts[:], n)
	hl := header.TCPMinimumSize + n
	size := header.IPv4MinimumSize + hl
	b := make([]byte, size)
	src := tcpip.AddrFrom4(tcptest.PeerAddr.As4())
	dst := tcpip.AddrFrom4(tcptest.StackAddr.As4())
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(size), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	h := header.TCP(b[header.IPv4MinimumSize:])
	h.Encode(&header.TCPFields{SrcPort: r.peerPort, DstPort: r.stackPort, SeqNum: seq, AckNum: ack,
		DataOffset: uint8(hl), Flags: header.TCPFlagAck, WindowSize: win})
	copy(h[header.TCPMinimumSize:], opts[:n])
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(hl))
	h.SetChecksum(^checksum.Checksum(h[:hl], xsum))
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	r.p.Link.InjectInbound(ipv4.ProtocolNumber, pkt)
	pkt.DecRef()
}

// TestSACKScoreboardHostileBlocks: a SACK peer with the smallest MSS the
// engine sends (48, Linux's TCP_MIN_SND_MSS) answers the first flight of
// a 200 KiB write (the initial window: ten segments of 48 bytes) with
// 20,000 ACKs whose SACK blocks cut the records in pieces: odd
// bytes, one-byte blocks, D-SACKs below SND.UNA (RFC 2883), blocks past
// SND.NXT (which RFC 2018 gives no meaning and the engine ignores). The
// retransmission queue keeps one record per segment sent, whatever the
// blocks say (no record is split by a block, as Linux's tcp_sacktag
// splits an skb only at segment bounds), so the heap does not grow with
// the number of blocks: under 2 MiB. From an audit of what a hostile
// peer can make the engine hold, where it passed; kept as coverage.
func TestSACKScoreboardHostileBlocks(t *testing.T) {
	const acks = 20_000
	p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: 48, SACKPerm: true, WS: 7}))
	if _, err := ep.Write(make([]byte, 200<<10)); err != nil {
		t.Fatal(err)
	}
	p.Drain()
	info := ep.Info()
	una := uint32(info.TCB.SndUna - info.TCB.ISS)
	nxt := uint32(info.TCB.SndNxt - info.TCB.ISS)
	raw := &rawPeer{p: p, peerPort: p.PeerPort, stackPort: p.StackPort}
	iss, irs := uint32(info.TCB.ISS), uint32(info.TCB.IRS)
	before := heapInUse()
	rng := uint32(12345) // a fixed sequence: the same blocks every run
	next := func(n uint32) uint32 { rng = rng*1664525 + 1013904223; return (rng >> 8) % n }
	for i := range acks {
		var blocks [][2]uint32
		for range 4 {
			a := una + 1 + next(nxt-una)
			b := a + 1 + next(3)
			if i%7 == 0 {
				a, b = una-10, una-1 // D-SACK below SND.UNA
			}
			if i%11 == 0 {
				b = nxt + 100 // past SND.NXT
			}
			if i%5 == 0 {
				k := next((nxt - una) / 48) // a whole record
				a, b = una+48*k, una+48*(k+1)
			}
			blocks = append(blocks, [2]uint32{a, b})
		}
		raw.injectSACK(irs+1, iss+una, 0xffff, iss, blocks)
		if i%256 == 0 {
			raw.discard()
		}
	}
	raw.discard()
	grown := int64(heapInUse()) - int64(before)
	info = ep.Info()
	t.Logf("%d hostile SACK ACKs, %d bytes in flight at MSS %d: heap %+d bytes, sacked %d lost %d retransmits %d",
		acks, nxt-una, info.SndMSS, grown, info.Sacked, info.Lost, info.Retransmits)
	if grown > 2<<20 {
		t.Errorf("heap grew %d bytes over %d SACK ACKs, want under 2 MiB", grown, acks)
	}
}
