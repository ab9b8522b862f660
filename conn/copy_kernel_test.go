//go:build linux

package conn_test

import (
	"net"
	"testing"

	"github.com/tapstack/tapstack/conn"
)

// TestCopyKernel: io.Copy into and out of a tapstack Conn, both ways at
// once, with the Linux kernel's TCP as the peer over a TAP in a namespace
// of the test's own; bytes checked by SHA-256.
func TestCopyKernel(t *testing.T) {
	ns, ts := kernelNet(t)
	var kl net.Listener
	if err := ns.Do(func() (err error) {
		kl, err = net.Listen("tcp", "192.0.2.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer kl.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		k, _ := kl.Accept()
		acc <- k
	}()
	c, err := conn.Dial(ts, "tcp", kl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := <-acc
	if peer == nil {
		t.Fatal("the kernel's listener accepted nothing")
	}
	defer peer.Close()
	copyBothWays(t, c.(*conn.Conn), peer)
}
