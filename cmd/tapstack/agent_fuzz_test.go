package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// FuzzAgentRequests feeds arbitrary bytes to the agent as its stdin
// (AGENT.md, protocol version 1) on a stack whose link leads nowhere
// (192.0.2.2/24 on an in-memory channel nobody reads, so a dial to a
// neighbour hangs until its timeout or the end of stdin, and one to the
// stack's own address reaches its own listeners). At the end of the
// input the agent must close everything and return; then:
//
//   - every line of the input got exactly one reply, carrying the line's
//     id, or 0 when the line has no valid id (a line that is not a JSON
//     object, or whose "id" is not an integer >= 1);
//   - stdout holds nothing but those replies, one JSON object per line,
//     in UTF-8 whatever bytes the input held;
//   - each reply has "ok"; a failure carries an errno name as
//     golang.org/x/sys/unix spells them (the table of AGENT.md is a
//     subset), a success none; a state is one of AGENT.md's names;
//   - listener and conn ids are positive and never handed out twice;
//   - nothing panics and serveAgent returns nil.
//
// A run that has not returned after agentFuzzHang is reported as a hang
// with every goroutine's stack.
func FuzzAgentRequests(f *testing.F) {
	for _, s := range agentFuzzSeeds {
		f.Add(s.Args[0].([]byte))
	}
	// Each input runs on a stack of its own, as a harness starts an agent
	// per test; one that the run leaves as new (no connection, listener or
	// neighbour, nothing queued on the link) serves the next input rather
	// than being built again, which took most of a run of a few requests.
	var pool agentStackPool
	f.Cleanup(pool.close)
	f.Fuzz(func(t *testing.T, in []byte) {
		s := pool.get(t)
		out := runAgentOnStack(t, s, in)
		pool.put(s)
		checkAgentReplies(t, in, out)
	})
}

// agentStackPool keeps one stack that a fuzz run left as new.
type agentStackPool struct {
	s *agentStack
}

// agentStack is a stack at 192.0.2.2/24 on a channel link no peer reads.
type agentStack struct {
	*stack.Stack
	link *channel.Endpoint
	nic  tcpip.NICID
}

func newAgentStack() (*agentStack, error) {
	s := stack.New(stack.Options{TCP: tcp.Options{TimeWait: 10 * time.Millisecond}})
	link := channel.New(64, 1500, "")
	nic, err := s.AddNIC(link, netip.MustParsePrefix("192.0.2.2/24"))
	if err != nil {
		s.Close()
		link.Close()
		return nil, err
	}
	return &agentStack{Stack: s, link: link, nic: nic}, nil
}

func (s *agentStack) close() {
	s.Close()
	s.link.Close()
}

