package conn_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
)

// TestConcurrentUse mixes Read, Write, deadline changes, the clock moving
// and Close from many goroutines on both ends (run it with -race). Every
// call returns, with data or with one of the errors package net
// documents, and no goroutine is left behind.
func TestConcurrentUse(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{SendBufferSize: 64 << 10, ReceiveBufferSize: 64 << 10}, tcp.Options{})
		c, s := connect(t, cs, ss)
		base := len(bubbled())
		var wg, changers sync.WaitGroup
		okErr := func(err error) bool {
			var ne net.Error
			// ECONNRESET: the other end's Close may find unread data
			// and reset, before this end is closed.
			return err == nil || err == io.EOF || errors.Is(err, net.ErrClosed) ||
				errors.Is(err, syscall.ECONNRESET) || (errors.As(err, &ne) && ne.Timeout())
		}
		bad := make(chan error, 100)
		// One Advance at a time: two at once could move the clock back
		// (each ends by setting the time it was asked for).
		var hand sync.Mutex
		for i := range 8 {
			for _, cn := range []*conn.Conn{c, s} {
				wg.Add(2)
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
				changers.Add(1)
				go func() { // deadline changer, and the clock's hand
					defer changers.Done()
					r := rand.New(rand.NewPCG(uint64(i), 1))
					for range 300 {
						d := time.Duration(r.IntN(3000)-500) * time.Microsecond
						var err error
						switch r.IntN(4) {
						case 0:
							err = cn.SetReadDeadline(clock.Now().Add(d))
						case 1:
							err = cn.SetWriteDeadline(clock.Now().Add(d))
						case 2:
							err = cn.SetDeadline(time.Time{})
						case 3:
							err = cn.SetDeadline(clock.Now().Add(d))
						}
						if err != nil {
							bad <- err
							return
						}
						hand.Lock()
						clock.Advance(100 * time.Microsecond)
						hand.Unlock()
					}
				}()
			}
		}
		// Once every deadline has changed 300 times, several goroutines
		// close both ends at once: one Close wins.
		changers.Wait()
		var closers sync.WaitGroup
		var nilCloses int
		var mu sync.Mutex
		for range 4 {
			for _, cn := range []*conn.Conn{c, s} {
				closers.Go(func() {
					err := cn.Close()
					if err == nil {
						mu.Lock()
						nilCloses++
						mu.Unlock()
					} else if !errors.Is(err, net.ErrClosed) {
						bad <- err
					}
				})
			}
		}
		closers.Wait()
		if nilCloses != 2 {
			t.Errorf("%d Close calls returned nil, want one per conn", nilCloses)
		}
		// Every call blocked in Read or Write has returned: a bubble in
		// which one stayed blocked would be a deadlock.
		wg.Wait()
		close(bad)
		for err := range bad {
			t.Errorf("unexpected error: %v", err)
		}
		// base counted the readers, writers and changers' absence; they
		// are gone, and conn started nothing of its own.
		noneLeft(t, base, "after Close")
	})
}

// TestCloseUnblocksAll blocks readers, writers (Read and WriteTo, Write and
// ReadFrom) and accepters, then closes: every call returns at once with
// net.ErrClosed, and no goroutine of the connection is left behind.
func TestCloseUnblocksAll(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		small := tcp.Options{SendBufferSize: 16 << 10, ReceiveBufferSize: 16 << 10}
		cs, ss := tsPair(t, clock, small, small)
		c, s := connect(t, cs, ss)
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := len(bubbled())
		// Fill the window and the send buffer so writers block: the
		// clock stands still, so nothing the peer's timers would send
		// makes room.
		fill := start(clock, func() error { _, err := c.Write(make([]byte, 1<<20)); return err })
		notYet(t, fill, "the write that fills the window")
		c.SetWriteDeadline(clock.Now())
		wantTimeout(t, now(t, fill, "the write that fills the window").err, "write")
		c.SetWriteDeadline(time.Time{})
		const n = 10
		reads := make(chan error, n)
		writes := make(chan error, n)
		writeTos := make(chan error, n)
		readFroms := make(chan error, n)
		accepts := make(chan error, n)
		for range n {
			go func() { _, err := c.Read(make([]byte, 10)); reads <- err }()
			go func() { _, err := c.Write(make([]byte, 1000)); writes <- err }()
			go func() { _, err := c.WriteTo(io.Discard); writeTos <- err }()
			go func() { _, err := c.ReadFrom(bytes.NewReader(make([]byte, 1000))); readFroms <- err }()
			go func() { _, err := ln.Accept(); accepts <- err }()
		}
		// All 50 are blocked, or have returned: synctest.Wait (in
		// goroutines) knows.
		synctest.Wait()
		for _, ch := range []chan error{reads, writes, writeTos, readFroms, accepts} {
			if len(ch) > 0 {
				t.Fatalf("a call returned before Close: %v", <-ch)
			}
		}
		c.Close()
		ln.Close()
		synctest.Wait()
		for _, ch := range []struct {
			op string
			ch chan error
		}{{"read", reads}, {"write", writes}, {"writeto", writeTos}, {"readfrom", readFroms}, {"accept", accepts}} {
			if len(ch.ch) != n {
				t.Fatalf("%d of %d %s calls returned after Close", len(ch.ch), n, ch.op)
			}
			for range n {
				wantOpError(t, <-ch.ch, ch.op, net.ErrClosed)
			}
		}
		s.Close()
		noneLeft(t, base, "after Close")
	})
}

