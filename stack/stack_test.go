package stack_test

import (
	"errors"
	"net/netip"
	"strings"
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

// TestAddNICFailsWhole: AddNIC that fails on one of its addresses (the
// same address twice) leaves no interface behind: not one holding the
// link and the first address, which a second AddNIC of the link would
// then attach again under another id.
func TestAddNICFailsWhole(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	a, b := tap.Pipe()
	defer b.Close()
	before := len(s.Netstack().NICInfo())
	p := netip.MustParsePrefix("198.51.100.1/24")
	for _, addrs := range [][]netip.Prefix{
		{p, p},
		{p, netip.MustParsePrefix("::ffff:198.51.100.1/120")}, // the same address, mapped
	} {
		if _, err := s.AddNIC(a, addrs...); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("AddNIC(%v): %v, want an error saying the address is there twice", addrs, err)
		}
		if n := len(s.Netstack().NICInfo()); n != before {
			t.Errorf("AddNIC(%v) failed and left %d interfaces, want %d", addrs, n, before)
		}
	}
	nic, err := s.AddNIC(a, p)
	if err != nil {
		t.Fatal(err)
	}
	if info := s.Netstack().NICInfo()[nic]; len(info.ProtocolAddresses) != 1 {
		t.Errorf("NIC %d has %v, want 198.51.100.1/24 alone", nic, info.ProtocolAddresses)
	}
	// An IPv4-mapped address is the IPv4 address, with its IPv4 prefix
	// length, as AddRoute and SetRouteMetrics read mapped prefixes.
	if err := s.AddAddress(nic, netip.MustParsePrefix("::ffff:192.0.2.1/120")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pa := range s.Netstack().NICInfo()[nic].ProtocolAddresses {
		got = append(got, pa.AddressWithPrefix.String())
	}
	if strings.Join(got, " ") != "198.51.100.1/24 192.0.2.1/24" {
		t.Errorf("NIC %d has %v, want 198.51.100.1/24 192.0.2.1/24", nic, got)
	}
}
