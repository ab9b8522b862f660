//go:build linux

package tap

import (
	"bytes"
	"math/bits"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// GRO without offloads. A device opened without offloads reads one wire
// segment per read, and each went through the stack alone: the kernel
// sending to tapstack spent half of tapstack's CPU in gVisor's IP layer
// and buffers, once per 1,448 bytes. Linux joins such segments in
// software whatever the NIC (GRO, net/core/gro.c and tcp_gro_receive, run
// from the driver's NAPI poll), and so does the read loop: while it reads
// without waiting, consecutive segments of one flow that the kernel had
// queued become one super-frame, handed to the stack whole when a
// segment does not follow, the flow's run ends, or no frame is ready.
//
// A segment joins the run before it only where cutting the joined frame
// at its MSS (as a capture does, tap.WireSegments) gives back the wire
// segments byte for byte, checksums aside, as Linux's rules make sure of
// for its own GRO: the same Ethernet header; the same IP header but for
// the length, the checksum and an identification one more than the last
// (IPv4 without options; IPv6 without extension headers); the same TCP
// header but for the sequence number, which must follow on, the checksum
// and the flags, which may add PSH or FIN on the last segment and CWR
// only on the first; data in every segment, the MSS of the first in all
// but the last, which may be shorter and ends the run, as PSH and FIN do.
// SYN, RST and URG segments, fragments, padded frames, anything not TCP
// and any segment whose checksum fails go alone, after the run. The
// segments' checksums are checked before they join (a corrupted one must
// cost itself, not the run), and the super-frame's is made from theirs.
//
// gVisor's GRO (package gro) joins on fewer rules (not the window, not the
// IP identification), so its super-frames could not be cut back into the
// segments that crossed the wire; and a capture would not know them for
// super-frames (no GSO options).
//
// A fault middleware with inbound faults above the device (tap.Fault)
// stands for the wire between the kernel and this NIC, so its faults
// must see wire segments: it turns the joining off (requireWireFrames).

// groRun is the run of one flow's wire segments a read loop holds, to
// hand to the stack joined. The payloads are copied one after another
// into one 64 KiB view as they are read (the copy every frame read
// without offloads had anyway), so a run costs one packet, not one per
// segment.
type groRun struct {
	d    stack.NetworkDispatcher
	s    superFrame         // the run as the super-frame it will be: the first segment's layout, its payload size as the MSS, the segments so far (n)
	hdr  [groHeaderMax]byte // the first segment's headers, with the PSH and FIN of the last
	pay  *buffer.View       // the payloads; kept, empty, after a short run
	sum  uint16             // their one's complement sum
	size int                // their length
}

// groHeaderMax is the longest headers a joined segment may have:
// Ethernet, IPv6, TCP with 40 bytes of options.
const groHeaderMax = header.EthernetMinimumSize + header.IPv6MinimumSize + header.TCPHeaderMaximumSize

// groOn reports whether the read loop joins segments: on a device
// without offloads with GRO asked for, and no middleware above that
// needs wire segments.
func (l *fdLink) groOn() bool {
	return l.softGRO && !l.wireFrames.Load() && !l.fullCsum.Load()
}

// JoinsSegments reports whether a device under link joins the wire
// segments it reads into super-frames (GRO without offloads): a super-
// frame it hands up stands for segments that crossed the wire one by
// one, not for one the kernel handed over whole (TSO). A capture names
// the offload by it.
func JoinsSegments(link stack.LinkEndpoint) bool {
	joins := false
	walkBelow(link, func(l stack.LinkEndpoint) bool {
		d, ok := l.(*fdLink)
		if ok {
			joins = d.softGRO
		}
		return ok
	})
	return joins
}

// requireWireFrames makes the device hand the stack every frame as it
// was read, joining none (see requireWireFrames in fault.go).
func (l *fdLink) requireWireFrames() { l.wireFrames.Store(true) }

// held reports whether a run waits to be handed on.
func (g *groRun) held() bool { return g.s.n > 0 }

// release lets go of the view kept for the next run; the read loop calls
// it as it ends, with no run held.
func (g *groRun) release() {
	if g.pay != nil {
		g.pay.Release()
		g.pay = nil
	}
}

// groTake offers frame, a wire segment just read, to the run: it reports
// whether the segment joined it (or began one), in which case the
// reader's work for it is done. Otherwise the run has been handed on and
// the frame is for the caller to deliver alone.
func (r *rxReader) groTake(d stack.NetworkDispatcher, frame []byte) bool {
	g := &r.gro
	l, err := parseTCPFrame(frame)
	if err != nil || l.end != len(frame) || !l.v6 && l.tcp-l.ip != header.IPv4MinimumSize || l.data > groHeaderMax {
		r.groFlush()
		return false
	}
	h := header.TCP(frame[l.tcp:l.data])
	flags := h.Flags()
	size := l.payload()
	if size == 0 || flags&header.TCPFlagAck == 0 || flags&(header.TCPFlagSyn|header.TCPFlagRst|header.TCPFlagUrg) != 0 {
		r.groFlush()
		return false
	}
	end := flags&(header.TCPFlagPsh|header.TCPFlagFin) != 0
	if !g.held() || !g.follows(d, frame, l, flags, size) {
		r.groFlush()
		// A segment that would be a run of one goes alone, its
		// checksums left to the stack: one that ends a run, or one
		// too large for a second to join (a jumbo frame).
		if end || 2*size > g.roomFor(l) {
			return false
		}
	}
	if !l.v6 && !header.IPv4(frame[l.ip:l.tcp]).IsChecksumValid() {
		r.groFlush()
		return false
	}
	sum := checksum.Checksum(frame[l.data:l.end], 0)
	src, dst := l.addrs(frame)
	if checksum.Combine(checksum.Checksum(frame[l.tcp:l.data], pseudoSum(src, dst, l.end-l.tcp)), sum) != 0xffff {
		r.groFlush()
		return false
	}
	r.l.rxFrames.Add(1)
	r.l.rxBytes.Add(uint64(len(frame)))
	if !g.held() {
		g.d = d
		copy(g.hdr[:], frame[:l.data])
		g.s = superFrame{tcpLayout: l, mss: size}
		if g.pay == nil {
			g.pay = buffer.NewView(min(g.roomFor(l), buffer.MaxChunkSize))
		}
		g.sum, g.size = 0, 0
	}
	if g.size%2 == 1 {
		// A sum of bytes that start at an odd offset of the whole
		// is that of their bytes swapped (RFC 1071 2(B)).
		sum = bits.ReverseBytes16(sum)
	}
	g.sum = checksum.Combine(g.sum, sum)
	_, _ = g.pay.Write(frame[l.data:l.end])
	g.s.n++
	g.size += size
	if end {
		// The last segment's PSH and FIN go on the joined frame.
		t := header.TCP(g.hdr[l.tcp:])
		t.SetFlags(uint8(t.Flags() | flags&(header.TCPFlagPsh|header.TCPFlagFin)))
	}
	if end || size < g.s.mss || g.room() < g.s.mss {
		r.groFlush()
	}
	return true
}

// room is how many more payload bytes the run's super-frame can carry:
// its IP length is 16 bits.
func (g *groRun) room() int {
	if g.s.n >= maxSegments {
		return 0
	}
	return g.roomFor(g.s.tcpLayout) - g.size
}

// roomFor is the most payload one segment with the headers of l can
// carry: 64 KiB less the headers its IP length counts.
func (g *groRun) roomFor(l tcpLayout) int {
	if l.v6 {
		return 0xffff - (l.data - l.tcp)
	}
	return 0xffff - (l.data - l.ip)
}

// follows reports whether the segment in frame, laid out as l, joins the
// run as its next segment.
func (g *groRun) follows(d stack.NetworkDispatcher, frame []byte, l tcpLayout, flags header.TCPFlags, size int) bool {
	s := &g.s
	hdr := g.hdr[:s.data]
	if d != g.d || l.v6 != s.v6 || l.tcp != s.tcp || l.data != s.data || size > s.mss || size > g.room() {
		return false
	}
	if !bytes.Equal(frame[:l.ip], hdr[:l.ip]) {
		return false
	}
	ip, gip := frame[l.ip:l.tcp], hdr[l.ip:l.tcp]
	if l.v6 {
		// Version, traffic class, flow label; next header, hop limit,
		// addresses.
		if !bytes.Equal(ip[:4], gip[:4]) || !bytes.Equal(ip[6:], gip[6:]) {
			return false
		}
	} else {
		// Version, header length, TOS; flags, fragment offset, TTL,
		// protocol; addresses. The identification follows on.
		if !bytes.Equal(ip[:2], gip[:2]) || !bytes.Equal(ip[6:10], gip[6:10]) || !bytes.Equal(ip[12:], gip[12:]) ||
			header.IPv4(ip).ID() != header.IPv4(gip).ID()+uint16(s.n) {
			return false
		}
	}
	t, gt := frame[l.tcp:l.data], hdr[l.tcp:l.data]
	// Ports; acknowledgment, data offset; window, urgent pointer, options.
	if !bytes.Equal(t[:4], gt[:4]) || !bytes.Equal(t[8:13], gt[8:13]) || !bytes.Equal(t[14:16], gt[14:16]) || !bytes.Equal(t[18:], gt[18:]) {
		return false
	}
	if header.TCP(t).SequenceNumber() != header.TCP(gt).SequenceNumber()+uint32(g.size) {
		return false
	}
	// The flags of the first, but CWR, which only the first may carry,
	// and PSH or FIN, which end the run.
	same := header.TCPFlagPsh | header.TCPFlagFin
	return flags&^same == header.TCP(gt).Flags()&^(same|header.TCPFlagCwr)
}

// groFlush hands the run on: its headers, made as the first segment's
// with the length of all (runHeaders), and its payloads, with a checksum
// made from theirs; two or more segments as a super-frame of their MSS,
// one as itself.
func (r *rxReader) groFlush() {
	g := &r.gro
	if !g.held() {
		return
	}
	s := &g.s
	var payload buffer.Buffer
	if g.size < rxShareMin {
		// A short run is copied out, and the view kept for the next:
		// a segment or two held in a receive queue must not pin 64
		// KiB (as rx.go copies short frames out of its chunks).
		_ = payload.Append(buffer.NewViewWithData(g.pay.AsSlice()))
		g.pay.Reset()
	} else {
		_ = payload.Append(g.pay)
		g.pay = nil
	}
	pkt := s.packet(g.hdr[:s.data], 0, s.n-1, g.size, g.sum, payload)
	if s.n > 1 {
		r.l.rxJoins.Add(1)
		r.l.rxJoined.Add(uint64(s.n))
	}
	d := g.d
	g.d, g.s.n = nil, 0
	r.handOver(d, pkt, wireSegment{})
}
