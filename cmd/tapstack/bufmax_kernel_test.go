//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDialBufMax: --wmem-max and --rmem-max reach the connections of
// dial, against the kernel over a TAP with 10 ms of delay each way (a
// 20 ms round trip), read off the capture. What a buffer bounds without
// depending on how fast this machine is: with --wmem-max 64K tapstack
// never has more than 64 KiB in flight (without it, more), with
// --rmem-max 64K it never advertises a wider window (without it, wider),
// and with --rmem-max 32M its SYN asks for the window scale a 32 MiB
// window needs, 10, where the default 6 MiB asks for 7. Every byte
// arrives both ways.
func TestDialBufMax(t *testing.T) {
	const dev, size = "tsbufmax0", 2 << 20
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	countServer(t, ns, "192.0.2.1:5004")
	sendServer(t, ns, "192.0.2.1:5005", size)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dial := func(t *testing.T, in io.Reader, out io.Writer, to string, flags ...string) []pcap.Packet {
		return dialCaptured(t, ctx, ns, dev, in, out, to, append([]string{"--delay", "10ms"}, flags...)...)
	}

	t.Run("wmem", func(t *testing.T) {
		for _, tc := range []struct {
			flags  []string
			capped bool // at most 64 KiB in flight
		}{
			{nil, false},
			{[]string{"--wmem-max", "64K"}, true},
		} {
			var out bytes.Buffer
			pkts := dial(t, bytes.NewReader(bytes.Repeat([]byte{'x'}, size)), &out, "192.0.2.1:5004", tc.flags...)
			if out.String() != fmt.Sprintf("got %d\n", size) {
				t.Fatalf("%q: the kernel's answer %q", tc.flags, out.String())
			}
			inflight := maxInFlight(pkts)

			t.Logf("%q: %d frames, at most %d bytes in flight", tc.flags, len(pkts), inflight)
			if capped := inflight <= 64<<10; capped != tc.capped {
				t.Errorf("%q: at most %d bytes in flight; want at most 64 KiB: %v", tc.flags, inflight, tc.capped)
			}
		}
	})

	t.Run("rmem", func(t *testing.T) {
		for _, tc := range []struct {
			flags  []string
			scale  int
			capped bool // no window wider than 64 KiB
		}{
			{nil, 7, false},
			{[]string{"--rmem-max", "64K"}, 1, true},
			{[]string{"--rmem-max", "32M"}, 10, false},
		} {
			n := &countingWriter{}
			pkts := dial(t, bytes.NewReader(nil), n, "192.0.2.1:5005", tc.flags...)
			if n.n != size {
				t.Fatalf("%q: got %d bytes from the kernel, want %d", tc.flags, n.n, size)
			}
			scale, wnd := widestWindow(pkts)
			t.Logf("%q: %d frames, window scale %d, widest window advertised %d", tc.flags, len(pkts), scale, wnd)
			if capped := wnd <= 64<<10; scale != tc.scale || capped != tc.capped {
				t.Errorf("%q: window scale %d, widest window %d; want scale %d, at most 64 KiB: %v", tc.flags, scale, wnd, tc.scale, tc.capped)
			}
		}
	})
}

// maxInFlight is the most data tapstack had sent and the kernel not yet
// acknowledged at any frame of the connection tapstack opened: the highest
// sequence number sent (a FIN counts one) less the highest ACK received.
// Frames of other connections (the kernel still closing an earlier dial's
// on the same device) are left out.
func maxInFlight(pkts []pcap.Packet) int {
	var end, una uint32
	var conn event.ConnID
	synSeen, inflight := false, 0
	for _, p := range pkts {
		id, k, ok := p.TCP()
		if !ok {
			continue
		}
		switch {
		case p.Direction == pcap.Outbound && k.Flags&event.FlagSyn != 0:
			end, una, conn, synSeen = k.Seq+1, k.Seq, id, true
		case !synSeen || id != conn:
		case p.Direction == pcap.Outbound:
			e := k.Seq + uint32(k.Len)
			if k.Flags&event.FlagFin != 0 {
				e++
			}
			if int32(e-end) > 0 {
				end = e
			}
		case k.Flags&event.FlagAck != 0 && int32(k.Ack-una) > 0:
			una = k.Ack
		}
		inflight = max(inflight, int(int32(end-una)))
	}
	return inflight
}

// widestWindow is the window scale tapstack's SYN asked for (-1 without
// the option) and the widest window it advertised after on that
// connection, scaled.
func widestWindow(pkts []pcap.Packet) (scale, wnd int) {
	scale = -1
	var port layers.TCPPort
	for _, p := range pkts {
		h, ok := tcpOf(p)
		if !ok || p.Direction != pcap.Outbound || (!h.SYN && h.SrcPort != port) {
			continue
		}
		if h.SYN {
			port = h.SrcPort
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
	return scale, wnd
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

// dialCaptured runs dial on dev in ns to the kernel's address to, with
// its stdin and stdout and the flags, and returns its capture.
func dialCaptured(t *testing.T, ctx context.Context, ns *taptest.Namespace, dev string, in io.Reader, out io.Writer, to string, flags ...string) []pcap.Packet {
	t.Helper()
	capPath := filepath.Join(t.TempDir(), "dial.pcapng")
	var errOut bytes.Buffer
	args := append([]string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--pcap", capPath}, flags...)
	args = append(args, to)
	if code := runInNamespace(t, ctx, ns, env{stdin: in, stdout: out, stderr: &errOut}, args...)(); code != 0 {
		t.Fatalf("dial %q %s: exit %d\n%s", flags, to, code, errOut.String())
	}
	pkts, err := pcap.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}
