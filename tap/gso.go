package tap

import (
	"errors"
	"fmt"
	"math/bits"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// This file holds the byte work of TCP segmentation offload, shared by the
// TAP device's read and write paths and by package pcap: reading the
// layout of an Ethernet frame that carries a TCP segment, splitting a
// super-frame into the wire segments it stands for (as the kernel's
// tcp_gso_segment would), and finishing or deriving checksums. It touches
// only headers and never reads a payload unless asked to fill in a
// checksum.

// tcpLayout is where the parts of an Ethernet frame carrying one TCP
// segment over IPv4 or IPv6 start.
type tcpLayout struct {
	ip   int  // the IP header (after the Ethernet header)
	tcp  int  // the TCP header
	data int  // the payload: the length of all headers
	end  int  // the end of the IP packet; a frame may carry padding after it
	v6   bool // IPv6, else IPv4
}

// payload is the number of payload bytes.
func (l tcpLayout) payload() int { return l.end - l.data }

// errNotTCP says that a frame does not carry a whole TCP segment over IPv4
// or IPv6 (it is ARP, UDP, a fragment, IPv6 with extension headers, or
// malformed). Such frames are never split or coalesced.
var errNotTCP = errors.New("not a TCP segment over IPv4 or IPv6")

// parseTCPFrame reads the layout of frame, an Ethernet frame without VLAN
// tag, checking every length against the frame so that bad input from
// either side of the device never panics.
func parseTCPFrame(frame []byte) (tcpLayout, error) {
	return parseTCPPrefix(frame, len(frame))
}

// parseTCPPrefix is parseTCPFrame for a frame of frameLen bytes of which b
// holds the first ones: at least its headers.
func parseTCPPrefix(b []byte, frameLen int) (tcpLayout, error) {
	l := tcpLayout{ip: header.EthernetMinimumSize}
	if len(b) < l.ip || len(b) > frameLen {
		return l, errNotTCP
	}
	ip := b[l.ip:]
	ipLen := frameLen - l.ip // bytes after the Ethernet header
	switch header.Ethernet(b).Type() {
	case header.IPv4ProtocolNumber:
		if len(ip) < header.IPv4MinimumSize {
			return l, errNotTCP
		}
		h := header.IPv4(ip)
		ihl := int(h.HeaderLength())
		total := int(h.TotalLength())
		if ip[0]>>4 != 4 || ihl < header.IPv4MinimumSize || ihl > len(ip) || total < ihl || total > ipLen ||
			h.Protocol() != uint8(header.TCPProtocolNumber) || h.More() || h.FragmentOffset() != 0 {
			return l, errNotTCP
		}
		l.tcp = l.ip + ihl
		l.end = l.ip + total
	case header.IPv6ProtocolNumber:
		if len(ip) < header.IPv6MinimumSize {
			return l, errNotTCP
		}
		h := header.IPv6(ip)
		total := header.IPv6MinimumSize + int(h.PayloadLength())
		if ip[0]>>4 != 6 || h.NextHeader() != uint8(header.TCPProtocolNumber) || total > ipLen {
			return l, errNotTCP
		}
		l.tcp = l.ip + header.IPv6MinimumSize
		l.end = l.ip + total
		l.v6 = true
	default:
		return l, errNotTCP
	}
	if l.end-l.tcp < header.TCPMinimumSize || l.tcp+header.TCPMinimumSize > len(b) {
		return l, errNotTCP
	}
	off := int(header.TCP(b[l.tcp:]).DataOffset())
	if off < header.TCPMinimumSize || l.tcp+off > l.end || l.tcp+off > len(b) {
		return l, errNotTCP
	}
	l.data = l.tcp + off
	return l, nil
}

// addrs returns the source and destination addresses of the frame's IP
// header.
func (l tcpLayout) addrs(frame []byte) (src, dst []byte) {
	if l.v6 {
		return frame[l.ip+8 : l.ip+24], frame[l.ip+24 : l.ip+40]
	}
	return frame[l.ip+12 : l.ip+16], frame[l.ip+16 : l.ip+20]
}

// pseudoSum is the one's complement sum of the TCP pseudo-header (RFC 9293
// 3.1; RFC 8200 8.1 for IPv6) for a segment of tcpLen bytes, header
// included. The protocol and the length are the same 16-bit words in both
// versions' pseudo-headers for segments under 64 KiB.
func pseudoSum(src, dst []byte, tcpLen int) uint16 {
	x := checksum.Checksum(src, 0)
	x = checksum.Checksum(dst, x)
	x = checksum.Combine(x, uint16(header.TCPProtocolNumber))
	return checksum.Combine(x, uint16(tcpLen))
}

// ipv4HeaderChecksum recomputes the checksum of the IPv4 header h.
func ipv4HeaderChecksum(h header.IPv4) {
	h.SetChecksum(0)
	h.SetChecksum(^h.CalculateChecksum())
}

// maxSegments bounds the segments one super-frame may stand for: a 64 KiB
// payload cut at the smallest MSS a TCP may use (RFC 9293 3.7.1 lets IPv4
// go down to 536 bytes; Linux takes 48, TCP_MIN_SND_MSS). A header that
// asks for more is refused.
const maxSegments = 1 << 16 / 48

// errBadGSO says that a super-frame's virtio-net header does not match the
// frame it came with.
var errBadGSO = errors.New("bad GSO super-frame")

// superFrame is a TCP super-frame checked for splitting at mss.
type superFrame struct {
	tcpLayout
	mss int
	n   int // wire segments
}

// checkSuper validates frame as a TCP super-frame to be cut at mss bytes
// of payload.
func checkSuper(frame []byte, mss int) (superFrame, error) {
	return checkSuperPrefix(frame, len(frame), mss)
}

// checkSuperPrefix is checkSuper for a frame of frameLen bytes of which
// prefix holds at least the headers.
func checkSuperPrefix(prefix []byte, frameLen, mss int) (superFrame, error) {
	frame := prefix
	l, err := parseTCPPrefix(prefix, frameLen)
	if err != nil {
		return superFrame{}, err
	}
	if mss <= 0 {
		return superFrame{}, fmt.Errorf("%w: gso_size %d", errBadGSO, mss)
	}
	n := (l.payload() + mss - 1) / mss
	if n > maxSegments {
		return superFrame{}, fmt.Errorf("%w: %d bytes at gso_size %d make %d segments", errBadGSO, l.payload(), mss, n)
	}
	if h := header.TCP(frame[l.tcp:]); h.Flags()&(header.TCPFlagSyn|header.TCPFlagRst) != 0 && n > 1 {
		// Only a segment that may carry data past the first byte
		// can be cut: no SYN or RST is ever segmented.
		return superFrame{}, fmt.Errorf("%w: flags %v", errBadGSO, h.Flags())
	}
	return superFrame{tcpLayout: l, mss: mss, n: n}, nil
}

// segmentHeaders writes into dst (at least s.data bytes) the headers of
// wire segment i, which carries size bytes of payload: the super-frame's
// headers with the IP length, the IPv4 identification (incremented per
// segment as Linux's inet_gso_segment does without SKB_GSO_TCP_FIXEDID)
// and header checksum, the sequence number, and the flags, which
// tcp_gso_segment gives out as a sender would have: CWR on the first
// segment only, FIN and PSH on the last only. The TCP checksum field is
// left as the pseudo-header sum for this segment's length (the
// CHECKSUM_PARTIAL convention); fillTCPChecksum finishes it.
func (s *superFrame) segmentHeaders(dst, frame []byte, i, size int) {
	s.runHeaders(dst, frame, i, i, size)
}

// runHeaders is segmentHeaders for the run of wire segments first to
// last, joined again into one super-frame of size bytes of payload
// (rejoin.go): the first's IP identification and sequence number, its
// CWR, the last's FIN and PSH.
func (s *superFrame) runHeaders(dst, frame []byte, first, last, size int) {
	copy(dst[:s.data], frame[:s.data])
	ip := dst[s.ip:s.tcp]
	tcpLen := s.data - s.tcp + size
	if s.v6 {
		header.IPv6(ip).SetPayloadLength(uint16(tcpLen))
	} else {
		h := header.IPv4(ip)
		h.SetTotalLength(uint16(s.tcp - s.ip + tcpLen))
		h.SetID(h.ID() + uint16(first))
		ipv4HeaderChecksum(h)
	}
	h := header.TCP(dst[s.tcp:s.data])
	h.SetSequenceNumber(h.SequenceNumber() + uint32(first*s.mss))
	flags := h.Flags()
	if first > 0 {
		flags &^= header.TCPFlagCwr
	}
	if last < s.n-1 {
		flags &^= header.TCPFlagFin | header.TCPFlagPsh
	}
	h.SetFlags(uint8(flags))
	src, d := s.addrs(frame)
	h.SetChecksum(pseudoSum(src, d, tcpLen))
}

// fillTCPChecksum computes the TCP checksum of segment, whose headers are
// at the offsets of l, from scratch: pseudo-header, header and payload.
func fillTCPChecksum(segment []byte, l tcpLayout) {
	src, dst := l.addrs(segment)
	h := header.TCP(segment[l.tcp:l.end])
	h.SetChecksum(0)
	h.SetChecksum(^checksum.Checksum(segment[l.tcp:l.end], pseudoSum(src, dst, l.end-l.tcp)))
}

// WireSegments calls emit with each wire segment that frame, an Ethernet
// frame carrying one TCP segment of more than mss bytes of payload over
// IPv4 or IPv6 (a TSO or GSO super-frame), stands for: frame cut at mss
// bytes of payload, with the headers a segmenting NIC or the kernel would
// give each piece and every checksum filled in. A frame of at most mss
// bytes of payload, none included (a pure ACK that a stack's GSO marked),
// yields itself, with its TCP checksum filled in. The
// slice given to emit is reused for the next segment. It returns an
// error, and emits nothing, if frame is not a TCP segment it can cut.
func WireSegments(frame []byte, mss int, emit func(segment []byte)) error {
	s, err := checkSuper(frame, mss)
	if err != nil {
		return err
	}
	buf := make([]byte, s.data+min(s.mss, s.payload()))
	for i := range max(s.n, 1) {
		off := s.data + i*s.mss
		size := min(s.mss, s.end-off)
		seg := buf[:s.data+size]
		s.segmentHeaders(seg, frame, i, size)
		copy(seg[s.data:], frame[off:off+size])
		l := s.tcpLayout
		l.end = s.data + size
		fillTCPChecksum(seg, l)
		emit(seg)
	}
	return nil
}

// payloadSum returns the one's complement sum of the payload of a TCP
// segment whose checksum field is correct, without reading the payload: a
// valid segment's pseudo-header, header (checksum field included) and
// payload sum to zero (RFC 1071), so the payload's sum is the negation of
// the rest. tcpHdr is the TCP header, checksum included.
func payloadSum(src, dst, tcpHdr []byte, payloadLen int) uint16 {
	x := pseudoSum(src, dst, len(tcpHdr)+payloadLen)
	return ^checksum.Checksum(tcpHdr, x)
}

// shiftSum returns the sum of bytes that were summed as if they started at
// an even offset, for their real place at offset off: a sum of bytes moved
// by one position is the byte-swapped sum (RFC 1071 2(B)).
func shiftSum(sum uint16, off int) uint16 {
	if off&1 == 1 {
		return bits.ReverseBytes16(sum)
	}
	return sum
}

// tcpHeaderSum is the one's complement sum of a TCP header with its
// checksum field taken as zero.
func tcpHeaderSum(h []byte) uint16 {
	x := checksum.Checksum(h[:header.TCPChecksumOffset], 0)
	return checksum.Checksum(h[header.TCPChecksumOffset+2:], x)
}

// gsoHeader is the virtio-net header that asks the kernel to take frame,
// laid out as l, as a TCP super-frame standing for wire segments of mss
// bytes of payload. The checksum is complete (the kernel checks it, so a
// segment corrupted on its way through tapstack is still caught), so
// NEEDS_CSUM is not set.
func gsoHeader(l tcpLayout, mss int) vnetHdr {
	h := vnetHdr{
		gsoType:    vnetGSOTCPv4,
		hdrLen:     uint16(l.data),
		gsoSize:    uint16(mss),
		csumStart:  uint16(l.tcp),
		csumOffset: header.TCPChecksumOffset,
	}
	if l.v6 {
		h.gsoType = vnetGSOTCPv6
	}
	return h
}

// partialHeader is the virtio-net header of a frame laid out as l whose
// TCP checksum field holds only the pseudo-header sum: the kernel
// finishes it (CHECKSUM_PARTIAL), or a super-frame's segments get it as
// the kernel cuts them. gVisor's TCP sends such frames when the link
// offers host GSO.
func partialHeader(l tcpLayout, mss int, super bool) vnetHdr {
	h := vnetHdr{flags: vnetFlagNeedsCsum, csumStart: uint16(l.tcp), csumOffset: header.TCPChecksumOffset}
	if super {
		h = gsoHeader(l, mss)
		h.flags = vnetFlagNeedsCsum
	}
	return h
}

// checkVnetHdr checks the header the kernel put before frame against the
// frame: a partial checksum must lie inside it, and a super-frame must be
// a TCP segment of the announced version.
func checkVnetHdr(h vnetHdr, frame []byte) error {
	return checkVnetHdrPrefix(h, frame, len(frame))
}

// checkVnetHdrPrefix is checkVnetHdr for a frame of frameLen bytes of
// which prefix holds the first: a super-frame's headers at least.
func checkVnetHdrPrefix(h vnetHdr, prefix []byte, frameLen int) error {
	frame := prefix
	if h.flags&vnetFlagNeedsCsum != 0 {
		if int(h.csumStart)+int(h.csumOffset)+2 > frameLen {
			return fmt.Errorf("%w: %v beyond a frame of %d bytes", errBadGSO, h, frameLen)
		}
	}
	if h.gsoType == vnetGSONone {
		return nil
	}
	// ECN is a modifier of a GSO type (the super-frame had CWR set), not
	// a type: as virtio_net_hdr_to_skb, any gso_type but NONE must name
	// one once ECN is masked off, so ECN alone is refused (-EINVAL).
	switch h.gsoType &^ vnetGSOECN {
	case vnetGSOTCPv4, vnetGSOTCPv6:
	default:
		return fmt.Errorf("%w: %v: only TCP super-frames are offered", errBadGSO, h)
	}
	l, err := parseTCPPrefix(frame, frameLen)
	if err != nil {
		return fmt.Errorf("%w: %v: %v", errBadGSO, h, err)
	}
	if l.v6 != (h.gsoType&^vnetGSOECN == vnetGSOTCPv6) {
		return fmt.Errorf("%w: %v: IP version differs", errBadGSO, h)
	}
	return nil
}

// SegmentCount returns the number of wire segments [WireSegments] would
// cut frame into at mss, or the error it would return.
func SegmentCount(frame []byte, mss int) (int, error) {
	s, err := checkSuper(frame, mss)
	return s.n, err
}
