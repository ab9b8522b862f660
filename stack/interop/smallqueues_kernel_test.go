package interop

import (
	"testing"

	"github.com/tapstack/tapstack/tap"
)

// TestKernelSmallQueues: tapstack sending to the kernel over a TAP without
// offloads, whose writer goroutine takes one frame per write and so
// falls behind the engine: the device's queue says when it is busy
// (stack.QueueingLink), and new data waits instead, until the writer
// says it wrote a batch (OnOutboundRoom) or an ACK comes (TCP small
// queues, smallqueues.go). On this clean path the device refuses nothing,
// and nothing is sent twice (3 runs), and the writer's word, not only
// ACKs, lets the held data go. Without small queues, the engine filled
// the 1,000-frame queue: 256 MiB met some 3,000 refusals and 390
// retransmissions; with the ACK alone to let the data go, the queue sat
// empty until it came, and the sender at a third of gVisor's rate.
func TestKernelSmallQueues(t *testing.T) {
	const size = 64 * MiB
	k := newOffloadNet(t, "tssq0", 0, tap.WithOffloads(false))
	st := k.ts.TCP().Stats()
	// The test needs a sender that outpaces the device's writer. The
	// race detector slows the engine more than the writer: alone under
	// -race a transfer waited 48-561 times here, against 3,000-5,000
	// without, and beside the rest of the suite it may not wait at all.
	// Then another transfer goes, up to 3. Nothing may be refused in any
	// of them.
	var busy, released uint64
	for try := 1; try <= 3 && (busy == 0 || released == 0); try++ {
		k.transfer(t, false, func(from, to halfCloser) (sent, got digest) { return fastFlow(from, to, size) })
		busy, released = st.LinkBusy.Load(), st.LinkRoomSends.Load()
		t.Logf("transfer %d, %d MiB: new data waited %d times in all, went at the writer's word %d times; %d frames refused, %d retransmitted, device dropped %d",
			try, size/MiB, busy, released, st.LinkRefused.Load(), st.Retransmits.Load(), k.dev.Stats().TxDropped)
	}
	refused, retrans := st.LinkRefused.Load(), st.Retransmits.Load()
	if busy == 0 {
		t.Error("the device's queue was never busy: the test did not test small queues")
	}
	if released == 0 {
		t.Error("held data never went at the writer's word (OnOutboundRoom): only ACKs released it")
	}
	if refused != 0 {
		t.Errorf("%d frames refused (and %d retransmitted) on a clean path: the engine overflowed the device's queue", refused, retrans)
	}
}
