package conn_test

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// Two stacks on an in-memory Ethernet cable: a server that echoes and a
// client that sends a line and reads it back.
func Example() {
	a, b := tap.Pipe()
	server := stack.New(stack.Options{})
	defer server.Close()
	client := stack.New(stack.Options{})
	defer client.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		panic(err)
	}
	if _, err := client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		panic(err)
	}

	ln, err := conn.Listen(server, "tcp", "192.0.2.1:7")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo until the client's FIN
	}()

	c, err := conn.Dial(client, "tcp", "192.0.2.1:7")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "hello, tapstack")
	c.CloseWrite() // FIN: the echo ends after our line
	reply, err := io.ReadAll(c)
	fmt.Printf("%s", reply)
	fmt.Println(err, c.RemoteAddr())
	// Output:
	// hello, tapstack
	// <nil> 192.0.2.1:7
}
