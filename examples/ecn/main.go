// Command ecn shows Explicit Congestion Notification (RFC 3168) on a
// tapstack connection, in memory and with no privileges:
//
//	go run ./examples/ecn         # a congested router marks 2% of the packets
//	go run ./examples/ecn -drop   # the same router drops them instead
//
// The client asks for ECN when it dials (tcp.ECNOn, Linux's tcp_ecn=1);
// the server agrees, as every tapstack stack does by default
// (tcp.ECNPassive, tcp_ecn=2). Between them, the fault middleware plays
// a router whose queue is building: it marks a share of the client's
// ECN-capable data packets Congestion Experienced, or with -drop drops
// them. The client sends 8 MiB. Either way its window comes down; marks
// cost no retransmission, drops do.
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
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// config is what the flags say.
type config struct {
	p    float64 // share of the client's packets the router marks or drops
	drop bool
	size int64
	seed uint64
}

func main() {
	var cfg config
	flag.Float64Var(&cfg.p, "p", 0.02, "share of the client's packets the router marks (or drops, with -drop)")
	flag.BoolVar(&cfg.drop, "drop", false, "drop the packets instead of marking them")
	flag.Int64Var(&cfg.size, "size", 8<<20, "bytes the client sends")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the router's decisions")
	flag.Parse()
	if flag.NArg() > 0 || cfg.p < 0 || cfg.p > 1 || cfg.size <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdout, cfg); err != nil {
		log.Fatalf("ecn: %v", err)
	}
}

func run(w io.Writer, cfg config) error {
	router := tap.FaultConfig{Mark: cfg.p, Seed: cfg.seed}
	verb := "marks"
	if cfg.drop {
		router, verb = tap.FaultConfig{Loss: cfg.p, Seed: cfg.seed}, "drops"
	}
	var fault *tap.Fault
	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{TCP: tcp.Options{ECN: tcp.ECNOn}},
		ClientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			fault = tap.NewFault(l, router)
			return fault
		},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintf(w, "the router %s %g%% of the client's packets; the client sends %d bytes\n", verb, cfg.p*100, cfg.size)

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

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := conn.DialContext(ctx, p.Client, "tcp", to)
	if err != nil {
		return err
	}
	c := nc.(*conn.Conn)
	defer c.Close()
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
		return errors.New("the transfer did not end within a minute")
	}
	elapsed := time.Since(start)

	in := c.Endpoint().Info()
	cs, ss, fs := p.Client.TCP().Stats(), p.Server.TCP().Stats(), fault.Stats()
	fmt.Fprintf(w, "ECN in force: %v (the client's SYN asked with ECE and CWR, the server's SYN-ACK agreed with ECE)\n", in.ECN)
	fmt.Fprintf(w, "router: %d packets marked CE, %d dropped\n", fs.Marked, fs.Lost)
	fmt.Fprintf(w, "server: %d marked segments received and echoed (ECE until the client's CWR)\n", ss.CEReceived.Load())
	fmt.Fprintf(w, "client: %d windows reduced for the echo (CWR), %d fast recoveries, %d timeouts, %d tail loss probes, %d segments sent again, %d refused by the link\n",
		cs.ECNReductions.Load(), cs.FastRecoveries.Load(), cs.RetransmitTimeouts.Load(), cs.TailLossProbes.Load(), cs.Retransmits.Load(), cs.LinkRefused.Load())
	fmt.Fprintf(w, "%d bytes in %v, cwnd at the end %d bytes\n", cfg.size, elapsed.Round(time.Millisecond), in.Cwnd)
	return nil
}
