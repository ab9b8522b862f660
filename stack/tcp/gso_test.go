package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestGSOTrains: on a link that segments (host GSO), each train of new
// segments leaves as one packet, cut where the trains are cut without GSO
// (TestPushEndsTrain), and the wire segments the link cuts from it are
// exactly those the engine sends without GSO: same sequence numbers and
// lengths, PSH on each train's last. Events and counters name every wire
// segment; a retransmission is one segment, never a GSO packet.
func TestGSOTrains(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rtt     time.Duration
		train   int // segments per train
		packets int // GSO packets the window of 10 goes in
	}{
		{"100ms", 100 * time.Millisecond, 2, 5},
		{"1ms", time.Millisecond, 5, 2}, // half the window at most
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r events
			p, l := tcptest.Listen(t, tcptest.WithGSO(), tcptest.WithTCP(tcp.Options{Observer: r.observe}))
			p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
			p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
			p.Advance(tc.rtt)
			p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
			ep, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			out0 := p.TCP.Stats().SegmentsOut.Load()
			ep.Write(payload(0, 20*1460))
			for i := range 10 {
				flags := "."
				if (i+1)%tc.train == 0 || i == 9 {
					flags = "P."
				}
				p.Expect(seg{Flags: flags, Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460, Payload: payload(i*1460, 1460)})
			}
			p.ExpectNothing()
			if p.GSOPackets != tc.packets {
				t.Errorf("%d GSO packets, want %d", p.GSOPackets, tc.packets)
			}
			if got := p.TCP.Stats().GSOPackets.Load(); got != uint64(tc.packets) {
				t.Errorf("Stats.GSOPackets %d, want %d", got, tc.packets)
			}
			if got := p.TCP.Stats().SegmentsOut.Load() - out0; got != 10 {
				t.Errorf("SegmentsOut grew by %d, want 10 wire segments", got)
			}
			ep.SyncEvents()
			var sends []event.Event
			for _, ev := range r.of(event.KindSend) {
				if ev.Send == event.SendData {
					sends = append(sends, ev)
				}
			}
			if len(sends) != 10 {
				t.Fatalf("%d data send events, want 10", len(sends))
			}
			for i, ev := range sends {
				wantPSH := (i+1)%tc.train == 0 || i == 9
				if ev.Segment.Len != 1460 || ev.Key.Len != 1460 || ev.Segment.Seq-sends[0].Segment.Seq != uint32(i*1460) ||
					(ev.Key.Flags&event.Flags(0x08) != 0) != wantPSH {
					t.Errorf("send event %d: %v, want wire segment %d (PSH %v)", i, ev.Segment, i, wantPSH)
				}
			}
			// The RTO: one segment again, the first, on its own.
			p.Advance(ep.Info().RTO)
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
			p.ExpectNothing()
			if p.GSOPackets != tc.packets {
				t.Errorf("the retransmission went as a GSO packet")
			}
		})
	}
}

// TestGSOFinAndShortTail: a train that ends the stream goes as one packet
// whose last segment is short and carries the FIN (tcp_gso_segment puts
// FIN and PSH on the last segment only); with timestamps every wire
// segment carries the same TSopt.
func TestGSOFinAndShortTail(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithGSO(), tcptest.WithTimestamps())
	// A closed window holds everything back until the FIN is queued too.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
	ep.Write(payload(0, 2*1448+100))
	ep.Close()
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 65535})
	a := p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1448, TS: true})
	b := p.Expect(seg{Flags: ".", Seq: 1 + 1448, Ack: 1, Len: 1448, TS: true})
	c := p.Expect(seg{Flags: "FP.", Seq: 1 + 2*1448, Ack: 1, Len: 100, TS: true})
	p.ExpectNothing()
	if p.GSOPackets != 1 {
		t.Errorf("%d GSO packets, want 1", p.GSOPackets)
	}
	if a.TSVal != b.TSVal || b.TSVal != c.TSVal {
		t.Errorf("TSvals %d, %d, %d differ within one packet", a.TSVal, b.TSVal, c.TSVal)
	}
}

