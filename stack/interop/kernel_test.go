//go:build linux

package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap/taptest"
)

// The kernel side of the TAP and tapstack's side.
const (
	kernelAddr = "192.0.2.1"
	tapAddr    = "192.0.2.2"
)

// kernelTimeout bounds each external command and transfer.
const kernelTimeout = 90 * time.Second

// kernelNet is a namespace whose kernel has 192.0.2.1/24 on a TAP that
// tapstack drives with 192.0.2.2/24.
type kernelNet struct {
	ns  *taptest.Namespace
	ts  *stack.Stack
	rec *recorder
}

func newKernelNet(t *testing.T, tools ...string) *kernelNet {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack0", kernelAddr+"/24")
	g := dev.LinkEndpoint()
	ts, rec := newTapstack(t, g, netip.MustParsePrefix(tapAddr+"/24"), tcp.Options{})
	return &kernelNet{ns: ns, ts: ts, rec: rec}
}

// run runs a shell command line in the namespace, bounded by
// kernelTimeout, and fails the test if it fails.
func (k *kernelNet) run(t *testing.T, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kernelTimeout)
	defer cancel()
	out, err := k.ns.Exec(ctx, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("in the namespace: %s: %v\n%s", script, err, out)
	}
	return string(out)
}

// writeStream writes n bytes of stream(seed) to a new file and returns its
// path and digest.
func writeStream(t *testing.T, n int64, seed uint64) (string, digest) {
	t.Helper()
	name := filepath.Join(t.TempDir(), fmt.Sprintf("stream-%d", seed))
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	d := send(f, n, seed)
	if err := f.Close(); err != nil || d.err != nil {
		t.Fatal(err, d.err)
	}
	return name, d
}

func fileDigest(t *testing.T, name string) digest {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return receive(f)
}

// listen makes a tapstack listener on port, closed when the test ends.
func (k *kernelNet) listen(t *testing.T, port uint16) *conn.Listener {
	t.Helper()
	ln, err := conn.Listen(k.ts, "tcp", fmt.Sprintf("%s:%d", tapAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestKernelPing: the kernel resolves tapstack's address with ARP and
// gets answers to its echo requests.
func TestKernelPing(t *testing.T) {
	k := newKernelNet(t, "ping")
	out := k.run(t, "ping -c 2 -W 2 "+tapAddr)
	if !strings.Contains(out, "2 received") {
		t.Errorf("ping:\n%s", out)
	}
}

// TestKernelClientNetcat: netcat in the namespace sends 16 MiB to a
// tapstack echo server and reads it all back; the server hashes what it
// got, netcat's output file is hashed too.
func TestKernelClientNetcat(t *testing.T) {
	k := newKernelNet(t, "nc")
	in, sent := writeStream(t, bulkSize, 5)
	out := filepath.Join(t.TempDir(), "echoed")
	accepted := acceptOne(k.listen(t, 8080))
	served := make(chan digest, 1)
	go func() {
		r := <-accepted
		if r.err != nil {
			served <- digest{err: r.err}
			return
		}
		c := r.c.(*conn.Conn)
		defer c.Close()
		// Linux offers RFC 7323 timestamps by default; we answer them.
		if i := c.Info(); !i.Timestamps || i.SndMSS != 1448 {
			t.Errorf("kernel client: timestamps %v, send MSS %d; want true, 1448", i.Timestamps, i.SndMSS)
		}
		c.SetDeadline(time.Now().Add(kernelTimeout))
		// Echo and hash what passes through.
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(c, h), c)
		if err == nil {
			err = c.CloseWrite()
		}
		served <- digest{n: n, sum: hex.EncodeToString(h.Sum(nil)), err: err}
	}()
	start := time.Now()
	// -N: shut down the write side after EOF on stdin; -w bounds
	// connection and idle time.
	k.run(t, fmt.Sprintf("nc -N -w 30 %s 8080 < %s > %s", tapAddr, in, out))
	d := time.Since(start)
	got := <-served
	checkFlow(t, "nc -> tapstack", sent, got)
	checkFlow(t, "tapstack -> nc (echo)", sent, fileDigest(t, out))
	t.Logf("16 MiB echoed through netcat in %v", d.Round(time.Millisecond))
}

// TestKernelClientCurl: curl downloads 16 MiB from net/http serving on a
// tapstack listener.
func TestKernelClientCurl(t *testing.T) {
	k := newKernelNet(t, "curl")
	ln := k.listen(t, 8081)
	var blob bytes.Buffer
	want := send(&blob, bulkSize, 6)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(blob.Bytes()))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-done
	}()
	out := filepath.Join(t.TempDir(), "blob")
	start := time.Now()
	k.run(t, fmt.Sprintf("curl -sS --fail --max-time 60 -o %s http://%s:8081/blob", out, tapAddr))
	t.Logf("curl got 16 MiB in %v", time.Since(start).Round(time.Millisecond))
	checkFlow(t, "tapstack http -> curl", want, fileDigest(t, out))
}

