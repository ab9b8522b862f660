package stack_test

import (
	"fmt"
	"net/netip"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// Two stacks on an in-memory cable; the server's observer prints each
// state change of its connection as the handshake happens.
func Example() {
	a, b := tap.Pipe()
	server := stack.New(stack.Options{TCP: tcp.Options{Observer: func(ev event.Event) {
		if ev.Kind == event.KindState && ev.Conn.Remote.IsValid() {
			fmt.Printf("%v -> %v (%v)\n", ev.From, ev.To, ev.Cause.Kind)
		}
	}}})
	client := stack.New(stack.Options{})
	defer client.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		panic(err)
	}
	if _, err := client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		panic(err)
	}

	ln, err := conn.Listen(server, "tcp", ":80")
	if err != nil {
		panic(err)
	}
	c, err := conn.Dial(client, "tcp", "192.0.2.1:80")
	if err != nil {
		panic(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		panic(err)
	}
	fmt.Println("client", c.State(), "server", s.State())
	server.Close() // aborts what is left
	// Output:
	// CLOSED -> SYN-RECEIVED (segment)
	// SYN-RECEIVED -> ESTABLISHED (segment)
	// client ESTABLISHED server ESTABLISHED
	// ESTABLISHED -> CLOSED (user)
}
