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
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/examples/limit/limit"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "limit:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("limit", flag.ContinueOnError)
	n := fs.Int("n", 2, "connections open at once")
	clients := fs.Int("clients", 6, "clients connecting at once")
	hold := fs.Duration("hold", 100*time.Millisecond, "how long the server holds each connection")
	closeExcess := fs.Bool("close", false, "close the excess at once instead of letting it wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *n < 1 {
		return errors.New("usage: limit [-n N] [-clients C] [-hold D] [-close]")
	}
	var mu sync.Mutex
	printf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format+"\n", args...)
	}

	a, b := tap.Pipe()
	server, client := stack.New(stack.Options{}), stack.New(stack.Options{})
	defer server.Close()
	defer client.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		return err
	}
	if _, err := client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		return err
	}
	inner, err := conn.Listen(server, "tcp", "192.0.2.1:80")
	if err != nil {
		return err
	}
	ln := limit.Listener(inner, *n, limit.Options{Wait: !*closeExcess})
	defer ln.Close()
	printf("at most %d of %d clients at once; the excess %s", *n, *clients, map[bool]string{false: "waits", true: "is closed at once"}[*closeExcess])

	var served sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Go(func() {
				fmt.Fprintf(c, "%d open\n", ln.Open())
				time.Sleep(*hold)
				c.Close()
			})
		}
	}()

	var wg sync.WaitGroup
	for i := range *clients {
		wg.Go(func() {
			c, err := conn.DialContext(ctx, client, "tcp", "192.0.2.1:80")
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
			case err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET):
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
