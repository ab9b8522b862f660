package otel_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// liveSpans is a span processor that counts the spans started and not
// yet ended, and the most there were at once: what a tracer keeps open.
type liveSpans struct {
	mu                         sync.Mutex
	live, most, started, ended int
	rootEnd                    int
}

func (l *liveSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {
	l.mu.Lock()
	l.live++
	l.started++
	l.most = max(l.most, l.live)
	l.mu.Unlock()
}

func (l *liveSpans) OnEnd(s sdktrace.ReadOnlySpan) {
	l.mu.Lock()
	l.live--
	l.ended++
	if s.Name() == otel.SpanConnection {
		l.rootEnd++
	}
	l.mu.Unlock()
}
func (l *liveSpans) Shutdown(context.Context) error   { return nil }
func (l *liveSpans) ForceFlush(context.Context) error { return nil }

// A SYN flood (RFC 4987 2) of 100,000 SYNs from distinct sources that
// never complete the handshake. The engine holds SynQueueLimit half-open
// entries and answers the rest with cookies; the tracer traces at most
// MaxConns of them at once, counts the rest, and never has more than
// three spans open per traced connection. When the half-open entries
// expire (SYN-ACK retries exhausted), every trace ends: nothing is left
// open.
func TestSynFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 SYNs")
	}
	t.Parallel() // seconds under -race
	const (
		syns     = 100_000
		maxConns = 256
	)
	live := &liveSpans{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(live))
	tr := otel.New(otel.Options{TracerProvider: tp, MaxConns: maxConns,
		Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "server")}})
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: tr.Observe}))
	l := p.Listen(16)
	limit := l.Queues().SynQueueLimit
	f := flooder{link: p.Link}
	for i := range syns {
		f.syn(i)
	}
	f.discard()

	// Every SYN reached the engine and was answered: from the SYN queue
	// while it had room, with a cookie after.
	es := p.TCP.Stats()
	synAcks, cookies := es.Sends[event.SendSynAck].Load(), es.Sends[event.SendSynAckCookie].Load()
	if in := es.SegmentsIn.Load(); in != syns || synAcks+cookies != syns || synAcks != uint64(limit) {
		t.Fatalf("engine: %d segments in, %d SYN-ACKs and %d cookie SYN-ACKs; want %d in, %d and %d",
			in, synAcks, cookies, syns, limit, syns-limit)
	}
	st := tr.Stats()
	t.Logf("after %d SYNs (%d queued, %d answered with cookies): %+v; spans open %d (most %d); SYN queue %d",
		syns, synAcks, cookies, st, live.live, live.most, l.Queues().SynQueueLen)
	if st.Traced != maxConns || st.MaxOpen != maxConns || st.Open != maxConns {
		t.Errorf("traced %d, open %d (most %d), want %d each", st.Traced, st.Open, st.MaxOpen, maxConns)
	}
	if want := uint64(limit - maxConns); st.OverLimit != want {
		t.Errorf("%d connections over the limit, want %d (the SYN queue's %d less MaxConns)", st.OverLimit, want, limit)
	}
	if bound := 3 * maxConns; live.most > bound {
		t.Errorf("%d spans open at once, want at most %d (root, handshake, syn_queue per traced connection)", live.most, bound)
	}

	// SYN-ACK retransmissions at 1, 3, 7, 15, 31 s; the entries go at 63 s.
	for range 70 {
		p.Advance(time.Second)
		f.discard()
	}
	st = tr.Stats()
	if st.Open != 0 || live.live != 0 || live.rootEnd != maxConns {
		t.Errorf("after expiry: %d connections traced, %d spans open, %d roots ended; want 0, 0, %d",
			st.Open, live.live, live.rootEnd, maxConns)
	}
}

// flooder injects SYNs from distinct (address, port) sources straight
// into the stack's link and throws its answers away.
type flooder struct {
	link interface {
		InjectInbound(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer)
		Read() *gstack.PacketBuffer
	}
	n int
}

func (f *flooder) syn(i int) {
	src := tcpip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i/50000)})
	dst := tcpip.AddrFrom4(tcptest.StackAddr.As4())
	const size = header.IPv4MinimumSize + header.TCPMinimumSize
	b := make([]byte, size)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: size, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	h := header.TCP(b[header.IPv4MinimumSize:])
	h.Encode(&header.TCPFields{SrcPort: uint16(10000 + i%50000), DstPort: tcptest.ListenPort, SeqNum: uint32(i) * 7919,
		DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
	h.SetChecksum(^checksum.Checksum(h, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(h)))))
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	f.link.InjectInbound(ipv4.ProtocolNumber, pkt)
	pkt.DecRef()
	if f.n++; f.n%512 == 0 {
		f.discard()
	}
}

func (f *flooder) discard() {
	for range 1 << 20 {
		pkt := f.link.Read()
		if pkt == nil {
			return
		}
		pkt.DecRef()
	}
}
