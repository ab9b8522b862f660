package otel_test

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tapstack/tapstack/conn"
	otel "github.com/tapstack/tapstack/observe/otel"
)

// A clean close, the client's FIN first: the client goes through
// FIN-WAIT-1, FIN-WAIT-2 and TIME-WAIT, the server through CLOSE-WAIT
// and LAST-ACK. Each side's connection is one trace with the phases of
// RFC 9293 3.5 and 3.6 as spans, the byte counts on the root, and an
// application's span made a child of the server's connection span.
func TestCleanCloseClientFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, worldOptions{})
		c, s := w.connect(t, 80)

		// The application's own span, in the server connection's trace.
		sc := w.st.SpanContext(s)
		if !sc.IsValid() {
			t.Fatal("no span context for the accepted connection")
		}
		_, app := w.tp.Tracer("app").Start(w.st.ContextWithConn(context.Background(), s), "GET /")
		app.End()
		if got := w.ct.SpanContext(c); !got.IsValid() || got.TraceID() == sc.TraceID() {
			t.Errorf("client span context %v: want a valid one of its own trace", got)
		}

		got := readAll(s)
		io.WriteString(c, "hello")
		c.Close()
		if b := <-got; string(b) != "hello" {
			t.Fatalf("server read %q", b)
		}
		s.Close()
		w.advance(2 * timeWait)
		if sc := w.st.SpanContext(s); sc.IsValid() {
			t.Error("span context still given for a closed connection")
		}

		cl, sv := w.traces(t, "client"), w.traces(t, "server")
		if len(cl) != 1 || len(sv) != 1 {
			t.Fatalf("%d client and %d server traces, want one each", len(cl), len(sv))
		}
		ctr, str := cl[0], sv[0]
		if got, want := ctr.shape(), "tcp.connection(tcp.handshake tcp.transfer tcp.teardown(tcp.time_wait))"; got != want {
			t.Errorf("client trace:\n got %s\nwant %s", got, want)
		}
		if got, want := str.shape(), "tcp.connection(tcp.handshake(tcp.syn_queue) tcp.accept_queue tcp.transfer tcp.teardown)"; got != want {
			t.Errorf("server trace:\n got %s\nwant %s", got, want)
		}
		if ctr.root.SpanKind != trace.SpanKindClient || str.root.SpanKind != trace.SpanKindServer {
			t.Errorf("span kinds %v and %v, want client and server", ctr.root.SpanKind, str.root.SpanKind)
		}
		wantAttrs(t, "client root", ctr.root, map[string]string{
			"network.transport": "tcp", "network.type": "ipv4",
			"network.peer.address": "192.0.2.1", "network.peer.port": "80",
			"server.address": "192.0.2.1", "server.port": "80", "client.address": "192.0.2.2",
			"tcp.role": "active", "tcp.state.final": "TIME-WAIT", "network.connection.state": "time_wait",
			"tcp.close.cause": "timer time-wait", "tcp.bytes_sent": "5", "tcp.bytes_acked": "5",
			"tcp.bytes_received": "0", "tcp.retransmits": "0", "error.type": "",
		})
		wantAttrs(t, "server root", str.root, map[string]string{
			"network.local.address": "192.0.2.1", "network.local.port": "80",
			"server.address": "192.0.2.1", "server.port": "80", "client.address": "192.0.2.2",
			"tcp.role": "passive", "tcp.state.final": "LAST-ACK", "network.connection.state": "last_ack",
			"tcp.bytes_sent": "0", "tcp.bytes_received": "5", "tcp.retransmits": "0", "error.type": "",
		})
		wantAttrs(t, "client teardown", ctr.spans[otel.SpanTeardown], map[string]string{"tcp.teardown.first_fin": "local"})
		wantAttrs(t, "server teardown", str.spans[otel.SpanTeardown], map[string]string{"tcp.teardown.first_fin": "peer"})
		wantAttrs(t, "accept queue", str.spans[otel.SpanAcceptQueue], map[string]string{"tcp.accept_queue.outcome": "accepted"})
		for _, tr := range []*connTrace{ctr, str} {
			if tr.root.Status.Code == codes.Error {
				t.Errorf("%s: status %v on a clean close", tr.root.Name, tr.root.Status)
			}
		}
		wantStates(t, "client", ctr, "CLOSED→SYN-SENT", "SYN-SENT→ESTABLISHED", "ESTABLISHED→FIN-WAIT-1",
			"FIN-WAIT-1→FIN-WAIT-2", "FIN-WAIT-2→TIME-WAIT", "TIME-WAIT→CLOSED")
		wantStates(t, "server", str, "CLOSED→SYN-RECEIVED", "SYN-RECEIVED→ESTABLISHED", "ESTABLISHED→CLOSE-WAIT",
			"CLOSE-WAIT→LAST-ACK", "LAST-ACK→CLOSED")

		// TIME-WAIT lasts 2*MSL (here the TimeWait option) on the fake
		// clock, and the root spans the whole life.
		tw := ctr.spans[otel.SpanTimeWait]
		if d := tw.EndTime.Sub(tw.StartTime); d != timeWait {
			t.Errorf("tcp.time_wait lasted %v, want %v", d, timeWait)
		}
		if !ctr.root.EndTime.Equal(tw.EndTime) || !ctr.root.StartTime.Equal(ctr.spans[otel.SpanHandshake].StartTime) {
			t.Error("the client root does not span handshake to TIME-WAIT's end")
		}

		// The application's span is the server connection's child.
		var appSpan bool
		for _, s := range str.all {
			if s.Name == "GET /" {
				appSpan = s.Parent.SpanID() == str.root.SpanContext.SpanID()
			}
		}
		if !appSpan {
			t.Error("the application's span is not a child of the server's tcp.connection span")
		}
		if st := w.st.Stats(); st.Traced != 1 || st.Open != 0 {
			t.Errorf("server tracer stats %+v, want 1 traced, 0 open", st)
		}
	})
}