// get returns the kept stack, or a new one.
func (p *agentStackPool) get(t *testing.T) *agentStack {
	t.Helper()
	if s := p.s; s != nil {
		p.s = nil
		return s
	}
	s, err := newAgentStack()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put keeps s for the next run if it is as new: the engine holds no
// connection (TIME-WAIT and orphans included) and no listener, and the
// link's queue and the neighbour table (if the link has one) are emptied;
// else it closes s.
// What else differs from a new stack (counters, the ISN and SYN cookie
// secrets, the next ephemeral port) is random or not seen by the agent.
func (p *agentStackPool) put(s *agentStack) {
	s.link.Drain()
	switch s.Netstack().ClearNeighbors(s.nic, ipv4.ProtocolNumber).(type) {
	case nil, *tcpip.ErrNotSupported: // cleared, or none: the link resolves nothing
	default:
		s.close()
		return
	}
	if s.TCP().Usage() != (tcp.Usage{}) || len(s.TCP().Listeners()) > 0 || p.s != nil {
		s.close()
		return
	}
	p.s = s
}

func (p *agentStackPool) close() {
	if p.s != nil {
		p.s.close()
		p.s = nil
	}
}

// agentFuzzHang bounds one run. AGENT.md gives the agent 2 s after the end
// of stdin; this is far beyond, to report hangs, not slowness.
const agentFuzzHang = 20 * time.Second

// agentFuzzSeeds: the example session of AGENT.md, every operation right
// and wrong, and lines that are not requests.
var agentFuzzSeeds = []tcptest.FuzzSeed{
	agentSeed("agent-md-example", `{"id":1,"op":"hello","version":1}
{"backlog":16,"id":2,"op":"listen","port":9001}
{"id":3,"listener":1,"op":"accept","timeout_ms":20}
{"conn":2,"id":4,"max":100,"op":"read","timeout_ms":10}
{"conn":2,"id":5,"op":"state"}
{"conn":2,"id":7,"op":"close"}
{"listener":1,"id":8,"op":"state"}
`),
	// A connection to itself: listen, dial the stack's own address,
	// accept, write, read, half-close, state, close, then bad fields on
	// good ids.
	agentSeed("self-connection", `{"id":1,"op":"listen","port":7,"backlog":0}
{"id":2,"op":"dial","addr":"192.0.2.2:7","timeout_ms":1000}
{"id":3,"op":"accept","listener":1,"timeout_ms":1000}
{"id":4,"op":"write","conn":2,"data_b64":"aGVsbG8=","timeout_ms":100}
{"id":5,"op":"read","conn":3,"max":5,"timeout_ms":100}
{"id":6,"op":"shutdown_write","conn":2}
{"id":7,"op":"set_nodelay","conn":3,"on":true}
{"id":8,"op":"state","conn":2}
{"id":9,"op":"close","conn":3}
{"id":10,"op":"write","conn":2,"data_b64":"!!","timeout_ms":0}
{"id":11,"op":"set_nodelay","conn":3,"on":"yes"}
{"id":12,"op":"read","conn":3,"max":0,"timeout_ms":0}
`),
	// Errors: unknown ids, closed ids, a port in use, bad fields.
	agentSeed("errors", `{"id":1,"op":"listen","port":80,"backlog":1}
{"id":2,"op":"listen","port":80,"backlog":1}
{"id":3,"op":"close","listener":1}
{"id":4,"op":"close","listener":1}
{"id":5,"op":"accept","listener":1,"timeout_ms":0}
{"id":6,"op":"read","conn":99,"max":1,"timeout_ms":0}
{"id":7,"op":"write","conn":1,"data_b64":"!!","timeout_ms":0}
{"id":8,"op":"listen","port":0,"backlog":1}
{"id":9,"op":"listen","port":65536,"backlog":-1}
{"id":10,"op":"state","conn":1,"listener":1}
{"id":11,"op":"state"}
{"id":12,"op":"set_nodelay","conn":1,"on":"yes"}
{"id":13,"op":"hello","version":2}
`),
	// Dials that go nowhere or cannot start.
	agentSeed("dials", `{"id":1,"op":"dial","addr":"192.0.2.9:80","timeout_ms":5}
{"id":2,"op":"dial","addr":"198.51.100.1:80","timeout_ms":50}
{"id":3,"op":"dial","addr":"192.0.2.2:1","timeout_ms":50}
{"id":4,"op":"dial","addr":"not an address","timeout_ms":50}
{"id":5,"op":"dial","addr":"[2001:db8::1]:80","timeout_ms":50}
{"id":6,"op":"dial","addr":"192.0.2.9:80","timeout_ms":600000}
`),
	// Lines that are not requests, or not valid ones.
	agentSeed("not-requests", "\n"+
		"not json\n"+
		`[1,2,3]`+"\n"+
		`{"id":0,"op":"hello","version":1}`+"\n"+
		`{"id":-5,"op":"state"}`+"\n"+
		`{"id":1.5,"op":"state"}`+"\n"+
		`{"id":"7","op":"state"}`+"\n"+
		`{"id":null}`+"\n"+
		`{"id":9223372036854775807,"op":"frobnicate"}`+"\n"+
		`{"id":3}`+"\n"+
		`{"id":4,"op":7}`+"\n"+
		`{"id":5,"op":"read","conn":1,"max":0,"timeout_ms":1}`+"\n"+
		`{"id":6,"op":"write","conn":1,"data_b64":"","timeout_ms":-1}`+"\n"+
		"{\"id\":2,\"op\":\"hello\",\"version\":1}\r\n\x00\xff\n"),
	// Fields given twice: EINVAL, with id 0 for two ids.
	agentSeed("duplicate-keys", `{"id":1,"op":"listen","port":7,"backlog":0,"port":8}`+"\n"+
		`{"id":2,"id":3,"op":"hello","version":1}`+"\n"+
		`{"id":4,"op":"hello","version":1,"pad":{"a":1,"a":2},"v\u0065rsion":1}`+"\n"),
	// A repeated id, and no newline after the last line.
	agentSeed("repeated-id-no-final-newline", `{"id":1,"op":"hello","version":1}`+"\n"+`{"id":1,"op":"hello","version":1}`),
}

func agentSeed(name, in string) tcptest.FuzzSeed {
	return tcptest.FuzzSeed{Name: name, Args: []any{[]byte(in)}}
}

// runAgentOn serves in on a fresh stack and returns stdout. The input is
// paced like a harness that waits for each reply before its next request,
// though at most agentFuzzPace for each request (a blocking request may
// wait for a later one) and only for the first agentFuzzPaced lines.
func runAgentOn(t *testing.T, in []byte) []byte {
	t.Helper()
	return runAgentOnStack(t, &agentStack{Stack: agentChannelStack(t)}, in)
}

// runAgentOnStack is runAgentOn on s, which it does not close.
func runAgentOnStack(t *testing.T, s *agentStack, in []byte) []byte {
	t.Helper()
	out := &replyCounter{replied: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := serveAgent(context.Background(), s.Stack, newPacedReader(in, out), out, io.Discard)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveAgent: %v", err)
		}
	case <-time.After(agentFuzzHang):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("serveAgent has not returned %v after the end of its input %q\n%s", agentFuzzHang, in, buf)
	}
	return out.bytes()
}

