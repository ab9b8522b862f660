package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// runBench is "tapstack bench": a bulk transfer over an in-memory cable
// (tap.Pipe), once between two tapstack stacks and once between two
// stacks running gVisor's TCP, in the same run, with the throughput of
// each and their ratio.
func runBench(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "bench", "")
	size := fs.Int("size", 8<<20, "bytes to transfer in each run")
	faults := addFaultFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *size <= 0 {
		return usageErr(fs, "--size %d: want a positive number of bytes", *size)
	}
	// The same faults, with the same seed, on the client's end of both
	// runs' cables.
	cfg, withFaults := faults.config(e.stderr)
	wrap := func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
		if !withFaults {
			return l
		}
		return tap.NewFault(l, cfg)
	}
	fmt.Fprintf(e.stdout, "bulk transfer of %.1f MiB over tap.Pipe, client to server\n", float64(*size)/(1<<20))
	var rates [2]float64
	for i, r := range []struct {
		name string
		run  func(context.Context, int, func(gstack.LinkEndpoint) gstack.LinkEndpoint) (time.Duration, error)
	}{
		{"tapstack -> tapstack", benchTapstack},
		{"gVisor -> gVisor", benchGVisor},
	} {
		prog := newProgress(e.stderr, r.name, int64(*size)) // on a terminal only
		d, err := r.run(withProgress(ctx, prog), *size, wrap)
		prog.end()
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		rates[i] = float64(*size) / d.Seconds() / 1e6
		fmt.Fprintf(e.stdout, "%-22s %10v %9.1f MB/s\n", r.name, d.Round(time.Microsecond), rates[i])
	}
	fmt.Fprintf(e.stdout, "ratio tapstack/gVisor: %.2f\n", rates[0]/rates[1])
	return nil
}

// transfer writes size bytes on c and returns how long until the reader,
// running on accepted, has read them all.
func transfer(ctx context.Context, c net.Conn, accepted <-chan net.Conn, size int) (time.Duration, error) {
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if sc == nil {
		return 0, errors.New("accept failed")
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); sc.Close() })
	defer stop()
	buf := make([]byte, 64<<10)
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		var err error
		for n := 0; n < size && err == nil; {
			var m int
			m, err = c.Write(buf[:min(len(buf), size-n)])
			n += m
			progressFrom(ctx).add(m)
		}
		sent <- err
	}()
	n, err := io.CopyBuffer(io.Discard, io.LimitReader(sc, int64(size)), make([]byte, 64<<10))
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if n != int64(size) {
		return 0, fmt.Errorf("read %d of %d bytes", n, size)
	}
	if err := <-sent; err != nil {
		return 0, err
	}
	return d, nil
}

func acceptOne(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		ch <- c
	}()
	return ch
}

func benchTapstack(ctx context.Context, size int, wrap func(gstack.LinkEndpoint) gstack.LinkEndpoint) (time.Duration, error) {
	a, b := tap.Pipe()
	server, client := stack.New(stack.Options{}), stack.New(stack.Options{})
	defer stopStack(server)
	defer stopStack(client)
	// Cut the cable before the stacks close: gVisor's Stack.Wait holds
	// the stack's lock while it waits for the pipe's pumps.
	defer a.Close()
	defer b.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		return 0, err
	}
	if _, err := client.AddNIC(wrap(b), netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		return 0, err
	}
	ln, err := conn.Listen(server, "tcp", "192.0.2.1:9")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	accepted := acceptOne(ln)
	c, err := conn.DialContext(ctx, client, "tcp", "192.0.2.1:9")
	if err != nil {
		return 0, err
	}
	progressFrom(ctx).retransmits(client.TCP().Stats().Retransmits.Load)
	defer c.Close()
	return transfer(ctx, c, accepted, size)
}

func benchGVisor(ctx context.Context, size int, wrap func(gstack.LinkEndpoint) gstack.LinkEndpoint) (time.Duration, error) {
	a, b := tap.Pipe()
	server, err := gvpeer.New(a, netip.MustParsePrefix("192.0.2.1/24"), nil)
	if err != nil {
		return 0, err
	}
	defer server.Close()
	client, err := gvpeer.New(wrap(b), netip.MustParsePrefix("192.0.2.2/24"), nil)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	defer a.Close()
	defer b.Close()
	ln, err := server.Listen(9)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	accepted := acceptOne(ln)
	c, err := client.Dial(netip.MustParseAddrPort("192.0.2.1:9"))
	if err != nil {
		return 0, err
	}
	progressFrom(ctx).retransmits(client.S.Stats().TCP.Retransmits.Value)
	defer c.Close()
	return transfer(ctx, c, accepted, size)
}