// The server closes first: now the server waits in TIME-WAIT, and the
// client's teardown starts with the peer's FIN.
func TestCleanCloseServerFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, worldOptions{})
		c, s := w.connect(t, 80)
		got := readAll(c)
		io.WriteString(s, "response")
		s.Close()
		if b := <-got; string(b) != "response" {
			t.Fatalf("client read %q", b)
		}
		c.Close()
		w.advance(2 * timeWait)

		cl, sv := w.traces(t, "client"), w.traces(t, "server")
		if len(cl) != 1 || len(sv) != 1 {
			t.Fatalf("%d client and %d server traces, want one each", len(cl), len(sv))
		}
		if got, want := cl[0].shape(), "tcp.connection(tcp.handshake tcp.transfer tcp.teardown)"; got != want {
			t.Errorf("client trace:\n got %s\nwant %s", got, want)
		}
		if got, want := sv[0].shape(), "tcp.connection(tcp.handshake(tcp.syn_queue) tcp.accept_queue tcp.transfer tcp.teardown(tcp.time_wait))"; got != want {
			t.Errorf("server trace:\n got %s\nwant %s", got, want)
		}
		wantAttrs(t, "client root", cl[0].root, map[string]string{
			"tcp.state.final": "LAST-ACK", "tcp.bytes_received": "8", "tcp.bytes_sent": "0",
		})
		wantAttrs(t, "server root", sv[0].root, map[string]string{
			"tcp.state.final": "TIME-WAIT", "tcp.bytes_sent": "8", "tcp.bytes_acked": "8", "tcp.close.cause": "timer time-wait",
		})
		wantAttrs(t, "client teardown", cl[0].spans[otel.SpanTeardown], map[string]string{"tcp.teardown.first_fin": "peer"})
		wantStates(t, "server", sv[0], "CLOSED→SYN-RECEIVED", "SYN-RECEIVED→ESTABLISHED", "ESTABLISHED→FIN-WAIT-1",
			"FIN-WAIT-1→FIN-WAIT-2", "FIN-WAIT-2→TIME-WAIT", "TIME-WAIT→CLOSED")
	})
}