// TestCloseUnblocksEverySocket: a TCP Read, a TCP Write (window full),
// an Accept, a UDP ReadFrom and an ICMP ReadFrom blocked in other
// goroutines, some with deadlines, all return net.ErrClosed when their
// socket closes, and no goroutine of the package is left once the clock
// has passed TIME-WAIT (synctest would report one blocked forever).
func TestCloseUnblocksEverySocket(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		base := len(bubbled())
		c, s := connect(t, client, server) // s never reads: c's Write fills the window
		ln, err := conn.Listen(server, "tcp", "192.0.2.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u, err := conn.ListenPacket(client, "udp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		ic, err := conn.ListenPacket(client, "ip4:icmp", "")
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(clock.Now().Add(time.Hour))
		u.SetReadDeadline(clock.Now().Add(time.Hour))
		calls := []<-chan result{
			start(clock, func() error { _, err := c.Read(make([]byte, 10)); return err }),
			start(clock, func() error {
				b := make([]byte, 1<<20)
				for {
					if _, err := c.Write(b); err != nil {
						return err
					}
				}
			}),
			start(clock, func() error { _, err := ln.Accept(); return err }),
			start(clock, func() error { _, _, err := u.ReadFrom(make([]byte, 10)); return err }),
			start(clock, func() error { _, _, err := ic.ReadFrom(make([]byte, 10)); return err }),
		}
		for i, ch := range calls {
			notYet(t, ch, fmt.Sprint("call ", i))
		}
		c.Close()
		s.Close()
		ln.Close()
		u.Close()
		ic.Close()
		for i, ch := range calls {
			r := now(t, ch, fmt.Sprint("call ", i))
			if !errors.Is(r.err, net.ErrClosed) {
				t.Errorf("call %d after Close: %v, want net.ErrClosed", i, r.err)
			}
		}
		advance(clock, 10*time.Minute) // TIME-WAIT and friends
		runtime.Gosched()
		noneLeft(t, base, "after every socket closed")
	})
}

// TestConcurrentTransfer: several writers and one reader; the bytes of
// each Write stay contiguous (writes do not interleave), checked by hash.
func TestConcurrentTransfer(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		const writers, chunk, rounds = 8, 10000, 50
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				b := bytes.Repeat([]byte{byte('a' + i)}, chunk)
				for range rounds {
					if _, err := c.Write(b); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		go func() { wg.Wait(); c.CloseWrite() }()
		var got []byte
		r, took := advanceUntil(t, clock, start(clock, func() (err error) {
			got, err = io.ReadAll(s)
			return err
		}), 10*time.Millisecond, time.Minute, "ReadAll")
		if r.err != nil {
			t.Fatal(r.err)
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
		t.Logf("%d bytes, sha256 %x, %v of the fake clock", len(got), h.Sum(nil)[:8], took)
	})
}

// TestCloseDuringActiveIO closes a Conn while Reads and Writes are in
// flight (not parked: data keeps flowing both ways). Package net makes
// every Read or Write that overlaps Close, or follows it, fail with
// net.ErrClosed ("use of closed network connection"); an errno such as
// ENOTCONN, EPIPE or ECONNABORTED caused by our own Close must not leak.
func TestCloseDuringActiveIO(t *testing.T) {
	for i := range 30 {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
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
			// Close once data has moved both ways, while it still moves.
			untilInfo(t, c, "data both ways", func(i tcp.Info) bool { return i.BytesReceived >= 64<<10 && i.BytesAcked >= 4<<10 })
			c.Close()
			for range 8 {
				if err := <-errs; !errors.Is(err, net.ErrClosed) {
					t.Errorf("round %d: a call overlapping Close returned %v, want net.ErrClosed", i, err)
				}
			}
			s.Close()
		})
	}
}
