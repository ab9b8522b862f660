package pcap

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// frameKind says what a captured frame carries.
type frameKind uint8

const (
	kindOther frameKind = iota
	kindTCP
	kindARP
	kindICMPv4
	kindICMPv6
	kindUDP
)

// frameInfo is what the writer reads from a frame's bytes: enough to match
// it with engine events by wire identity and to describe it.
type frameInfo struct {
	kind frameKind
	// TCP: the connection from the stack's viewpoint (Local is the
	// stack's own address in both directions) and the wire key.
	conn  event.ConnID
	key   event.SegKey
	win   uint16 // the raw window field
	ws    int8   // window scale option on a SYN, -1 if absent
	nsack uint8
	sack  [4][2]uint32 // SACK blocks (left, right edges)

	// ARP and ICMP.
	op          uint16     // ARP operation; ICMP type
	code        uint8      // ICMP code
	ident, seqn uint16     // ICMP echo
	src, dst    netip.Addr // ARP sender/target protocol address; IP source/destination
	hw          net.HardwareAddr
	quoted      event.ConnID // ICMP error quoting a TCP segment: its connection from the stack's viewpoint
	quotedSeq   uint32
	quotedTCP   bool
	quotedUDP   bool // the error quotes a UDP datagram (port unreachable)
	fragment    bool // the first fragment of an IPv4 datagram
	udpSrc      uint16
	udpDst      uint16
	etherType   tcpip.NetworkProtocolNumber
	ipProto     uint8
}

// parseFrame reads an Ethernet frame. outbound says which end of a TCP
// segment is the stack's. Fragments and IPv6 extension headers are not
// followed.
func parseFrame(b []byte, outbound bool) frameInfo {
	fi := frameInfo{ws: -1}
	if len(b) < header.EthernetMinimumSize {
		return fi
	}
	eth := header.Ethernet(b)
	fi.etherType = eth.Type()
	ip := b[header.EthernetMinimumSize:]
	var payload []byte
	switch eth.Type() {
	case header.ARPProtocolNumber:
		h := header.ARP(ip)
		if !h.IsValid() {
			return fi
		}
		fi.kind = kindARP
		fi.op = uint16(h.Op())
		fi.src, _ = netip.AddrFromSlice(h.ProtocolAddressSender())
		fi.dst, _ = netip.AddrFromSlice(h.ProtocolAddressTarget())
		fi.hw = net.HardwareAddr(append([]byte(nil), h.HardwareAddressSender()...))
		return fi
	case header.IPv4ProtocolNumber:
		h := header.IPv4(ip)
		if len(ip) < header.IPv4MinimumSize {
			return fi
		}
		hl, tl := int(h.HeaderLength()), int(h.TotalLength())
		if hl < header.IPv4MinimumSize || tl < hl || tl > len(ip) {
			return fi
		}
		fi.src = netip.AddrFrom4(h.SourceAddress().As4())
		fi.dst = netip.AddrFrom4(h.DestinationAddress().As4())
		fi.ipProto = h.Protocol()
		if h.FragmentOffset() != 0 {
			return fi
		}
		if h.More() {
			// The first fragment of a UDP datagram carries its
			// header, and so stands for the datagram (its Length
			// counts the whole).
			if fi.ipProto == uint8(header.UDPProtocolNumber) {
				fi.fragment = true
				parseUDP(&fi, ip[hl:tl], outbound)
			}
			return fi
		}
		payload = ip[hl:tl]
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if len(ip) < header.IPv6MinimumSize {
			return fi
		}
		pl := int(h.PayloadLength())
		if header.IPv6MinimumSize+pl > len(ip) {
			return fi
		}
		fi.src = netip.AddrFrom16(h.SourceAddress().As16())
		fi.dst = netip.AddrFrom16(h.DestinationAddress().As16())
		fi.ipProto = h.NextHeader()
		payload = ip[header.IPv6MinimumSize : header.IPv6MinimumSize+pl]
		if fi.ipProto == uint8(header.IPv6FragmentExtHdrIdentifier) && len(payload) >= header.IPv6FragmentExtHdrLength {
			// RFC 8200 4.5: the first fragment (offset 0) of a UDP
			// datagram carries its header, as in IPv4.
			f := payload[:header.IPv6FragmentExtHdrLength]
			if f[0] == uint8(header.UDPProtocolNumber) && (uint16(f[2])<<8|uint16(f[3]))>>3 == 0 {
				fi.fragment = true
				parseUDP(&fi, payload[header.IPv6FragmentExtHdrLength:], outbound)
			}
			return fi
		}
	default:
		return fi
	}
	switch fi.ipProto {
	case uint8(header.TCPProtocolNumber):
		parseTCP(&fi, payload, outbound)
	case uint8(header.UDPProtocolNumber):
		parseUDP(&fi, payload, outbound)
	case uint8(header.ICMPv4ProtocolNumber):
		if len(payload) >= header.ICMPv4MinimumSize {
			h := header.ICMPv4(payload)
			fi.kind, fi.op, fi.code = kindICMPv4, uint16(h.Type()), uint8(h.Code())
			if len(payload) >= header.ICMPv4MinimumSize+4 {
				fi.ident, fi.seqn = h.Ident(), h.Sequence()
			}
			if t := h.Type(); t == header.ICMPv4DstUnreachable || t == header.ICMPv4TimeExceeded || t == header.ICMPv4ParamProblem {
				parseQuoted(&fi, payload[header.ICMPv4MinimumSize:], outbound)
			}
		}
	case uint8(header.ICMPv6ProtocolNumber):
		if len(payload) >= header.ICMPv6MinimumSize {
			h := header.ICMPv6(payload)
			fi.kind, fi.op, fi.code = kindICMPv6, uint16(h.Type()), uint8(h.Code())
			if len(payload) >= header.ICMPv6EchoMinimumSize {
				fi.ident, fi.seqn = h.Ident(), h.Sequence()
			}
			switch h.Type() {
			case header.ICMPv6DstUnreachable, header.ICMPv6PacketTooBig, header.ICMPv6TimeExceeded, header.ICMPv6ParamProblem:
				parseQuoted(&fi, payload[header.ICMPv6ErrorHeaderSize:], outbound)
			case header.ICMPv6NeighborSolicit, header.ICMPv6NeighborAdvert:
				if len(payload) >= header.ICMPv6NeighborSolicitMinimumSize {
					fi.quoted.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(payload[8:24])), 0)
				}
			}
		}
	}
	return fi
}