// A reset: the client aborts (SO_LINGER 0, so Close sends RST); the
// server's connection dies of ECONNRESET in its transfer phase, and both
// roots carry the error.
func TestReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, worldOptions{})
		c, s := w.connect(t, 80)
		io.WriteString(c, "partial")
		w.advance(0)
		c.SetLinger(0)
		c.Close()
		w.advance(0)
		if _, err := io.ReadAll(s); err == nil || !strings.Contains(err.Error(), "reset") {
			t.Errorf("server read: %v, want a reset", err)
		}
		s.Close()
		w.advance(0)

		cl, sv := w.traces(t, "client"), w.traces(t, "server")
		if len(cl) != 1 || len(sv) != 1 {
			t.Fatalf("%d client and %d server traces, want one each", len(cl), len(sv))
		}
		if got, want := sv[0].shape(), "tcp.connection(tcp.handshake(tcp.syn_queue) tcp.accept_queue tcp.transfer)"; got != want {
			t.Errorf("server trace:\n got %s\nwant %s", got, want)
		}
		wantAttrs(t, "server root", sv[0].root, map[string]string{
			"error.type": "ECONNRESET", "tcp.state.final": "ESTABLISHED", "tcp.bytes_received": "7",
		})
		if st := sv[0].root.Status; st.Code != codes.Error || !strings.Contains(st.Description, "reset") {
			t.Errorf("server root status %v, want Error: reset", st)
		}
		if st := sv[0].spans[otel.SpanTransfer].Status; st.Code != codes.Error {
			t.Errorf("server transfer status %v, want Error where the reset happened", st)
		}
		wantAttrs(t, "client root", cl[0].root, map[string]string{"error.type": "ECONNABORTED", "tcp.state.final": "ESTABLISHED"})
		wantStates(t, "server", sv[0], "CLOSED→SYN-RECEIVED", "SYN-RECEIVED→ESTABLISHED", "ESTABLISHED→CLOSED")
	})
}

func wantStates(t *testing.T, what string, ct *connTrace, want ...string) {
	t.Helper()
	if got := ct.states(); !slices.Equal(got, want) {
		t.Errorf("%s state changes:\n got %s\nwant %s", what, strings.Join(got, " "), strings.Join(want, " "))
	}
}

// RatioSampler gives a connection the same answer every time, and
// samples about the ratio asked of many.
func TestRatioSampler(t *testing.T) {
	none, all := otel.RatioSampler(0), otel.RatioSampler(1)
	half := otel.RatioSampler(0.5)
	var n int
	for i := range 1000 {
		w := newWorldID(i)
		if none(w) || !all(w) {
			t.Fatal("ratio 0 or 1 answered otherwise")
		}
		if a, b := half(w), half(w); a != b {
			t.Fatal("not deterministic")
		}
		if half(w) {
			n++
		}
	}
	if n < 400 || n > 600 {
		t.Errorf("ratio 0.5 sampled %d of 1000", n)
	}
}

