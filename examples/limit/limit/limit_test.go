package limit

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pipeListener is an in-memory net.Listener: Dial makes a net.Pipe and
// hands one end to Accept.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeListener) Close() error   { p.once.Do(func() { close(p.done) }); return nil }
func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

func (p *pipeListener) Dial() (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case p.conns <- a:
		return b, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

// hammer runs clients dialers against a server that holds each connection
// briefly and closes it twice, checking that no more than n are open at
// once. It returns how many connections the server took and the client
// side's count of connections that were closed without a greeting.
func hammer(t *testing.T, l *Limited, inner *pipeListener, n, clients int) (served, refused int64) {
	var open, maxOpen, servedN atomic.Int64
	var srv sync.WaitGroup
	srv.Go(func() {
		var handlers sync.WaitGroup
		defer handlers.Wait()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			now := open.Add(1)
			for m := maxOpen.Load(); now > m && !maxOpen.CompareAndSwap(m, now); m = maxOpen.Load() {
			}
			if got := l.Open(); got > n {
				t.Errorf("Open() = %d > %d", got, n)
			}
			servedN.Add(1)
			handlers.Go(func() {
				c.Write([]byte("x"))
				time.Sleep(50 * time.Microsecond)
				open.Add(-1) // before Close gives the slot back
				c.Close()
				c.Close() // twice: the slot must come back once
			})
		}
	})
	var refusedN atomic.Int64
	var cl sync.WaitGroup
	for range clients {
		cl.Go(func() {
			c, err := inner.Dial()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				refusedN.Add(1)
			}
		})
	}
	cl.Wait()
	l.Close()
	srv.Wait()
	if m := maxOpen.Load(); m > int64(n) {
		t.Errorf("%d connections open at once, limit %d", m, n)
	}
	if got := l.Open(); got != 0 {
		t.Errorf("Open() = %d after every connection closed", got)
	}
	return servedN.Load(), refusedN.Load()
}

func TestWaitHammer(t *testing.T) {
	inner := newPipeListener()
	l := Listener(inner, 4, Options{Wait: true})
	served, refused := hammer(t, l, inner, 4, 500)
	if served != 500 || refused != 0 || l.Rejected() != 0 {
		t.Errorf("served %d, refused %d, rejected %d; want 500, 0, 0", served, refused, l.Rejected())
	}
}

func TestCloseExcessHammer(t *testing.T) {
	inner := newPipeListener()
	l := Listener(inner, 4, Options{})
	served, refused := hammer(t, l, inner, 4, 500)
	if served+int64(l.Rejected()) != 500 || refused != int64(l.Rejected()) {
		t.Errorf("served %d + rejected %d != 500, or clients saw %d refusals", served, l.Rejected(), refused)
	}
	t.Logf("served %d, closed at once %d", served, l.Rejected())
}

// TestCloseWakesWaiter: Close ends an Accept waiting for a slot.
func TestCloseWakesWaiter(t *testing.T) {
	inner := newPipeListener()
	l := Listener(inner, 1, Options{Wait: true})
	go inner.Dial()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error)
	go func() { _, err := l.Accept(); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}
