package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Segments that arrive late: the demuxer found the connection, and the
// segment waited for the connection's lock while another goroutine moved
// it to TIME-WAIT or CLOSED and out of the demuxer (tcp.ArriveLate). They
// are answered as the demuxer answers a moment later, by the listener,
// the TIME-WAIT record or the CLOSED state; TestTimeWaitSegments' "late"
// cases hold the record's answers to them.

// TestStrayReopensTimeWait: TestTimeWaitReopen's SYN, arriving late: the
// listener reopens the connection with an ISN above the old sequence
// space, and the old TCB goes.
func TestStrayReopensTimeWait(t *testing.T) {
	p, ep := tcptest.TimeWait(t)
	tcp.ArriveLate(ep, p.Encode(seg{Flags: "S", Seq: 100000}))
	p.WantState(ep, event.Closed)
	p.Expect(seg{Flags: "S.", Seq: 2 + 65537, Ack: 100001})
	if q := p.Listener.Queues(); q.SynQueueLen != 1 {
		t.Errorf("SYN queue length %d, want 1", q.SynQueueLen)
	}
	if n := p.TCP.Stats().StraySegments.Load(); n != 1 {
		t.Errorf("StraySegments = %d, want 1", n)
	}
}

// TestStrayAfterClosed: LAST-ACK's final ACK deletes the TCB; the peer's
// FIN retransmitted, arriving late, goes where the demuxer now sends it,
// to the listener on the port, and LISTEN answers an ACK (3.10.7.2) with
// <SEQ=SEG.ACK><CTL=RST>.
func TestStrayAfterClosed(t *testing.T) {
	p, ep := tcptest.LastAck(t)
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 2})
	p.WantState(ep, event.Closed)
	tcp.ArriveLate(ep, p.Encode(seg{Flags: "F.", Seq: 1, Ack: 2}))
	p.Expect(seg{Flags: "R", Seq: 2})
	p.ExpectNothing()
	wantCount(t, "Dropped(ACK in LISTEN)", p.TCP.Stats().Dropped(event.DropListenAck), 1)
}
