package tap

import (
	"encoding/binary"

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
// fails (a fragment with the one that completes its datagram:
// fragcheck.go), and the stack does no checksum work at all. A capture fills the
// partial checksums in (FillChecksum), so it shows what a wire carries.

// ipLayout is where the parts of an Ethernet frame carrying an IP packet
// start.
type ipLayout struct {
	ip, l4, end int   // IP header, transport header, end of the IP packet
	proto       uint8 // transport protocol
	v6          bool
	fragment    bool // a fragment: the transport checksum covers the reassembled packet
	// Of a fragment: where its part of the datagram starts in the
	// frame (after the IPv4 header, or the IPv6 Fragment header), that
	// part's offset in the datagram, whether more follow, and the
	// datagram's identification. The transport header (l4) is known
	// in the first fragment only.
	frag, fragOff int
	more          bool
	id            uint32
}

// IPv6 extension headers (RFC 8200 4) followed to the transport header.
const (
	ipv6HopByHop    = 0
	ipv6Routing     = 43
	ipv6Fragment    = 44
	ipv6DestOptions = 60
)

// parseIPFrame reads the IP layout of frame. ok is false for a frame
// that is not IPv4 or IPv6, or is too short for what its headers say, or
// whose IPv6 extension headers the network layer refuses (a Routing
// header with segments left: gVisor does not forward it).
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
		l.frag, l.fragOff, l.more, l.id = l.l4, int(h.FragmentOffset()), h.More(), uint32(h.ID())
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
		return l, l.walkIPv6(frame)
	default:
		return l, false
	}
	return l, true
}

// walkIPv6 follows l's IPv6 extension headers, from l.l4, to the
// transport header, as the network layer will (RFC 8200 4.1): Hop-by-Hop
// and Destination Options, a Routing header with no segments left, and
// a Fragment header, after which only the first fragment's headers go
// on. A Fragment header at offset 0 without more fragments (an atomic
// fragment, RFC 6946) is not a fragment: gVisor handles the packet as it
// comes. It reports false for headers past the packet's end, a second
// Fragment header, or a Routing header with segments left.
func (l *ipLayout) walkIPv6(frame []byte) bool {
	// Bounded: each header takes 8 bytes at least.
	for range (l.end-l.l4)/8 + 1 {
		switch l.proto {
		case ipv6HopByHop, ipv6Routing, ipv6DestOptions:
			if l.l4+8 > l.end {
				return false
			}
			if l.proto == ipv6Routing && frame[l.l4+3] != 0 {
				return false
			}
			n := (int(frame[l.l4+1]) + 1) * 8
			if l.l4+n > l.end {
				return false
			}
			l.proto = frame[l.l4]
			l.l4 += n
		case ipv6Fragment:
			if l.fragment || l.l4+8 > l.end {
				return false
			}
			f := frame[l.l4 : l.l4+8]
			l.proto = f[0]
			l.fragOff = int(binary.BigEndian.Uint16(f[2:]) &^ 7)
			l.more = f[3]&1 != 0
			l.id = binary.BigEndian.Uint32(f[4:])
			l.l4 += 8
			l.frag = l.l4
			l.fragment = l.fragOff != 0 || l.more
			if l.fragOff != 0 {
				return true // the rest is data
			}
		default:
			return true
		}
	}
	return true
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
// RFC 768), found behind IPv6 extension headers (walkIPv6). The
// transport checksum of a fragment covers the reassembled packet, which
// the device never sees: ipFrameValid accepts a fragment on its IP
// header, and a link that vouches for it checks its datagram as a whole
// (fragChecker). Protocols without a checksum are accepted.
func ipFrameValid(frame []byte) bool {
	l, ok := parseIPFrame(frame)
	// Not IP (ARP), or malformed: the network layer judges it.
	return !ok || layoutValid(frame, l)
}

// layoutValid is ipFrameValid for a frame parseIPFrame laid out as l.
func layoutValid(frame []byte, l ipLayout) bool {
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
