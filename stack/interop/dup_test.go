package interop

import (
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestDuplicatesKeepBurstAcks: a path that duplicates 5% of the sender's
// frames, tapstack to tapstack over tap.Pipe without GSO, timestamps on.
// The receiver knows each repeat for a copy the network made, not the
// sender retransmitting (peerRetransmitted, receive.go): it answers each
// at once with its D-SACK and otherwise ACKs as on a clean path, per
// burst: 0.13 ACKs per segment. Taken for retransmissions, the copies
// kept it in quick-ACK mode: 0.83 ACKs per segment, and 0.50 when judged
// by TS.Recent, which lags the copies' TSvals. With `tapstack bench --dup
// 0.05` (64 MiB, tap.Pipe) the transfer took 7.0-7.6 s of CPU per GiB
// before, 4.9-5.2 after.
func TestDuplicatesKeepBurstAcks(t *testing.T) {
	const size = 16 * MiB
	snd, rcv, move := plainPipeTransfer(t, &tap.FaultConfig{Duplicate: 0.05, Seed: 1}, tcp.Options{}, size)
	sent0, acks0 := snd.TCP().Stats().SegmentsOut.Load(), rcv.TCP().Stats().SegmentsOut.Load()
	move()
	st := rcv.TCP().Stats()
	sent, acks := snd.TCP().Stats().SegmentsOut.Load()-sent0, st.SegmentsOut.Load()-acks0
	copies := st.Dropped(event.DropOldSequence)
	t.Logf("%d MiB: %d segments sent, %d copies taken in, %d ACKs (%.3f per segment)", size/MiB, sent, copies, acks, float64(acks)/float64(sent))
	if copies < sent/50 {
		t.Fatalf("only %d copies for %d segments: the fault did not duplicate", copies, sent)
	}
	if acks*3 > sent {
		t.Errorf("%d ACKs for %d segments: the copies put the receiver in quick-ACK mode", acks, sent)
	}
}
