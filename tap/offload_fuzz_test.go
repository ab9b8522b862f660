//go:build linux

package tap

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzDeliverVnet: whatever the device's reader hands over, a
// virtio-net header and a frame from whatever wrote to the device's
// other side, the read path neither panics nor loses a frame uncounted:
// a frame read is delivered, whole or as its wire segments, or counted
// as dropped, never both and never neither. Wire segments carry the
// super-frame's payload in order, not one byte more or less, each at
// most gso_size, and with full checksums asked for (a middleware above
// corrupts frames) each verifies. The options byte picks GRO, full
// checksums, and a read in one piece or two.
func FuzzDeliverVnet(f *testing.F) {
	s := seg{seq: 100, ack: 7, flags: header.TCPFlagAck | header.TCPFlagPsh, window: 9, tsval: 3, payload: pattern(5*1448 + 17)}
	h, super := kernelSuperFrame(s, 1448)
	h6, super6 := kernelSuperFrame(seg{v6: true, seq: 1, flags: header.TCPFlagAck, payload: pattern(3 * 1428)}, 1428)
	plain := tcpFrame(seg{seq: 1, flags: header.TCPFlagAck, payload: pattern(100)})
	ack := tcpFrame(seg{seq: 1, ack: 9, flags: header.TCPFlagAck})
	for _, b := range [][]byte{
		withVnet(h, super),
		withVnet(h6, super6),
		withVnet(vnetHdr{}, plain),
		withVnet(vnetHdr{flags: vnetFlagDataValid, gsoType: vnetGSOTCPv4, gsoSize: 1448}, ack),
		withVnet(vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1, csumStart: 34, csumOffset: 16}, super),
		plain[:5],
	} {
		for opts := range uint8(8) {
			f.Add(b, opts)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, opts uint8) {
		var d recvDispatcher
		l := newTestLink(&d, Offloads{GRO: opts&1 != 0})
		full := opts&2 != 0
		if full {
			l.requireFullChecksums()
		}
		read := rxSlice
		if opts&4 != 0 {
			read = rxSplit
		}
		l.deliverVnet(read(bytes.Clone(b)))
		delivered, dropped := len(d.frames), l.rxDropped.Load()
		if (delivered > 0) == (dropped > 0) {
			t.Fatalf("%d frames delivered and %d counted dropped: want one or the other", delivered, dropped)
		}
		if uint64(delivered) != l.rxFrames.Load() {
			t.Fatalf("%d frames delivered, %d counted", delivered, l.rxFrames.Load())
		}
		if delivered < 2 {
			return
		}
		if vh, _ := decodeVnetHdr(b); vh.flags&(vnetFlagNeedsCsum|vnetFlagDataValid) == 0 && !ipFrameValid(b[vnetHdrLen:]) {
			// Cut, the segments' checksums are computed afresh (with
			// full) or left partial: bytes nobody vouched for must
			// have been checked whole first.
			t.Fatalf("%d segments cut from a super-frame the kernel did not vouch for, whose checksum fails", delivered)
		}
		// Cut into wire segments: the header said so, and the frame
		// is a TCP segment.
		vh, _ := decodeVnetHdr(b)
		orig, err := parseTCPFrame(b[vnetHdrLen:])
		if err != nil {
			t.Fatalf("%d segments cut from a frame that is no TCP segment: %v", delivered, err)
		}
		var payload []byte
		for i, fr := range d.frames {
			lay, err := parseTCPFrame(fr)
			if err != nil {
				t.Fatalf("segment %d: %v", i, err)
			}
			if lay.payload() > int(vh.gsoSize) || lay.payload() == 0 {
				t.Fatalf("segment %d: %d bytes of payload at gso_size %d", i, lay.payload(), vh.gsoSize)
			}
			if full && !ipFrameValid(fr) {
				t.Fatalf("segment %d: a checksum does not verify, with full checksums asked for", i)
			}
			payload = append(payload, fr[lay.data:lay.end]...)
		}
		if !bytes.Equal(payload, b[vnetHdrLen+orig.data:vnetHdrLen+orig.end]) {
			t.Fatalf("the segments carry %d bytes that are not the super-frame's %d", len(payload), orig.payload())
		}
	})
}
