package tcp_test

import (
	"bytes"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestWritePushesAsItCopies: a Write of 1 MiB on a connection with
// nothing in flight sends its first segments once its first 64 KiB are
// in the send buffer, not after all of it is copied, as Linux's
// tcp_sendmsg pushes while it copies. The observer hears of the first
// data segment on the writing goroutine, during the Write, and asks the
// connection then how much it holds: 64 KiB. Before, the whole megabyte
// was copied under the connection's lock first, and the link idled for
// the length of the copy (up to 1.2 ms over a TAP).
func TestWritePushesAsItCopies(t *testing.T) {
	var ep atomic.Pointer[tcp.Endpoint]
	queuedAtFirst := -1
	obs := func(ev event.Event) {
		if e := ep.Load(); e != nil && ev.Kind == event.KindSend && ev.Segment.Len > 0 && queuedAtFirst < 0 {
			queuedAtFirst = e.SendQueued()
		}
	}
	p, e := tcptest.Established(t, tcptest.WithTCP(tcp.Options{SendBufferSize: 2 << 20, Observer: obs}))
	ep.Store(e)
	data := payload(0, 1<<20)
	if n, err := e.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write of 1 MiB = %d, %v", n, err)
	}
	if queuedAtFirst != 64<<10 {
		t.Fatalf("the first data segment left with %d bytes in the send buffer; want the first 64 KiB chunk (65536), not the whole Write", queuedAtFirst)
	}
	// The initial window (10 segments) left, in order, the 1 MiB's
	// first bytes; the rest waits for ACKs.
	var got []byte
	for _, s := range p.Drain() {
		got = append(got, s.Payload...)
	}
	if want := data[:10*1460]; !bytes.Equal(got, want) {
		t.Fatalf("sent %d bytes; want the first %d of the Write", len(got), len(want))
	}
}

// TestConcurrentSendsKeepTheLimit: SEND copies its bytes in without the
// connection's lock, so that ACKs are not held up behind the copy, and
// takes its room first. Eight goroutines Write, WriteMore and WriteFrom
// at once into a 64 KiB send buffer that the silent peer never drains:
// the buffer ends full and never holds more than its limit, since one
// SEND at a time may take room and copy (wmu). Without that, two SENDs
// that saw the same room both copied it in (90-106 KiB).
func TestConcurrentSendsKeepTheLimit(t *testing.T) {
	const limit = 64 << 10
	for range 20 {
		_, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{SendBufferSize: limit, SendBufferMax: limit}))
		var wg sync.WaitGroup
		var start sync.WaitGroup
		start.Add(1)
		for i := range 8 {
			wg.Go(func() {
				start.Wait()
				b := bytes.Repeat([]byte{byte(i)}, 40<<10)
				for blocked := 0; blocked < 3; {
					var err error
					switch i % 3 {
					case 0:
						_, err = ep.Write(b)
					case 1:
						_, err = ep.WriteMore(b)
					default:
						_, err = ep.WriteFrom(bytes.NewReader(b))
					}
					if errors.Is(err, tcp.ErrWouldBlock) {
						blocked++
						runtime.Gosched()
					} else if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		start.Done()
		wg.Wait()
		if q, lim := ep.SendQueued(), ep.Info().SendBuffer; q != lim || lim != limit {
			t.Fatalf("send buffer holds %d bytes, limit %d; want it full at %d", q, lim, limit)
		}
	}
}
