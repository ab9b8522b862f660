package tcp_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
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
	p                   *tcptest.Peer
	peerPort, stackPort uint16
	buf                 []byte
	replies             int
}

// inject sends one segment: seq, ack absolute; win the raw window field.
func (r *rawPeer) inject(seq, ack uint32, flags header.TCPFlags, win uint16, payload []byte) {
	r.injectView(seq, ack, flags, win, buffer.NewViewWithData(payload))
}

// injectView is inject with the payload a view, shared, not copied: the
// headers are in a view of their own, as a TAP device hands a
// super-frame's wire segments up. It takes v.
func (r *rawPeer) injectView(seq, ack uint32, flags header.TCPFlags, win uint16, v *buffer.View) {
	size := header.IPv4MinimumSize + header.TCPMinimumSize
	if cap(r.buf) < size {
		r.buf = make([]byte, size)
	}
	b := r.buf[:size]
	src := tcpip.AddrFrom4(tcptest.PeerAddr.As4())
	dst := tcpip.AddrFrom4(tcptest.StackAddr.As4())
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(size + v.Size()), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	h := header.TCP(b[header.IPv4MinimumSize:])
	h.Encode(&header.TCPFields{SrcPort: r.peerPort, DstPort: r.stackPort, SeqNum: seq, AckNum: ack,
		DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: win})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(header.TCPMinimumSize+v.Size()))
	h.SetChecksum(^checksum.Checksum(v.AsSlice(), checksum.Checksum(h, xsum)))
	buf := buffer.MakeWithData(b)
	payload := buffer.MakeWithView(v)
	buf.Merge(&payload)
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buf})
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

// floodCounter counts, for one peer port, what became of each segment:
// taken (KindReceive) or dropped, by reason.
type floodCounter struct {
	mu       sync.Mutex
	port     uint16
	received int
	dropped  map[event.DropReason]int
}

func (c *floodCounter) observe(ev event.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Conn.Remote.Port() != c.port {
		return
	}
	switch ev.Kind {
	case event.KindReceive:
		c.received++
	case event.KindDrop:
		c.dropped[ev.Drop]++
	}
}

// TestHoleFloodHeap: 100,000 segments at random places in a 256 KiB
// window, nine in ten one byte long, one in ten 1400 bytes, from a peer that never fills the hole before them, while a
// legitimate connection on the same stack moves data both ways. The
// flooded queue stays within its limits (256 ranges, 512 KiB of heap), the
// heap stays within a bound computed from them, every flood segment is
// either taken or dropped with a named reason, and the legitimate
// connection delivers every byte in order.
func TestHoleFloodHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 segments")
	}
	const (
		rcvBuf     = 256 << 10
		floodSegs  = 100_000
		slots      = 100_000 // at RCV.NXT+2k+2: 200 KB of the 256 KiB window
		attackPort = tcptest.PeerPort + 1
		legitEvery = 100  // flood segments per legitimate segment in
		legitChunk = 1000 // bytes a legitimate segment carries
		userEvery  = 1000 // flood segments per Read, Write and peer ACK
	)
	counter := &floodCounter{port: attackPort, dropped: map[event.DropReason]int{}}
	p, legit := tcptest.Established(t, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: rcvBuf, Observer: counter.observe}),
		tcptest.WithSynOptions(seg{MSS: 1460, SACKPerm: true, WS: 7}))

	// The attacker's connection, to the same listener.
	p.PeerPort = attackPort
	p.SetStackISS(0, false)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true, WS: 7})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	attacked, err := p.Listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	lt, at := legit.Info().TCB, attacked.Info().TCB
	legitPeer := &rawPeer{p: p, peerPort: tcptest.PeerPort, stackPort: p.StackPort}
	attacker := &rawPeer{p: p, peerPort: attackPort, stackPort: p.StackPort}

	rng := rand.New(rand.NewPCG(7, 9))
	// Legitimate bytes sent by the peer, written by the user, read by the
	// user; what is read is checked as it comes, so the test itself keeps
	// nothing that grows.
	in, out, got := 0, 0, 0
	read := func() {
		b := readAll(t, legit)
		if !bytes.Equal(b, payload(got, len(b))) {
			t.Fatalf("legitimate connection read %d bytes at %d not as sent", len(b), got)
		}
		got += len(b)
	}
	big := payload(0, 1400)
	base := heapInUse()
	peak := base
	for i := range floodSegs {
		// Mostly one byte; one in ten a full frame, which overlaps
		// held bytes and may bring only one new byte.
		k := rng.IntN(slots)
		text := big[:1]
		if i%10 == 0 {
			text = big
		}
		attacker.inject(uint32(at.IRS)+1+uint32(2*k+2), uint32(at.ISS)+1, header.TCPFlagAck, 0xffff, text)
		if i%legitEvery == 0 {
			legitPeer.inject(uint32(lt.IRS)+1+uint32(in), uint32(lt.ISS)+1+uint32(out), header.TCPFlagAck|header.TCPFlagPsh, 0xffff, payload(in, legitChunk))
			in += legitChunk
		}
		if i%userEvery == 0 {
			read()
			w := payload(out, 500)
			if n, err := legit.Write(w); err != nil || n != len(w) {
				t.Fatalf("legitimate Write: %d, %v", n, err)
			}
			out += len(w)
			// The peer acknowledges everything the stack sent.
			legitPeer.inject(uint32(lt.IRS)+1+uint32(in), uint32(lt.ISS)+1+uint32(out), header.TCPFlagAck, 0xffff, nil)
		}
		attacker.discard()
		if i%10_000 == 0 || i == floodSegs-1 {
			peak = max(peak, heapInUse())
		}
	}
	read()

	held, mem, ranges, memLimit, rangeLimit := attacked.OutOfOrder()
	// Generous: twice what the flooded queue may charge (the charge is
	// honest to within the collector's rounding, reassembly_test.go), and
	// 1 MiB for the rest: the legitimate connection's few KB in flight,
	// the link's packets between reads, the collector's slack.
	bound := uint64(2*memLimit + 1<<20)
	t.Logf("%d flood segments: %d bytes held in %d ranges (limit %d), charged %d (limit %d); heap peak +%d KiB (bound %d KiB)",
		floodSegs, held, ranges, rangeLimit, mem, memLimit, (peak-base)>>10, bound>>10)
	t.Logf("flood segments taken %d, dropped %v; pruned ranges %d", counter.received, counter.dropped, p.TCP.Stats().Dropped(event.DropOutOfOrderPruned))
	if ranges > rangeLimit || mem > memLimit || rangeLimit != rcvBuf/1024 || memLimit != 2*rcvBuf {
		t.Errorf("queue %d ranges, %d charged; limits %d, %d", ranges, mem, rangeLimit, memLimit)
	}
	if peak-base > bound {
		t.Errorf("heap grew by %d bytes during the flood, over the bound %d", peak-base, bound)
	}

	// Every flood segment is accounted for, every drop by its reason.
	counter.mu.Lock()
	accounted := counter.received
	for r, n := range counter.dropped {
		switch r {
		case event.DropOutOfOrderQueueFull, event.DropOutOfOrderPruned, event.DropOutOfWindow:
		default:
			t.Errorf("%d flood segments dropped for %v", n, r)
		}
		if r != event.DropOutOfOrderPruned {
			accounted += n
		}
		if st := p.TCP.Stats().Dropped(r); st != uint64(n) {
			t.Errorf("%v: %d drops counted, %d reported for the flood", r, st, n)
		}
	}
	counter.mu.Unlock()
	if accounted != floodSegs {
		t.Errorf("%d of %d flood segments accounted for", accounted, floodSegs)
	}
	if counter.dropped[event.DropOutOfOrderQueueFull] == 0 || counter.dropped[event.DropOutOfOrderPruned] == 0 {
		t.Errorf("the flood neither filled the queue nor pruned it: %v", counter.dropped)
	}

	// The legitimate connection moved every byte, both ways.
	if got != in {
		t.Errorf("legitimate connection read %d bytes, want the %d sent", got, in)
	}
	if tcb := legit.Info().TCB; tcb.SndUna != tcb.SndNxt || uint32(tcb.SndNxt-lt.ISS) != uint32(1+out) || legit.State() != event.Established {
		t.Errorf("legitimate connection %v: SND.UNA %d, SND.NXT %d, %d bytes written", legit.State(), tcb.SndUna-lt.ISS, tcb.SndNxt-lt.ISS, out)
	}
}

