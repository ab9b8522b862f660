// Command initcwnd shows what the initial congestion window does to a
// short transfer, in memory and with no privileges:
//
//	go run ./examples/initcwnd                       # 15 kB, 100 kB and 1 MB over a 50 ms round trip
//	go run ./examples/initcwnd -size 100k -rtt 200ms # one size, a longer path
//	go run ./examples/initcwnd -initcwnd 2,10,100    # other windows
//
// Two stacks are joined by an in-memory cable; the fault middleware on
// the client's end holds each packet back for half the round trip, both
// ways. For each window the server's route to the client's subnet is
// given that initcwnd (Stack.SetRouteMetrics, as Linux's `ip route change
// 192.0.2.0/24 dev eth0 initcwnd 40`), then the client connects, asks for
// a response of the size, and times it from its request's write to the
// response's last byte. The server's send and ACK events count the round
// trips: each segment belongs to the flight after the one whose ACK it
// followed, so the number of flights is the number of round trips the
// response needed, however busy the machine.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
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
	sizes     []int64       // response sizes, bytes
	initcwnds []uint32      // initial windows, segments
	rtt       time.Duration // the path's round trip, half each way
}

func main() {
	cfg := config{
		sizes:     []int64{15e3, 100e3, 1e6}, // a small page, a page with its images, a large one
		initcwnds: []uint32{4, 10, 40},
	}
	flag.Func("size", "response sizes in bytes, comma-separated: 15k,100k,1m (the default)", func(s string) (err error) {
		cfg.sizes, err = parseList(s, parseSize)
		return err
	})
	flag.Func("initcwnd", "initial windows in segments, comma-separated (default 4,10,40)", func(s string) (err error) {
		cfg.initcwnds, err = parseList(s, func(s string) (uint32, error) {
			m, err := stack.ParseRouteMetrics("initcwnd " + s)
			return m.InitCwnd, err
		})
		return err
	})
	flag.DurationVar(&cfg.rtt, "rtt", 50*time.Millisecond, "the path's round trip, half of it each way")
	flag.Parse()
	if flag.NArg() > 0 || cfg.rtt <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if _, err := run(os.Stdout, cfg); err != nil {
		log.Fatalf("initcwnd: %v", err)
	}
}

// result is what one response showed.
type result struct {
	size     int64
	initcwnd uint32 // the route's
	// window is the server's congestion window when the handshake
	// ended, in segments of mss bytes: the initial window in force.
	window, mss int
	// flights are the data segments the server sent in each round
	// trip, the first flight first (from its engine's events).
	flights []int
	elapsed time.Duration // from the request's write to the response's last byte
}

// roundTrips is elapsed in round trips of rtt, rounded.
func (r result) roundTrips(rtt time.Duration) int {
	return int((r.elapsed + rtt/2) / rtt)
}

// run makes the path, measures each size with each initial window, and
// prints a table per size.
func run(w io.Writer, cfg config) ([]result, error) {
	var rounds flightLog
	oneWay := cfg.rtt / 2
	client, server := netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("192.0.2.1/24")
	p, err := stack.NewPair(stack.PairOptions{
		ClientPrefixes: []netip.Prefix{client},
		ServerPrefixes: []netip.Prefix{server},
		Server:         stack.Options{TCP: tcp.Options{Observer: rounds.observe}},
		ClientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			return tap.NewFault(l, tap.FaultConfig{Delay: oneWay, Inbound: &tap.FaultConfig{Delay: oneWay}})
		},
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	// The server's route back to the client: the on-link route its
	// address made (192.0.2.0/24), on the cable, NIC 1 of a Pair.
	clients := server.Masked()
	const cable = 1

	to := netip.AddrPortFrom(p.ServerAddr, 80).String()
	ln, err := conn.Listen(p.Server, "tcp", to)
	if err != nil {
		return nil, err
	}
	defer ln.Close()

	fmt.Fprintf(w, "a %v round trip; the server sends a response of each size and closes, with its route's initcwnd set to each\n", cfg.rtt)
	var results []result
	for _, size := range cfg.sizes {
		fmt.Fprintf(w, "\n%s response:\n", bytesString(size))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "initcwnd\tfirst flight\tflights (segments in each)\ttime\ttime/RTT\t")
		for _, iw := range cfg.initcwnds {
			// Linux: ip route change 192.0.2.0/24 dev eth0 initcwnd N.
			// New connections on the route take it when their
			// handshake ends.
			if err := p.Server.SetRouteMetrics(clients, cable, stack.RouteMetrics{InitCwnd: iw}); err != nil {
				return results, err
			}
			r, err := fetch(p, ln, to, size, &rounds)
			if err != nil {
				return results, fmt.Errorf("%s with initcwnd %d: %v", bytesString(size), iw, err)
			}
			r.initcwnd = iw
			results = append(results, r)
			first := 0
			if len(r.flights) > 0 {
				first = r.flights[0]
			}
			fmt.Fprintf(tw, "%d\t%d segments\t%d (%s)\t%v\t%.1f\t\n", iw, first, len(r.flights),
				joinInts(r.flights), r.elapsed.Round(time.Millisecond), float64(r.elapsed)/float64(cfg.rtt))
		}
		tw.Flush()
	}
	mss := 0
	if len(results) > 0 {
		mss = results[0].mss
	}
	fmt.Fprintf(w, `
Each segment carries %d bytes. Once the request arrives the server sends
its initial window (IW) at once, without waiting for an ACK; then slow
start grows the window by a segment for each segment acknowledged, so it
doubles every round trip (RFC 5681 3.1): IW, 2 IW, 4 IW, ... A response of
S segments needs about log2(S/IW + 1) flights (one when S is at most IW),
and each costs a round trip: the request's way there and the last flight's
way back make the first. On a short transfer the round trips are the
time, whatever the bandwidth, and the handshake's comes on top. RFC 3390
allowed 4380 bytes, 3 segments; RFC 6928 raised IW to 10, Linux's default
since 2.6.39. A larger one saves round trips on a page-sized response but
sends a burst the path must take at once, where a loss costs more (RFC
6928 weighs both). Linux sets it per route, for the hosts behind it:
ip route change 192.0.2.0/24 dev eth0 initcwnd 40.
`, mss)
	return results, nil
}

