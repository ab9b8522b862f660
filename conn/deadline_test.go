package conn_test

import (
	"bytes"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// fillWrite returns a conn whose Write blocks: its send buffer and the
// peer's window are small and the peer never reads.
func fillWrite(t *testing.T, clock tcpip.Clock) (c, s *conn.Conn) {
	small := tcp.Options{SendBufferSize: 32 << 10, ReceiveBufferSize: 32 << 10}
	cs, ss := tsPair(t, clock, small, small)
	return connect(t, cs, ss)
}

// TestDeadlines covers read, write and accept deadlines as package net
// defines them: a past deadline fails at once, a future one fails the call
// blocked on it, and a change applies to calls already blocked (extend,
// shorten, clear with the zero time). Each failure is a "read"/"write"/
// "accept" OpError wrapping os.ErrDeadlineExceeded, a net.Error with
// Timeout() true; the conn stays usable afterwards. Deadlines are times on
// the stack's clock, a fake one here: a call fails at the very instant the
// clock reaches its deadline, never before.
func TestDeadlines(t *testing.T) {
	type target struct {
		name string
		// setup returns the blocking call, its deadline setter and a way
		// to unblock it (for the "cleared" cases).
		setup func(t *testing.T, clock tcpip.Clock) (call func() error, set func(time.Time) error, unblock func())
	}
	read := target{"read", func(t *testing.T, clock tcpip.Clock) (func() error, func(time.Time) error, func()) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		return func() error { _, err := c.Read(make([]byte, 10)); return err },
			c.SetReadDeadline,
			func() { s.Write([]byte("x")) }
	}}
	write := target{"write", func(t *testing.T, clock tcpip.Clock) (func() error, func(time.Time) error, func()) {
		c, s := fillWrite(t, clock)
		return func() error { _, err := c.Write(make([]byte, 1<<20)); return err },
			c.SetWriteDeadline,
			func() { go io.Copy(io.Discard, s) }
	}}
	// io.Copy's paths, as *net.TCPConn has them: the read deadline
	// stops WriteTo, the write deadline ReadFrom.
	writeTo := target{"writeto", func(t *testing.T, clock tcpip.Clock) (func() error, func(time.Time) error, func()) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		return func() error { _, err := c.WriteTo(io.Discard); return err },
			c.SetReadDeadline,
			func() { s.Write([]byte("x")); s.CloseWrite() }
	}}
	readFrom := target{"readfrom", func(t *testing.T, clock tcpip.Clock) (func() error, func(time.Time) error, func()) {
		c, s := fillWrite(t, clock)
		return func() error { _, err := c.ReadFrom(bytes.NewReader(make([]byte, 1<<20))); return err },
			c.SetWriteDeadline,
			func() { go io.Copy(io.Discard, s) }
	}}
	accept := target{"accept", func(t *testing.T, clock tcpip.Clock) (func() error, func(time.Time) error, func()) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return func() error {
				c, err := ln.Accept()
				if err == nil {
					c.Close()
				}
				return err
			},
			ln.SetDeadline,
			func() {
				go func() {
					if c, err := conn.Dial(cs, "tcp", ln.Addr().String()); err == nil {
						c.Close()
					}
				}()
			}
	}}
	// An unblocked call may need the engine's timers (a delayed ACK, a
	// window probe) to finish: with the deadline cleared, the clock may
	// run.
	const step, limit = 10 * time.Millisecond, time.Minute
	for _, tg := range []target{read, write, writeTo, readFrom, accept} {
		t.Run(tg.name+"/Past", func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				call, set, _ := tg.setup(t, clock)
				set(clock.Now().Add(-time.Second))
				wantTimeout(t, now(t, start(clock, call), tg.name).err, tg.name)
				// Still failing.
				wantTimeout(t, call(), tg.name)
			})
		})
		t.Run(tg.name+"/Future", func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				call, set, _ := tg.setup(t, clock)
				begin := clock.Now()
				set(begin.Add(100 * time.Millisecond))
				ch := start(clock, call)
				notYet(t, ch, tg.name)
				advance(clock, 99*time.Millisecond)
				notYet(t, ch, tg.name+" 1ms before its deadline")
				advance(clock, time.Millisecond)
				r := now(t, ch, tg.name+" at its deadline")
				wantTimeout(t, r.err, tg.name)
				if d := r.at.Sub(begin); d != 100*time.Millisecond {
					t.Errorf("returned at %v, deadline was 100ms", d)
				}
			})
		})
		t.Run(tg.name+"/Extend", func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				call, set, _ := tg.setup(t, clock)
				begin := clock.Now()
				set(begin.Add(100 * time.Millisecond))
				ch := start(clock, call)
				notYet(t, ch, tg.name)
				set(begin.Add(300 * time.Millisecond))
				advance(clock, 299*time.Millisecond)
				notYet(t, ch, tg.name+" after the deadline was extended to 300ms, at 299ms")
				advance(clock, time.Millisecond)
				r := now(t, ch, tg.name+" at its extended deadline")
				wantTimeout(t, r.err, tg.name)
				if d := r.at.Sub(begin); d != 300*time.Millisecond {
					t.Errorf("returned at %v, deadline extended to 300ms", d)
				}
			})
		})
		t.Run(tg.name+"/Shorten", func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				call, set, _ := tg.setup(t, clock)
				begin := clock.Now()
				set(begin.Add(time.Hour))
				ch := start(clock, call)
				notYet(t, ch, tg.name)
				set(begin.Add(80 * time.Millisecond))
				advance(clock, 79*time.Millisecond)
				notYet(t, ch, tg.name+" 1ms before its shortened deadline")
				advance(clock, time.Millisecond)
				wantTimeout(t, now(t, ch, tg.name+" at its shortened deadline").err, tg.name)
			})
		})
		t.Run(tg.name+"/ShortenToPast", func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				call, set, _ := tg.setup(t, clock)
				ch := start(clock, call)
				notYet(t, ch, tg.name)
				set(clock.Now().Add(-time.Second))
				wantTimeout(t, now(t, ch, tg.name+" with its deadline moved to the past").err, tg.name)
			})
		})
		t.Run(tg.name+"/Clear", func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				call, set, unblock := tg.setup(t, clock)
				set(clock.Now().Add(80 * time.Millisecond))
				ch := start(clock, call)
				notYet(t, ch, tg.name)
				set(time.Time{})
				advance(clock, time.Second)
				notYet(t, ch, tg.name+" after the deadline was cleared")
				unblock()
				if r, _ := advanceUntil(t, clock, ch, step, limit, tg.name); r.err != nil {
					t.Fatalf("%s after the deadline was cleared and the call unblocked: %v", tg.name, r.err)
				}
			})
		})
		t.Run(tg.name+"/ClearAfterExpiry", func(t *testing.T) {
			fake(t, func(t *testing.T, clock *faketime.ManualClock) {
				call, set, unblock := tg.setup(t, clock)
				set(clock.Now().Add(-time.Second))
				wantTimeout(t, call(), tg.name)
				set(time.Time{})
				ch := start(clock, call)
				advance(clock, time.Second)
				notYet(t, ch, tg.name+" with the deadline cleared")
				unblock()
				if r, _ := advanceUntil(t, clock, ch, step, limit, tg.name); r.err != nil {
					t.Fatalf("%s after clearing an expired deadline: %v", tg.name, r.err)
				}
			})
		})
	}
}

