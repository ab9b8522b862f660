package gvpeer_test

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// A tapstack client talks to gVisor's own TCP, the independent
// implementation the interop tests and benchmarks hold tapstack to.
func Example() {
	a, b := tap.Pipe()
	peer, err := gvpeer.New(b, netip.MustParsePrefix("192.0.2.1/24"), nil)
	if err != nil {
		panic(err)
	}
	defer peer.Close()
	s := stack.New(stack.Options{})
	defer s.Close()
	if _, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		panic(err)
	}

	ln, err := peer.Listen(7)
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		g, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(g, g) // gVisor's TCP echoes
		g.Close()
	}()
	c, err := conn.Dial(s, "tcp", "192.0.2.1:7")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	io.WriteString(c, "hello, gVisor")
	c.(*conn.Conn).CloseWrite()
	reply, err := io.ReadAll(c)
	fmt.Printf("%s %v\n", reply, err)
	// Output: hello, gVisor <nil>
}
