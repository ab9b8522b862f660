package interop

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestConcurrentWritesStayWhole: the engine's Write copies its bytes in
// without the connection's lock, a chunk at a time, sending as it goes.
// Four goroutines call Write at once on one connection to gVisor's TCP,
// 48 calls of 300 KiB (more than one push each), every call's bytes a
// value of its own: gVisor must receive each call's bytes as one run, of
// the length Write returned, and nothing else. Without the SEND lock
// (wmu), calls' chunks interleave and runs split.
func TestConcurrentWritesStayWhole(t *testing.T) {
	p := newGVPair(t, cable{gso: true, tcp: tcp.Options{SendBufferSize: 512 << 10, SendBufferMax: 512 << 10}})
	c, peer := p.tapstackDials(t, 5301)
	defer c.Close()
	defer peer.Close()
	ep := c.Endpoint()

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()

	const calls, size = 48, 300 << 10
	var next atomic.Int32
	wrote := make([]int, calls+1) // by value: what Write returned
	var wg sync.WaitGroup
	deadline := time.Now().Add(bulkTimeout())
	for range 4 {
		wg.Go(func() {
			for {
				v := int(next.Add(1))
				if v > calls {
					return
				}
				b := make([]byte, size)
				for i := range b {
					b[i] = byte(v)
				}
				for {
					n, err := ep.Write(b)
					if err == nil {
						wrote[v] = n
						break
					}
					if !errors.Is(err, tcp.ErrWouldBlock) || time.Now().After(deadline) {
						t.Errorf("Write of call %d: %v", v, err)
						return
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var stream []byte
	select {
	case stream = <-got:
	case <-time.After(bulkTimeout()):
		t.Fatal("gVisor did not read to the end")
	}
	runs := make([]int, calls+1)
	for i := 0; i < len(stream); {
		v, j := stream[i], i
		for j < len(stream) && stream[j] == v {
			j++
		}
		if v == 0 || int(v) > calls || runs[v] != 0 {
			t.Fatalf("at byte %d: a run of %d bytes of value %d; each call's bytes must come as one run", i, j-i, v)
		}
		runs[v] = j - i
		i = j
	}
	total := 0
	for v := 1; v <= calls; v++ {
		if runs[v] != wrote[v] {
			t.Errorf("call %d: Write returned %d, gVisor received a run of %d", v, wrote[v], runs[v])
		}
		total += wrote[v]
	}
	t.Logf("%d calls, %d bytes, each call's bytes one run", calls, total)
}
