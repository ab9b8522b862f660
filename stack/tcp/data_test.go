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

// TestDelayedAck: a single in-order segment is acknowledged after the
// delayed-ACK timeout (RFC 9293 3.8.6.3; 40 ms like Linux), a second one
// at once (RFC 5681 4.2: at least every second full-sized segment).
func TestDelayedAck(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
	p.ExpectNothing()
	p.Advance(40*time.Millisecond - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 101})

	p.Inject(seg{Flags: ".", Seq: 101, Ack: 1, Payload: payload(100, 1460)})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1561, Ack: 1, Payload: payload(1560, 1460)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 3021})
	p.Advance(time.Second)
	p.ExpectNothing() // the delayed ACK was cancelled by the immediate one
	if got := readAll(t, ep); !bytes.Equal(got, payload(0, 3020)) {
		t.Fatalf("Read %d bytes, want 3020 in order", len(got))
	}
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

// TestSegmentation: a large Write leaves in segments of the send MSS, as
// many as min(SND.WND, cwnd) allows (RFC 9293 3.8.6.2.1, RFC 5681 3.1 with
// the RFC 6928 initial window of 10 segments), and Nagle (3.7.4) holds the
// short tail until the data before it is acknowledged.
func TestSegmentation(t *testing.T) {
	t.Run("window allows all", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		data := payload(0, 5000)
		if n, err := ep.Write(data); n != 5000 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
		p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Payload: data[1460:2920]})
		p.Expect(seg{Flags: ".", Seq: 2921, Ack: 1, Payload: data[2920:4380]})
		p.ExpectNothing() // 620-byte tail: Nagle
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
		p.Expect(seg{Flags: "P.", Seq: 4381, Ack: 1, Payload: data[4380:]})
	})
	t.Run("peer window 3000", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 3000}) // window update
		data := payload(0, 5000)
		ep.Write(data)
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460})
		p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1460})
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
			p.Expect(seg{Flags: ".", Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460})
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

// TestAckPiggyback: data sent while an ACK is delayed carries it, and the
// delayed ACK then stays silent (RFC 9293 3.8.6.3).
func TestAckPiggyback(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("ping")})
	p.ExpectNothing()
	ep.Write([]byte("pong"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 5, Payload: []byte("pong")})
	p.Advance(40 * time.Millisecond)
	p.ExpectNothing()
}
