package tcp_test

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

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

// A SYN flood (RFC 4987 2): 100,000 SYNs from distinct source addresses
// and ports, which never answer the SYN-ACK. Memory stays bounded by the
// SYN queue limit: past it, SYN cookies answer and keep no state.

const floodSYNs = 100_000

// flooder injects SYNs with distinct (address, port) sources straight into
// the link, without tcptest's trace, and throws the replies away, but for
// those to the peer's own address (192.0.2.2), which it hands to legit.
type flooder struct {
	p       *tcptest.Peer
	buf     []byte
	n       int
	synAcks int               // SYN-ACKs to flood sources
	legit   func(tcpb []byte) // a segment to 192.0.2.2: the TCP header and payload
}

// syn injects the i-th flood SYN: 192.0.2.10+i/50000, port 10000+i%50000
// (one address has too few ports for 100,000 sources).
func (f *flooder) syn(i int) {
	src := tcpip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i/50000)})
	dst := tcpip.AddrFrom4(tcptest.StackAddr.As4())
	const size = header.IPv4MinimumSize + header.TCPMinimumSize + 4
	if f.buf == nil {
		f.buf = make([]byte, size)
	}
	b := f.buf
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: size, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcpb := b[header.IPv4MinimumSize:]
	h := header.TCP(tcpb)
	h.Encode(&header.TCPFields{SrcPort: uint16(10000 + i%50000), DstPort: tcptest.ListenPort, SeqNum: uint32(i) * 7919,
		DataOffset: header.TCPMinimumSize + 4, Flags: header.TCPFlagSyn, WindowSize: 65535})
	header.EncodeMSSOption(1460, tcpb[header.TCPMinimumSize:])
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcpb)))
	h.SetChecksum(^checksum.Checksum(tcpb, xsum))
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	f.p.Link.InjectInbound(ipv4.ProtocolNumber, pkt)
	pkt.DecRef()
	if f.n++; f.n%512 == 0 {
		f.discard()
	}
}