func parseTCP(fi *frameInfo, seg []byte, outbound bool) {
	if len(seg) < header.TCPMinimumSize {
		return
	}
	t := header.TCP(seg)
	off := int(t.DataOffset())
	if off < header.TCPMinimumSize || off > len(seg) {
		return
	}
	fi.kind = kindTCP
	fi.key = event.SegKey{Seq: t.SequenceNumber(), Ack: t.AckNumber(), Flags: event.Flags(t.Flags()), Len: len(seg) - off}
	fi.win = t.WindowSize()
	s := netip.AddrPortFrom(fi.src, t.SourcePort())
	d := netip.AddrPortFrom(fi.dst, t.DestinationPort())
	if outbound {
		fi.conn = event.ConnID{Local: s, Remote: d}
	} else {
		fi.conn = event.ConnID{Local: d, Remote: s}
	}
	opts := seg[header.TCPMinimumSize:off]
	if t.Flags()&header.TCPFlagSyn != 0 {
		if o := header.ParseSynOptions(opts, t.Flags()&header.TCPFlagAck != 0); o.WS >= 0 {
			fi.ws = int8(o.WS)
		}
		return
	}
	o := header.ParseTCPOptions(opts)
	for i, b := range o.SACKBlocks {
		if i == len(fi.sack) {
			break
		}
		fi.sack[i] = [2]uint32{uint32(b.Start), uint32(b.End)}
		fi.nsack++
	}
}

