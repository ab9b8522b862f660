package conn_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
)

// TestConcurrentUse mixes Read, Write, deadline changes and Close from
// many goroutines on both ends (run it with -race). Every call returns,
// with data or with one of the errors package net documents.
func TestConcurrentUse(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		cs, ss := tsPair(t, tcp.Options{SendBufferSize: 64 << 10, ReceiveBufferSize: 64 << 10}, tcp.Options{})
		c, s := connect(t, cs, ss)
		var wg sync.WaitGroup
		okErr := func(err error) bool {
			var ne net.Error
			// ECONNRESET: the other end's Close may find unread data
			// and reset, before this end is closed.
			return err == nil || err == io.EOF || errors.Is(err, net.ErrClosed) ||
				errors.Is(err, syscall.ECONNRESET) || (errors.As(err, &ne) && ne.Timeout())
		}
		bad := make(chan error, 100)
		for i := range 8 {
			for _, cn := range []*conn.Conn{c, s} {
				wg.Add(3)
				go func() { // writer
					defer wg.Done()
					b := bytes.Repeat([]byte{byte(i)}, 1000+i*997)
					for range 200 {
						if _, err := cn.Write(b); err != nil {
							if !okErr(err) {
								bad <- err
							}
							if errors.Is(err, net.ErrClosed) {
								return
							}
						}
					}
				}()
				go func() { // reader
					defer wg.Done()
					b := make([]byte, 1500)
					for {
						if _, err := cn.Read(b); err != nil {
							if !okErr(err) {
								bad <- err
							}
							if errors.Is(err, net.ErrClosed) || err == io.EOF {
								return
							}
						}
					}
				}()
				go func() { // deadline changer
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(i), 1))
					for range 300 {
						d := time.Duration(r.IntN(3000)-500) * time.Microsecond
						var err error
						switch r.IntN(4) {
						case 0:
							err = cn.SetReadDeadline(time.Now().Add(d))
						case 1:
							err = cn.SetWriteDeadline(time.Now().Add(d))
						case 2:
							err = cn.SetDeadline(time.Time{})
						case 3:
							err = cn.SetDeadline(time.Now().Add(d))
						}
						if err != nil {
							if !errors.Is(err, net.ErrClosed) {
								bad <- err
							}
							return
						}
						time.Sleep(100 * time.Microsecond)
					}
				}()
			}
		}
		time.Sleep(300 * time.Millisecond)
		// Several goroutines close both ends at once: one Close wins.
		var closers sync.WaitGroup
		var nilCloses int
		var mu sync.Mutex
		for range 4 {
			for _, cn := range []*conn.Conn{c, s} {
				closers.Add(1)
				go func() {
					defer closers.Done()
					err := cn.Close()
					if err == nil {
						mu.Lock()
						nilCloses++
						mu.Unlock()
					} else if !errors.Is(err, net.ErrClosed) {
						bad <- err
					}
				}()
			}
		}
		closers.Wait()
		if nilCloses != 2 {
			t.Errorf("%d Close calls returned nil, want one per conn", nilCloses)
		}
		within(t, 2*time.Second, "the blocked calls after Close", wg.Wait)
		close(bad)
		for err := range bad {
			t.Errorf("unexpected error: %v", err)
		}
	}()
	waitGoroutines(t, base+2, 2*time.Second)
}

// TestCloseUnblocksAll blocks readers, writers and accepters, then closes:
// every call returns at once with net.ErrClosed, and no goroutine of the
// connection is left behind.
func TestCloseUnblocksAll(t *testing.T) {
	cs, ss := tsPair(t, tcp.Options{SendBufferSize: 16 << 10, ReceiveBufferSize: 16 << 10}, tcp.Options{SendBufferSize: 16 << 10, ReceiveBufferSize: 16 << 10})
	c, s := connect(t, cs, ss)
	ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	// Fill the window so writers block.
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	c.Write(make([]byte, 1<<20))
	c.SetWriteDeadline(time.Time{})
	const n = 10
	reads := make(chan error, n)
	writes := make(chan error, n)
	accepts := make(chan error, n)
	for range n {
		go func() { _, err := c.Read(make([]byte, 10)); reads <- err }()
		go func() { _, err := c.Write(make([]byte, 1000)); writes <- err }()
		go func() { _, err := ln.Accept(); accepts <- err }()
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-reads:
		t.Fatalf("a Read returned before Close: %v", err)
	case err := <-writes:
		t.Fatalf("a Write returned before Close: %v", err)
	case err := <-accepts:
		t.Fatalf("an Accept returned before Close: %v", err)
	default:
	}
	begin := time.Now()
	c.Close()
	ln.Close()
	for _, ch := range []struct {
		op string
		ch chan error
	}{{"read", reads}, {"write", writes}, {"accept", accepts}} {
		for range n {
			select {
			case err := <-ch.ch:
				wantOpError(t, err, ch.op, net.ErrClosed)
			case <-time.After(time.Second):
				t.Fatalf("a %s is still blocked 1s after Close", ch.op)
			}
		}
	}
	t.Logf("%d blocked calls returned %v after Close", 3*n, time.Since(begin))
	s.Close()
	waitGoroutines(t, base, 2*time.Second)
}

// TestConcurrentTransfer: several writers and one reader; the bytes of
// each Write stay contiguous (writes do not interleave), checked by hash.
func TestConcurrentTransfer(t *testing.T) {
	cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
	c, s := connect(t, cs, ss)
	const writers, chunk, rounds = 8, 10000, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bytes.Repeat([]byte{byte('a' + i)}, chunk)
			for range rounds {
				if _, err := c.Write(b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); c.CloseWrite() }()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*chunk*rounds {
		t.Fatalf("got %d bytes, want %d", len(got), writers*chunk*rounds)
	}
	h := sha256.New()
	for off := 0; off < len(got); off += chunk {
		block := got[off : off+chunk]
		if !bytes.Equal(block, bytes.Repeat(block[:1], chunk)) {
			t.Fatalf("writes interleaved in the block at %d", off)
		}
		h.Write(block)
	}
	t.Logf("%d bytes, sha256 %x", len(got), h.Sum(nil)[:8])
}

// TestCloseDuringActiveIO closes a Conn while Reads and Writes are in
// flight (not parked: data keeps flowing both ways). Package net makes
// every Read or Write that overlaps Close, or follows it, fail with
// net.ErrClosed ("use of closed network connection"); an errno such as
// ENOTCONN, EPIPE or ECONNABORTED caused by our own Close must not leak.
func TestCloseDuringActiveIO(t *testing.T) {
	for i := range 30 {
		cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		go io.Copy(io.Discard, s)
		go func() {
			b := make([]byte, 8<<10)
			for {
				if _, err := s.Write(b); err != nil {
					return
				}
			}
		}()
		errs := make(chan error, 8)
		for range 4 {
			go func() {
				b := make([]byte, 512)
				for {
					if _, err := c.Read(b); err != nil {
						errs <- err
						return
					}
				}
			}()
			go func() {
				b := make([]byte, 512)
				for {
					if _, err := c.Write(b); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		time.Sleep(10 * time.Millisecond)
		c.Close()
		for range 8 {
			select {
			case err := <-errs:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("round %d: a call overlapping Close returned %v, want net.ErrClosed", i, err)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("round %d: a call still blocked 2s after Close", i)
			}
		}
		s.Close()
	}
}
