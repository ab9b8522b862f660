package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// pipeAgent is serveAgent on a tapstack stack at 192.0.2.2, cabled by
// tap.Pipe to gVisor's TCP at 192.0.2.1.
type pipeAgent struct {
	*agentClient
	s     *stack.Stack // the agent's
	peer  *gvpeer.Peer
	stdin io.Closer
	done  chan error // serveAgent's result
	log   *syncWriter
}

func newPipeAgent(t *testing.T, opts tcp.Options) *pipeAgent {
	t.Helper()
	if opts.TimeWait == 0 {
		opts.TimeWait = 100 * time.Millisecond
	}
	s, peer := pipeStacks(t, opts)
	// Every wait in these tests is bounded; should something in the stacks
	// hang all the same, show where at once rather than at the end of
	// go test's 10 minutes.
	watchdog := time.AfterFunc(30*time.Second, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s: still running after 30s; goroutines:\n%s\n", t.Name(), buf)
		panic(t.Name() + ": hung")
	})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &pipeAgent{s: s, peer: peer, stdin: inW, done: make(chan error, 1), log: &syncWriter{w: &strings.Builder{}}}
	go func() {
		_, err := serveAgent(context.Background(), s, inR, outW, p.log)
		p.done <- err
		outW.Close()
	}()
	p.agentClient = newAgentClient(t, inW, outR)
	t.Cleanup(func() {
		defer watchdog.Stop()
		p.stop(t)
		<-p.agentClient.done
		if t.Failed() {
			t.Logf("agent stderr:\n%s", p.log.w)
		}
	})
	return p
}

// pipeStacks is a tapstack stack at 192.0.2.2 cabled by tap.Pipe to
// gVisor's TCP at 192.0.2.1, both closed when the test ends.
func pipeStacks(t *testing.T, opts tcp.Options) (*stack.Stack, *gvpeer.Peer) {
	t.Helper()
	a, b := tap.Pipe()
	s := stack.New(stack.Options{TCP: opts})
	t.Cleanup(s.Close)
	if _, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	peer, err := gvpeer.New(b, netip.MustParsePrefix("192.0.2.1/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peer.Close)
	return s, peer
}

// stop ends stdin and waits for serveAgent to return; the contract gives
// it 2 s.
func (p *pipeAgent) stop(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("serveAgent: %v", err)
		}
		p.done <- nil // for a later stop
	case <-time.After(2 * time.Second):
		t.Errorf("serveAgent did not return within 2s of the end of stdin")
	}
}

// acceptFromPeer has the gVisor peer connect to the agent's listener and
// returns both ends.
func (p *pipeAgent) acceptFromPeer(t *testing.T, listener int64, port uint16) (int64, net.Conn) {
	t.Helper()
	acc := p.send(map[string]any{"op": "accept", "listener": listener, "timeout_ms": 5000})
	pc := p.peerDial(t, port)
	m := p.wait(acc, 8*time.Second)
	if m["ok"] != true {
		t.Fatalf("accept: %v", m)
	}
	if m["local"] != "192.0.2.2:"+strconv.Itoa(int(port)) || m["remote"] != pc.LocalAddr().String() {
		t.Errorf("accept: %v; want local 192.0.2.2:%d, remote %v", m, port, pc.LocalAddr())
	}
	return id(m, "conn"), pc
}