// discard reads every reply the stack queued: SYN-ACKs to flood sources
// are counted and dropped, segments to the peer go to legit.
func (f *flooder) discard() {
	peer := tcpip.AddrFrom4(tcptest.PeerAddr.As4())
	for range 1 << 20 {
		pkt := f.p.Link.Read()
		if pkt == nil {
			return
		}
		v := pkt.ToView()
		pkt.DecRef()
		ip := header.IPv4(v.AsSlice())
		if ip.IsValid(len(ip)) && ip.Protocol() == uint8(header.TCPProtocolNumber) {
			tcpb := ip[ip.HeaderLength():ip.TotalLength()]
			switch {
			case ip.DestinationAddress() == peer && f.legit != nil:
				f.legit(tcpb)
			case header.TCP(tcpb).Flags() == header.TCPFlagSyn|header.TCPFlagAck:
				f.synAcks++
			}
		}
		v.Release()
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

type floodResult struct {
	perEntry  float64 // heap bytes per half-open entry
	base      uint64  // heap before the flood
	filled    uint64  // heap once the SYN queue is full
	peak      uint64  // the most heap seen during the flood
	heapAfter uint64  // heap after the flood
	perSYN    time.Duration
}

// flood fills the SYN queue, measuring the cost of a half-open entry, then
// sends the rest of the floodSYNs, which must all get cookies. Every
// 1,000 SYNs it calls during, if set, and samples the heap every 10,000
// (with the collector run: sampling costs). conns is how many
// connections the engine held before the flood.
func flood(t testing.TB, f *flooder, l *tcp.Listener, conns int, during func(i int)) floodResult {
	p := f.p
	limit := l.Queues().SynQueueLimit
	r := floodResult{base: heapInUse()}
	r.peak = r.base
	start := time.Now()
	for i := range floodSYNs {
		if i == limit {
			f.discard()
			r.filled = heapInUse()
			r.peak = max(r.peak, r.filled)
		}
		f.syn(i)
		if during != nil && i%1000 == 999 {
			f.discard()
			during(i)
		}
		if during != nil && i%10_000 == 9_999 {
			r.peak = max(r.peak, heapInUse())
		}
	}
	f.discard()
	elapsed := time.Since(start)
	r.heapAfter = heapInUse()
	r.peak = max(r.peak, r.heapAfter)

	st := p.TCP.Stats()
	if q := l.Queues(); q.SynQueueLen != limit {
		t.Fatalf("SYN queue %d/%d after the flood", q.SynQueueLen, limit)
	}
	if n := len(p.TCP.Connections()); n != conns+limit {
		t.Fatalf("%d connections after the flood, want %d (the SYN queue limit, and %d before)", n, conns+limit, conns)
	}
	if got := st.Listen.CookiesSent.Load(); got != uint64(floodSYNs-limit) {
		t.Fatalf("%d cookies sent, want %d", got, floodSYNs-limit)
	}
	r.perEntry = float64(int64(r.filled)-int64(r.base)) / float64(limit)
	r.perSYN = elapsed / floodSYNs
	return r
}

// dropCounter counts KindDrop events by reason, for the flood's sources
// and for the legitimate peer apart, keeping nothing else.
type dropCounter struct {
	mu           sync.Mutex
	flood, legit map[event.DropReason]int
}

func (c *dropCounter) observe(ev event.Event) {
	if ev.Kind != event.KindDrop {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Conn.Remote.Addr() == tcptest.PeerAddr {
		c.legit[ev.Drop]++
	} else {
		c.flood[ev.Drop]++
	}
}

// TestSynFlood: 100,000 SYNs from distinct sources that never answer the
// SYN-ACK (RFC 4987 2), while a connection established before the flood
// moves data both ways: every 1,000 SYNs the peer sends 1,000 bytes, the
// user reads what arrived and writes 500 bytes, and the peer
// acknowledges what it got. The SYN queue fills to its limit (1,024
// half-open entries); past it SYN cookies answer (RFC 4987 3.6) and keep
// no state, so the heap is bounded by the queue, not the flood: it may
// grow by at most SynQueueLimit * 8 KiB (twice the ~4.1 KB a half-open
// entry costs here, with an observer; 2.6 KB without, BenchmarkSynFlood)
// plus 2 MiB for the rest (the legitimate
// connection's buffers, the link's packets between reads, the collector's
// slack), and by at most 1 MiB from a full queue to the end, 98,976
// cookie SYNs later. Every SYN is answered with exactly one SYN-ACK and
// counted as queued or as a cookie; every drop carries a named reason and
// is counted under it, and the legitimate connection loses nothing: every
// byte arrives, in order, both ways. A client that arrives during the
// flood completes its handshake through a cookie, with no clock advance.
// Not parallel: the heap figures are the process's.
func TestSynFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 SYNs")
	}
	drops := &dropCounter{flood: map[event.DropReason]int{}, legit: map[event.DropReason]int{}}
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: drops.observe}))
	l := p.Listen(16)
	limit := l.Queues().SynQueueLimit

	// The legitimate connection, established before the flood.
	handshake(t, p, tcptest.PeerPort)
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tcb := ep.Info().TCB
	legit := &rawPeer{p: p, peerPort: tcptest.PeerPort, stackPort: tcptest.ListenPort}
	in, out := 0, 0   // bytes the peer sent, the user wrote
	got, rcvd := 0, 0 // bytes the user read, the peer received in order
	f := &flooder{p: p, legit: func(tcpb []byte) {
		h := header.TCP(tcpb)
		text := tcpb[h.DataOffset():]
		if off := int(h.SequenceNumber() - tcb.ISS - 1); off == rcvd && len(text) > 0 {
			if !bytes.Equal(text, payload(rcvd, len(text))) {
				t.Errorf("the peer received %d bytes at %d not as written", len(text), off)
			}
			rcvd += len(text)
		}
	}}
	ack := func() uint32 { return tcb.ISS + 1 + uint32(rcvd) }
	r := flood(t, f, l, 1, func(int) {
		legit.inject(tcb.IRS+1+uint32(in), ack(), header.TCPFlagAck|header.TCPFlagPsh, 0xffff, payload(in, 1000))
		in += 1000
		b := readAll(t, ep)
		if !bytes.Equal(b, payload(got, len(b))) {
			t.Fatalf("the user read %d bytes at %d not as sent", len(b), got)
		}
		got += len(b)
		if n, err := ep.Write(payload(out, 500)); err != nil || n != 500 {
			t.Fatalf("legitimate Write: %d, %v", n, err)
		}
		out += 500
		f.discard()
		legit.inject(tcb.IRS+1+uint32(in), ack(), header.TCPFlagAck, 0xffff, nil)
	})
	// The last of it: ACKs until the stack has nothing more to send.
	for range 100 {
		f.discard()
		if i := ep.Info(); i.TCB.SndUna == i.TCB.SndNxt && i.SendQueued == 0 {
			break
		}
		legit.inject(tcb.IRS+1+uint32(in), ack(), header.TCPFlagAck, 0xffff, nil)
	}
	got += len(readAll(t, ep))

	bound := uint64(limit)*8<<10 + 2<<20
	t.Logf("%d SYNs: %.0f bytes per half-open entry; heap +%d KiB at the peak (bound %d KiB), +%d KiB from a full queue to the end; %v per SYN",
		floodSYNs, r.perEntry, (r.peak-r.base)>>10, bound>>10, (int64(r.heapAfter)-int64(r.filled))>>10, r.perSYN)
	if r.peak-r.base > bound {
		t.Errorf("heap grew by %d KiB during the flood, over the bound %d KiB", (r.peak-r.base)>>10, bound>>10)
	}
	if r.heapAfter > r.filled && r.heapAfter-r.filled > 1<<20 {
		t.Errorf("heap grew by %d KiB after the SYN queue was full: cookies must keep no state", (r.heapAfter-r.filled)>>10)
	}

	// Every SYN accounted for: one SYN-ACK each, queued or a cookie.
	st := p.TCP.Stats()
	if f.synAcks != floodSYNs {
		t.Errorf("%d SYN-ACKs to the flood's sources, want %d", f.synAcks, floodSYNs)
	}
	if q, c := st.Listen.SynQueued.Load(), st.Listen.CookiesSent.Load(); q+c != floodSYNs+1 || q != uint64(limit)+1 {
		t.Errorf("SYNs queued %d, cookies %d; want %d (the limit, and the legitimate one) and %d", q, c, limit+1, floodSYNs-limit)
	}
	p.TCP.SyncEvents()
	drops.mu.Lock()
	for reason, n := range drops.flood {
		if reason == event.DropNone || st.Dropped(reason) != uint64(n)+uint64(drops.legit[reason]) {
			t.Errorf("%d flood segments dropped for %q, counted %d", n, reason, st.Dropped(reason))
		}
	}
	if len(drops.legit) != 0 {
		t.Errorf("legitimate connection's segments dropped: %v", drops.legit)
	}
	t.Logf("drops: flood %v, legitimate %v", drops.flood, drops.legit)
	drops.mu.Unlock()

	// The legitimate connection moved every byte, both ways.
	if got != in || rcvd != out || in != 100*1000 {
		t.Errorf("the user read %d of the %d bytes the peer sent; the peer received %d of the %d written", got, in, rcvd, out)
	}
	if i := ep.Info(); i.State != event.Established || i.TCB.SndUna != i.TCB.SndNxt || i.Retransmits != 0 {
		t.Errorf("legitimate connection: %v, SND.UNA %d, SND.NXT %d, %d retransmits", i.State, i.TCB.SndUna-tcb.ISS, i.TCB.SndNxt-tcb.ISS, i.Retransmits)
	}

	// A client arriving during the flood.
	c := cookieSyn(t, p, 40001, 1460)
	c.use(p)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("GET /")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 6}) // the first data: a quick ACK
	ep2, err := l.Accept()
	if err != nil {
		t.Fatalf("client not accepted: %v", err)
	}
	if _, err := ep2.Write([]byte("200 OK")); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 6, Payload: []byte("200 OK")})
	if d := p.Elapsed(); d != 0 {
		t.Errorf("the flood took %v of fake time", d)
	}
	wantCount(t, "CookiesAccepted", st.Listen.CookiesAccepted.Load(), 1)
}

