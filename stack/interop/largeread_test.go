package interop

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestLargeReads: tapstack to tapstack over tap.Pipe, read with Reads of
// 256 KiB, which copy without the connection's lock (Read's copyOut)
// while the pipe's goroutine takes in segments, grows the buffer and
// moves the window. The 32 MiB arrive whole and in order. Then Reads of a
// connection still receiving race its Close on another goroutine: each
// ends with data or an error, never a panic, a hang or a data race (CI
// runs this under the race detector).
func TestLargeReads(t *testing.T) {
	pair := func(t *testing.T) (*conn.Conn, *conn.Conn) {
		pa, pb := tap.Pipe(tap.WithPipeGSO(true))
		snd, _ := newTapstack(t, pa, tsPrefix4, tcp.Options{})
		rcv, _ := newTapstack(t, pb, peerPrefix4, tcp.Options{})
		c, sc := connectPair(t, snd, rcv, peerPrefix4)
		setDeadlines(t, time.Minute, c, sc)
		return c, sc
	}

	t.Run("whole", func(t *testing.T) {
		c, sc := pair(t)
		const size = 32 << 20
		sent := make(chan digest, 1)
		go func() {
			d := send(c, size, 7)
			if d.err == nil {
				d.err = c.CloseWrite()
			}
			sent <- d
		}()
		h := sha256.New()
		buf := make([]byte, 256<<10)
		var got int64
		for range size { // bounded: each Read returns at least a byte, or ends the loop
			n, err := sc.Read(buf)
			h.Write(buf[:n])
			got += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Read after %d bytes: %v", got, err)
			}
		}
		want := <-sent
		if want.err != nil {
			t.Fatal(want.err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); got != want.n || sum != want.sum {
			t.Fatalf("received %d bytes sha256 %s, sent %v", got, sum[:16], want)
		}
	})

	t.Run("close during reads", func(t *testing.T) {
		c, sc := pair(t)
		go func() {
			buf := make([]byte, 64<<10)
			for range 1 << 12 {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		var read atomic.Int64
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 256<<10)
			for range 1 << 14 {
				n, err := sc.Read(buf)
				read.Add(int64(n))
				if err != nil {
					done <- err
					return
				}
			}
			done <- errors.New("no Read ended after the close")
		}()
		for i := 0; read.Load() < 4<<20; i++ {
			if i == 3000 {
				t.Fatalf("only %d bytes read in 30 s", read.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
		sc.Close() // while the reader reads on
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("the Read after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Reads did not end after Close")
		}
	})
}
