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
//
// With -otlp ENDPOINT every connection also becomes an OpenTelemetry trace
// (package observe/otel), exported over OTLP to a collector, Jaeger or
// Tempo: gRPC for HOST:PORT or grpc://HOST:PORT, HTTP for
// http://HOST:PORT. -loss drops that fraction of the frames on the cable
// (both ways, seeded by -seed) so the traces have retransmissions to
// show; -size sets the bytes each workload connection sends; -count stops
// after that many connections and exits once they have closed:
//
//	go run ./examples/monitor -otlp 127.0.0.1:4317 -loss 0.05 -size 65536 -count 20
package main

import (
	"cmp"
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

	"go.opentelemetry.io/otel/attribute"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	tsotel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// config is what the flags set.
type config struct {
	listen string        // HTTP address for /metrics
	every  time.Duration // a workload connection this often
	otlp   string        // OTLP endpoint; "" exports no traces
	loss   float64       // fraction of frames the cable loses each way
	seed   uint64        // seeds the loss
	size   int           // bytes each workload connection sends (and gets back)
	count  int           // stop after this many connections; 0: run until stopped
	// service is the service.name of the traces (default serviceName).
	service string
}

// serviceName is the default service.name of the monitor's traces.
const serviceName = "tapstack-monitor"

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "HTTP address to serve /metrics on")
	flag.DurationVar(&cfg.every, "every", 20*time.Millisecond, "start a workload connection this often")
	flag.StringVar(&cfg.otlp, "otlp", "", "export each connection as a trace to this OTLP `endpoint`: HOST:PORT or grpc://HOST:PORT (gRPC), http://HOST:PORT (HTTP)")
	flag.Float64Var(&cfg.loss, "loss", 0, "drop this fraction of the cable's frames, each way")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of -loss")
	flag.IntVar(&cfg.size, "size", len(hello), "bytes each workload connection sends")
	flag.IntVar(&cfg.count, "count", 0, "stop after this many connections (0: run until interrupted)")
	flag.StringVar(&cfg.service, "service", serviceName, "service.name of the exported traces")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, cfg, func(addr string) {
		fmt.Printf("metrics on http://%s/metrics (Ctrl-C stops)\n", addr)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		os.Exit(1)
	}
}

const hello = "hello, monitor\n"

// timeWait is the stacks' TIME-WAIT, short so that the workload's ports
// come back quickly.
const timeWait = 100 * time.Millisecond

// run builds the stacks, starts the workload and serves the metrics until
// ctx is done, or, with cfg.count, until that many connections have come
// and gone. ready is called with the HTTP address once it listens.
func run(ctx context.Context, cfg config, ready func(addr string)) (err error) {
	reg := prometheus.NewRegistry()
	life := newLifecycle(reg)
	obsServer, qServer := stack.NewEventQueue(4096, life.observe("server"))
	defer qServer.Close()
	obsClient, qClient := stack.NewEventQueue(4096, life.observe("client"))
	defer qClient.Close()

	if cfg.otlp != "" {
		// The tracers observe synchronously (not through the queues):
		// a connection's span exists when Dial or Accept returns it.
		service := cfg.service
		if service == "" {
			service = serviceName
		}
		tp, perr := tsotel.NewOTLPProvider(ctx, cfg.otlp, service)
		if perr != nil {
			return perr
		}
		defer func() {
			// After the stacks closed (deferred below, so run first):
			// flush what the batcher holds.
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e := tp.Shutdown(sctx)
			if st := tp.ExportStats(); st.Undelivered() > 0 {
				// The collector down, refusing or too slow: say how
				// much of the traces it missed, and why.
				e = fmt.Errorf("%d of %d spans not delivered (%d failed, %d dropped, %d pending): %v",
					st.Undelivered(), st.Spans, st.Failed, st.Dropped, st.Pending, cmp.Or(st.LastError, e))
			}
			if e != nil && err == nil { // run's err: perr above does not shadow it
				err = fmt.Errorf("OTLP export: %w", e)
			}
		}()
		trServer := tsotel.New(tsotel.Options{TracerProvider: tp, Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "server")}})
		trClient := tsotel.New(tsotel.Options{TracerProvider: tp, Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "client")}})
		defer trServer.Close()
		defer trClient.Close()
		obsServer = stack.Fanout(obsServer, trServer.Observe)
		obsClient = stack.Fanout(obsClient, trClient.Observe)
	}

	var clientLink func(gstack.LinkEndpoint) gstack.LinkEndpoint
	if cfg.loss > 0 {
		clientLink = func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			return tap.NewFault(l, tap.FaultConfig{Loss: cfg.loss, Seed: cfg.seed, Inbound: &tap.FaultConfig{Loss: cfg.loss}})
		}
	}
	p, err := stack.NewPair(stack.PairOptions{
		Server:     stack.Options{TCP: tcp.Options{TimeWait: timeWait, Observer: obsServer}},
		Client:     stack.Options{TCP: tcp.Options{TimeWait: timeWait, Observer: obsClient}},
		ClientLink: clientLink,
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

	hl, err := net.Listen("tcp", cfg.listen)
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
	finished := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); serveEcho(ln) }()
	go func() {
		defer wg.Done()
		workload(wctx, client, cfg)
		close(finished)
	}()
	var ended <-chan struct{} // nil: run until ctx is done
	if cfg.count > 0 {
		ended = finished
	}

	select {
	case <-ctx.Done():
	case err = <-served:
	case <-ended:
		// Every connection was closed; let the last TIME-WAITs end so
		// that their traces are whole.
		waitClosed(ctx, server, client)
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

// waitClosed waits, for a bounded time, until neither stack holds a
// connection.
func waitClosed(ctx context.Context, stacks ...*stack.Stack) {
	for range 500 {
		n := 0
		for _, s := range stacks {
			n += len(s.TCP().Connections())
		}
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(timeWait / 10):
		}
	}
}

// workload opens a connection every interval: it sends cfg.size bytes,
// reads the echo and closes. With cfg.count it stops after
// that many connections, once they are done.
func workload(ctx context.Context, s *stack.Stack, cfg config) {
	t := time.NewTicker(cfg.every)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	msg := []byte(hello)
	if cfg.size > 0 {
		msg = make([]byte, cfg.size)
		for i := range msg {
			msg[i] = hello[i%len(hello)]
		}
	}
	for n := 0; cfg.count == 0 || n < cfg.count; n++ {
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
			c.SetDeadline(time.Now().Add(20 * time.Second))
			go c.Write(msg) // the echo comes back while we write
			io.ReadFull(c, make([]byte, len(msg)))
		}()
	}
}
