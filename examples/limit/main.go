// Command limit serves at most N connections at once on a tapstack
// listener, with package limit, in memory and with no privileges:
//
//	go run ./examples/limit              # the excess waits for a slot
//	go run ./examples/limit -close       # the excess is closed at once
//
// Six clients connect at once to a server that allows two. Each served
// client is greeted with how many connections are open, held for a moment,
// then closed; with -close the clients beyond the limit are closed
// without a greeting.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/examples/limit/limit"
	"github.com/tapstack/tapstack/stack"
)

// config is what the flags say.
type config struct {
	n, clients  int
	hold        time.Duration
	closeExcess bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.n, "n", 2, "connections open at once")
	flag.IntVar(&cfg.clients, "clients", 6, "clients connecting at once")
	flag.DurationVar(&cfg.hold, "hold", 100*time.Millisecond, "how long the server holds each connection")
	flag.BoolVar(&cfg.closeExcess, "close", false, "close the excess at once instead of letting it wait")
	flag.Parse()
	if flag.NArg() > 0 || cfg.n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdout, cfg); err != nil {
		log.Fatalf("limit: %v", err)
	}
}

func run(w io.Writer, cfg config) error {
	printf := log.New(w, "", 0).Printf // serialized: clients print at once
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	printf("at most %d of %d clients at once; the excess %s", cfg.n, cfg.clients, map[bool]string{false: "waits", true: "is closed at once"}[cfg.closeExcess])
	inner, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
	if err != nil {
		return err
	}
	ln := limit.Listener(inner, cfg.n, limit.Options{Wait: !cfg.closeExcess})
	defer ln.Close()

	var served sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Go(func() {
				fmt.Fprintf(c, "%d open\n", ln.Open())
				time.Sleep(cfg.hold)
				c.Close()
			})
		}
	}()

	var wg sync.WaitGroup
	for i := range cfg.clients {
		wg.Go(func() {
			c, err := conn.Dial(p.Client, "tcp", "192.0.2.1:80")
			if err != nil {
				printf("client %d: %v", i, err)
				return
			}
			defer c.Close()
			start := time.Now()
			msg, err := io.ReadAll(c)
			switch {
			case len(msg) > 0:
				printf("client %d: served (%q) after %v", i, msg, time.Since(start).Round(10*time.Millisecond))
			case err == nil || errors.Is(err, syscall.ECONNRESET): // the server's FIN, or its RST

				printf("client %d: closed without a greeting", i)
			default:
				printf("client %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	ln.Close()
	served.Wait()
	printf("open now %d, closed at once %d", ln.Open(), ln.Rejected())
	return nil
}
