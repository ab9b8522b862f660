package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runPing is "tapstack ping": ICMP echo from a tapstack stack, printed
// as iputils' ping prints it. With --tap the stack is on that device;
// without, it is the client (192.0.2.2) of an in-memory pair whose
// server is 192.0.2.1, and its own 127.0.0.1 and ::1 answer too.
func runPing(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "ping", "host")
	lf := addLinkFlags(fs, "ping through")
	count := fs.Int("c", 0, "stop after `count` replies or timeouts (0: until interrupted)")
	interval := fs.Duration("i", time.Second, "wait `interval` between requests")
	size := fs.Int("s", 56, "send `size` data bytes (ICMP header not included)")
	wait := fs.Duration("W", 10*time.Second, "wait up to `timeout` for each reply")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	dst, err := netip.ParseAddr(fs.Arg(0))
	if err != nil {
		return usageErr(fs, "host %q: want an IP address", fs.Arg(0))
	}
	dst = dst.Unmap()
	if *count < 0 || *size < 0 || *size > 65000 || *interval < 0 || *wait <= 0 {
		return usageErr(fs, "-c, -s, -i must not be negative, -s at most 65000, -W positive")
	}
	if *lf.tap != "" {
		if err := lf.check(fs); err != nil {
			return err
		}
		if why := otherFamily(dst, lf.prefix); why != "" {
			return usageErr(fs, "host %q: %s", fs.Arg(0), why)
		}
	}
	if *lf.tap == "" {
		if err := needsTAP(fs, "ping runs in memory, from 192.0.2.2 to 192.0.2.1 and its own loopback addresses", linkFlagNames()); err != nil {
			return err
		}
	}
	var s *stack.Stack
	if *lf.tap != "" {
		st, closeStack, err := lf.open(e, tcp.Options{})
		if err != nil {
			return err
		}
		defer closeStack(shutdownGrace)
		s = st
	} else {
		p, err := stack.NewPair(stack.PairOptions{
			ClientPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")},
			ServerPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
		})
		if err != nil {
			return err
		}
		defer p.Close()
		s = p.Client
	}
	return ping(ctx, e.stdout, s, dst, pingConfig{count: *count, interval: *interval, size: *size, wait: *wait})
}

type pingConfig struct {
	count, size    int
	interval, wait time.Duration
}

// ping sends echo requests until count is reached or ctx ends, then
// prints the summary.
func ping(ctx context.Context, out io.Writer, s *stack.Stack, dst netip.Addr, cfg pingConfig) error {
	network := "ip4:icmp"
	if dst.Is6() {
		network = "ip6:ipv6-icmp"
	}
	c, err := conn.ListenICMP(s, network, netip.Addr{})
	if err != nil {
		return err
	}
	defer c.Close()
	if dst.Is6() {
		fmt.Fprintf(out, "PING %s (%s) %d data bytes\n", dst, dst, cfg.size)
	} else {
		// iputils counts the IPv4 header (20) and the ICMP header (8).
		fmt.Fprintf(out, "PING %s (%s) %d(%d) bytes of data.\n", dst, dst, cfg.size, cfg.size+28)
	}
	data := make([]byte, cfg.size)
	for i := range data {
		data[i] = byte(i)
	}
	var rtts []time.Duration
	sent := 0
	start := time.Now()
	var sendErr error
	for seq := 1; cfg.count == 0 || seq <= cfg.count; seq++ {
		if seq > 1 {
			select {
			case <-ctx.Done():
			case <-time.After(cfg.interval):
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		rctx, cancel := context.WithTimeout(ctx, cfg.wait)
		r, err := c.Echo(rctx, dst, seq, data)
		cancel()
		switch {
		case err == nil:
			rtts = append(rtts, r.RTT)
			fmt.Fprintf(out, "%d bytes from %s: icmp_seq=%d ttl=%d time=%s ms\n", r.Len, r.From, seq, r.TTL, ms(r.RTT))
		case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
			// No reply in time: iputils prints nothing for it.
		default:
			// No route and the like: iputils reports and goes on.
			fmt.Fprintf(out, "ping: sendmsg: %v\n", err)
			sendErr = err
		}
	}
	elapsed := time.Since(start)
	fmt.Fprintf(out, "\n--- %s ping statistics ---\n", dst)
	loss := 0.0
	if sent > 0 {
		loss = 100 * float64(sent-len(rtts)) / float64(sent)
	}
	fmt.Fprintf(out, "%d packets transmitted, %d received, %.6g%% packet loss, time %dms\n", sent, len(rtts), loss, elapsed.Milliseconds())
	if len(rtts) == 0 {
		if sendErr != nil {
			return sendErr
		}
		return errors.New("no reply")
	}
	minRTT, maxRTT := rtts[0], rtts[0]
	var sum, sum2 float64
	for _, r := range rtts {
		minRTT, maxRTT = min(minRTT, r), max(maxRTT, r)
		f := float64(r) / float64(time.Millisecond)
		sum += f
		sum2 += f * f
	}
	avg := sum / float64(len(rtts))
	mdev := math.Sqrt(max(sum2/float64(len(rtts))-avg*avg, 0))
	fmt.Fprintf(out, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n",
		float64(minRTT)/float64(time.Millisecond), avg, float64(maxRTT)/float64(time.Millisecond), mdev)
	return nil
}

// ms formats a round-trip time as iputils does: three significant
// digits below 100 ms, whole milliseconds above.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 1:
		return fmt.Sprintf("%.3f", f)
	case f < 10:
		return fmt.Sprintf("%.2f", f)
	case f < 100:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.0f", f)
}
