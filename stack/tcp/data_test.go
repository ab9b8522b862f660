package tcp_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// payload returns n recognisable bytes starting at offset off of a stream.
func payload(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + (off+i)%26)
	}
	return b
}

func readAll(t *testing.T, ep *tcp.Endpoint) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 4096)
	for range 1 << 12 {
		n, err := ep.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	return out
}

// TestNoWindowUpdateForSmallRead: reading 100 bytes moves the right edge
// of the window by 100 bytes at most, less than min(buffer/2, MSS), so the
// receiver's SWS avoidance (RFC 9293 3.8.6.2.2) must not send a window
// update. With window scaling off the advertised window is capped at
// 65535 and cannot grow at all.
func TestNoWindowUpdateForSmallRead(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 101, Win: 65535})
	if got := readAll(t, ep); len(got) != 100 {
		t.Fatalf("Read %d bytes", len(got))
	}
	p.ExpectNothing()
}

// TestScaledWindowKeepsRightEdge: RFC 9293 3.8.6.2.2 (a receiver SHOULD
// NOT shrink the window, move its right edge left) with a window scale
// (RFC 7323 2.3): the window field counts 128-byte units at scale 7. The
// SYN-ACK offered 8192 bytes, unscaled: the right edge is 1+8192. After
// 100 bytes the window promised is 8092, not a whole unit; rounded down
// (63 units) it would put the edge 28 bytes left, at 8165. As Linux's
// tcp_select_window (ALIGN), it is rounded up instead: 64 units, the edge
// at 8293, 100 bytes right, while the buffer has room for the unit.
//
// Only while it has: a user who never reads, and a peer that fills every
// window in 100-byte segments, would otherwise keep the window at 64 units
// for ever (Linux drops what its memory accounting refuses; here the
// window is the only bound), so once the buffer lacks the unit the window
// is rounded down, and the text held stays within the buffer and a unit.
func TestScaledWindowKeepsRightEdge(t *testing.T) {
	p, ep := tcptest.Established(t,
		tcptest.WithTCP(tcp.Options{ReceiveBufferSize: 8192, ReceiveBufferMax: 4 << 20}),
		tcptest.WithSynOptions(seg{MSS: 1460, WS: 7}))
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
	p.Advance(time.Second)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 101, Win: 64})

	next, edge := uint32(101), uint32(101+64<<7)
	for range 200 {
		if next+100 > edge {
			break
		}
		p.Inject(seg{Flags: "P.", Seq: next, Ack: 1, Payload: payload(int(next-1), 100)})
		next += 100
		p.Advance(time.Second)
		for _, s := range p.Drain() {
			edge = s.Ack + uint32(s.Win)<<7
		}
	}
	if q := ep.Info().RecvQueued; q > 8192+127 {
		t.Errorf("%d bytes held unread, more than the 8192-byte buffer and a unit of the scale", q)
	}
}

// TestOutOfOrder: out-of-order data is answered at once with a duplicate
// ACK (RFC 5681 4.2, RFC 9293 3.8.6.3), kept, and delivered in order once
// the hole is filled, which is acknowledged at once too.
func TestOutOfOrder(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: ".", Seq: 101, Ack: 1, Payload: payload(100, 100)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Inject(seg{Flags: "P.", Seq: 201, Ack: 1, Payload: payload(200, 100)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	if n, err := ep.Read(make([]byte, 10)); err != tcp.ErrWouldBlock {
		t.Fatalf("Read with a hole = %d, %v; want ErrWouldBlock", n, err)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 100)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 301})
	p.Advance(time.Second)
	p.ExpectNothing() // nothing left to acknowledge
	if got := readAll(t, ep); !bytes.Equal(got, payload(0, 300)) {
		t.Fatalf("Read %d bytes %q, want the 300 bytes in order", len(got), got)
	}
}

// TestOutOfOrderOverlap: overlapping and duplicate out-of-order pieces are
// reassembled byte-exact.
func TestOutOfOrderOverlap(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: ".", Seq: 51, Ack: 1, Payload: payload(50, 100)}) // 51..150
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 101, Ack: 1, Payload: payload(100, 100)}) // 101..200
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 51, Ack: 1, Payload: payload(50, 100)}) // duplicate
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: payload(0, 60)}) // 1..60 overlaps 51..
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 201})
	if got := readAll(t, ep); !bytes.Equal(got, payload(0, 200)) {
		t.Fatalf("Read %d bytes, want 200 in order", len(got))
	}
}

