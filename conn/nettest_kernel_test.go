//go:build linux

package conn_test

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap/taptest"
)

// kernelNet is a test-made namespace whose kernel has 192.0.2.1/24 on a
// TAP that a tapstack stack drives with 192.0.2.2/24. The stack keeps the
// real clock: its peer is the kernel, whose timers no fake clock moves,
// and nettest sets its deadlines from time.Now.
func kernelNet(t *testing.T) (*taptest.Namespace, *stack.Stack) {
	t.Helper()
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack0", "192.0.2.1/24")
	g := dev.LinkEndpoint()
	ts := newTS(t, g, nil, tcp.Options{}, netip.MustParsePrefix("192.0.2.2/24"))
	return ns, ts
}

// kernelListen listens with the kernel's TCP on 192.0.2.1 in ns, on a
// port the kernel picks; the test's cleanup closes the listener.
func kernelListen(t *testing.T, ns *taptest.Namespace) net.Listener {
	t.Helper()
	var kl net.Listener
	if err := ns.Do(func() (err error) {
		kl, err = net.Listen("tcp", "192.0.2.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kl.Close() })
	return kl
}

// TestNettestKernel runs nettest.TestConn with tapstack's Conn as c1 and a
// Linux socket (a *net.TCPConn made inside the namespace) as c2. One
// namespace and stack serve every subtest; each gets a fresh pair.
func TestNettestKernel(t *testing.T) {
	ns, ts := kernelNet(t)

	t.Run("TapstackDials", func(t *testing.T) {
		kl := kernelListen(t, ns)
		nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
			ch := make(chan net.Conn, 1)
			go func() {
				c, _ := kl.Accept()
				ch <- c
			}()
			c, err := conn.Dial(ts, "tcp", kl.Addr().String())
			if err != nil {
				return nil, nil, nil, err
			}
			k := <-ch
			if k == nil {
				c.Close()
				return nil, nil, nil, net.ErrClosed
			}
			return c, k, func() { c.Close(); k.Close() }, nil
		})
	})
	t.Run("KernelDials", func(t *testing.T) {
		ln, err := conn.Listen(ts, "tcp", "192.0.2.2:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
			ch := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				ch <- c
			}()
			var k net.Conn
			if err := ns.Do(func() (err error) {
				k, err = net.Dial("tcp", ln.Addr().String())
				return err
			}); err != nil {
				return nil, nil, nil, err
			}
			c := <-ch
			if c == nil {
				k.Close()
				return nil, nil, nil, net.ErrClosed
			}
			return c, k, func() { c.Close(); k.Close() }, nil
		})
	})
}