// peerDial has the gVisor peer connect to the agent at 192.0.2.2:port and
// returns the peer's end once the peer has completed its handshake.
func (p *pipeAgent) peerDial(t *testing.T, port uint16) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc, err := gonet.DialContextTCP(ctx, p.peer.S, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("peer dial: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// waitAcceptQueue waits until the agent's listener on port has n
// connections in its accept queue: their handshakes are complete on the
// agent's side too.
func (p *pipeAgent) waitAcceptQueue(t *testing.T, port uint16, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range p.s.TCP().Listeners() {
			if l.Addr().Port() == port && l.Queues().AcceptQueueLen >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener on port %d: fewer than %d connections in its accept queue after 5s", port, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func readFull(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return string(b)
}

func readEOF(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read: %d, %v; want EOF", n, err)
	}
}

func TestAgentRequests(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	m := p.ok(map[string]any{"op": "hello", "version": 1})
	if m["name"] != "tapstack" || m["version"] != 1.0 || strings.Join(toStrings(m["caps"]), ",") != "arp,icmp,tcp" {
		t.Errorf("hello: %v", m)
	}
	p.fail(map[string]any{"op": "hello", "version": 2}, "EINVAL")
	p.fail(map[string]any{"op": "hello"}, "EINVAL")

	// Malformed lines: no id can be read, so the reply has id 0.
	for _, line := range []string{`not json`, `{"id": 3, "op": "state"`, `[1,2]`, `null`, `{"op":"hello","version":1}`, `{"id":-4,"op":"hello"}`, `{"id":"x","op":"hello"}`} {
		if m := p.raw(line); m["ok"] != false || m["error"] != "EINVAL" || m["id"] != 0.0 {
			t.Errorf("%s: %v, want EINVAL with id 0", line, m)
		}
	}
	p.fail(map[string]any{"op": "frobnicate"}, "ENOTSUP")
	p.fail(map[string]any{"version": 1}, "EINVAL") // no op
	p.fail(map[string]any{"op": 7}, "EINVAL")

	// Listen: fields checked, then the port taken once only.
	p.fail(map[string]any{"op": "listen", "backlog": 1}, "EINVAL")
	p.fail(map[string]any{"op": "listen", "port": 0, "backlog": 1}, "EINVAL")
	p.fail(map[string]any{"op": "listen", "port": 70000, "backlog": 1}, "EINVAL")
	p.fail(map[string]any{"op": "listen", "port": 9001, "backlog": -1}, "EINVAL")
	p.fail(map[string]any{"op": "listen", "port": "9001", "backlog": 1}, "EINVAL")
	m = p.ok(map[string]any{"op": "listen", "port": 9001, "backlog": 4})
	ln := id(m, "listener")
	if ln < 1 || m["local"] != "0.0.0.0:9001" {
		t.Errorf("listen: %v", m)
	}
	p.fail(map[string]any{"op": "listen", "port": 9001, "backlog": 4}, "EADDRINUSE")
	if s := p.state("listener", ln); s != "LISTEN" {
		t.Errorf("listener state %s", s)
	}

	// Accept: a timeout leaves the listener usable.
	p.fail(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 30}, "EAGAIN")
	p.fail(map[string]any{"op": "accept", "listener": ln}, "EINVAL")
	p.fail(map[string]any{"op": "accept", "listener": ln, "timeout_ms": -1}, "EINVAL")
	p.fail(map[string]any{"op": "accept", "listener": 999, "timeout_ms": 30}, "EBADF")
	c, pc := p.acceptFromPeer(t, ln, 9001)
	if c == ln {
		t.Errorf("conn id %d reuses the listener's", c)
	}
	p.fail(map[string]any{"op": "accept", "listener": c, "timeout_ms": 30}, "EBADF") // a conn is no listener

	// Read: a timeout leaves the connection usable.
	p.fail(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 30}, "EAGAIN")
	p.fail(map[string]any{"op": "read", "conn": c, "max": 0, "timeout_ms": 30}, "EINVAL")
	p.fail(map[string]any{"op": "read", "conn": 999, "max": 10, "timeout_ms": 30}, "EBADF")
	if s := p.state("conn", c); s != "ESTABLISHED" {
		t.Errorf("state %s", s)
	}

	// A pending read does not hold up later requests.
	rd := p.send(map[string]any{"op": "read", "conn": c, "max": 100, "timeout_ms": 5000})
	if s := p.state("conn", c); s != "ESTABLISHED" {
		t.Errorf("state during read: %s", s)
	}
	p.ok(map[string]any{"op": "set_nodelay", "conn": c, "on": true})
	if !p.pending(rd) {
		t.Errorf("read answered before the peer sent anything")
	}
	if _, err := pc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := p.wait(rd, 8*time.Second); m["ok"] != true || m["data_b64"] != b64("hello") {
		t.Errorf("read: %v", m)
	}
	// timeout_ms 0 still takes what is there.
	if _, err := pc.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := p.call(map[string]any{"op": "read", "conn": c, "max": 1, "timeout_ms": 0})
		if m["ok"] == true {
			if m["data_b64"] != b64("x") {
				t.Errorf("read: %v", m)
			}
			break
		}
		if m["error"] != "EAGAIN" || time.Now().After(deadline) {
			t.Fatalf("read with timeout 0: %v", m)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Write.
	p.fail(map[string]any{"op": "write", "conn": c, "data_b64": "!!not base64", "timeout_ms": 1000}, "EINVAL")
	p.fail(map[string]any{"op": "write", "conn": c, "timeout_ms": 1000}, "EINVAL")
	p.fail(map[string]any{"op": "write", "conn": 999, "data_b64": b64("x"), "timeout_ms": 1000}, "EBADF")
	if m := p.ok(map[string]any{"op": "write", "conn": c, "data_b64": b64("world"), "timeout_ms": 1000}); m["n"] != 5.0 {
		t.Errorf("write: %v", m)
	}
	if got := readFull(t, pc, 5); got != "world" {
		t.Errorf("peer read %q", got)
	}
	p.fail(map[string]any{"op": "set_nodelay", "conn": c}, "EINVAL")
	p.fail(map[string]any{"op": "set_nodelay", "conn": c, "on": "yes"}, "EINVAL")

	// The peer half-closes: eof, CLOSE-WAIT; then our FIN: LAST-ACK, CLOSED.
	if err := pc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if m := p.ok(map[string]any{"op": "read", "conn": c, "max": 100, "timeout_ms": 5000}); m["eof"] != true {
		t.Errorf("read after the peer's FIN: %v", m)
	}
	if s := p.state("conn", c); s != "CLOSE-WAIT" {
		t.Errorf("state after the peer's FIN: %s", s)
	}
	p.ok(map[string]any{"op": "shutdown_write", "conn": c})
	p.fail(map[string]any{"op": "write", "conn": c, "data_b64": b64("late"), "timeout_ms": 1000}, "EPIPE")
	readEOF(t, pc)
	p.waitState("conn", c, 5*time.Second, "CLOSED", "LAST-ACK")
	// EPIPE: the connection is closed, its id is not; EBADF once it is.
	p.fail(map[string]any{"op": "write", "conn": c, "data_b64": b64("late"), "timeout_ms": 1000}, "EPIPE")
	p.ok(map[string]any{"op": "close", "conn": c})
	p.fail(map[string]any{"op": "write", "conn": c, "data_b64": b64("late"), "timeout_ms": 1000}, "EBADF")
	p.fail(map[string]any{"op": "close", "conn": c}, "EBADF")
	p.fail(map[string]any{"op": "read", "conn": c, "max": 1, "timeout_ms": 10}, "EBADF")
	p.fail(map[string]any{"op": "shutdown_write", "conn": c}, "EBADF")
	if s := p.state("conn", c); s != "CLOSED" {
		t.Errorf("state after close: %s", s)
	}

	// state and close need exactly one known id.
	p.fail(map[string]any{"op": "state", "conn": 999}, "EBADF")
	p.fail(map[string]any{"op": "state", "listener": 999}, "EBADF")
	p.fail(map[string]any{"op": "state"}, "EINVAL")
	p.fail(map[string]any{"op": "state", "conn": c, "listener": ln}, "EINVAL")
	p.fail(map[string]any{"op": "close", "listener": 999}, "EBADF")

	p.ok(map[string]any{"op": "close", "listener": ln})
	if s := p.state("listener", ln); s != "CLOSED" {
		t.Errorf("listener state after close: %s", s)
	}
	p.fail(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 10}, "EBADF")
	// The port is free again; ids are never reused.
	m = p.ok(map[string]any{"op": "listen", "port": 9001, "backlog": 0})
	if n := id(m, "listener"); n <= c {
		t.Errorf("new listener id %d, want more than %d", n, c)
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestAgentActiveClose dials the peer, closes first and follows FIN-WAIT-2
// and TIME-WAIT to CLOSED.
func TestAgentActiveClose(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	p.ok(map[string]any{"op": "hello", "version": 1})
	pl, err := p.peer.Listen(9002)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.1", "timeout_ms": 1000}, "EINVAL")
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.1:9002"}, "EINVAL")
	m := p.ok(map[string]any{"op": "dial", "addr": "192.0.2.1:9002", "timeout_ms": 5000})
	c := id(m, "conn")
	if m["remote"] != "192.0.2.1:9002" || !strings.HasPrefix(m["local"].(string), "192.0.2.2:") {
		t.Errorf("dial: %v", m)
	}
	pc, err := pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	p.ok(map[string]any{"op": "write", "conn": c, "data_b64": b64("ping"), "timeout_ms": 1000})
	if got := readFull(t, pc, 4); got != "ping" {
		t.Errorf("peer read %q", got)
	}
	p.ok(map[string]any{"op": "close", "conn": c})
	p.waitState("conn", c, 5*time.Second, "FIN-WAIT-2", "FIN-WAIT-1")
	readEOF(t, pc)
	pc.Close()
	p.waitState("conn", c, 5*time.Second, "TIME-WAIT", "FIN-WAIT-2")
	p.waitState("conn", c, 5*time.Second, "CLOSED", "TIME-WAIT")

	// Refused, and timed out (nobody answers ARP for 192.0.2.3).
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.1:9003", "timeout_ms": 5000}, "ECONNREFUSED")
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.3:9", "timeout_ms": 100}, "ETIMEDOUT")
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.3:9", "timeout_ms": 0}, "ETIMEDOUT")
}

// TestAgentWriteTimeout fills the send buffer of a connection whose peer
// does not read: write answers EAGAIN with the bytes taken.
func TestAgentWriteTimeout(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{SendBufferSize: 64 << 10})
	pl, err := p.peer.Listen(9004)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	c := id(p.ok(map[string]any{"op": "dial", "addr": "192.0.2.1:9004", "timeout_ms": 5000}), "conn")
	pc, err := pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const size = 3 << 20 // more than the peer's 1 MiB window and our 64 KiB send buffer
	data := base64.StdEncoding.EncodeToString(make([]byte, size))
	m := p.fail(map[string]any{"op": "write", "conn": c, "data_b64": data, "timeout_ms": 200}, "EAGAIN")
	n, ok := m["n"].(float64)
	if !ok || n <= 0 || n >= size {
		t.Errorf("write: n = %v, want 0 < n < %d", m["n"], size)
	}
	if s := p.state("conn", c); s != "ESTABLISHED" {
		t.Errorf("state after the write timeout: %s", s)
	}
}

// TestAgentCloseDuringRead closes a connection under a pending read, and
// ends stdin with connections open.
func TestAgentCloseDuringRead(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9005, "backlog": 1}), "listener")
	c, _ := p.acceptFromPeer(t, ln, 9005)
	rd := p.send(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 5000})
	p.ok(map[string]any{"op": "state", "conn": c})
	p.ok(map[string]any{"op": "close", "conn": c})
	if m := p.wait(rd, 3*time.Second); m["error"] != "EBADF" {
		t.Errorf("read pending at close: %v", m)
	}

	// Another connection, left open with a read pending, and a dial
	// pending: the end of stdin closes the connection (the peer reads EOF)
	// and answers every request.
	c2, pc2 := p.acceptFromPeer(t, ln, 9005)
	rd2 := p.send(map[string]any{"op": "read", "conn": c2, "max": 10, "timeout_ms": 10000})
	dl := p.send(map[string]any{"op": "dial", "addr": "192.0.2.3:9", "timeout_ms": 10000})
	p.ok(map[string]any{"op": "state", "conn": c2})
	start := time.Now()
	p.stop(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("serveAgent took %v after the end of stdin", d)
	}
	readEOF(t, pc2)
	if m := p.wait(rd2, time.Second); m["ok"] != false {
		t.Errorf("read pending at shutdown: %v", m)
	}
	if m := p.wait(dl, time.Second); m["ok"] != false {
		t.Errorf("dial pending at shutdown: %v", m)
	}
}

