package event

import (
	"fmt"
	"strings"
)

// Flags are the control bits of a TCP header (RFC 9293 3.1), with the
// ECN bits of RFC 3168, at their places in the header's flags byte.
type Flags uint8

// The control bits.
const (
	FlagFin Flags = 1 << iota
	FlagSyn
	FlagRst
	FlagPsh
	FlagAck
	FlagUrg
	FlagEce
	FlagCwr
)

// String renders flags as tcpdump does: S, F, P, R, U, E, W, and "." for
// ACK; "none" when no bit is set.
func (f Flags) String() string {
	var b strings.Builder
	for _, x := range [...]struct {
		f Flags
		c byte
	}{{FlagSyn, 'S'}, {FlagFin, 'F'}, {FlagPsh, 'P'}, {FlagRst, 'R'}, {FlagUrg, 'U'}, {FlagEce, 'E'}, {FlagCwr, 'W'}, {FlagAck, '.'}} {
		if f&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// SegmentInfo is a segment as events report it: header fields, the SYN
// options, and the payload length. It is a plain value, cheap to make;
// formatting happens only in String, when someone looks.
type SegmentInfo struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            Flags
	Window           uint16
	MSS              uint16 // 0: absent
	WS               int    // -1: absent
	SACKPermitted    bool
	TS               bool // the Timestamps option is present, with TSVal and TSEcr
	TSVal, TSEcr     uint32
	Len              int    // payload bytes
	Note             string // for what could not be parsed
}

// String renders the segment like a tcpdump line with absolute numbers:
// "40000 > 80: Flags [S.], seq 100, ack 201, win 65535, options [mss 1460,TS val 7 ecr 9,wscale 7], length 0".
// Options are named as tcpdump names them; NOPs are left out.
func (s SegmentInfo) String() string {
	if s.Note != "" {
		return s.Note
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d > %d: Flags [%s], seq %d", s.SrcPort, s.DstPort, s.Flags, s.Seq)
	if s.Len > 0 {
		fmt.Fprintf(&b, ":%d", s.Seq+uint32(s.Len))
	}
	if s.Flags&FlagAck != 0 {
		fmt.Fprintf(&b, ", ack %d", s.Ack)
	}
	fmt.Fprintf(&b, ", win %d", s.Window)
	var opts []string
	if s.MSS != 0 {
		opts = append(opts, fmt.Sprintf("mss %d", s.MSS))
	}
	if s.SACKPermitted {
		opts = append(opts, "sackOK")
	}
	if s.TS {
		opts = append(opts, fmt.Sprintf("TS val %d ecr %d", s.TSVal, s.TSEcr))
	}
	if s.WS >= 0 && s.Flags&FlagSyn != 0 {
		opts = append(opts, fmt.Sprintf("wscale %d", s.WS))
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, ", options [%s]", strings.Join(opts, ","))
	}
	fmt.Fprintf(&b, ", length %d", s.Len)
	return b.String()
}
