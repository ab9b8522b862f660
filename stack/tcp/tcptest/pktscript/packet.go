package pktscript

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// wireOption is one TCP option as it was on the wire.
type wireOption struct {
	kind uint8
	data []byte // after kind and length
}

// wirePacket is a TCP segment the stack sent, decoded.
type wirePacket struct {
	v6               bool
	tos, ttl         uint8
	src, dst         netip.Addr
	srcPort, dstPort uint16
	seq, ack         uint32
	flags            uint8 // header.TCPFlags
	win, urg         uint16
	options          []wireOption
	optBytes         int // length of the option bytes, padding included
	payload          []byte
}

// decodeOutbound parses an IPv4 or IPv6 packet the stack sent. It returns
// nil and no error for a packet that is not TCP (ICMPv6 router
// solicitations and the like), an error for a malformed or mis-checksummed
// TCP packet.
func decodeOutbound(b []byte) (*wirePacket, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("empty packet")
	}
	w := &wirePacket{}
	var tb []byte
	var xsum uint16
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) {
			return nil, fmt.Errorf("invalid IPv4 header")
		}
		if ip.Protocol() != uint8(header.TCPProtocolNumber) {
			return nil, nil
		}
		if ip.CalculateChecksum() != 0xffff {
			return nil, fmt.Errorf("bad IPv4 header checksum")
		}
		w.tos, _ = ip.TOS()
		w.ttl = ip.TTL()
		w.src = netip.AddrFrom4(ip.SourceAddress().As4())
		w.dst = netip.AddrFrom4(ip.DestinationAddress().As4())
		tb = b[ip.HeaderLength():ip.TotalLength()]
		xsum = header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tb)))
	case 6:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) {
			return nil, fmt.Errorf("invalid IPv6 header")
		}
		if ip.NextHeader() != uint8(header.TCPProtocolNumber) {
			return nil, nil
		}
		w.v6 = true
		w.tos, _ = ip.TOS()
		w.ttl = ip.HopLimit()
		w.src = netip.AddrFrom16(ip.SourceAddress().As16())
		w.dst = netip.AddrFrom16(ip.DestinationAddress().As16())
		tb = b[header.IPv6MinimumSize : header.IPv6MinimumSize+int(ip.PayloadLength())]
		xsum = header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tb)))
	default:
		return nil, fmt.Errorf("IP version %d", b[0]>>4)
	}
	if len(tb) < header.TCPMinimumSize {
		return nil, fmt.Errorf("TCP header truncated: %d bytes", len(tb))
	}
	h := header.TCP(tb)
	off := int(h.DataOffset())
	if off < header.TCPMinimumSize || off > len(tb) {
		return nil, fmt.Errorf("TCP data offset %d of %d bytes", off, len(tb))
	}
	if checksum.Checksum(tb, xsum) != 0xffff {
		return nil, fmt.Errorf("bad TCP checksum")
	}
	w.srcPort, w.dstPort = h.SourcePort(), h.DestinationPort()
	w.seq, w.ack = h.SequenceNumber(), h.AckNumber()
	w.flags = uint8(h.Flags())
	w.win, w.urg = h.WindowSize(), h.UrgentPointer()
	w.optBytes = off - header.TCPMinimumSize
	w.options = parseWireOptions(tb[header.TCPMinimumSize:off])
	w.payload = append([]byte(nil), tb[off:]...)
	return w, nil
}

// parseWireOptions lists the options up to EOL; the walk is bounded by
// the bytes.
func parseWireOptions(o []byte) []wireOption {
	var opts []wireOption
	for i := 0; i < len(o); {
		switch o[i] {
		case header.TCPOptionEOL:
			return opts
		case header.TCPOptionNOP:
			opts = append(opts, wireOption{kind: header.TCPOptionNOP})
			i++
			continue
		}
		if i+1 >= len(o) || o[i+1] < 2 || i+int(o[i+1]) > len(o) {
			// A malformed option: keep its kind so the comparison
			// fails on it.
			return append(opts, wireOption{kind: o[i], data: o[i+1:]})
		}
		l := int(o[i+1])
		opts = append(opts, wireOption{kind: o[i], data: append([]byte(nil), o[i+2:i+l]...)})
		i += l
	}
	return opts
}

// encodeOptions writes a script's option list in the script's order.
// The parser has checked that it is a multiple of four bytes long.
func encodeOptions(opts []TCPOption, mapSACK func(uint32) uint32, tsEcr func(uint32) uint32) []byte {
	var b []byte
	for _, o := range opts {
		switch o.Kind {
		case OptNOP:
			b = append(b, header.TCPOptionNOP)
		case OptEOL:
			b = append(b, header.TCPOptionEOL)
		case OptMSS:
			b = append(b, header.TCPOptionMSS, 4)
			b = binary.BigEndian.AppendUint16(b, uint16(o.Value))
		case OptWScale:
			b = append(b, header.TCPOptionWS, 3, uint8(o.Value))
		case OptSACKOK:
			b = append(b, header.TCPOptionSACKPermitted, 2)
		case OptSACK:
			b = append(b, header.TCPOptionSACK, uint8(2+8*len(o.Blocks)))
			for _, bl := range o.Blocks {
				b = binary.BigEndian.AppendUint32(b, mapSACK(bl[0]))
				b = binary.BigEndian.AppendUint32(b, mapSACK(bl[1]))
			}
		case OptTS:
			b = append(b, header.TCPOptionTS, 10)
			b = binary.BigEndian.AppendUint32(b, o.TSVal)
			b = binary.BigEndian.AppendUint32(b, tsEcr(o.TSEcr))
		}
	}
	return b
}