// TestAgentAcceptTimeoutZeroTakesQueuedConn: accept with timeout_ms 0 is a
// poll, and a connection waiting in the accept queue is something to
// report (AGENT.md, Timeouts: EAGAIN only "when it expires with nothing to
// report"). Listener.AcceptTCP fails on a deadline already passed even
// with a connection queued, as package net's Accept does, so the agent
// gives it agentMinWait, as it gives read and write.
func TestAgentAcceptTimeoutZeroTakesQueuedConn(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9011, "backlog": 4}), "listener")
	p.fail(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 0}, "EAGAIN") // nothing yet
	pc := p.peerDial(t, 9011)
	p.waitAcceptQueue(t, 9011, 1)
	m := p.call(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 0})
	if m["ok"] != true || m["remote"] != pc.LocalAddr().String() {
		t.Errorf("accept with timeout_ms 0 and a connection in the accept queue: %v; want ok, remote %v", m, pc.LocalAddr())
	}
}

// TestAgentExitDeadlineWithSilentPeer: at the end of stdin the agent
// closes everything and "exits within 2 s" (AGENT.md, Process). A
// raw-frame testbench answers only what its test tells it to, so here the
// peer goes silent and never acknowledges the FIN: the agent's wait for
// it and the stack's shutdown must share one deadline from the end of
// stdin (agentExit), not take one second each. The test runs what
// runAgent runs, serveAgent and then the stack's shutdown with what
// remains, and checks that each step is given that deadline and keeps
// to it; the only wall-clock bound is the contract's own 2 s.
func TestAgentExitDeadlineWithSilentPeer(t *testing.T) {
	if agentExit >= 2*time.Second {
		t.Fatalf("agentExit %v leaves nothing of the contract's 2 s for closing the device", agentExit)
	}
	a, b := tap.Pipe()
	s := stack.New(stack.Options{TCP: tcp.Options{TimeWait: 100 * time.Millisecond}})
	defer s.Close()
	if _, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	peer, err := gvpeer.New(b, netip.MustParsePrefix("192.0.2.1/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	type times struct{ stopBy, served, stopped time.Time }
	done := make(chan times, 1)
	go func() {
		var tm times
		var err error
		tm.stopBy, err = serveAgent(context.Background(), s, inR, outW, io.Discard)
		if err != nil {
			t.Errorf("serveAgent: %v", err)
		}
		tm.served = time.Now()
		stopStackWithin(s, time.Until(tm.stopBy)) // as runAgent's closeStack
		tm.stopped = time.Now()
		done <- tm
		outW.Close()
	}()
	p := &pipeAgent{agentClient: newAgentClient(t, inW, outR), s: s, peer: peer}
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9012, "backlog": 1}), "listener")
	c, _ := p.acceptFromPeer(t, ln, 9012)
	if err := peer.S.DisableNIC(1); err != nil { // the testbench goes quiet
		t.Fatalf("DisableNIC: %v", err)
	}
	eof := time.Now()
	inW.Close()
	var tm times
	select {
	case tm = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("serveAgent and the stack's shutdown have not returned 10 s after the end of stdin")
	}
	<-p.agentClient.done
	// The deadline is agentExit from the end of stdin, which came after
	// eof and before serveAgent returned.
	if tm.stopBy.Before(eof.Add(agentExit)) || tm.stopBy.After(tm.served.Add(agentExit)) {
		t.Errorf("deadline %v after the end of stdin, want agentExit = %v", tm.stopBy.Sub(eof), agentExit)
	}
	// Nobody acknowledges the FIN, so each step waits for it until the
	// deadline, and not past it: the contract's 2 s hold.
	if tm.served.Before(tm.stopBy) {
		t.Errorf("serveAgent returned %v before its deadline, with conn %d unacknowledged", tm.stopBy.Sub(tm.served), c)
	}
	if d := tm.stopped.Sub(eof); d > 2*time.Second {
		t.Errorf("serveAgent and the stack's shutdown took %v after the end of stdin; AGENT.md: the agent exits within 2 s (deadline %v; serveAgent returned at %v)",
			d.Round(time.Millisecond), agentExit, tm.served.Sub(eof).Round(time.Millisecond))
	}
}

