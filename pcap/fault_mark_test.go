package pcap_test

import (
	"bytes"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap"
)

// ect0Segment is the Ethernet frame of a TCP segment over IPv4 whose ECN
// field is ECT(0), with valid checksums.
func ect0Segment(src, dst tcpip.Address, sport, dport uint16) []byte {
	const ipLen, tcpLen, eth = header.IPv4MinimumSize, header.TCPMinimumSize, header.EthernetMinimumSize
	b := make([]byte, eth+ipLen+tcpLen+100)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x02\x00\x00\x00\x00\x02", Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[eth:])
	ip.Encode(&header.IPv4Fields{TOS: 0b10, TotalLength: uint16(len(b) - eth), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	t := header.TCP(b[eth+ipLen:])
	t.Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, SeqNum: 1000, AckNum: 2000, DataOffset: tcpLen, Flags: header.TCPFlagAck, WindowSize: 65535})
	t.SetChecksum(^checksum.Checksum(t, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(t)))))
	return b
}

type discard struct{}

func (discard) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}
func (discard) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer)    {}

// TestFaultMarkComment: a frame the fault middleware below marks CE (and
// corrupts) carries the fault's comments in the capture, in both
// directions: an outbound frame as the stack sent it (ECT(0)), an inbound
// one as the stack got it (CE). The middleware's reports carry the frame
// as the capture holds it, so that none is left unmatched.
func TestFaultMarkComment(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  tap.FaultConfig
		want []string
	}{
		{"mark", tap.FaultConfig{Mark: 1}, []string{"fault: marked CE (mark 100%, seed 3, #1)"}},
		{"mark and corrupt", tap.FaultConfig{Mark: 1, Corrupt: 1}, []string{"fault: marked CE (mark 100%, seed 3, #1)", "fault: corrupted byte "}},
		{"corrupt", tap.FaultConfig{Corrupt: 1}, []string{"fault: corrupted byte "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := captureEachWay(t, tc.cfg)
			for _, p := range pkts {
				for _, w := range tc.want {
					if !strings.Contains(p.Comment(), w) {
						t.Errorf("%v frame: comment %q lacks %q", p.Direction, p.Comment(), w)
					}
				}
				ecn := p.Data[header.EthernetMinimumSize+1] & 0b11
				if want := map[bool]uint8{true: 0b11, false: 0b10}[p.Direction == pcap.Inbound && tc.cfg.Mark > 0]; ecn != want {
					t.Errorf("%v frame: ECN %02b in the capture, want %02b", p.Direction, ecn, want)
				}
			}
		})
	}
}

// captureEachWay captures one ECT(0) segment each way through a fault
// middleware configured as cfg in both directions (seed 3), and checks
// that every fault report found its frame. An inbound frame the
// middleware dropped is in the capture all the same.
func captureEachWay(t *testing.T, cfg tap.FaultConfig) []pcap.Packet {
	t.Helper()
	var faultObs func(tap.FaultEvent)
	in := cfg
	cfg.Inbound, cfg.Seed = &in, 3
	cfg.Observer = func(ev tap.FaultEvent) { faultObs(ev) }
	f := tap.NewFault(channel.New(16, 1500, ""), cfg)
	var buf bytes.Buffer
	w, err := pcap.New(f, &buf, pcap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	faultObs = w.FaultObserver(nil)
	w.Attach(discard{})

	us, peer := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	sent := ect0Segment(us, peer, 7, 40000)
	const hdr = header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize
	out := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: hdr, Payload: buffer.MakeWithData(sent[hdr:])})
	copy(out.TransportHeader().Push(header.TCPMinimumSize), sent[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	copy(out.NetworkHeader().Push(header.IPv4MinimumSize), sent[header.EthernetMinimumSize:])
	copy(out.LinkHeader().Push(header.EthernetMinimumSize), sent)
	out.NetworkProtocolNumber, out.TransportProtocolNumber = header.IPv4ProtocolNumber, header.TCPProtocolNumber
	var pl gstack.PacketBufferList
	pl.PushBack(out)
	w.WritePackets(pl)
	out.DecRef()

	got := ect0Segment(peer, us, 40000, 7)
	inPkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(got)})
	inPkt.LinkHeader().Consume(header.EthernetMinimumSize)
	f.DeliverNetworkPacket(header.IPv4ProtocolNumber, inPkt)
	inPkt.DecRef()

	st := w.Stats()
	w.CloseCapture()
	pkts, err := pcap.ReadAll(&buf)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("%d packets, %v; want 2", len(pkts), err)
	}
	if st.Unmatched != 0 {
		t.Errorf("%d fault reports unmatched", st.Unmatched)
	}
	return pkts
}
