package tcp_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestRstStorm: 100,000 RSTs with random sequence numbers, spoofed on a
// live connection's 4-tuple (the blind reset attack of RFC 5961 1.1), half
// of them aimed near its window,
// while the connection keeps moving data both ways. The connection lives:
// no RST lands exactly on RCV.NXT, the few in the window earn challenge
// ACKs (RFC 5961 3.2) at most one per InvalidRateLimit. The heap does
// not grow with the storm, and the counters name the fate of every RST.
func TestRstStorm(t *testing.T) {
	const (
		storm  = 100_000
		rounds = 100
		heapOK = 2 << 20 // bytes the heap may grow by
	)
	if testing.Short() {
		t.Skip("100,000 RSTs")
	}
	// Window scaling on: a window of 1 MiB, 1/4096 of the sequence space.
	p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: 1460, WS: 7}))
	rng := rand.New(rand.NewPCG(5, 6))
	rst := peerIPv4(p.Encode(seg{Flags: "R", Seq: 0}))
	tcpb := rst[len(rst)-20:]
	peerNxt := uint32(1) // the peer's next sequence number, relative
	stackNxt := uint32(1)
	var received, sent bytes.Buffer
	before := heapInUse()
	for round := range rounds {
		for i := range storm / rounds {
			// Half blind, half aimed at the neighbourhood of the
			// window, as an attacker who knows roughly where it is.
			seq := rng.Uint32()
			if i%2 == 1 {
				seq = p.PeerISS() + peerNxt - 1<<20 + rng.Uint32N(3<<20)
			}
			if seq == p.PeerISS()+peerNxt {
				continue // exactly RCV.NXT would be a valid reset: 2^-32
			}
			binary.BigEndian.PutUint32(tcpb[4:], seq)
			tcptest.FixChecksum(tcpb)
			p.InjectIPv4(rst)
		}
		// The connection moves data both ways between the bursts.
		in := []byte(fmt.Sprintf("peer data %03d;", round))
		p.Inject(seg{Flags: "P.", Seq: peerNxt, Ack: stackNxt, Payload: in})
		peerNxt += uint32(len(in))
		buf := make([]byte, 64)
		n, err := ep.Read(buf)
		if err != nil {
			t.Fatalf("round %d: Read: %v (state %v)", round, err, ep.State())
		}
		received.Write(buf[:n])
		out := []byte(fmt.Sprintf("stack data %03d;", round))
		if _, err := ep.Write(out); err != nil {
			t.Fatalf("round %d: Write: %v", round, err)
		}
		sent.Write(out)
		var gotData bool
		for _, s := range p.Drain() {
			switch {
			case len(s.Payload) > 0:
				if !bytes.Equal(s.Payload, out) || s.Seq != stackNxt {
					t.Fatalf("round %d: sent %q at %d, want %q at %d", round, s.Payload, s.Seq, out, stackNxt)
				}
				gotData = true
			case s.Flags != ".":
				t.Fatalf("round %d: the stack sent %v", round, s)
			}
		}
		if !gotData {
			t.Fatalf("round %d: the stack's data did not go", round)
		}
		stackNxt += uint32(len(out))
		p.Inject(seg{Flags: ".", Seq: peerNxt, Ack: stackNxt})
		p.Advance(50 * time.Millisecond)
		p.Drain()
	}
	after := heapInUse()
	p.WantState(ep, event.Established)
	if i := ep.Info(); i.BytesReceived != uint64(received.Len()) || i.BytesAcked != uint64(sent.Len()) || i.SendQueued != 0 {
		t.Errorf("received %d (read %d), acked %d of %d, %d queued", i.BytesReceived, received.Len(), i.BytesAcked, sent.Len(), i.SendQueued)
	}
	st := p.TCP.Stats()
	outOfWindow, old, inWindow := st.Dropped(event.DropOutOfWindow), st.Dropped(event.DropOldSequence), st.Dropped(event.DropRstInvalid)
	challenges := st.Sent(event.SendChallengeAck)
	perConn, budget := st.Dropped(event.DropAckRateLimited), st.Dropped(event.DropChallengeRateLimited)
	t.Logf("%d RSTs: %d beyond the window, %d below it, %d in it: %d challenge ACKs sent, %d held back per connection, %d by the stack-wide budget; heap %+d bytes",
		storm, outOfWindow, old, inWindow, challenges, perConn, budget, int64(after)-int64(before))
	if total := outOfWindow + old + inWindow; total != storm {
		t.Errorf("drop counters account for %d RSTs, want %d", total, storm)
	}
	if challenges+perConn+budget != inWindow {
		t.Errorf("%d RSTs in the window, but %d challenge ACKs sent or held back", inWindow, challenges+perConn+budget)
	}
	if max := uint64(p.Elapsed()/(500*time.Millisecond)) + 1; challenges > max {
		t.Errorf("%d challenge ACKs in %v, want at most %d (one per 500 ms)", challenges, p.Elapsed(), max)
	}
	if st.ResetsReceived.Load() != 0 {
		t.Errorf("%d resets taken", st.ResetsReceived.Load())
	}
	if grew := int64(after) - int64(before); grew > heapOK {
		t.Errorf("heap grew by %d bytes during the storm, want at most %d", grew, heapOK)
	}
}
