package tcp

import (
	"encoding/binary"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// segment is a parsed TCP segment, inbound or outbound: the header fields
// the state machine reads, the options it understands, and the payload.
type segment struct {
	SrcPort, DstPort uint16
	Seq              seqnum.Value
	Ack              seqnum.Value
	Flags            header.TCPFlags
	Window           uint16 // as on the wire, before scaling

	// Options seen on the segment. MSS and WS only count on a SYN
	// (RFC 9293 3.7.1, RFC 7323 2.2). WS is -1 when absent.
	MSS           uint16
	WS            int
	SACKPermitted bool

	// The Timestamps option (RFC 7323 3.2), on any segment.
	TS           bool
	TSVal, TSEcr uint32

	// SACK blocks (RFC 2018 3) as they arrived, unvalidated: the first
	// nsack of sack. A fixed array keeps parsing free of allocation.
	sack  [header.TCPMaxSACKBlocks]header.SACKBlock
	nsack int

	Payload buffer.Buffer

	wire event.SegKey // as it arrived, before any trimming
	ecn  uint8        // the IP header's ECN field as it arrived (ecn.go)
}

// Len is SEG.LEN of RFC 9293 3.4: the payload plus one for SYN and one for FIN.
func (s *segment) Len() seqnum.Size {
	n := seqnum.Size(s.Payload.Size())
	if s.Flags&header.TCPFlagSyn != 0 {
		n++
	}
	if s.Flags&header.TCPFlagFin != 0 {
		n++
	}
	return n
}

func (s *segment) has(f header.TCPFlags) bool { return s.Flags&f != 0 }

// info summarizes s for an event.
func (s *segment) info() event.SegmentInfo {
	return event.SegmentInfo{
		SrcPort: s.SrcPort, DstPort: s.DstPort, Seq: uint32(s.Seq), Ack: uint32(s.Ack),
		Flags: event.Flags(s.Flags), Window: s.Window, MSS: s.MSS, WS: s.WS, SACKPermitted: s.SACKPermitted,
		TS: s.TS, TSVal: s.TSVal, TSEcr: s.TSEcr, Len: int(s.Payload.Size()),
	}
}

// String renders the segment like a tcpdump line with absolute numbers.
func (s *segment) String() string { return s.info().String() }

// parseHeader fills s from a TCP header that has already been length- and
// checksum-validated. The payload is left to the caller.
func (s *segment) parseHeader(h header.TCP) {
	s.SrcPort = h.SourcePort()
	s.DstPort = h.DestinationPort()
	s.Seq = seqnum.Value(h.SequenceNumber())
	s.Ack = seqnum.Value(h.AckNumber())
	s.Flags = h.Flags()
	s.Window = h.WindowSize()
	s.wire = event.SegKey{Seq: uint32(s.Seq), Ack: uint32(s.Ack), Flags: event.Flags(s.Flags)}
	s.WS = -1
	if s.Flags&header.TCPFlagSyn != 0 {
		o := header.ParseSynOptions(h.Options(), s.Flags&header.TCPFlagAck != 0)
		s.MSS = o.MSS
		s.WS = o.WS
		s.SACKPermitted = o.SACKPermitted
		// ParseSynOptions substitutes the RFC 9293 default when no MSS
		// option is present; keep 0 to mean "absent" so traces show what
		// was really on the wire.
		if !hasMSSOption(h.Options()) {
			s.MSS = 0
		}
		s.TS, s.TSVal, s.TSEcr = o.TS, o.TSVal, o.TSEcr
		return
	}
	opts := h.Options()
	if len(opts) == tsOptionSize && opts[0] == header.TCPOptionNOP && opts[1] == header.TCPOptionNOP && opts[2] == header.TCPOptionTS {
		// NOP NOP TS, the layout nearly every TCP sends, leaves no room
		// for SACK blocks. (Twelve bytes may also be one SACK block
		// and two NOPs, whose block can begin with a byte 8.)
		s.TSVal, s.TSEcr, s.TS = parseTimestamp(opts)
		return
	}
	s.parseOptions(opts)
}

// parseOptions walks the option list of a segment other than a SYN for
// the Timestamps option and SACK blocks (RFC 2018 3: kind 5, length
// 8n+2). The walk is bounded by the option bytes (at most 40); a
// malformed list ends it, keeping what was parsed before. It does not
// allocate.
func (s *segment) parseOptions(opts []byte) {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return
		}
		l := int(opts[i+1])
		switch {
		case opts[i] == header.TCPOptionTS && l == header.TCPOptionTSLength:
			s.TS, s.TSVal, s.TSEcr = true, binary.BigEndian.Uint32(opts[i+2:]), binary.BigEndian.Uint32(opts[i+6:])
		case opts[i] == header.TCPOptionSACK && l >= 10 && (l-2)%8 == 0:
			s.nsack = 0
			for j := i + 2; j+8 <= i+l && s.nsack < len(s.sack); j += 8 {
				s.sack[s.nsack] = header.SACKBlock{
					Start: seqnum.Value(binary.BigEndian.Uint32(opts[j:])),
					End:   seqnum.Value(binary.BigEndian.Uint32(opts[j+4:])),
				}
				s.nsack++
			}
		}
		i += l
	}
}

// parseTimestamp finds the Timestamps option (kind 8, length 10; RFC 7323
// 3.2). The layout nearly every TCP sends, NOP NOP TS alone, is matched
// first, as Linux's tcp_fast_parse_options does; otherwise the option
// list is walked, bounded by its length (at most 40 bytes). It does not
// allocate.
func parseTimestamp(opts []byte) (val, ecr uint32, ok bool) {
	if len(opts) == tsOptionSize && opts[0] == header.TCPOptionNOP && opts[1] == header.TCPOptionNOP &&
		opts[2] == header.TCPOptionTS && opts[3] == header.TCPOptionTSLength {
		return binary.BigEndian.Uint32(opts[4:]), binary.BigEndian.Uint32(opts[8:]), true
	}
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return 0, 0, false
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return 0, 0, false
		}
		if opts[i] == header.TCPOptionTS && opts[i+1] == header.TCPOptionTSLength {
			return binary.BigEndian.Uint32(opts[i+2:]), binary.BigEndian.Uint32(opts[i+6:]), true
		}
		i += int(opts[i+1])
	}
	return 0, 0, false
}

// hasMSSOption walks the option list looking for kind 2 (RFC 9293 3.1).
// The walk is bounded by the option bytes (at most 40).
func hasMSSOption(opts []byte) bool {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return false
		case header.TCPOptionNOP:
			i++
		case header.TCPOptionMSS:
			return i+4 <= len(opts) && opts[i+1] == 4
		default:
			if i+1 >= len(opts) || opts[i+1] < 2 {
				return false
			}
			i += int(opts[i+1])
		}
	}
	return false
}
