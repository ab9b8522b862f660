package pcap_test

import (
	"context"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// BenchmarkBulkTransfer measures what observing costs: one connection over
// tap.Pipe moving 1 MiB per iteration, with nothing attached, and with an
// observer on both stacks and a pcap capture (to io.Discard) on both ends.
// Compare the MB/s of the two.
func BenchmarkBulkTransfer(b *testing.B) {
	for _, observed := range []bool{false, true} {
		name := "bare"
		if observed {
			name = "observer+pcap"
		}
		b.Run(name, func(b *testing.B) { benchBulk(b, observed) })
	}
}

func benchBulk(b *testing.B, observed bool) {
	const chunk = 1 << 20
	pa, pb := tap.Pipe()
	var la, lb gstack.LinkEndpoint = pa, pb
	var events atomic.Uint64
	count := func(event.Event) { events.Add(1) }
	var oa, ob event.Observer
	if observed {
		wa, err := pcap.New(pa, io.Discard, pcap.Options{})
		if err != nil {
			b.Fatal(err)
		}
		wb, err := pcap.New(pb, io.Discard, pcap.Options{})
		if err != nil {
			b.Fatal(err)
		}
		la, lb = wa, wb
		oa, ob = wa.Observer(count), wb.Observer(count)
		defer func() {
			b.ReportMetric(float64(events.Load())/float64(b.N), "events/op")
			if st := wa.Stats(); st.Evicted > 0 {
				b.Logf("server capture: %+v", st)
			}
		}()
	}
	server := stack.New(stack.Options{TCP: tcp.Options{Observer: oa}})
	defer server.Close()
	client := stack.New(stack.Options{TCP: tcp.Options{Observer: ob}})
	defer client.Close()
	// Cut the cable before the stacks close: gVisor's Stack.Wait holds
	// the stack's lock while it waits for the pipe's pumps, and a pump
	// delivering a frame into that stack needs the lock.
	defer pa.Close()
	defer pb.Close()
	if _, err := server.AddNIC(la, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		b.Fatal(err)
	}
	if _, err := client.AddNIC(lb, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		b.Fatal(err)
	}
	ln, err := conn.Listen(server, "tcp", "192.0.2.1:9")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	accepted := make(chan *conn.Conn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	c, err := conn.DialContext(ctx, client, "tcp", "192.0.2.1:9")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	if sc == nil {
		b.Fatal("accept failed")
	}
	defer sc.Close()

	buf := make([]byte, chunk)
	rbuf := make([]byte, 64<<10)
	b.SetBytes(chunk)
	b.ResetTimer()
	for range b.N {
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(buf)
			done <- err
		}()
		for n := 0; n < chunk; {
			m, err := sc.Read(rbuf)
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}