// trainFlags is the flags of segment i of n new segments sent back to
// back in the initial window of 10 segments, before an RTT sample: PSH on
// the last of a train of more than one (send.go), as Linux marks each GSO
// packet, and a train is at most half the window, 5 segments
// (tcp_cwnd_test).
func trainFlags(i, n int) string {
	if n > 1 && (i == n-1 || (i+1)%5 == 0) {
		return "P."
	}
	return "."
}

// TestSegmentation: a large Write leaves in segments of the send MSS, as
// many as min(SND.WND, cwnd) allows (RFC 9293 3.8.6.2.1, RFC 5681 3.1 with
// the RFC 6928 initial window of 10 segments), and Nagle (3.7.4) holds the
// short tail until the data before it is acknowledged. Each run of
// segments sent back to back ends with PSH.
func TestSegmentation(t *testing.T) {
	t.Run("window allows all", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		data := payload(0, 5000)
		if n, err := ep.Write(data); n != 5000 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
		p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Payload: data[1460:2920]})
		p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Payload: data[2920:4380]}) // the train's end
		p.ExpectNothing()                                                       // 620-byte tail: Nagle
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
		p.Expect(seg{Flags: "P.", Seq: 4381, Ack: 1, Payload: data[4380:]})
	})
	t.Run("peer window 3000", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 3000}) // window update
		data := payload(0, 5000)
		ep.Write(data)
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
		p.Expect(seg{Flags: "P.", Seq: 1461, Ack: 1, Len: 1460})
		p.ExpectNothing() // 80 bytes of window left: sender SWS avoidance
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 2921, Win: 3000})
		p.Expect(seg{Flags: ".", Seq: 2921, Ack: 1, Len: 1460})
		p.ExpectNothing() // Nagle holds the 620-byte tail
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381, Win: 3000})
		p.Expect(seg{Flags: "P.", Seq: 4381, Ack: 1, Payload: data[4380:]})
	})
	t.Run("initial window", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		ep.Write(payload(0, 20*1460))
		for i := range 10 {
			p.Expect(seg{Flags: trainFlags(i, 10), Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460})
		}
		p.ExpectNothing() // cwnd = IW = 10 segments (RFC 6928)
	})
}

// TestZeroWindowProbe: with the peer's window at zero and data queued, the
// persist timer sends probes (RFC 9293 3.8.6.1), backing off like the RTO;
// here Linux-style probes <SEQ=SND.UNA-1><ACK=RCV.NXT>. When the window
// opens the data goes.
func TestZeroWindowProbe(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
	ep.Write([]byte("hello"))
	p.ExpectNothing()
	rto := ep.Info().RTO
	if rto <= 0 {
		t.Fatalf("RTO %v", rto)
	}
	for i, d := range []time.Duration{rto, 2 * rto, 4 * rto} {
		p.Advance(d - 1)
		p.ExpectNothing()
		p.Advance(1)
		p.Expect(seg{Flags: ".", Seq: 0, Ack: 1})
		p.Logf("probe %d answered with a zero window", i+1)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
		p.ExpectNothing()
	}
	p.WantState(ep, event.Established)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 1000})
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hello")})
}

// TestNagle: RFC 9293 3.7.4. A small write goes at once when nothing is
// outstanding; a second small write waits for the ACK of the first. With
// SetNoDelay both go at once.
func TestNagle(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		ep.Write([]byte("a"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("a")})
		ep.Write([]byte("b"))
		ep.Write([]byte("c"))
		p.ExpectNothing()
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
		p.Expect(seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("bc")})
	})
	t.Run("off", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		ep.SetNoDelay(true)
		ep.Write([]byte("a"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("a")})
		ep.Write([]byte("b"))
		p.Expect(seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("b")})
	})
}

