package tap

import (
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Checksums on a TAP with offloads. gVisor's NIC decides per link, not per
// frame, whether the stack verifies checksums (CapabilityRXChecksumOffload
// sets every packet's RXChecksumValidated). A TAP device with offloads
// claims the capability, as a NIC driver does, because the kernel hands
// over most frames with a checksum it left partial (they never crossed a
// wire; VIRTIO_NET_HDR_F_NEEDS_CSUM) or already checked (DATA_VALID): the
// device itself verifies every other frame (ipFrameValid), drops what
// fails, and the stack does no checksum work at all. A capture fills the
// partial checksums in (FillChecksum), so it shows what a wire carries.

// ipLayout is where the parts of an Ethernet frame carrying an IP packet
// start.
type ipLayout struct {
	ip, l4, end int   // IP header, transport header, end of the IP packet
	proto       uint8 // transport protocol
	v6          bool
	fragment    bool // a fragment: the transport checksum covers the reassembled packet
}

// parseIPFrame reads the IP layout of frame. ok is false for a frame
// that is not IPv4 or IPv6, or is too short for what its headers say.
// IPv6 extension headers are not followed: such a packet's transport
// header is not found (l4 == end, proto is the first next header).
func parseIPFrame(frame []byte) (l ipLayout, ok bool) {
	l.ip = header.EthernetMinimumSize
	if len(frame) < l.ip {
		return l, false
	}
	ip := frame[l.ip:]
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		if len(ip) < header.IPv4MinimumSize {
			return l, false
		}
		h := header.IPv4(ip)
		ihl, total := int(h.HeaderLength()), int(h.TotalLength())
		if ip[0]>>4 != 4 || ihl < header.IPv4MinimumSize || total < ihl || total > len(ip) {
			return l, false
		}
		l.l4, l.end, l.proto = l.ip+ihl, l.ip+total, h.Protocol()
		l.fragment = h.More() || h.FragmentOffset() != 0
	case header.IPv6ProtocolNumber:
		if len(ip) < header.IPv6MinimumSize || ip[0]>>4 != 6 {
			return l, false
		}
		h := header.IPv6(ip)
		total := header.IPv6MinimumSize + int(h.PayloadLength())
		if total > len(ip) {
			return l, false
		}
		l.l4, l.end, l.proto, l.v6 = l.ip+header.IPv6MinimumSize, l.ip+total, h.NextHeader(), true
	default:
		return l, false
	}
	return l, true
}

// addrs returns the IP source and destination addresses.
func (l ipLayout) addrs(frame []byte) (src, dst []byte) {
	if l.v6 {
		return frame[l.ip+8 : l.ip+24], frame[l.ip+24 : l.ip+40]
	}
	return frame[l.ip+12 : l.ip+16], frame[l.ip+16 : l.ip+20]
}

// pseudo is the pseudo-header sum for the transport protocol's length.
func (l ipLayout) pseudo(frame []byte) uint16 {
	src, dst := l.addrs(frame)
	x := checksum.Checksum(src, 0)
	x = checksum.Checksum(dst, x)
	x = checksum.Combine(x, uint16(l.proto))
	return checksum.Combine(x, uint16(l.end-l.l4))
}

// checksumOffset is where the transport checksum of l's protocol sits in
// its header, or -1 for a protocol without one we know.
func (l ipLayout) checksumOffset() int {
	switch l.proto {
	case uint8(header.TCPProtocolNumber):
		return header.TCPChecksumOffset
	case uint8(header.UDPProtocolNumber):
		return 6
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		return 2
	}
	return -1
}

// minTransport is the shortest header of l's protocol.
func (l ipLayout) minTransport() int {
	switch l.proto {
	case uint8(header.TCPProtocolNumber):
		return header.TCPMinimumSize
	case uint8(header.UDPProtocolNumber):
		return header.UDPMinimumSize
	}
	return header.ICMPv4MinimumSize
}

// withPseudo reports whether l's transport checksum covers a
// pseudo-header: all but ICMPv4's.
func (l ipLayout) withPseudo() bool {
	return l.proto != uint8(header.ICMPv4ProtocolNumber) || l.v6
}

// ipFrameValid verifies the checksums of a frame the kernel did not vouch
// for: the IPv4 header's, and the transport checksum of TCP, UDP, ICMP
// and ICMPv6 (RFC 1071 sums; a UDP-over-IPv4 checksum of zero means none,
// RFC 768). The transport checksum of a fragment covers the reassembled
// packet, which the device never sees; such frames are accepted on their
// IP header alone, and so are IPv6 packets with extension headers and
// protocols without a checksum.
func ipFrameValid(frame []byte) bool {
	l, ok := parseIPFrame(frame)
	if !ok {
		// Not IP (ARP), or malformed: the network layer judges it.
		return true
	}
	if !l.v6 && !header.IPv4(frame[l.ip:l.l4]).IsChecksumValid() {
		return false
	}
	off := l.checksumOffset()
	if off < 0 || l.fragment || l.end-l.l4 < l.minTransport() ||
		(l.proto == uint8(header.ICMPv4ProtocolNumber) && l.v6) || (l.proto == uint8(header.ICMPv6ProtocolNumber) && !l.v6) {
		return true
	}
	seg := frame[l.l4:l.end]
	if l.proto == uint8(header.UDPProtocolNumber) && !l.v6 && seg[off] == 0 && seg[off+1] == 0 {
		return true
	}
	var x uint16
	if l.withPseudo() {
		x = l.pseudo(frame)
	}
	return checksum.Checksum(seg, x) == 0xffff
}

// completePartial finishes a checksum the kernel left partial
// (CHECKSUM_PARTIAL): the field at start+offset holds the pseudo-header
// sum, and the sum runs from start to the end of the frame.
func completePartial(frame []byte, start, offset int) {
	at := start + offset
	initial := uint16(frame[at])<<8 | uint16(frame[at+1])
	frame[at], frame[at+1] = 0, 0
	checksum.Put(frame[at:], ^checksum.Checksum(frame[start:], initial))
}

// FillChecksum computes from scratch the transport checksum of frame, an
// Ethernet frame carrying TCP or UDP over IPv4 or IPv6 (not a fragment).
// A TAP device with offloads hands the stack segments whose checksum the
// kernel left partial, marked as validated (stack.PacketBuffer's
// RXChecksumValidated); a capture fills them in so that it shows each
// frame as a wire would have carried it. It reports whether frame was
// such a packet.
func FillChecksum(frame []byte) bool {
	l, ok := parseIPFrame(frame)
	if !ok || l.fragment || (l.proto != uint8(header.TCPProtocolNumber) && l.proto != uint8(header.UDPProtocolNumber)) ||
		l.end-l.l4 < l.minTransport() {
		return false
	}
	off := l.checksumOffset()
	seg := frame[l.l4:l.end]
	seg[off], seg[off+1] = 0, 0
	x := ^checksum.Checksum(seg, l.pseudo(frame))
	if x == 0 && l.proto == uint8(header.UDPProtocolNumber) {
		x = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	checksum.Put(seg[off:], x)
	return true
}
