package otel_test

import (
	"errors"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/tap"
)

// cutSource is the random source of a Fault with Loss 0.5 that loses
// nothing until the cable is cut: every draw is near 1 (no loss) before,
// 0 (lost) after.
type cutSource struct{ cut atomic.Bool }

func (s *cutSource) Uint64() uint64 {
	if s.cut.Load() {
		return 0
	}
	return math.MaxUint64
}

// Connections that end badly, or not at all: the root's totals are what
// the engine's Info says of the connection at its end, and its status
// and error.type the error the application got.
//
// A reset: the client aborts mid-transfer; the server's end dies of
// ECONNRESET. A timeout: the cable is cut while the client has data in
// flight; its retransmissions back off until it gives up (RFC 9293
// 3.8.3, RFC 6298 5.5) with the error the application gets. An open connection when the tracer is
// closed: its spans are ended, the root saying the tracer closed it and
// the state it was in, no error.
func TestEndingsMatchInfo(t *testing.T) {
	t.Run("reset", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(t, worldOptions{})
			c, s := w.connect(t, 80)
			io.WriteString(c, "request")
			io.WriteString(s, "answer")
			w.advance(time.Second)
			c.SetLinger(0)
			c.Close()
			w.advance(0)
			_, err := io.ReadAll(s)
			w.advance(0)
			sv := w.traces(t, "server")
			if len(sv) != 1 {
				t.Fatalf("%d server traces, want 1", len(sv))
			}
			wantInfo(t, "server", sv[0].root, s.Info())
			wantAttrs(t, "server root", sv[0].root, map[string]string{"error.type": "ECONNRESET", "tcp.state.final": "ESTABLISHED"})
			if st := sv[0].root.Status; st.Code != codes.Error || err == nil || !strings.Contains(err.Error(), "reset") {
				t.Errorf("server root status %v, the read's error %v: want both a reset", st, err)
			}
			s.Close()
		})
	})
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			src := &cutSource{}
			w := newWorld(t, worldOptions{clientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
				return tap.NewFault(l, tap.FaultConfig{Loss: 0.5, Source: src, Inbound: &tap.FaultConfig{Loss: 0.5, Source: src}})
			}})
			c, s := w.connect(t, 80)
			defer s.Close()
			io.WriteString(c, "before the cut")
			w.advance(time.Second)
			src.cut.Store(true)
			io.WriteString(c, "after the cut")
			var err error
			for i := 0; err == nil; i++ {
				if i == 3600 {
					t.Fatal("client still open after an hour of fake time on a cut cable")
				}
				w.advance(time.Second)
				_, err = c.Write(nil)
				if c.Info().State.String() != "CLOSED" {
					err = nil
				}
			}
			cl := w.traces(t, "client")
			if len(cl) != 1 {
				t.Fatalf("%d client traces, want 1", len(cl))
			}
			t.Logf("client: %v; root %v", err, cl[0].root.Attributes)
			wantInfo(t, "client", cl[0].root, c.Info())
			// The error Write returns: ETIMEDOUT, or EHOSTUNREACH when
			// the neighbour stopped answering ARP (a soft error, which
			// Linux's tcp_write_err reports in place of ETIMEDOUT).
			var errno syscall.Errno
			if !errors.As(err, &errno) || (errno != syscall.ETIMEDOUT && errno != syscall.EHOSTUNREACH) {
				t.Fatalf("Write: %v, want ETIMEDOUT or EHOSTUNREACH", err)
			}
			want := map[syscall.Errno]string{syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EHOSTUNREACH: "EHOSTUNREACH"}[errno]
			wantAttrs(t, "client root", cl[0].root, map[string]string{"error.type": want, "tcp.state.final": "ESTABLISHED"})
			if st := cl[0].root.Status; st.Code != codes.Error {
				t.Errorf("client root status %v, want Error", st)
			}
			if st := cl[0].spans[otel.SpanTransfer].Status; st.Code != codes.Error {
				t.Errorf("client transfer status %v, want Error where it timed out", st)
			}
			c.Close()
		})
	})
	t.Run("open at Close", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(t, worldOptions{})
			c, s := w.connect(t, 80)
			io.WriteString(c, "request")
			io.ReadFull(s, make([]byte, 7))
			io.WriteString(s, "answer")
			w.advance(time.Second)
			w.ct.Close()
			if st := w.ct.Stats(); st.Open != 0 {
				t.Errorf("%d connections traced after Close, want 0", st.Open)
			}
			cl := w.traces(t, "client")
			if len(cl) != 1 {
				t.Fatalf("%d client traces, want 1 ended by Close", len(cl))
			}
			if got, want := cl[0].shape(), "tcp.connection(tcp.handshake tcp.transfer)"; got != want {
				t.Errorf("client trace:\n got %s\nwant %s", got, want)
			}
			wantInfo(t, "client", cl[0].root, c.Info())
			wantAttrs(t, "client root", cl[0].root, map[string]string{
				"tcp.close.cause": "tracer closed", "network.connection.state": "established",
				"tcp.state.final": "ESTABLISHED", "error.type": "",
			})
			// On the stack's clock, as every span time is: a trace on a
			// fake clock stays on it, and the same every run.
			if end := cl[0].root.EndTime; end.Before(cl[0].root.StartTime) || end.After(w.clock.Now()) {
				t.Errorf("client root ended at %v, want on the stack's clock, from %v to %v",
					end, cl[0].root.StartTime, w.clock.Now())
			}
			if st := cl[0].root.Status; st.Code != codes.Unset {
				t.Errorf("client root status %v, want Unset: the connection did not fail", st)
			}
			c.Close()
			s.Close()
		})
	})
}

