package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
)

// The agent protocol: JSON lines on stdin/stdout, one reply per request,
// requests served concurrently. The contract is the harness's AGENT.md
// (protocol version 1), not in this repository; docs/agent.md restates it
// and documents what tapstack adds: its limits, its reading of the
// contract where it is open, its extensions.

const (
	agentVersion = 1
	// agentMaxRead bounds the buffer of one read: a reply carries 1..max
	// bytes, so fewer than max is always correct, and the engine's
	// receive buffer (1 MiB by default) holds no more than this anyway.
	agentMaxRead = 1 << 20
	// agentReadWait is the buffer a read waits with, whatever its max: a
	// pending read holds no more. Once data has come, the read takes what
	// else the receive buffer holds, up to max and agentMaxRead, with a
	// buffer of that size.
	agentReadWait = 4 << 10
	// agentExit is the time from the end of stdin to a stack shut down:
	// the agent's wait for its FINs to be acknowledged (shutdown) and the
	// stack's own (Stack.Shutdown, which then resets what is still open)
	// share this one deadline. The contract wants the process gone
	// within 2 s; the rest is for Stack.Close's flush of the last frames
	// and for closing the device and the capture, milliseconds on a TAP
	// that is up (--otlp and --plot do their work after that).
	agentExit = 1500 * time.Millisecond
	// agentMinWait is the shortest deadline given to Conn.Read and Write
	// and to Listener.AcceptTCP: a deadline already passed fails them even
	// when data or a connection is waiting (as in package net), while
	// timeout_ms 0 means "try once".
	agentMinWait = time.Millisecond
	// agentMaxLine bounds a request line, its newline not counted. The
	// contract sets no limit, and a write's data is in the line: 16 MiB is
	// four times the longest line the tests send, and a write of up to
	// 12 MiB (base64 takes 4 bytes for every 3), three times what a send
	// buffer grows to by default (tcp_wmem[2], 4 MiB). A longer line is
	// read to its newline without being kept and answered as a line that
	// is not valid JSON: EINVAL with id 0.
	agentMaxLine = 16 << 20
	// agentMaxDials bounds the dials pending at once, as every other
	// blocking request is bounded (claim: one accept per listener, one
	// read and one write per conn). A dial is tied to no object, and
	// the contract lets dials run side by side, so the bound is the
	// agent's: each holds a goroutine and a connection in SYN-SENT for
	// up to its timeout_ms, and a harness tests one handshake at a time,
	// or a few dozen. One more is answered EAGAIN at once (dialSlot).
	agentMaxDials = 1024
	// agentMaxUnwritten bounds the replies waiting for stdout: a reply
	// that would take them beyond it waits for room (unless it is the
	// only one), and the requests after it wait in stdin, so a harness
	// that stops reading stdout stops the agent reading requests rather
	// than growing its memory. Three of the largest read replies (1 MiB
	// of data, 1.33 MiB of base64); a harness that reads each reply as it
	// comes leaves none waiting. Once stdin has ended no more requests
	// can come, replies no longer wait for room, and those stdout has not
	// taken by the exit deadline are dropped and counted on stderr.
	agentMaxUnwritten = 4 << 20
	// agentMaxWriteData bounds the data of the writes pending at once,
	// as agentMaxDials bounds the dials: a write holds its data (up to
	// 12 MiB, agentMaxLine) until the send buffer has taken it all or
	// its timeout_ms passes, one write per conn (claim), but the conns
	// are not bounded. Five of the largest writes; a harness writes to
	// one or two conns at a time. One more is answered EAGAIN at once
	// with n 0 (writeSlot).
	agentMaxWriteData = 64 << 20
)

var agentCaps = []string{"arp", "icmp", "tcp"}

