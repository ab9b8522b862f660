//go:build linux

package taptest_test

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap/taptest"
)

// kernelDials is the shape of a test against the Linux kernel: a
// namespace of its own, a TAP device in it whose kernel side is
// 192.0.2.1/24, a tapstack stack on the device's other side, and a kernel
// socket made inside the namespace. Without CAP_NET_ADMIN NewNamespace
// skips the test, saying why; everything is removed when the test ends.
func kernelDials(t *testing.T) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack0", "192.0.2.1/24")
	s := stack.New(stack.Options{})
	t.Cleanup(s.Close)
	if _, err := s.AddNIC(dev.LinkEndpoint(), netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	ln, err := conn.Listen(s, "tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.WriteString(c, "hello, kernel")
			c.Close()
		}
	}()
	var got []byte
	if err := ns.Do(func() error { // on a thread inside the namespace
		k, err := net.Dial("tcp", "192.0.2.2:7")
		if err != nil {
			return err
		}
		defer k.Close()
		got, err = io.ReadAll(k)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello, kernel" {
		t.Errorf("the kernel read %q", got)
	}
	t.Log(ns.Run(t, "ip", "neigh", "show", "dev", "tapstack0")) // a command inside the namespace: the kernel learned the stack's MAC
}

// A test that talks to the kernel (see kernelDials above; a test would be
// named TestKernelDials). It needs a *testing.T and CAP_NET_ADMIN, so the
// example is a whole file, compiled but not run.
func Example() {}

var _ = kernelDials
