package stack_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// serveName answers every connection on ln with name, then closes it.
func serveName(ln *conn.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, name)
		c.Close()
	}
}

// whoAnswers dials addr from s and returns what the server there says.
func whoAnswers(t *testing.T, s *stack.Stack, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c, err := (&conn.Dialer{Stack: s}).DialTCP(ctx, "tcp", addr)
	if err != nil {
		t.Errorf("Dial %s: %v", addr, err)
		return ""
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("Read from %s: %v", addr, err)
	}
	return string(b)
}

// TestRouteSelection: a stack with two interfaces, each cabled to a
// stack that holds 203.0.113.5 and 2001:db8:1::5 and says its name. The
// longest prefix that matches wins whatever the order the routes were
// added in, a default route takes what no other matches, and IPv6
// routes through a gateway work as IPv4's, as Linux's fib lookup.
func TestRouteSelection(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	nics := map[string]peerNIC{}
	// Each peer holds the far addresses too; which one answers tells
	// which interface the route chose.
	far := []string{"203.0.113.5/32", "203.0.113.100/32", "203.0.113.200/32", "100.64.0.5/32", "2001:db8:1::5/128", "2001:db8:1::99/128"}
	for _, p := range []struct {
		name       string
		self, peer []string
	}{
		{"A", []string{"192.0.2.1/24", "2001:db8::1/64"}, []string{"192.0.2.2/24", "2001:db8::2/64"}},
		{"B", []string{"198.51.100.1/24", "2001:db8:2::1/64"}, []string{"198.51.100.2/24", "2001:db8:2::2/64"}},
	} {
		a, b := tap.Pipe()
		var self, peer []netip.Prefix
		for _, x := range p.self {
			self = append(self, netip.MustParsePrefix(x))
		}
		for _, x := range append(p.peer, far...) {
			peer = append(peer, netip.MustParsePrefix(x))
		}
		nic, err := s.AddNIC(a, self...)
		if err != nil {
			t.Fatal(err)
		}
		ps := stack.New(stack.Options{})
		defer ps.Close()
		if _, err := ps.AddNIC(b, peer...); err != nil {
			t.Fatal(err)
		}
		ln, err := conn.Listen(ps, "tcp", ":80")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go serveName(ln, p.name)
		nics[p.name] = peerNIC{nic, netip.MustParsePrefix(p.peer[0]).Addr(), netip.MustParsePrefix(p.peer[1]).Addr()}
	}
	A, B := nics["A"], nics["B"]
	for _, r := range []struct {
		dst string
		gw  netip.Addr
		nic peerNIC
	}{
		{"0.0.0.0/0", B.gw4, B},         // default: B
		{"203.0.113.0/25", B.gw4, B},    // more specific, added first: B
		{"203.0.113.0/24", A.gw4, A},    // less specific: A
		{"203.0.113.5/32", A.gw4, A},    // the host itself: A
		{"2001:db8:1::/48", A.gw6, A},   // IPv6: A
		{"2001:db8:1::4/126", B.gw6, B}, // more specific: B
	} {
		if err := s.AddRoute(netip.MustParsePrefix(r.dst), r.gw, r.nic.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.5:80", "A"},      // /32 over /25 over /24
		{"203.0.113.100:80", "B"},    // /25 over /24 and the default
		{"203.0.113.200:80", "A"},    // /24 over the default
		{"100.64.0.5:80", "B"},       // the default
		{"[2001:db8:1::99]:80", "A"}, // /48
		{"198.51.100.2:80", "B"},     // on-link
		{"[2001:db8:1::5]:80", "B"},  // /126 over /48
		{"[2001:db8::2]:80", "A"},    // on-link, IPv6
	} {
		if got := whoAnswers(t, s, tc.addr); got != tc.want {
			t.Errorf("%s answered by %q, want %q", tc.addr, got, tc.want)
		}
	}
	// No route for IPv6 outside what the routes cover: ENETUNREACH at
	// once, as connect(2), in a *net.OpError.
	_, err := (&conn.Dialer{Stack: s}).DialTCP(context.Background(), "tcp", "[2001:db8:9::1]:80")
	var op *net.OpError
	if !errors.As(err, &op) || !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("Dial with no route: %v, want a *net.OpError wrapping ENETUNREACH", err)
	}
}

type peerNIC struct {
	id       tcpip.NICID
	gw4, gw6 netip.Addr
}
