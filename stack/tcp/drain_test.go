package tcp_test

import (
	"sync/atomic"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestShutdownDrainsAfterOtherFlusher: Shutdown's RST is queued while
// another goroutine is flushing the same connection (here held in the
// observer), so that goroutine writes it, later. The engine must not say
// it is drained, which lets stack.Stack.Shutdown close the links, until
// the RST has been written: found by cmd/tapstack's TestSIGINT, where the
// kernel's socket stayed ESTABLISHED after serve and dial were
// interrupted mid-transfer.
func TestShutdownDrainsAfterOtherFlusher(t *testing.T) {
	var hold atomic.Bool
	inObserver := make(chan struct{})
	release := make(chan struct{})
	obs := func(event.Event) {
		if hold.CompareAndSwap(true, false) {
			close(inObserver)
			<-release
		}
	}
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: obs}))
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("unread")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 7})

	hold.Store(true)
	wrote := make(chan error, 1)
	go func() {
		_, err := ep.Write([]byte("x")) // its flush stops in the observer
		wrote <- err
	}()
	<-inObserver
	p.TCP.Shutdown() // close with unread data: a RST, left to the flusher
	p.WantState(ep, event.Closed)
	if drained(p.TCP) {
		t.Error("drained while the connection's RST waits for the other goroutine's flush")
	}
	p.ExpectNothing()

	close(release)
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 7, Payload: []byte("x")})
	p.Expect(seg{Flags: "R", Seq: 2})
	if !drained(p.TCP) {
		t.Error("not drained once the RST has left")
	}
}
