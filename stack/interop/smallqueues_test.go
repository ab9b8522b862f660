package interop

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestPipeSmallQueues: tapstack to tapstack over tap.Pipe without GSO,
// a clean cable. The sender's window grows past the pipe's queue of 1,024
// frames; the queue says when it is busy (PipeEnd.OutboundRoom), and new
// data waits for the next ACK (TCP small queues, send.go), so the queue
// never overflows and nothing is sent twice. Without it, 32 MiB met some
// 500 refusals of a full queue and 240 retransmissions.
func TestPipeSmallQueues(t *testing.T) {
	const size = 32 * MiB
	snd, _, move := plainPipeTransfer(t, nil, size)
	move()
	st := snd.TCP().Stats()
	busy, refused, retrans := st.LinkBusy.Load(), st.LinkRefused.Load(), st.Retransmits.Load()
	t.Logf("%d MiB: new data waited for an ACK %d times; %d frames refused, %d retransmitted", size/MiB, busy, refused, retrans)
	if busy == 0 {
		t.Error("the pipe's queue was never busy: the test did not test small queues")
	}
	if refused != 0 {
		t.Errorf("%d frames refused (and %d retransmitted) on a clean cable: the engine overflowed the pipe's queue", refused, retrans)
	}
}

// plainPipeTransfer connects two tapstack stacks over tap.Pipe without
// GSO, the sender's frames through fault if it is set, and returns them
// and what moves size bytes from the sender to the receiver over the
// connection, each call within a minute of the connection's making.
func plainPipeTransfer(t *testing.T, fault *tap.FaultConfig, size int) (snd, rcv *stack.Stack, move func()) {
	t.Helper()
	pa, pb := tap.Pipe(tap.WithPipeGSO(false))
	var link gstack.LinkEndpoint = pa
	if fault != nil {
		link = tap.NewFault(pa, *fault)
	}
	snd, _ = newTapstack(t, link, tsPrefix4, tcp.Options{})
	rcv, _ = newTapstack(t, pb, peerPrefix4, tcp.Options{})
	c, s := connectPair(t, snd, rcv, peerPrefix4)
	dl := time.Now().Add(time.Minute)
	if err := c.SetDeadline(dl); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeadline(dl); err != nil {
		t.Fatal(err)
	}
	return snd, rcv, mover(t, c, s, size)
}