// paddedHello is a hello request line of exactly n bytes, the newline not
// counted: an unknown field, ignored, makes up the length.
func paddedHello(id int64, n int) string {
	head := fmt.Sprintf(`{"id":%d,"op":"hello","version":1,"pad":"`, id)
	return head + strings.Repeat("x", n-len(head)-2) + `"}`
}

// TestAgentLineLimit: a request line of agentMaxLine bytes is served, a
// longer one is answered EINVAL with id 0, as a line that is not valid
// JSON, and the line after it is served.
func TestAgentLineLimit(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	if m := p.wait(p.sendLine(paddedHello(1, agentMaxLine)), 10*time.Second); m["ok"] != true {
		t.Errorf("hello of %d bytes: %v, want ok", agentMaxLine, m)
	}
	if m := p.raw(paddedHello(2, agentMaxLine+1)); m["ok"] != false || m["error"] != "EINVAL" || m["id"] != 0.0 {
		t.Errorf("hello of %d bytes: %v, want EINVAL with id 0", agentMaxLine+1, m)
	}
	p.ok(map[string]any{"op": "hello", "version": 1})
}

// sendLine writes a request line as is; its id must be one send does not
// hand out (send counts from 1, so a test gives the first ones by hand
// only before any send).
func (c *agentClient) sendLine(line string) int64 {
	var req struct{ ID int64 }
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		c.t.Fatalf("sendLine %.40q: %v", line, err)
	}
	c.mu.Lock()
	c.lastID = max(c.lastID, req.ID)
	c.mu.Unlock()
	c.writeLine([]byte(line))
	return req.ID
}

