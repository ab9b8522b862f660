package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	gtcp "gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// The workloads of "tapstack bench" (and of its go test benchmarks): each
// runs on a fresh benchEnv, a stack under test (tapstack, or gVisor's TCP)
// that dials a server over a link, and returns its figures.

// stackKind is the TCP under test.
type stackKind int

const (
	kindTapstack stackKind = iota
	kindGVisor
)

func (k stackKind) String() string {
	if k == kindGVisor {
		return "gVisor"
	}
	return "tapstack"
}

// benchEnv is one stack under test and the server it talks to.
type benchEnv struct {
	kind   stackKind
	server netip.Addr
	dial   func(ctx context.Context, to netip.AddrPort) (net.Conn, error)
	listen func(port uint16) (net.Listener, error) // the server's side
	frames func() uint64                           // frames the link has carried, both ways
	retx   func() uint64                           // segments the stack(s) under test retransmitted
	close  func()
}

// benchLink makes benchEnvs on one kind of link.
type benchLink interface {
	name() string
	env(kind stackKind) (*benchEnv, error)
	close()
}

// benchTimeWait is TIME-WAIT in both stacks of the bench: short, so that
// the TIME-WAIT states one measurement leaves (thousands, after a
// connections/s run) are gone, their memory with them, before the next
// measurement reads the heap. It changes no rate: a connection leaves
// TIME-WAIT after the measurement that made it.
const benchTimeWait = 100 * time.Millisecond

// tapstackStack makes a tapstack stack on link with congestion control
// cc ("": the default). obs, if not nil, watches it (--otlp).
func tapstackStack(link gstack.LinkEndpoint, p netip.Prefix, cc string, obs event.Observer) (*stack.Stack, error) {
	s := stack.New(stack.Options{TCP: tcp.Options{TimeWait: benchTimeWait, CongestionControl: cc, Observer: obs}})
	if _, err := s.AddNIC(link, p); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func tapstackDial(s *stack.Stack) func(context.Context, netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
		return conn.DialContext(ctx, s, "tcp", to.String())
	}
}

// gvisorStack makes a gVisor-TCP stack on link.
func gvisorStack(link gstack.LinkEndpoint, p netip.Prefix) (*gvpeer.Peer, error) {
	g, err := gvpeer.New(link, p, nil)
	if err != nil {
		return nil, err
	}
	tw := tcpip.TCPTimeWaitTimeoutOption(benchTimeWait)
	if terr := g.S.SetTransportProtocolOption(gtcp.ProtocolNumber, &tw); terr != nil {
		g.Close()
		return nil, fmt.Errorf("gVisor TIME-WAIT: %s", terr)
	}
	return g, nil
}

func gvisorDial(p *gvpeer.Peer) func(context.Context, netip.AddrPort) (net.Conn, error) {
	return func(_ context.Context, to netip.AddrPort) (net.Conn, error) { return p.Dial(to) }
}

// pipeLink is tap.Pipe: both ends in this process, both the stack under
// test.
type pipeLink struct {
	mtu    uint32
	gso    bool                                          // tap.WithPipeGSO
	wrap   func(gstack.LinkEndpoint) gstack.LinkEndpoint // faults on the client's end, if set
	traces *otlpTracing                                  // traces tapstack's stacks (--otlp); nil: none
	cc     string                                        // tapstack's congestion control (--cc)
}

func (pipeLink) name() string { return "tap.Pipe" }
func (pipeLink) close()       {}

// floor: faults make the stacks' transfers slower than any floor; with
// them there is none to compare with.
func (l pipeLink) floor() bool { return l.wrap == nil }

