package stack_test

import (
	"fmt"
	"net"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// With an observer, every UDP datagram a stack receives or sends is an
// event, as every TCP segment is: here a datagram to a port no socket
// holds, which the stack answers with ICMP port unreachable.
func Example_udpEvents() {
	noPort := make(chan event.Event, 1)
	observe := func(ev event.Event) {
		if ev.Kind == event.KindUDPNoPort {
			noPort <- ev
		}
	}
	p, err := stack.NewPair(stack.PairOptions{Server: stack.Options{TCP: tcp.Options{Observer: observe}}})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	c, err := conn.DialUDP(p.Client, "udp4", &net.UDPAddr{Port: 5353}, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.Write([]byte("anyone?"))
	fmt.Println(<-noPort)
	fmt.Println("no port:", p.Server.UDPStats().NoPort)
	// Output:
	// 192.0.2.1:9-192.0.2.2:5353 udp datagram 7 bytes: no port: answered ICMP port unreachable
	// no port: 1
}
