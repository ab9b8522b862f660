// Command blackhole shows a path MTU black hole and packetization-layer
// path MTU discovery (RFC 4821) on a tapstack connection, in memory and
// with no privileges:
//
//	go run ./examples/blackhole                # the client finds the hole and gets through
//	go run ./examples/blackhole -probing off   # as Linux by default: stuck
//
// Between the client and the server, the fault middleware plays a path
// whose narrowest hop has an MTU of 1,400 bytes and whose ICMP "packet
// too big" never comes back (a firewall drops it: RFC 2923 2.1). The
// link is 1,500 bytes, so every full-sized segment vanishes and smaller
// ones pass. Classic path MTU discovery waits for the ICMP forever. With
// probing (tcp.MTUProbingBlackHole, Linux's tcp_mtu_probing=1), the
// client's retransmission timer suspects the hole after about three
// seconds, drops its MSS to 1,024 bytes, and then searches upward with
// single larger segments, the probes, until it knows the hole's size
// within 8 bytes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// config is what the flags say.
type config struct {
	mtu     int // the black hole's
	probing tcp.MTUProbing
	size    int64
	wait    time.Duration // how long the transfer may take
}

func main() {
	cfg := config{probing: tcp.MTUProbingBlackHole}
	flag.IntVar(&cfg.mtu, "mtu", 1400, "MTU of the path's narrowest hop, whose ICMP errors never arrive")
	flag.Func("probing", "client's path MTU probing: off, blackhole (the default here) or on", func(s string) error {
		for _, m := range []tcp.MTUProbing{tcp.MTUProbingOff, tcp.MTUProbingBlackHole, tcp.MTUProbingOn} {
			if s == m.String() {
				cfg.probing = m
				return nil
			}
		}
		return fmt.Errorf("want off, blackhole or on")
	})
	flag.Int64Var(&cfg.size, "size", 4<<20, "bytes the client sends")
	flag.DurationVar(&cfg.wait, "wait", 15*time.Second, "how long to wait for the transfer")
	flag.Parse()
	if flag.NArg() > 0 || cfg.mtu < 576 || cfg.mtu >= 1500 || cfg.size <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdout, cfg); err != nil {
		log.Fatalf("blackhole: %v", err)
	}
}

func run(w io.Writer, cfg config) error {
	var fault *tap.Fault
	hole := tap.FaultConfig{BlackHoleMTU: cfg.mtu}
	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{TCP: tcp.Options{MTUProbing: cfg.probing}},
		ClientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			fault = tap.NewFault(l, hole)
			return fault
		},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintf(w, "a 1500-byte link with a %d-byte hop and no ICMP; the client (MTU probing %s) sends %d bytes\n", cfg.mtu, cfg.probing, cfg.size)

	to := netip.AddrPortFrom(p.ServerAddr, 80).String()
	ln, err := conn.Listen(p.Server, "tcp", to)
	if err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.wait)
	defer cancel()
	nc, err := conn.DialContext(ctx, p.Client, "tcp", to)
	if err != nil {
		return err
	}
	c := nc.(*conn.Conn)
	start := time.Now()
	go func() {
		// The writes block once the send buffer is full of data the
		// hole swallows; closing the connection ends them.
		chunk := make([]byte, 64<<10)
		for sent := int64(0); sent < cfg.size; {
			n, err := c.Write(chunk[:min(int64(len(chunk)), cfg.size-sent)])
			if err != nil {
				return
			}
			sent += int64(n)
		}
		c.CloseWrite()
	}()
	var received int64
	done := false
	select {
	case received = <-got:
		done = received == cfg.size
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	in := c.Endpoint().Info()
	cs, fs := p.Client.TCP().Stats(), fault.Stats()
	c.Close()
	fmt.Fprintf(w, "hole: %d packets swallowed\n", fs.BlackHoled)
	fmt.Fprintf(w, "client: %d timeouts; black hole suspected %d times; %d probes (%d acknowledged, %d lost); MSS at the end %d (packets of %d bytes)\n",
		cs.RetransmitTimeouts.Load(), cs.MTUBlackHoles.Load(), cs.MTUProbes.Load(), cs.MTUProbeSuccesses.Load(), cs.MTUProbeFailures.Load(),
		in.SndMSS, in.SndMSS+20+20+12)
	if !done {
		fmt.Fprintf(w, "stuck: the server had %d bytes of %d after %v; the client keeps sending the same full-sized segment, which never arrives\n",
			in.BytesAcked, cfg.size, elapsed.Round(time.Millisecond))
		return nil
	}
	fmt.Fprintf(w, "%d bytes in %v\n", cfg.size, elapsed.Round(time.Millisecond))
	return nil
}
