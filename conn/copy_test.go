package conn_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// io.Copy through a tapstack Conn takes the paths *net.TCPConn has:
// io.WriterTo when the Conn is the source, io.ReaderFrom when it is the
// destination (and the source is no io.WriterTo).
var (
	_ io.WriterTo   = (*conn.Conn)(nil)
	_ io.ReaderFrom = (*conn.Conn)(nil)
)

// copyBytes is what each direction of the copy tests moves: enough for
// the windows and buffers to fill and reopen many times.
const copyBytes = 8 << 20

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

// onlyReader hides a reader's WriterTo (bytes.Reader has one), so that
// io.Copy(c, r) calls c.ReadFrom.
type onlyReader struct{ io.Reader }

// copyBothWays copies copyBytes from c to peer with io.Copy(c, r) (ReadFrom)
// and copyBytes from peer to c with io.Copy(w, c) (WriteTo), and checks the
// bytes that arrive on each side.
func copyBothWays(t *testing.T, c *conn.Conn, peer net.Conn) {
	t.Helper()
	up, down := randomBytes(copyBytes), randomBytes(copyBytes)
	down[0] ^= 0xff // not the same bytes as up
	type got struct {
		n    int64
		sum  [32]byte
		err  error
		what string
	}
	res := make(chan got, 4)
	go func() { // tapstack sends: ReadFrom
		n, err := io.Copy(c, onlyReader{bytes.NewReader(up)})
		if err == nil {
			err = c.CloseWrite()
		}
		res <- got{n: n, err: err, what: "io.Copy(tapstack, r)"}
	}()
	go func() { // the peer receives
		b, err := io.ReadAll(peer)
		res <- got{n: int64(len(b)), sum: sha256.Sum256(b), err: err, what: "peer's read"}
	}()
	go func() { // the peer sends
		_, err := peer.Write(down)
		if err == nil {
			err = peer.(interface{ CloseWrite() error }).CloseWrite()
		}
		res <- got{n: copyBytes, err: err, what: "peer's write"}
	}()
	go func() { // tapstack receives: WriteTo
		h := sha256.New()
		n, err := io.Copy(h, c)
		var sum [32]byte
		h.Sum(sum[:0])
		res <- got{n: n, sum: sum, err: err, what: "io.Copy(w, tapstack)"}
	}()
	for range 4 {
		r := <-res
		if r.err != nil || r.n != copyBytes {
			t.Fatalf("%s: %d bytes, %v; want %d, no error", r.what, r.n, r.err, copyBytes)
		}
		switch r.what {
		case "peer's read":
			if r.sum != sha256.Sum256(up) {
				t.Fatalf("the peer received %d bytes, not the ones io.Copy sent", r.n)
			}
		case "io.Copy(w, tapstack)":
			if r.sum != sha256.Sum256(down) {
				t.Fatalf("io.Copy from the tapstack Conn wrote %d bytes, not the ones the peer sent", r.n)
			}
		}
	}
}

// TestCopyGVisor: io.Copy into and out of a tapstack Conn, both ways at
// once, with gVisor's TCP as the peer over tap.Pipe; bytes checked by
// SHA-256.
func TestCopyGVisor(t *testing.T) {
	c, peer := dialGVisor(t)
	copyBothWays(t, c, peer)
}

// dialGVisor connects a tapstack Conn to gVisor's TCP over tap.Pipe and
// returns both ends; the test's cleanup closes them.
func dialGVisor(t *testing.T) (*conn.Conn, net.Conn) {
	t.Helper()
	ts, gv := gvPair(t, nil, tcp.Options{})
	ln, err := gv.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return dialPeer(t, ts, ln)
}

// dialPeer dials the peer's listener ln from ts and returns both ends;
// the test's cleanup closes them.
func dialPeer(t *testing.T, ts *stack.Stack, ln net.Listener) (*conn.Conn, net.Conn) {
	t.Helper()
	acc := make(chan net.Conn, 1)
	go func() {
		k, _ := ln.Accept()
		acc <- k
	}()
	c, err := conn.Dial(ts, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer := <-acc
	if peer == nil {
		t.Fatalf("the peer's listener on %v accepted nothing", ln.Addr())
	}
	t.Cleanup(func() { peer.Close() })
	return c.(*conn.Conn), peer
}

// TestCopyTapstackProxy: io.Copy from one tapstack Conn to another, as a
// proxy does: the source's WriteTo hands its receive buffer to the
// destination's Write. Data from a tapstack client through the proxy's
// two connections reaches the server whole.
func TestCopyTapstackProxy(t *testing.T) {
	client, server := tsPair(t, nil, tcp.Options{}, tcp.Options{})
	a, b := connect(t, client, server) // client a, proxy's inbound b
	c, d := connect(t, client, server) // proxy's outbound c, server d
	data := randomBytes(copyBytes)
	go func() {
		a.Write(data)
		a.CloseWrite()
	}()
	proxied := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, b)
		if err == nil {
			err = c.CloseWrite()
		}
		proxied <- err
	}()
	got, err := io.ReadAll(d)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the server read %d bytes (%v), want the %d the client sent", len(got), err, len(data))
	}
	if err := <-proxied; err != nil {
		t.Fatalf("io.Copy through the proxy: %v", err)
	}
}

// unevenReader returns what its reader has in reads of the sizes in
// turn, each at most what the caller asks: tiny, large, and between.
type unevenReader struct {
	r     io.Reader
	sizes []int
	i     int
}

func (u *unevenReader) Read(p []byte) (int, error) {
	n := min(len(p), u.sizes[u.i%len(u.sizes)])
	u.i++
	return u.r.Read(p[:n])
}

// TestReadFromUnevenReads: io.Copy into a tapstack Conn from a reader
// whose reads are small, then large, then small again, so that ReadFrom's
// read size shrinks to 4 KiB and grows back to 64 KiB (a long run of
// 70,000-byte reads) over and over; gVisor's TCP as the peer receives the
// bytes in order, checked by SHA-256.
func TestReadFromUnevenReads(t *testing.T) {
	c, peer := dialGVisor(t)
	data := randomBytes(copyBytes)
	sizes := []int{100, 1, 3000, 100, 9000}
	for range 8 {
		sizes = append(sizes, 70000)
	}
	done := make(chan error, 1)
	go func() {
		n, err := io.Copy(c, &unevenReader{r: bytes.NewReader(data), sizes: sizes})
		if err == nil && n != copyBytes {
			err = io.ErrShortWrite
		}
		if err == nil {
			err = c.CloseWrite()
		}
		done <- err
	}()
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatalf("the peer's read: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("io.Copy(tapstack, uneven reader): %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("the peer got %d bytes, not the %d sent (first difference at %d)", len(got), len(data), firstDifference(got, data))
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