// TestNoGSOWithoutLink: without the link's offer every segment is its own
// packet (the fixture's default link).
func TestNoGSOWithoutLink(t *testing.T) {
	p, ep := tcptest.Established(t)
	ep.Write(payload(0, 4*1460))
	for i := range 4 {
		p.Expect(seg{Flags: ".", Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	if p.GSOPackets != 0 || p.TCP.Stats().GSOPackets.Load() != 0 {
		t.Errorf("GSO packets on a link that does not segment")
	}
}

// TestGSOLinkChanges: the engine asks the link whether it segments on
// every packet, not once per connection, so that turning a TAP's offloads
// off or on (ethtool -K) mid-connection changes the next packet and
// nothing else: the same wire segments, in packets of one segment while
// the offer is gone.
func TestGSOLinkChanges(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithGSO())
	sendFour := func(from int) {
		t.Helper()
		ep.Write(payload(from*1460, 4*1460))
		for i := from; i < from+4; i++ {
			p.Expect(seg{Flags: ".", Seq: 1 + uint32(i*1460), Ack: 1, Len: 1460, Payload: payload(i*1460, 1460), Check: tcptest.IgnorePSH})
		}
		p.ExpectNothing()
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + uint32((from+4)*1460)})
	}
	sendFour(0)
	if p.GSOPackets == 0 {
		t.Fatal("no GSO packet with the link's offer")
	}
	p.SetGSO(false)
	before := p.GSOPackets
	sendFour(4)
	if p.GSOPackets != before {
		t.Errorf("%d GSO packets after the link withdrew its offer", p.GSOPackets-before)
	}
	p.SetGSO(true)
	sendFour(8)
	if p.GSOPackets == before {
		t.Error("no GSO packet once the link offered segmentation again")
	}
}

// TestGSOLoneSegmentPartialChecksum: on a link that finishes checksums
// (host GSO), a segment with data that leaves alone, in a packet of its
// own, has its checksum left partial too, as Linux leaves every segment's
// (CHECKSUM_PARTIAL): the Peer, as the link, checks that it holds the
// pseudo-header's sum and finishes it. Its gso_size is its own length, so
// the link cuts nothing, not even a path MTU probe longer than the MSS
// (TestMTUProbeWholeOnGSOLink). A pure ACK is summed here: its header is
// all there is to sum. Without the link's offer, every checksum is
// complete.
func TestGSOLoneSegmentPartialChecksum(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithGSO())
	ep.Write(payload(0, 100))
	if s := p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 100, Payload: payload(0, 100)}); !s.Partial {
		t.Error("a lone segment's checksum was summed by the stack")
	}
	if p.GSOPackets != 0 || p.TCP.Stats().GSOPackets.Load() != 0 {
		t.Errorf("%d GSO packets (Stats %d) for one segment", p.GSOPackets, p.TCP.Stats().GSOPackets.Load())
	}
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 101, Len: 10, Payload: payload(0, 10)})
	p.Advance(time.Second) // the delayed ACK
	if s := p.Expect(seg{Flags: ".", Seq: 101, Ack: 11}); s.Partial {
		t.Error("a pure ACK left its checksum partial")
	}
	p.SetGSO(false)
	ep.Write(payload(100, 100))
	if s := p.Expect(seg{Flags: "P.", Seq: 101, Ack: 11, Len: 100, Payload: payload(100, 100)}); s.Partial {
		t.Error("a partial checksum on a link that does not finish it")
	}
}

// TestMTUProbeWholeOnGSOLink: a path MTU probe is longer than the MSS;
// on a link that segments, it leaves whole, one wire segment of the
// probe's size, its checksum partial (TestMTUProbeSuccess without GSO).
func TestMTUProbeWholeOnGSOLink(t *testing.T) {
	_, _, probe, _ := probing(t, tcp.Options{}, tcptest.WithGSO())
	if probe.Len != 1242 || !probe.Partial {
		t.Fatalf("probe of %d bytes, checksum partial %v; want 1242 in one wire segment, partial", probe.Len, probe.Partial)
	}
}
