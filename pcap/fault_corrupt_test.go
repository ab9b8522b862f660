package pcap_test

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap"
)

// counting counts the frames delivered to it.
type counting struct{ n atomic.Int64 }

func (c *counting) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	c.n.Add(1)
}
func (*counting) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

// TestFaultCorruptCommentOnItsSegment: a GSO super-frame of ten segments
// crosses a tap.Pipe into an end whose fault middleware corrupts a third
// of the frames on their way in, with a capture above it. The pipe hands
// the super-frame up as its wire segments, so each fault draws for one
// segment and its comment lands on the very frame it changed: the
// capture's frames that say "corrupted byte" are exactly those whose TCP
// checksum fails. (Handed up whole, a corrupted super-frame was cut into
// segments by the capture, which put the comment on the first.) The runs
// of intact segments between them go on joined again, and the capture
// writes them as their wire segments still.
func TestFaultCorruptCommentOnItsSegment(t *testing.T) {
	a, b := tap.Pipe(tap.WithPipeGSO(true))
	var faultObs func(tap.FaultEvent)
	f := tap.NewFault(b, tap.FaultConfig{Seed: 4, Inbound: &tap.FaultConfig{Corrupt: 0.3},
		Observer: func(ev tap.FaultEvent) { faultObs(ev) }})
	var buf bytes.Buffer
	w, err := pcap.New(f, &buf, pcap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	faultObs = w.FaultObserver(nil)
	var got counting
	w.Attach(&got)

	const mss, segs = 1448, 10
	src, dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	const eth, ipLen, tcpLen = header.EthernetMinimumSize, header.IPv4MinimumSize, header.TCPMinimumSize
	frame := make([]byte, eth+ipLen+tcpLen+segs*mss)
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x02\x00\x00\x00\x00\x02", Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(frame[eth:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(frame) - eth), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	for i := range frame[eth+ipLen+tcpLen:] {
		frame[eth+ipLen+tcpLen+i] = byte(i * 7)
	}
	tcp := header.TCP(frame[eth+ipLen:])
	tcp.Encode(&header.TCPFields{SrcPort: 7, DstPort: 40000, SeqNum: 1000, AckNum: 2000, DataOffset: tcpLen, Flags: header.TCPFlagAck, WindowSize: 65535})
	tcp.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))) // partial, as GSO leaves it
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	pkt.GSOOptions = gstack.GSO{Type: gstack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: mss, L3HdrLen: ipLen}
	var pl gstack.PacketBufferList
	pl.PushBack(pkt)
	if _, err := a.WritePackets(pl); err != nil {
		t.Fatal(err)
	}
	pkt.DecRef()
	if !a.FlushOutbound(5 * time.Second) {
		t.Fatal("the pipe did not carry the super-frame")
	}
	st := w.Stats()
	w.CloseCapture()
	pkts, err := pcap.ReadAll(&buf)
	if err != nil || len(pkts) != segs {
		t.Fatalf("%d frames captured (%d delivered), %v; want %d", len(pkts), got.n.Load(), err, segs)
	}
	if st.Unmatched != 0 {
		t.Errorf("%d fault reports unmatched", st.Unmatched)
	}
	if in := f.InboundStats().Frames; in != segs {
		t.Errorf("the faults drew for %d frames: the super-frame did not go up as its %d wire segments", in, segs)
	}
	corrupted, pieces, intact := 0, 0, false
	for _, p := range pkts {
		noted := strings.Contains(p.Comment(), "fault: corrupted byte ")
		// The stack gets each corrupted segment alone and each run of
		// intact ones joined again (one super-frame, which the capture
		// writes as its wire segments).
		if noted || !intact {
			pieces++
		}
		intact = !noted
		seg := header.TCP(p.Data[eth+ipLen:])
		holds := checksum.Checksum(seg, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(seg)))) == 0xffff
		if noted == holds {
			t.Errorf("frame %d: corruption noted %v, checksum holds %v: %q", p.Number, noted, holds, p.Comment())
		}
		if noted {
			corrupted++
		}
	}
	if corrupted == 0 || corrupted == segs {
		t.Errorf("%d of %d segments corrupted: the seed should corrupt some, not all", corrupted, segs)
	}
	if pieces == segs {
		t.Errorf("no two intact segments in a row: the seed tests no join")
	}
	if n := got.n.Load(); n != int64(pieces) {
		t.Errorf("%d frames delivered, want %d: each corrupted segment alone, each run of intact ones joined", n, pieces)
	}
}
