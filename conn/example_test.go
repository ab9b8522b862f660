package conn_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

// Two stacks on an in-memory Ethernet cable: a server that echoes and a
// client that sends a line and reads it back.
func Example() {
	p, err := stack.NewPair(stack.PairOptions{}) // server 192.0.2.1, client 192.0.2.2
	if err != nil {
		panic(err)
	}
	defer p.Close()

	ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:7")
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

	c, err := conn.Dial(p.Client, "tcp", "192.0.2.1:7")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "hello, tapstack")
	c.(*conn.Conn).CloseWrite() // FIN: the echo ends after our line (a *Conn, as net.Dial gives a *net.TCPConn)
	reply, err := io.ReadAll(c)
	fmt.Printf("%s", reply)
	fmt.Println(err, c.RemoteAddr())
	// Output:
	// hello, tapstack
	// <nil> 192.0.2.1:7
}

// A read deadline on a stack whose clock is fake passes when the clock is
// advanced past it, at once and without waiting: how tapstack's own
// tests check timeouts.
func ExampleConn_SetReadDeadline() {
	clock := faketime.NewManualClock()
	p, err := stack.NewPair(stack.PairOptions{
		Client: stack.Options{Clock: clock},
		Server: stack.Options{Clock: clock},
	})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	ln, err := conn.Listen(p.Server, "tcp", ":7")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	c, err := conn.Dial(p.Client, "tcp", "192.0.2.1:7")
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// An hour on the stack's clock, which stands still until advanced.
	c.SetReadDeadline(p.Client.Clock().Now().Add(time.Hour))
	done := make(chan error)
	go func() {
		_, err := c.Read(make([]byte, 1)) // the server never writes
		done <- err
	}()
	clock.Advance(time.Hour)
	err = <-done
	var oe *net.OpError
	fmt.Println(errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &oe), oe.Op, oe.Err)
	// Output:
	// true true read i/o timeout
}
