package tcp_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestKeepaliveOffByDefault: RFC 9293 3.8.4 says keepalives MUST default
// to off; an idle connection sends nothing, however long it idles.
func TestKeepaliveOffByDefault(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Advance(3 * time.Hour)
	p.ExpectNothing()
	p.WantState(ep, event.Established)
}

// TestKeepaliveProbes: after the idle time a probe <SEQ=SND.UNA-1> goes out
// every interval; an answer restarts the idle period; count unanswered
// probes reset the connection with ETIMEDOUT.
func TestKeepaliveProbes(t *testing.T) {
	p, ep := tcptest.Established(t)
	ep.SetKeepAlive(true, 10*time.Second, 2*time.Second, 3)
	p.Advance(10*time.Second - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: ".", Seq: 0, Ack: 1})
	// The peer answers: the idle period starts again.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Advance(2 * time.Second)
	p.ExpectNothing()
	p.Advance(8 * time.Second)
	p.Expect(seg{Flags: ".", Seq: 0, Ack: 1})
	// Now silence: two more probes, then the reset.
	p.Advance(2 * time.Second)
	p.Expect(seg{Flags: ".", Seq: 0, Ack: 1})
	p.Advance(2 * time.Second)
	p.Expect(seg{Flags: ".", Seq: 0, Ack: 1})
	p.Advance(2 * time.Second)
	p.Expect(seg{Flags: "R.", Seq: 1, Ack: 1})
	p.WantState(ep, event.Closed)
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read after keepalive timeout: %v, want ETIMEDOUT", err)
	}
	if got := p.TCP.Stats().Sent(event.SendKeepalive); got != 4 {
		t.Errorf("keepalive probes counted: %d, want 4", got)
	}
}

// TestKeepaliveAfterHalfClose: after CloseWrite our FIN is sent and
// acknowledged: FIN-WAIT-2, still open for reading, nothing outstanding.
// Only keepalive can then find out that the peer vanished (RFC 9293
// 3.8.4), and it probes as in ESTABLISHED, <SEQ=SND.UNA-1>, the FIN's
// sequence number; Linux's tcp_keepalive_timer probes in FIN_WAIT2 too.
// An answer restarts the idle period; count unanswered probes reset the
// connection with ETIMEDOUT.
func TestKeepaliveAfterHalfClose(t *testing.T) {
	p, ep := tcptest.Established(t)
	ep.SetKeepAlive(true, 10*time.Second, time.Second, 3)
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	p.WantState(ep, event.FinWait2)
	p.Advance(10*time.Second - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	// The peer answers: the idle period starts again.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	p.Advance(10*time.Second - 1)
	p.ExpectNothing()
	p.Advance(1)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	// Now silence: two more probes, then the reset.
	p.Advance(time.Second)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Advance(time.Second)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Advance(time.Second)
	p.Expect(seg{Flags: "R.", Seq: 2, Ack: 1})
	p.WantState(ep, event.Closed)
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read after keepalive timeout: %v, want ETIMEDOUT", err)
	}
}

// TestKeepaliveOrphanFinWait2: a connection the user has fully closed
// sends no keepalive probes in FIN-WAIT-2: nobody can be told the peer
// vanished, and FinWait2Timeout ends it (as Linux's tcp_keepalive_timer
// leaves an orphan in FIN_WAIT2 to tcp_fin_timeout, whose end resets).
func TestKeepaliveOrphanFinWait2(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{FinWait2Timeout: 30 * time.Second}))
	ep.SetKeepAlive(true, 10*time.Second, time.Second, 3)
	ep.Close()
	p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	p.WantState(ep, event.FinWait2)
	p.Advance(30*time.Second - 1)
	p.ExpectNothing()
	p.WantState(ep, event.FinWait2)
	p.Advance(1)
	p.Expect(seg{Flags: "R.", Seq: 2, Ack: 1}) // the FIN-WAIT-2 timeout's, as Linux's
	p.WantState(ep, event.Closed)
}
