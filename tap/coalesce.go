package tap

import (
	"bytes"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Coalescing on the way out: tapstack's engine builds one packet per
// segment, and a TAP write costs a system call per frame. When several
// consecutive frames queued for the device are segments of one flow that a
// segmenting NIC could have cut from one super-frame, the writer sends them
// as that super-frame, with a GSO virtio-net header, in one write: the
// kernel takes it as it takes a super-frame from a virtio NIC (a GRO
// packet for its own TCP; cut again at gso_size if it forwards it). The
// rules are those of Linux's tcp_gro_receive, which decides the same
// question on the receiving side: same headers but for lengths, IPv4 IDs
// (which follow on: idFollows) and checksums, consecutive sequence numbers, the same ACK, window and
// options (timestamps included), only ACK set (PSH may end the run), every
// segment but the last exactly as long as the first.

// maxHeaders is the most header bytes a frame the coalescer looks at may
// have: Ethernet, IPv4 with options (or IPv6) and TCP with options.
const maxHeaders = header.EthernetMinimumSize + 60 + 60

// maxSuperFrame bounds a super-frame's IP packet: the IPv4 total length
// field, and for IPv6 the payload length field, are 16 bits.
const maxSuperFrame = 0xffff

// txFrame is a frame queued for the device, as the coalescer sees it.
type txFrame struct {
	pkt  *stack.PacketBuffer
	size int // frame bytes
	l    tcpLayout
	tcp  bool // a TCP segment with payload and a complete checksum: it may join a super-frame
	hdr  [maxHeaders]byte
}

// load reads pkt's frame headers.
func (f *txFrame) load(pkt *stack.PacketBuffer) {
	f.pkt = pkt
	f.size = pkt.Size()
	f.tcp = false
	n := copyFramePrefix(f.hdr[:], pkt)
	if pkt.GSOOptions.Type != stack.GSONone || pkt.GSOOptions.NeedsCsum {
		// A super-frame or a partial checksum from a stack that uses
		// the link's GSO: written as it is, with its own header.
		f.l, _ = parseTCPPrefix(f.hdr[:n], f.size)
		return
	}
	l, err := parseTCPPrefix(f.hdr[:n], f.size)
	if err != nil || l.end != f.size || l.payload() == 0 {
		// Not TCP, Ethernet padding, or no payload (a pure ACK is
		// never coalesced: each says something of its own).
		return
	}
	f.l = l
	f.tcp = true
}

// copyFramePrefix copies the first bytes of pkt's frame into dst and
// returns how many.
func copyFramePrefix(dst []byte, pkt *stack.PacketBuffer) int {
	vl, off := pkt.AsViewList()
	n := 0
	pos := -off // where the current view starts, relative to the frame
	for v := vl.Front(); v != nil && n < len(dst); v = v.Next() {
		b := v.AsSlice()
		start := pos
		pos += len(b)
		if pos <= 0 {
			continue
		}
		if start < 0 {
			b = b[-start:]
		}
		n += copy(dst[n:], b)
	}
	return n
}

// appendFrameSlices appends to dst the slices of pkt's frame bytes
// [from, to), without copying them.
func appendFrameSlices(dst [][]byte, pkt *stack.PacketBuffer, from, to int) [][]byte {
	vl, off := pkt.AsViewList()
	pos := -off
	for v := vl.Front(); v != nil && pos < to; v = v.Next() {
		b := v.AsSlice()
		start := pos
		pos += len(b)
		if pos <= from {
			continue
		}
		lo, hi := max(from-start, 0), min(to-start, len(b))
		if lo < hi {
			dst = append(dst, b[lo:hi])
		}
	}
	return dst
}

// txRun is frames[first:first+n] of a batch, to be written as one frame:
// a super-frame when n > 1.
type txRun struct {
	first, n int
	payload  int  // bytes of TCP payload in the run
	mss      int  // the first segment's payload: every segment's but the last's
	last     int  // the last segment's payload
	fixedID  bool // IPv4 with DF set: every segment has the first's identification
}

// joins reports whether f can follow run r, whose first frame is h, in one
// super-frame.
func (r *txRun) joins(h, f *txFrame) bool {
	if !h.tcp || !f.tcp || r.last != r.mss || f.l.payload() > r.mss {
		// A short segment ends a run: the kernel cuts every piece
		// but the last at exactly gso_size.
		return false
	}
	if h.l.ip != f.l.ip || h.l.tcp != f.l.tcp || h.l.data != f.l.data || h.l.v6 != f.l.v6 {
		return false // header lengths differ
	}
	if f.l.data-f.l.ip+r.payload+f.l.payload() > maxSuperFrame {
		return false
	}
	a, b := h.hdr[:h.l.data], f.hdr[:f.l.data]
	// Ethernet header.
	if !bytes.Equal(a[:h.l.ip], b[:h.l.ip]) {
		return false
	}
	// IP header: all but the lengths, the IPv4 identification and the
	// IPv4 header checksum.
	ip, fip := a[h.l.ip:h.l.tcp], b[h.l.ip:h.l.tcp]
	if h.l.v6 {
		if !bytes.Equal(ip[:4], fip[:4]) || !bytes.Equal(ip[6:], fip[6:]) {
			return false
		}
	} else if !bytes.Equal(ip[:2], fip[:2]) || !bytes.Equal(ip[6:10], fip[6:10]) || !bytes.Equal(ip[12:], fip[12:]) ||
		!r.idFollows(header.IPv4(ip), header.IPv4(fip)) {
		return false
	}
	// TCP header: ports, ACK, data offset, window, urgent pointer and
	// options equal; the sequence number follows the run; flags ACK,
	// with PSH allowed on the last segment only.
	t, ft := header.TCP(a[h.l.tcp:]), header.TCP(b[h.l.tcp:])
	if !bytes.Equal(t[:4], ft[:4]) || !bytes.Equal(t[8:13], ft[8:13]) || !bytes.Equal(t[14:16], ft[14:16]) ||
		!bytes.Equal(t[18:h.l.data-h.l.tcp], ft[18:f.l.data-f.l.tcp]) {
		return false
	}
	if ft.SequenceNumber() != t.SequenceNumber()+uint32(r.payload) {
		return false
	}
	if t.Flags() != header.TCPFlagAck || ft.Flags()&^header.TCPFlagPsh != header.TCPFlagAck {
		return false
	}
	return true
}

// idFollows reports whether IPv4 segment f may follow run r, whose first
// segment is h, by its identification, as Linux's inet_gro_receive
// decides it (inet_gro_flush): with DF clear, f's must be the previous
// segment's plus one, and so it is on the wire, where the kernel cutting
// the super-frame gives segment i the first's plus i (inet_gso_segment);
// a fragmentable datagram's ID is its own (RFC 6864 4.3), and joining
// IDs 10 and 50 sent 10 and 11. With DF set (an atomic datagram, whose ID
// means nothing: RFC 6864 4.1) the IDs may also stay fixed, as tapstack's
// TCP sends them through gVisor's IPv4 (all 0); the second segment says
// which, and the rest of the run keeps to it.
func (r *txRun) idFollows(h, f header.IPv4) bool {
	next := h.ID() + uint16(r.n)
	switch {
	case h.Flags()&header.IPv4FlagDontFragment == 0:
		return f.ID() == next
	case r.n == 1:
		return f.ID() == next || f.ID() == h.ID()
	case r.fixedID:
		return f.ID() == h.ID()
	}
	return f.ID() == next
}

// planRuns cuts frames into runs, each written as one frame, in order.
// A run ends at the first frame that cannot join it, or after the one
// that carries PSH.
func planRuns(runs []txRun, frames []txFrame) []txRun {
	for i := 0; i < len(frames); {
		h := &frames[i]
		r := txRun{first: i, n: 1, payload: h.l.payload(), mss: h.l.payload(), last: h.l.payload()}
		for j := i + 1; j < len(frames); j++ {
			if prev := &frames[j-1]; prev.tcp && header.TCP(prev.hdr[prev.l.tcp:]).Flags()&header.TCPFlagPsh != 0 {
				break
			}
			f := &frames[j]
			if !r.joins(h, f) {
				break
			}
			if r.n == 1 && !h.l.v6 {
				// Only DF set lets a second segment keep the first's
				// ID (idFollows).
				r.fixedID = header.IPv4(f.hdr[f.l.ip:f.l.tcp]).ID() == header.IPv4(h.hdr[h.l.ip:h.l.tcp]).ID()
			}
			r.n++
			r.payload += f.l.payload()
			r.last = f.l.payload()
		}
		runs = append(runs, r)
		i += r.n
	}
	return runs
}

// superHeader writes into dst the virtio-net header and the Ethernet, IP
// and TCP headers of the super-frame that stands for run r of frames, and
// returns them. The headers are the first segment's with the lengths of
// the whole, the IPv4 header checksum redone, PSH if the last segment
// had it, and a complete TCP checksum derived from the segments' own
// checksums without reading a byte of payload: each segment's payload sum
// is what its checksum says it is (payloadSum). A segment whose payload
// no longer matches its checksum (corrupted on its way here) therefore
// makes the super-frame's checksum wrong, and the kernel drops the
// super-frame as it would have dropped the segment.
func superHeader(dst []byte, frames []txFrame, r txRun) []byte {
	h := &frames[r.first]
	l := h.l
	out := dst[:vnetHdrLen+l.data]
	vh := gsoHeader(l, r.mss)
	vh.encode(out)
	hdr := out[vnetHdrLen:]
	copy(hdr, h.hdr[:l.data])
	tcpLen := l.data - l.tcp + r.payload
	if l.v6 {
		header.IPv6(hdr[l.ip:]).SetPayloadLength(uint16(tcpLen))
	} else {
		ip := header.IPv4(hdr[l.ip:l.tcp])
		ip.SetTotalLength(uint16(l.tcp - l.ip + tcpLen))
		ipv4HeaderChecksum(ip)
	}
	t := header.TCP(hdr[l.tcp:l.data])
	last := &frames[r.first+r.n-1]
	t.SetFlags(uint8(t.Flags() | header.TCP(last.hdr[last.l.tcp:]).Flags()&header.TCPFlagPsh))
	src, d := l.addrs(hdr)
	x := checksum.Combine(pseudoSum(src, d, tcpLen), tcpHeaderSum(t))
	off := 0
	for i := r.first; i < r.first+r.n; i++ {
		f := &frames[i]
		fs, fd := f.l.addrs(f.hdr[:])
		ps := payloadSum(fs, fd, f.hdr[f.l.tcp:f.l.data], f.l.payload())
		x = checksum.Combine(x, shiftSum(ps, off))
		off += f.l.payload()
	}
	t.SetChecksum(^x)
	return out
}

// frameHeader is the virtio-net header of frame f written on its own: a
// super-frame or partial checksum from a stack that uses the link's GSO
// (gVisor's TCP) keeps what its packet asked for; anything else goes with
// an empty header, its checksums complete.
func frameHeader(f *txFrame) vnetHdr {
	g := f.pkt.GSOOptions
	if g.Type == stack.GSONone && !g.NeedsCsum {
		return vnetHdr{}
	}
	if f.l.data == 0 {
		// Not a TCP segment we can read; the stack offers GSO for TCP
		// only, so this does not happen. Send it as it is.
		return vnetHdr{}
	}
	super := (g.Type == stack.GSOTCPv4 || g.Type == stack.GSOTCPv6) && g.MSS > 0 && f.l.payload() > int(g.MSS)
	var h vnetHdr
	switch {
	case g.NeedsCsum:
		h = partialHeader(f.l, int(g.MSS), super)
	case super:
		h = gsoHeader(f.l, int(g.MSS))
	}
	if super && header.TCP(f.hdr[f.l.tcp:f.l.data]).Flags()&header.TCPFlagCwr != 0 {
		// CWR on the super-frame (an ECN sender's reduction, RFC 3168
		// 6.1.2): the kernel keeps it on the first segment it cuts, as
		// for its own sender's SKB_GSO_TCP_ECN packets.
		h.gsoType |= vnetGSOECN
	}
	return h
}
