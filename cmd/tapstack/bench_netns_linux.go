//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapstack/tapstack/tap"
)

// The kernel peer of "tapstack bench": a network namespace of its own with
// a persistent TAP device whose kernel side is 192.0.2.1/24, so that the
// run touches nothing of the host's networking and leaves nothing behind.
// (tap/taptest does the same for tests; this is its command-line twin.)

const (
	benchKernelAddr = "192.0.2.1"
	benchStackAddr  = "192.0.2.2"
	benchTAP        = "tsbench0"
)

// benchNetns is the namespace and its TAP device.
type benchNetns struct {
	name string
	mtu  uint32
	cc   string // the kernel's TCP congestion control in the namespace
	// sockCC: cc is set on each listening socket (TCP_CONGESTION), as
	// the namespace may not make it its default; "": the default is cc.
	sockCC string
}

// benchNetnsUnsupported says why this process cannot make the namespace,
// or "".
func benchNetnsUnsupported() string {
	if _, err := exec.LookPath("ip"); err != nil {
		return "the ip command (iproute2) is not installed"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "/dev/net/tun: " + err.Error()
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return "capget: " + err.Error()
	}
	for _, c := range []struct {
		cap  int
		name string
	}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN (to enter a namespace)"}} {
		if data[c.cap/32].Effective&(1<<(c.cap%32)) == 0 {
			return "the process lacks " + c.name
		}
	}
	return ""
}

// benchIP runs ip(8) with args, bounded in time.
func benchIP(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// defaultKernelCC is the congestion control the kernel's TCP uses in the
// benchmark's namespace unless -kernel-cc says otherwise: Linux's own
// default (CONFIG_DEFAULT_TCP_CONG). A namespace otherwise inherits the
// host's choice, and hosts differ: with BBR, which paces, the kernel sent
// to tapstack at 7.3-9.8 Gbit/s on this project's machine where CUBIC
// sent at 9.6-12.5, so figures taken on two hosts would not compare.
const defaultKernelCC = "cubic"

// newBenchNetns makes the namespace and its TAP device with the given MTU
// on the kernel side, multi_queue if queues is more than 1, the kernel's
// TCP using congestion control cc ("": whatever the namespace inherited).
func newBenchNetns(mtu uint32, cc string, queues int) (*benchNetns, error) {
	if why := benchNetnsUnsupported(); why != "" {
		return nil, errors.New(why)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := &benchNetns{name: "tsbench-" + hex.EncodeToString(b[:]), mtu: mtu}
	if err := benchIP("netns", "add", n.name); err != nil {
		return nil, err
	}
	add := []string{"-n", n.name, "tuntap", "add", "dev", benchTAP, "mode", "tap"}
	if queues > 1 {
		add = append(add, "multi_queue")
	}
	steps := [][]string{
		add,
		{"-n", n.name, "addr", "add", benchKernelAddr + "/24", "dev", benchTAP},
		{"-n", n.name, "link", "set", "dev", benchTAP, "mtu", fmt.Sprint(mtu)},
		{"-n", n.name, "link", "set", "dev", benchTAP, "up"},
		{"-n", n.name, "link", "set", "dev", "lo", "up"},
	}
	for _, s := range steps {
		if err := benchIP(s...); err != nil {
			n.close()
			return nil, err
		}
	}
	// No IPv6 on the device: no router solicitations or DAD probes in
	// the measurements.
	_ = n.do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+benchTAP+"/disable_ipv6", []byte("1"), 0)
	})
	if err := n.setCongestionControl(cc); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// setCongestionControl makes the kernel's TCP in the namespace use cc
// ("": what the namespace inherited). net.ipv4.tcp_congestion_control is
// the namespace's own (Linux 4.15 and later), so setting it leaves the
// host alone; but a namespace other than the host's may only choose an
// algorithm of net.ipv4.tcp_allowed_congestion_control (EPERM otherwise;
// tcp_set_default_congestion_control), which on some hosts lacks cubic
// though the kernel has it. Then cc goes on each listening socket
// instead (TCP_CONGESTION, which CAP_NET_ADMIN may set to any algorithm
// the kernel has), and the connections it accepts inherit it
// (tcp_ca_openreq_child): the kernel is the server in every measurement.
func (n *benchNetns) setCongestionControl(cc string) error {
	const ccPath = "/proc/sys/net/ipv4/tcp_congestion_control"
	avail := func() []string {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
		return strings.Fields(string(b))
	}
	return n.do(func() error {
		if cc != "" {
			err := os.WriteFile(ccPath, []byte(cc), 0)
			switch {
			case errors.Is(err, unix.EPERM) && slices.Contains(avail(), cc):
				n.cc, n.sockCC = cc, cc
				return nil
			case err != nil:
				return fmt.Errorf("kernel congestion control %q: %w (available: %s)", cc, err, strings.Join(avail(), " "))
			}
		}
		b, err := os.ReadFile(ccPath)
		if n.cc = strings.TrimSpace(string(b)); err == nil && cc != "" && n.cc != cc {
			err = fmt.Errorf("kernel congestion control %q: the namespace uses %q", cc, n.cc)
		}
		return err
	})
}

// do runs fn on an OS thread inside the namespace. Sockets and devices fn
// opens stay bound to the namespace.
func (n *benchNetns) do(fn func() error) error {
	target, err := os.Open("/run/netns/" + n.name)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace %s: %w", n.name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with this goroutine.
		return errors.Join(fnErr, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// openTAP attaches to the namespace's TAP device.
func (n *benchNetns) openTAP(opts ...tap.Option) (*tap.Device, error) {
	var dev *tap.Device
	err := n.do(func() (err error) {
		dev, err = tap.Open(benchTAP, append(opts, tap.WithMTU(n.mtu))...)
		return err
	})
	return dev, err
}

// ccName names the kernel's congestion control for the table.
func (n *benchNetns) ccName() string {
	if n.sockCC != "" {
		return n.cc + " (set per socket: not in the host's tcp_allowed_congestion_control)"
	}
	return n.cc
}

// listen listens with the kernel's TCP in the namespace.
func (n *benchNetns) listen(port uint16) (net.Listener, error) {
	var lc net.ListenConfig
	if n.sockCC != "" {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, n.sockCC)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("kernel congestion control %q on the listening socket: %w", n.sockCC, serr)
			}
			return nil
		}
	}
	var ln net.Listener
	err := n.do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp4", fmt.Sprintf("%s:%d", benchKernelAddr, port))
		return err
	})
	return ln, err
}

// close deletes the namespace, and with it the device.
func (n *benchNetns) close() error { return benchIP("netns", "delete", n.name) }