// agentReply is every reply; fields a reply does not have are omitted.
type agentReply struct {
	ID       int64    `json:"id"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	Detail   string   `json:"detail,omitempty"`
	Name     string   `json:"name,omitempty"`
	Version  int      `json:"version,omitempty"`
	Caps     []string `json:"caps,omitempty"`
	Listener int64    `json:"listener,omitempty"`
	Conn     int64    `json:"conn,omitempty"`
	Local    string   `json:"local,omitempty"`
	Remote   string   `json:"remote,omitempty"`
	DataB64  string   `json:"data_b64,omitempty"`
	EOF      bool     `json:"eof,omitempty"`
	N        *int     `json:"n,omitempty"`
	State    string   `json:"state,omitempty"`
}

// agentError is a failure with the errno name the reply carries, and for
// a write refused before it began, n 0 (AGENT.md: EAGAIN with n).
type agentError struct {
	name   string
	detail string
	n      *int
}

func (e *agentError) Error() string { return e.detail }

func errInvalid(format string, args ...any) error {
	return &agentError{name: "EINVAL", detail: fmt.Sprintf(format, args...)}
}

func errBadID(kind string, id int64) error {
	return &agentError{name: "EBADF", detail: fmt.Sprintf("no %s with id %d", kind, id)}
}

// errnoName names err for a reply. timeout is the name of a passed
// deadline: EAGAIN for accept, read and write, ETIMEDOUT for dial.
func errnoName(err error, timeout string) string {
	var ae *agentError
	var errno syscall.Errno
	switch {
	case errors.As(err, &ae):
		return ae.name
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return timeout
	case errors.Is(err, net.ErrClosed):
		return "EBADF"
	case errors.As(err, &errno):
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	case errors.Is(err, context.Canceled):
		return "ECANCELED" // the agent is shutting down
	}
	return "EIO"
}

// agentRequest is one parsed request line. Fields are decoded when an
// operation asks for them, so that a missing or mistyped field is an
// EINVAL naming it.
type agentRequest struct {
	id     int64
	op     string
	fields map[string]json.RawMessage
}

func (r *agentRequest) has(name string) bool {
	_, ok := r.fields[name]
	return ok
}

// int returns the integer field name, which must lie in [lo, hi].
func (r *agentRequest) int(name string, lo, hi int64) (int64, error) {
	raw, ok := r.fields[name]
	if !ok {
		return 0, errInvalid("%s: missing field %q", r.op, name)
	}
	var v int64
	if err := json.Unmarshal(raw, &v); err != nil || string(raw) == "null" {
		return 0, errInvalid("%s: field %q: want an integer, got %s", r.op, name, raw)
	}
	if v < lo || v > hi {
		return 0, errInvalid("%s: field %q: %d is out of range [%d, %d]", r.op, name, v, lo, hi)
	}
	return v, nil
}

func (r *agentRequest) str(name string) (string, error) {
	raw, ok := r.fields[name]
	var v string
	if !ok {
		return "", errInvalid("%s: missing field %q", r.op, name)
	}
	if err := json.Unmarshal(raw, &v); err != nil || string(raw) == "null" {
		return "", errInvalid("%s: field %q: want a string, got %s", r.op, name, raw)
	}
	return v, nil
}

func (r *agentRequest) bool(name string) (bool, error) {
	raw, ok := r.fields[name]
	var v bool
	if !ok {
		return false, errInvalid("%s: missing field %q", r.op, name)
	}
	if err := json.Unmarshal(raw, &v); err != nil || string(raw) == "null" {
		return false, errInvalid("%s: field %q: want true or false, got %s", r.op, name, raw)
	}
	return v, nil
}

// timeout returns the request's timeout_ms.
func (r *agentRequest) timeout() (time.Duration, error) {
	ms, err := r.int("timeout_ms", 0, math.MaxInt64/int64(time.Millisecond))
	return time.Duration(ms) * time.Millisecond, err
}

// id returns the conn or listener id field name: a positive integer.
func (r *agentRequest) objectID(name string) (int64, error) {
	return r.int(name, 1, math.MaxInt64)
}

// agent serves the protocol for one stack.
type agent struct {
	s   *stack.Stack
	ctx context.Context // cancelled at shutdown: pending dials give up
	log io.Writer

	out *replyQueue // stdout

	handlers sync.WaitGroup // goroutines serving blocking requests

	mu        sync.Mutex
	lastID    int64 // the last listener or conn id handed out; never reused
	closing   bool  // stdin ended: no new conns or listeners
	conns     map[int64]*conn.Conn
	listeners map[int64]*conn.Listener
	pending   map[pendingOp]bool // the blocking requests being served, by object (claim)
	dials     int                // dials being served, at most agentMaxDials (dialSlot)
	writeData int                // bytes of the writes being served, at most agentMaxWriteData (writeSlot)
}

// pendingOp is a blocking operation on a listener or conn.
type pendingOp struct {
	op string
	id int64
}

// serveAgent reads requests from in and writes replies to out until in
// ends or ctx is cancelled, then closes every listener and connection it
// opened (an ordinary close) and returns after a short grace for the
// closing segments to be exchanged. stopBy is when the caller must have
// shut s down: agentExit after the end of in, a deadline the grace was
// part of. It does not close s. Diagnostics go to log.
func serveAgent(ctx context.Context, s *stack.Stack, in io.Reader, out, log io.Writer) (stopBy time.Time, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &agent{
		s:         s,
		ctx:       ctx,
		log:       log,
		out:       newReplyQueue(out, log),
		conns:     make(map[int64]*conn.Conn),
		listeners: make(map[int64]*conn.Listener),
		pending:   make(map[pendingOp]bool),
	}

	lines := make(chan agentLine)
	readErr := make(chan error, 1)
	go func() {
		br := bufio.NewReaderSize(in, 64<<10)
		for {
			line, err := readAgentLine(br, agentMaxLine)
			if len(line.b) > 0 || line.tooLong > 0 {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				// No request comes after this: replies stop waiting for
				// room in stdout (the request loop may be held by one
				// that waits), so that the end of stdin is seen.
				a.out.stdinEnded()
				readErr <- err
				return
			}
		}
	}()

loop:
	for {
		select {
		case line := <-lines:
			if line.tooLong > 0 {
				a.reply(&agentReply{Error: "EINVAL", Detail: fmt.Sprintf("request line of %d bytes, longer than the agent's limit of %d: discarded", line.tooLong, agentMaxLine)})
				continue
			}
			a.handle(line.b)
		case err = <-readErr:
			if err == io.EOF {
				err = nil
			}
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	stopBy = time.Now().Add(agentExit)
	a.out.stdinEnded()
	cancel()
	a.shutdown(stopBy)
	a.out.flush(stopBy)
	return stopBy, err
}

// agentLine is one line of stdin: its bytes, newline included, or, for a
// line longer than the limit, its length (newline not counted), the line
// itself discarded.
type agentLine struct {
	b       []byte
	tooLong int
}

// readAgentLine reads the next line of br, as br.ReadBytes('\n') does,
// but keeps at most limit bytes of it (the newline not counted): a longer
// line is read to its newline (or the end of br) and dropped as it is
// read, and only its length is returned. Every line ends at a
// newline or at the end of the input, as with ReadBytes.
func readAgentLine(br *bufio.Reader, limit int) (agentLine, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		n := len(line) + len(frag)
		if err == nil {
			n-- // the newline
		}
		if n > limit {
			line = nil // not kept while the rest is read
			for err == bufio.ErrBufferFull {
				frag, err = br.ReadSlice('\n')
				n += len(frag)
				if err == nil {
					n--
				}
			}
			return agentLine{tooLong: n}, err
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return agentLine{b: line}, err
		}
	}
}

// shutdown closes every listener and connection, waits for the pending
// requests to be answered, and gives the connections until stopBy to
// have their FINs acknowledged. It does not wait for TIME-WAIT.
func (a *agent) shutdown(stopBy time.Time) {
	a.mu.Lock()
	a.closing = true
	conns := make([]*conn.Conn, 0, len(a.conns))
	for _, c := range a.conns {
		conns = append(conns, c)
	}
	for _, l := range a.listeners {
		l.Close()
	}
	a.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	a.handlers.Wait() // every blocked call was unblocked by the closes or the context
	for time.Now().Before(stopBy) {
		settled := true
		for _, c := range conns {
			switch c.State() {
			case event.Closed, event.TimeWait, event.FinWait2:
			default:
				settled = false
			}
		}
		if settled {
			return
		}
		time.Sleep(min(10*time.Millisecond, time.Until(stopBy)))
	}
}

// reply queues one reply line for stdout; concurrent handlers share it.
func (a *agent) reply(r *agentReply) {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen: every field marshals
		fmt.Fprintf(a.log, "tapstack agent: reply %d: %v\n", r.ID, err)
		return
	}
	a.out.put(append(b, '\n'))
}

// replyQueue is stdout: replies are written in the order they are put,
// by one goroutine, so that a Write that stdout does not take (a harness
// that stopped reading) holds up neither the requests being served nor,
// once stdin has ended, the agent's exit (AGENT.md, Process: "exits
// within 2 s"). It holds at most agentMaxUnwritten bytes while stdin is
// open.
type replyQueue struct {
	out  io.Writer
	log  io.Writer
	done chan struct{} // the writer returned: every reply put was written or failed

	mu        sync.Mutex
	cond      sync.Cond // the queue changed: a reply was put or written, or stdin ended
	q         [][]byte
	unwritten int   // the replyCost of those put and not yet written, the one being written included
	noWait    bool  // stdin ended: put does not wait for room
	closed    bool  // flush was called: nothing more is put
	failed    int   // replies whose Write failed
	failure   error // the first Write's error
}

func newReplyQueue(out, log io.Writer) *replyQueue {
	q := &replyQueue{out: out, log: log, done: make(chan struct{})}
	q.cond.L = &q.mu
	go q.write()
	return q
}

// put queues b, once the replies not yet written leave room for it.
func (q *replyQueue) put(b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.unwritten > 0 && q.unwritten+replyCost(b) > agentMaxUnwritten && !q.noWait {
		q.cond.Wait()
	}
	q.q = append(q.q, b)
	q.unwritten += replyCost(b)
	q.cond.Broadcast()
}

// replyCost is the memory a queued reply holds: its buffer, not its
// length (append's growth may double it), and the slice the queue keeps.
func replyCost(b []byte) int { return cap(b) + 24 }

// stdinEnded has put stop waiting for room: no request comes any more,
// so the replies still to come are those of the requests being served.
func (q *replyQueue) stdinEnded() {
	q.mu.Lock()
	q.noWait = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// write writes the replies in order until flush and the queue is empty.
// After a failed Write (stdout closed) the rest fail as fast; flush counts
// them.
func (q *replyQueue) write() {
	defer close(q.done)
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.q) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.q) == 0 {
			return
		}
		b := q.q[0]
		q.q[0] = nil
		q.q = q.q[1:]
		q.mu.Unlock()
		_, err := q.out.Write(b)
		q.mu.Lock()
		if err != nil {
			if q.failed == 0 {
				q.failure = err
			}
			q.failed++
		}
		q.unwritten -= replyCost(b)
		q.cond.Broadcast()
	}
}

// flush waits until every reply put is written, or until stopBy, when it
// counts on log those stdout has not taken: the writer is left to them,
// blocked in a Write that returns when the harness reads or closes
// stdout, and the process's exit ends it.
func (q *replyQueue) flush(stopBy time.Time) {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	t := time.NewTimer(time.Until(stopBy))
	defer t.Stop()
	select {
	case <-q.done:
	case <-t.C:
		q.mu.Lock()
		n, bytes := len(q.q), q.unwritten
		q.mu.Unlock()
		fmt.Fprintf(q.log, "tapstack agent: %d replies (%d KiB, one being written) not written by the exit deadline: stdout is not read\n", n+1, bytes>>10)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failed > 0 {
		fmt.Fprintf(q.log, "tapstack agent: %d replies not written: %v\n", q.failed, q.failure)
	}
}

// finish sends the reply to request id: rep on success, or the error
// named with timeout for a passed deadline. rep may carry fields on
// failure too (write's n).
func (a *agent) finish(id int64, rep agentReply, err error, timeout string) {
	rep.ID = id
	if err == nil {
		rep.OK = true
		a.reply(&rep)
		return
	}
	var ae *agentError
	if errors.As(err, &ae) && ae.n != nil {
		rep.N = ae.n
	}
	a.reply(&agentReply{ID: id, Error: errnoName(err, timeout), Detail: err.Error(), N: rep.N})
}

// handle parses one line and serves it: at once when the operation cannot
// block, on its own goroutine when it can.
func (a *agent) handle(line []byte) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil || fields == nil {
		detail := "not a JSON object"
		if err != nil {
			detail = "invalid JSON: " + err.Error()
		}
		a.reply(&agentReply{Error: "EINVAL", Detail: detail})
		return
	}
	r := &agentRequest{fields: fields}
	dups := duplicateKeys(line, len(fields))
	if slices.Contains(dups, "id") {
		a.reply(&agentReply{Error: "EINVAL", Detail: "request with two ids: field \"id\" given twice"})
		return
	}
	id, err := r.int("id", 1, math.MaxInt64)
	if err != nil {
		a.reply(&agentReply{Error: "EINVAL", Detail: "request without a valid id: " + err.Error()})
		return
	}
	r.id = id
	if len(dups) > 0 {
		// RFC 8259 4: an object whose names are not unique means what
		// its parser makes of it; encoding/json keeps the last value,
		// the harness may have meant the first. Malformed, not guessed.
		a.finish(id, agentReply{}, errInvalid("request with fields given twice: %q", dups), "")
		return
	}
	r.op, err = r.str("op")
	if err != nil {
		a.finish(id, agentReply{}, err, "")
		return
	}
	blocking := map[string]func(*agentRequest) (func() (agentReply, error), error){
		"accept": a.accept,
		"dial":   a.dial,
		"read":   a.read,
		"write":  a.write,
	}
	immediate := map[string]func(*agentRequest) (agentReply, error){
		"hello":          a.hello,
		"listen":         a.listen,
		"shutdown_write": a.shutdownWrite,
		"close":          a.close,
		"set_nodelay":    a.setNoDelay,
		"state":          a.state,
	}
	timeout := "EAGAIN"
	if r.op == "dial" {
		timeout = "ETIMEDOUT"
	}
	if op, ok := immediate[r.op]; ok {
		rep, err := op(r)
		a.finish(id, rep, err, timeout)
		return
	}
	op, ok := blocking[r.op]
	if !ok {
		a.finish(id, agentReply{}, &agentError{name: "ENOTSUP", detail: fmt.Sprintf("unknown op %q", r.op)}, "")
		return
	}
	// Validate at once; only the waiting happens on the goroutine.
	run, err := op(r)
	if err != nil {
		a.finish(id, agentReply{}, err, timeout)
		return
	}
	a.handlers.Add(1)
	go func() {
		defer a.handlers.Done()
		rep, err := run()
		a.finish(id, rep, err, timeout)
	}()
}

// duplicateKeys returns the names that the JSON object line gives more
// than once at its top level (unescaped, each once), given that line is
// valid JSON and that its object decoded to a map of n fields: more keys
// than fields means a name came twice. The keys are found by one pass
// over the bytes, which a 16 MiB write line can afford where a second
// decoding of it would copy its data again.
func duplicateKeys(line []byte, n int) []string {
	var keys [][]byte // the top-level keys, quoted as in line
	depth := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			j := i + 1
			for ; line[j] != '"'; j++ {
				if line[j] == '\\' {
					j++ // the escaped byte, which may be a quote
				}
			}
			if depth == 1 {
				k := j + 1
				for k < len(line) && (line[k] == ' ' || line[k] == '\t' || line[k] == '\n' || line[k] == '\r') {
					k++
				}
				if k < len(line) && line[k] == ':' {
					keys = append(keys, line[i:j+1])
				}
			}
			i = j
		}
	}
	if len(keys) == n {
		return nil
	}
	var dups []string
	seen := make(map[string]bool, len(keys))
	for _, q := range keys {
		var name string
		_ = json.Unmarshal(q, &name) // a valid JSON string
		if seen[name] && !slices.Contains(dups, name) {
			dups = append(dups, name)
		}
		seen[name] = true
	}
	return dups
}

// register hands out the next id for a listener or conn. After shutdown
// began it closes the newcomer (a dial or accept that raced with the end
// of stdin) but still names it, so the pending request gets its answer.
func (a *agent) register(c *conn.Conn, l *conn.Listener) int64 {
	a.mu.Lock()
	a.lastID++
	id := a.lastID
	if c != nil {
		a.conns[id] = c
	} else {
		a.listeners[id] = l
	}
	closing := a.closing
	a.mu.Unlock()
	if closing {
		if c != nil {
			c.Close()
		} else {
			l.Close()
		}
	}
	return id
}

// claim marks op as pending on the listener or conn named by the field
// kind of r, already resolved, until release is called: by the operation
// when it returns, before its reply is written, so that the harness may
// send the next one as soon as it has the reply. The harness sends
// one request at a time on an object ("never sends a request whose meaning
// depends on an earlier one before that one has been answered, except
// that it may send close or state while a read on the same conn is
// pending", AGENT.md, Concurrency), so a second one while the first is
// served is answered EINVAL, as a malformed request, at once: a second
// accept on a listener, a second read or a second write on a conn (a read
// and a write may be pending together). This bounds what pending requests
// hold, and keeps the one deadline the listener, or each side of the
// conn, has to the one request that set it: a second accept or read used
// to move the first one's timeout.
func (a *agent) claim(r *agentRequest, kind string) (release func(), err error) {
	id, err := r.objectID(kind)
	if err != nil {
		return nil, err
	}
	k := pendingOp{r.op, id}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending[k] {
		return nil, errInvalid("%s: %s %d has %s pending; one at a time (AGENT.md, Concurrency)", r.op, kind, id, r.op)
	}
	a.pending[k] = true
	return func() {
		a.mu.Lock()
		delete(a.pending, k)
		a.mu.Unlock()
	}, nil
}

// dialSlot takes one of the agentMaxDials dials that may be pending, until
// release is called: by the dial when it returns, before its reply is
// written, as claim's. With every slot taken the dial is answered EAGAIN
// at once: of AGENT.md's names, the one for "nothing now, ask again" (it
// gives it to a blocking request that found nothing to report), and
// errno's own for a resource temporarily unavailable. A dial's own
// failures have other names (ETIMEDOUT for its timeout_ms), so the
// harness can tell them apart; EINVAL, claim's, would call malformed a
// request the contract allows.
func (a *agent) dialSlot() (release func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dials >= agentMaxDials {
		return nil, &agentError{name: "EAGAIN", detail: fmt.Sprintf("dial: %d dials pending, the agent's limit; send it again once one is answered", agentMaxDials)}
	}
	a.dials++
	return func() {
		a.mu.Lock()
		a.dials--
		a.mu.Unlock()
	}, nil
}

// writeSlot reserves n bytes of the agentMaxWriteData that pending writes
// may hold, until release is called: by the write when it returns, before
// its reply is written, as claim's. Without room the write is answered
// EAGAIN at once, n 0, as dialSlot answers a dial: nothing taken, send it
// again once a write is answered. One write alone is never refused.
func (a *agent) writeSlot(n int) (release func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.writeData > 0 && a.writeData+n > agentMaxWriteData {
		return nil, &agentError{name: "EAGAIN", detail: fmt.Sprintf("write: %d bytes pending in other writes, %d more would pass the agent's limit of %d; send it again once one is answered", a.writeData, n, agentMaxWriteData), n: new(int)}
	}
	a.writeData += n
	return func() {
		a.mu.Lock()
		a.writeData -= n
		a.mu.Unlock()
	}, nil
}

func (a *agent) conn(r *agentRequest) (*conn.Conn, error) {
	id, err := r.objectID("conn")
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	c := a.conns[id]
	a.mu.Unlock()
	if c == nil {
		return nil, errBadID("conn", id)
	}
	return c, nil
}

func (a *agent) listener(r *agentRequest) (*conn.Listener, error) {
	id, err := r.objectID("listener")
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	l := a.listeners[id]
	a.mu.Unlock()
	if l == nil {
		return nil, errBadID("listener", id)
	}
	return l, nil
}

// connOrListener resolves the "conn" or "listener" field of close and
// state: exactly one of them.
func (a *agent) connOrListener(r *agentRequest) (*conn.Conn, *conn.Listener, error) {
	switch hasC, hasL := r.has("conn"), r.has("listener"); {
	case hasC && hasL:
		return nil, nil, errInvalid("%s: give conn or listener, not both", r.op)
	case hasC:
		c, err := a.conn(r)
		return c, nil, err
	case hasL:
		l, err := a.listener(r)
		return nil, l, err
	}
	return nil, nil, errInvalid("%s: missing field \"conn\" or \"listener\"", r.op)
}

func (a *agent) hello(r *agentRequest) (agentReply, error) {
	v, err := r.int("version", 0, math.MaxInt64)
	if err != nil {
		return agentReply{}, err
	}
	if v != agentVersion {
		return agentReply{}, errInvalid("hello: version %d: this agent speaks version %d", v, agentVersion)
	}
	return agentReply{Name: "tapstack", Version: agentVersion, Caps: agentCaps}, nil
}

func (a *agent) listen(r *agentRequest) (agentReply, error) {
	port, err := r.int("port", 1, 65535)
	if err != nil {
		return agentReply{}, err
	}
	backlog, err := r.int("backlog", 0, math.MaxInt32)
	if err != nil {
		return agentReply{}, err
	}
	// The engine's backlog is Linux's: backlog+1 connections wait for
	// accept. ListenConfig reads 0 as "default" and a negative value as a
	// real 0.
	lc := conn.ListenConfig{Backlog: int(backlog)}
	if backlog == 0 {
		lc.Backlog = -1
	}
	l, err := lc.Listen(a.s, "tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		return agentReply{}, err
	}
	return agentReply{Listener: a.register(nil, l), Local: l.Addr().String()}, nil
}

func (a *agent) accept(r *agentRequest) (func() (agentReply, error), error) {
	l, err := a.listener(r)
	if err != nil {
		return nil, err
	}
	timeout, err := r.timeout()
	if err != nil {
		return nil, err
	}
	release, err := a.claim(r, "listener")
	if err != nil {
		return nil, err
	}
	return func() (agentReply, error) {
		defer release()
		if err := l.SetDeadline(time.Now().Add(max(timeout, agentMinWait))); err != nil {
			return agentReply{}, err
		}
		c, err := l.AcceptTCP()
		_ = l.SetDeadline(time.Time{}) // the listener is unaffected by the timeout
		if err != nil {
			return agentReply{}, err
		}
		return a.connReply(c), nil
	}, nil
}

func (a *agent) connReply(c *conn.Conn) agentReply {
	return agentReply{Conn: a.register(c, nil), Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}
}

func (a *agent) dial(r *agentRequest) (func() (agentReply, error), error) {
	s, err := r.str("addr")
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, errInvalid("dial: addr %q: %v", s, err)
	}
	timeout, err := r.timeout()
	if err != nil {
		return nil, err
	}
	release, err := a.dialSlot()
	if err != nil {
		return nil, err
	}
	return func() (agentReply, error) {
		defer release()
		// At the deadline DialContext aborts the attempt: no connection
		// appears later.
		ctx, cancel := context.WithTimeout(a.ctx, timeout)
		defer cancel()
		c, err := (&conn.Dialer{Stack: a.s}).DialTCP(ctx, "tcp", addr.String())
		if err != nil {
			return agentReply{}, err
		}
		return a.connReply(c), nil
	}, nil
}

func (a *agent) read(r *agentRequest) (func() (agentReply, error), error) {
	c, err := a.conn(r)
	if err != nil {
		return nil, err
	}
	maxN, err := r.int("max", 1, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	timeout, err := r.timeout()
	if err != nil {
		return nil, err
	}
	release, err := a.claim(r, "conn")
	if err != nil {
		return nil, err
	}
	return func() (agentReply, error) {
		defer release()
		if err := c.SetReadDeadline(time.Now().Add(max(timeout, agentMinWait))); err != nil {
			return agentReply{}, err
		}
		buf := make([]byte, min(maxN, agentReadWait))
		n, err := c.Read(buf)
		if n == len(buf) {
			buf = readQueued(c, buf, min(maxN, agentMaxRead))
			n = len(buf)
		}
		_ = c.SetReadDeadline(time.Time{})
		switch {
		case n > 0:
			return agentReply{DataB64: base64.StdEncoding.EncodeToString(buf[:n])}, nil
		case err == io.EOF:
			return agentReply{EOF: true}, nil
		case err == nil:
			return agentReply{}, &agentError{name: "EIO", detail: "read returned no data and no error"}
		}
		return agentReply{}, err
	}, nil
}

// readQueued returns buf, which a Read has filled, followed by what else
// c's receive buffer holds (as FIONREAD tells), up to limit bytes in all,
// in one buffer of that size. The data is there and nobody else reads c
// (claim), so Read does not wait, though it may return part (up to 32 of
// the buffer's views at a time); should it fail (a RST since), the bytes
// read stand and the next read reports the error.
func readQueued(c *conn.Conn, buf []byte, limit int64) []byte {
	more := min(limit-int64(len(buf)), int64(c.Info().RecvQueued))
	if more <= 0 {
		return buf
	}
	b := make([]byte, int64(len(buf))+more)
	n := copy(b, buf)
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if m == 0 || err != nil {
			break
		}
	}
	return b[:n]
}

func (a *agent) write(r *agentRequest) (func() (agentReply, error), error) {
	c, err := a.conn(r)
	if err != nil {
		return nil, err
	}
	s, err := r.str("data_b64")
	if err != nil {
		return nil, err
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errInvalid("write: data_b64: %v", err)
	}
	timeout, err := r.timeout()
	if err != nil {
		return nil, err
	}
	release, err := a.claim(r, "conn")
	if err != nil {
		return nil, err
	}
	releaseData, err := a.writeSlot(len(data))
	if err != nil {
		release()
		return nil, err
	}
	return func() (agentReply, error) {
		defer release()
		defer releaseData()
		if err := c.SetWriteDeadline(time.Now().Add(max(timeout, agentMinWait))); err != nil {
			return agentReply{}, err
		}
		n, err := c.Write(data)
		_ = c.SetWriteDeadline(time.Time{})
		return agentReply{N: &n}, err
	}, nil
}

func (a *agent) shutdownWrite(r *agentRequest) (agentReply, error) {
	c, err := a.conn(r)
	if err != nil {
		return agentReply{}, err
	}
	return agentReply{}, c.CloseWrite()
}

func (a *agent) close(r *agentRequest) (agentReply, error) {
	c, l, err := a.connOrListener(r)
	switch {
	case err != nil:
		return agentReply{}, err
	case c != nil:
		return agentReply{}, c.Close() // does not linger: returns at once
	}
	return agentReply{}, l.Close()
}

func (a *agent) setNoDelay(r *agentRequest) (agentReply, error) {
	c, err := a.conn(r)
	if err != nil {
		return agentReply{}, err
	}
	on, err := r.bool("on")
	if err != nil {
		return agentReply{}, err
	}
	return agentReply{}, c.SetNoDelay(on)
}

// state asks the engine, never a cache: a closed Conn keeps its engine
// endpoint, whose state is CLOSED once the engine has deleted the TCB.
func (a *agent) state(r *agentRequest) (agentReply, error) {
	c, l, err := a.connOrListener(r)
	switch {
	case err != nil:
		return agentReply{}, err
	case c != nil:
		return agentReply{State: c.State().String()}, nil
	}
	return agentReply{State: l.Endpoint().State().String()}, nil
}
