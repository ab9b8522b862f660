package pcap_test

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap"
)

// superFrame is an Ethernet frame carrying one TCP segment of n bytes from
// 192.0.2.2:40000 to 192.0.2.1:80 (the kernel's side to the stack's, in
// the tests below), its TCP checksum left partial as the kernel leaves it
// for a device with offloads: the pseudo-header sum.
func superFrame(n int) []byte {
	const hdr = header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize
	b := make([]byte, hdr+n)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02"),
		DstAddr: tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01"), Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	src, dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b) - header.EthernetMinimumSize), ID: 7, Flags: header.IPv4FlagDontFragment,
		TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	t := header.TCP(ip[header.IPv4MinimumSize:])
	t.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: 1000, AckNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 500})
	for i := range n {
		t[header.TCPMinimumSize+i] = byte(i)
	}
	t.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(t))))
	return b
}

// tcpChecksumOK verifies a captured frame's TCP checksum.
func tcpChecksumOK(frame []byte) bool {
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	t := ip.Payload()
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(t)))
	return checksum.Checksum(t, x) == 0xffff
}

// capturePkts captures pkts, inbound (as a TAP device with offloads
// delivers them) or outbound, and returns what was written.
func capturePkts(t *testing.T, opts pcap.Options, inbound bool, pkts ...*gstack.PacketBuffer) ([]pcap.Packet, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "offload.pcapng")
	ch := channel.New(16, 1<<16, "")
	w, err := pcap.Create(path, ch, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkt := range pkts {
		if inbound {
			w.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
		} else {
			var l gstack.PacketBufferList
			l.PushBack(pkt)
			w.WritePackets(l)
		}
		pkt.DecRef()
	}
	if err := w.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	got, err := pcap.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return got, path
}

func packetOf(frame []byte, gso gstack.GSO, validated bool) *gstack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	pkt.GSOOptions = gso
	pkt.RXChecksumValidated = validated
	return pkt
}

// TestSuperFrameAsWireSegments: a super-frame is written as the wire
// segments it stands for, checksums filled in, the first with the comment
// naming the offload, inbound (the kernel's TSO delivered whole) and
// outbound (gVisor's GSO), and whole with Options.SuperFrames.
func TestSuperFrameAsWireSegments(t *testing.T) {
	const mss = 1448
	frame := superFrame(44*mss - 1000)
	var want [][]byte
	if err := tap.WireSegments(frame, mss, func(s []byte) { want = append(want, append([]byte(nil), s...)) }); err != nil {
		t.Fatal(err)
	}
	gso := gstack.GSO{Type: gstack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: mss, L3HdrLen: header.IPv4MinimumSize}
	for _, inbound := range []bool{true, false} {
		got, _ := capturePkts(t, pcap.Options{}, inbound, packetOf(frame, gso, inbound))
		if len(got) != len(want) {
			t.Fatalf("inbound %v: %d frames written, want %d", inbound, len(got), len(want))
		}
		for i, p := range got {
			if !bytes.Equal(p.Data, want[i]) || !tcpChecksumOK(p.Data) {
				t.Errorf("inbound %v: frame %d is not wire segment %d with its checksum", inbound, i+1, i+1)
			}
			c := p.Comment()
			switch {
			case i == 0 && !strings.HasPrefix(c, "TSO 44×1448 of 62,712 B"):
				t.Errorf("inbound %v: frame 1's comment %q does not name the offload", inbound, c)
			// An outbound super-frame is cut into records as it is
			// captured, so that each wire segment takes the engine's
			// events about it; with no stack here, each also says that
			// no event explained it.
			case i > 0 && !strings.HasPrefix(c, "TSO "+itoa(i+1)+"/44 of frame 1"):
				t.Errorf("inbound %v: frame %d's comment %q", inbound, i+1, c)
			}
		}
	}
	got, _ := capturePkts(t, pcap.Options{SuperFrames: true}, true, packetOf(frame, gso, true))
	if len(got) != 1 || !bytes.Equal(got[0].Data, frame) || !strings.HasPrefix(got[0].Comment(), "TSO 44×1448 of 62,712 B") {
		t.Errorf("with SuperFrames: %d frames, want the super-frame as it came with its comment", len(got))
	}
}