// BenchmarkSynFlood runs the flood of TestSynFlood once per iteration and
// reports the heap cost of one half-open entry and the heap after the
// flood: go test -run - -bench SynFlood -benchtime 3x ./stack/tcp
func BenchmarkSynFlood(b *testing.B) {
	var r floodResult
	for b.Loop() {
		b.StopTimer()
		p := tcptest.New(b)
		l := p.Listen(16)
		b.StartTimer()
		r = flood(b, &flooder{p: p}, l, 0, nil)
		b.StopTimer()
		p.Stack.Close()
		b.StartTimer()
	}
	b.ReportMetric(r.perEntry, "B/half-open")
	b.ReportMetric(float64(r.heapAfter)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(r.perSYN.Nanoseconds()), "ns/SYN")
}

// TestSynFloodObserverBehind: a SYN flood meets a full SYN queue with
// cookies off, and each SYN dropped is a queue decision the listener
// holds for the observer (Listener.queueEvent) while a goroutine is held
// in the observer with the first of them. The listener holds at most
// maxQueuedEvents (2,048) for it; the rest are dropped and counted in
// LimitStats.EventsDropped, as a connection's are
// (TestObserverBehindPacketsLeave). Before, every decision of the flood
// waited in the listener's queue, unbounded.
func TestSynFloodObserverBehind(t *testing.T) {
	const syns = 10_000
	h := newHeldObserver(event.KindQueue)
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: h.observe, SynQueueLimit: 1, NoSynCookies: true}))
	defer h.release()
	p.Listen(16)
	f := &flooder{p: p}
	f.syn(0) // queued: the SYN queue is full
	f.discard()
	p.TCP.SyncEvents()

	h.hold.Store(true)
	held := make(chan struct{})
	go func() {
		defer close(held)
		f2 := &flooder{p: p}
		f2.syn(1) // dropped: its decision is delivered, and held, here
	}()
	h.waitHeld(t)
	seen := h.counted.Load()
	for i := range syns {
		f.syn(2 + i)
	}
	f.discard()
	st := p.TCP.Stats()
	wantCount(t, "dropped (SYN queue full)", st.Dropped(event.DropSynQueueFull), syns+1)
	dropped := p.TCP.Limits().EventsDropped.Load()
	if dropped < syns-2048 {
		t.Errorf("LimitStats.EventsDropped = %d, want at least %d", dropped, syns-2048)
	}
	h.release()
	<-held
	p.TCP.SyncEvents()
	late := h.counted.Load() - seen
	t.Logf("%d SYNs dropped with the observer held: %d queue decisions delivered once let go, %d events dropped", syns, late, dropped)
	if late > 2048 {
		t.Errorf("%d queue decisions delivered once the observer was let go, want at most 2,048 queued", late)
	}
}
