package conn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

// A UDP echo server on one stack of a pair and a connected client on the
// other; then a datagram to a port nobody holds, refused.
func ExampleListenPacket() {
	p, err := stack.NewPair(stack.PairOptions{}) // server 192.0.2.1, client 192.0.2.2
	if err != nil {
		panic(err)
	}
	defer p.Close()

	pc, err := conn.ListenPacket(p.Server, "udp", ":7")
	if err != nil {
		panic(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()

	c, err := conn.DialUDP(p.Client, "udp", nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.Write([]byte("hello, datagram"))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	fmt.Printf("%s %v\n", buf[:n], err)

	refused, _ := conn.DialUDP(p.Client, "udp", nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9})
	defer refused.Close()
	refused.Write([]byte("anyone?"))
	refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = refused.Read(buf)
	fmt.Println(errors.Is(err, syscall.ECONNREFUSED), err.(*net.OpError).Op)
	fmt.Println("server: datagrams for no port:", p.Server.UDPStats().NoPort)
	// Output:
	// hello, datagram <nil>
	// true read
	// server: datagrams for no port: 1
}

// Ping measures a round trip to another stack; a stack also answers its
// own loopback addresses.
func ExamplePing() {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, a := range []string{"192.0.2.1", "127.0.0.1"} {
		rtt, err := conn.Ping(ctx, p.Client, netip.MustParseAddr(a))
		fmt.Println(a, rtt > 0, err)
	}
	// Output:
	// 192.0.2.1 true <nil>
	// 127.0.0.1 true <nil>
}
