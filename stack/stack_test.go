package stack_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// TestBadInput: bad addresses, unknown interfaces and a closed stack give
// clear errors, never a panic or a hang.
func TestBadInput(t *testing.T) {
	s := stack.New(stack.Options{})
	a, _ := tap.Pipe()
	if _, err := s.AddNIC(nil); err == nil {
		t.Error("AddNIC(nil): no error")
	}
	for _, p := range []netip.Prefix{{}, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("224.0.0.1/4")} {
		if _, err := s.AddNIC(a, p); err == nil {
			t.Errorf("AddNIC(%v): no error", p)
		}
	}
	if err := s.AddAddress(99, netip.MustParsePrefix("192.0.2.1/24")); err == nil {
		t.Error("AddAddress on unknown NIC 99: no error")
	}
	if err := s.AddRoute(netip.Prefix{}, netip.Addr{}, 1); err == nil {
		t.Error("AddRoute with an invalid prefix: no error")
	}
	if _, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"192.0.2.2", "192.0.2.2:http", "example.com:80", "192.0.2.2:70000", "[2001:db8::1]:80"} {
		if _, err := conn.Dial(s, "tcp4", addr); err == nil {
			t.Errorf("Dial(%q): no error", addr)
		}
	}
	if _, err := conn.Dial(s, "udp9", "192.0.2.2:80"); err == nil {
		t.Error(`Dial("udp9"): no error`)
	}
	if _, err := conn.Listen(s, "tcp", "198.51.100.1:80"); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Errorf("Listen on an address the stack lacks: %v, want EADDRNOTAVAIL", err)
	}

	s.Close()
	s.Close() // twice is fine
	if _, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("AddNIC after Close: %v, want ErrClosed", err)
	}
	if _, err := conn.Dial(s, "tcp", "192.0.2.2:80"); err == nil {
		t.Error("Dial on a closed stack: no error")
	}
	if _, err := conn.Listen(s, "tcp", ":80"); err == nil {
		t.Error("Listen on a closed stack: no error")
	}
}
