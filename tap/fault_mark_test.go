package tap_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/tap"
)

// The ECN field's codepoints (RFC 3168 5).
const (
	notECT = 0b00
	ect1   = 0b01
	ect0   = 0b10
	ce     = 0b11
)

// dscpEF is the DSCP of Expedited Forwarding (46) where it sits in the
// TOS byte: a mark must leave it as it is.
const dscpEF = 46 << 2

// ecnFrame is the Ethernet frame of a TCP segment over IPv4, or IPv6, whose
// ECN field is ecn, with DSCP EF (and an IPv6 flow label) beside it, valid
// checksums, and id as every byte of its 100-byte payload.
func ecnFrame(v6 bool, ecn uint8, id byte) []byte {
	src4, dst4 := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	src6, dst6 := tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}), tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
	payload := bytes.Repeat([]byte{id}, 100)
	ipLen, typ, src, dst := header.IPv4MinimumSize, header.IPv4ProtocolNumber, src4, dst4
	if v6 {
		ipLen, typ, src, dst = header.IPv6MinimumSize, header.IPv6ProtocolNumber, src6, dst6
	}
	b := make([]byte, linkLen+ipLen+tcpLen+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x02\x00\x00\x00\x00\x02", Type: typ})
	ip := b[linkLen:]
	if v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{TrafficClass: dscpEF | ecn, FlowLabel: 0x12345, PayloadLength: uint16(tcpLen + len(payload)),
			TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TOS: dscpEF | ecn, TotalLength: uint16(len(ip)), ID: 0x1234, TTL: 64,
			Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	}
	t := header.TCP(b[linkLen+ipLen:])
	t.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 7, SeqNum: 1000, AckNum: 2000, DataOffset: tcpLen, Flags: header.TCPFlagAck, WindowSize: 65535})
	copy(t[tcpLen:], payload)
	t.SetChecksum(^checksum.Checksum(t, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(t)))))
	return b
}

// arpFrame is the Ethernet frame of an ARP request.
func arpFrame() []byte {
	b := make([]byte, linkLen+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	h := header.ARP(b[linkLen:])
	h.SetIPv4OverEthernet()
	h.SetOp(header.ARPRequest)
	copy(h.HardwareAddressSender(), "\x02\x00\x00\x00\x00\x01")
	copy(h.ProtocolAddressSender(), []byte{192, 0, 2, 1})
	copy(h.ProtocolAddressTarget(), []byte{192, 0, 2, 2})
	return b
}

// protoOf is the network protocol of frame, as its EtherType says.
func protoOf(frame []byte) tcpip.NetworkProtocolNumber {
	return header.Ethernet(frame).Type()
}

// outboundOf is frame as a NIC hands it to its link endpoint: link,
// network and transport headers pushed, the protocol set.
func outboundOf(frame []byte) *stack.PacketBuffer {
	proto := protoOf(frame)
	network, transport := header.ARPSize, 0
	switch proto {
	case header.IPv4ProtocolNumber:
		network, transport = header.IPv4MinimumSize, tcpLen
	case header.IPv6ProtocolNumber:
		network, transport = header.IPv6MinimumSize, tcpLen
	}
	hdr := linkLen + network + transport
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: hdr, Payload: buffer.MakeWithData(frame[hdr:])})
	copy(pkt.TransportHeader().Push(transport), frame[linkLen+network:])
	copy(pkt.NetworkHeader().Push(network), frame[linkLen:])
	copy(pkt.LinkHeader().Push(linkLen), frame)
	pkt.NetworkProtocolNumber = proto
	if transport > 0 {
		pkt.TransportProtocolNumber = header.TCPProtocolNumber
	}
	return pkt
}

// inboundOf is frame as the ethernet endpoint under a Fault delivers it:
// its link header parsed, and its checksums vouched for by the link (a
// TAP with offloads), which a mark must not take back.
func inboundOf(frame []byte) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	pkt.LinkHeader().Consume(linkLen)
	pkt.RXChecksumValidated = true
	return pkt
}

// ecnOf returns the ECN field of frame's IP header.
func ecnOf(frame []byte) uint8 {
	if protoOf(frame) == header.IPv6ProtocolNumber {
		tc, _ := header.IPv6(frame[linkLen:]).TOS()
		return tc & 0b11
	}
	tos, _ := header.IPv4(frame[linkLen:]).TOS()
	return tos & 0b11
}

// markedCE is frame as a router that marks it CE sends it on: the ECN
// field CE, and the IPv4 header checksum computed again.
func markedCE(frame []byte) []byte {
	b := bytes.Clone(frame)
	if protoOf(b) == header.IPv6ProtocolNumber {
		h := header.IPv6(b[linkLen:])
		tc, flow := h.TOS()
		h.SetTOS(tc|ce, flow)
		return b
	}
	h := header.IPv4(b[linkLen:])
	tos, _ := h.TOS()
	h.SetTOS(tos|ce, 0)
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
	return b
}

