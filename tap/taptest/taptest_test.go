//go:build linux

package taptest_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tapstack/tapstack/tap"
	"github.com/tapstack/tapstack/tap/taptest"
)

func newStack(t *testing.T, ep stack.LinkEndpoint, prefix string) *stack.Stack {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, icmp.NewProtocol4},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatalf("CreateNIC: %v", err)
	}
	p := netip.MustParsePrefix(prefix)
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFrom4(p.Addr().As4()),
			PrefixLen: p.Bits(),
		},
	}, stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(p.Masked().Addr().As4()), PrefixLen: p.Bits(),
	}.Subnet(), NIC: 1}})
	return s
}

// destroy removes s's NIC, waits for its link ep, then destroys s:
// gVisor's Stack.Destroy waits for each link while holding the stack's
// lock, which a frame the device is delivering at that moment needs (see
// Device.LinkEndpoint).
func destroy(s *stack.Stack, ep stack.LinkEndpoint) {
	_ = s.RemoveNIC(1)
	ep.Wait()
	s.Destroy()
}

// TestKernelPing attaches a gVisor stack to a TAP in a fresh namespace and
// has the kernel ping it: ARP and ICMP through the real device.
func TestKernelPing(t *testing.T) {
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("needs ping (apt-get install iputils-ping)")
	}
	var nsName string
	t.Run("ping", func(t *testing.T) {
		ns := taptest.NewNamespace(t)
		nsName = ns.Name()
		dev := ns.AddTAP(t, "tapstack0", "192.0.2.1/24")
		if dev.Name() != "tapstack0" {
			t.Errorf("Name = %q", dev.Name())
		}
		s := newStack(t, dev.LinkEndpoint(), "192.0.2.2/24")
		t.Cleanup(func() { destroy(s, dev.LinkEndpoint()) })

		out := ns.Run(t, "ping", "-c", "1", "-W", "2", "192.0.2.2")
		if !strings.Contains(out, "1 received") {
			t.Errorf("ping output:\n%s", out)
		}
		// The kernel learned our MAC through ARP.
		neigh := ns.Run(t, "ip", "neigh", "show", "192.0.2.2")
		if !strings.Contains(neigh, dev.MAC().String()) {
			t.Errorf("neighbour entry %q lacks our MAC %v", neigh, dev.MAC())
		}
		st := dev.Stats()
		if st.RxFrames == 0 || st.TxFrames == 0 {
			t.Errorf("stats %+v", st)
		}
		// IPv6 is off on the kernel side: no address, so no noise.
		if addrs := ns.Run(t, "ip", "-6", "addr", "show", "dev", "tapstack0"); strings.TrimSpace(addrs) != "" {
			t.Errorf("IPv6 addresses on the TAP: %s", addrs)
		}
	})
	if nsName == "" {
		return // skipped
	}
	if _, err := os.Stat("/run/netns/" + nsName); !os.IsNotExist(err) {
		t.Errorf("namespace %s still exists after the test (stat: %v)", nsName, err)
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), nsName) {
		t.Errorf("ip netns list still shows %s:\n%s", nsName, out)
	}
}

// TestCloseUnblocksRead checks that closing a device whose read loop is
// blocked in read(2) stops the loop promptly and leaves no goroutine behind.
func TestCloseUnblocksRead(t *testing.T) {
	ns := taptest.NewNamespace(t)
	before := runtime.NumGoroutine()
	var dev *tap.Device
	if err := ns.Do(func() (err error) {
		dev, err = tap.Open("tapstack1")
		return err
	}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := newStack(t, dev.LinkEndpoint(), "192.0.2.2/24")
	time.Sleep(50 * time.Millisecond) // let the read loop block in read(2)
	waitOrFail(t, func() {
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := dev.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}
	waitOrFail(t, s.Destroy)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, want <= %d", n, before)
	}
	// Open created the device, so closing it removed it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := ns.Exec(ctx, "ip", "link", "show", "tapstack1").CombinedOutput(); err == nil {
		t.Errorf("device still exists after Close:\n%s", out)
	}
}