// A connection the sampler refuses leaves no trace and no state, and is
// counted; a connection over its event budget keeps its spans, drops
// the events past the budget and says how many on its root.
func TestSamplingAndEventBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, worldOptions{clientSample: otel.RatioSampler(0), serverMaxEvents: 3})
		c, s := w.connect(t, 80)
		if w.ct.SpanContext(c).IsValid() {
			t.Error("an unsampled connection has a span context")
		}
		got := readAll(s)
		io.WriteString(c, "hello")
		c.Close()
		<-got
		s.Close()
		w.advance(2 * timeWait)

		if cl := w.traces(t, "client"); len(cl) != 0 {
			t.Errorf("%d client traces, want none", len(cl))
		}
		if st := w.ct.Stats(); st.Unsampled != 1 || st.Traced != 0 || st.MaxOpen != 0 {
			t.Errorf("client tracer stats %+v, want 1 unsampled, nothing traced", st)
		}
		sv := w.traces(t, "server")
		if len(sv) != 1 {
			t.Fatalf("%d server traces, want 1", len(sv))
		}
		var events int
		for _, sp := range sv[0].all {
			events += len(sp.Events)
		}
		st := w.st.Stats()
		if events != 3 || st.EventsDropped == 0 || attr(sv[0].root, "tcp.events_dropped") != strconv.FormatUint(st.EventsDropped, 10) {
			t.Errorf("%d span events, tcp.events_dropped %s, Stats.EventsDropped %d; want 3 and the two equal and not 0",
				events, attr(sv[0].root, "tcp.events_dropped"), st.EventsDropped)
		}
		if got, want := sv[0].shape(), "tcp.connection(tcp.handshake(tcp.syn_queue) tcp.accept_queue tcp.transfer tcp.teardown)"; got != want {
			t.Errorf("server trace:\n got %s\nwant %s", got, want)
		}
	})
}

// A connection refused: the SYN meets no listener and is answered with
// RST (RFC 9293 3.10.7.1); the client's trace is the handshake alone,
// failed with ECONNREFUSED.
func TestRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, worldOptions{})
		if _, err := conn.Dial(w.client, "tcp", "192.0.2.1:81"); err == nil {
			t.Fatal("dial to a port with no listener succeeded")
		}
		w.advance(0)
		cl := w.traces(t, "client")
		if len(cl) != 1 {
			t.Fatalf("%d client traces, want 1", len(cl))
		}
		if got, want := cl[0].shape(), "tcp.connection(tcp.handshake)"; got != want {
			t.Errorf("trace:\n got %s\nwant %s", got, want)
		}
		wantAttrs(t, "root", cl[0].root, map[string]string{"error.type": "ECONNREFUSED", "tcp.state.final": "SYN-SENT"})
		if st := cl[0].spans[otel.SpanHandshake].Status; st.Code != codes.Error {
			t.Errorf("handshake status %v, want Error", st)
		}
		if sv := w.traces(t, "server"); len(sv) != 0 {
			t.Errorf("%d server traces for a refused SYN, want none", len(sv))
		}
	})
}

// TestResetAfterDelayedACK: the bytes received are those that arrived in
// order, whether or not our ACK for them left before the end. A request
// and its answer put the server's end in the request/response pattern,
// where it delays its ACKs (RFC 9293 3.8.6.3; Linux's pingpong mode);
// the client's next 4 bytes arrive, their ACK waits, and the client
// aborts: tcp.bytes_received is 7, as the engine's Info says, not the 3
// its last ACK acknowledged.
func TestResetAfterDelayedACK(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, worldOptions{})
		c, s := w.connect(t, 80)
		io.WriteString(c, "GET")
		w.advance(0)
		io.ReadFull(s, make([]byte, 3))
		io.WriteString(s, "OK")
		w.advance(0)
		io.ReadFull(c, make([]byte, 2))
		io.WriteString(c, "more")
		w.advance(0)
		c.SetLinger(0)
		c.Close()
		w.advance(0)
		in := s.Info()
		s.Close()
		w.advance(0)
		sv := w.traces(t, "server")
		if len(sv) != 1 {
			t.Fatalf("%d server traces", len(sv))
		}
		wantAttrs(t, "server root", sv[0].root, map[string]string{
			"error.type": "ECONNRESET", "tcp.bytes_received": "7", "tcp.bytes_sent": "2",
		})
		if in.BytesReceived != 7 {
			t.Errorf("Info.BytesReceived %d, want 7", in.BytesReceived)
		}
	})
}
