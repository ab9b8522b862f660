package pktscript

import (
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
)

// Status is a script's outcome.
type Status uint8

// The outcomes.
const (
	Pass Status = iota + 1
	Fail
	Skip
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	case Skip:
		return "SKIP"
	}
	return "?"
}

// Result is what running a script found.
type Result struct {
	Path   string
	Status Status
	// Line is the script line a failure is at (0 when it is not at one).
	Line int
	// Reason is one line: what failed, or what a skipped script needs.
	Reason string
	// Detail explains a failure: the expected packet, the one the stack
	// sent, and the packets and engine events before it.
	Detail string
	// Trace is the whole exchange, one line per packet, call and engine
	// event, with script times.
	Trace string
	// CaptureErr is the error that stopped writing Options.Capture, if
	// any; the run itself goes on.
	CaptureErr error
}

// String is the one-line summary: "PASS", "FAIL line 17: ...", "SKIP:
// needs ...".
func (r *Result) String() string {
	switch r.Status {
	case Pass:
		return "PASS"
	case Skip:
		return "SKIP: " + r.Reason
	case Fail:
		if r.Line > 0 {
			return fmt.Sprintf("FAIL line %d: %s", r.Line, r.Reason)
		}
		return "FAIL: " + r.Reason
	}
	return "?"
}

// Options configure a run.
type Options struct {
	// Log, if set, receives the exchange as it happens.
	Log io.Writer
	// Capture, if set, receives a pcapng section with the exchange:
	// every packet with the engine's comments, on the script's clock.
	Capture io.Writer
	// Observer, if set, also receives the engine's events, after the
	// script's own record of them, for example a tracer
	// (observe/otel). Their times are the script's fake clock, which
	// starts at the Unix epoch.
	Observer event.Observer
	// Dir is where a script's relative shell paths (`../common/defaults.sh`)
	// are resolved for RunString and ExecString. Run and Exec use the
	// script's own directory.
	Dir string
}

// Run runs the script at path against a fresh tapstack stack, reporting a
// failure with t.Fatal and a skip with t.Skip.
func Run(t testing.TB, path string, opts Options) {
	t.Helper()
	report(t, Exec(path, opts))
}

// RunString runs the script src, named name in messages.
func RunString(t testing.TB, name, src string, opts Options) {
	t.Helper()
	report(t, ExecString(name, src, opts))
}

func report(t testing.TB, r *Result) {
	t.Helper()
	switch r.Status {
	case Fail:
		t.Fatalf("%s: %s\n%s", r.Path, r.String(), r.Detail)
	case Skip:
		t.Skipf("%s: %s", r.Path, r.String())
	}
}

// Exec runs the script at path and returns what it found.
func Exec(path string, opts Options) *Result {
	s, err := ParseFile(path)
	if err != nil {
		return parseResult(path, err)
	}
	if opts.Dir == "" {
		opts.Dir = filepath.Dir(path)
	}
	return execScript(s, opts)
}

// ExecString runs the script src, named name.
func ExecString(name, src string, opts Options) *Result {
	s, err := Parse(name, src)
	if err != nil {
		return parseResult(name, err)
	}
	if opts.Dir == "" {
		opts.Dir = "."
	}
	return execScript(s, opts)
}

func parseResult(path string, err error) *Result {
	r := &Result{Path: path, Status: Fail, Reason: err.Error()}
	if pe, ok := err.(*ParseError); ok {
		r.Line, r.Reason = pe.Line, pe.Msg
		if pe.Unsupported != "" {
			r.Status, r.Line, r.Reason = Skip, 0, fmt.Sprintf("needs %s (line %d)", pe.Unsupported, pe.Line)
		}
	}
	return r
}

// failure ends a run: a failed check at a line.
type failure struct {
	line   int
	msg    string
	detail string
}

// runTB stands in for testing.TB under the fixture, which reports its
// own failures with Fatalf: they end the run as failures.
type runTB struct {
	testing.TB // nil: only the methods below are used
	cleanups   []func()
}

func (*runTB) Helper() {}

func (t *runTB) Fatalf(format string, args ...any) {
	panic(failure{msg: "fixture: " + fmt.Sprintf(format, args...)})
}

func (t *runTB) Fatal(args ...any) { panic(failure{msg: "fixture: " + fmt.Sprint(args...)}) }

func (t *runTB) Errorf(format string, args ...any) {
	panic(failure{msg: "fixture: " + fmt.Sprintf(format, args...)})
}

