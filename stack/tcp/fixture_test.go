package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestFixtures reaches every state of RFC 9293 3.3.2 with the tcptest
// fixtures; each fixture asserts its own trace, so this is the catalogue.
func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fixture func(testing.TB, ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint)
		want    event.State
	}{
		{"SynSent", tcptest.SynSent, event.SynSent},
		{"SynReceived", tcptest.SynReceived, event.SynReceived},
		{"Established", tcptest.Established, event.Established},
		{"EstablishedActive", tcptest.EstablishedActive, event.Established},
		{"FinWait1", tcptest.FinWait1, event.FinWait1},
		{"FinWait2", tcptest.FinWait2, event.FinWait2},
		{"CloseWait", tcptest.CloseWait, event.CloseWait},
		{"Closing", tcptest.Closing, event.Closing},
		{"LastAck", tcptest.LastAck, event.LastAck},
		{"TimeWait", tcptest.TimeWait, event.TimeWait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tc.fixture(t)
			p.WantState(ep, tc.want)
			p.ExpectNothing()
		})
	}
	t.Run("Listen", func(t *testing.T) {
		p, l := tcptest.Listen(t)
		p.WantState(l, event.Listen)
		p.ExpectNothing()
	})
}

// TestOutputIsSynchronous checks the premise tcptest rests on: a segment
// the engine sends is in the link's queue when the call that caused it
// returns, whether that call is an injected packet, a user call or a
// timer run by the fake clock. No goroutine, no sleep.
func TestOutputIsSynchronous(t *testing.T) {
	p, _ := tcptest.Listen(t)
	// Injected SYN: the SYN-ACK is queued when InjectInbound returns.
	p.Inject(tcptest.Seg{Flags: "S", Seq: 0, MSS: 1460})
	if n := p.Link.NumQueued(); n != 1 {
		t.Fatalf("after the SYN: %d packets queued, want the SYN-ACK", n)
	}
	p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
	// Timer: the SYN-ACK retransmission (RFC 6298 initial RTO 1 s) is
	// queued when Advance returns, and not a nanosecond earlier.
	p.Advance(time.Second - 1)
	if n := p.Link.NumQueued(); n != 0 {
		t.Fatalf("before the RTO: %d packets queued", n)
	}
	p.Advance(1)
	if n := p.Link.NumQueued(); n != 1 {
		t.Fatalf("at the RTO: %d packets queued, want the retransmitted SYN-ACK", n)
	}
	p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
	// User call: Write on an established connection sends at once.
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := p.Listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ep.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := p.Link.NumQueued(); n != 1 {
		t.Fatalf("after Write: %d packets queued, want the data segment", n)
	}
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
}
