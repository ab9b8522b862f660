package conn_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

// swallow reads and discards every datagram to pc until it closes: a DNS
// server that never answers. It reports each query it took on got.
func swallow(pc net.PacketConn, got chan<- struct{}) {
	buf := make([]byte, 2048)
	for {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			return
		}
		select {
		case got <- struct{}{}:
		default:
		}
	}
}

// TestDialerTimeoutCoversResolution: as with net.Dialer, Dialer.Timeout
// bounds name resolution too. The resolver's server swallows every
// query; Go's resolver alone would wait 5 s per attempt, twice per
// server. The dial ends with a timeout once Timeout has passed, for TCP
// and UDP.
func TestDialerTimeoutCoversResolution(t *testing.T) {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dns, err := conn.ListenPacket(p.Server, "udp4", "192.0.2.1:53")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	queries := make(chan struct{}, 1)
	go swallow(dns, queries)

	d := &conn.Dialer{
		Stack:    p.Client,
		Timeout:  500 * time.Millisecond,
		Resolver: conn.Resolver(p.Client, netip.MustParseAddrPort("192.0.2.1:53")),
	}
	for _, network := range []string{"tcp", "udp"} {
		for len(queries) > 0 { // what the last lookup sent
			<-queries
		}
		done := make(chan error, 1)
		go func() {
			c, err := d.DialContext(context.Background(), network, "example.test:80")
			if err == nil {
				c.Close()
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second): // far beyond the resolver's own 5 s timeouts
			t.Fatalf("%s: dial still resolving", network)
		}
		// The query left before the timeout; it may still be on its
		// way to the server.
		select {
		case <-queries:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the server saw no query: the dial failed before resolving", network)
		}
		var ne net.Error
		var oe *net.OpError
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || !errors.As(err, &oe) || oe.Op != "dial" {
			t.Errorf("%s: dial = %v, want a *net.OpError dial timeout (os.ErrDeadlineExceeded)", network, err)
		}
	}
}