// An ICMP error in SYN-SENT fails the open with the error it maps to
// (RFC 1122 4.2.3.9; icmp.go): the trace's error.type is that error, as
// the CLOSED event carries it, not EHOSTUNREACH for every ICMP error.
func TestICMPInSynSentErrorType(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ENETUNREACH, syscall.EHOSTUNREACH} {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		tr := otel.New(otel.Options{TracerProvider: tp})
		id, at := newWorldID(1), time.Unix(0, 0)
		tr.Observe(event.Event{Time: at, Kind: event.KindState, Conn: id, From: event.Closed, To: event.SynSent,
			Cause: event.Cause{Kind: event.CauseUser, Detail: "connect"}})
		tr.Observe(event.Event{Time: at, Kind: event.KindState, Conn: id, From: event.SynSent, To: event.Closed,
			Cause: event.Cause{Kind: event.CauseSegment, Detail: "ICMP " + errno.Error()}, Err: errno})
		var root tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.Name == otel.SpanConnection {
				root = s
			}
		}
		wantAttrs(t, errno.Error(), root, map[string]string{"error.type": map[syscall.Errno]string{
			syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ENETUNREACH: "ENETUNREACH", syscall.EHOSTUNREACH: "EHOSTUNREACH"}[errno]})
		if root.Status.Code != codes.Error || !strings.Contains(root.Status.Description, errno.Error()) {
			t.Errorf("%s: root status %v, want Error saying %q", errno, root.Status, errno.Error())
		}
	}
}

// A connection with more span events than the SDK keeps on one span
// (sdktrace.DefaultEventCountLimit, 128, which drops the oldest): by
// default every event the tracer did not record is in tcp.events_dropped,
// none lost silently in the SDK.
func TestEventBudgetWithinSpanLimit(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)) // the SDK's default span limits
	tr := otel.New(otel.Options{TracerProvider: tp})
	id, at := newWorldID(1), time.Unix(0, 0)
	const drops = 300
	tr.Observe(event.Event{Time: at, Kind: event.KindState, Conn: id, From: event.Closed, To: event.SynSent})
	tr.Observe(event.Event{Time: at, Kind: event.KindState, Conn: id, From: event.SynSent, To: event.Established})
	for range drops {
		tr.Observe(event.Event{Time: at, Kind: event.KindDrop, Conn: id, Drop: event.DropReason(1)})
	}
	tr.Observe(event.Event{Time: at, Kind: event.KindState, Conn: id, From: event.Established, To: event.Closed,
		Cause: event.Cause{Kind: event.CauseSegment, Key: event.SegKey{Flags: event.FlagRst}}})
	var kept, sdkDropped int
	var root tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		kept += len(s.Events)
		sdkDropped += s.DroppedEvents
		if s.Name == otel.SpanConnection {
			root = s
		}
	}
	counted := atoi(attr(root, "tcp.events_dropped"))
	if sdkDropped != 0 || kept+counted != drops+3 {
		t.Errorf("%d span events kept, %d in tcp.events_dropped, %d dropped by the SDK unseen; want %d kept or counted, none unseen",
			kept, counted, sdkDropped, drops+3)
	}
}