// TestPartialChecksumFilled: an inbound frame whose checksum the device
// vouched for (left partial by the kernel) is written with the checksum
// a wire would carry; one the device did not vouch for is written as is.
// Outbound, a segment alone whose checksum the stack left for the link
// to finish (NeedsCsum, a gso_size of its own length: tapstack's and
// gVisor's TCP on a link with offloads) is written finished too.
func TestPartialChecksumFilled(t *testing.T) {
	frame := superFrame(100)
	for _, validated := range []bool{true, false} {
		got, _ := capturePkts(t, pcap.Options{}, true, packetOf(frame, gstack.GSO{}, validated))
		if len(got) != 1 {
			t.Fatalf("%d frames", len(got))
		}
		if ok := tcpChecksumOK(got[0].Data); ok != validated {
			t.Errorf("validated %v: the captured checksum verifies: %v", validated, ok)
		}
	}
	lone := gstack.GSO{Type: gstack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: 100, L3HdrLen: header.IPv4MinimumSize}
	for _, partial := range []bool{true, false} {
		g := gstack.GSO{}
		if partial {
			g = lone
		}
		got, _ := capturePkts(t, pcap.Options{}, false, packetOf(frame, g, false))
		if len(got) != 1 {
			t.Fatalf("outbound: %d frames, want 1", len(got))
		}
		if ok := tcpChecksumOK(got[0].Data); ok != partial {
			t.Errorf("outbound, left to the link %v: the captured checksum verifies: %v", partial, ok)
		}
		if c := got[0].Comment(); strings.Contains(c, "TSO") {
			t.Errorf("outbound: a segment alone named as an offload: %q", c)
		}
	}
}

// TestSuperFrameTshark: Wireshark reads the wire segments of a super-frame
// as TCP segments of at most the MSS with good checksums.
func TestSuperFrameTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark is not installed")
	}
	const mss = 1448
	gso := gstack.GSO{Type: gstack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: mss, L3HdrLen: header.IPv4MinimumSize}
	_, path := capturePkts(t, pcap.Options{}, true, packetOf(superFrame(10*mss+5), gso, true))
	out, err := exec.Command("tshark", "-r", path, "-o", "tcp.check_checksum:TRUE", "-T", "fields",
		"-e", "tcp.len", "-e", "tcp.seq_raw", "-e", "tcp.checksum.status", "-e", "tcp.flags.push").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 11 {
		t.Fatalf("tshark read %d frames, want 11:\n%s", len(lines), out)
	}
	for i, line := range lines {
		f := strings.Split(line, "\t")
		wantLen, wantPush := itoa(mss), "0"
		if i == 10 {
			wantLen, wantPush = "5", "1"
		}
		// tcp.checksum.status 1 is "Good" (0 bad, 2 unverified); PSH
		// is on the last segment only.
		if len(f) != 4 || f[0] != wantLen || f[1] != itoa(1000+i*mss) || f[2] != "1" || (f[3] != wantPush && !strings.EqualFold(f[3], map[string]string{"0": "False", "1": "True"}[wantPush])) {
			t.Errorf("frame %d: %q; want len %s, seq %d, checksum good, push %s", i+1, line, wantLen, 1000+i*mss, wantPush)
		}
	}
}

// segmentOf returns the segment of super-frame frame (superFrame) that
// carries its n bytes from off, alone, its checksum partial as the
// frame's.
func segmentOf(frame []byte, off, n int) []byte {
	const hdr = header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize
	b := append(append([]byte(nil), frame[:hdr]...), frame[hdr+off:hdr+off+n]...)
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.SetTotalLength(uint16(len(b) - header.EthernetMinimumSize))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	t := header.TCP(ip[header.IPv4MinimumSize:])
	t.SetSequenceNumber(t.SequenceNumber() + uint32(off))
	t.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(t))))
	return b
}

