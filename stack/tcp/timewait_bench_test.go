package tcp_test

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// quiet drives connections through the fixture without tcptest's trace,
// which would otherwise weigh more than what a memory figure measures:
// raw packets in, replies read and parsed by hand.
type quiet struct {
	p *tcptest.Peer
}

// reply reads the next segment the stack sent and returns its sequence
// number; it fails if there is none.
func (q quiet) reply(tb testing.TB) uint32 {
	pkt := q.p.Link.Read()
	if pkt == nil {
		tb.Fatal("no reply")
	}
	v := pkt.ToView()
	pkt.DecRef()
	b := v.AsSlice()
	seq := header.TCP(b[header.IPv4(b).HeaderLength():]).SequenceNumber()
	v.Release()
	return seq
}

func (q quiet) inject(s seg) { q.p.InjectIPv4(peerIPv4(q.p.Encode(s))) }

// established opens a connection from port and accepts it.
func (q quiet) established(tb testing.TB, port uint16) *tcp.Endpoint {
	p := q.p
	p.PeerPort = port
	p.SetStackISS(0, true)
	q.inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.SetStackISS(q.reply(tb), true)
	q.inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := p.Listener.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	return ep
}

// timeWait takes the accepted connection on port through an active close
// into TIME-WAIT. The stack's ISS for port must be set in p.
func (q quiet) timeWait(tb testing.TB, ep *tcp.Endpoint) {
	ep.Close()
	q.reply(tb) // FIN
	q.inject(seg{Flags: "F.", Seq: 1, Ack: 2})
	q.reply(tb) // ACK
}

// BenchmarkTimeWaitEntry measures what a connection in TIME-WAIT costs the
// heap once its user dropped the Endpoint (the compact record, its table
// entry), against an established connection (an Endpoint with empty
// buffers, its timers, route and demuxer entry):
//
//	go test -run - -bench TimeWaitEntry -benchtime 3x ./stack/tcp
func BenchmarkTimeWaitEntry(b *testing.B) {
	const n = 10_000
	var perTW, perEst float64
	for b.Loop() {
		b.StopTimer()
		p := tcptest.New(b, tcptest.WithTCP(tcp.Options{MaxTimeWait: 2 * n}))
		p.Listen(n)
		q := quiet{p}
		eps := make([]*tcp.Endpoint, 0, n)
		isses := make([]uint32, 0, n)
		// A first round grows the tables of the engine, of gVisor and
		// of the fake clock to n entries: maps and slices do not
		// shrink, and their capacity is not what the figures are about.
		for i := range n {
			q.timeWait(b, q.established(b, uint16(10000+i)))
		}
		p.Clock.Advance(p.TCP.Options().TimeWait + 2*time.Second)
		before := heapInUse()
		for i := range n {
			eps = append(eps, q.established(b, uint16(10000+i)))
			iss, _ := p.StackISS()
			isses = append(isses, iss)
		}
		est := heapInUse()
		for i, ep := range eps {
			p.PeerPort = uint16(10000 + i)
			p.SetStackISS(isses[i], true)
			q.timeWait(b, ep)
		}
		clear(eps)
		eps = nil
		// faketime's clock keeps a stopped timer in its heap until its
		// deadline passes (the real clock lets go at once); the
		// Endpoints' timers were at most an RTO away.
		p.Clock.Advance(2 * time.Second)
		tw := heapInUse()
		if u := p.TCP.Usage(); u.TimeWait != n || u.Connections != 0 {
			b.Fatalf("Usage %+v, want %d in TIME-WAIT", u, n)
		}
		perEst = float64(int64(est)-int64(before)) / n
		perTW = float64(int64(tw)-int64(before)) / n
		p.Stack.Close()
		b.StartTimer()
	}
	b.ReportMetric(perTW, "B/time-wait")
	b.ReportMetric(perEst, "B/established")
}