// agentChannelStack is a stack at 192.0.2.2/24 on a channel link no
// peer reads, closed when the test ends: what an agent serves requests
// on when nothing answers on the wire.
func agentChannelStack(t *testing.T) *stack.Stack {
	t.Helper()
	s, err := newAgentStack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s.Stack
}

const (
	agentFuzzPace  = 5 * time.Millisecond
	agentFuzzPaced = 32
)

// replyCounter is the agent's stdout: it keeps the bytes and counts the
// replies by id.
type replyCounter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	ids     map[int64]int // replies by id, for a pacedReader
	replied chan struct{} // a reply was written
}

func (w *replyCounter) Write(b []byte) (int, error) {
	w.mu.Lock()
	// The agent writes a reply in one Write, and starts it with its id.
	if rest, ok := bytes.CutPrefix(b, []byte(`{"id":`)); ok {
		if end := bytes.IndexByte(rest, ','); end > 0 {
			if id, err := strconv.ParseInt(string(rest[:end]), 10, 64); err == nil {
				if w.ids == nil {
					w.ids = make(map[int64]int)
				}
				w.ids[id]++
			}
		}
	}
	n, err := w.buf.Write(b)
	w.mu.Unlock()
	select {
	case w.replied <- struct{}{}:
	default:
	}
	return n, err
}

// replies is the number of replies with id written so far.
func (w *replyCounter) replies(id int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ids[id]
}

func (w *replyCounter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// pacedReader hands serveAgent one line per Read, the k-th once the
// reply to the (k-1)-th is out or agentFuzzPace has passed: each request
// waits for its own reply, at most agentFuzzPace, once. It waited for
// every reply before, so that a blocking request that waits for a later
// one (an accept before the dial, a read before the write) delayed each
// line after it by agentFuzzPace: an accept pending over four lines cost
// 20 ms of a run of 22.
type pacedReader struct {
	lines [][]byte
	ids   []int64 // the id of the reply each line gets (wantReplyID)
	next  int
	sent  map[int64]int // lines handed over, by the id of their reply
	out   *replyCounter
}

func newPacedReader(in []byte, out *replyCounter) *pacedReader {
	r := &pacedReader{lines: agentLines(in), sent: make(map[int64]int), out: out}
	for _, l := range r.lines[:min(len(r.lines), agentFuzzPaced)] {
		r.ids = append(r.ids, wantReplyID(l))
	}
	return r
}

func (r *pacedReader) Read(b []byte) (int, error) {
	if r.next >= len(r.lines) {
		return 0, io.EOF
	}
	if r.next > 0 && r.next < agentFuzzPaced {
		prev := r.ids[r.next-1]
		timeout := time.NewTimer(agentFuzzPace)
		defer timeout.Stop()
		for r.out.replies(prev) < r.sent[prev] {
			select {
			case <-r.out.replied:
			case <-timeout.C:
				goto deliver
			}
		}
	}
deliver:
	n := copy(b, r.lines[r.next])
	if n < len(r.lines[r.next]) {
		r.lines[r.next] = r.lines[r.next][n:]
		return n, nil
	}
	if r.next < len(r.ids) {
		r.sent[r.ids[r.next]]++
	}
	r.next++
	return n, nil
}

// agentLines splits in as serveAgent reads it: at each newline, and what
// follows the last one.
func agentLines(in []byte) [][]byte {
	var lines [][]byte
	br := bufio.NewReader(bytes.NewReader(in))
	for range len(in) + 1 {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			lines = append(lines, line)
		}
		if err != nil {
			break
		}
	}
	return lines
}

// wantReplyID is the id the reply to line must carry: the line's, if it
// is a JSON object whose "id" is an integer >= 1 (AGENT.md) and no longer
// than agentMaxLine, else 0.
func wantReplyID(line []byte) int64 {
	if len(bytes.TrimSuffix(line, []byte("\n"))) > agentMaxLine {
		return 0
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil || fields == nil {
		return 0
	}
	var id int64
	if raw, ok := fields["id"]; !ok || json.Unmarshal(raw, &id) != nil || id < 1 || idKeys(line) > 1 {
		return 0
	}
	return id
}

// idKeys counts the top-level keys of the JSON object line named "id": a
// request that gives two has no id (TestAgentDuplicateKeys).
func idKeys(line []byte) int {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			break
		}
		if key == "id" {
			n++
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			break
		}
	}
	return n
}