// inboundFields are the live values of a packet the peer injects.
type inboundFields struct {
	v6               bool
	src, dst         netip.Addr
	srcPort, dstPort uint16
	tos, ttl         uint8
	seq, ack         uint32
	flags            uint8
	win, urg         uint16
	options          []byte
	payload          int // bytes of zeros, as packetdrill sends
}

// encodeInbound builds the whole IP packet, checksums included.
func encodeInbound(f inboundFields) []byte {
	tcpLen := header.TCPMinimumSize + len(f.options) + f.payload
	ipLen := header.IPv4MinimumSize
	if f.v6 {
		ipLen = header.IPv6MinimumSize
	}
	b := make([]byte, ipLen+tcpLen)
	ttl := f.ttl
	if ttl == 0 {
		ttl = 64
	}
	src := tcpip.AddrFromSlice(f.src.AsSlice())
	dst := tcpip.AddrFromSlice(f.dst.AsSlice())
	if f.v6 {
		header.IPv6(b).Encode(&header.IPv6Fields{
			TrafficClass:      f.tos,
			PayloadLength:     uint16(tcpLen),
			TransportProtocol: header.TCPProtocolNumber,
			HopLimit:          ttl,
			SrcAddr:           src,
			DstAddr:           dst,
		})
	} else {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TOS:         f.tos,
			TotalLength: uint16(len(b)),
			TTL:         ttl,
			Protocol:    uint8(header.TCPProtocolNumber),
			SrcAddr:     src,
			DstAddr:     dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	tb := b[ipLen:]
	h := header.TCP(tb)
	h.Encode(&header.TCPFields{
		SrcPort:       f.srcPort,
		DstPort:       f.dstPort,
		SeqNum:        f.seq,
		AckNum:        f.ack,
		DataOffset:    uint8(header.TCPMinimumSize + len(f.options)),
		Flags:         header.TCPFlags(f.flags),
		WindowSize:    f.win,
		UrgentPointer: f.urg,
	})
	copy(tb[header.TCPMinimumSize:], f.options)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen))
	h.SetChecksum(^checksum.Checksum(tb, xsum))
	return b
}

// flagBits turns a script's flag letters into header bits. The parser
// lets through only the letters tcptest.ParseFlags knows (".FSRPEWU"),
// so it has no error to report.
func flagBits(s string) uint8 {
	f, _ := tcptest.ParseFlags(s)
	return uint8(f)
}

// flagLetters renders flag bits in packetdrill's order of writing: "S.",
// "FP.", "R.", "-" for none.
func flagLetters(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		f header.TCPFlags
		c byte
	}{{header.TCPFlagSyn, 'S'}, {header.TCPFlagFin, 'F'}, {header.TCPFlagRst, 'R'}, {header.TCPFlagPsh, 'P'}, {header.TCPFlagUrg, 'U'}, {header.TCPFlagEce, 'E'}, {header.TCPFlagCwr, 'W'}, {header.TCPFlagAck, '.'}} {
		if header.TCPFlags(f)&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

const (
	flagFIN = uint8(header.TCPFlagFin)
	flagSYN = uint8(header.TCPFlagSyn)
	flagRST = uint8(header.TCPFlagRst)
	flagPSH = uint8(header.TCPFlagPsh)
	flagACK = uint8(header.TCPFlagAck)
	flagURG = uint8(header.TCPFlagUrg)
	flagECE = uint8(header.TCPFlagEce)
	flagCWR = uint8(header.TCPFlagCwr)
)

// wireOptionString renders an option in a script's words, with
// sequence numbers and timestamps as mapped by the caller.
func wireOptionString(o wireOption, sack func(uint32) uint32, tsval func(uint32) uint32) string {
	switch o.kind {
	case header.TCPOptionNOP:
		return "nop"
	case header.TCPOptionEOL:
		return "eol"
	case header.TCPOptionMSS:
		if len(o.data) == 2 {
			return fmt.Sprintf("mss %d", binary.BigEndian.Uint16(o.data))
		}
	case header.TCPOptionWS:
		if len(o.data) == 1 {
			return fmt.Sprintf("wscale %d", o.data[0])
		}
	case header.TCPOptionSACKPermitted:
		if len(o.data) == 0 {
			return "sackOK"
		}
	case header.TCPOptionSACK:
		if len(o.data) > 0 && len(o.data)%8 == 0 {
			var b strings.Builder
			b.WriteString("sack")
			for i := 0; i+8 <= len(o.data); i += 8 {
				fmt.Fprintf(&b, " %d:%d", sack(binary.BigEndian.Uint32(o.data[i:])), sack(binary.BigEndian.Uint32(o.data[i+4:])))
			}
			return b.String()
		}
	case header.TCPOptionTS:
		if len(o.data) == 8 {
			return fmt.Sprintf("TS val %d ecr %d", tsval(binary.BigEndian.Uint32(o.data)), binary.BigEndian.Uint32(o.data[4:]))
		}
	}
	return fmt.Sprintf("option %d len %d", o.kind, len(o.data)+2)
}

// scriptOptionKind is the wire kind of a script option.
func scriptOptionKind(k OptionKind) uint8 {
	switch k {
	case OptNOP:
		return header.TCPOptionNOP
	case OptEOL:
		return header.TCPOptionEOL
	case OptMSS:
		return header.TCPOptionMSS
	case OptWScale:
		return header.TCPOptionWS
	case OptSACKOK:
		return header.TCPOptionSACKPermitted
	case OptSACK:
		return header.TCPOptionSACK
	case OptTS:
		return header.TCPOptionTS
	case OptMD5:
		return 19
	case OptFastOpen:
		return 34
	}
	return 254
}
