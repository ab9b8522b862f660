package tcp_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
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
