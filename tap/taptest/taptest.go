//go:build linux

// Package taptest is a fixture for tests that exchange frames with the Linux
// kernel: each test gets its own network namespace, TAP devices inside it,
// and a way to run commands (ping, curl, nc) there. Traffic never leaves the
// namespace, and the namespace is deleted when the test ends, pass or fail.
//
// Tests that use it are skipped, with the reason, where they cannot run: not
// root or without CAP_NET_ADMIN, no /dev/net/tun, or no ip(8).
//
// Use only the documentation prefixes 192.0.2.0/24 and 198.51.100.0/24.
package taptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapstack/tapstack/tap"
)

// CommandTimeout bounds every command the fixture runs for itself.
const CommandTimeout = 10 * time.Second

// Namespace is a network namespace made for one test.
type Namespace struct {
	name string
}

// NewNamespace creates a uniquely named network namespace and deletes it
// when the test ends. It skips the test if the process cannot do that.
func NewNamespace(t testing.TB) *Namespace {
	t.Helper()
	if reason := unsupported(); reason != "" {
		t.Skip("needs CAP_NET_ADMIN and /dev/net/tun: " + reason)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := &Namespace{name: "tapstack-" + hex.EncodeToString(b[:])}
	out, err := command(context.Background(), "ip", "netns", "add", ns.name)
	if err != nil {
		if isPermission(out) {
			t.Skipf("needs CAP_NET_ADMIN and /dev/net/tun: ip netns add: %s", out)
		}
		t.Fatalf("ip netns add %s: %v\n%s", ns.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := command(context.Background(), "ip", "netns", "delete", ns.name); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ns.name, err, out)
		}
	})
	return ns
}

// Name returns the namespace's name, as ip netns knows it.
func (ns *Namespace) Name() string { return ns.name }

// SetCongestionControl makes the kernel's TCP sockets opened in the
// namespace from now on use congestion control algorithm name (reno,
// cubic, bbr, ...), and fails the test if the kernel lacks it. A new
// namespace inherits the host's choice, which differs between hosts (and
// BBR paces where CUBIC does not), so a measurement against the kernel
// names its own. The setting is the namespace's alone (Linux 4.15 and
// later): the host keeps its own.
func (ns *Namespace) SetCongestionControl(t testing.TB, name string) {
	t.Helper()
	const path = "/proc/sys/net/ipv4/tcp_congestion_control"
	var got string
	err := ns.Do(func() error {
		if err := os.WriteFile(path, []byte(name), 0); err != nil {
			avail, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
			err = fmt.Errorf("%w (the kernel has: %s)", err, strings.TrimSpace(string(avail)))
			if errors.Is(err, unix.EPERM) {
				// tcp_set_default_congestion_control: a namespace
				// other than the host's may only choose an allowed
				// algorithm.
				allowed, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
				err = fmt.Errorf("%w; a namespace may only choose one of net.ipv4.tcp_allowed_congestion_control (%s): allow it on the host with sysctl -w net.ipv4.tcp_allowed_congestion_control=\"%s %s\"",
					err, strings.TrimSpace(string(allowed)), strings.TrimSpace(string(allowed)), name)
			}
			return err
		}
		b, err := os.ReadFile(path)
		got = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		t.Fatalf("taptest: congestion control %q in %s: %v", name, ns.name, err)
	}
	if got != name {
		t.Fatalf("taptest: congestion control %q in %s: the namespace uses %q", name, ns.name, got)
	}
}

// unsupported says why this process cannot run namespace tests, or "".
func unsupported() string {
	if runtime.GOOS != "linux" {
		return "not Linux"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "the ip command (iproute2) is not installed"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "/dev/net/tun: " + err.Error()
	}
	// Effective capability set, capability version 3 (two 32-bit words).
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return "capget: " + err.Error()
	}
	if data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) == 0 {
		return "the process lacks CAP_NET_ADMIN"
	}
	if data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) == 0 {
		return "the process lacks CAP_SYS_ADMIN (needed to enter a namespace)"
	}
	return ""
}

func isPermission(out string) bool {
	return strings.Contains(out, "Operation not permitted") || strings.Contains(out, "Permission denied")
}

