//go:build linux

package conn_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// Kernel UDP through programs of the host, as issue 13 asks: socat and
// nc -u in the namespace exchange 10,000 datagrams each way with a
// tapstack socket over a TAP. Every datagram is a record of
// datagramSize bytes with its sequence number (fillDatagram); the tools
// copy datagrams to and from a byte stream, which is cut back into
// records and checked. Loss is reported as numbers, with the counters
// that account for it: the kernel's /proc/net/snmp Udp: line, the TAP's
// drops each way, tapstack's UDPStats.

const toolDatagrams = 10_000

// kernelTool is the part of a test that differs between socat and nc.
type kernelTool struct {
	name string
	// receive starts the tool receiving on 192.0.2.1:9 in the namespace
	// and copying what arrives to its standard output.
	receive []string
	// send starts the tool sending to 192.0.2.2:9: from file, one
	// datagram per datagramSize bytes (socat reads a regular file in
	// blocks of -b bytes), or from its standard input when file is
	// empty.
	send func(file string) []string
}

func kernelTools() []kernelTool {
	size := strconv.Itoa(datagramSize)
	return []kernelTool{
		{
			name:    "socat",
			receive: []string{"socat", "-u", "-b", "65536", "UDP4-RECV:9,bind=192.0.2.1,rcvbuf=4194304", "STDOUT"},
			send: func(file string) []string {
				return []string{"socat", "-u", "-b", size, "OPEN:" + file + ",rdonly", "UDP4-SENDTO:192.0.2.2:9"}
			},
		},
		{
			// OpenBSD nc: -l takes the first datagram's sender as its
			// peer. As a sender it sends what one read of its standard
			// input returns (up to 16 KiB): the test writes one record
			// at a time.
			name:    "nc",
			receive: []string{"nc", "-u", "-l", "192.0.2.1", "9"},
			send:    func(string) []string { return []string{"nc", "-u", "192.0.2.2", "9"} },
		},
	}
}

// TestUDPTransferKernelTools sends 10,000 datagrams from tapstack to
// socat and to nc -u in the namespace, and 10,000 from each to tapstack.
func TestUDPTransferKernelTools(t *testing.T) {
	for _, tool := range kernelTools() {
		t.Run(tool.name, func(t *testing.T) {
			needTool(t, tool.name)
			ns := taptest.NewNamespace(t)
			dev := ns.AddTAP(t, "tapstack0", "192.0.2.1/24")
			ts := newTS(t, dev.LinkEndpoint(), nil, tcp.Options{}, tsPrefix)
			t.Run("to kernel", func(t *testing.T) { toolReceives(t, tool, ns, dev, ts) })
			t.Run("from kernel", func(t *testing.T) { toolSends(t, tool, ns, ts) })
		})
	}
}

// toolReceives: tapstack sends toolDatagrams datagrams as fast as it can;
// the tool prints them.
func toolReceives(t *testing.T, tool kernelTool, ns *taptest.Namespace, dev *tap.Device, ts *stack.Stack) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd, _, out := startTool(t, ns, ctx, tool.receive)
	defer cmd.Wait()
	defer cancel()
	waitBound(t, ns, 9)

	var got atomic.Int64
	done := make(chan int, 1)
	go func() { done <- readRecords(t, out, &got) }()
	before, txBefore := snmpUDP(t, ns), dev.Stats().TxDropped
	rxBefore, _ := tapDropped(t, ns)
	tx, err := conn.ListenUDP(ts, "udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	to := netip.MustParseAddrPort("192.0.2.1:9")
	buf := make([]byte, datagramSize)
	begin := time.Now()
	for i := range toolDatagrams {
		fillDatagram(buf, uint32(i))
		if _, err := tx.WriteToUDPAddrPort(buf, to); err != nil {
			t.Fatalf("WriteTo %d: %v", i, err)
		}
	}
	last := waitProgress(&got, toolDatagrams)
	cancel() // the tool's output ends: readRecords returns
	received := <-done
	after := snmpUDP(t, ns)
	rcvbuf := after["RcvbufErrors"] - before["RcvbufErrors"]
	arrived := after["InDatagrams"] - before["InDatagrams"] + rcvbuf
	tapDrops := int(dev.Stats().TxDropped - txBefore)
	rxAfter, _ := tapDropped(t, ns)
	kernelDrops := rxAfter - rxBefore
	st := tx.Stats()
	t.Logf("tapstack to %s: %d sent (socket counted %d), %d received, %d lost: %d by tapstack's full TAP queue, %d by the kernel on the TAP's way in, %d by the kernel's full socket buffer, %d by %s (read from its socket, not printed), %d elsewhere; %.0f datagrams/s",
		tool.name, toolDatagrams, st.Sent, received, toolDatagrams-received, tapDrops, kernelDrops, rcvbuf,
		after["InDatagrams"]-before["InDatagrams"]-received, tool.name, toolDatagrams-arrived-tapDrops-kernelDrops,
		float64(received)/last.Sub(begin).Seconds())
	if received == 0 {
		t.Fatalf("%s received nothing", tool.name)
	}
	if st.Sent != toolDatagrams {
		t.Errorf("the socket counted %d datagrams sent, want %d", st.Sent, toolDatagrams)
	}
}

