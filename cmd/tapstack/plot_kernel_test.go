//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/plot"
	"github.com/tapstack/tapstack/tap/taptest"
)

// countServer listens on addr in ns with the kernel's TCP until the test
// ends: it reads each connection to its end, answers with the count
// ("got N\n") and closes.
func countServer(t *testing.T, ns *taptest.Namespace, addr string) {
	t.Helper()
	kernelServer(t, ns, addr, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d\n", n)
	})
}

// kernelServer listens on addr in ns with the kernel's TCP until the test
// ends, and serves each connection with serve, a minute at most, closing
// it after.
func kernelServer(t *testing.T, ns *taptest.Namespace, addr string, serve func(net.Conn)) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				serve(c)
			}()
		}
	}()
}

// runInNamespace runs the command in-process in ns (the TAP device is
// opened on the calling thread, which must be in the namespace) and
// returns a function that waits for its exit status.
func runInNamespace(t *testing.T, ctx context.Context, ns *taptest.Namespace, e env, args ...string) (wait func() int) {
	t.Helper()
	done := make(chan int, 1)
	go func() {
		code := -1
		_ = ns.Do(func() error {
			code = run(ctx, e, args)
			return nil
		})
		done <- code
	}()
	return func() int {
		select {
		case code := <-done:
			return code
		case <-time.After(60 * time.Second):
			t.Fatalf("tapstack %s still running 60 s later", args[0])
			return 0
		}
	}
}

// statesTo lists the states an end of c went to, in order.
func statesTo(c *plot.Conn, end int) string {
	var b []string
	for _, s := range c.States[end] {
		b = append(b, s.To)
	}
	return strings.Join(b, " ")
}

