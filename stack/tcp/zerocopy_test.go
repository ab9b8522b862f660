package tcp_test

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestReadTo: ReadTo hands w what Read would have returned, and the
// window follows as it does after a Read: the peer fills an 8-segment
// buffer, the window closes, and one ReadTo takes the eight segments and
// reopens it whole. With nothing left it blocks no more than Read does
// (ErrWouldBlock), and after the peer's FIN it says io.EOF.
func TestReadTo(t *testing.T) {
	const mss = 1460
	p, ep := fullReceiveBuffer(t, mss, 8)
	var w bytes.Buffer
	n, err := ep.ReadTo(&w)
	if n != 8*mss || err != nil {
		t.Fatalf("ReadTo = %d, %v; want %d, nil", n, err, 8*mss)
	}
	if !bytes.Equal(w.Bytes(), payload(0, 8*mss)) {
		t.Fatalf("w got %d bytes, not the 8 segments in order", w.Len())
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1 + 8*mss, Win: 8 * mss, Check: tcptest.CheckWin}) // the window reopened
	if n, err := ep.ReadTo(&w); n != 0 || err != tcp.ErrWouldBlock {
		t.Fatalf("ReadTo with nothing received = %d, %v; want 0, ErrWouldBlock", n, err)
	}
	p.Inject(seg{Flags: "F.", Seq: 1 + 8*mss, Ack: 1})
	p.Advance(p.TCP.Options().DelayedAck) // the FIN's ACK waits (finAckPolicy)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2 + 8*mss})
	if n, err := ep.ReadTo(&w); n != 0 || err != io.EOF {
		t.Fatalf("ReadTo after the FIN = %d, %v; want 0, io.EOF", n, err)
	}
}

// failWriter takes max bytes, then fails.
type failWriter struct {
	max int
	got []byte
}

var errWriter = errors.New("writer failed")

func (f *failWriter) Write(b []byte) (int, error) {
	if len(f.got)+len(b) > f.max {
		n := f.max - len(f.got)
		f.got = append(f.got, b[:n]...)
		return n, errWriter
	}
	f.got = append(f.got, b...)
	return len(b), nil
}

// TestReadToWriterFails: when w fails, ReadTo returns what w took and w's
// error; the bytes it had taken from the receive buffer are gone, as
// io.Copy's are when its Write fails, and the next read sees the bytes
// that arrived after them.
func TestReadToWriterFails(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 1000)})
	w := &failWriter{max: 300}
	if n, err := ep.ReadTo(w); n != 300 || err != errWriter {
		t.Fatalf("ReadTo = %d, %v; want 300, the writer's error", n, err)
	}
	p.Inject(seg{Flags: "P.", Seq: 1001, Ack: 1, Payload: payload(1000, 100)})
	if got := readAll(t, ep); !bytes.Equal(got, payload(1000, 100)) {
		t.Fatalf("Read after the failed ReadTo = %d bytes, want the 100 that came after", len(got))
	}
}

// TestWriteFrom: WriteFrom reads r once, into the send buffer, and what it
// read leaves as Write's bytes would (TestSegmentation's trace: three
// full segments, Nagle holding the short tail until they are
// acknowledged). At r's end it queues nothing and says io.EOF; once the
// sending side is closed, EPIPE.
func TestWriteFrom(t *testing.T) {
	p, ep := tcptest.Established(t)
	data := payload(0, 5000)
	r := bytes.NewReader(data)
	if n, err := ep.WriteFrom(r); n != 5000 || err != nil {
		t.Fatalf("WriteFrom = %d, %v; want 5000, nil", n, err)
	}
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Payload: data[1460:2920]})
	p.Expect(seg{Flags: "P.", Seq: 2921, Ack: 1, Payload: data[2920:4380]})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 4381})
	p.Expect(seg{Flags: "P.", Seq: 4381, Ack: 1, Payload: data[4380:]})
	if n, err := ep.WriteFrom(r); n != 0 || err != io.EOF {
		t.Fatalf("WriteFrom at the reader's end = %d, %v; want 0, io.EOF", n, err)
	}
	p.ExpectNothing()
	ep.CloseWrite()
	p.Expect(seg{Flags: "F.", Seq: 5001, Ack: 1})
	if n, err := ep.WriteFrom(bytes.NewReader(data)); n != 0 || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("WriteFrom after CloseWrite = %d, %v; want 0, EPIPE", n, err)
	}
}

// TestWriteFromFullBuffer: with the send buffer full, WriteFrom reads
// nothing from r and says ErrWouldBlock, as Write does.
func TestWriteFromFullBuffer(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{SendBufferSize: 4096}))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
	r := bytes.NewReader(payload(0, 8192))
	for range 8 {
		if _, err := ep.WriteFrom(r); err != nil {
			break
		}
	}
	left := r.Len()
	if n, err := ep.WriteFrom(r); n != 0 || err != tcp.ErrWouldBlock {
		t.Fatalf("WriteFrom with the buffer full = %d, %v; want 0, ErrWouldBlock", n, err)
	}
	if r.Len() != left {
		t.Fatalf("WriteFrom with the buffer full read %d bytes of r", left-r.Len())
	}
	if q := ep.SendQueued(); q != 4096 {
		t.Fatalf("send buffer holds %d bytes, want its 4096", q)
	}
}

// TestWriteFromShortReads: a reader that returns a byte at a time queues
// its bytes in small views, joined as small writes are, not in a 64 KiB
// chunk each: the send buffer limits bytes, and the memory holding them
// stays near that.
func TestWriteFromShortReads(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin}) // nothing leaves
	r := iotest.OneByteReader(bytes.NewReader(payload(0, 100)))
	for range 100 {
		if n, err := ep.WriteFrom(r); n != 1 || err != nil {
			t.Fatalf("WriteFrom = %d, %v; want 1, nil", n, err)
		}
	}
	if q, mem := ep.SendQueued(), ep.SendBufferMemory(); q != 100 || mem > 100*64 {
		t.Fatalf("100 one-byte reads: %d bytes queued in %d bytes of views; want 100 in at most %d", q, mem, 100*64)
	}
}

// TestWriteFromN: WriteFromN reads at most its limit, and 64 KiB, as
// WriteFrom, when the limit is none or larger.
func TestWriteFromN(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{SendBufferSize: 1 << 20}))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin}) // nothing leaves
	data := payload(0, 200000)
	r := bytes.NewReader(data)
	for _, tc := range []struct{ limit, want int }{{1000, 1000}, {1, 1}, {0, 64 << 10}, {1 << 20, 64 << 10}} {
		if n, err := ep.WriteFromN(r, tc.limit); n != int64(tc.want) || err != nil {
			t.Errorf("WriteFromN(r, %d) = %d, %v; want %d, nil", tc.limit, n, err, tc.want)
		}
	}
	if q := ep.SendQueued(); q != 1001+2*(64<<10) {
		t.Errorf("%d bytes queued, want %d", q, 1001+2*(64<<10))
	}
}
