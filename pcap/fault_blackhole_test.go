package pcap_test

import (
	"bytes"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap"
)

// TestFaultBlackHoleCapture: a packet the fault middleware's black hole
// takes is in the capture as a lost one is, in both directions: with the
// fault's comment and a drop verdict, the inbound one though the stack
// never saw it. A packet the black hole lets through has neither.
func TestFaultBlackHoleCapture(t *testing.T) {
	const ipLen = header.IPv4MinimumSize + header.TCPMinimumSize + 100 // ect0Segment's
	for _, tc := range []struct {
		name    string
		mtu     int
		comment string // "": the packets pass
	}{
		{"over", ipLen - 1, "fault: dropped: 140 bytes, over the black hole's MTU 139 (no ICMP, seed 3, #1)"},
		{"at", ipLen, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var faultObs func(tap.FaultEvent)
			cfg := tap.FaultConfig{BlackHoleMTU: tc.mtu}
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
			dropped := tc.comment != ""
			for _, p := range pkts {
				has := dropped && strings.Contains(p.Comment(), tc.comment)
				if p.Dropped != dropped || has != dropped || (!dropped && strings.Contains(p.Comment(), "fault:")) {
					t.Errorf("%v frame: dropped %v, comment %q; want dropped %v, comment %q", p.Direction, p.Dropped, p.Comment(), dropped, tc.comment)
				}
			}
		})
	}
}
