package conn_test

import (
	"io"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
)

// result is a call's error and the time it returned.
type result struct {
	err error
	at  time.Time
}

// start runs call on its own goroutine.
func start(call func() error) <-chan result {
	ch := make(chan result, 1)
	go func() {
		err := call()
		ch <- result{err, time.Now()}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result, d time.Duration, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return result{}
	}
}

func notYet(t *testing.T, ch <-chan result, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned early: %v", what, r.err)
	case <-time.After(d):
	}
}

// fillWrite returns a conn whose Write blocks: its send buffer and the
// peer's window are small and the peer never reads.
func fillWrite(t *testing.T) (c, s *conn.Conn) {
	small := tcp.Options{SendBufferSize: 32 << 10, ReceiveBufferSize: 32 << 10}
	cs, ss := tsPair(t, small, small)
	return connect(t, cs, ss)
}

// TestDeadlines covers read, write and accept deadlines as package net
// defines them: a past deadline fails at once, a future one fails the call
// blocked on it, and a change applies to calls already blocked (extend,
// shorten, clear with the zero time). Each failure is a "read"/"write"/
// "accept" OpError wrapping os.ErrDeadlineExceeded, a net.Error with
// Timeout() true; the conn stays usable afterwards.
func TestDeadlines(t *testing.T) {
	type target struct {
		name string
		// setup returns the blocking call, its deadline setter and a way
		// to unblock it (for the "cleared" case).
		setup func(t *testing.T) (call func() error, set func(time.Time) error, unblock func())
	}
	read := target{"read", func(t *testing.T) (func() error, func(time.Time) error, func()) {
		cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
		c, s := connect(t, cs, ss)
		return func() error { _, err := c.Read(make([]byte, 10)); return err },
			c.SetReadDeadline,
			func() { s.Write([]byte("x")) }
	}}
	write := target{"write", func(t *testing.T) (func() error, func(time.Time) error, func()) {
		c, s := fillWrite(t)
		return func() error { _, err := c.Write(make([]byte, 1<<20)); return err },
			c.SetWriteDeadline,
			func() { go io.Copy(io.Discard, s) }
	}}
	accept := target{"accept", func(t *testing.T) (func() error, func(time.Time) error, func()) {
		cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
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
	for _, tg := range []target{read, write, accept} {
		t.Run(tg.name+"/Past", func(t *testing.T) {
			call, set, _ := tg.setup(t)
			set(time.Now().Add(-time.Second))
			r := await(t, start(call), time.Second, tg.name)
			wantTimeout(t, r.err, tg.name)
			// Still failing, and usable again once cleared (below).
			wantTimeout(t, call(), tg.name)
		})
		t.Run(tg.name+"/Future", func(t *testing.T) {
			call, set, _ := tg.setup(t)
			begin := time.Now()
			set(begin.Add(100 * time.Millisecond))
			r := await(t, start(call), 2*time.Second, tg.name)
			wantTimeout(t, r.err, tg.name)
			if d := r.at.Sub(begin); d < 90*time.Millisecond || d > time.Second {
				t.Errorf("returned after %v, deadline was 100ms", d)
			}
		})
		t.Run(tg.name+"/Extend", func(t *testing.T) {
			call, set, _ := tg.setup(t)
			begin := time.Now()
			set(begin.Add(100 * time.Millisecond))
			ch := start(call)
			time.Sleep(30 * time.Millisecond)
			set(begin.Add(300 * time.Millisecond))
			notYet(t, ch, 150*time.Millisecond, tg.name+" after the deadline was extended")
			r := await(t, ch, 2*time.Second, tg.name)
			wantTimeout(t, r.err, tg.name)
			if d := r.at.Sub(begin); d < 280*time.Millisecond {
				t.Errorf("returned after %v, deadline extended to 300ms", d)
			}
		})
		t.Run(tg.name+"/Shorten", func(t *testing.T) {
			call, set, _ := tg.setup(t)
			begin := time.Now()
			set(begin.Add(time.Hour))
			ch := start(call)
			time.Sleep(30 * time.Millisecond)
			set(begin.Add(80 * time.Millisecond))
			r := await(t, ch, 2*time.Second, tg.name)
			wantTimeout(t, r.err, tg.name)
			if d := r.at.Sub(begin); d > time.Second {
				t.Errorf("returned after %v, deadline shortened to 80ms", d)
			}
		})
		t.Run(tg.name+"/ShortenToPast", func(t *testing.T) {
			call, set, _ := tg.setup(t)
			ch := start(call)
			time.Sleep(30 * time.Millisecond)
			set(time.Now().Add(-time.Second))
			wantTimeout(t, await(t, ch, time.Second, tg.name).err, tg.name)
		})
		t.Run(tg.name+"/Clear", func(t *testing.T) {
			call, set, unblock := tg.setup(t)
			set(time.Now().Add(80 * time.Millisecond))
			ch := start(call)
			time.Sleep(20 * time.Millisecond)
			set(time.Time{})
			notYet(t, ch, 200*time.Millisecond, tg.name+" after the deadline was cleared")
			unblock()
			r := await(t, ch, 5*time.Second, tg.name)
			if r.err != nil {
				t.Fatalf("%s after the deadline was cleared and the call unblocked: %v", tg.name, r.err)
			}
		})
		t.Run(tg.name+"/ClearAfterExpiry", func(t *testing.T) {
			call, set, unblock := tg.setup(t)
			set(time.Now().Add(-time.Second))
			wantTimeout(t, call(), tg.name)
			set(time.Time{})
			ch := start(call)
			notYet(t, ch, 50*time.Millisecond, tg.name+" with the deadline cleared")
			unblock()
			if r := await(t, ch, 5*time.Second, tg.name); r.err != nil {
				t.Fatalf("%s after clearing an expired deadline: %v", tg.name, r.err)
			}
		})
	}
}

// TestDeadlineWithDataWaiting: like package net, a passed read deadline
// fails Read even when data is waiting, and clearing it reads the data.
func TestDeadlineWithDataWaiting(t *testing.T) {
	cs, ss := tsPair(t, tcp.Options{}, tcp.Options{})
	c, s := connect(t, cs, ss)
	s.Write([]byte("data"))
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c.Read(make([]byte, 4))
	wantTimeout(t, err, "read")
	c.SetReadDeadline(time.Time{})
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "data" {
		t.Fatalf("after clearing: %q, %v", b, err)
	}
	// SetDeadline sets both.
	c.SetDeadline(time.Now().Add(-time.Second))
	_, err = c.Read(b)
	wantTimeout(t, err, "read")
	_, err = c.Write(b)
	wantTimeout(t, err, "write")
}
