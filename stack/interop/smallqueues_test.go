package interop

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestPipeSmallQueues: tapstack to tapstack over tap.Pipe without GSO,
// a clean cable. The sender's window grows past the pipe's queue of 1,024
// frames; the queue says when it is busy (PipeEnd.OutboundRoom), and new
// data waits until the pump has carried a burst or the next ACK comes
// (TCP small queues, smallqueues.go), so the queue never overflows and
// nothing is sent twice. Without it, 32 MiB met some
// 500 refusals of a full queue and 240 retransmissions.
//
// The receiver takes each frame 20 µs, slower than the sender makes
// them, so that the queue fills whatever the two stacks' costs: once the
// receiver's text was linked rather than copied (appendCompact), one run
// in ten under -race kept up with the sender and never made the queue
// busy. The sender leaves slow start only for a loss (HyStartOff): the
// queue's delay is what HyStart++ reads as a full path, and in about one
// run in eight under -race on a loaded machine it left slow start at 52
// segments, the window never passed the 256 frames that make the queue
// busy, and the test tested nothing (CI, 2026-12-08).
func TestPipeSmallQueues(t *testing.T) {
	const size = 32 * MiB
	snd, _, move := plainPipeTransfer(t, nil, tcp.Options{HyStart: tcp.HyStartOff}, size, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
		return newSlowDelivery(l, 20*time.Microsecond)
	})
	move()
	st := snd.TCP().Stats()
	busy, refused, retrans := st.LinkBusy.Load(), st.LinkRefused.Load(), st.Retransmits.Load()
	t.Logf("%d MiB: new data waited %d times, went at the pump's word %d times; %d frames refused, %d retransmitted",
		size/MiB, busy, st.LinkRoomSends.Load(), refused, retrans)
	if busy == 0 {
		t.Error("the pipe's queue was never busy: the test did not test small queues")
	}
	if refused != 0 {
		t.Errorf("%d frames refused (and %d retransmitted) on a clean cable: the engine overflowed the pipe's queue", refused, retrans)
	}
}

// plainPipeTransfer connects two tapstack stacks over tap.Pipe without
// GSO, the sender's with sndOpts and its frames through fault if it is
// set, the receiver's link wrapped by each of rcvWrap, and returns them and what moves size
// bytes from the sender to the receiver over the connection, each call
// within a minute of the connection's making.
func plainPipeTransfer(t *testing.T, fault *tap.FaultConfig, sndOpts tcp.Options, size int, rcvWrap ...func(gstack.LinkEndpoint) gstack.LinkEndpoint) (snd, rcv *stack.Stack, move func()) {
	t.Helper()
	pa, pb := tap.Pipe(tap.WithPipeGSO(false))
	var link gstack.LinkEndpoint = pa
	if fault != nil {
		link = tap.NewFault(pa, *fault)
	}
	var rlink gstack.LinkEndpoint = pb
	for _, w := range rcvWrap {
		rlink = w(rlink)
	}
	snd, _ = newTapstack(t, link, tsPrefix4, sndOpts)
	rcv, _ = newTapstack(t, rlink, peerPrefix4, tcp.Options{})
	c, s := connectPair(t, snd, rcv, peerPrefix4)
	setDeadlines(t, time.Minute, c, s)
	return snd, rcv, mover(t, c, s, size)
}

// slowDelivery is link middleware that takes each inbound frame d before
// handing it on, on the delivering goroutine, as a receiver slower than
// its sender: the link's queue behind it fills.
type slowDelivery struct {
	nested.Endpoint
	d time.Duration
}

func newSlowDelivery(inner gstack.LinkEndpoint, d time.Duration) *slowDelivery {
	l := &slowDelivery{d: d}
	l.Endpoint.Init(inner, l)
	return l
}

func (l *slowDelivery) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	// A spin, bounded by d: a sleep this short wakes far later than asked.
	for start := time.Now(); time.Since(start) < l.d; {
	}
	l.Endpoint.DeliverNetworkPacket(proto, pkt)
}