// TestDeadlineWithDataWaiting: like package net, a passed read deadline
// fails Read even when data is waiting, and clearing it reads the data.
func TestDeadlineWithDataWaiting(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		s.Write([]byte("data"))
		untilInfo(t, c, "data waiting", func(i tcp.Info) bool { return i.RecvQueued >= 4 })
		c.SetReadDeadline(clock.Now().Add(-time.Second))
		_, err := c.Read(make([]byte, 4))
		wantTimeout(t, err, "read")
		c.SetReadDeadline(time.Time{})
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "data" {
			t.Fatalf("after clearing: %q, %v", b, err)
		}
		// SetDeadline sets both.
		c.SetDeadline(clock.Now().Add(-time.Second))
		_, err = c.Read(b)
		wantTimeout(t, err, "read")
		_, err = c.Write(b)
		wantTimeout(t, err, "write")
	})
}

// TestAcceptDeadlineWithConnectionWaiting: like package net (internal/poll
// FD.Accept checks the deadline before accept(2)), a passed accept
// deadline fails Accept even when a connection is waiting, and clearing
// it hands that connection over.
func TestAcceptDeadlineWithConnectionWaiting(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := conn.Dial(cs, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		synctest.Wait()
		if q := ln.Endpoint().Queues(); q.AcceptQueueLen != 1 {
			t.Fatalf("accept queue holds %d connections, want 1", q.AcceptQueueLen)
		}
		ln.SetDeadline(clock.Now().Add(-time.Second))
		a, err := ln.Accept()
		if err == nil {
			a.Close()
			t.Fatal("Accept with a passed deadline handed over the waiting connection")
		}
		wantTimeout(t, err, "accept")
		ln.SetDeadline(time.Time{})
		a, err = ln.Accept()
		if err != nil {
			t.Fatalf("after clearing: %v", err)
		}
		if a.RemoteAddr().String() != c.LocalAddr().String() {
			t.Errorf("accepted %v, want the waiting %v", a.RemoteAddr(), c.LocalAddr())
		}
		a.Close()
	})
}