// endlessLine is stdin holding one line that does not end for a while:
// limit bytes of 'x' (counted in fed), then, once release is closed, a
// newline and rest, then the end.
type endlessLine struct {
	limit   int64
	fed     atomic.Int64
	release chan struct{}
	rest    []byte
}

func (r *endlessLine) Read(b []byte) (int, error) {
	if n := r.fed.Load(); n < r.limit {
		k := min(int64(len(b)), r.limit-n)
		for i := range b[:k] {
			b[i] = 'x'
		}
		r.fed.Add(k)
		return int(k), nil
	}
	<-r.release
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestAgentLongLineNotKept: a line longer than agentMaxLine is dropped as
// it is read, not kept until its newline, however long it grows (the
// project's rule: hostile input gets an error, never unbounded memory).
// It is answered once it ends, and the next line is served.
func TestAgentLongLineNotKept(t *testing.T) {
	s := agentChannelStack(t)
	const feed = 3 * agentMaxLine
	in := &endlessLine{limit: feed, release: make(chan struct{}), rest: []byte("\n" + `{"id":1,"op":"hello","version":1}` + "\n")}
	out := &replyCounter{replied: make(chan struct{}, 1)}
	before := liveHeap()
	done := make(chan error, 1)
	go func() {
		_, err := serveAgent(context.Background(), s, in, out, io.Discard)
		done <- err
	}()
	for deadline := time.Now().Add(20 * time.Second); in.fed.Load() < feed; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(in.release)
			t.Fatalf("the agent read %d of the line's %d bytes in 20 s", in.fed.Load(), feed)
		}
	}
	grown := int64(liveHeap()) - int64(before)
	close(in.release)
	if err := <-done; err != nil {
		t.Errorf("serveAgent: %v", err)
	}
	if grown > agentMaxLine {
		t.Errorf("after %d MiB of one line without a newline the agent holds %d MiB more heap; want at most the line limit, %d MiB", feed>>20, grown>>20, agentMaxLine>>20)
	}
	replies := strings.Split(strings.TrimSpace(string(out.bytes())), "\n")
	if len(replies) != 2 || !strings.Contains(replies[0], `"id":0,"ok":false,"error":"EINVAL"`) || !strings.Contains(replies[1], `"id":1,"ok":true`) {
		t.Errorf("replies %.200q; want EINVAL with id 0 for the long line, then ok for hello", replies)
	}
}

// TestAgentPendingReadsHoldLittleMemory: a read waits with a buffer of
// agentReadWait, whatever its max, and takes a bigger one only for data
// that has come: a pending read with max 1 MiB used to hold 1 MiB for as
// long as it waited.
func TestAgentPendingReadsHoldLittleMemory(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	const conns = 16
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9013, "backlog": conns}), "listener")
	var cs []int64
	for range conns {
		c, _ := p.acceptFromPeer(t, ln, 9013)
		cs = append(cs, c)
	}
	before := liveHeap()
	var reads []int64
	for _, c := range cs {
		reads = append(reads, p.send(map[string]any{"op": "read", "conn": c, "max": agentMaxRead, "timeout_ms": 20000}))
	}
	for _, c := range cs {
		p.ok(map[string]any{"op": "state", "conn": c}) // every read is past validation
	}
	time.Sleep(200 * time.Millisecond) // and waiting in Read
	grown := int64(liveHeap()) - int64(before)
	for _, c := range cs {
		p.ok(map[string]any{"op": "close", "conn": c})
	}
	for _, rd := range reads {
		p.wait(rd, 3*time.Second)
	}
	if grown > conns*agentMaxRead/4 {
		t.Errorf("%d pending reads (max %d, no data) hold %d KiB of heap; want far less than %d KiB", conns, agentMaxRead, grown>>10, conns*agentMaxRead>>10)
	}
}