// toolSends: the tool sends toolDatagrams datagrams to a tapstack socket:
// socat from a file as fast as it reads it, nc one record per write to
// its standard input, each once the one before arrived (or after
// 100 ms: lost).
func toolSends(t *testing.T, tool kernelTool, ns *taptest.Namespace, ts *stack.Stack) {
	rx, err := conn.ListenUDP(ts, "udp4", &net.UDPAddr{Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := rx.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	before, tapBefore, stBefore := snmpUDP(t, ns), tapTxDropped(t, ns), ts.UDPStats()

	var got atomic.Int64
	arrived := make(chan struct{}, 1)
	type result struct{ records, datagrams int }
	done := make(chan result, 1)
	go func() {
		r, d := receiveRecords(t, rx, &got, arrived)
		done <- result{r, d}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	record := make([]byte, datagramSize)
	begin := time.Now()
	if file := recordsFile(t, tool); file != "" {
		argv := tool.send(file)
		if out, err := ns.Exec(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", tool.name, err, out)
		}
	} else {
		cmd, in, _ := startTool(t, ns, ctx, tool.send(""))
		defer cmd.Wait()
		defer cancel()
		for i := range toolDatagrams {
			fillDatagram(record, uint32(i))
			if _, err := in.Write(record); err != nil {
				t.Fatalf("%s's stdin: %v", tool.name, err)
			}
			select {
			case <-arrived:
			case <-time.After(100 * time.Millisecond):
			}
		}
		in.Close()
	}
	last := waitProgress(&got, toolDatagrams)
	rx.Close() // receiveRecords returns
	r := <-done
	cancel()
	after := snmpUDP(t, ns)
	sent := after["OutDatagrams"] - before["OutDatagrams"]
	st := ts.UDPStats()
	tookUDP, full := int(st.Received-stBefore.Received), int(st.ReceiveBufferFull-stBefore.ReceiveBufferFull)
	tapDrops := tapTxDropped(t, ns) - tapBefore
	t.Logf("%s to tapstack: %d records in %d datagrams sent (%d send errors), %d records in %d datagrams received, %d records lost: %d datagrams by the kernel's full TAP queue, %d by tapstack's full socket buffer, %d elsewhere; %.0f datagrams/s",
		tool.name, toolDatagrams, sent, after["SndbufErrors"]-before["SndbufErrors"], r.records, r.datagrams,
		toolDatagrams-r.records, tapDrops, full, sent-tookUDP-tapDrops, float64(r.datagrams)/last.Sub(begin).Seconds())
	if r.records == 0 {
		t.Fatalf("tapstack received nothing from %s", tool.name)
	}
	if elsewhere := sent - tookUDP - tapDrops; elsewhere != 0 {
		t.Errorf("%d datagrams from %s are not accounted for by the TAP's drops nor tapstack's counters", elsewhere, tool.name)
	}
	if tookUDP-full != r.datagrams {
		t.Errorf("tapstack's UDP took %d datagrams and dropped %d for a full buffer, but %d were read", tookUDP, full, r.datagrams)
	}
}

// startTool starts argv in ns, its standard input and output piped to
// the test; cancelling ctx kills it.
func startTool(t *testing.T, ns *taptest.Namespace, ctx context.Context, argv []string) (*exec.Cmd, io.WriteCloser, io.ReadCloser) {
	t.Helper()
	cmd := ns.Exec(ctx, argv[0], argv[1:]...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, in, out
}

// recordsFile writes the records a tool sends from a file, or returns ""
// for a tool that sends from its standard input.
func recordsFile(t *testing.T, tool kernelTool) string {
	if tool.name != "socat" {
		return ""
	}
	path := filepath.Join(t.TempDir(), "records")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	record := make([]byte, datagramSize)
	for i := range toolDatagrams {
		fillDatagram(record, uint32(i))
		w.Write(record)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// records tallies the distinct intact records that arrived, in got.
type records struct {
	t    *testing.T
	got  *atomic.Int64
	seen []bool
	want []byte
}

func newRecords(t *testing.T, got *atomic.Int64) *records {
	return &records{t: t, got: got, seen: make([]bool, toolDatagrams), want: make([]byte, datagramSize)}
}

// take checks each whole record in b and counts those not seen before.
func (r *records) take(b []byte) {
	if len(b)%datagramSize != 0 {
		r.t.Errorf("%d bytes: not whole records", len(b))
	}
	for ; len(b) >= datagramSize; b = b[datagramSize:] {
		seq := binary.BigEndian.Uint32(b)
		if seq < toolDatagrams {
			fillDatagram(r.want, seq)
		}
		if seq >= toolDatagrams || string(b[:datagramSize]) != string(r.want) {
			r.t.Errorf("a record is corrupted (seq %d)", seq)
			continue
		}
		if !r.seen[seq] {
			r.seen[seq] = true
			r.got.Add(1)
		}
	}
}

// readRecords cuts a tool's output into records until it ends, counting
// distinct intact ones in got; it returns their number.
func readRecords(t *testing.T, r io.Reader, got *atomic.Int64) int {
	br := bufio.NewReaderSize(r, 1<<16)
	rec, tally := make([]byte, datagramSize), newRecords(t, got)
	for {
		if _, err := io.ReadFull(br, rec); err != nil {
			return int(got.Load())
		}
		tally.take(rec)
	}
}

// receiveRecords reads datagrams from rx until it closes, each cut into
// records, counting distinct intact ones in got and signalling each
// datagram on arrived; it returns the records and the datagrams.
func receiveRecords(t *testing.T, rx *conn.UDPConn, got *atomic.Int64, arrived chan<- struct{}) (n, datagrams int) {
	buf, tally := make([]byte, 65536), newRecords(t, got)
	for {
		m, _, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadFrom: %v", err)
			}
			return int(got.Load()), datagrams
		}
		datagrams++
		tally.take(buf[:m])
		select {
		case arrived <- struct{}{}:
		default:
		}
	}
}

// waitProgress waits until got reaches n or stops growing for two
// seconds, and returns when it last grew.
func waitProgress(got *atomic.Int64, n int) time.Time {
	last, lastAt := got.Load(), time.Now()
	for range 60 * 20 { // a minute at most
		if int(last) == n || time.Since(lastAt) > 2*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
		if v := got.Load(); v != last {
			last, lastAt = v, time.Now()
		}
	}
	return lastAt
}

// waitBound waits until a UDP socket in ns is bound to port: a tool just
// started may not be, and a datagram before it would meet ICMP port
// unreachable.
func waitBound(t *testing.T, ns *taptest.Namespace, port int) {
	t.Helper()
	hex := fmt.Sprintf(":%04X ", port)
	for range 500 {
		var table []byte
		if err := ns.Do(func() (err error) {
			table, err = os.ReadFile("/proc/thread-self/net/udp")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(table), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 1 && strings.HasSuffix(f[1]+" ", hex) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing bound UDP port %d in the namespace", port)
}
