//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapstack/tapstack/tap"
)

// TestBenchNetnsCongestionControl: the connections the kernel accepts in
// the benchmark's namespace use the congestion control asked for, both
// where the namespace may make it its default (reno is always allowed)
// and where it may not (cubic on a host whose
// net.ipv4.tcp_allowed_congestion_control lacks it, as on this project's
// machine, where the whole TAP table used to be skipped with EPERM).
func TestBenchNetnsCongestionControl(t *testing.T) {
	if why := benchNetnsUnsupported(); why != "" {
		t.Skip("needs a network namespace and a TAP device: " + why)
	}
	b, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	for _, cc := range []string{"reno", defaultKernelCC} {
		t.Run(cc, func(t *testing.T) {
			if !slices.Contains(strings.Fields(string(b)), cc) {
				t.Skipf("the kernel lacks %s (it has: %s)", cc, b)
			}
			ns, err := newBenchNetns(tap.DefaultMTU, cc, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer ns.close()
			if ns.cc != cc {
				t.Errorf("the namespace reports %q, want %q", ns.cc, cc)
			}
			ln, err := ns.listen(benchPort)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			// A connection from inside the namespace to its own
			// address: the accepted end is the kernel's server socket
			// of every measurement.
			var c net.Conn
			if err := ns.do(func() (err error) {
				c, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", benchKernelAddr, benchPort), 5*time.Second)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			if got := congestionControl(t, sc.(*net.TCPConn)); got != cc {
				t.Errorf("the accepted connection uses %q, want %q", got, cc)
			}
		})
	}
}

// congestionControl is a kernel socket's TCP_CONGESTION.
func congestionControl(t *testing.T, c *net.TCPConn) string {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var serr error
	if err := rc.Control(func(fd uintptr) {
		name, serr = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("getsockopt TCP_CONGESTION: %v", serr)
	}
	return strings.TrimRight(name, "\x00")
}
