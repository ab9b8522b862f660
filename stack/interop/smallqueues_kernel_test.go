package interop

import (
	"testing"

	"github.com/tapstack/tapstack/tap"
)

// TestKernelSmallQueues: tapstack sending to the kernel over a TAP without
// offloads, whose writer goroutine takes one frame per write and so
// falls behind the engine: the device's queue says when it is busy
// (stack.QueueingLink), and new data waits for the next ACK instead
// (TCP small queues, send.go). On this clean path the device refuses
// nothing, and nothing is sent twice (3 runs). Without it, the engine filled the
// 1,000-frame queue: 256 MiB met some 3,000 refusals and 390
// retransmissions.
func TestKernelSmallQueues(t *testing.T) {
	const size = 64 * MiB
	k := newOffloadNet(t, "tssq0", 0, tap.WithOffloads(false))
	st := k.ts.TCP().Stats()
	k.transfer(t, false, func(from, to halfCloser) (sent, got digest) { return fastFlow(from, to, size) })
	busy, refused, retrans := st.LinkBusy.Load(), st.LinkRefused.Load(), st.Retransmits.Load()
	t.Logf("%d MiB: new data waited for an ACK %d times; %d frames refused, %d retransmitted, device dropped %d", size/MiB, busy, refused, retrans, k.dev.Stats().TxDropped)
	if busy == 0 {
		t.Error("the device's queue was never busy: the test did not test small queues")
	}
	if refused != 0 {
		t.Errorf("%d frames refused (and %d retransmitted) on a clean path: the engine overflowed the device's queue", refused, retrans)
	}
}
