package conn_test

import (
	"net"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

// TestNettestConn runs x/net's conformance suite for net.Conn on two
// tapstack conns. nettest sets its deadlines from time.Now and runs
// subtests, so this test keeps the stacks on the real clock, outside a
// synctest bubble; it has no sleeps or time bounds of its own.
func TestNettestConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		p, err := stack.NewPair(stack.PairOptions{})
		if err != nil {
			return nil, nil, nil, err
		}
		ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:0")
		if err != nil {
			p.Close()
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
		c1, err = conn.Dial(p.Client, "tcp", ln.Addr().String())
		if err != nil {
			ln.Close()
			p.Close()
			return nil, nil, nil, err
		}
		r := <-ch
		if r.err != nil {
			c1.Close()
			ln.Close()
			p.Close()
			return nil, nil, nil, r.err
		}
		stop = func() {
			c1.Close()
			r.c.Close()
			ln.Close()
			p.Close()
		}
		return c1, r.c, stop, nil
	})
}
