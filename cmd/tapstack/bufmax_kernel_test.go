//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDialBufMax: over a TAP with 10 ms of delay each way (a 20 ms round
// trip), dial's --wmem-max 16M lets tapstack have more in flight to the
// kernel than the 4 MiB its send buffer stops at by default, and
// --rmem-max 32M lets it advertise the kernel a window wider than the
// default 6 MiB. Both are read off the capture, the in-flight bytes from
// the sequence numbers sent and the kernel's ACKs, the window from
// tapstack's ACKs and its SYN's window scale; every byte arrives both
// ways. The kernel's buffers in the namespace go up to 32 MiB, so that
// its side is not the limit.
func TestDialBufMax(t *testing.T) {
	const dev = "tsbufmax0"
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	if err := ns.Do(func() error {
		for _, f := range []string{"tcp_rmem", "tcp_wmem"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/"+f, []byte("4096 131072 33554432"), 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	countServer(t, ns, "192.0.2.1:5004")
	sendServer(t, ns, "192.0.2.1:5005", 48<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dial := func(t *testing.T, in io.Reader, out io.Writer, to string, flags ...string) []pcap.Packet {
		capPath := filepath.Join(t.TempDir(), "dial.pcapng")
		var errOut bytes.Buffer
		args := append([]string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--delay", "10ms", "--pcap", capPath}, flags...)
		args = append(args, to)
		if code := runInNamespace(t, ctx, ns, env{stdin: in, stdout: out, stderr: &errOut}, args...)(); code != 0 {
			t.Fatalf("dial: exit %d\n%s", code, errOut.String())
		}
		pkts, err := pcap.ReadFile(capPath)
		if err != nil {
			t.Fatal(err)
		}
		return pkts
	}

	t.Run("wmem", func(t *testing.T) {
		const size = 48 << 20
		var out bytes.Buffer
		pkts := dial(t, bytes.NewReader(bytes.Repeat([]byte{'x'}, size)), &out, "192.0.2.1:5004", "--wmem-max", "16M")
		if out.String() != fmt.Sprintf("got %d\n", size) {
			t.Fatalf("the kernel's answer %q", out.String())
		}
		var iss, end, una uint32
		var synSeen bool
		inflight := 0
		for _, p := range pkts {
			h, ok := tcpOf(p)
			if !ok {
				continue
			}
			switch {
			case p.Direction == pcap.Outbound && h.SYN:
				iss, end, una, synSeen = h.Seq, h.Seq+1, h.Seq, true
			case !synSeen:
			case p.Direction == pcap.Outbound:
				e := h.Seq + uint32(len(h.Payload))
				if h.FIN {
					e++
				}
				if int32(e-end) > 0 {
					end = e
				}
			case h.ACK && int32(h.Ack-una) > 0:
				una = h.Ack
			}
			inflight = max(inflight, int(int32(end-una)))
		}
		t.Logf("%d frames; at most %d bytes in flight (ISS %d)", len(pkts), inflight, iss)
		if inflight <= tcp.DefaultSendBufferMax {
			t.Errorf("at most %d bytes in flight over a 20 ms round trip with --wmem-max 16M; want more than the default buffer's %d", inflight, tcp.DefaultSendBufferMax)
		}
	})

	t.Run("rmem", func(t *testing.T) {
		n := &countingWriter{}
		pkts := dial(t, bytes.NewReader(nil), n, "192.0.2.1:5005", "--rmem-max", "32M")
		if n.n != 48<<20 {
			t.Fatalf("got %d bytes from the kernel, want %d", n.n, 48<<20)
		}
		scale, wnd := -1, 0
		for _, p := range pkts {
			h, ok := tcpOf(p)
			if !ok || p.Direction != pcap.Outbound {
				continue
			}
			if h.SYN {
				for _, o := range h.Options {
					if o.OptionType == layers.TCPOptionKindWindowScale && len(o.OptionData) == 1 {
						scale = int(o.OptionData[0])
					}
				}
				continue
			}
			if scale >= 0 {
				wnd = max(wnd, int(h.Window)<<scale)
			}
		}
		t.Logf("%d frames; window scale %d, widest window advertised %d", len(pkts), scale, wnd)
		if wnd <= tcp.DefaultReceiveBufferMax {
			t.Errorf("widest window advertised %d with --rmem-max 32M; want more than the default buffer's %d", wnd, tcp.DefaultReceiveBufferMax)
		}
	})
}

// sendServer listens on addr in ns with the kernel's TCP until the test
// ends: it sends size bytes on each connection and closes it.
func sendServer(t *testing.T, ns *taptest.Namespace, addr string, size int) {
	t.Helper()
	kernelServer(t, ns, addr, func(c net.Conn) { c.Write(bytes.Repeat([]byte{'y'}, size)) })
}

// countingWriter counts what is written to it.
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// tcpOf decodes the TCP header of a captured Ethernet frame.
func tcpOf(p pcap.Packet) (*layers.TCP, bool) {
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.NoCopy)
	h, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	return h, ok
}
