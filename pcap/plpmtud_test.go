package pcap_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestBlackHoleNotes: the glass box for path MTU probing (RFC 4821). A
// capture of the sender's end, with a 1,400-byte black hole below it:
// the sender's full-sized segments carry the fault's note and a drop
// verdict; the retransmission the first suspicion of a black hole cut to
// 1,024 bytes carries the engine's note on it; and every frame whose note
// announces an MTU probe is that probe: one segment larger than the
// segments around it, of the size the note gives.
func TestBlackHoleNotes(t *testing.T) {
	client, server, capture := capturedCable(t, tap.FaultConfig{BlackHoleMTU: 1400},
		tcp.Options{MTUProbing: tcp.MTUProbingBlackHole, MinRTO: 20 * time.Millisecond}, tcp.Options{})
	ln, err := conn.Listen(server, "tcp", "192.0.2.2:9")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := pcaptest.AcceptOne(ln)
	c, err := conn.Dial(client, "tcp", "192.0.2.2:9")
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The server must get all of it, through the hole.
	if err := pcaptest.Transfer(ctx, c, s, pcaptest.Payload(1<<20, 1)); err != nil {
		t.Fatal(err)
	}
	pkts := capture()
	const ip = header.EthernetMinimumSize
	var dropped, suspected, probes int
	for i, p := range pkts {
		if p.Direction != pcap.Outbound || len(p.Data) < ip+header.IPv4MinimumSize+header.TCPMinimumSize {
			continue
		}
		h := header.TCP(p.Data[ip+header.IPv4MinimumSize:])
		n := len(p.Data) - ip - header.IPv4MinimumSize - int(h.DataOffset())
		note := p.Comment()
		if strings.Contains(note, "over the black hole's MTU 1400") {
			dropped++
		}
		if strings.Contains(note, "black hole suspected") {
			suspected++
			if suspected == 1 && n != 1024 {
				t.Errorf("frame %d: the black hole's note on a segment of %d bytes, want the retransmission cut to 1024: %q", i+1, n, note)
			}
		}
		if k := strings.Index(note, "MTU probe: "); k >= 0 {
			probes++
			if strings.Contains(note, "recovery: MTU probe") {
				t.Errorf("frame %d: the probe's note is worded as loss recovery, which it is not: %q", i+1, note)
			}
			var mtu int
			for _, r := range note[k+len("MTU probe: "):] {
				if r < '0' || r > '9' {
					break
				}
				mtu = mtu*10 + int(r-'0')
			}
			if want := mtu - header.IPv4MinimumSize - header.TCPMinimumSize - 12; n != want {
				t.Errorf("frame %d: the note announces a probe of MTU %d (%d bytes of text), on a segment of %d: %q", i+1, mtu, want, n, note)
			}
		}
	}
	t.Logf("%d frames: %d black-holed, %d suspected, %d probes", len(pkts), dropped, suspected, probes)
	if dropped == 0 || suspected == 0 || probes == 0 {
		t.Errorf("%d black-holed, %d notes of a suspected black hole, %d probe notes; want some of each", dropped, suspected, probes)
	}
}