func (l pipeLink) env(kind stackKind) (*benchEnv, error) {
	a, b := tap.Pipe(tap.WithPipeMTU(l.mtu), tap.WithPipeGSO(l.gso))
	srvP, cliP := netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24")
	e := &benchEnv{kind: kind, server: srvP.Addr(), frames: func() uint64 { return a.Stats().Sent + b.Stats().Sent }}
	var cl gstack.LinkEndpoint = b
	if l.wrap != nil {
		cl = l.wrap(b)
	}
	switch kind {
	case kindTapstack:
		srv, err := tapstackStack(a, srvP, l.cc, l.traces.observer("bench server", nil))
		if err != nil {
			return nil, err
		}
		cli, err := tapstackStack(cl, cliP, l.cc, l.traces.observer("bench client", nil))
		if err != nil {
			srv.Close()
			return nil, err
		}
		e.dial = tapstackDial(cli)
		e.retx = func() uint64 { return cli.TCP().Stats().Retransmits.Load() + srv.TCP().Stats().Retransmits.Load() }
		e.listen = func(port uint16) (net.Listener, error) {
			return conn.Listen(srv, "tcp", netip.AddrPortFrom(srvP.Addr(), port).String())
		}
		// Cut the cable first: gVisor's Stack.Wait holds the stack's
		// lock while it waits for the pipe's pumps.
		e.close = func() { a.Close(); b.Close(); cli.Close(); srv.Close() }
	case kindGVisor:
		srv, err := gvisorStack(a, srvP)
		if err != nil {
			return nil, err
		}
		cli, err := gvisorStack(cl, cliP)
		if err != nil {
			srv.Close()
			return nil, err
		}
		e.dial = gvisorDial(cli)
		e.retx = func() uint64 { return cli.S.Stats().TCP.Retransmits.Value() + srv.S.Stats().TCP.Retransmits.Value() }
		e.listen = srv.Listen
		e.close = func() { a.Close(); b.Close(); cli.Close(); srv.Close() }
	}
	return e, nil
}

// kernelLink is a TAP device in a namespace of its own, the kernel's TCP
// as the server.
type kernelLink struct {
	ns     *benchNetns
	opts   []tap.Option
	wrap   func(gstack.LinkEndpoint) gstack.LinkEndpoint // faults on the stack's end, if set
	traces *otlpTracing                                  // traces tapstack's stack (--otlp); nil: none
	cc     string                                        // tapstack's congestion control (--cc)
	next   *atomic.Uint32                                // the last host number given out
}

// offloads says which offloads the device gets, opening it once.
func (l kernelLink) offloads() tap.Offloads {
	dev, err := l.ns.openTAP(l.opts...)
	if err != nil {
		return tap.Offloads{}
	}
	defer dev.Close()
	return dev.Offloads()
}

func (kernelLink) name() string { return "TAP, kernel peer" }
func (l kernelLink) close()     { _ = l.ns.close() }

func (l kernelLink) env(kind stackKind) (*benchEnv, error) {
	opts := l.opts
	if kind == kindGVisor {
		// Each stack on the device as it runs best. gVisor's TCP hands
		// segments to goroutines of its own (its processors), so frames
		// are delivered on the read loop: the device's inbound queue,
		// which tapstack's engine wants (tap.WithRxQueue), cut gVisor's
		// kernel -> stack rate from 17.4 to 13.5 Gbit/s.
		opts = append(slices.Clone(opts), tap.WithRxQueue(0))
	}
	dev, err := l.ns.openTAP(opts...)
	if err != nil {
		return nil, err
	}
	// Each stack takes an address of its own, 192.0.2.2 to .254 in turn:
	// the kernel outlives the stacks of the rounds and keeps the state
	// of their last connections a while (TIME-WAIT, LAST-ACK); a new
	// stack on the same address would reuse some of their port numbers,
	// and its SYNs would meet that state and wait for a retransmission.
	host := 2 + l.next.Add(1)%253
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(host)}), 24)
	var link gstack.LinkEndpoint = dev.LinkEndpoint()
	if l.wrap != nil {
		link = l.wrap(link)
	}
	e := &benchEnv{kind: kind, server: netip.MustParseAddr(benchKernelAddr), listen: l.ns.listen,
		frames: func() uint64 { st := dev.Stats(); return st.RxFrames + st.TxFrames }}
	switch kind {
	case kindTapstack:
		s, err := tapstackStack(link, p, l.cc, l.traces.observer("bench client", nil))
		if err != nil {
			dev.Close()
			return nil, err
		}
		e.dial = tapstackDial(s)
		e.retx = s.TCP().Stats().Retransmits.Load
		e.close = func() { s.Close(); dev.Close() }
	case kindGVisor:
		g, err := gvisorStack(link, p)
		if err != nil {
			dev.Close()
			return nil, err
		}
		e.dial = gvisorDial(g)
		e.retx = g.S.Stats().TCP.Retransmits.Value
		e.close = func() { g.Close(); dev.Close() }
	}
	return e, nil
}