// command runs name with args, bounded by CommandTimeout, and returns its
// combined output.
func command(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Exec returns a command that runs name with args inside the namespace
// (ip netns exec). ctx bounds it.
func (ns *Namespace) Exec(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// Run runs the command cmd[0] with arguments cmd[1:] in the namespace,
// bounded by CommandTimeout, and returns its combined output. It fails the
// test, showing the output, if the command fails.
func (ns *Namespace) Run(t testing.TB, cmd ...string) string {
	t.Helper()
	if len(cmd) == 0 {
		t.Fatal("taptest: Run with no command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	out, err := ns.Exec(ctx, cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("in netns %s: %s: %v\n%s", ns.name, strings.Join(cmd, " "), err, out)
	}
	return string(out)
}

// Do runs fn on an OS thread that has entered the namespace, and moves the
// thread back afterwards. Sockets and devices opened by fn stay in the
// namespace: a network namespace is bound to a descriptor when it is opened,
// not to the thread that later uses it.
//
// Goroutines started by fn do not run in the namespace.
func (ns *Namespace) Do(fn func() error) error {
	target, err := os.Open("/run/netns/" + ns.name)
	if err != nil {
		return fmt.Errorf("taptest: open namespace %s: %w", ns.name, err)
	}
	defer target.Close()

	// setns changes only the calling thread, so the goroutine must stay on
	// it, and no other goroutine may run on it, until it is moved back.
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("taptest: open current namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("taptest: enter namespace %s: %w", ns.name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime then ends it with this
		// goroutine instead of reusing a thread in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("taptest: leave namespace %s: %w", ns.name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// TAPOption configures [Namespace.AddTAP].
type TAPOption func(*tapConfig)

type tapConfig struct {
	ipv6   bool
	mtu    uint32
	queues int
	opts   []tap.Option
}

// WithIPv6 keeps IPv6 enabled on the kernel side of the device. By default
// it is disabled so that the kernel sends no router or neighbour
// solicitations, MLD reports or DAD probes that a test did not ask for.
func WithIPv6() TAPOption { return func(c *tapConfig) { c.ipv6 = true } }

// WithMTU sets the MTU of the kernel side of the device (ip link set
// mtu) and of tapstack's side (tap.WithMTU) to mtu; Linux takes up to
// 65,521 on a TAP.
func WithMTU(mtu uint32) TAPOption {
	return func(c *tapConfig) { c.mtu = mtu }
}

// WithQueues makes the device multiqueue (ip tuntap add ... multi_queue)
// and opens n queues of it (tap.WithQueues).
func WithQueues(n int) TAPOption {
	return func(c *tapConfig) { c.queues = n }
}

// WithTAPOptions passes options to tap.Open.
func WithTAPOptions(opts ...tap.Option) TAPOption {
	return func(c *tapConfig) { c.opts = append(c.opts, opts...) }
}

// AddTAP creates the TAP device name in the namespace, opens it with
// tap.Open from inside the namespace, gives the kernel side hostAddr (CIDR,
// e.g. "192.0.2.1/24"), and brings it and lo up. The device is closed when
// the test ends (before the namespace is deleted). Give the returned
// device's LinkEndpoint to a stack.
func (ns *Namespace) AddTAP(t testing.TB, name, hostAddr string, opts ...TAPOption) *tap.Device {
	t.Helper()
	var c tapConfig
	for _, o := range opts {
		o(&c)
	}
	// Create the device persistent first, so its IPv6 can be switched off
	// before it is up and before our descriptor attaches (the carrier comes
	// up with the attach).
	add := []string{"ip", "tuntap", "add", "dev", name, "mode", "tap"}
	if c.queues > 1 {
		add = append(add, "multi_queue")
	}
	ns.Run(t, add...)
	var dev *tap.Device
	if err := ns.Do(func() error {
		if !c.ipv6 {
			// /proc/sys/net shows the namespace of the calling thread.
			err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
			if err != nil && !errors.Is(err, os.ErrNotExist) { // no IPv6 at all is fine
				return fmt.Errorf("disable IPv6: %w", err)
			}
		}
		opts := c.opts
		if c.mtu != 0 {
			opts = append(opts[:len(opts):len(opts)], tap.WithMTU(c.mtu))
		}
		if c.queues > 1 {
			opts = append(opts[:len(opts):len(opts)], tap.WithQueues(c.queues))
		}
		var err error
		dev, err = tap.Open(name, opts...)
		return err
	}); err != nil {
		t.Fatalf("open TAP %s in netns %s: %v", name, ns.name, err)
	}
	// Cleanups run last-in first-out: this runs before the namespace is
	// deleted.
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("close TAP %s: %v", name, err)
		}
	})
	ns.Run(t, "ip", "addr", "add", hostAddr, "dev", name)
	if c.mtu != 0 {
		ns.Run(t, "ip", "link", "set", "dev", name, "mtu", fmt.Sprint(c.mtu))
	}
	ns.Run(t, "ip", "link", "set", "dev", name, "up")
	ns.Run(t, "ip", "link", "set", "dev", "lo", "up")
	return dev
}
