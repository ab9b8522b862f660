package otel_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tapstack/tapstack/conn"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// 10,000 short connections, 100 at a time, each a request and an answer:
// both tracers trace at most MaxConns connections at once and count the
// others (Traced + OverLimit is every connection end), at most four spans
// are open per traced connection, and once the last TIME-WAIT is over
// nothing is open.
func TestManyShortConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	synctest.Test(t, func(t *testing.T) {
		const (
			conns, parallel = 10_000, 100
			maxConns        = 64
		)
		live := &liveSpans{}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(live))
		ct := otel.New(otel.Options{TracerProvider: tp, MaxConns: maxConns})
		st := otel.New(otel.Options{TracerProvider: tp, MaxConns: maxConns})
		p, err := stack.NewPair(stack.PairOptions{
			Client: stack.Options{TCP: tcp.Options{TimeWait: 10 * time.Millisecond, Observer: ct.Observe}},
			Server: stack.Options{TCP: tcp.Options{TimeWait: 10 * time.Millisecond, Observer: st.Observe}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					io.CopyN(s, s, 2)
					s.Close()
				}()
			}
		}()
		var wg sync.WaitGroup
		sem := make(chan struct{}, parallel)
		for range conns {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				c, err := conn.DialContext(context.Background(), p.Client, "tcp", "192.0.2.1:80")
				if err != nil {
					t.Error(err)
					return
				}
				io.WriteString(c, "hi")
				io.ReadFull(c, make([]byte, 2))
				c.Close()
			})
		}
		wg.Wait()
		time.Sleep(time.Second) // every TIME-WAIT over, on the bubble's clock
		synctest.Wait()
		for name, tr := range map[string]*otel.Tracer{"client": ct, "server": st} {
			s := tr.Stats()
			t.Logf("%s: %+v", name, s)
			if s.MaxOpen > maxConns || s.Open != 0 || s.Traced+s.OverLimit != conns || s.OverLimit == 0 {
				t.Errorf("%s: %+v; want at most %d open at once, none at the end, %d traced or over the limit, some over",
					name, s, maxConns, conns)
			}
		}
		if live.most > 2*4*maxConns || live.live != 0 {
			t.Errorf("%d spans open at most, %d at the end; want at most %d, none", live.most, live.live, 2*4*maxConns)
		}
	})
}