// TestOutOfOrderChargedByTruesize: 20,000 one-byte segments out of order,
// each the only byte of a 64 KiB chunk (as a link that reads every frame
// into a large buffer hands them up), every other byte so that each
// opens a hole. Charged by payload, the queue would pin 1.25 GiB;
// charged by what it pins (truesize, Linux's skb->truesize, with small
// pieces copied out), the heap stays within twice the 256 KiB receive
// buffer plus 4 MiB of bookkeeping, and what does not fit is a counted
// drop or prune (DropOutOfOrderQueueFull, DropOutOfOrderPruned). From an
// audit of what a hostile peer can make the engine hold, where it
// passed; kept as coverage.
func TestOutOfOrderChargedByTruesize(t *testing.T) {
	const (
		rcvBuf = 256 << 10
		segs   = 20_000
	)
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: rcvBuf, ReceiveBufferMax: rcvBuf}),
		tcptest.WithSynOptions(seg{MSS: 1460, SACKPerm: true, WS: 7}))
	tcb := ep.Info().TCB
	raw := &rawPeer{p: p, peerPort: p.PeerPort, stackPort: p.StackPort}
	before := heapInUse()
	for i := range segs {
		v := buffer.NewView(64 << 10)
		_, _ = v.Write([]byte{byte(i)})
		raw.injectView(uint32(tcb.IRS)+1+uint32(2*(i%(rcvBuf/4))+2), uint32(tcb.ISS)+1, header.TCPFlagAck, 0xffff, v)
		if i%256 == 0 {
			raw.discard()
		}
	}
	raw.discard()
	grown := int64(heapInUse()) - int64(before)
	st := p.TCP.Stats()
	full, pruned := st.Dropped(event.DropOutOfOrderQueueFull), st.Dropped(event.DropOutOfOrderPruned)
	t.Logf("%d one-byte segments in 64 KiB chunks: heap %+d bytes; queue-full drops %d, prunes %d", segs, grown, full, pruned)
	if grown > 2*rcvBuf+(4<<20) {
		t.Errorf("heap grew %d bytes, want at most 2*%d plus 4 MiB", grown, rcvBuf)
	}
	if full+pruned == 0 {
		t.Error("no segment counted as dropped or pruned: 20,000 holes cannot all fit")
	}
}
