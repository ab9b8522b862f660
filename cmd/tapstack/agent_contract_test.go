package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unicode/utf8"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestAgentReadAfterReset: "read ... after an RST: ECONNRESET" (AGENT.md,
// Operations). The peer closes with data of ours unread, which resets
// the connection (RFC 2525 2.17, as Linux's tcp_close); a read pending
// then, and one after, are ECONNRESET, and state is CLOSED.
func TestAgentReadAfterReset(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9023, "backlog": 1}), "listener")
	c, pc := p.acceptFromPeer(t, ln, 9023)
	p.ok(map[string]any{"op": "write", "conn": c, "data_b64": b64("unread by the peer"), "timeout_ms": 1000})
	rd := p.send(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 5000})
	time.Sleep(50 * time.Millisecond) // the peer has our data
	pc.Close()
	if m := p.wait(rd, 8*time.Second); m["error"] != "ECONNRESET" {
		t.Errorf("read pending at the peer's RST: %v, want ECONNRESET", m)
	}
	p.fail(map[string]any{"op": "read", "conn": c, "max": 10, "timeout_ms": 100}, "ECONNRESET")
	if s := p.state("conn", c); s != "CLOSED" {
		t.Errorf("state after the peer's RST: %s, want CLOSED", s)
	}
}

// TestAgentShutdownWriteKeepsReading: "shutdown_write: half-close: FIN
// after queued data; reading continues" (AGENT.md, Operations): the peer
// reads our data then EOF, and what it sends after is read.
func TestAgentShutdownWriteKeepsReading(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9024, "backlog": 1}), "listener")
	c, pc := p.acceptFromPeer(t, ln, 9024)
	p.ok(map[string]any{"op": "write", "conn": c, "data_b64": b64("queued"), "timeout_ms": 1000})
	p.ok(map[string]any{"op": "shutdown_write", "conn": c})
	if got := readFull(t, pc, len("queued")); got != "queued" {
		t.Errorf("peer read %q", got)
	}
	readEOF(t, pc)
	p.waitState("conn", c, 5*time.Second, "FIN-WAIT-2", "FIN-WAIT-1")
	if _, err := pc.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if got := p.readData(c, len("after")); got != "after" {
		t.Errorf("read after shutdown_write: %q", got)
	}
	if s := p.state("conn", c); s != "FIN-WAIT-2" {
		t.Errorf("state: %s, want FIN-WAIT-2", s)
	}
}

// TestAgentListenBacklog: "backlog is the accept-queue limit as the stack
// defines it" (AGENT.md, Operations): the engine's is Linux's, backlog+1
// connections wait for accept (sk_acceptq_is_full), so with backlog 1 a
// third SYN is dropped while two wait, as tcp_conn_request drops it.
func TestAgentListenBacklog(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	p.ok(map[string]any{"op": "listen", "port": 9025, "backlog": 1})
	p.peerDial(t, 9025)
	p.peerDial(t, 9025)
	p.waitAcceptQueue(t, 9025, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if c, err := gonet.DialContextTCP(ctx, p.peer.S, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), Port: 9025}, ipv4.ProtocolNumber); err == nil {
		c.Close()
		t.Errorf("backlog 1, two connections waiting for accept: a third handshake completed")
	}
	for _, l := range p.s.TCP().Listeners() {
		if l.Addr().Port() == 9025 && l.Queues().AcceptQueueLen != 2 {
			t.Errorf("backlog 1: %d connections wait for accept, want 2", l.Queues().AcceptQueueLen)
		}
	}
}

// TestAgentDialFailures: dial's failures (AGENT.md, Operations): no route
// is ENETUNREACH at once; a timeout is ETIMEDOUT, and the attempt is
// aborted, so the engine keeps no connection to that address; a
// neighbour that never answers ARP is EHOSTUNREACH.
func TestAgentDialFailures(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	p.fail(map[string]any{"op": "dial", "addr": "198.51.100.1:80", "timeout_ms": 5000}, "ENETUNREACH")
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.255:80", "timeout_ms": 5000}, "ENETUNREACH") // TestConnectBroadcast
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.3:9", "timeout_ms": 200}, "ETIMEDOUT")
	for _, ep := range p.s.TCP().Connections() {
		if ep.ID().Remote.Addr().String() == "192.0.2.3" {
			t.Errorf("after dial's ETIMEDOUT the engine keeps %v in %v", ep.ID(), ep.State())
		}
	}
	// Nobody answers ARP for 192.0.2.3: after gVisor's three probes, a
	// second apart, the dial fails as Linux's does once its neighbour
	// entry fails.
	p.fail(map[string]any{"op": "dial", "addr": "192.0.2.3:9", "timeout_ms": 6000}, "EHOSTUNREACH")
}

