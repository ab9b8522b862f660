package tcp_test

import (
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// A SYN flood (RFC 4987 2): 100,000 SYNs from distinct source addresses
// and ports, which never answer the SYN-ACK. Memory stays bounded by the
// SYN queue limit: past it, SYN cookies answer and keep no state.

const floodSYNs = 100_000

// flooder injects SYNs with distinct (address, port) sources straight into
// the link, without tcptest's trace, and throws the replies away.
type flooder struct {
	p   *tcptest.Peer
	buf []byte
	n   int
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

// discard drops every reply the stack queued.
func (f *flooder) discard() {
	for range 1 << 20 {
		pkt := f.p.Link.Read()
		if pkt == nil {
			return
		}
		pkt.DecRef()
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
	heapAfter uint64  // heap after the flood
	perSYN    time.Duration
}

// flood fills the SYN queue, measuring the cost of a half-open entry, then
// sends the rest of the floodSYNs, which must all get cookies.
func flood(t testing.TB, p *tcptest.Peer, l *tcp.Listener) floodResult {
	f := &flooder{p: p}
	limit := l.Queues().SynQueueLimit
	before := heapInUse()
	start := time.Now()
	for i := range limit {
		f.syn(i)
	}
	f.discard()
	filled := heapInUse()
	for i := limit; i < floodSYNs; i++ {
		f.syn(i)
	}
	f.discard()
	elapsed := time.Since(start)
	after := heapInUse()

	st := p.TCP.Stats()
	if q := l.Queues(); q.SynQueueLen != limit {
		t.Fatalf("SYN queue %d/%d after the flood", q.SynQueueLen, limit)
	}
	if n := len(p.TCP.Connections()); n != limit {
		t.Fatalf("%d connections after the flood, want %d (the SYN queue limit)", n, limit)
	}
	if got := st.Listen.CookiesSent.Load(); got != uint64(floodSYNs-limit) {
		t.Fatalf("%d cookies sent, want %d", got, floodSYNs-limit)
	}
	return floodResult{
		perEntry:  float64(int64(filled)-int64(before)) / float64(limit),
		heapAfter: after,
		perSYN:    elapsed / floodSYNs,
	}
}

// TestSynFlood: under a flood of 100,000 SYNs, memory is bounded by the
// SYN queue, and a legitimate client still completes its handshake through
// a cookie, is accepted and exchanges data, with no clock advance at all.
func TestSynFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 SYNs")
	}
	t.Parallel() // seconds under -race; the heap figures are only logged
	p, l, _ := listen(t, 16, tcp.Options{})
	r := flood(t, p, l)
	t.Logf("%d SYNs: %.0f bytes per half-open entry, heap %.1f MiB after, %v per SYN",
		floodSYNs, r.perEntry, float64(r.heapAfter)/(1<<20), r.perSYN)

	// The legitimate client, during the flood.
	c := cookieSyn(t, p, 40000, 1460)
	c.use(p)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("GET /")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 6}) // the first data: a quick ACK
	ep, err := l.Accept()
	if err != nil {
		t.Fatalf("legitimate client not accepted: %v", err)
	}
	if _, err := ep.Write([]byte("200 OK")); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 6, Payload: []byte("200 OK")})
	if d := p.Elapsed(); d != 0 {
		t.Errorf("handshake took %v of fake time", d)
	}
	wantCount(t, "CookiesAccepted", p.TCP.Stats().Listen.CookiesAccepted.Load(), 1)
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
		r = flood(b, p, l)
		b.StopTimer()
		p.Stack.Close()
		b.StartTimer()
	}
	b.ReportMetric(r.perEntry, "B/half-open")
	b.ReportMetric(float64(r.heapAfter)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(r.perSYN.Nanoseconds()), "ns/SYN")
}
