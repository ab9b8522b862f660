package conn_test

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
)

// TestNettestGVisor runs nettest.TestConn with tapstack's Conn as c1 and
// gVisor's gonet.TCPConn (gVisor's own TCP) as c2, over tap.Pipe. nettest
// exercises deadlines and most calls on c1, so tapstack is the one tested.
// nettest sets its deadlines from time.Now and runs subtests, so this test
// keeps the real clock and stays outside a synctest bubble (as does
// gVisor's TCP, which a bubble cannot see blocked); it has no sleeps or
// time bounds of its own.
func TestNettestGVisor(t *testing.T) {
	t.Run("TapstackDials", func(t *testing.T) {
		nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
			ts, p := gvPair(t, nil, tcp.Options{})
			ln, err := p.Listen(80)
			if err != nil {
				return nil, nil, nil, err
			}
			ch := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				ch <- c
			}()
			c, err := conn.Dial(ts, "tcp", "192.0.2.1:80")
			if err != nil {
				ln.Close()
				return nil, nil, nil, err
			}
			g := <-ch
			ln.Close()
			if g == nil {
				c.Close()
				return nil, nil, nil, net.ErrClosed
			}
			return c, g, func() { c.Close(); g.Close() }, nil
		})
	})
	t.Run("GVisorDials", func(t *testing.T) {
		nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
			ts, p := gvPair(t, nil, tcp.Options{})
			ln, err := conn.Listen(ts, "tcp", "192.0.2.2:0")
			if err != nil {
				return nil, nil, nil, err
			}
			defer ln.Close()
			ch := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				ch <- c
			}()
			g, err := p.Dial(netip.MustParseAddrPort(ln.Addr().String()))
			if err != nil {
				return nil, nil, nil, err
			}
			c := <-ch
			if c == nil {
				g.Close()
				return nil, nil, nil, net.ErrClosed
			}
			return c, g, func() { c.Close(); g.Close() }, nil
		})
	})
}
