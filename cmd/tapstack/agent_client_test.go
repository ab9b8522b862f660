package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"slices"
	"sync"
	"testing"
	"time"
)

// agentClient is the harness side of the agent protocol, for tests: it
// writes requests and matches replies to them by id.
type agentClient struct {
	t testing.TB

	wmu sync.Mutex
	w   io.WriteCloser

	mu      sync.Mutex
	lastID  int64
	replies map[int64]chan map[string]any
	done    chan struct{} // the reply stream ended
}

func newAgentClient(t testing.TB, w io.WriteCloser, r io.Reader) *agentClient {
	c := &agentClient{t: t, w: w, replies: make(map[int64]chan map[string]any), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("agent wrote a line that is not a JSON object: %q", sc.Bytes())
				continue
			}
			id, ok := m["id"].(float64)
			if !ok {
				t.Errorf("reply without a numeric id: %q", sc.Bytes())
				continue
			}
			c.slot(int64(id)) <- m
		}
	}()
	return c
}

// slot returns the channel for the reply to id; a second reply to the
// same id would block the reader and fail the test by timing out.
func (c *agentClient) slot(id int64) chan map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.replies[id]
	if ch == nil {
		ch = make(chan map[string]any, 1)
		c.replies[id] = ch
	}
	return ch
}

func (c *agentClient) writeLine(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(append(b, '\n')); err != nil {
		c.t.Errorf("write request: %v", err)
	}
}

// send writes req with a fresh id and returns the id.
func (c *agentClient) send(req map[string]any) int64 {
	c.mu.Lock()
	c.lastID++
	id := c.lastID
	c.mu.Unlock()
	m := map[string]any{"id": id}
	for k, v := range req {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatalf("marshal %v: %v", req, err)
	}
	c.writeLine(b)
	return id
}

// wait returns the reply to id, failing the test after d.
func (c *agentClient) wait(id int64, d time.Duration) map[string]any {
	c.t.Helper()
	select {
	case m := <-c.slot(id):
		return m
	case <-time.After(d):
		c.t.Fatalf("no reply to request %d within %v", id, d)
	case <-c.done:
		// The stream ended; the reply may still have come first.
		select {
		case m := <-c.slot(id):
			return m
		default:
		}
		c.t.Fatalf("agent's stdout ended before the reply to request %d", id)
	}
	return nil
}

// pending reports whether the reply to id has not arrived.
func (c *agentClient) pending(id int64) bool {
	ch := c.slot(id)
	select {
	case m := <-ch:
		ch <- m
		return false
	default:
		return true
	}
}

// timeoutFor is how long the harness waits for a reply: timeout_ms + 3 s.
func timeoutFor(req map[string]any) time.Duration {
	d := 3 * time.Second
	if ms, ok := req["timeout_ms"].(int); ok {
		d += time.Duration(ms) * time.Millisecond
	}
	return d
}

func (c *agentClient) call(req map[string]any) map[string]any {
	c.t.Helper()
	return c.wait(c.send(req), timeoutFor(req))
}

// ok sends req and fails the test unless the reply is a success.
func (c *agentClient) ok(req map[string]any) map[string]any {
	c.t.Helper()
	m := c.call(req)
	if m["ok"] != true {
		c.t.Fatalf("%v: %v, want ok", req, m)
	}
	return m
}

// fail sends req and fails the test unless the reply is the error name.
func (c *agentClient) fail(req map[string]any, name string) map[string]any {
	c.t.Helper()
	m := c.call(req)
	if m["ok"] != false || m["error"] != name {
		c.t.Fatalf("%v: %v, want error %s", req, m, name)
	}
	return m
}

// raw sends a line as is and returns the reply with id 0.
func (c *agentClient) raw(line string) map[string]any {
	c.t.Helper()
	c.writeLine([]byte(line))
	return c.wait(0, 3*time.Second)
}

func id(m map[string]any, key string) int64 {
	f, _ := m[key].(float64)
	return int64(f)
}

func (c *agentClient) state(kind string, objID int64) string {
	c.t.Helper()
	m := c.ok(map[string]any{"op": "state", kind: objID})
	s, _ := m["state"].(string)
	return s
}

// waitState polls state every 10 ms, as the harness does, until it is
// want; it fails the test if the state leaves allowed (want included)
// or d passes.
func (c *agentClient) waitState(kind string, objID int64, d time.Duration, want string, allowed ...string) {
	c.t.Helper()
	allowed = append(allowed, want)
	deadline := time.Now().Add(d)
	var seen []string
	for {
		s := c.state(kind, objID)
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if s == want {
			return
		}
		if !slices.Contains(allowed, s) {
			c.t.Fatalf("%s %d: states %v, want only %v", kind, objID, seen, allowed)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s %d: states %v, not %s within %v", kind, objID, seen, want, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// readData reads from conn until it has n bytes.
func (c *agentClient) readData(conn int64, n int) string {
	c.t.Helper()
	var got []byte
	for len(got) < n {
		m := c.ok(map[string]any{"op": "read", "conn": conn, "max": n - len(got), "timeout_ms": 5000})
		s, _ := m["data_b64"].(string)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			c.t.Fatalf("read: %v: want data", m)
		}
		got = append(got, b...)
	}
	return string(got)
}
