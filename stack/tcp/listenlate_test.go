package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Two copies of one SYN (or of one cookie ACK), handled on two goroutines
// at once, both find only the listener in the demuxer; the first makes the
// child, the second finds its 4-tuple taken when it registers its own
// (registerChild: EADDRINUSE). The second is a named drop, DropTupleInUse,
// and gives back what it took: its SYN queue slot, its accept queue
// reservation. The traces below hand the second copy to the listener after
// the first made its child, as the demuxer would have a moment before.

// listenDrops is listen, recording drop events rather than queue notes.
func listenDrops(t *testing.T, backlog int, o tcp.Options) (*tcptest.Peer, *tcp.Listener, *drops) {
	t.Helper()
	d := &drops{}
	o.Observer = d.observe
	p := tcptest.New(t, tcptest.WithTCP(o))
	return p, p.Listen(backlog), d
}

// wantTupleInUse checks the DropTupleInUse events and counter.
func wantTupleInUse(t *testing.T, p *tcptest.Peer, d *drops, want int) {
	t.Helper()
	if got := len(d.of(event.DropTupleInUse)); got != want {
		t.Errorf("%d DropTupleInUse events, want %d", got, want)
	}
	wantCount(t, "Dropped(DropTupleInUse)", p.TCP.Stats().Dropped(event.DropTupleInUse), uint64(want))
}

// TestSynCopyFindsTupleTaken: the late copy of a SYN sends nothing, and
// the SYN queue holds one entry, not one and a slot the copy kept.
func TestSynCopyFindsTupleTaken(t *testing.T) {
	p, l, d := listenDrops(t, 16, tcp.Options{SynQueueLimit: 2, NoSynCookies: true})
	syn(t, p, 40000)
	conns := len(p.TCP.Connections())
	tcp.ArriveAtListenerLate(l, tcptest.StackAddr, tcptest.PeerAddr, p.Encode(seg{Flags: "S", Seq: 0, MSS: 1460}))
	p.ExpectNothing()
	wantTupleInUse(t, p, d, 1)
	wantQueues(t, l, 1, 0)
	if got := len(p.TCP.Connections()); got != conns {
		t.Errorf("%d connections after the late copy, want %d", got, conns)
	}
	// The slot is free: a SYN from another port gets the queue's last
	// place, where a slot the copy kept would have it dropped.
	syn(t, p, 40001)
	wantQueues(t, l, 2, 0)
	wantCount(t, "ListenDrops", p.TCP.Stats().ListenDrops.Load(), 0)
}

// TestCookieAckCopyFindsTupleTaken: the late copy of the ACK that returned
// a SYN cookie sends nothing and gives back its accept queue reservation.
// With a backlog of 1 (two places), one connection queued and a leaked
// reservation would fill the queue and drop the next SYN.
func TestCookieAckCopyFindsTupleTaken(t *testing.T) {
	p, l, d := listenDrops(t, 1, tcp.Options{SynQueueLimit: 1})
	fillSynQueue(t, p, 1)
	c := cookieSyn(t, p, 40001, 1460)
	c.use(p)
	ack := seg{Flags: ".", Seq: 1, Ack: 1}
	p.Inject(ack)
	wantQueues(t, l, 1, 1)
	tcp.ArriveAtListenerLate(l, tcptest.StackAddr, tcptest.PeerAddr, p.Encode(ack))
	p.ExpectNothing()
	wantTupleInUse(t, p, d, 1)
	wantQueues(t, l, 1, 1)
	cookieSyn(t, p, 40002, 1460)
	wantCount(t, "ListenDrops", p.TCP.Stats().ListenDrops.Load(), 0)
}
