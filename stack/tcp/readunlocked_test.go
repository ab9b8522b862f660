package tcp_test

import (
	"bytes"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestReadCopiesWithoutLock: a Read of 16 KiB or more copies without the
// connection's lock, so a segment that arrives meanwhile is taken in at
// once rather than wait for the copy, as Linux's socket backlog lets a
// softirq queue a segment while a reader owns the socket. The Read
// returns what was there when it began, whole; the next one the new
// segment's bytes; the window reopens by what was read. A Read of less
// copies under the lock, as before: the hook does not run.
func TestReadCopiesWithoutLock(t *testing.T) {
	const mss, segs = 1460, 12
	const n = mss * segs // 17,520 bytes: above readUnlockedMin
	p, ep := tcptest.Established(t)
	for i := range segs {
		p.Inject(seg{Flags: ".", Seq: uint32(1 + i*mss), Ack: 1, Payload: payload(i*mss, mss)})
	}
	p.Drain()
	calls := 0
	tcp.DuringReadUnlocked(ep, func() {
		calls++
		if tcp.Locked(ep) {
			t.Error("Read holds the connection's lock while it copies")
			return // an Inject would wait for the lock forever
		}
		p.Inject(seg{Flags: "P.", Seq: 1 + n, Ack: 1, Payload: payload(n, 1000)})
		if q := ep.Info().RecvQueued; q != n+1000 {
			t.Errorf("during the copy the receive buffer holds %d bytes, want %d: the segment was not taken in", q, n+1000)
		}
	})
	buf := make([]byte, 64<<10)
	got, err := ep.Read(buf)
	if err != nil || got != n || !bytes.Equal(buf[:got], payload(0, n)) {
		t.Fatalf("Read = %d, %v; want the %d bytes that were there when it began", got, err, n)
	}
	if calls != 1 {
		t.Fatalf("the copy ran without the lock %d times, want 1", calls)
	}
	if q := ep.Info().RecvQueued; q != 1000 {
		t.Errorf("after the Read %d bytes queued, want the new segment's 1000", q)
	}
	got, err = ep.Read(buf) // 1,000 bytes: a copy under the lock
	if err != nil || got != 1000 || !bytes.Equal(buf[:got], payload(n, 1000)) {
		t.Fatalf("the next Read = %d, %v; want the new segment's 1000 bytes", got, err)
	}
	if calls != 1 {
		t.Errorf("a Read of 1,000 bytes copied without the lock")
	}
	if _, err := ep.Read(buf); err != tcp.ErrWouldBlock {
		t.Errorf("a third Read: %v, want ErrWouldBlock", err)
	}
}
