//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap/taptest"
)

// serveInNamespace runs "tapstack serve" in-process on a TAP device made
// in a fresh namespace (the kernel at 192.0.2.1, tapstack at 192.0.2.2)
// and returns the namespace and a function that waits for the exit status
// and stderr. (TestSIGINT interrupts serve with a real signal.)
func serveInNamespace(t *testing.T, dev string) (*taptest.Namespace, func() (int, string)) {
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	out := &syncWriter{w: &strings.Builder{}}
	errOut := &syncWriter{w: &strings.Builder{}}
	ready := make(chan struct{})
	type result struct {
		code int
		err  string
	}
	done := make(chan result, 1)
	go func() {
		code := -1
		// The device is opened on the calling thread, which must be in
		// the namespace; the stack's goroutines need not be.
		_ = ns.Do(func() error {
			close(ready)
			code = run(ctx, env{stdin: strings.NewReader(""), stdout: out, stderr: errOut},
				[]string{"serve", "--tap", dev, "--addr", "192.0.2.2/24", "--mode", "echo"})
			return nil
		})
		done <- result{code, errOut.w.(*strings.Builder).String()}
	}()
	<-ready
	wait := func() (int, string) {
		select {
		case r := <-done:
			return r.code, r.err
		case <-time.After(30 * time.Second):
			t.Fatalf("serve still running 30 s later; stdout:\n%s", out.w)
			return 0, ""
		}
	}
	return ns, wait
}

// dialEcho connects from the kernel to tapstack's echo server and checks
// one echo.
func dialEcho(t *testing.T, ns *taptest.Namespace) net.Conn {
	t.Helper()
	c, err := dialServe(ns)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	return c
}

// dialServe connects from the kernel in ns to tapstack serve's echo port
// at 192.0.2.2:7, trying again for up to about ten seconds while serve is
// still starting: a SYN that reaches serve's stack before it listens is
// refused (RST), and the kernel sends again one that went out before
// serve had opened its TAP device (after its initial RTO of 1 s, RFC 6298
// 2.1).
//
// An attempt ends only when the kernel ends it (connected, refused,
// unreachable) or when the ten seconds are up, never at a deadline of its
// own: a dial that gave up after a second while the kernel's SYN sent again
// at that second was being answered left the kernel to finish the
// handshake and close the connection at once (FIN, no data), a connection
// serve did accept and that TestServePlot's page showed beside the
// refused ones.
func dialServe(ns *taptest.Namespace) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	var err error
	for ctx.Err() == nil {
		var c net.Conn
		if err = ns.Do(func() (err error) {
			c, err = d.DialContext(ctx, "tcp4", "192.0.2.2:7")
			return err
		}); err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("the kernel could not connect to tapstack serve: %w", err)
}

// TestServeLinkDown: the TAP device is deleted under a running serve
// (ip link del). The stack takes the NIC down and serve ends with exit
// status 1 and a message naming the cause, instead of serving a device
// that no longer exists.
func TestServeLinkDown(t *testing.T) {
	const dev = "tslinkdn0"
	ns, wait := serveInNamespace(t, dev)
	c := dialEcho(t, ns)
	defer c.Close()
	ns.Run(t, "ip", "link", "del", dev)
	code, stderr := wait()
	t.Logf("exit %d, stderr %q", code, stderr)
	if code != 1 || !strings.Contains(stderr, "tapstack serve: ") || !strings.Contains(stderr, "link down") ||
		!strings.HasSuffix(stderr, ": TAP device "+dev+" was deleted\n") {
		t.Fatalf("serve after its TAP was deleted: exit %d, stderr %q; want 1 and \"tapstack serve: ... link down ...: TAP device %s was deleted\"", code, stderr, dev)
	}
}

// TestDialLinkDown: dial through a TAP device that is down (made by ip
// tuntap add and never brought up, as --create makes one) fails at its
// first frame, which the kernel refuses with EIO: the message says the
// device is down and how to bring it up, where it said only "link down:
// tap: write: input/output error".
func TestDialLinkDown(t *testing.T) {
	const dev = "tsdialdn0"
	ns := taptest.NewNamespace(t)
	ns.Run(t, "ip", "tuntap", "add", "dev", dev, "mode", "tap")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := runInNamespace(t, ctx, ns, env{stdin: strings.NewReader("x"), stdout: &out, stderr: &errOut}, "dial", "--tap", dev, "--addr", "192.0.2.2/24", "192.0.2.1:7")()
	want := ": TAP device " + dev + " is down (bring it up: ip link set dev " + dev + " up)\n"
	if code != 1 || !strings.HasPrefix(errOut.String(), "tapstack dial: NIC 1: link down: tap: write: input/output error") || !strings.HasSuffix(errOut.String(), want) {
		t.Errorf("dial through a device that is down: exit %d, stderr %q; want 1 and a message ending %q", code, errOut.String(), want)
	}
}
