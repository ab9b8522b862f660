package interop

import (
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestScaleIdleConnections opens n established connections between two
// stacks in one process over tap.Pipe, the clients spread over several
// addresses (65,000 ports each), and holds them idle: no goroutine per
// connection, and the heap they take, per connection (both ends), and
// the rate at which the server accepted them are reported.
//
// By default n is 20,000 (skipped with -short); TAPSTACK_SCALE_CONNS sets
// it, up to the full run:
//
//	TAPSTACK_SCALE_CONNS=1000000 go test ./stack/interop -run ScaleIdle -v -timeout 30m
//
// With TAPSTACK_SCALE_HEAP_MIB set, a heap above that many MiB fails the
// test (the bound for a million: 4096).
func TestScaleIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	n := 20000
	if s := os.Getenv("TAPSTACK_SCALE_CONNS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("TAPSTACK_SCALE_CONNS=%q", s)
		}
		n = v
	}
	const portsPerAddr = 64000
	nAddrs := (n + portsPerAddr - 1) / portsPerAddr
	if nAddrs > 200 {
		t.Fatalf("%d connections need %d client addresses; at most 200", n, nAddrs)
	}
	opts := tcp.Options{MaxConnections: n + 16, SynQueueLimit: 4096}
	a, b := tap.Pipe(tap.WithPipeQueue(8192))
	srv := stack.New(stack.Options{TCP: opts})
	defer srv.Close()
	cli := stack.New(stack.Options{TCP: opts})
	defer cli.Close()
	if _, err := srv.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	var cliAddrs []netip.Prefix
	for i := range nAddrs {
		cliAddrs = append(cliAddrs, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), 24))
	}
	if _, err := cli.AddNIC(b, cliAddrs...); err != nil {
		t.Fatal(err)
	}
	srvAddr := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 80)
	ln, err := srv.TCP().Listen(srvAddr, 65535)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	clients := make([]*tcp.Endpoint, 0, n)
	servers := make([]*tcp.Endpoint, 0, n)
	const wave = 2000 // connections in flight at once: within the SYN queue
	start := time.Now()
	deadline := start.Add(time.Duration(n/500+60) * time.Second)
	for len(clients) < n {
		k := min(wave, n-len(clients))
		for range k {
			i := len(clients)
			local := netip.AddrPortFrom(cliAddrs[i/portsPerAddr].Addr(), uint16(1024+i%portsPerAddr))
			e, err := cli.TCP().Connect(local, srvAddr)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			clients = append(clients, e)
		}
		// Accept the wave; the server's accept queue is the bound.
		for want := len(clients); len(servers) < want; {
			e, err := ln.Accept()
			if err != nil {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d connections accepted by the deadline; listener %+v", len(servers), want, ln.Queues())
				}
				time.Sleep(100 * time.Microsecond)
				continue
			}
			servers = append(servers, e)
		}
	}
	elapsed := time.Since(start)
	for i, e := range clients {
		for ok, err := e.Established(); !ok; ok, err = e.Established() {
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("client %d not established: %v, %v", i, e.State(), err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	goroutines := runtime.NumGoroutine() - g0
	heap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("%d established idle connections (both ends in this process, clients on %d addresses): accepted in %v, %.0f conn/s; heap %.1f MiB, %d B per connection (both ends); %d goroutines more than before",
		n, nAddrs, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(heap)/(1<<20), heap/int64(n), goroutines)
	if path := os.Getenv("TAPSTACK_SCALE_HEAP_PROFILE"); path != "" {
		// The heap while the connections are held, for go tool pprof.
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if goroutines > 16 {
		t.Errorf("%d goroutines more with %d connections: the engine must not keep one per connection", goroutines, n)
	}
	if s := os.Getenv("TAPSTACK_SCALE_HEAP_MIB"); s != "" {
		limit, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("TAPSTACK_SCALE_HEAP_MIB=%q", s)
		}
		if heap > int64(limit)<<20 {
			t.Errorf("heap %d MiB, over the bound of %d MiB", heap>>20, limit)
		}
	}
	if got := len(srv.TCP().Connections()); got < n {
		t.Errorf("server holds %d connections, want %d", got, n)
	}
	runtime.KeepAlive(clients)
	runtime.KeepAlive(servers)
}
