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
// observer). The engine must not say it is drained, which lets
// stack.Stack.Shutdown close the links, until the RST has been written:
// found by cmd/tapstack's TestSIGINT, where the kernel's socket stayed
// ESTABLISHED after serve and dial were interrupted mid-transfer. The
// RST, and the data the held goroutine queued, no longer wait for that
// goroutine to leave the observer (Endpoint.flush): Shutdown's own flush
// writes them, and the engine is drained once they have left, the
// observer still held.
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
	p.TCP.Shutdown() // close with unread data: a RST
	p.WantState(ep, event.Closed)
	if !drained(p.TCP) {
		t.Error("not drained once Shutdown's flush has written the RST")
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 7, Payload: []byte("x")})
	p.Expect(seg{Flags: "R.", Seq: 2, Ack: 7}) // an active reset carries ACK, as Linux's

	close(release)
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	p.ExpectNothing()
}

// TestDataAfterCloseStaleAck: the user closed with data still queued
// behind the congestion window, so no FIN has left; the peer's late data
// acknowledges none of what we sent. By now the peer's RCV.NXT may be
// past that ACK field (our data crossed its segment), where it would drop
// a RST silently (RFC 5961 3.2), so a second RST goes at SND.NXT, the
// peer's RCV.NXT once our data has arrived. TestDataAfterClose has the
// case with our FIN out: one RST, at SEG.ACK.
func TestDataAfterCloseStaleAck(t *testing.T) {
	p, ep := tcptest.Established(t)
	if _, err := ep.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	var sent uint32
	for _, s := range p.Drain() { // the initial window's worth
		sent += uint32(len(s.Payload))
	}
	if sent == 0 || sent >= 64<<10 {
		t.Fatalf("sent %d bytes of 64 KiB at once; the test wants some held back", sent)
	}
	ep.Close() // the FIN waits behind the rest
	p.ExpectNothing()
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("late")})
	p.Expect(seg{Flags: "R", Seq: 1})
	p.Expect(seg{Flags: "R", Seq: 1 + sent})
	p.ExpectNothing()
	p.WantState(ep, event.Closed)
}