// TestDeadlineMovedWithoutAllocating: a deadline moved again and again
// before it passes, as net/http moves it before every read, reuses its
// timer: no allocation per move on the real clock (the fake clock's own
// Reset allocates); and a deadline moved a hundred times still fails the
// read at its last time, not before.
func TestDeadlineMovedWithoutAllocating(t *testing.T) {
	clock := tcpip.NewStdClock()
	cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
	c, _ := connect(t, cs, ss)
	c.SetReadDeadline(clock.Now().Add(time.Hour))
	if n := testing.AllocsPerRun(100, func() { c.SetReadDeadline(clock.Now().Add(time.Hour)) }); n != 0 {
		t.Errorf("%.1f allocations per move, want 0", n)
	}
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, _ := connect(t, cs, ss)
		for i := range 100 {
			c.SetReadDeadline(clock.Now().Add(time.Duration(100-i) * time.Hour))
		}
		c.SetReadDeadline(clock.Now().Add(time.Second))
		ch := start(clock, func() error { _, err := c.Read(make([]byte, 1)); return err })
		advance(clock, time.Second-time.Nanosecond)
		notYet(t, ch, "read 1ns before its moved deadline")
		advance(clock, time.Nanosecond)
		wantTimeout(t, now(t, ch, "read at its moved deadline").err, "read")
	})
}

// TestDeadlineIsTheStacksClock: a deadline is read on the stack's clock,
// not the wall clock. On a fake clock that stands at 1970, a deadline an
// hour after the wall clock's now is decades away, and one an hour after
// the stack's now passes when, and only when, the stack's clock has moved
// an hour.
func TestDeadlineIsTheStacksClock(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c, _ := connect(t, cs, ss)
		if got := cs.Clock().Now(); !got.Equal(clock.Now()) {
			t.Fatalf("Stack.Clock().Now() = %v, want the fake clock's %v", got, clock.Now())
		}
		c.SetReadDeadline(time.Now().Add(time.Hour)) // the wall clock's: not how to set one here
		ch := start(clock, func() error { _, err := c.Read(make([]byte, 1)); return err })
		advance(clock, 2*time.Hour)
		notYet(t, ch, "read with a deadline set from the wall clock")
		c.SetReadDeadline(clock.Now().Add(time.Hour))
		advance(clock, time.Hour-time.Nanosecond)
		notYet(t, ch, "read 1ns before its deadline")
		advance(clock, time.Nanosecond)
		wantTimeout(t, now(t, ch, "read at its deadline").err, "read")
	})
}

// TestLinger: with SetLinger(sec > 0), Close waits until the data and the
// FIN are acknowledged, or until sec seconds have passed on the stack's
// clock if the peer never answers (SO_LINGER on Linux); it returns nil
// either way.
func TestLinger(t *testing.T) {
	t.Run("Acked", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			cs, ss := tsPair(t, clock, tcp.Options{}, tcp.Options{})
			c, _ := connect(t, cs, ss)
			c.SetLinger(5)
			c.Write([]byte("last words"))
			begin := clock.Now()
			ch := start(clock, c.Close)
			// The peer's application neither replies nor closes: its
			// ACK of our FIN waits for its delayed-ACK timer, as
			// Linux's (tcp_fin's ping-pong mode).
			notYet(t, ch, "a lingering Close, before the peer's delayed ACK")
			advance(clock, 40*time.Millisecond)
			r := now(t, ch, "a lingering Close whose FIN the peer acknowledges")
			if r.err != nil || r.at.Sub(begin) != 40*time.Millisecond {
				t.Errorf("Close = %v after %v of the clock, want nil at the peer's delayed ACK, 40ms", r.err, r.at.Sub(begin))
			}
			if st := c.State(); st != event.FinWait2 {
				t.Errorf("state after a lingering Close: %v, want FIN-WAIT-2", st)
			}
		})
	})
	t.Run("Silent", func(t *testing.T) {
		fake(t, func(t *testing.T, clock *faketime.ManualClock) {
			var cut *cuttable
			cs, ss := tsPairLinks(t, clock, tcp.Options{}, tcp.Options{}, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
				cut = newCuttable(l)
				return cut
			}, nil)
			c, _ := connect(t, cs, ss)
			c.SetLinger(2)
			cut.cut.Store(true)
			c.Write([]byte("into the void"))
			ch := start(clock, c.Close)
			notYet(t, ch, "a lingering Close")
			advance(clock, 2*time.Second-time.Millisecond)
			notYet(t, ch, "a Close lingering 2s, at 1.999s")
			advance(clock, time.Millisecond)
			if r := now(t, ch, "a Close lingering 2s, at 2s"); r.err != nil {
				t.Errorf("Close after the linger time: %v, want nil", r.err)
			}
			if st := c.State(); st != event.FinWait1 {
				t.Errorf("state after the linger time: %v, want FIN-WAIT-1 (the FIN is still unacknowledged)", st)
			}
		})
	})
}
