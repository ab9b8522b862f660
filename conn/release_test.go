package conn_test

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// heapAlloc is the live heap after two collections.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// churn opens n connections on one stack to itself (a local route: no
// link goroutine to wait for), sets far deadlines on both ends, and closes
// them, the client end with SetLinger(0) so that no TIME-WAIT remains and
// the ephemeral ports are free again. It closes the stack at the end.
func churn(tb testing.TB, n int) {
	a, _ := tap.Pipe()
	s := stack.New(stack.Options{})
	defer s.Close()
	if _, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		tb.Fatal(err)
	}
	ln, err := conn.Listen(s, "tcp", "192.0.2.1:80")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(time.Hour))
	far := time.Now().Add(time.Hour)
	for range n {
		c, err := (&conn.Dialer{Stack: s}).DialTCP(context.Background(), "tcp", "192.0.2.1:80")
		if err != nil {
			tb.Fatal(err)
		}
		sc, err := ln.AcceptTCP()
		if err != nil {
			tb.Fatal(err)
		}
		c.SetDeadline(far)
		sc.SetReadDeadline(far)
		sc.SetWriteDeadline(far)
		c.SetLinger(0)
		c.Close()
		sc.Close()
	}
}

// TestCloseReleasesDeadlines: nothing a connection made outlives Close.
// It runs on the real clock, the default, where a deadline is a timer in
// the runtime's heap: that heap is what it measures. It neither sleeps
// nor times anything.
// Deadlines are timers in the runtime's heap; a Conn closed with an hour
// to go on its deadlines used to leave them there, with their channels,
// for that hour, stack closed or not (about 1 KB per connection). After
// 40,000 connections with deadlines, closed with their stack, the heap is
// back near where it started: within 200 bytes a connection, a fifth of
// what the leak cost.
func TestCloseReleasesDeadlines(t *testing.T) {
	if testing.Short() {
		t.Skip("40,000 connections")
	}
	const n = 40_000
	churn(t, 100) // warm up: pools, lazily made tables
	before := heapAlloc()
	churn(t, n)
	after := heapAlloc()
	grew := int64(after) - int64(before)
	t.Logf("heap %d KiB before, %d KiB after %d connections with deadlines (%+d bytes per connection)",
		before>>10, after>>10, n, grew/n)
	const bound = n * 200
	if grew > bound {
		t.Fatalf("heap grew by %d KiB after %d closed connections and a closed stack, want at most %d KiB", grew>>10, n, bound>>10)
	}
}
