// Command pacing shows TCP pacing on a tapstack connection, in memory and
// with no privileges:
//
//	go run ./examples/pacing              # at most 80 Mbit/s (SO_MAX_PACING_RATE)
//	go run ./examples/pacing -rate 0      # unpaced: what the windows allow, back to back
//
// The client caps its pacing rate (Conn.SetMaxPacingRate, Linux's
// SO_MAX_PACING_RATE, which turns on TCP's internal pacing) and sends
// 4 MiB to the server. Paced, each train of segments leaves its length at
// the rate after the one before, and the engine's send event for a train
// that waited says how long it was held; the capture of a TAP shows the
// same note on the frame. Unpaced, the same megabytes cross the pipe in
// milliseconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// config is what the flags say.
type config struct {
	rate int64 // the pacing cap, bits a second; 0: unpaced
	size int64
}

func main() {
	var cfg config
	rate := flag.String("rate", "80mbit", "the client's pacing cap (10mbit, 1gbit), or 0 for none")
	flag.Int64Var(&cfg.size, "size", 4<<20, "bytes the client sends")
	flag.Parse()
	if *rate != "0" {
		bps, err := tap.ParseRate(*rate)
		if err != nil || bps < 8 {
			fmt.Fprintf(os.Stderr, "pacing: -rate %q: want a rate such as 80mbit, or 0\n", *rate)
			os.Exit(2)
		}
		cfg.rate = bps
	}
	if flag.NArg() > 0 || cfg.size <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdout, cfg); err != nil {
		log.Fatalf("pacing: %v", err)
	}
}

// notes gathers what the client's send events say of pacing.
type notes struct {
	mu    sync.Mutex
	held  int
	first string
}

func (n *notes) observe(ev event.Event) {
	if ev.Kind != event.KindSend || !strings.HasPrefix(ev.Note, "paced") {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.held++
	if n.first == "" {
		n.first = ev.String()
	}
}

func run(w io.Writer, cfg config) error {
	var seen notes
	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{TCP: tcp.Options{Observer: seen.observe}},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if cfg.rate > 0 {
		fmt.Fprintf(w, "the client paces at most at %s and sends %d bytes\n", mbps(cfg.rate), cfg.size)
	} else {
		fmt.Fprintf(w, "the client sends %d bytes unpaced\n", cfg.size)
	}

	to := netip.AddrPortFrom(p.ServerAddr, 80).String()
	ln, err := conn.Listen(p.Server, "tcp", to)
	if err != nil {
		return err
	}
	defer ln.Close()
	received := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- err
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != cfg.size {
			err = fmt.Errorf("the server received %d bytes of %d", n, cfg.size)
		}
		received <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := conn.DialContext(ctx, p.Client, "tcp", to)
	if err != nil {
		return err
	}
	c := nc.(*conn.Conn)
	defer c.Close()
	if cfg.rate > 0 {
		if err := c.SetMaxPacingRate(uint64(cfg.rate / 8)); err != nil {
			return err
		}
	}
	start := time.Now()
	chunk := make([]byte, 64<<10)
	for sent := int64(0); sent < cfg.size; {
		n, err := c.Write(chunk[:min(int64(len(chunk)), cfg.size-sent)])
		if err != nil {
			return err
		}
		sent += int64(n)
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	select {
	case err := <-received:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return errors.New("the transfer did not end within two minutes")
	}
	elapsed := time.Since(start)
	p.Client.TCP().SyncEvents()

	in := c.Endpoint().Info()
	fmt.Fprintf(w, "%d bytes in %v: %s on average\n", cfg.size, elapsed.Round(time.Millisecond), mbps(int64(float64(cfg.size)*8/elapsed.Seconds())))
	fmt.Fprintf(w, "paced %v, pacing rate %s, %d trains held for their time\n", in.Paced, mbps(int64(in.PacingRate*8)), seen.held)
	if seen.first != "" {
		fmt.Fprintf(w, "the first: %s\n", seen.first)
	}
	return nil
}

// mbps writes bits a second in Mbit/s.
func mbps(bps int64) string { return fmt.Sprintf("%.1f Mbit/s", float64(bps)/1e6) }