// benchPort is the port the servers listen on.
const benchPort = 5001

// benchTimeout bounds each step of a workload.
const benchTimeout = 2 * time.Minute

// connect dials the server once and returns both ends.
func (e *benchEnv) connect(ctx context.Context, ln net.Listener) (client, server net.Conn, err error) {
	accepted := acceptOne(ln)
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := e.dial(dctx, netip.AddrPortFrom(e.server, benchPort))
	if err != nil {
		ln.Close()
		<-accepted
		return nil, nil, err
	}
	select {
	case sc := <-accepted:
		if sc == nil {
			c.Close()
			return nil, nil, errors.New("accept failed")
		}
		return c, sc, nil
	case <-ctx.Done():
		c.Close()
		return nil, nil, ctx.Err()
	}
}

// procUsage is what the process spent: CPU time (getrusage) and heap
// allocations.
type procUsage struct {
	cpu     time.Duration // user and system
	sys     time.Duration // system: the kernel's work in the process's system calls
	mallocs uint64
}

func readUsage() procUsage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return procUsage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), sys: time.Duration(ru.Stime.Nano()), mallocs: ms.Mallocs}
}

// bulkResult is one bulk transfer's figures.
type bulkResult struct {
	gbps    float64       // steady-state throughput: after the first eighth
	cpu     time.Duration // process CPU for the whole transfer
	sys     time.Duration // of it, system time
	steady  int64         // bytes moved in the steady state: after the first eighth
	mallocs uint64        // heap allocations in the steady state
	frames  uint64        // frames the link carried during the transfer
}

// halfCloser is a connection that can shut its sending side.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// bulk moves size bytes one way over a fresh connection, write bytes per
// Write (0: the block whole): from the dialer to the listener (up) or
// back. The bytes are a random block repeated;
// the receiver checks their count and CRC-32C, which costs a few percent
// of what the transfer does, the same for both stacks. Throughput is
// taken in the steady state, from the moment an eighth has arrived to the
// end, so that neither slow start nor the first page faults of a buffer
// weigh on it (see the note on warm-up in bench.go).
func bulk(ctx context.Context, e *benchEnv, size int64, write int, up bool) (bulkResult, error) {
	ln, err := e.listen(benchPort)
	if err != nil {
		return bulkResult{}, err
	}
	defer ln.Close()
	c, sc, err := e.connect(ctx, ln)
	if err != nil {
		return bulkResult{}, err
	}
	defer release(c)
	defer release(sc)
	from, to := c, sc
	if !up {
		from, to = sc, c
	}
	stop := context.AfterFunc(ctx, func() { c.Close(); sc.Close() })
	defer stop()
	dl := time.Now().Add(benchTimeout)
	c.SetDeadline(dl)
	sc.SetDeadline(dl)
	block := benchBlock()
	if write <= 0 || write > len(block) {
		write = len(block)
	}
	chk := newBulkCheck(block, size)

	prog := progressFrom(ctx)
	prog.expect(size)
	prog.retransmits(e.retx)
	runtime.GC() // neither stack pays for the other's garbage
	u0, f0 := readUsage(), e.frames()
	sent := make(chan error, 1)
	go func() {
		var err error
		for n := int64(0); n < size && err == nil; {
			var m int
			// The stream is block repeated: write from where it stands.
			off := int(n % int64(len(block)))
			end := off + int(min(int64(write), int64(len(block)-off), size-n))
			m, err = from.Write(block[off:end])
			n += int64(m)
		}
		if err == nil {
			if hc, ok := from.(halfCloser); ok {
				err = hc.CloseWrite()
			}
		}
		sent <- err
	}()
	buf := make([]byte, 256<<10)
	for {
		n, err := to.Read(buf)
		chk.add(buf[:n])
		prog.add(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return bulkResult{}, fmt.Errorf("receive after %d bytes: %w", chk.got, err)
		}
	}
	tEnd := time.Now()
	u1, f1 := readUsage(), e.frames()
	if err := <-sent; err != nil {
		return bulkResult{}, fmt.Errorf("send: %w", err)
	}
	r, err := chk.result(tEnd, u0, u1)
	r.frames = f1 - f0
	return r, err
}