// tapstack serve --plot: the Linux kernel connects to serve's echo port,
// sends 256 KiB, reads them back and closes; when serve is stopped
// (Ctrl-C), the page of its capture holds the connection with tapstack's
// states from the engine and the kernel's read off the wire, and the
// listener's queue decisions.
func TestServePlot(t *testing.T) {
	const dev = "tsplotsrv0"
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	dir := t.TempDir()
	page := filepath.Join(dir, "serve.html")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncWriter{w: &strings.Builder{}}
	var errOut bytes.Buffer
	wait := runInNamespace(t, ctx, ns, env{stdin: strings.NewReader(""), stdout: out, stderr: &syncWriter{w: &errOut}},
		"serve", "--tap", dev, "--addr", "192.0.2.2/24", "--mode", "echo", "--plot", page)

	c := dialEcho(t, ns)
	msg := bytes.Repeat([]byte("tapstack"), 256<<10/8)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo of 256 KiB: %v", err)
	}
	c.Close()
	// serve says how many bytes a connection carried once it closed its
	// end: "192.0.2.1:port: 262148 bytes, EOF" (the ping and the 256 KiB).
	for i := 0; ; i++ {
		out.mu.Lock()
		s := out.w.(*strings.Builder).String()
		out.mu.Unlock()
		if strings.Contains(s, fmt.Sprintf(": %d bytes, EOF", len(msg)+4)) {
			break
		}
		if i == 200 {
			t.Fatalf("serve did not report the connection's end: %q", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := wait(); code != 0 {
		t.Fatalf("serve: exit %d, stderr %q", code, errOut.String())
	}
	d := readPage(t, page)
	if !strings.Contains(errOut.String(), fmt.Sprintf("plot of %d connections written to %s", len(d.Conns), page)) {
		t.Errorf("stderr %q", errOut.String())
	}
	if len(d.Conns) == 0 || !d.Annotated || len(d.Listeners) != 1 || len(d.Listeners[0].Decisions) == 0 {
		t.Fatalf("page: %d connections, %d listeners, annotated %v", len(d.Conns), len(d.Listeners), d.Annotated)
	}
	// The echo's connection is the last; a SYN that came before serve
	// listened was refused (dialServe tries again), and is on the page
	// as SYNs and tapstack's RST, without data.
	cn := d.Conns[len(d.Conns)-1]
	for _, c := range d.Conns[:len(d.Conns)-1] {
		if n := len(c.Segs); n == 0 || c.Segs[n-1].Mark != "rst" || c.Flows[0].Bytes+c.Flows[1].Bytes > 0 {
			t.Errorf("connection %s before the echo's: %+v", c.Name, c.Segs)
		}
	}
	if cn.Ends[0].Addr != "192.0.2.2:7" || cn.Ends[0].States != "engine" || cn.Ends[1].States != "wire" {
		t.Errorf("ends %+v", cn.Ends)
	}
	// The kernel closes first: tapstack is the passive closer.
	if got, want := statesTo(cn, 0), "SYN-RECEIVED ESTABLISHED CLOSE-WAIT LAST-ACK CLOSED"; got != want {
		t.Errorf("tapstack's states %s, want %s", got, want)
	}
	if got, want := statesTo(cn, 1), "SYN-SENT ESTABLISHED FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT"; got != want {
		t.Errorf("the kernel's states (from the wire) %s, want %s", got, want)
	}
	if cn.Flows[0].Bytes < int64(len(msg)) || cn.Flows[1].Bytes < int64(len(msg)) || len(cn.Series.Cwnd) == 0 {
		t.Errorf("flows %+v, %d cwnd points", cn.Flows, len(cn.Series.Cwnd))
	}
}

// tapstack dial --plot with 6 MiB on stdin: the kernel reads it all and
// answers with the count. On a terminal stderr, dial shows its progress
// (bytes, rate, retransmits) on one line rewritten in place and leaves it
// clean; on a stderr that is not a terminal it says nothing of progress.
// The page of its capture holds the transfer.
func TestDialPlotProgress(t *testing.T) {
	const dev = "tsplotdial0"
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	countServer(t, ns, "192.0.2.1:5002")
	// 6 MiB at 60 Mbit/s: about 0.85 s, past progressAfter.
	const size = 6 << 20
	payload := bytes.Repeat([]byte{'x'}, size)
	dial := func(t *testing.T, stderr io.Writer, page string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out bytes.Buffer
		args := []string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--rate", "60mbit", "--seed", "1"}
		if page != "" {
			args = append(args, "--plot", page)
		}
		wait := runInNamespace(t, ctx, ns, env{stdin: bytes.NewReader(payload), stdout: &out, stderr: stderr}, append(args, "192.0.2.1:5002")...)
		if code := wait(); code != 0 {
			t.Fatalf("dial: exit %d", code)
		}
		if out.String() != fmt.Sprintf("got %d\n", size) {
			t.Fatalf("the kernel's answer %q", out.String())
		}
	}

	t.Run("terminal", func(t *testing.T) {
		ctrl, term := openPTY(t)
		seen := readPTY(ctrl)
		page := filepath.Join(t.TempDir(), "dial.html")
		dial(t, term, page)
		term.Close()
		got := seen()
		for _, want := range []string{"\rdial 192.0.2.1:5002: ", " MiB, ", " MB/s, ", " retransmits\x1b[K", "\r\x1b[K"} {
			if !strings.Contains(got, want) {
				t.Errorf("the terminal shows no %q: %q", want, got)
			}
		}
		d := readPage(t, page)
		if len(d.Conns) != 1 || !d.Annotated {
			t.Fatalf("page: %d connections, annotated %v", len(d.Conns), d.Annotated)
		}
		cn := d.Conns[0]
		if cn.Flows[0].Bytes != size || !strings.HasPrefix(cn.Ends[0].Addr, "192.0.2.2:") {
			t.Errorf("flow %+v, ends %+v", cn.Flows[0], cn.Ends)
		}
		if got := statesTo(cn, 0); !strings.HasPrefix(got, "SYN-SENT ESTABLISHED FIN-WAIT-1") || !strings.Contains(got, "TIME-WAIT") {
			t.Errorf("tapstack's states %s", got)
		}
		if len(cn.Series.Cwnd) == 0 || !cn.Series.RTTEngine {
			t.Errorf("%d cwnd points, RTT from the engine %v", len(cn.Series.Cwnd), cn.Series.RTTEngine)
		}
	})
	t.Run("not-a-terminal", func(t *testing.T) {
		var errOut bytes.Buffer
		dial(t, &syncWriter{w: &errOut}, "")
		if strings.ContainsAny(errOut.String(), "\r\x1b") || strings.Contains(errOut.String(), "MB/s") {
			t.Errorf("progress off a terminal: stderr %q", errOut.String())
		}
	})
}
