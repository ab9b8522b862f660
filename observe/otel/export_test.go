package otel_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	otelapi "go.opentelemetry.io/otel"

	"github.com/tapstack/tapstack/event"
	otel "github.com/tapstack/tapstack/observe/otel"
)

// A collector that is down, refuses, hangs or answers with an error or
// garbage: the engine's events never wait on it (each Observe returns at
// once), the spans waiting for it are bounded by the queue, every span is
// accounted for (exported, failed, dropped or still pending) in
// ExportStats, and Shutdown returns within its deadline.
func TestExportToBadCollector(t *testing.T) {
	// Each failed export is reported to OpenTelemetry's error handler
	// too, which logs it: hundreds of lines here.
	defer otelapi.SetErrorHandler(otelapi.GetErrorHandler())
	otelapi.SetErrorHandler(otelapi.ErrorHandlerFunc(func(error) {}))
	hang := make(chan struct{})
	defer close(hang) // before the servers' Close, which waits for their handlers
	httpStub := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	// silent accepts connections and never answers: a collector that
	// hangs before HTTP or gRPC begins.
	silent := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		return ln.Addr().String()
	}
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}()
	collectors := []struct {
		name, endpoint string
		failsFast      bool // every export fails at once: nothing is left pending
	}{
		{"http refused", "http://" + refused, true},
		{"grpc refused", "grpc://" + refused, false}, // gRPC tries to connect until the deadline
		{"http silent", "http://" + silent(), false},
		{"grpc silent", silent(), false},
		{"http hangs after the request", httpStub(func(w http.ResponseWriter, r *http.Request) { <-hang }), false},
		{"http 500", httpStub(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}), true},
		{"http garbage", httpStub(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.Write([]byte(strings.Repeat("\xff\xfe garbage", 100)))
		}), true},
	}
	const conns = 4000 // three spans each: the root, tcp.handshake, tcp.transfer
	for _, col := range collectors {
		t.Run(col.name, func(t *testing.T) {
			tp, err := otel.NewOTLPProvider(context.Background(), col.endpoint, "test")
			if err != nil {
				t.Fatal(err)
			}
			tr := otel.New(otel.Options{TracerProvider: tp, MaxConns: 16})
			var slowest time.Duration
			at := time.Unix(0, 0)
			for i := range conns {
				id := newWorldID(i)
				for _, ev := range []event.Event{
					{Kind: event.KindState, From: event.Closed, To: event.SynSent},
					{Kind: event.KindState, From: event.SynSent, To: event.Established},
					{Kind: event.KindState, From: event.Established, To: event.Closed,
						Cause: event.Cause{Kind: event.CauseSegment, Key: event.SegKey{Flags: event.FlagRst}}},
				} {
					ev.Conn, ev.Time = id, at
					start := time.Now()
					tr.Observe(ev)
					slowest = max(slowest, time.Since(start))
				}
				if st := tp.ExportStats(); st.Pending > otel.DefaultMaxQueueSize+otel.DefaultMaxExportBatch {
					t.Fatalf("after %d connections: %d spans pending, more than the queue and a batch (%d+%d)",
						i+1, st.Pending, otel.DefaultMaxQueueSize, otel.DefaultMaxExportBatch)
				}
			}
			// A collector that hangs holds a waiting event for as long as
			// the test runs; a loaded machine may hold one for a while.
			if slowest > time.Second {
				t.Errorf("an event took %v to observe: the engine waited on the collector", slowest)
			}

			fctx, fcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			start := time.Now()
			ferr := tp.ForceFlush(fctx)
			fcancel()
			if d := time.Since(start); d > 800*time.Millisecond {
				t.Errorf("ForceFlush took %v, its deadline was 300ms (%v)", d, ferr)
			}

			const within = time.Second
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			start = time.Now()
			err = tp.Shutdown(ctx)
			if d := time.Since(start); d > within+500*time.Millisecond {
				t.Errorf("Shutdown took %v, its deadline was %v", d, within)
			}
			st := tp.ExportStats()
			t.Logf("Shutdown: %v; %+v", err, st)
			if st.Spans != 3*conns || st.Exported != 0 {
				t.Errorf("%d spans ended, %d exported; want %d and none", st.Spans, st.Exported, 3*conns)
			}
			if st.Failed+st.Dropped+st.Pending != st.Spans {
				t.Errorf("failed %d + dropped %d + pending %d != %d spans: some went uncounted",
					st.Failed, st.Dropped, st.Pending, st.Spans)
			}
			if st.Failed+st.Dropped == 0 {
				t.Errorf("no span counted as failed or dropped")
			}
			if col.failsFast && (err != nil || st.Pending != 0 || st.Failed == 0 || st.LastError == nil) {
				t.Errorf("Shutdown: %v, %d spans pending, %d failed (%v); want every export done, failed",
					err, st.Pending, st.Failed, st.LastError)
			}
			if !col.failsFast && st.Dropped == 0 {
				t.Errorf("no span dropped though the collector never answered")
			}
		})
	}
}