// TestAgentHostileFields: numbers out of range or not integers, invalid
// UTF-8, unknown fields and ops each get a reply naming the error
// (AGENT.md: EINVAL for a malformed request, ENOTSUP for an unknown op),
// with the request's id when it has a valid one; nothing is served with
// a value the agent had to guess.
func TestAgentHostileFields(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9026, "backlog": 1}), "listener")
	c, _ := p.acceptFromPeer(t, ln, 9026)
	conn := fmt.Sprint(c)
	for _, tc := range []struct {
		line string
		id   float64
		err  string
	}{
		{`{"id":2001,"op":"listen","port":70000,"backlog":1}`, 2001, "EINVAL"},
		{`{"id":2002,"op":"listen","port":-1,"backlog":1}`, 2002, "EINVAL"},
		{`{"id":2003,"op":"listen","port":9027,"backlog":9223372036854775808}`, 2003, "EINVAL"}, // 2^63
		{`{"id":2004,"op":"listen","port":9027.0,"backlog":1}`, 2004, "EINVAL"},
		{`{"id":2005,"op":"listen","port":9.027e3,"backlog":1}`, 2005, "EINVAL"},
		{`{"id":2006,"op":"read","conn":` + conn + `,"max":-1,"timeout_ms":0}`, 2006, "EINVAL"},
		{`{"id":2007,"op":"read","conn":` + conn + `,"max":9223372036854775808,"timeout_ms":0}`, 2007, "EINVAL"},
		{`{"id":2008,"op":"read","conn":` + conn + `,"max":1,"timeout_ms":9223372036854775807}`, 2008, "EINVAL"}, // beyond time.Duration
		{`{"id":2009,"op":"read","conn":9223372036854775808,"max":1,"timeout_ms":0}`, 2009, "EINVAL"},
		{`{"id":2010,"op":"read","conn":-3,"max":1,"timeout_ms":0}`, 2010, "EINVAL"},
		{`{"id":2011,"op":"write","conn":` + conn + `,"data_b64":"aGVsbG8","timeout_ms":0}`, 2011, "EINVAL"}, // unpadded
		{`{"id":2012,"op":"set_nodelay","conn":` + conn + `,"on":1}`, 2012, "EINVAL"},
		{`{"id":2013,"op":"dial","addr":"192.0.2.1:70000","timeout_ms":0}`, 2013, "EINVAL"},
		{`{"id":2014,"op":"dial","addr":"192.0.2.1","timeout_ms":0}`, 2014, "EINVAL"},
		{"{\"id\":2015,\"op\":\"hel\xfflo\"}", 2015, "ENOTSUP"},                                    // invalid UTF-8 in a string
		{"{\"id\":2016,\"op\":\"hello\",\"version\":1,\"x\":\"\xc3\x28\"}", 2016, ""},              // and in an ignored field
		{"{\"id\":2017,\xff\"op\":\"hello\",\"version\":1}", 0, "EINVAL"},                          // outside a string: not JSON
		{`{"id":2018,"op":"HELLO","version":1}`, 2018, "ENOTSUP"},                                  // names are exact
		{`{"id":2019,"Op":"hello","version":1}`, 2019, "EINVAL"},                                   // no "op"
		{`{"id":2020,"op":"hello","version":1,"future":{"nested":[1,2,3]}}`, 2020, ""},             // unknown fields are ignored
		{`{"id":9223372036854775808,"op":"hello","version":1}`, 0, "EINVAL"},                       // an id beyond int64 is no id
		{`{"id":2021,"op":"hello","version":1} {"id":2022,"op":"hello","version":1}`, 0, "EINVAL"}, // two objects on a line
	} {
		p.writeLine([]byte(tc.line))
		m := p.wait(int64(tc.id), 3*time.Second)
		if tc.err == "" && m["ok"] != true || tc.err != "" && (m["ok"] != false || m["error"] != tc.err) {
			t.Errorf("%q: %v, want id %v, error %q", tc.line, m, tc.id, tc.err)
		}
		if d, _ := m["detail"].(string); !utf8.ValidString(d) {
			t.Errorf("%q: detail %q is not UTF-8", tc.line, d)
		}
	}
	if s := p.state("conn", c); s != "ESTABLISHED" {
		t.Errorf("state after the requests: %s", s)
	}
}

// TestAgentCloseDuringWriteAndAccept: close while a write or an accept is
// pending (AGENT.md, Concurrency, allows close while a read is pending;
// the agent answers the same for every blocking request): each pending
// request is answered at once, EBADF; the ids stay valid for state.
func TestAgentCloseDuringWriteAndAccept(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{SendBufferSize: 64 << 10})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9028, "backlog": 1}), "listener")
	c, _ := p.acceptFromPeer(t, ln, 9028)
	acc := p.send(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 10000})
	// The peer does not read: 3 MiB fill its window and our send buffer.
	wr := p.send(map[string]any{"op": "write", "conn": c, "data_b64": base64.StdEncoding.EncodeToString(make([]byte, 3<<20)), "timeout_ms": 10000})
	time.Sleep(200 * time.Millisecond)
	if !p.pending(wr) || !p.pending(acc) {
		t.Fatalf("write and accept answered before the close")
	}
	p.ok(map[string]any{"op": "close", "conn": c})
	p.ok(map[string]any{"op": "close", "listener": ln})
	if m := p.wait(wr, time.Second); m["error"] != "EBADF" {
		t.Errorf("write pending at close: %v, want EBADF", m)
	}
	if m := p.wait(acc, time.Second); m["error"] != "EBADF" {
		t.Errorf("accept pending at the listener's close: %v, want EBADF", m)
	}
	if s := p.state("listener", ln); s != "CLOSED" {
		t.Errorf("listener: %s", s)
	}
	p.ok(map[string]any{"op": "state", "conn": c})
}