// TestAgentReadTakesWhatIsQueued: a read that finds more than
// agentReadWait queued returns it all, up to max, in one reply.
func TestAgentReadTakesWhatIsQueued(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9014, "backlog": 1}), "listener")
	c, pc := p.acceptFromPeer(t, ln, 9014)
	const size = 64 << 10
	data := strings.Repeat("0123456789abcdef", size/16)
	if _, err := pc.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	p.waitRecvQueued(t, 9014, size)
	m := p.ok(map[string]any{"op": "read", "conn": c, "max": size - 1, "timeout_ms": 1000})
	if got, _ := base64.StdEncoding.DecodeString(m["data_b64"].(string)); string(got) != data[:size-1] {
		t.Errorf("read with max %d and %d bytes queued: %d bytes, want the first %d", size-1, size, len(got), size-1)
	}
	if got := p.readData(c, 1); got != data[size-1:] {
		t.Errorf("read the last byte: %q", got)
	}
}

// waitRecvQueued waits until the agent's connection on port has n bytes
// in its receive buffer.
func (p *pipeAgent) waitRecvQueued(t *testing.T, port uint16, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, ep := range p.s.TCP().Connections() {
			if ep.ID().Local.Port() == port && ep.Info().RecvQueued >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection on port %d: fewer than %d bytes received after 5s", port, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAgentOneReadAtATime: a second read on a conn while one is pending
// is answered EINVAL at once (AGENT.md, Concurrency: the harness sends
// only close or state then), and the first is served as if it had not
// come.
func TestAgentOneReadAtATime(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9015, "backlog": 1}), "listener")
	c, pc := p.acceptFromPeer(t, ln, 9015)
	rd := p.send(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 5000})
	p.fail(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 100}, "EINVAL")
	if !p.pending(rd) {
		t.Errorf("the first read was answered by the second's: %v", p.wait(rd, time.Second))
	}
	if _, err := pc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := p.wait(rd, 8*time.Second); m["data_b64"] != b64("hello") {
		t.Errorf("first read: %v", m)
	}
	// Answered, it no longer counts: the next read is served.
	p.fail(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 0}, "EAGAIN")
}

// TestAgentSecondAcceptKeepsFirstTimeout: an accept's timeout_ms is the
// listener's one deadline, so a second accept pending at the same time
// used to move the first one's: its timeout_ms 100 ended an accept of
// 5000 at 100 ms. The second is answered EINVAL at once (AGENT.md,
// Concurrency: one request at a time on an object), and the first waits
// its own time and takes the connection.
func TestAgentSecondAcceptKeepsFirstTimeout(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9016, "backlog": 4}), "listener")
	first := p.send(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 5000})
	p.fail(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 100}, "EINVAL")
	time.Sleep(300 * time.Millisecond)
	if !p.pending(first) {
		t.Fatalf("accept with timeout_ms 5000 answered within 300 ms, before a connection came: %v", p.wait(first, time.Second))
	}
	pc := p.peerDial(t, 9016)
	if m := p.wait(first, 8*time.Second); m["ok"] != true || m["remote"] != pc.LocalAddr().String() {
		t.Errorf("accept: %v, want the peer's connection", m)
	}
}

// TestAgentSecondReadKeepsFirstTimeout: the same for a conn's read
// deadline: a second read with timeout_ms 6000 used to move the deadline
// of a first with 200, which was answered only after the harness had
// given up on it (timeout_ms + 3 s).
func TestAgentSecondReadKeepsFirstTimeout(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9017, "backlog": 1}), "listener")
	c, _ := p.acceptFromPeer(t, ln, 9017)
	first := p.send(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 200})
	second := p.send(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 6000})
	select {
	case m := <-p.slot(first):
		if m["error"] != "EAGAIN" {
			t.Errorf("first read: %v, want EAGAIN", m)
		}
	case <-time.After(200*time.Millisecond + 3*time.Second):
		t.Errorf("read with timeout_ms 200: no reply within timeout_ms + 3 s (the later read's timeout_ms 6000 moved its deadline)")
	}
	if m := p.wait(second, 9*time.Second); m["error"] != "EINVAL" && m["error"] != "EAGAIN" {
		t.Errorf("second read: %v", m)
	}
}

// TestAgentOneWriteAtATime: a second write on a conn while one is pending
// is answered EINVAL at once, rather than waiting behind the first and
// moving its deadline (the conn's one write deadline); a read may be
// pending at the same time.
func TestAgentOneWriteAtATime(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{SendBufferSize: 64 << 10})
	pl, err := p.peer.Listen(9018)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	c := id(p.ok(map[string]any{"op": "dial", "addr": "192.0.2.1:9018", "timeout_ms": 5000}), "conn")
	pc, err := pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// The peer does not read: 3 MiB fill its window and our send buffer.
	first := p.send(map[string]any{"op": "write", "conn": c, "data_b64": base64.StdEncoding.EncodeToString(make([]byte, 3<<20)), "timeout_ms": 5000})
	rd := p.send(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 5000})
	p.fail(map[string]any{"op": "write", "conn": c, "data_b64": b64("x"), "timeout_ms": 100}, "EINVAL")
	time.Sleep(300 * time.Millisecond)
	if !p.pending(first) || !p.pending(rd) {
		t.Fatalf("a write with timeout_ms 5000 and a read, answered within 300 ms: %v, %v", p.wait(first, time.Second), p.wait(rd, time.Second))
	}
	p.ok(map[string]any{"op": "close", "conn": c})
	p.wait(first, 3*time.Second)
	p.wait(rd, 3*time.Second)
}

