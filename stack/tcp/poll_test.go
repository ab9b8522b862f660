package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestReadableWritable: Readable and Writable say what Read and Write
// would do, without doing it: not readable until text arrives, readable
// while it waits and again after the peer's FIN (io.EOF); writable until
// the send buffer is full, and again once an ACK frees room.
func TestReadableWritable(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{SendBufferSize: 4096}))
	readable := func(want bool) {
		t.Helper()
		if got := ep.Readable(); got != want {
			t.Fatalf("Readable() = %v, want %v", got, want)
		}
	}
	writable := func(want bool) {
		t.Helper()
		if got := ep.Writable(); got != want {
			t.Fatalf("Writable() = %v, want %v", got, want)
		}
	}
	readable(false)
	writable(true)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
	readable(true)
	if got := readAll(t, ep); len(got) != 100 {
		t.Fatalf("Read %d bytes, want 100", len(got))
	}
	readable(false)

	p.Inject(seg{Flags: ".", Seq: 101, Ack: 1, Win: 0, Check: tcptest.CheckWin}) // nothing leaves
	if n, err := ep.Write(payload(0, 4096)); n != 4096 || err != nil {
		t.Fatalf("Write = %d, %v; want the buffer's 4096", n, err)
	}
	writable(false)
	if n, err := ep.Write(payload(0, 1)); n != 0 || err != tcp.ErrWouldBlock {
		t.Fatalf("Write with the buffer full = %d, %v; want ErrWouldBlock", n, err)
	}
	p.Inject(seg{Flags: ".", Seq: 101, Ack: 1, Win: 65535}) // the window opens
	for _, s := range p.Drain() {
		p.Inject(seg{Flags: ".", Seq: 101, Ack: s.Seq + uint32(len(s.Payload))})
	}
	writable(true)

	p.Inject(seg{Flags: "F.", Seq: 101, Ack: 4097})
	readable(true) // Read would return io.EOF
}