// parseUDP reads a UDP datagram's ports and payload length, and names it
// as the stack's UDP events do: conn from the stack's viewpoint, key.Len
// the payload bytes the UDP header counts (the rest of the IP payload is
// padding; in a first fragment, the rest of the datagram is in the
// fragments that follow).
func parseUDP(fi *frameInfo, dgram []byte, outbound bool) {
	if len(dgram) < header.UDPMinimumSize {
		return
	}
	u := header.UDP(dgram)
	fi.kind, fi.udpSrc, fi.udpDst = kindUDP, u.SourcePort(), u.DestinationPort()
	fi.key.Len = len(dgram) - header.UDPMinimumSize
	if l := int(u.Length()); l >= header.UDPMinimumSize && (l <= len(dgram) || fi.fragment) {
		fi.key.Len = l - header.UDPMinimumSize
	}
	s := netip.AddrPortFrom(fi.src, fi.udpSrc)
	d := netip.AddrPortFrom(fi.dst, fi.udpDst)
	if outbound {
		fi.conn = event.ConnID{Local: s, Remote: d}
	} else {
		fi.conn = event.ConnID{Local: d, Remote: s}
	}
}

// parseQuoted reads the IP header and first 8 bytes of the TCP segment an
// ICMP error quotes (RFC 792, RFC 4443 3.1). The quoted segment went the
// other way: an inbound error quotes one of the stack's segments.
func parseQuoted(fi *frameInfo, b []byte, outbound bool) {
	var src, dst netip.Addr
	var rest []byte
	if len(b) < 1 {
		return
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < header.IPv4MinimumSize {
			return
		}
		h := header.IPv4(b)
		hl := int(h.HeaderLength())
		if hl < header.IPv4MinimumSize || len(b) < hl+8 || !quotable(h.Protocol()) {
			return
		}
		src, dst, rest = netip.AddrFrom4(h.SourceAddress().As4()), netip.AddrFrom4(h.DestinationAddress().As4()), b[hl:]
	case 6:
		if len(b) < header.IPv6MinimumSize+8 {
			return
		}
		h := header.IPv6(b)
		if !quotable(h.NextHeader()) {
			return
		}
		src, dst, rest = netip.AddrFrom16(h.SourceAddress().As16()), netip.AddrFrom16(h.DestinationAddress().As16()), b[header.IPv6MinimumSize:]
	default:
		return
	}
	if b[0]>>4 == 4 && header.IPv4(b).Protocol() == uint8(header.UDPProtocolNumber) ||
		b[0]>>4 == 6 && header.IPv6(b).NextHeader() == uint8(header.UDPProtocolNumber) {
		// A UDP datagram: its ports, in the datagram's direction.
		u := header.UDP(rest[:8:8])
		fi.quoted = event.ConnID{Local: netip.AddrPortFrom(src, u.SourcePort()), Remote: netip.AddrPortFrom(dst, u.DestinationPort())}
		fi.quotedUDP = true
		return
	}
	t := header.TCP(rest[:8:8])
	s := netip.AddrPortFrom(src, t.SourcePort())
	d := netip.AddrPortFrom(dst, t.DestinationPort())
	if outbound {
		// We quote a segment the peer sent us.
		fi.quoted = event.ConnID{Local: d, Remote: s}
	} else {
		fi.quoted = event.ConnID{Local: s, Remote: d}
	}
	fi.quotedSeq = t.SequenceNumber()
	fi.quotedTCP = true
}

// portUnreachable reports an ICMP or ICMPv6 port unreachable (RFC 792,
// RFC 4443 3.1 code 4).
func (fi *frameInfo) portUnreachable() bool {
	switch fi.kind {
	case kindICMPv4:
		return header.ICMPv4Type(fi.op) == header.ICMPv4DstUnreachable && header.ICMPv4Code(fi.code) == header.ICMPv4PortUnreachable
	case kindICMPv6:
		return header.ICMPv6Type(fi.op) == header.ICMPv6DstUnreachable && header.ICMPv6Code(fi.code) == header.ICMPv6PortUnreachable
	}
	return false
}

// flags of a TCP frame.
func (fi *frameInfo) has(f header.TCPFlags) bool { return header.TCPFlags(fi.key.Flags)&f != 0 }