// TestAgentCloseResetsUnacceptedAndUnread: closing a listener resets the
// connections nobody accepted, closing a conn with unread data resets it
// (AGENT.md, close); an empty write answers n 0, and a write on a closed
// id EBADF ("an id already closed"; EPIPE is for a connection shut down
// for writing, or closed with its id still open: TestAgentRequests).
func TestAgentCloseResetsUnacceptedAndUnread(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9019, "backlog": 4}), "listener")
	pc := p.peerDial(t, 9019)
	p.waitAcceptQueue(t, 9019, 1)
	p.ok(map[string]any{"op": "close", "listener": ln})
	pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := pc.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) && !strings.Contains(strings.ToLower(fmt.Sprint(err)), "reset") {
		t.Errorf("un-accepted connection after the listener's close: peer read %v, want a reset", err)
	}

	ln2 := id(p.ok(map[string]any{"op": "listen", "port": 9020, "backlog": 4}), "listener")
	c, pc2 := p.acceptFromPeer(t, ln2, 9020)
	if m := p.ok(map[string]any{"op": "write", "conn": c, "data_b64": "", "timeout_ms": 100}); m["n"] != 0.0 {
		t.Errorf("empty write: %v, want n 0", m)
	}
	if _, err := pc2.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	p.waitRecvQueued(t, 9020, len("unread"))
	p.ok(map[string]any{"op": "close", "conn": c})
	pc2.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := pc2.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Errorf("close with unread data: peer read %v, want a reset", err)
	}
	p.fail(map[string]any{"op": "write", "conn": c, "data_b64": "eA==", "timeout_ms": 100}, "EBADF")
}

// TestAgentDialLimit: at most agentMaxDials dials are pending at once, as
// every other blocking request is bounded (one accept per listener, one
// read and one write per conn); one more is answered EAGAIN at once, and
// the pending ones are served as if it had not come. Once one is
// answered, the next dial is served. Before, every dial held a goroutine
// and a connection in SYN-SENT for its timeout_ms, without a bound.
func TestAgentDialLimit(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	p.ok(map[string]any{"op": "hello", "version": 1})
	// Nobody answers ARP for 192.0.2.3: each dial waits for its timeout.
	dial := func(ms int) int64 {
		return p.send(map[string]any{"op": "dial", "addr": "192.0.2.3:9", "timeout_ms": ms})
	}
	first := dial(2000)
	for range agentMaxDials - 1 {
		dial(20000)
	}
	over := dial(20000)
	if m := p.wait(over, time.Second); m["ok"] != false || m["error"] != "EAGAIN" {
		t.Fatalf("dial %d while %d are pending: %v, want EAGAIN at once", agentMaxDials+1, agentMaxDials, m)
	}
	if !p.pending(first) {
		t.Fatalf("the first dial was answered early: %v", p.wait(first, time.Second))
	}
	if m := p.wait(first, 5*time.Second); m["error"] != "ETIMEDOUT" {
		t.Fatalf("first dial: %v, want ETIMEDOUT", m)
	}
	next := dial(20000)
	p.ok(map[string]any{"op": "hello", "version": 1}) // answered after a refusal would be
	if !p.pending(next) {
		t.Errorf("a dial once one of %d was answered: %v, want it pending", agentMaxDials, p.wait(next, time.Second))
	}
}

// TestAgentDuplicateKeys: a request that names a field twice is
// malformed (EINVAL), not served with whichever value the decoder kept
// last: RFC 8259 4 leaves such an object's meaning to the parser ("names
// within an object SHOULD be unique"; I-JSON, RFC 7493 2.3, forbids
// them), so `{"op":"state","op":"close"}` or two conns in one close must
// not be guessed at. A duplicated id is no id: the reply has id 0.
// Only the request's own keys count; an ignored field's value may hold
// any object.
func TestAgentDuplicateKeys(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9021, "backlog": 4}), "listener")
	c1, _ := p.acceptFromPeer(t, ln, 9021)
	c2, _ := p.acceptFromPeer(t, ln, 9021)
	for _, tc := range []struct {
		line string
		id   int64
	}{
		{fmt.Sprintf(`{"id":1001,"op":"close","conn":%d,"conn":%d}`, c1, c2), 1001},
		{fmt.Sprintf(`{"id":1002,"op":"state","conn":%d,"op":"close"}`, c1), 1002},
		{`{"id":1003,"op":"hello","version":1,"version":1}`, 1003},
		{`{"id":1004,"op":"hello","version":1,"v\u0065rsion":2}`, 1004}, // the same name, escaped
		{`{"id":1005,"id":1006,"op":"hello","version":1}`, 0},
	} {
		p.writeLine([]byte(tc.line))
		if m := p.wait(tc.id, 3*time.Second); m["ok"] != false || m["error"] != "EINVAL" {
			t.Errorf("%s: %v, want EINVAL with id %d", tc.line, m, tc.id)
		}
	}
	for _, c := range []int64{c1, c2} {
		if s := p.state("conn", c); s != "ESTABLISHED" {
			t.Errorf("conn %d after requests with duplicate keys: %s, want ESTABLISHED (untouched)", c, s)
		}
	}
	p.writeLine([]byte(`{"id":1007,"op":"hello","version":1,"pad":{"a":1,"a":2},"list":[{"b":1,"b":1}]}`))
	if m := p.wait(1007, 3*time.Second); m["ok"] != true {
		t.Errorf("duplicate keys inside an ignored field: %v, want ok", m)
	}
}

