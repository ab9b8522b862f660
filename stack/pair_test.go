package stack_test

import (
	"context"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

// counter is link middleware that counts the frames a stack writes.
type counter struct {
	nested.Endpoint
	frames atomic.Int64
}

func newCounter(inner gstack.LinkEndpoint) *counter {
	c := &counter{}
	c.Endpoint.Init(inner, c)
	return c
}

func (c *counter) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	c.frames.Add(int64(pkts.Len()))
	return c.Endpoint.WritePackets(pkts)
}

// echo serves one echo connection on ln and closes it.
func echo(ln *conn.Listener) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	io.Copy(c, c)
	c.Close()
}

// roundTrip dials addr from s, sends msg, half-closes and returns the
// reply.
func roundTrip(t *testing.T, s *stack.Stack, addr, msg string) string {
	t.Helper()
	c, err := (&conn.Dialer{Stack: s}).DialTCP(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, msg)
	c.CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNewPair: the zero PairOptions give a client on 192.0.2.2 and a
// server on 192.0.2.1 that can talk; prefixes and middleware can be
// chosen per side, IPv6 included.
func TestNewPair(t *testing.T) {
	t.Run("Defaults", func(t *testing.T) {
		p, err := stack.NewPair(stack.PairOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.ClientAddr != netip.MustParseAddr("192.0.2.2") || p.ServerAddr != netip.MustParseAddr("192.0.2.1") {
			t.Errorf("addresses %v, %v; want 192.0.2.2, 192.0.2.1", p.ClientAddr, p.ServerAddr)
		}
		ln, err := conn.Listen(p.Server, "tcp", ":7")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go echo(ln)
		if got := roundTrip(t, p.Client, "192.0.2.1:7", "hello"); got != "hello" {
			t.Errorf("echo %q", got)
		}
	})
	t.Run("PrefixesAndLinks", func(t *testing.T) {
		var cc, sc *counter
		p, err := stack.NewPair(stack.PairOptions{
			ClientPrefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::2/64"), netip.MustParsePrefix("198.51.100.2/24")},
			ServerPrefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::1/64"), netip.MustParsePrefix("198.51.100.1/24")},
			ClientLink:     func(l gstack.LinkEndpoint) gstack.LinkEndpoint { cc = newCounter(l); return cc },
			ServerLink:     func(l gstack.LinkEndpoint) gstack.LinkEndpoint { sc = newCounter(l); return sc },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.ServerAddr != netip.MustParseAddr("2001:db8::1") {
			t.Errorf("ServerAddr %v, want the first prefix's, 2001:db8::1", p.ServerAddr)
		}
		ln, err := conn.Listen(p.Server, "tcp", ":7")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		for _, addr := range []string{"[2001:db8::1]:7", "198.51.100.1:7"} {
			go echo(ln)
			if got := roundTrip(t, p.Client, addr, addr); got != addr {
				t.Errorf("echo via %s: %q", addr, got)
			}
		}
		if cc.frames.Load() == 0 || sc.frames.Load() == 0 {
			t.Errorf("frames through the middleware: client %d, server %d; want both > 0", cc.frames.Load(), sc.frames.Load())
		}
	})
	t.Run("BadPrefix", func(t *testing.T) {
		if _, err := stack.NewPair(stack.PairOptions{ServerPrefixes: []netip.Prefix{{}}}); err == nil {
			t.Error("NewPair with an invalid server prefix: no error")
		}
	})
}