// markDispatcher is the stack above a Fault: it keeps the frames
// delivered and whether their checksums came vouched for.
type markDispatcher struct {
	mu        sync.Mutex
	frames    [][]byte
	validated []bool
}

func (d *markDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.frames = append(d.frames, pkt.ToView().AsSlice())
	d.validated = append(d.validated, pkt.RXChecksumValidated)
}

func (d *markDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// markRig moves frames through a Fault in one direction and keeps what
// comes out and what was reported.
type markRig struct {
	t       *testing.T
	dir     tap.FaultDir
	f       *tap.Fault
	wire    *channel.Endpoint // outbound: the link below
	stackUp *markDispatcher   // inbound: the stack above
	evs     []tap.FaultEvent
}

// newMarkRig makes a Fault with the faults cfg gives, applied to dir's
// frames (as FaultConfig.Inbound for inbound), seeded with seed.
func newMarkRig(t *testing.T, dir tap.FaultDir, cfg tap.FaultConfig, seed uint64) *markRig {
	r := &markRig{t: t, dir: dir, stackUp: &markDispatcher{}}
	if dir == tap.FaultInbound {
		in := cfg
		cfg = tap.FaultConfig{Inbound: &in}
	}
	cfg.Seed = seed
	cfg.Observer = func(ev tap.FaultEvent) {
		ev.Data = bytes.Clone(ev.Data)
		r.evs = append(r.evs, ev)
	}
	r.wire = channel.New(256, 1514, tcpip.LinkAddress(tap.RandomMAC()))
	r.f = tap.NewFault(r.wire, cfg)
	r.f.Attach(r.stackUp)
	t.Cleanup(r.f.Close)
	return r
}

// move passes frame through the Fault, as the stack sends it or as the
// wire delivers it, and fails the test if the packet the caller gave is
// changed.
func (r *markRig) move(frame []byte) {
	r.t.Helper()
	r.moveGSO(frame, stack.GSO{})
}

// moveGSO is move for a super-frame with the given GSO options: as the
// stack's GSO sends it, or as a link with GRO delivers it.
func (r *markRig) moveGSO(frame []byte, gso stack.GSO) {
	r.t.Helper()
	var pkt *stack.PacketBuffer
	if r.dir == tap.FaultOutbound {
		pkt = outboundOf(frame)
		pkt.GSOOptions = gso
		var l stack.PacketBufferList
		l.PushBack(pkt)
		if _, err := r.f.WritePackets(l); err != nil {
			r.t.Fatalf("WritePackets: %v", err)
		}
	} else {
		pkt = inboundOf(frame)
		pkt.GSOOptions = gso
		r.f.DeliverNetworkPacket(protoOf(frame), pkt)
	}
	if got := pkt.ToView().AsSlice(); !bytes.Equal(got, frame) {
		r.t.Errorf("the sender's packet was changed:\n got %x\nwant %x", got, frame)
	}
	pkt.DecRef()
}

// out returns the frames that came out of the Fault, in order.
func (r *markRig) out() [][]byte {
	if r.dir == tap.FaultInbound {
		r.stackUp.mu.Lock()
		defer r.stackUp.mu.Unlock()
		return r.stackUp.frames
	}
	var out [][]byte
	for pkt := r.wire.Read(); pkt != nil; pkt = r.wire.Read() {
		out = append(out, pkt.ToView().AsSlice())
		pkt.DecRef()
	}
	return out
}

// wantReports checks that the rig reported one fault of kind for each
// frame in ids (the frames' last bytes), in order, numbered #1, #2, ...,
// on that frame's ordinal, seeded with seed and saying text(n) for the
// nth.
func (r *markRig) wantReports(kind tap.FaultKind, ids []byte, seed uint64, text func(n int) string) {
	r.t.Helper()
	if len(r.evs) != len(ids) {
		r.t.Fatalf("%d reports for %d frames", len(r.evs), len(ids))
	}
	for n, ev := range r.evs {
		id, want := ids[n], text(n+1)
		if ev.Kind != kind || ev.Dir != r.dir || ev.N != uint64(n+1) || ev.Frame != uint64(id)+1 ||
			!ev.Seeded || ev.Seed != seed || ev.String() != want || ev.Data[len(ev.Data)-1] != id {
			r.t.Errorf("report %d: %v %v #%d frame %d %q; want frame %d, %q", n, ev.Dir, ev.Kind, ev.N, ev.Frame, ev.String(), id+1, want)
		}
	}
}

func (r *markRig) stats() tap.FaultStats {
	if r.dir == tap.FaultInbound {
		return r.f.InboundStats()
	}
	return r.f.Stats()
}

// TestFaultMark: with Mark 1, an ECN-capable packet (ECT(0), ECT(1); IPv4
// or IPv6) goes on marked CE, its DSCP and flow label kept and its IPv4
// header checksum valid; the IPv4 header checksum is updated as Linux's
// INET_ECN_set_ce does, so one that was wrong stays wrong. A packet that is
// not ECN-capable (not-ECT, CE already) and an ARP frame go on byte for
// byte. The packet the sender gave is never changed, an inbound copy keeps
// its checksums vouched for, and the mark is counted and reported on the
// frame as a capture above sees it (outbound: as sent; inbound: as
// delivered).
func TestFaultMark(t *testing.T) {
	badSum := ecnFrame(false, ect0, 6)
	header.IPv4(badSum[linkLen:]).SetChecksum(0xbad)
	for _, tc := range []struct {
		name   string
		frame  []byte
		marked bool
	}{
		{"IPv4 ECT(0)", ecnFrame(false, ect0, 1), true},
		{"IPv4 ECT(1)", ecnFrame(false, ect1, 2), true},
		{"IPv4 not-ECT", ecnFrame(false, notECT, 3), false},
		{"IPv4 CE", ecnFrame(false, ce, 4), false},
		{"IPv4 ECT(0), header checksum wrong", badSum, true},
		{"IPv6 ECT(0)", ecnFrame(true, ect0, 7), true},
		{"IPv6 ECT(1)", ecnFrame(true, ect1, 8), true},
		{"IPv6 not-ECT", ecnFrame(true, notECT, 9), false},
		{"IPv6 CE", ecnFrame(true, ce, 10), false},
		{"ARP", arpFrame(), false},
	} {
		for _, dir := range []tap.FaultDir{tap.FaultOutbound, tap.FaultInbound} {
			t.Run(tc.name+", "+dir.String(), func(t *testing.T) {
				r := newMarkRig(t, dir, tap.FaultConfig{Mark: 1}, 1)
				r.move(tc.frame)
				out := r.out()
				if len(out) != 1 {
					t.Fatalf("%d frames came out, want 1", len(out))
				}
				got := out[0]
				wantStats := tap.FaultStats{Frames: 1}
				if !tc.marked {
					if !bytes.Equal(got, tc.frame) {
						t.Errorf("changed:\n got %x\nwant %x", got, tc.frame)
					}
					if len(r.evs) != 0 {
						t.Errorf("reported %v", r.evs)
					}
				} else {
					wantStats.Marked = 1
					want := markedCE(tc.frame)
					valid := true
					if protoOf(got) == header.IPv4ProtocolNumber {
						valid = header.IPv4(got[linkLen:]).IsChecksumValid()
						if bytes.Equal(tc.frame, badSum) {
							// All but the checksum as a router that
							// recomputed it would send it; that stays wrong.
							copy(want[linkLen+10:linkLen+12], got[linkLen+10:linkLen+12])
							valid = !valid
						}
					}
					if !bytes.Equal(got, want) || ecnOf(got) != ce || !valid {
						t.Errorf("marked frame (ECN %02b, IPv4 header checksum as it should be: %v):\n got %x\nwant %x", ecnOf(got), valid, got, want)
					}
					if len(r.evs) != 1 {
						t.Fatalf("%d reports, want 1: %v", len(r.evs), r.evs)
					}
					ev, seen := r.evs[0], tc.frame // a capture above holds the frame as sent
					if dir == tap.FaultInbound {
						seen = got // and as the stack gets it
					}
					if ev.Kind != tap.FaultMark || ev.Dir != dir || ev.N != 1 || ev.Frame != 1 || ev.Prob != 1 ||
						ev.String() != "marked CE (mark 100%, seed 1, #1)" || !bytes.Equal(ev.Data, seen) {
						t.Errorf("report %v %v #%d frame %d prob %v %q, data %x; want the mark of frame 1 on %x", ev.Dir, ev.Kind, ev.N, ev.Frame, ev.Prob, ev.String(), ev.Data, seen)
					}
				}
				if st := r.stats(); st != wantStats {
					t.Errorf("stats %+v, want %+v", st, wantStats)
				}
				if dir == tap.FaultInbound && !r.stackUp.validated[0] {
					t.Error("the stack got the frame without the link's word for its checksums")
				}
			})
		}
	}
}

// TestFaultMarkSeeded: at Mark 0.5 with seed 7, a trace of 60 frames, a
// third of them not ECN-capable: some ECN-capable frames are marked and
// some not, no other frame is touched, and every marked frame is counted
// and reported, in order, with its frame's ordinal, as a packet comment
// says it: "marked CE (mark 50%, seed 7, #<n>)".
func TestFaultMarkSeeded(t *testing.T) {
	for _, dir := range []tap.FaultDir{tap.FaultOutbound, tap.FaultInbound} {
		t.Run(dir.String(), func(t *testing.T) {
			r := newMarkRig(t, dir, tap.FaultConfig{Mark: 0.5}, 7)
			sent := map[byte][]byte{}
			capable := 0
			for i := range 60 {
				ecn := []uint8{ect0, ect1, notECT}[i%3]
				if ecn != notECT {
					capable++
				}
				fr := ecnFrame(i%2 == 1, ecn, byte(i))
				sent[byte(i)] = fr
				r.move(fr)
			}
			out := r.out()
			if len(out) != 60 {
				t.Fatalf("%d frames came out, want 60", len(out))
			}
			var marked []byte // ids, in order
			for _, got := range out {
				id := got[len(got)-1]
				fr := sent[id]
				switch {
				case bytes.Equal(got, fr):
				case ecnOf(fr) != notECT && bytes.Equal(got, markedCE(fr)):
					marked = append(marked, id)
				default:
					t.Errorf("frame %d (ECN %02b) came out as %x", id, ecnOf(fr), got)
				}
			}
			if len(marked) == 0 || len(marked) == capable {
				t.Errorf("%d of %d ECN-capable frames marked, want some but not all at 50%%", len(marked), capable)
			}
			if st := r.stats(); st != (tap.FaultStats{Frames: 60, Marked: uint64(len(marked))}) {
				t.Errorf("stats %+v, want 60 frames, %d marked", st, len(marked))
			}
			r.wantReports(tap.FaultMark, marked, 7, func(n int) string { return fmt.Sprintf("marked CE (mark 50%%, seed 7, #%d)", n) })
		})
	}
}

// TestFaultMarkDrawsAlike: while Mark is positive every frame takes its
// draw, ECN-capable or not, so one seed loses and duplicates the same
// frames of a sender with ECN and of one without.
func TestFaultMarkDrawsAlike(t *testing.T) {
	run := func(ecn uint8) ([]byte, tap.FaultStats) {
		r := newMarkRig(t, tap.FaultOutbound, tap.FaultConfig{Loss: 0.2, Mark: 0.5, Duplicate: 0.3}, 7)
		for i := range 40 {
			r.move(ecnFrame(false, ecn, byte(i)))
		}
		return ids(r.out()), r.stats()
	}
	withECN, st := run(ect0)
	without, st2 := run(notECT)
	if !bytes.Equal(withECN, without) {
		t.Errorf("the frames that came out differ:\nECN    %v\nno ECN %v", withECN, without)
	}
	if st.Marked == 0 || st2.Marked != 0 || st.Lost == 0 || st.Duplicated == 0 || st.Lost != st2.Lost || st.Duplicated != st2.Duplicated {
		t.Errorf("stats with ECN %+v, without %+v", st, st2)
	}
}

// TestFaultMarkAndCorrupt: a frame marked upstream and corrupted on the
// wire after it carries both: CE with a valid IPv4 header, and one byte
// changed after the header. Both reports carry the frame as a capture above
// sees it.
func TestFaultMarkAndCorrupt(t *testing.T) {
	for _, dir := range []tap.FaultDir{tap.FaultOutbound, tap.FaultInbound} {
		t.Run(dir.String(), func(t *testing.T) {
			r := newMarkRig(t, dir, tap.FaultConfig{Mark: 1, Corrupt: 1}, 1)
			fr := ecnFrame(false, ect0, 5)
			r.move(fr)
			out := r.out()
			if len(out) != 1 {
				t.Fatalf("%d frames came out, want 1", len(out))
			}
			got, want := out[0], markedCE(fr)
			hdr := linkLen + header.IPv4MinimumSize
			diff := 0
			for i := hdr; i < len(got); i++ {
				if got[i] != want[i] {
					diff++
				}
			}
			if !bytes.Equal(got[:hdr], want[:hdr]) || diff != 1 {
				t.Errorf("got %x, want CE and one byte after the IP header changed of %x", got, want)
			}
			if st := r.stats(); st != (tap.FaultStats{Frames: 1, Marked: 1, Corrupted: 1}) {
				t.Errorf("stats %+v", st)
			}
			seen := fr
			if dir == tap.FaultInbound {
				seen = got
			}
			if len(r.evs) != 2 || r.evs[0].Kind != tap.FaultMark || r.evs[1].Kind != tap.FaultCorrupt ||
				!bytes.Equal(r.evs[0].Data, seen) || !bytes.Equal(r.evs[1].Data, seen) {
				t.Errorf("reports %v, want marked then corrupted, on %x", r.evs, seen)
			}
			if dir == tap.FaultInbound && r.stackUp.validated[0] {
				t.Error("a corrupted frame reached the stack vouched for")
			}
		})
	}
}