// TestAgentExitWithStdoutUnread: "When stdin reaches EOF the agent closes
// every listener and connection ... and exits within 2 s" (AGENT.md,
// Process), also when the harness has stopped reading stdout, as one that
// ends a failed test by closing stdin and waiting for the exit does. Here
// stdout is a pipe (64 KiB) nobody reads, a read's reply of 512 KiB fills
// it, and a state request follows: the reply writer held stdout's lock in
// a Write that never returned, the state request waited for the lock, the
// end of stdin was never read, and the connection was never closed.
func TestAgentExitWithStdoutUnread(t *testing.T) {
	s, peer := pipeStacks(t, tcp.Options{TimeWait: 100 * time.Millisecond})
	inR, inW := io.Pipe()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	defer outW.Close()
	log := &syncWriter{w: &strings.Builder{}}
	served := make(chan time.Time, 1)
	go func() {
		if _, err := serveAgent(context.Background(), s, inR, outW, log); err != nil {
			t.Errorf("serveAgent: %v", err)
		}
		served <- time.Now()
	}()
	stdout := &gatedReader{r: outR, stop: make(chan struct{}), release: make(chan struct{})}
	p := &pipeAgent{agentClient: newAgentClient(t, inW, stdout), s: s, peer: peer}
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9022, "backlog": 1}), "listener")
	c, pc := p.acceptFromPeer(t, ln, 9022)
	const size = 512 << 10
	go pc.Write(make([]byte, size))
	p.waitRecvQueued(t, 9022, size)
	close(stdout.stop) // from here on nobody reads stdout
	rd := p.send(map[string]any{"op": "read", "conn": c, "max": size, "timeout_ms": 1000})
	time.Sleep(100 * time.Millisecond) // its reply fills the pipe
	st := p.send(map[string]any{"op": "state", "conn": c})
	eof := time.Now()
	inW.Close()
	select {
	case at := <-served:
		if d := at.Sub(eof); d > 2*time.Second {
			t.Errorf("serveAgent returned %v after the end of stdin, want within 2 s", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("serveAgent has not returned 3 s after the end of stdin, with stdout unread; stderr:\n%s", log.w)
	}
	readEOF(t, pc) // the connection was closed
	if !strings.Contains(fmt.Sprint(log.w), "2 replies") {
		t.Errorf("stderr %q: want the 2 replies not written counted", log.w)
	}
	// The harness reads again: the writer, left in its Write, finishes.
	close(stdout.release)
	p.wait(rd, 3*time.Second)
	p.wait(st, 3*time.Second)
}

// gatedReader reads r until stop is closed, then blocks until release is
// closed: a harness that stops reading the agent's stdout, and the end of
// the test that lets it go.
type gatedReader struct {
	r       io.Reader
	stop    chan struct{}
	release chan struct{}
}

func (g *gatedReader) Read(b []byte) (int, error) {
	select {
	case <-g.stop:
		<-g.release
	default:
	}
	return g.r.Read(b)
}

// TestAgentStdoutBackPressure: a harness that sends requests without
// reading a reply holds the agent at agentMaxUnwritten bytes of replies:
// it stops reading stdin rather than grow, and serves the rest once
// stdout is read again, each request answered once, in order.
func TestAgentStdoutBackPressure(t *testing.T) {
	s := agentChannelStack(t)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	stdout := &gatedReader{r: outR, stop: make(chan struct{}), release: make(chan struct{})}
	close(stdout.stop) // nobody reads, until release
	before := liveHeap()
	served := make(chan error, 1)
	go func() {
		_, err := serveAgent(context.Background(), s, inR, outW, io.Discard)
		outW.Close()
		served <- err
	}()
	const requests = 100000 // 18 MB of replies by replyCost, four times the bound
	var sent atomic.Int64
	go func() {
		defer inW.Close()
		for i := int64(1); i <= requests; i++ {
			if _, err := fmt.Fprintf(inW, `{"id":%d,"op":"hello","version":1}`+"\n", i); err != nil {
				return
			}
			sent.Store(i)
		}
	}()
	// Wait until the agent stops taking requests.
	for last := int64(-1); ; {
		time.Sleep(300 * time.Millisecond)
		n := sent.Load()
		if n == last {
			break
		}
		last = n
	}
	grown := int64(liveHeap()) - int64(before)
	if n := sent.Load(); n == requests {
		t.Errorf("the agent took all %d requests with no reply read", n)
	}
	if grown > 2*agentMaxUnwritten {
		t.Errorf("with stdout unread the agent holds %d MiB more heap, want at most about agentMaxUnwritten (%d MiB)", grown>>20, agentMaxUnwritten>>20)
	}
	t.Logf("%d requests taken with stdout unread, %d KiB more heap", sent.Load(), grown>>10)
	close(stdout.release)
	sc := bufio.NewScanner(stdout)
	var n int64
	for sc.Scan() {
		n++
		var r struct {
			ID int64
			OK bool
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ID != n || !r.OK {
			t.Fatalf("reply %d: %s", n, sc.Bytes())
		}
	}
	if err := <-served; err != nil {
		t.Errorf("serveAgent: %v", err)
	}
	if n != requests {
		t.Errorf("%d replies to %d requests", n, requests)
	}
}