// TestPushEndsTrain: new data leaving back to back is cut into trains the
// size of the GSO packets Linux would build (tcp_tso_autosize: a
// millisecond's worth at the pacing rate, at least 2 segments, more on
// paths under 16 ms; never more than half the congestion window), and the
// last segment of each train carries PSH, as Linux marks every GSO packet.
// The pacing rate in slow start is 2·cwnd/SRTT; cwnd is 10 segments of
// 1,460 bytes here.
func TestPushEndsTrain(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rtt   time.Duration
		train int // segments per train
	}{
		// 2·14,600 B / 100 ms = 292 kB/s: 285 B a millisecond, the
		// minimum of 2 segments.
		{"100ms", 100 * time.Millisecond, 2},
		// 2.92 MB/s: 2,851 B, still 2 segments; 10 ms >> 9 leaves no
		// share of 64 KiB.
		{"10ms", 10 * time.Millisecond, 2},
		// 29.2 MB/s: 28,515 B, plus 64 KiB >> 1 for a 1 ms path: 41
		// segments, more than half the window, which bounds a train
		// (tcp_cwnd_test): 5.
		{"1ms", time.Millisecond, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, l := tcptest.Listen(t)
			p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
			p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
			p.Advance(tc.rtt)
			p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
			ep, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			ep.Write(payload(0, 20*1460))
			for i := range 10 {
				flags := "."
				if (i+1)%tc.train == 0 || i == 9 { // a full train, or the window's end
					flags = "P."
				}
				p.Expect(seg{Flags: flags, Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460})
			}
			p.ExpectNothing() // the window is full
		})
	}
}

// TestSWSAvoidanceIdle: with nothing in flight, a window too small for a
// full segment and less than half the largest the peer offered does not
// let a short segment out (RFC 9293 3.8.6.2.1: sender SWS avoidance); no
// ACK will come to open it, so the persist timer is the override timeout
// of (d): when it fires, what fits goes. A window update before then
// lets a full segment go instead.
func TestSWSAvoidanceIdle(t *testing.T) {
	p, ep := tcptest.Established(t)
	ep.Write(payload(0, 1000))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1000})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1001, Win: 10})
	ep.Write(payload(1000, 1000))
	p.ExpectNothing() // 10 bytes of window: wait
	rto := ep.Info().RTO
	p.Advance(rto - time.Millisecond)
	p.ExpectNothing()
	p.Advance(time.Millisecond)
	p.Expect(seg{Flags: "P.", Seq: 1001, Ack: 1, Len: 10}) // the override
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1011, Win: 65535})
	p.Expect(seg{Flags: "P.", Seq: 1011, Ack: 1, Len: 990})

	// A window update in time: the full segment, never the short one.
	p2, ep2 := tcptest.Established(t)
	ep2.Write(payload(0, 1000))
	p2.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1000})
	p2.Inject(seg{Flags: ".", Seq: 1, Ack: 1001, Win: 10})
	ep2.Write(payload(1000, 1000))
	p2.ExpectNothing()
	p2.Inject(seg{Flags: ".", Seq: 1, Ack: 1001, Win: 65535})
	p2.Expect(seg{Flags: "P.", Seq: 1001, Ack: 1, Len: 1000})
}

// fullReceiveBuffer is an established connection with a receive buffer
// of n segments of mss bytes, and delayed ACKs (NoQuickAck), that the peer
// has filled: each second segment is acknowledged, the window shrinking
// by two segments each time, down to a closed window.
func fullReceiveBuffer(t *testing.T, mss, n int) (*tcptest.Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{ReceiveBufferSize: n * mss, NoQuickAck: true}))
	for i := range n {
		p.Inject(seg{Flags: ".", Seq: 1 + uint32(i*mss), Ack: 1, Payload: payload(i*mss, mss)})
		if i%2 == 1 {
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + uint32((i+1)*mss), Win: uint16((n - i - 1) * mss), Check: tcptest.CheckWin})
		}
	}
	return p, ep
}

// TestWindowUpdateWhenDoubled: after reads, a window update goes out on
// its own only when the window promised has fallen below half the buffer
// and would at least double, as Linux's tcp_cleanup_rbuf decides (and
// grow by at least the SWS threshold, RFC 9293 3.8.6.2.2): a reader
// draining a full buffer in small reads draws a few updates, not one per
// read.
func TestWindowUpdateWhenDoubled(t *testing.T) {
	const mss = 1460
	p, ep := fullReceiveBuffer(t, mss, 8)
	read := func(n int) {
		t.Helper()
		buf := make([]byte, n)
		if k, err := ep.Read(buf); k != n || err != nil {
			t.Fatalf("Read = %d, %v; want %d", k, err, n)
		}
	}
	read(2 * mss) // from a closed window to two segments: an update
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 8*mss, Win: 2 * mss})
	read(mss) // three segments would not double two
	p.ExpectNothing()
	read(mss) // four: doubled
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 8*mss, Win: 4 * mss})
	read(mss)
	read(mss)
	read(mss)
	read(mss) // the promise (four) is no longer below half the buffer
	p.ExpectNothing()
}