// TestSuperFrameRetransmissionOrigin: an inbound super-frame of 5 wire
// segments is written as 5 frames, each a packet of its own
// (frame.packet_id); a retransmission of the third's range alone names
// the third, and shares its packet id, as it would had the wire segments
// come one by one. The whole super-frame again is 5 retransmissions, each
// of its own wire segment.
func TestSuperFrameRetransmissionOrigin(t *testing.T) {
	const mss = 1448
	frame := superFrame(5*mss - 8)
	gso := gstack.GSO{Type: gstack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: mss, L3HdrLen: header.IPv4MinimumSize}
	got, _ := capturePkts(t, pcap.Options{}, true,
		packetOf(frame, gso, true),
		packetOf(segmentOf(frame, 2*mss, mss), gstack.GSO{}, true),
		packetOf(frame, gso, true))
	var trace strings.Builder
	for _, p := range got {
		_, k, _ := p.TCP()
		fmt.Fprintf(&trace, "#%d seq=%d len=%d id=%d | %s\n", p.Number, k.Seq, k.Len, p.PacketID, p.Comment())
	}
	if len(got) != 11 {
		t.Fatalf("%d frames, want 5 wire segments, the retransmission, 5 again:\n%s", len(got), &trace)
	}
	ids := map[uint64]int{}
	for i, p := range got[:5] {
		if n, ok := ids[p.PacketID]; ok {
			t.Errorf("wire segments %d and %d share packet id %d", n+1, i+1, p.PacketID)
		}
		ids[p.PacketID] = i
	}
	if rtx := got[5]; !strings.Contains(rtx.Comment(), "retransmission of frame 3") || rtx.PacketID != got[2].PacketID {
		t.Errorf("the retransmission says %q, packet id %d; want \"retransmission of frame 3\", packet id %d", rtx.Comment(), rtx.PacketID, got[2].PacketID)
	}
	if c := got[6].Comment(); !strings.Contains(c, "retransmission of frame 1") {
		t.Errorf("the super-frame again says %q; want \"retransmission of frame 1\"", c)
	}
	for i, p := range got[6:] {
		if p.PacketID != got[i].PacketID {
			t.Errorf("wire segment %d again has packet id %d, first %d", i+1, p.PacketID, got[i].PacketID)
		}
	}
	if t.Failed() {
		t.Logf("capture:\n%s", &trace)
	}
}

// TestSuperFrameOutboundEachSegmentSent: over a pipe with segmentation
// offload the server's engine sends its trains as super-frames, cut into
// their wire segments as they are captured; each wire segment says why it
// was sent, from its own send event, the first of a train after "TSO
// n×mss of b B", the later ones after "TSO i/n of frame f", f the
// first's number.
func TestSuperFrameOutboundEachSegmentSent(t *testing.T) {
	p := newConnPair(t, 100*time.Millisecond, tap.WithPipeGSO(true))
	p.settle()
	t0 := time.Now()
	data := bytes.Repeat([]byte("x"), 256<<10)
	go p.srv.Write(data)
	if _, err := io.ReadFull(p.cli, make([]byte, len(data))); err != nil {
		t.Fatal(err)
	}
	p.settle()
	frames, dump := p.read(t, t0)
	byNo := map[int]pcap.Packet{}
	for _, f := range frames {
		byNo[f.Number] = f
	}
	trains := 0
	for _, f := range frames {
		_, k, _ := f.TCP()
		if f.Direction != pcap.Outbound || k.Len == 0 {
			continue
		}
		// Why it was sent follows the offload's words: "data", a
		// retransmission, a tail loss probe.
		c := f.Comment()
		sent := c
		if strings.HasPrefix(c, "TSO ") {
			_, sent, _ = strings.Cut(c, "; ")
		}
		if sent == "" || strings.Contains(c, "no engine event") {
			t.Errorf("frame %d (SEQ %d, %d bytes) says %q: not why it was sent", f.Number, k.Seq, k.Len, c)
		}
		var n, mss int
		if _, err := fmt.Sscanf(c, "TSO %d×%d of", &n, &mss); err != nil {
			continue
		}
		trains++
		for j := 1; j < n; j++ {
			want := fmt.Sprintf("TSO %d/%d of frame %d", j+1, n, f.Number)
			if g, ok := byNo[f.Number+j]; !ok || !strings.HasPrefix(g.Comment(), want) {
				t.Errorf("frame %d: %q; want %q", f.Number+j, g.Comment(), want)
			}
		}
	}
	if trains == 0 {
		t.Errorf("no super-frame in the capture: the test shows nothing")
	}
	if t.Failed() {
		t.Logf("capture:\n%s", dump)
	}
}