// describe names a frame that no engine event explains: ARP, ICMP, UDP and
// the rest, in tcpdump's words.
func (fi *frameInfo) describe(outbound bool) string {
	switch fi.kind {
	case kindARP:
		switch header.ARPOp(fi.op) {
		case header.ARPRequest:
			return fmt.Sprintf("ARP request who-has %v tell %v", fi.dst, fi.src)
		case header.ARPReply:
			return fmt.Sprintf("ARP reply %v is-at %v", fi.src, fi.hw)
		}
		return fmt.Sprintf("ARP op %d", fi.op)
	case kindICMPv4:
		return "ICMP " + icmp4Name(header.ICMPv4Type(fi.op), header.ICMPv4Code(fi.code)) + fi.quotedText()
	case kindICMPv6:
		return "ICMPv6 " + icmp6Name(header.ICMPv6Type(fi.op), fi.code) + fi.quotedText()
	case kindUDP:
		// A datagram the stack reported no event for: a capture whose
		// Writer is not the stack's observer, or one not for this stack.
		return fmt.Sprintf("UDP %v > %v, %d bytes (no event)",
			netip.AddrPortFrom(fi.src, fi.udpSrc), netip.AddrPortFrom(fi.dst, fi.udpDst), fi.key.Len)
	case kindTCP:
		return "TCP"
	}
	if fi.src.IsValid() {
		return fmt.Sprintf("IP protocol %d %v > %v", fi.ipProto, fi.src, fi.dst)
	}
	return fmt.Sprintf("ethertype %#04x", uint16(fi.etherType))
}

// quotable reports a protocol whose quoted header parseQuoted reads.
func quotable(proto uint8) bool {
	return proto == uint8(header.TCPProtocolNumber) || proto == uint8(header.UDPProtocolNumber)
}

func (fi *frameInfo) quotedText() string {
	if fi.quotedUDP {
		return fmt.Sprintf(" for UDP %v > %v", fi.quoted.Local, fi.quoted.Remote)
	}
	if !fi.quotedTCP {
		return ""
	}
	return fmt.Sprintf(" for TCP %v > %v seq %d", fi.quoted.Local, fi.quoted.Remote, fi.quotedSeq)
}

func icmp4Name(t header.ICMPv4Type, c header.ICMPv4Code) string {
	switch t {
	case header.ICMPv4EchoReply:
		return "echo reply"
	case header.ICMPv4Echo:
		return "echo request"
	case header.ICMPv4DstUnreachable:
		switch c {
		case header.ICMPv4NetUnreachable:
			return "net unreachable"
		case header.ICMPv4HostUnreachable:
			return "host unreachable"
		case header.ICMPv4ProtoUnreachable:
			return "protocol unreachable"
		case header.ICMPv4PortUnreachable:
			return "port unreachable"
		case header.ICMPv4FragmentationNeeded:
			return "fragmentation needed"
		}
		return fmt.Sprintf("destination unreachable code %d", c)
	case header.ICMPv4TimeExceeded:
		return "time exceeded"
	case header.ICMPv4ParamProblem:
		return "parameter problem"
	}
	return fmt.Sprintf("type %d code %d", t, c)
}

func icmp6Name(t header.ICMPv6Type, c uint8) string {
	switch t {
	case header.ICMPv6EchoRequest:
		return "echo request"
	case header.ICMPv6EchoReply:
		return "echo reply"
	case header.ICMPv6DstUnreachable:
		return fmt.Sprintf("destination unreachable code %d", c)
	case header.ICMPv6PacketTooBig:
		return "packet too big"
	case header.ICMPv6TimeExceeded:
		return "time exceeded"
	case header.ICMPv6ParamProblem:
		return "parameter problem"
	case header.ICMPv6RouterSolicit:
		return "router solicitation"
	case header.ICMPv6RouterAdvert:
		return "router advertisement"
	case header.ICMPv6NeighborSolicit:
		return "neighbor solicitation"
	case header.ICMPv6NeighborAdvert:
		return "neighbor advertisement"
	case header.ICMPv6MulticastListenerReport, header.ICMPv6MulticastListenerV2Report:
		return "multicast listener report"
	}
	return fmt.Sprintf("type %d code %d", t, c)
}
