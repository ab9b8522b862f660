//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap/taptest"
)

// The test binary doubles as the tapstack command when TAPSTACK_CLI_ARGS
// is set, so a test can send it a real signal.
func TestMain(m *testing.M) {
	if args := os.Getenv("TAPSTACK_CLI_ARGS"); args != "" {
		os.Args = append([]string{"tapstack"}, strings.Fields(args)...)
		main()
		return
	}
	os.Exit(m.Run())
}

// underwayBytes is how much a transfer has moved when the tests below call
// it under way and press Ctrl-C.
const underwayBytes = 1 << 20

// TestSIGINT: a real SIGINT (Ctrl-C) in the middle of a transfer ends the
// command with status 0 and nothing on stderr: the README's convention
// ("The CLI") makes Ctrl-C a clean end, and messages are for errors; so
// does SIGTERM (trace), and ping prints its statistics, as iputils. serve,
// dial and the agent (idle, before any request) run on a TAP against the
// Linux kernel in a namespace of their own; after the signal the kernel's socket must have seen tapstack's FIN
// or RST, and ss must list no ESTABLISHED connection there: a command that
// just exits leaves the kernel's end ESTABLISHED until its retransmissions
// give up, minutes later. Those cases skip without CAP_NET_ADMIN; bench and
// demo run in memory and need no privileges.
func TestSIGINT(t *testing.T) {
	for _, tc := range []struct {
		name string
		// kernel: the command runs in a namespace on TAP device dev, at
		// 192.0.2.2, the kernel at 192.0.2.1.
		kernel bool
		dev    string
		// peer starts the kernel's end of the transfer (nil in memory).
		peer func(t *testing.T, ns *taptest.Namespace) *kernelPeer
		args []string
		// underway reports from the command's output so far (and the
		// kernel's end) that the transfer is in its middle.
		underway func(out *cliOutput, p *kernelPeer) bool
		// sig is the signal sent, SIGINT if unset; SIGTERM ends a
		// command as cleanly (main.go).
		sig syscall.Signal
		// idle: the command holds no connection when signalled (the
		// agent before any request).
		idle bool
		// banner: what the command prints on stderr when it starts, the
		// sign that it is under way; nothing may follow it.
		banner string
		// summary: what stdout must hold once the command has ended.
		summary string
	}{
		{
			name: "bench",
			args: []string{"bench", "--size", "4294967296"},
			// bench prints its header before the transfer and nothing
			// more until the 4 GiB are through.
			underway: func(out *cliOutput, _ *kernelPeer) bool { return strings.Contains(out.head(), "bulk transfer") },
		},
		{
			name: "demo",
			// 40 kB at 80 kbit/s: four seconds of transfer. A seed, or
			// demo tells the one it chose on stderr.
			args: []string{"demo", "--timewait", "30s", "--rate", "80kbit", "--seed", "1", "--text", strings.Repeat("x", 40000)},
			underway: func(out *cliOutput, _ *kernelPeer) bool {
				return strings.Contains(out.head(), "SYN-SENT → ESTABLISHED")
			},
		},
		{
			name: "ping",
			args: []string{"ping", "-i", "10ms", "192.0.2.1"},
			underway: func(out *cliOutput, _ *kernelPeer) bool {
				return strings.Contains(out.head(), "icmp_seq=3 ")
			},
			// As iputils: the statistics, on Ctrl-C too.
			summary: "--- 192.0.2.1 ping statistics ---\n",
		},
		{
			name: "trace, SIGTERM",
			args: []string{"trace", "--timewait", "30s", "--rate", "80kbit", "--seed", "1", "--text", strings.Repeat("x", 40000)},
			underway: func(out *cliOutput, _ *kernelPeer) bool {
				return strings.Contains(out.head(), "SYN-SENT → ESTABLISHED")
			},
			sig: syscall.SIGTERM,
		},
		{
			name:   "agent",
			kernel: true, dev: "tssigagent0",
			args:   []string{"agent", "--tap", "tssigagent0", "--addr", "192.0.2.2/24"},
			idle:   true,
			banner: "tapstack agent: 192.0.2.2/24 on tssigagent0, serving protocol version 1 on stdin/stdout\n",
		},
		{
			name:   "serve",
			kernel: true, dev: "tssigserve0",
			// The kernel connects to serve's echo port and streams;
			// the echo comes back to it.
			peer: func(t *testing.T, ns *taptest.Namespace) *kernelPeer {
				return startKernelPeer(t, func() (net.Conn, error) { return dialServe(ns) })
			},
			args:     []string{"serve", "--tap", "tssigserve0", "--addr", "192.0.2.2/24", "--mode", "echo"},
			underway: func(_ *cliOutput, p *kernelPeer) bool { return p.received.Load() >= underwayBytes },
		},
		{
			name:   "dial",
			kernel: true, dev: "tssigdial0",
			// The kernel listens on 192.0.2.1:5001 and streams to
			// whoever connects; dial's stdin stays open, so dial has
			// sent no FIN of its own before the signal.
			peer: func(t *testing.T, ns *taptest.Namespace) *kernelPeer {
				var ln net.Listener
				err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "192.0.2.1:5001"); return err })
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
				return startKernelPeer(t, ln.Accept)
			},
			args:     []string{"dial", "--tap", "tssigdial0", "--addr", "192.0.2.2/24", "192.0.2.1:5001"},
			underway: func(out *cliOutput, _ *kernelPeer) bool { return out.n.Load() >= underwayBytes },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ns *taptest.Namespace
			if tc.kernel {
				ns = taptest.NewNamespace(t)
				addKernelTAP(t, ns, tc.dev)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var cmd *exec.Cmd
			if ns != nil {
				// ip netns exec execs the command in place: the
				// signal below reaches tapstack itself.
				cmd = ns.Exec(ctx, os.Args[0], "-test.run=^$")
			} else {
				cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			}
			cmd.Env = append(os.Environ(), "TAPSTACK_CLI_ARGS="+strings.Join(tc.args, " "))
			stderr := &cliOutput{}
			cmd.Stderr = stderr
			// stdin open and silent until the end: dial sends nothing
			// and shuts down nothing of its own accord.
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			out := &cliOutput{}
			copied := make(chan struct{})
			go func() {
				defer close(copied)
				io.Copy(out, stdout)
			}()
			var peer *kernelPeer
			if tc.peer != nil {
				peer = tc.peer(t, ns)
			}
			underway := tc.underway
			if tc.banner != "" {
				underway = func(*cliOutput, *kernelPeer) bool { return stderr.head() == tc.banner }
			}
			// Wait for the transfer to be under way, boundedly.
			for i := 0; !underway(out, peer); i++ {
				if i == 600 {
					cmd.Process.Kill()
					<-copied
					cmd.Wait()
					var got int64
					if peer != nil {
						got = peer.received.Load()
					}
					t.Fatalf("%s: the transfer did not get under way in 30 s; stdout %q, stderr %q, the kernel received %d bytes", tc.name, out.head(), stderr.head(), got)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if ns != nil && !tc.idle {
				// The check after the signal can fail: now the kernel's
				// end is ESTABLISHED.
				if est := established(t, ns); est == "" {
					t.Fatalf("ss lists no ESTABLISHED connection in the middle of the transfer")
				}
			}

			sig := tc.sig
			if sig == 0 {
				sig = syscall.SIGINT
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				<-copied // Wait closes stdout: read it to its end first
				done <- cmd.Wait()
			}()
			select {
			case err := <-done:
				if code := cmd.ProcessState.ExitCode(); code != 0 || stderr.head() != tc.banner {
					t.Errorf("after %v: %v, exit %d, stderr %q; want exit 0 and nothing on stderr but %q", sig, err, code, stderr.head(), tc.banner)
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("%s did not stop within 20 s of %v", tc.name, sig)
			}
			if !strings.Contains(out.head(), tc.summary) {
				t.Errorf("after %v, stdout lacks %q:\n%s", sig, tc.summary, out.head())
			}
			if peer == nil {
				return
			}
			select {
			case end := <-peer.end:
				t.Logf("the kernel's end read %s", end)
				if end != "FIN" && end != "RST" {
					t.Errorf("the kernel's read ended with %s; want tapstack's FIN (EOF) or RST (ECONNRESET)", end)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("the kernel saw neither FIN nor RST within 10 s of tapstack's exit")
			}
			if est := established(t, ns); est != "" {
				t.Errorf("after tapstack exited, ss -tn in the namespace lists ESTABLISHED connections:\n%s", est)
			}
		})
	}
}

// cliOutput takes a command's stdout: it keeps the first 64 KiB and counts
// the rest.
type cliOutput struct {
	n    atomic.Int64
	mu   sync.Mutex
	kept []byte
}

func (o *cliOutput) Write(p []byte) (int, error) {
	o.n.Add(int64(len(p)))
	o.mu.Lock()
	defer o.mu.Unlock()
	if room := 64<<10 - len(o.kept); room > 0 {
		o.kept = append(o.kept, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// head returns the kept output.
func (o *cliOutput) head() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.kept)
}

// kernelPeer is the kernel's end of a connection with tapstack: it
// streams to tapstack and reads what comes back, until either fails.
type kernelPeer struct {
	received atomic.Int64
	// end receives how the kernel's read ended: "FIN" (EOF), "RST"
	// (ECONNRESET) or the error.
	end chan string
}

// startKernelPeer gets a connection from connect (in the background: a
// dial or an accept) and starts streaming on it. The connection is closed
// when the test ends, not before: until then its state is what tapstack
// made of it.
func startKernelPeer(t *testing.T, connect func() (net.Conn, error)) *kernelPeer {
	p := &kernelPeer{end: make(chan string, 1)}
	var (
		mu     sync.Mutex
		c      net.Conn
		closed bool
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		if c != nil {
			c.Close()
		}
	})
	go func() {
		conn, err := connect()
		if err != nil {
			p.end <- "no connection: " + err.Error()
			return
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			conn.Close()
			return
		}
		c = conn
		mu.Unlock()
		c.SetDeadline(time.Now().Add(time.Minute))
		go func() {
			// At most 16 GiB: far more than the test waits for.
			buf := bytes.Repeat([]byte("tapstack"), 4096)
			for range 1 << 19 {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 64<<10)
		// Bounded by the deadline above, and by the number of reads.
		for range 1 << 24 {
			n, err := c.Read(buf)
			p.received.Add(int64(n))
			switch {
			case err == nil:
				continue
			case errors.Is(err, io.EOF):
				p.end <- "FIN"
			case errors.Is(err, syscall.ECONNRESET):
				p.end <- "RST"
			default:
				p.end <- err.Error()
			}
			return
		}
		p.end <- "no end after 16M reads"
	}()
	return p
}

// addKernelTAP makes TAP device dev in ns for a tapstack command to open,
// with the kernel's side at 192.0.2.1/24 and up; flags go to "ip tuntap
// add" (multi_queue).
func addKernelTAP(t *testing.T, ns *taptest.Namespace, dev string, flags ...string) {
	t.Helper()
	ns.Run(t, append([]string{"ip", "tuntap", "add", "dev", dev, "mode", "tap"}, flags...)...)
	ns.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", dev)
	ns.Run(t, "ip", "link", "set", "dev", dev, "up")
}

// established returns ss's list of the ESTABLISHED TCP connections in ns,
// "" if there are none.
func established(t *testing.T, ns *taptest.Namespace) string {
	t.Helper()
	return strings.TrimSpace(ns.Run(t, "ss", "-Htn", "state", "established"))
}
