package conn_test

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// pair makes two tapstack stacks joined by an in-memory cable.
func pair(t testing.TB) (client, server *stack.Stack) {
	t.Helper()
	a, b := tap.Pipe()
	client = stack.New(stack.Options{})
	server = stack.New(stack.Options{})
	if _, err := client.AddNIC(a, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := server.AddNIC(b, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func TestNettestConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		cs, ss := pair(t)
		ln, err := conn.Listen(ss, "tcp", "192.0.2.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			c, err := ln.Accept()
			ch <- res{c, err}
		}()
		c1, err = conn.Dial(cs, "tcp", ln.Addr().String())
		if err != nil {
			ln.Close()
			return nil, nil, nil, err
		}
		r := <-ch
		if r.err != nil {
			c1.Close()
			ln.Close()
			return nil, nil, nil, r.err
		}
		stop = func() {
			c1.Close()
			r.c.Close()
			ln.Close()
		}
		return c1, r.c, stop, nil
	})
}
