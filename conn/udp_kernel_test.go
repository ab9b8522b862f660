//go:build linux

package conn_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap/taptest"
)

// needTool skips the test when a program it runs is not installed.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (the CI script installs it): %v", name, err)
	}
}

// TestUDPKernelSocatEcho: tapstack's UDP against the kernel's, through a
// TAP: socat in the namespace echoes what a connected UDPConn sends.
func TestUDPKernelSocatEcho(t *testing.T) {
	needTool(t, "socat")
	ns, ts := kernelNet(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := ns.Exec(ctx, "socat", "UDP4-LISTEN:7,bind=192.0.2.1,reuseaddr,fork", "PIPE")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()

	c, err := conn.DialUDP(ts, "udp4", nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	// socat may not be bound yet: until it is, the kernel answers port
	// unreachable (ECONNREFUSED) or nothing; retry, bounded.
	for try := 0; ; try++ {
		if try == 50 {
			t.Fatal("no echo from socat after 50 tries")
		}
		if _, err := c.Write([]byte("hello, kernel")); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			if string(buf[:n]) != "hello, kernel" {
				t.Fatalf("echo %q", buf[:n])
			}
			return
		}
		var ne net.Error
		if !errors.Is(err, syscall.ECONNREFUSED) && !(errors.As(err, &ne) && ne.Timeout()) {
			t.Fatal(err)
		}
	}
}

// TestUDPKernelNc: nc -u in the namespace sends to a tapstack socket,
// and receives what tapstack sends back to the address it came from.
func TestUDPKernelNc(t *testing.T) {
	needTool(t, "nc")
	ns, ts := kernelNet(t)
	pc, err := conn.ListenUDP(ts, "udp4", &net.UDPAddr{Port: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := ns.Exec(ctx, "nc", "-u", "192.0.2.2", "5000")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	if _, err := stdin.Write([]byte("from the kernel\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "from the kernel\n" {
		t.Fatalf("ReadFromUDP = %q, %v", buf[:n], err)
	}
	if !from.IP.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Errorf("from %v, want 192.0.2.1", from)
	}
	if _, err := pc.WriteToUDP([]byte("from tapstack\n"), from); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "from tapstack\n" {
		t.Fatalf("nc printed %q, %v", line, err)
	}
}

// TestUDPKernelPortUnreachable: a kernel socket that sends to a tapstack
// port nobody holds gets ECONNREFUSED: tapstack answered with ICMP port
// unreachable, as Linux itself would (issue 13 found protocol
// unreachable).
func TestUDPKernelPortUnreachable(t *testing.T) {
	ns, ts := kernelNet(t)
	var k *net.UDPConn
	if err := ns.Do(func() (err error) {
		k, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 9})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := k.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	k.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := k.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("kernel Read = %v, want ECONNREFUSED (port unreachable)", err)
	}
	if st := ts.UDPStats(); st.NoPort != 1 {
		t.Errorf("tapstack UDPStats %+v, want NoPort 1", st)
	}
}

// snmpUDP reads the Udp: counters of /proc/net/snmp in ns.
func snmpUDP(t *testing.T, ns *taptest.Namespace) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := ns.Do(func() error {
		// /proc/net is the thread group leader's namespace; this
		// thread's is under thread-self.
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f[1:]
				continue
			}
			for i, v := range f[1:] {
				n, _ := strconv.Atoi(v)
				out[names[i]] = n
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// tapTxDropped reads how many frames the kernel dropped on the TAP's
// way to tapstack (its transmit queue full: tapstack did not read in
// time).
func tapTxDropped(t *testing.T, ns *taptest.Namespace) int {
	_, tx := tapDropped(t, ns)
	return tx
}

// tapDropped reads the kernel's drop counters of the TAP: rx, frames
// tapstack wrote that the kernel dropped on their way in (its backlog
// full); tx, frames for tapstack it dropped (the TAP's queue full).
func tapDropped(t *testing.T, ns *taptest.Namespace) (rx, tx int) {
	t.Helper()
	out := ns.Run(t, "ip", "-s", "-j", "link", "show", "tapstack0")
	type dir struct {
		Dropped int `json:"dropped"`
	}
	var links []struct {
		Stats64 struct {
			RX dir `json:"rx"`
			TX dir `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link: %v: %s", err, out)
	}
	return links[0].Stats64.RX.Dropped, links[0].Stats64.TX.Dropped
}

// TestUDPTransferKernel sends 10,000 datagrams each way between tapstack
// and a kernel socket over a TAP, and reports the loss with the
// counters that explain it (the kernel's /proc/net/snmp, tapstack's
// UDPStats).
func TestUDPTransferKernel(t *testing.T) {
	const n = 10_000
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tapstack0", "192.0.2.1/24")
	ts := newTS(t, dev.LinkEndpoint(), nil, tcp.Options{}, tsPrefix)
	var k *net.UDPConn
	if err := ns.Do(func() (err error) {
		k, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	k.SetReadBuffer(4 << 20)

	// tapstack to the kernel.
	before := snmpUDP(t, ns)
	txDropBefore := dev.Stats().TxDropped
	rxBefore, _ := tapDropped(t, ns)
	tx, err := conn.DialUDP(ts, "udp4", nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	begin := time.Now()
	got, last := transfer(t, n, k, func(b []byte) error { _, err := tx.Write(b); return err })
	after := snmpUDP(t, ns)
	rcvbuf := after["RcvbufErrors"] - before["RcvbufErrors"]
	arrived := after["InDatagrams"] - before["InDatagrams"] + rcvbuf
	txDropped := int(dev.Stats().TxDropped - txDropBefore)
	rxAfter, _ := tapDropped(t, ns)
	kernelDrops := rxAfter - rxBefore
	t.Logf("tapstack to kernel: %d sent, %d received, %d lost (%d by tapstack's full TAP queue, %d by the kernel on the TAP's way in, %d by the kernel's full buffer, %d elsewhere), %.0f datagrams/s",
		n, got, n-got, txDropped, kernelDrops, rcvbuf, n-arrived-txDropped-kernelDrops, float64(got)/last.Sub(begin).Seconds())
	if got == 0 {
		t.Fatal("the kernel received nothing")
	}

	// The kernel to tapstack.
	rx, err := conn.ListenUDP(ts, "udp4", &net.UDPAddr{Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rx.SetReadBuffer(4 << 20)
	stBefore := ts.UDPStats()
	tapBefore := tapTxDropped(t, ns)
	to := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 9}
	begin = time.Now()
	received, last := transfer(t, n, rx, func(b []byte) error { _, err := k.WriteToUDP(b, to); return err })
	st := ts.UDPStats()
	tapDropped := tapTxDropped(t, ns) - tapBefore
	took, full := st.Received-stBefore.Received, st.ReceiveBufferFull-stBefore.ReceiveBufferFull
	t.Logf("kernel to tapstack: %d sent, %d received, %d lost (%d by the kernel's full TAP queue, %d by tapstack's full buffer, %d elsewhere), %.0f datagrams/s",
		n, received, n-received, tapDropped, full, n-int(took)-tapDropped, float64(received)/last.Sub(begin).Seconds())
	if received == 0 {
		t.Fatal("tapstack received nothing")
	}
	if elsewhere := n - int(took) - tapDropped; elsewhere != 0 {
		t.Errorf("%d datagrams from the kernel are not accounted for by its TAP queue's drops nor tapstack's counters", elsewhere)
	}
	if int(took-full) != received {
		t.Errorf("tapstack's UDP took %d datagrams and dropped %d for a full buffer, but %d were read", took, full, received)
	}
}
