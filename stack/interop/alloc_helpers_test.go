package interop

import (
	"context"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

// The allocation tests and benchmarks count the heap allocations of the
// whole process while data moves, so their own harness must allocate
// nothing per round: one connection made once (connectPair) and one
// reader goroutine driven by channels made once (mover).

// connectPair connects snd to a listener on rcv at peer's address, port
// 80, and returns the dialer's *Conn and the accepted end; all three close
// when the test ends.
func connectPair(tb testing.TB, snd, rcv *stack.Stack, peer netip.Prefix) (c *conn.Conn, s *conn.Conn) {
	tb.Helper()
	to := netip.AddrPortFrom(peer.Addr(), 80).String()
	ln, err := conn.Listen(rcv, "tcp", to)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	accepted := acceptOne(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	c, err = (&conn.Dialer{Stack: snd}).DialTCP(ctx, "tcp", to)
	cancel()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	a := <-accepted
	if a.err != nil {
		tb.Fatal(a.err)
	}
	tb.Cleanup(func() { a.c.Close() })
	return c, a.c.(*conn.Conn)
}

// setDeadlines gives each of conns one deadline, d from now, and fails tb
// if one cannot take it.
func setDeadlines(tb testing.TB, d time.Duration, conns ...*conn.Conn) {
	tb.Helper()
	dl := time.Now().Add(d)
	for _, c := range conns {
		if err := c.SetDeadline(dl); err != nil {
			tb.Fatal(err)
		}
	}
}

// mover returns move, which writes size bytes to from in 64 KiB chunks
// while one reader goroutine, started here and stopped when the test
// ends, reads as many from to; it fails tb on any error.
func mover(tb testing.TB, from io.Writer, to io.Reader, size int) (move func()) {
	start := make(chan struct{})
	done := make(chan error)
	go func() {
		rbuf := make([]byte, 64<<10)
		for range start {
			var err error
			for n := 0; n < size && err == nil; {
				var k int
				k, err = to.Read(rbuf)
				n += k
			}
			done <- err
		}
	}()
	tb.Cleanup(func() { close(start) })
	chunk := make([]byte, 64<<10)
	return func() {
		start <- struct{}{}
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := from.Write(chunk); err != nil {
				tb.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			tb.Fatal(err)
		}
	}
}

// mallocsDuring returns the heap allocations the whole process made while
// f ran.
func mallocsDuring(f func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	f()
	runtime.ReadMemStats(&m1)
	return m1.Mallocs - m0.Mallocs
}