func TestDestroyStopsReadLoop(t *testing.T) {
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("needs ping (apt-get install iputils-ping)")
	}
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack2", "198.51.100.1/24")
	s := newStack(t, dev.LinkEndpoint(), "198.51.100.2/24")
	ns.Run(t, "ping", "-c", "1", "-W", "2", "198.51.100.2")
	waitOrFail(t, s.Destroy)
	waitOrFail(t, func() { dev.Close() })
}

// TestOpenExisting attaches twice, in turn, to a device made by ip tuntap:
// closing must not destroy it (water's TUNSETPERSIST 0 would).
func TestOpenExisting(t *testing.T) {
	ns := taptest.NewNamespace(t)
	ns.Run(t, "ip", "tuntap", "add", "dev", "tapstack3", "mode", "tap")
	for range 2 {
		var dev *tap.Device
		if err := ns.Do(func() (err error) {
			dev, err = tap.Open("tapstack3")
			return err
		}); err != nil {
			t.Fatalf("Open: %v", err)
		}
		// A second descriptor on a single-queue device is refused.
		err := ns.Do(func() error {
			d, err := tap.Open("tapstack3")
			if err == nil {
				d.Close()
			}
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "already attached") {
			t.Errorf("second Open = %v, want 'already attached'", err)
		}
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		ns.Run(t, "ip", "link", "show", "tapstack3")
	}
}

func TestDoRunsInNamespace(t *testing.T) {
	ns := taptest.NewNamespace(t)
	outside, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	if err := ns.Do(func() (err error) {
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == outside {
		t.Errorf("Do ran in the test's namespace %s", inside)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := ns.Exec(ctx, "ip", "link", "show", "lo").CombinedOutput(); err != nil {
		t.Errorf("Exec: %v\n%s", err, out)
	}
}

// SetCongestionControl changes the namespace's choice, not the host's.
func TestSetCongestionControl(t *testing.T) {
	ns := taptest.NewNamespace(t)
	const path = "/proc/sys/net/ipv4/tcp_congestion_control"
	host, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "reno" // built into every kernel
	if string(host) == "reno\n" {
		want = "cubic"
	}
	ns.SetCongestionControl(t, want)
	var inside []byte
	if err := ns.Do(func() (err error) {
		inside, err = os.ReadFile(path)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(inside) != want+"\n" {
		t.Errorf("in the namespace: %q, want %q", inside, want)
	}
	if now, _ := os.ReadFile(path); string(now) != string(host) {
		t.Errorf("the host's changed from %q to %q", host, now)
	}
}

func waitOrFail(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("did not return within 5s")
	}
}

// TestReopenWithoutOffloads: a persistent device keeps the offloads its
// last user set (TUNSETOFFLOAD sets the device's features). Opened with
// offloads, closed, and opened again without them, it must not go on
// receiving frames with partial checksums or super-frames that a reader
// without a virtio-net header cannot tell apart: the kernel's SYN-ACK
// and data to a gVisor stack on it arrive, checksums whole. Before the
// device cleared them, the handshake never completed.
func TestReopenWithoutOffloads(t *testing.T) {
	const name = "tapstack4"
	ns := taptest.NewNamespace(t)
	ns.Run(t, "ip", "tuntap", "add", "dev", name, "mode", "tap")
	ns.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", name)
	ns.Run(t, "ip", "link", "set", "dev", name, "up")
	var dev *tap.Device
	if err := ns.Do(func() (err error) { dev, err = tap.Open(name); return err }); err != nil {
		t.Fatal(err)
	}
	if o := dev.Offloads(); !o.TSO4 {
		dev.Close()
		t.Skipf("the kernel offers no offloads on a TAP here: %v", o)
	}
	dev.Close()
	if err := ns.Do(func() (err error) { dev, err = tap.Open(name, tap.WithOffloads(false)); return err }); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, dev.LinkEndpoint(), "192.0.2.2/24")
	t.Cleanup(func() { destroy(s, dev.LinkEndpoint()) })

	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "192.0.2.1:5009"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := bytes.Repeat([]byte("tapstack"), 64<<10) // 512 KiB
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(want)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), Port: 5009}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial the kernel: %v (device %+v)", err, dev.Stats())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes of %d, %v", len(got), len(want), err)
	}
}