// agentStateNames are the states a "state" reply may carry (AGENT.md).
var agentStateNames = []string{"LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
	"CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT", "CLOSED"}

// errnoNames are the names unix.ErrnoName gives.
var errnoNames = func() map[string]bool {
	m := make(map[string]bool)
	for e := syscall.Errno(1); e < 4096; e++ {
		if n := unix.ErrnoName(e); n != "" {
			m[n] = true
		}
	}
	return m
}()

func checkAgentReplies(t *testing.T, in, out []byte) {
	t.Helper()
	var want []int64
	for _, l := range agentLines(in) {
		want = append(want, wantReplyID(l))
	}
	var got []int64
	objects := make(map[int64]bool) // listener and conn ids handed out
	for i, line := range bytes.SplitAfter(out, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r struct {
			ID       *int64  `json:"id"`
			OK       *bool   `json:"ok"`
			Error    *string `json:"error"`
			Detail   *string `json:"detail"`
			Listener int64   `json:"listener"`
			Conn     int64   `json:"conn"`
			State    *string `json:"state"`
		}
		if line[len(line)-1] != '\n' || !utf8.Valid(line) || json.Unmarshal(line, &r) != nil || r.ID == nil || r.OK == nil {
			t.Fatalf("stdout line %d is not a reply: %q\ninput:\n%q\nstdout:\n%s", i, line, in, out)
		}
		switch {
		case *r.OK && r.Error != nil:
			t.Fatalf("a success with an error: %s", line)
		case !*r.OK && (r.Error == nil || !errnoNames[*r.Error]):
			t.Fatalf("a failure without an errno name: %s", line)
		case r.State != nil && !slices.Contains(agentStateNames, *r.State):
			t.Fatalf("a state that is not an RFC 9293 name: %s", line)
		}
		// AGENT.md: listener and conn ids are positive and never reused.
		for _, id := range []int64{r.Listener, r.Conn} {
			if id < 0 || (id > 0 && objects[id]) {
				t.Fatalf("id %d handed out twice, or negative: %s\nstdout:\n%s", id, line, out)
			}
			objects[id] = id > 0
		}
		got = append(got, *r.ID)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("reply ids %v, want one per line: %v\ninput:\n%q\nstdout:\n%s", got, want, in, out)
	}
}

// TestAgentFuzzSeeds runs the seeds and checks a few replies the seeds
// were written for, so that a seed that stops exercising its case shows.
func TestAgentFuzzSeeds(t *testing.T) {
	replies := func(in string) map[int64]map[string]any {
		out := runAgentOn(t, []byte(in))
		checkAgentReplies(t, []byte(in), out)
		m := make(map[int64]map[string]any)
		for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			var r map[string]any
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatal(err)
			}
			id, _ := r["id"].(float64)
			m[int64(id)] = r
		}
		return m
	}
	self := replies(string(agentFuzzSeeds[1].Args[0].([]byte)))
	for id, want := range map[int64]string{2: "", 3: "", 4: "", 5: "aGVsbG8=", 8: "FIN-WAIT-"} {
		r := self[id]
		if r["ok"] != true {
			t.Errorf("connection to itself: reply %d: %v", id, r)
		}
		if got := fmt.Sprint(r["data_b64"]) + fmt.Sprint(r["state"]); want != "" && !bytes.Contains([]byte(got), []byte(want)) {
			t.Errorf("connection to itself: reply %d: %v, want %s", id, r, want)
		}
	}
	for id, want := range map[int64]string{10: "EINVAL", 11: "EINVAL", 12: "EINVAL"} {
		if r := self[id]; r["error"] != want {
			t.Errorf("connection to itself: reply %d: %v, want %s", id, r, want)
		}
	}
	errs := replies(string(agentFuzzSeeds[2].Args[0].([]byte)))
	for id, want := range map[int64]string{2: "EADDRINUSE", 4: "EBADF", 5: "EBADF", 6: "EBADF", 7: "EBADF", 8: "EINVAL", 9: "EINVAL", 10: "EINVAL", 11: "EINVAL", 12: "EBADF", 13: "EINVAL"} {
		if r := errs[id]; r["error"] != want {
			t.Errorf("errors: reply %d: %v, want %s", id, r, want)
		}
	}
}

// TestAgentFuzzSeedFiles: testdata/fuzz/FuzzAgentRequests holds the seeds
// above (see tcptest.CheckFuzzSeeds to rewrite it).
func TestAgentFuzzSeedFiles(t *testing.T) {
	tcptest.CheckFuzzSeeds(t, "FuzzAgentRequests", agentFuzzSeeds)
}
