//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDialRoute: --route gives the TAP's route Linux's metrics, against
// the kernel, read off the capture. With --route "mtu lock 1000 advmss
// 700", dial's SYN announces MSS 700 and tapstack's IP packets are at most
// 1,000 bytes, full ones exactly that (948 bytes of data with the
// timestamps), as 1 MiB goes to the kernel; the kernel's segments of 1 MiB
// the other way carry at most 700 - 12 bytes (its timestamps), full ones
// exactly that. A metric tapstack does not keep is a usage error that
// names it.
func TestDialRoute(t *testing.T) {
	const dev, size = "tsroute1", 1 << 20
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	countServer(t, ns, "192.0.2.1:5006")
	sendServer(t, ns, "192.0.2.1:5007", size)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	route := "mtu lock 1000 advmss 700 initrwnd 2"
	dfOut := 0                 // tapstack's packets with DF set: the route locks its MTU, so none should be
	synWin := map[string]int{} // the window of tapstack's SYN, by the address dialed
	// The kernel's text before tapstack's first ACK of text, by the
	// address dialed: the initial window lets 2*700 bytes through.
	firstFlight := map[string]int{}
	dial := func(in []byte, out *bytes.Buffer, to string) (synMSS, longestOut, fullOut, longestIn, fullIn int) {
		acked := false // tapstack has acknowledged text
		for _, p := range dialCaptured(t, ctx, ns, dev, bytes.NewReader(in), out, to, "--route", route) {
			pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.NoCopy)
			ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			h, isTCP := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !ok || !isTCP {
				continue
			}
			if p.Direction != pcap.Outbound {
				if !acked {
					firstFlight[to] += len(h.Payload)
				}
				longestIn = max(longestIn, len(h.Payload))
				if len(h.Payload) == 700-12 {
					fullIn++
				}
				continue
			}
			if ip.Flags&layers.IPv4DontFragment != 0 {
				dfOut++
			}
			longestOut = max(longestOut, int(ip.Length))
			if int(ip.Length) == 1000 {
				fullOut++
			}
			if !h.SYN && h.ACK && firstFlight[to] > 0 {
				acked = true
			}
			if h.SYN {
				synWin[to] = int(h.Window)
				for _, o := range h.Options {
					if o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2 {
						synMSS = int(binary.BigEndian.Uint16(o.OptionData))
					}
				}
			}
		}
		return
	}
	var out bytes.Buffer
	synMSS, longestOut, fullOut, _, _ := dial(bytes.Repeat([]byte{'x'}, size), &out, "192.0.2.1:5006")
	if out.String() != fmt.Sprintf("got %d\n", size) {
		t.Fatalf("the kernel's answer %q", out.String())
	}
	t.Logf("tapstack sending: SYN's MSS %d; longest IP packet %d bytes (%d at 1,000)", synMSS, longestOut, fullOut)
	if synMSS != 700 || longestOut != 1000 || fullOut == 0 {
		t.Errorf("SYN's MSS %d, tapstack's longest packet %d (%d full); want 700, 1000 (some)", synMSS, longestOut, fullOut)
	}
	// initrwnd 2: the SYN offers two segments of the MSS it announces.
	if w := synWin["192.0.2.1:5006"]; w != 2*700 {
		t.Errorf("the SYN's window %d; want initrwnd 2 segments of 700, 1400", w)
	}
	// A locked MTU turns path MTU discovery off: no DF, as Linux's
	// ip_dont_fragment has it.
	if dfOut != 0 {
		t.Errorf("%d of tapstack's packets with DF set on a route that locks its MTU; want none", dfOut)
	}
	out.Reset()
	_, _, _, longestIn, fullIn := dial(nil, &out, "192.0.2.1:5007")
	t.Logf("the kernel sending: longest payload %d bytes (%d at 688)", longestIn, fullIn)
	if out.Len() != size || longestIn != 700-12 || fullIn == 0 {
		t.Errorf("got %d bytes; the kernel's longest payload %d (%d full); want %d, 688 (some)", out.Len(), longestIn, fullIn, size)
	}
	// The kernel's first flight fits the window the SYN offered, and
	// the window grows from there: the whole MiB arrived above.
	t.Logf("the kernel's first flight: %d bytes (window 1400)", firstFlight["192.0.2.1:5007"])
	if f := firstFlight["192.0.2.1:5007"]; f == 0 || f > 2*700 {
		t.Errorf("the kernel sent %d bytes before tapstack's first ACK; want some, at most the 1400 initrwnd offered", f)
	}

	var errOut bytes.Buffer
	bad := []string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--route", "hoplimit 20", "192.0.2.1:5006"}
	if code := runInNamespace(t, ctx, ns, env{stdin: bytes.NewReader(nil), stdout: &out, stderr: &errOut}, bad...)(); code != 2 || !strings.Contains(errOut.String(), `route metric "hoplimit"`) {
		t.Errorf("--route \"hoplimit 20\": exit %d, %q; want 2 and an error naming the metric", code, errOut.String())
	}
}