// bulkCheck is a bulk transfer's receiving end, a stack's or the
// floor's: the count and CRC-32C of what arrived, checked against what
// was sent, and the moment the steady state began (an eighth arrived).
type bulkCheck struct {
	table      *crc32.Table
	size, warm int64
	got        int64
	sum, want  uint32
	tWarm      time.Time
	uWarm      procUsage // the process's usage then
}

// newBulkCheck expects size bytes of block repeated. The CRC-32C they
// should have is the bench's setup, not a stack's work (a GiB of it, in a
// run of 1 GiB): it is made on a goroutine without the profile labels of
// the run it serves, so that -cpuprofile's split leaves it out.
func newBulkCheck(block []byte, size int64) *bulkCheck {
	c := &bulkCheck{table: crc32.MakeTable(crc32.Castagnoli), size: size, warm: size / 8}
	want := make(chan uint32)
	go func() {
		pprof.SetGoroutineLabels(context.Background())
		var sum uint32
		for n := int64(0); n < size; n += int64(len(block)) {
			sum = crc32.Update(sum, c.table, block[:min(int64(len(block)), size-n)])
		}
		want <- sum
	}()
	c.want = <-want
	return c
}

// add takes bytes that arrived.
func (c *bulkCheck) add(b []byte) {
	c.sum = crc32.Update(c.sum, c.table, b)
	c.got += int64(len(b))
	if c.tWarm.IsZero() && c.got >= c.warm {
		c.tWarm = time.Now()
		c.uWarm = readUsage() // once: it stops the world for microseconds
	}
}

// result checks what arrived and gives the figures of a transfer that
// ended at tEnd, with the process's usage before and after it.
func (c *bulkCheck) result(tEnd time.Time, u0, u1 procUsage) (bulkResult, error) {
	if c.got != c.size || c.sum != c.want {
		return bulkResult{}, fmt.Errorf("received %d bytes with CRC-32C %08x, want %d with %08x", c.got, c.sum, c.size, c.want)
	}
	return bulkResult{
		gbps:    float64(c.size-c.warm) * 8 / tEnd.Sub(c.tWarm).Seconds() / 1e9,
		steady:  c.size - c.warm,
		cpu:     u1.cpu - u0.cpu,
		sys:     u1.sys - u0.sys,
		mallocs: u1.mallocs - c.uWarm.mallocs,
	}, nil
}

// benchBlockSize is the size of the block bulk transfers repeat, and the
// largest write they make.
const benchBlockSize = 1 << 20

