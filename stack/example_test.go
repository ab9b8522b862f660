package stack_test

import (
	"fmt"
	"net"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// Two stacks on an in-memory cable; the server's observer prints each
// state change of its connection as the handshake happens.
func Example() {
	p, err := stack.NewPair(stack.PairOptions{
		Server: stack.Options{TCP: tcp.Options{Observer: func(ev event.Event) {
			if ev.Kind == event.KindState && ev.Conn.Remote.IsValid() {
				fmt.Printf("%v -> %v (%v)\n", ev.From, ev.To, ev.Cause.Kind)
			}
		}}},
	})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	ln, err := conn.Listen(p.Server, "tcp", ":80")
	if err != nil {
		panic(err)
	}
	c, err := conn.Dial(p.Client, "tcp", "192.0.2.1:80")
	if err != nil {
		panic(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		panic(err)
	}
	// The handshake's last event may still be on its way to the
	// observer when Accept returns: events are delivered once the
	// engine's locks are released.
	p.Server.TCP().SyncEvents()
	fmt.Println("client", c.(*conn.Conn).State(), "server", s.State())
	p.Server.Close() // aborts what is left
	// Output:
	// CLOSED -> SYN-RECEIVED (segment)
	// SYN-RECEIVED -> ESTABLISHED (segment)
	// client ESTABLISHED server ESTABLISHED
	// ESTABLISHED -> CLOSED (user)
}

// The client says hello; the server sees it come from the client's
// address on the cable.
func ExampleNewPair() {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	ln, err := conn.Listen(p.Server, "tcp", ":7")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	c, err := conn.Dial(p.Client, "tcp", fmt.Sprintf("%v:7", p.ServerAddr))
	if err != nil {
		panic(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		panic(err)
	}
	fmt.Fprint(c, "hello")
	c.Close()
	b := make([]byte, 5)
	n, _ := s.Read(b)
	fmt.Printf("%s from %v\n", b[:n], s.RemoteAddr().(*net.TCPAddr).IP)
	fmt.Println("server connections:", len(p.Server.TCP().Connections()))
	// Output:
	// hello from 192.0.2.2
	// server connections: 1
}
