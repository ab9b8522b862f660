//go:build linux

package conn_test

import "testing"

// TestCopyKernel: io.Copy into and out of a tapstack Conn, both ways at
// once, with the Linux kernel's TCP as the peer over a TAP in a namespace
// of the test's own; bytes checked by SHA-256.
func TestCopyKernel(t *testing.T) {
	ns, ts := kernelNet(t)
	kl := kernelListen(t, ns)
	c, peer := dialPeer(t, ts, kl)
	copyBothWays(t, c, peer)
}