// TestKernelServerGo: tapstack dials a Go listener made inside the
// namespace (so served by the kernel's TCP) and both send 16 MiB at once.
func TestKernelServerGo(t *testing.T) {
	k := newKernelNet(t)
	var ln net.Listener
	if err := k.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", kernelAddr+":9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := acceptOne(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := (&conn.Dialer{Stack: k.ts}).DialTCP(ctx, "tcp", kernelAddr+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := <-accepted
	if r.err != nil {
		t.Fatal(r.err)
	}
	kc := r.c.(*net.TCPConn)
	defer kc.Close()
	d := exchange(t, c, kc, bulkSize, both, kernelTimeout)
	t.Logf("16 MiB each way with the kernel in %v; tapstack %+v", d.Round(time.Millisecond), summary(c.Info()))
	// Both ends offer RFC 7323 timestamps by default (Linux tcp_timestamps=1).
	if !c.Info().Timestamps {
		t.Error("timestamps not in force with the kernel")
	}
	c.Close()
	kc.Close()
	waitState(t, c, 10*time.Second, event.Closed)
	waitNoConnections(t, k.ts, 10*time.Second)
}

// TestKernelServerSocat: tapstack dials socat listening in the namespace,
// which echoes through cat; 16 MiB go each way.
func TestKernelServerSocat(t *testing.T) {
	k := newKernelNet(t, "socat")
	ctx, cancel := context.WithTimeout(context.Background(), kernelTimeout)
	defer cancel()
	// -t 30: after our FIN, wait for cat to flush the echo.
	socat := k.ns.Exec(ctx, "socat", "-t", "30", fmt.Sprintf("TCP-LISTEN:9001,bind=%s,reuseaddr", kernelAddr), "EXEC:cat")
	var stderr bytes.Buffer
	socat.Stderr = &stderr
	if err := socat.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		socat.Process.Kill()
		socat.Wait()
		if t.Failed() {
			t.Logf("socat stderr: %s", stderr.String())
		}
	}()
	// socat needs a moment to listen: retry refused dials, boundedly.
	var c *conn.Conn
	for i := 0; ; i++ {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		c, err = (&conn.Dialer{Stack: k.ts}).DialTCP(dctx, "tcp", kernelAddr+":9001")
		dcancel()
		if err == nil {
			break
		}
		if i >= 50 {
			t.Fatalf("dial socat: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(kernelTimeout))
	start := time.Now()
	var got digest
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = receive(c)
	}()
	sent := send(c, bulkSize, 7)
	if sent.err == nil {
		sent.err = c.CloseWrite()
	}
	<-done
	checkFlow(t, "tapstack -> socat -> tapstack", sent, got)
	t.Logf("16 MiB echoed by socat in %v", time.Since(start).Round(time.Millisecond))
	c.Close()
	waitState(t, c, 10*time.Second, event.Closed)
}