// fetch connects to the server, sends a request for size bytes and times
// the response, which the server writes as soon as it reads the request.
func fetch(p *stack.Pair, ln *conn.Listener, to string, size int64, rounds *flightLog) (result, error) {
	r := result{size: size}
	type accepted struct {
		id          event.ConnID
		window, mss int
		err         error
	}
	served := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- accepted{err: err}
			return
		}
		defer c.Close() // a FIN after the response (RFC 9293 3.10.4)
		// Established: the window is the initial one until data is
		// acknowledged (RFC 5681 3.1).
		in := c.(*conn.Conn).Info()
		a := accepted{id: in.ID, window: int(in.Cwnd) / max(in.SndMSS, 1), mss: in.SndMSS}
		req, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && req != "GET "+strconv.FormatInt(size, 10)+"\n" {
			err = fmt.Errorf("the server read request %q", req)
		}
		if err == nil {
			_, err = c.Write(make([]byte, size))
		}
		a.err = err
		served <- a
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := conn.DialContext(ctx, p.Client, "tcp", to)
	if err != nil {
		return r, err
	}
	defer c.Close()
	start := time.Now()
	if _, err := fmt.Fprintf(c, "GET %d\n", size); err != nil {
		return r, err
	}
	n, err := io.Copy(io.Discard, c) // to the FIN
	r.elapsed = time.Since(start)
	if err != nil {
		return r, err
	}
	if n != size {
		return r, fmt.Errorf("the client read %d bytes of %d", n, size)
	}
	var a accepted
	select {
	case a = <-served:
	case <-ctx.Done():
		return r, errors.New("the server did not finish within a minute")
	}
	if a.err != nil {
		return r, a.err
	}
	p.Server.TCP().SyncEvents() // the last ACK's event
	r.window, r.mss = a.window, a.mss
	r.flights = rounds.flights(a.id)
	return r, nil
}

// flightLog counts a server's round trips from its engine's events, by
// connection: a segment of new data belongs to the flight after the one
// of the last segment acknowledged when it left, the first flight being
// what left before any ACK of data. The flights are the ACK clock's
// turns, so their number does not depend on how fast the machine is, only
// on what the windows allowed.
type flightLog struct {
	mu    sync.Mutex
	conns map[event.ConnID]*flights
}

// flights is one connection's count.
type flights struct {
	started bool
	base    uint32 // the first data byte's sequence number
	sent    uint32 // SND.NXT, past base
	acked   int    // the flight of the last segment acknowledged
	queue   []sentSeg
	counts  []int // segments in each flight
}

// sentSeg is a segment of new data in flight.
type sentSeg struct {
	end    uint32 // past base
	flight int
}

func (l *flightLog) observe(ev event.Event) {
	if ev.Kind != event.KindSend && ev.Kind != event.KindAck {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		l.conns = make(map[event.ConnID]*flights)
	}
	f := l.conns[ev.Conn]
	if f == nil {
		f = &flights{}
		l.conns[ev.Conn] = f
	}
	seg := ev.Segment
	switch {
	case ev.Kind == event.KindSend && seg.Len > 0:
		if !f.started {
			f.started, f.base = true, seg.Seq
		}
		end := seg.Seq + uint32(seg.Len) - f.base
		if int32(end-f.sent) <= 0 {
			return // sent before: a retransmission is in no new flight
		}
		if ev.Send == event.SendTLP {
			// A tail loss probe may carry new data beyond the
			// window when the ACKs are late (RFC 8985 7.3): it
			// says the machine was slow, not what the window
			// allowed.
			f.sent = end
			return
		}
		fl := f.acked + 1
		if len(f.counts) < fl {
			f.counts = append(f.counts, 0)
		}
		f.counts[fl-1]++
		f.queue = append(f.queue, sentSeg{end, fl})
		f.sent = end
	case ev.Kind == event.KindAck && f.started && seg.Flags&event.FlagAck != 0:
		ack := seg.Ack - f.base
		for len(f.queue) > 0 && int32(ack-f.queue[0].end) >= 0 {
			f.acked = max(f.acked, f.queue[0].flight)
			f.queue = f.queue[1:]
		}
	}
}

// flights returns the segments of each flight of connection id, and
// forgets it.
func (l *flightLog) flights(id event.ConnID) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.conns[id]
	delete(l.conns, id)
	if f == nil {
		return nil
	}
	return f.counts
}

// parseList reads a comma-separated list.
func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		v, err := parse(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// parseSize reads 15k, 100k, 1m (thousands and millions of bytes) or a
// number of bytes.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToLower(s), "k"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "m"):
		mult, s = 1e6, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 1<<30/mult {
		return 0, fmt.Errorf("size %q: want bytes, or 15k, 1m", s)
	}
	return n * mult, nil
}

// bytesString writes a size in kB or MB when it is a round number of
// them.
func bytesString(n int64) string {
	switch {
	case n%1e6 == 0:
		return fmt.Sprintf("%d MB", n/1e6)
	case n%1e3 == 0:
		return fmt.Sprintf("%d kB", n/1e3)
	}
	return fmt.Sprintf("%d-byte", n)
}

// joinInts writes 4+8+16.
func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, "+")
}