// TestAgentStateAfterTimeWaitReopened: state asks the engine about the
// connection an id names, not about whatever holds its 4-tuple now
// (AGENT.md, Operations: "CLOSED once the stack keeps no state for it").
// The agent closes first and keeps TIME-WAIT; the peer connects again from
// the same port, a SYN that reopens the 4-tuple (RFC 1122 4.2.2.13, as
// Linux's tcp_timewait_state_process); the old id is then CLOSED and the
// new conn ESTABLISHED.
func TestAgentStateAfterTimeWaitReopened(t *testing.T) {
	p := newPipeAgent(t, tcp.Options{TimeWait: 30 * time.Second})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9029, "backlog": 1}), "listener")
	old, pc := p.acceptFromPeer(t, ln, 9029)
	p.ok(map[string]any{"op": "close", "conn": old})
	readEOF(t, pc)
	pc.Close()
	p.waitState("conn", old, 5*time.Second, "TIME-WAIT", "FIN-WAIT-1", "FIN-WAIT-2")
	time.Sleep(20 * time.Millisecond) // a later ISN and timestamp

	acc := p.send(map[string]any{"op": "accept", "listener": ln, "timeout_ms": 5000})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc2, err := gonet.DialTCPWithBind(ctx, p.peer.S, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), Port: netip.MustParseAddrPort(pc.LocalAddr().String()).Port()}, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), Port: 9029}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("peer dial from the same port: %v", err)
	}
	defer pc2.Close()
	m := p.wait(acc, 8*time.Second)
	if m["ok"] != true || m["remote"] != pc.LocalAddr().String() {
		t.Fatalf("accept: %v, want the same remote %v", m, pc.LocalAddr())
	}
	if s := p.state("conn", id(m, "conn")); s != "ESTABLISHED" {
		t.Errorf("new conn: %s", s)
	}
	if s := p.state("conn", old); s != "CLOSED" {
		t.Errorf("old conn, its TIME-WAIT reopened by the new one: %s, want CLOSED", s)
	}
}

// TestAgentPendingWritesBounded: the data of the writes pending at once is
// bounded (agentMaxWriteData), as the dials are: each write is one per
// conn, but conns are not bounded, and a write pending on a peer that does
// not read held all its data (up to 12 MiB) for its timeout_ms, so many
// conns held that many times over. One write more is answered EAGAIN at
// once with n 0 (nothing taken: send it again once one is answered), and
// those pending are served as if it had not come.
func TestAgentPendingWritesBounded(t *testing.T) {
	const lineParse = 30 * time.Second // well within timeout_ms: EAGAIN still means at once
	p := newPipeAgent(t, tcp.Options{SendBufferSize: 64 << 10})
	ln := id(p.ok(map[string]any{"op": "listen", "port": 9030, "backlog": 16}), "listener")
	const size = 12<<20 - 96 // about the largest write a line carries
	// timeout_ms 60000: no write may end by its timeout while the test
	// sends the others (16 MiB lines are slow to parse under -race).
	data := base64.StdEncoding.EncodeToString(make([]byte, size))
	var writes []int64
	var conns []int64
	for range agentMaxWriteData/size + 1 {
		c, _ := p.acceptFromPeer(t, ln, 9030) // the peer never reads
		conns = append(conns, c)
		writes = append(writes, p.send(map[string]any{"op": "write", "conn": c, "data_b64": data, "timeout_ms": 60000}))
		// Served in order: the write is past validation. A 16 MiB line
		// takes seconds to parse on a loaded machine under -race (3 s
		// ran out once in CI): wait well within the writes' timeout.
		if m := p.wait(p.send(map[string]any{"op": "state", "conn": c}), lineParse); m["ok"] != true {
			t.Fatalf("state of conn %d: %v, want ok", c, m)
		}
	}
	over := writes[len(writes)-1]
	if m := p.wait(over, lineParse); m["error"] != "EAGAIN" || m["n"] != 0.0 {
		t.Errorf("write of %d MiB with %d MiB pending: %v, want EAGAIN with n 0 at once", size>>20, (len(writes)-1)*size>>20, m)
	}
	for _, w := range writes[:len(writes)-1] {
		if !p.pending(w) {
			t.Errorf("write %d answered early: %v", w, p.wait(w, time.Second))
		}
	}
	p.ok(map[string]any{"op": "close", "conn": conns[0]})
	p.wait(writes[0], 3*time.Second)
	// Room again: the next write is taken.
	next := p.send(map[string]any{"op": "write", "conn": conns[len(conns)-1], "data_b64": data, "timeout_ms": 60000})
	time.Sleep(100 * time.Millisecond)
	if !p.pending(next) {
		t.Errorf("a write once one was answered: %v, want it pending", p.wait(next, time.Second))
	}
	for _, c := range conns[1:] {
		p.ok(map[string]any{"op": "close", "conn": c})
	}
}