func (t *runTB) Logf(string, ...any)  {}
func (t *runTB) Log(...any)           {}
func (t *runTB) Name() string         { return "pktscript" }
func (t *runTB) Cleanup(f func())     { t.cleanups = append(t.cleanups, f) }
func (t *runTB) Skipf(string, ...any) { panic(failure{msg: "fixture skipped"}) }
func (t *runTB) Failed() bool         { return false }

func (t *runTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// The defaults of packetdrill's config.c.
const (
	defaultTolerance        = 4 * time.Millisecond
	defaultTolerancePercent = 12.5
	defaultBindPort         = 8080
	defaultConnectPort      = 8080
	firstEphemeralPort      = 40000
)

// Limits that keep a run bounded whatever the script says.
const (
	// sniffGrace is how long past its time a packet is waited for, to
	// tell "late" from "never": packetdrill's sniff timeout.
	sniffGrace = 2 * time.Second
	// anyTimeWait bounds the wait for a packet at time "*".
	anyTimeWait = 10 * time.Minute
	// blockLimit bounds how long a call the script expects to return at
	// once may block before the run fails.
	blockLimit = 2 * time.Minute
	// maxSteps bounds the clock steps of one wait.
	maxSteps = 1 << 20
	// maxTrace bounds the lines of the trace kept.
	maxTrace = 1 << 16
	// maxOutQueue bounds the packets the stack sent that the script has
	// not consumed.
	maxOutQueue = 1 << 16
	// maxSockets bounds the sockets a script may hold.
	maxSockets = 1024
)

// runner runs one script.
type runner struct {
	s    *Script
	opts Options
	eng  *engine
	set  settings

	v6                bool
	tolerance         time.Duration
	tolerancePercent  float64
	tsTick            time.Duration // --tcp_ts_tick_usecs: check outbound TS val
	tsEcrScaled       bool
	strict            bool
	bindPort, connect uint16

	// The event being run and the previous one.
	line     int
	last     lastEvent
	haveLast bool

	socks   map[int]*sock
	conns   []*connState
	sut     *connState // the socket under test: packets without ports are its
	sutLn   *sock      // the listening socket under test, until a packet makes a child
	nextEph uint16

	out     []*sniffed // packets the stack sent, not yet consumed by the script
	pending *pendingCall

	py    *pyEnv
	needs []string // what skipped checks need

	trace   []string
	cap     *capture
	pendEvs []string // engine events not yet attached to a captured frame
}

type lastEvent struct {
	time    time.Duration
	inbound bool
}

// sniffed is a packet the stack sent.
type sniffed struct {
	at   time.Duration
	w    *wirePacket
	c    *connState // nil: no socket of the script's
	line string     // its trace line
}

func execScript(s *Script, opts Options) (res *Result) {
	r := &runner{
		s:                s,
		opts:             opts,
		set:              defaultSettings(),
		tolerance:        defaultTolerance,
		tolerancePercent: defaultTolerancePercent,
		bindPort:         defaultBindPort,
		connect:          defaultConnectPort,
		socks:            map[int]*sock{},
		nextEph:          firstEphemeralPort,
		py:               newPyEnv(),
	}
	tb := &runTB{}
	res = &Result{Path: s.Path}
	defer func() {
		if x := recover(); x != nil {
			switch f := x.(type) {
			case failure:
				res.Status, res.Line, res.Reason, res.Detail = Fail, f.line, f.msg, f.detail
			case *skipError:
				res.Status, res.Reason = Skip, f.Error()
			default:
				res.Status, res.Line = Fail, r.line
				res.Reason = fmt.Sprintf("panic: %v", x)
				res.Detail = string(debug.Stack())
			}
		}
		func() {
			// A failing cleanup must not hide the result.
			defer func() { _ = recover() }()
			tb.cleanup()
		}()
		if r.cap != nil {
			r.cap.flush()
			res.CaptureErr = r.cap.err
		}
		res.Trace = strings.Join(r.trace, "\n")
	}()
	r.configure()
	r.eng = newEngine(tb, r.set, opts.Observer)
	if opts.Capture != nil {
		var err error
		if r.cap, err = newCapture(opts.Capture, s.Path, r.v6); err != nil {
			return &Result{Path: s.Path, Status: Fail, Reason: "capture: " + err.Error()}
		}
	}
	for i := range s.Events {
		r.runEvent(&s.Events[i])
	}
	r.finish()
	switch {
	case len(r.needs) > 0:
		res.Status, res.Reason = Skip, "needs "+strings.Join(r.needs, ", ")
	default:
		res.Status = Pass
	}
	return res
}

// configure reads the script's options and its first command.
func (r *runner) configure() {
	for _, o := range r.s.Options {
		r.line = o.Line
		r.option(o)
	}
	if r.s.Init != "" {
		r.line = r.s.InitLine
		if skip := r.set.runCommand(r.s.Init, r.opts.Dir, 0); skip != nil {
			panic(skip)
		}
	}
	if skip := r.set.check(); skip != nil {
		panic(skip)
	}
	for _, a := range r.set.applied {
		r.logf("setup: %s", a)
	}
}

func (r *runner) option(o ScriptOption) {
	num := func() int64 {
		n, err := strconv.ParseInt(o.Value, 10, 64)
		if err != nil || n < 0 {
			r.fail("bad value %q for --%s", o.Value, o.Name)
		}
		return n
	}
	switch o.Name {
	case "tolerance_usecs":
		r.tolerance = time.Duration(num()) * time.Microsecond
	case "tolerance_percent":
		f, err := strconv.ParseFloat(o.Value, 64)
		if err != nil || f < 0 {
			r.fail("bad value %q for --%s", o.Value, o.Name)
		}
		r.tolerancePercent = f
	case "tcp_ts_tick_usecs":
		r.tsTick = time.Duration(num()) * time.Microsecond
	case "tcp_ts_ecr_scaled":
		r.tsEcrScaled = true
	case "strict_segments":
		r.strict = true
	case "ip_version":
		switch o.Value {
		case "ipv4":
		case "ipv6":
			r.v6 = true
		default:
			panic(needs("--ip_version=%s", o.Value))
		}
	case "local_ip", "remote_ip", "gateway_ip", "netmask_ip":
		// The fixture has its own addresses; packet lines name none.
		r.logf("setup: --%s=%s: the fixture's addresses are used", o.Name, o.Value)
	case "bind_port", "connect_port":
		n := num()
		if n == 0 || n > 65535 {
			r.fail("bad value %q for --%s", o.Value, o.Name)
		}
		if o.Name == "bind_port" {
			r.bindPort = uint16(n)
		} else {
			r.connect = uint16(n)
		}
	case "define", "verbose", "non_fatal", "dry_run", "debug":
	default:
		panic(needs("option --%s", o.Name))
	}
}

func (r *runner) stackAddr() netip.Addr {
	if r.v6 {
		return stackAddr6
	}
	return stackAddr4
}

func (r *runner) peerAddr() netip.Addr {
	if r.v6 {
		return peerAddr6
	}
	return peerAddr4
}

// fail ends the run with a failure at the current line.
func (r *runner) fail(format string, args ...any) {
	panic(failure{line: r.line, msg: fmt.Sprintf(format, args...), detail: r.recent()})
}

// failDetail ends the run with a failure and an explanation.
func (r *runner) failDetail(detail, format string, args ...any) {
	panic(failure{line: r.line, msg: fmt.Sprintf(format, args...), detail: detail + r.recent()})
}

// recent is the end of the trace, for a failure's detail.
func (r *runner) recent() string {
	const n = 25
	start := max(len(r.trace)-n, 0)
	if len(r.trace) == 0 {
		return ""
	}
	return "exchange so far (last " + strconv.Itoa(len(r.trace)-start) + " lines; > from tapstack, < from the peer):\n" +
		strings.Join(r.trace[start:], "\n") + "\n"
}

func (r *runner) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if len(r.trace) < maxTrace {
		r.trace = append(r.trace, line)
	}
	if r.opts.Log != nil {
		fmt.Fprintln(r.opts.Log, line)
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.6f", d.Seconds()) }

// need records what a check that could not be made needs.
func (r *runner) need(what string) {
	for _, n := range r.needs {
		if n == what {
			return
		}
	}
	r.needs = append(r.needs, what)
	r.logf("%s   line %d: not checked: needs %s", secs(r.eng.now()), r.line, what)
}

// eventTimes returns an event's time and the end of its range, both since
// the script's start, as packetdrill's adjust_relative_event_times does:
// relative to now, except an inbound packet after an inbound packet,
// which is relative to that packet's script time so that errors do not
// add up.
func (r *runner) eventTimes(ev *Event) (t, end time.Duration) {
	offset := r.eng.now()
	inbound := ev.Kind == EventPacket && ev.Packet.Dir == Inbound
	if inbound && r.haveLast && r.last.inbound {
		offset = r.last.time
	}
	switch ev.TimeKind {
	case TimeAbsolute:
		return ev.Time, ev.Time
	case TimeAbsoluteRange:
		return ev.Time, ev.End
	case TimeRelativeRange:
		return offset + ev.Time, offset + ev.End
	}
	return offset + ev.Time, offset + ev.Time // relative, any
}

// toleranceFor is packetdrill's: the script's tolerance, or
// tolerance_percent of the time since the previous event if that is more.
func (r *runner) toleranceFor(t, since time.Duration) time.Duration {
	tol := r.tolerance
	if dyn := time.Duration(r.tolerancePercent / 100 * float64(t-since)); dyn > tol {
		tol = dyn
	}
	return tol
}

func (r *runner) runEvent(ev *Event) {
	r.line = ev.Line
	t, end := r.eventTimes(ev)
	since := t
	if r.haveLast {
		since = r.last.time
	}
	tol := r.toleranceFor(t, since)
	inbound := false
	switch ev.Kind {
	case EventPacket:
		if ev.Packet.Dir == Outbound {
			r.expectPacket(ev, t, end, tol)
		} else {
			inbound = true
			r.waitFor(t, tol, "inbound packet")
			r.injectPacket(ev.Packet)
		}
	case EventSyscall:
		r.waitFor(t, tol, "system call start")
		r.syscall(ev, t)
	case EventCommand:
		r.waitFor(t, tol, "command")
		r.command(ev.Command)
	case EventCode:
		r.waitFor(t, tol, "data collection for code")
		r.code(ev.Code)
	}
	r.last, r.haveLast = lastEvent{time: t, inbound: inbound}, true
}

// waitFor moves the clock to t and checks that the event is not late.
func (r *runner) waitFor(t, tol time.Duration, what string) {
	r.advanceTo(t)
	if now := r.eng.now(); now > t+tol {
		r.fail("timing error: expected %s at %s sec but happened at %s sec; tolerance %s sec",
			what, secs(t), secs(now), secs(tol))
	}
}

// advanceTo moves the clock to t, stopping at every timer on the way so
// that each packet is seen at the instant it leaves, and retrying a
// blocked call after each step.
func (r *runner) advanceTo(t time.Duration) {
	r.drain()
	for range maxSteps {
		now := r.eng.now()
		if now >= t {
			return
		}
		step := min(t, r.nextWake(now))
		r.eng.advance(step - now)
		r.drain()
	}
	r.fail("the clock did not reach %s sec in %d steps (a timer rearming itself?)", secs(t), maxSteps)
}

// nextWake is when something next happens by itself: a timer falls due
// or a blocked poll times out. It is never before now; "never" is a
// time far away.
func (r *runner) nextWake(now time.Duration) time.Duration {
	next := time.Duration(1 << 62)
	if t, ok := r.eng.nextTimer(); ok {
		next = max(t, now)
	}
	if p := r.pending; p != nil && p.wake > now && p.wake < next {
		next = p.wake
	}
	return next
}

// step moves the clock to the next timer, or to limit if none falls due
// before it. It returns false if the clock is at limit already.
func (r *runner) step(limit time.Duration) bool {
	now := r.eng.now()
	if now >= limit {
		return false
	}
	to := min(limit, r.nextWake(now))
	r.eng.advance(to - now)
	r.drain()
	return true
}

// drain takes what the stack sent and the engine's events since the last
// call, and retries a blocked call.
func (r *runner) drain() {
	for {
		now := r.eng.now()
		evs := r.eng.takeEvents()
		for _, ev := range evs {
			r.logf("%s   engine: %s", secs(ev.at), ev.text)
		}
		var frames []outFrame
		for range outboundCapacity + 1 {
			b, ok := r.eng.readOutbound()
			if !ok {
				break
			}
			w, err := decodeOutbound(b)
			if err != nil {
				r.fail("the stack sent a bad packet: %v", err)
			}
			frames = append(frames, outFrame{b, w})
			if w == nil {
				continue
			}
			sn := &sniffed{at: now, w: w, c: r.connOfOutbound(w)}
			sn.line = r.describeOutbound(sn)
			r.logf("%s > %s", secs(now), sn.line)
			if len(r.out) >= maxOutQueue {
				r.fail("more than %d packets sent and not expected by the script", maxOutQueue)
			}
			r.out = append(r.out, sn)
		}
		if r.cap != nil {
			r.capture(now, evs, frames)
		}
		if !r.retryPending() {
			return
		}
		// The call that completed may have sent packets.
	}
}

// outFrame is a packet the stack sent, decoded if it is TCP.
type outFrame struct {
	b []byte
	w *wirePacket
}

// capture writes the frames of one step with the engine's words for them:
// an inbound frame held by injectPacket gets the events its arrival made,
// each outbound frame the send events of its segment, and events no frame
// carries (a timer's, a call's) go on the next frame.
func (r *runner) capture(now time.Duration, evs []engineEvent, frames []outFrame) {
	var other []string
	for _, ev := range evs {
		if !ev.send {
			other = append(other, ev.describe)
		}
	}
	if r.cap.holding() {
		r.cap.release(strings.Join(dedupe(append(r.pendEvs, other...)), "; "), dropped(evs))
		r.pendEvs, other = nil, nil
	}
	for i, f := range frames {
		var parts []string
		if i == 0 {
			parts = append(parts, r.pendEvs...)
			parts = append(parts, other...)
			r.pendEvs, other = nil, nil
		}
		if f.w == nil {
			r.cap.frame(now, f.b, false, strings.Join(dedupe(append(parts, "not TCP")), "; "), false)
			continue
		}
		k := segKey{seq: f.w.seq, ack: f.w.ack, flags: f.w.flags, length: len(f.w.payload)}
		for _, ev := range evs {
			if ev.send && ev.hasKey && ev.key == k {
				parts = append(parts, ev.describe)
			}
		}
		r.cap.frame(now, f.b, false, strings.Join(dedupe(parts), "; "), false)
	}
	for _, o := range other {
		if len(r.pendEvs) < 64 {
			r.pendEvs = append(r.pendEvs, o)
		}
	}
}

func dropped(evs []engineEvent) bool {
	for _, ev := range evs {
		if ev.drop {
			return true
		}
	}
	return false
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// command runs a backquoted command in the middle of a script: only those
// that change nothing tapstack has are taken, since the stack is running.
func (r *runner) command(cmd string) {
	before := r.set
	before.applied = nil
	after := r.set
	after.applied = nil
	if skip := after.runCommand(cmd, r.opts.Dir, 0); skip != nil {
		panic(skip)
	}
	notes := after.applied
	after.applied = nil
	// The qdisc may change: the link's refusals follow it.
	dropAll := after.dropAll
	after.dropAll = before.dropAll
	// So may the routes' metrics: live connections follow them.
	route4, route6 := after.route4, after.route6
	after.route4, after.route6 = before.route4, before.route6
	if fmt.Sprint(before) != fmt.Sprint(after) {
		panic(needs("a setting changed while the stack runs: %s", abbrev(cmd, 60)))
	}
	r.set.dropAll = dropAll
	r.eng.peer.RefuseAll(dropAll)
	if route4 != before.route4 || route6 != before.route6 {
		r.set.route4, r.set.route6 = route4, route6
		if err := r.eng.setRoutes(r.set); err != nil {
			panic(needs("route metrics the stack refuses: %v", err))
		}
	}
	for _, n := range notes {
		r.logf("%s   command: %s", secs(r.eng.now()), n)
	}
}

// code evaluates a %{ }% block with the socket under test's TCP_INFO.
func (r *runner) code(code string) {
	c := r.sut
	if c == nil || r.sutLn != nil {
		r.fail("no connection under test for TCP_INFO")
	}
	ec := r.engineConn(c)
	if ec == nil {
		r.fail("no connection under test for TCP_INFO")
	}
	info := ec.tcpInfo()
	var missing []string
	for _, n := range tcpiNames(code) {
		if _, ok := info[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		for _, m := range missing {
			r.need(m + " in TCP_INFO") // one need per field, named once
		}
		return
	}
	if err := r.py.run(code, info); err != nil {
		var vals []string
		for _, n := range tcpiNames(code) {
			vals = append(vals, fmt.Sprintf("%s=%d", n, info[n]))
		}
		r.fail("%%{ %s }%%: %v (%s)", abbrev(code, 70), err, strings.Join(vals, " "))
	}
	r.logf("%s   code: %s: ok", secs(r.eng.now()), abbrev(code, 70))
	for _, o := range r.py.out {
		r.logf("%s   print: %s", secs(r.eng.now()), o)
	}
	r.py.out = nil
}

// finish ends the script: a call still blocked is an error, as in
// packetdrill.
func (r *runner) finish() {
	if r.pending != nil {
		r.line = r.pending.line
		r.fail("exiting while a blocking system call (%s) is in progress", r.pending.name)
	}
	if r.s.Cleanup != "" {
		var scratch settings
		_ = scratch.runCommand(r.s.Cleanup, r.opts.Dir, 0)
	}
}
