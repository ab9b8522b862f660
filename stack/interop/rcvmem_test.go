package interop

import (
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
)

// TestReceiveMemoryLimitGVisor: eight gVisor connections each send 256
// KiB to a tapstack server that does not read yet, under a stack-wide
// receive memory limit of 128 KiB (tcp.Options.ReceiveMemoryLimit,
// rcvmem.go) where each connection's own buffer is 1 MiB. What the stack
// holds stays within the limit and a segment per connection (the one a
// connection holding nothing unread takes all the same); text beyond is
// dropped and counted. Once the server reads, gVisor's retransmissions
// bring the rest, and every byte arrives as sent.
func TestReceiveMemoryLimitGVisor(t *testing.T) {
	const (
		conns = 8
		limit = 128 << 10
		each  = 256 << 10
		slack = conns * 1460 // a segment per connection (MTU 1500)
	)
	p := newGVPair(t, cable{tcp: tcp.Options{ReceiveMemoryLimit: limit}})
	type pair struct {
		ts   *conn.Conn
		peer halfCloser
	}
	pairs := make([]pair, conns)
	for i := range pairs {
		pairs[i].ts, pairs[i].peer = p.peerDials(t, uint16(9000+i))
		deadline := time.Now().Add(60 * time.Second)
		pairs[i].ts.SetDeadline(deadline)
		pairs[i].peer.SetDeadline(deadline)
	}
	sent := make([]digest, conns)
	var wg sync.WaitGroup
	for i := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent[i] = send(pairs[i].peer, each, uint64(i))
			if sent[i].err == nil {
				sent[i].err = pairs[i].peer.CloseWrite()
			}
		}()
	}
	defer wg.Wait()

	// Not reading: the senders fill what the stack lets them, then wait
	// for it. Watch what the stack holds until the drops begin and some
	// more, at most 10 s.
	lim := p.ts.TCP().Limits()
	peak := 0
	for i, dropsSeen := 0, 0; i < 10000 && dropsSeen < 200; i++ {
		u := p.ts.TCP().Usage().ReceiveMemory
		peak = max(peak, u)
		if u > limit+slack {
			t.Fatalf("the stack holds %d bytes of received data, limit %d and %d of slack", u, limit, slack)
		}
		if lim.ReceiveMemory.Load() > 0 {
			dropsSeen++
		}
		time.Sleep(time.Millisecond)
	}
	if lim.ReceiveMemory.Load() == 0 {
		t.Fatalf("no segment dropped for memory (peak held %d)", peak)
	}
	t.Logf("peak held %d bytes (limit %d); %d segments dropped for memory so far", peak, limit, lim.ReceiveMemory.Load())

	got := make([]digest, conns)
	var rg sync.WaitGroup
	for i := range pairs {
		rg.Add(1)
		go func() {
			defer rg.Done()
			got[i] = receive(pairs[i].ts)
		}()
	}
	rg.Wait()
	wg.Wait()
	for i := range pairs {
		checkFlow(t, "gVisor -> tapstack", sent[i], got[i])
		pairs[i].ts.Close()
		pairs[i].peer.Close()
	}
	if u := p.ts.TCP().Usage().ReceiveMemory; u != 0 {
		t.Errorf("after the reads and closes the stack holds %d bytes", u)
	}
	t.Logf("%d segments dropped for memory in all", lim.ReceiveMemory.Load())
}