// benchBlock is the bytes a bulk transfer repeats: 1 MiB, random.
func benchBlock() []byte {
	b := make([]byte, benchBlockSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// connResult is one connections/s measurement's figures.
type connResult struct {
	rate    float64       // connections opened and closed per second
	cpu     time.Duration // process CPU per connection: both ends over tap.Pipe; the stack's end and the kernel's sockets' syscalls over the TAP
	mallocs float64       // heap allocations per connection, the bench's own included (the same for both stacks)
}

// connRate opens and closes n connections from dialers goroutines and
// returns the rate. Each connection is a full life: the handshake, the
// client's close, the server's accept, EOF and close. The client closes
// first, so the TIME-WAIT states are the stack under test's, gone with
// its stack: the kernel, which outlives the stacks of the rounds, would
// otherwise hold TIME-WAIT states of earlier rounds' connections, and a
// new stack's SYN that happens to reuse one of their port numbers with a
// lower timestamp is taken for an old duplicate (RFC 6191) and waits a
// retransmission timeout.
func connRate(ctx context.Context, e *benchEnv, n, dialers int) (connResult, error) {
	ln, err := e.listen(benchPort)
	if err != nil {
		return connResult{}, err
	}
	defer ln.Close()
	var served sync.WaitGroup
	var accepted atomic.Int64
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			served.Add(1)
			go func() {
				defer served.Done()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				io.Copy(io.Discard, c)
				release(c)
			}()
		}
	}()
	defer served.Wait()
	defer ln.Close()
	errs := make(chan error, dialers)
	u0 := readUsage()
	start := time.Now()
	var wg sync.WaitGroup
	for d := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := d; i < n; i += dialers {
				dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				c, err := e.dial(dctx, netip.AddrPortFrom(e.server, benchPort))
				cancel()
				if err != nil {
					errs <- err
					return
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	// Every connection was accepted, too.
	for deadline := time.Now().Add(20 * time.Second); accepted.Load() < int64(n); {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return connResult{}, fmt.Errorf("%d of %d connections accepted", accepted.Load(), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
	d := time.Since(start)
	u1 := readUsage()
	select {
	case err := <-errs:
		return connResult{}, err
	default:
	}
	return connResult{rate: float64(n) / d.Seconds(), cpu: (u1.cpu - u0.cpu) / time.Duration(n), mallocs: float64(u1.mallocs-u0.mallocs) / float64(n)}, nil
}

// echoLatency sends n messages of size bytes, one at a time, over one
// connection to an echo server, and returns the round-trip times' 50th
// and 99th percentiles.
func echoLatency(ctx context.Context, e *benchEnv, n, size int) (p50, p99 time.Duration, err error) {
	ln, err := e.listen(benchPort)
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	c, sc, err := e.connect(ctx, ln)
	if err != nil {
		return 0, 0, err
	}
	defer release(c)
	stop := context.AfterFunc(ctx, func() { c.Close(); sc.Close() })
	defer stop()
	go func() {
		io.Copy(sc, sc)
		sc.Close()
	}()
	c.SetDeadline(time.Now().Add(benchTimeout))
	msg, reply := make([]byte, size), make([]byte, size)
	const warm = 100
	rtts := make([]time.Duration, 0, n)
	for i := range n + warm {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			return 0, 0, err
		}
		if i >= warm {
			rtts = append(rtts, time.Since(t0))
		}
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100], nil
}

// idleHeap establishes n connections and returns the heap they hold, per
// connection (both its ends are in this process over tap.Pipe).
func idleHeap(ctx context.Context, e *benchEnv, n int) (float64, error) {
	ln, err := e.listen(benchPort)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	var mu sync.Mutex
	var servers []net.Conn
	var served sync.WaitGroup
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			servers = append(servers, c)
			mu.Unlock()
		}
	}()
	clients := make([]net.Conn, 0, n)
	defer func() {
		ln.Close()
		served.Wait()
		for _, c := range clients {
			c.Close()
		}
		for _, c := range servers {
			c.Close()
		}
	}()
	h0 := heapNow()
	for range n {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		c, err := e.dial(dctx, netip.AddrPortFrom(e.server, benchPort))
		cancel()
		if err != nil {
			return 0, err
		}
		clients = append(clients, c)
	}
	deadline := time.Now().Add(benchTimeout)
	for {
		mu.Lock()
		m := len(servers)
		mu.Unlock()
		if m >= n {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("%d of %d connections accepted", m, n)
		}
		time.Sleep(time.Millisecond)
	}
	h1 := heapNow()
	return float64(int64(h1)-int64(h0)) / float64(n), nil
}

// heapNow is the live heap once it has settled: collected every 50 ms
// until three readings in a row agree within 0.5% (or three seconds have
// passed), so that what the stacks of earlier measurements let go of a
// moment after Close (their goroutines, timers and TIME-WAIT states end
// later) is not counted against this one.
func heapNow() uint64 {
	var ms runtime.MemStats
	var last [3]uint64
	for i, deadline := 0, time.Now().Add(3*time.Second); ; i++ {
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		last[i%3] = ms.HeapAlloc
		if i >= 2 {
			lo, hi := min(last[0], last[1], last[2]), max(last[0], last[1], last[2])
			if hi-lo <= hi/200 || time.Now().After(deadline) {
				return ms.HeapAlloc
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// release closes c once its deadline is cleared. gVisor's gonet leaves
// the timer of a deadline running past Close, and the timer holds the
// connection, buffers and all, until it fires: the 20,000 connections of
// one connections/s run held 12.6 MB for 20 s after their stack was
// closed, and the next measurement's heap reading fell by as much (a heap
// per idle connection of -4,940 B). A conn of this package stops its
// timer on Close; clearing first costs both stacks the same call.
func release(c net.Conn) {
	c.SetDeadline(time.Time{})
	c.Close()
}

// acceptOne accepts one connection on ln; nil if that fails.
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

// newHostCounter is the counter a kernelLink gives its stacks' addresses
// from.
func newHostCounter() *atomic.Uint32 { return new(atomic.Uint32) }
