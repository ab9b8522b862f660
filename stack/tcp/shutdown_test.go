package tcp_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Binding.Shutdown, the engine's half of stack.Stack.Shutdown: every
// connection gets the CLOSE call, on the wire, and Binding.Drained says
// when all are CLOSED or in TIME-WAIT (binding_export_test.go).

func drained(p *tcp.Protocol) bool {
	select {
	case <-p.Drained():
		return true
	default:
		return false
	}
}

// TestShutdownFin: an established connection is closed as by the user:
// its queued data, then a FIN; the engine is drained once the peer has
// closed too and the connection is in TIME-WAIT.
func TestShutdownFin(t *testing.T) {
	p, ep := tcptest.Established(t)
	ep.Write([]byte("bye"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("bye")})
	if p.TCP.Drained() != nil {
		t.Fatal("Drained before Shutdown is not nil")
	}
	p.TCP.Shutdown()
	p.Expect(seg{Flags: "F.", Seq: 4, Ack: 1})
	p.WantState(ep, event.FinWait1)
	p.WantState(p.Listener, event.Closed)
	if drained(p.TCP) {
		t.Fatal("drained while a FIN is unacknowledged")
	}
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 5})
	p.Expect(seg{Flags: ".", Seq: 5, Ack: 2})
	p.WantState(ep, event.TimeWait)
	if !drained(p.TCP) {
		t.Fatal("not drained with the only connection in TIME-WAIT")
	}
	remote := netip.AddrPortFrom(tcptest.PeerAddr, 9)
	if _, err := p.TCP.Connect(netip.AddrPort{}, remote); !errors.Is(err, syscall.ENETDOWN) {
		t.Errorf("Connect after Shutdown: %v, want ENETDOWN", err)
	}
}

// TestShutdownUnreadData: a connection with received data nobody read is
// reset, as Close would (RFC 2525 2.17), and is CLOSED at once.
func TestShutdownUnreadData(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("unread")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 7}) // the first data: a quick ACK
	p.TCP.Shutdown()
	p.Expect(seg{Flags: "R.", Seq: 1, Ack: 7})
	p.WantState(ep, event.Closed)
	if !drained(p.TCP) {
		t.Fatal("not drained")
	}
}

// TestShutdownHandshake: a connection in SYN-SENT is not cut: it finishes
// its handshake, and its FIN follows at once.
func TestShutdownHandshake(t *testing.T) {
	p, ep := tcptest.SynSent(t)
	p.TCP.Shutdown()
	p.ExpectNothing()
	p.WantState(ep, event.SynSent)
	p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
	p.WantState(ep, event.FinWait1)
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 2})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 2})
	if !drained(p.TCP) {
		t.Fatal("not drained")
	}
}

// TestShutdownListener: listeners close first, as Listener.Close: the
// connection waiting in the accept queue is reset, the half-open one is
// forgotten, and a new SYN finds no listener.
func TestShutdownListener(t *testing.T) {
	p, l := tcptest.Listen(t)
	queued := handshake(t, p, 40000)
	half := syn(t, p, 40001)
	p.TCP.Shutdown()
	queued.use(p)
	p.Expect(seg{Flags: "R.", Seq: 1, Ack: 1})
	half.use(p)
	p.ExpectNothing()
	p.WantState(l, event.Closed)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1}) // the half-open one's ACK
	p.Expect(seg{Flags: "R", Seq: 1})
	p.PeerPort = 40002
	p.SetStackISS(0, false) // no ISS: absolute numbers
	p.Inject(seg{Flags: "S", Seq: 0})
	p.Expect(seg{Flags: "R.", Seq: 0, Ack: 1})
	if !drained(p.TCP) {
		t.Fatal("not drained")
	}
}

// TestAbortResets: the abort stack.Stack's Close makes is the ABORT
// call of RFC 9293 3.10.5: a RST where the peer still believes in the
// connection, nothing in SYN-SENT, CLOSING, LAST-ACK and TIME-WAIT.
func TestAbortResets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fixture func(testing.TB, ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint)
		rst     *seg
	}{
		{"SYN-SENT", tcptest.SynSent, nil},
		{"ESTABLISHED", tcptest.Established, &seg{Flags: "R.", Seq: 1, Ack: 1}},
		{"FIN-WAIT-1", tcptest.FinWait1, &seg{Flags: "R.", Seq: 2, Ack: 1}},
		{"FIN-WAIT-2", tcptest.FinWait2, &seg{Flags: "R.", Seq: 2, Ack: 1}},
		{"CLOSE-WAIT", tcptest.CloseWait, &seg{Flags: "R.", Seq: 1, Ack: 2}},
		{"CLOSING", tcptest.Closing, nil},
		{"LAST-ACK", tcptest.LastAck, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tc.fixture(t)
			ep.StackAbort()
			if tc.rst != nil {
				p.Expect(*tc.rst)
			}
			p.ExpectNothing()
			p.WantState(ep, event.Closed)
			if _, err := ep.Write([]byte("x")); !errors.Is(err, syscall.ECONNABORTED) {
				t.Errorf("Write after Abort: %v, want ECONNABORTED", err)
			}
		})
	}
}
