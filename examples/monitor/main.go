// Command monitor exports tapstack's counters, queue gauges and lifecycle
// histograms as Prometheus metrics.
//
// It needs no privileges: two tapstack stacks on an in-memory cable
// (stack.NewPair) run an echo workload that keeps connections coming, so the
// numbers move. Scrape it while it runs:
//
//	go run ./examples/monitor -listen 127.0.0.1:9100
//	curl -s http://127.0.0.1:9100/metrics | grep tapstack_
//
// Counters and gauges are read from the stacks at scrape time by a custom
// Collector (stack.TCP().Stats(), Listener.Queues(), Endpoint.State()).
// The histograms of handshake time and connection lifetime come from the
// engine's state events, which reach the monitor through a bounded
// stack.EventQueue: a slow scrape never stalls the engine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "HTTP address to serve /metrics on")
	rate := flag.Duration("every", 20*time.Millisecond, "start a workload connection this often")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, *listen, *rate, func(addr string) {
		fmt.Printf("metrics on http://%s/metrics (Ctrl-C stops)\n", addr)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		os.Exit(1)
	}
}

// run builds the stacks, starts the workload and serves the metrics until
// ctx is done. ready is called with the HTTP address once it listens.
func run(ctx context.Context, listen string, every time.Duration, ready func(addr string)) error {
	reg := prometheus.NewRegistry()
	life := newLifecycle(reg)
	obsServer, qServer := stack.NewEventQueue(4096, life.observe("server"))
	defer qServer.Close()
	obsClient, qClient := stack.NewEventQueue(4096, life.observe("client"))
	defer qClient.Close()

	p, err := stack.NewPair(stack.PairOptions{
		Server: stack.Options{TCP: tcp.Options{TimeWait: 100 * time.Millisecond, Observer: obsServer}},
		Client: stack.Options{TCP: tcp.Options{TimeWait: 100 * time.Millisecond, Observer: obsClient}},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	server, client := p.Server, p.Client
	reg.MustRegister(&collector{
		stacks: []namedStack{{"server", server}, {"client", client}},
		queues: map[string]*stack.EventQueue{"server": qServer, "client": qClient},
	})

	ln, err := conn.Listen(server, "tcp", "192.0.2.1:7")
	if err != nil {
		return err
	}
	defer ln.Close()

	hl, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(hl) }()
	ready(hl.Addr().String())

	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); serveEcho(ln) }()
	go func() { defer wg.Done(); workload(wctx, client, every) }()

	select {
	case <-ctx.Done():
	case err = <-served:
	}
	cancel()
	ln.Close()
	shutdown, done := context.WithTimeout(context.Background(), time.Second)
	defer done()
	srv.Shutdown(shutdown)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// serveEcho echoes on every accepted connection until ln is closed, and
// waits for the echoes to end.
func serveEcho(ln *conn.Listener) {
	var wg sync.WaitGroup
	for c, err := ln.Accept(); err == nil; c, err = ln.Accept() {
		wg.Go(func() {
			io.Copy(c, c)
			c.Close()
		})
	}
	wg.Wait()
}

// workload opens a connection every interval: it sends a line, half-closes,
// reads the echo and closes.
func workload(ctx context.Context, s *stack.Stack, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			c, err := conn.DialContext(cctx, s, "tcp", "192.0.2.1:7")
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "hello, monitor\n")
			c.CloseWrite()
			io.Copy(io.Discard, c)
		}()
	}
}
