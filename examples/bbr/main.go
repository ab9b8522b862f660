// Command bbr sends the same bytes over the same bottleneck twice, with
// CUBIC and with BBR, in memory and with no privileges:
//
//	go run ./examples/bbr              # 40 Mbit/s, a 10 ms round trip, a deep queue
//	go run ./examples/bbr -loss 0.01   # and 1% of the packets lost
//
// The fault middleware plays the bottleneck on the client's link: it
// serializes the client's packets at the rate, holds both directions back
// for half the round trip, and queues up to 1,024 packets, as a router
// with a large buffer does. CUBIC grows its window until the queue
// overflows, so the round trip stretches to the queue's length; BBR
// measures the bottleneck's rate and the path's round trip and keeps
// about one bandwidth-delay product in flight, so the queue stays short.
// With losses CUBIC backs off at each; BBR's model stands.
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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// config is what the flags say.
type config struct {
	rate int64         // bits a second
	rtt  time.Duration // the path's round trip, half each way
	loss float64       // share of the client's packets lost
	size int64
	seed uint64
}

func main() {
	cfg := config{rate: 40e6}
	flag.Func("rate", "the bottleneck's rate (40mbit, 500kbit)", func(s string) (err error) {
		cfg.rate, err = tap.ParseRate(s)
		return err
	})
	flag.DurationVar(&cfg.rtt, "rtt", 10*time.Millisecond, "the path's round trip, half of it each way")
	flag.Float64Var(&cfg.loss, "loss", 0, "share of the client's packets lost (0.01: 1%)")
	flag.Int64Var(&cfg.size, "size", 8<<20, "bytes the client sends")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the losses")
	flag.Parse()
	if flag.NArg() > 0 || cfg.rate <= 0 || cfg.rtt < 0 || cfg.loss < 0 || cfg.loss >= 1 || cfg.size <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	fmt.Printf("the bottleneck: %s, a %v round trip, a queue of 1024 packets, %g%% lost; the client sends %d bytes\n",
		mbit(float64(cfg.rate)), cfg.rtt, cfg.loss*100, cfg.size)
	for _, cc := range []string{"cubic", "bbr"} {
		r, err := run(cc, cfg)
		if err != nil {
			log.Fatalf("bbr: %s: %v", cc, err)
		}
		r.print(os.Stdout)
	}
}

// result is what one transfer showed.
type result struct {
	cc      string
	elapsed time.Duration
	size    int64
	minRTT  time.Duration // the path's
	medRTT  time.Duration // the median smoothed RTT while sending
	maxRTT  time.Duration // the highest
	resent  uint64
	model   *tcp.BBRInfo
	course  []string // BBR's changes of mode
}

func (r result) print(w io.Writer) {
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	fmt.Fprintf(w, "%-6s %s; RTT %s at best, %s median while sending (the queue: %s), %s at most; %d segments sent again\n",
		r.cc+":", mbit(float64(r.size)*8/r.elapsed.Seconds()), ms(r.minRTT), ms(r.medRTT), ms(r.medRTT-r.minRTT), ms(r.maxRTT), r.resent)
	for _, c := range r.course {
		fmt.Fprintf(w, "       %s\n", c)
	}
	if m := r.model; m != nil {
		fmt.Fprintf(w, "       its model at the end: %s, %s, min RTT %v, pacing gain %g, cwnd gain %g\n",
			m.Mode, mbit(float64(m.Bandwidth)*8), m.MinRTT.Round(100*time.Microsecond), m.PacingGain, m.CwndGain)
	}
}

// run sends cfg.size bytes from a client with congestion control cc.
func run(cc string, cfg config) (result, error) {
	r := result{cc: cc, size: cfg.size}
	var mu sync.Mutex
	observe := func(ev event.Event) {
		if ev.Kind == event.KindRecovery && strings.HasPrefix(ev.Note, "BBR") {
			mu.Lock()
			r.course = append(r.course, ev.Note)
			mu.Unlock()
		}
	}
	oneWay := cfg.rtt / 2
	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{TCP: tcp.Options{CongestionControl: cc, SendBufferSize: 4 << 20, Observer: observe}},
		ClientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			return tap.NewFault(l, tap.FaultConfig{Rate: cfg.rate, Delay: oneWay, Loss: cfg.loss, Seed: cfg.seed,
				Inbound: &tap.FaultConfig{Delay: oneWay}})
		},
	})
	if err != nil {
		return r, err
	}
	defer p.Close()

	to := netip.AddrPortFrom(p.ServerAddr, 80).String()
	ln, err := conn.Listen(p.Server, "tcp", to)
	if err != nil {
		return r, err
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
		return r, err
	}
	c := nc.(*conn.Conn)
	defer c.Close()
	// Watch the smoothed RTT while the bytes move.
	done := make(chan struct{})
	watched := make(chan []time.Duration, 1)
	go func() {
		var rtts []time.Duration
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				watched <- rtts
				return
			case <-t.C:
				rtts = append(rtts, c.Endpoint().Info().RTT)
			}
		}
	}()
	start := time.Now()
	chunk := make([]byte, 64<<10)
	for sent := int64(0); sent < cfg.size; {
		n, err := c.Write(chunk[:min(int64(len(chunk)), cfg.size-sent)])
		if err != nil {
			close(done)
			return r, err
		}
		sent += int64(n)
	}
	if err := c.CloseWrite(); err != nil {
		close(done)
		return r, err
	}
	select {
	case err = <-received:
	case <-ctx.Done():
		err = errors.New("the transfer did not end within two minutes")
	}
	r.elapsed = time.Since(start)
	close(done)
	if rtts := <-watched; len(rtts) > 0 {
		slices.Sort(rtts)
		r.medRTT, r.maxRTT = rtts[len(rtts)/2], rtts[len(rtts)-1]
	}
	if err != nil {
		return r, err
	}
	in := c.Endpoint().Info()
	r.minRTT, r.resent, r.model = in.MinRTT, in.Retransmits, in.BBR
	mu.Lock()
	defer mu.Unlock()
	return r, nil
}

// mbit writes bits a second in Mbit/s.
func mbit(bps float64) string { return fmt.Sprintf("%.1f Mbit/s", bps/1e6) }
