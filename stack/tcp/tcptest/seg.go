package tcptest

import (
	"bytes"
	"fmt"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// NoWS in Seg.WS means "no window scale option": in an expectation, the
// segment must not carry one.
const NoWS = -1

// Check names fields of a Seg that are compared (in Expect) or sent (in
// Inject) even when they hold their zero value.
type Check uint16

// The fields Check can force.
const (
	CheckWin      Check = 1 << iota // compare or send Win even if 0 (a zero window)
	CheckMSS                        // compare MSS even if 0 (0: no MSS option)
	CheckWS                         // compare or send WS even if 0 (wscale 0)
	CheckSACKPerm                   // compare SACKPerm even if false
	CheckTS                         // compare TS even if false (expect no TSopt); Inject: send exactly TS, never the peer's automatic TSopt
	CheckTSVal                      // compare TSVal even if 0 (implies a TSopt)
	CheckTSEcr                      // compare TSEcr even if 0 (implies a TSopt)
	CheckSACK                       // compare SACK even if empty (expect no SACK blocks)
	CheckECN                        // compare ECN even if 0 (expect not-ECT)

	// IgnorePSH compares the flags without PSH: where new data falls in a
	// train of GSO-sized runs decides PSH (stack/tcp/send.go), and a test
	// about something else need not model the pacing rate.
	IgnorePSH
)

// Seg is one TCP segment of a packet trace, written the way tcpdump prints
// it with relative sequence numbers: the tapstack side's numbers count from
// its ISS (its SYN has seq 0, its first data byte seq 1), the peer's count
// from the ISS the test chose.
//
// In Inject, Seq is relative to the peer's ISS and Ack to tapstack's; in
// Expect, Seq is relative to tapstack's ISS and Ack to the peer's. An Ack
// is only meaningful with the ACK flag ("."); without it, the ack field is
// sent as the literal value of Ack.
type Seg struct {
	// Flags in tcpdump's letters: S (SYN), F (FIN), P (PSH), R (RST),
	// U (URG), E (ECE), W (CWR) and "." (ACK); order does not matter:
	// "S", "S.", ".", "P.", "F.", "R", "R.".
	Flags string
	Seq   uint32
	Ack   uint32

	// Win is the raw 16-bit window field, before any window scaling.
	// Injected: 0 means the peer's default (Peer.Win) unless CheckWin.
	// Expected: compared when non-zero or CheckWin.
	Win uint16

	// Options. MSS: sent and compared when non-zero. WS: the window scale
	// shift; sent when > 0 (or CheckWS), compared when non-zero (or
	// CheckWS), and NoWS expects its absence. SACKPerm: SACK permitted.
	MSS      uint16
	WS       int
	SACKPerm bool

	// SACK blocks (RFC 2018): {start, end} pairs, relative like Ack. On
	// a segment from the stack, relative to the peer's ISS, compared when
	// non-empty (or CheckSACK, to expect none). Injected, relative to
	// tapstack's ISS and sent as a SACK option in the order given (at
	// most 4, or 3 with a TSopt).
	SACK [][2]uint32

	// The Timestamps option (RFC 7323 3.2). Injected: sent when TS, with
	// TSVal and TSEcr as given; a peer with Timestamps on stamps every
	// other segment itself (see Peer.Timestamps), unless CheckTS. Expected:
	// the option's presence is compared when TS or a CheckTS* flag is set
	// (CheckTS alone expects its absence); TSVal and TSEcr are compared
	// when non-zero or forced by CheckTSVal, CheckTSEcr.
	TS           bool
	TSVal, TSEcr uint32

	// Payload is the segment text. In an expectation a nil Payload with a
	// non-zero Len compares only the length; otherwise the length is
	// always compared (a bare ACK expects no text) and a non-nil Payload
	// is compared byte for byte.
	Payload []byte
	Len     int

	// ECN is the IP header's ECN field (RFC 3168 5): ECNNotECT,
	// ECNECT1, ECNECT0 or ECNCE. Injected: the packet carries it.
	// Expected: compared when non-zero or CheckECN. A segment from the
	// stack always has it.
	ECN uint8

	// Partial reports, on a segment from the stack, that its packet
	// left the TCP checksum for the link to finish (GSO's NeedsCsum),
	// which the Peer did as such a link would. Never compared.
	Partial bool

	// Check forces comparison (or sending) of zero-valued fields.
	Check Check
}

// payloadLen is the length the Seg says its text has.
func (s Seg) payloadLen() int {
	if s.Payload != nil {
		return len(s.Payload)
	}
	return s.Len
}

// String renders the Seg like a tcpdump line without addresses, with
// relative numbers: "Flags [S.], seq 0, ack 1, win 65535, options [mss
// 1460,wscale 5], length 0".
func (s Seg) String() string { return s.format(true) }

// format renders s; full says every field is meaningful (an actual
// segment) rather than only those an expectation specifies.
func (s Seg) format(full bool) string {
	var b strings.Builder
	f, err := ParseFlags(s.Flags)
	if err != nil {
		fmt.Fprintf(&b, "Flags [%s?]", s.Flags)
	} else {
		fmt.Fprintf(&b, "Flags [%s]", FlagString(f))
	}
	n := s.payloadLen()
	fmt.Fprintf(&b, ", seq %d", s.Seq)
	if n > 0 {
		fmt.Fprintf(&b, ":%d", s.Seq+uint32(n))
	}
	if f&header.TCPFlagAck != 0 {
		fmt.Fprintf(&b, ", ack %d", s.Ack)
	}
	if full || s.Win != 0 || s.Check&CheckWin != 0 {
		fmt.Fprintf(&b, ", win %d", s.Win)
	}
	var opts []string
	if s.MSS != 0 {
		opts = append(opts, fmt.Sprintf("mss %d", s.MSS))
	} else if !full && s.Check&CheckMSS != 0 {
		opts = append(opts, "no mss")
	}
	if s.SACKPerm {
		opts = append(opts, "sackOK")
	} else if !full && s.Check&CheckSACKPerm != 0 {
		opts = append(opts, "no sackOK")
	}
	if len(s.SACK) > 0 {
		sack := fmt.Sprintf("sack %d ", len(s.SACK))
		for _, b := range s.SACK {
			sack += fmt.Sprintf("{%d:%d}", b[0], b[1])
		}
		opts = append(opts, sack)
	} else if !full && s.Check&CheckSACK != 0 {
		opts = append(opts, "no sack")
	}
	switch {
	case full && s.TS:
		opts = append(opts, fmt.Sprintf("TS val %d ecr %d", s.TSVal, s.TSEcr))
	case full:
	case s.wantTS():
		ts := "TS"
		if s.TSVal != 0 || s.Check&CheckTSVal != 0 {
			ts += fmt.Sprintf(" val %d", s.TSVal)
		}
		if s.TSEcr != 0 || s.Check&CheckTSEcr != 0 {
			ts += fmt.Sprintf(" ecr %d", s.TSEcr)
		}
		opts = append(opts, ts)
	case s.Check&CheckTS != 0:
		opts = append(opts, "no TS")
	}
	switch {
	case s.WS > 0 || (s.WS == 0 && s.Check&CheckWS != 0):
		opts = append(opts, fmt.Sprintf("wscale %d", s.WS))
	case s.WS == NoWS && !full:
		opts = append(opts, "no wscale")
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, ", options [%s]", strings.Join(opts, ","))
	}
	fmt.Fprintf(&b, ", length %d", n)
	if s.ECN != 0 || (!full && s.Check&CheckECN != 0) {
		b.WriteString(", " + ECNName(s.ECN))
	}
	if !full && s.Payload == nil && s.Len > 0 {
		b.WriteString(" (content not compared)")
	}
	return b.String()
}

// diff lists the fields in which got does not meet the expectation want.
func diff(want, got Seg) []string {
	var d []string
	wf, err := ParseFlags(want.Flags)
	if err != nil {
		return []string{err.Error()}
	}
	gf, _ := ParseFlags(got.Flags)
	if (len(want.SACK) > 0 || want.Check&CheckSACK != 0) && fmt.Sprint(want.SACK) != fmt.Sprint(got.SACK) {
		d = append(d, fmt.Sprintf("sack %v != %v", got.SACK, want.SACK))
	}
	if want.Check&IgnorePSH != 0 {
		wf &^= header.TCPFlagPsh
		gf &^= header.TCPFlagPsh
	}
	if wf != gf {
		d = append(d, fmt.Sprintf("flags [%s] != [%s]", FlagString(gf), FlagString(wf)))
	}
	if got.Seq != want.Seq {
		d = append(d, fmt.Sprintf("seq %d != %d", got.Seq, want.Seq))
	}
	if wf&header.TCPFlagAck != 0 && gf&header.TCPFlagAck != 0 && got.Ack != want.Ack {
		d = append(d, fmt.Sprintf("ack %d != %d", got.Ack, want.Ack))
	}
	if (want.Win != 0 || want.Check&CheckWin != 0) && got.Win != want.Win {
		d = append(d, fmt.Sprintf("win %d != %d", got.Win, want.Win))
	}
	if (want.MSS != 0 || want.Check&CheckMSS != 0) && got.MSS != want.MSS {
		d = append(d, fmt.Sprintf("mss %d != %d", got.MSS, want.MSS))
	}
	if (want.WS != 0 || want.Check&CheckWS != 0) && got.WS != want.WS {
		d = append(d, fmt.Sprintf("wscale %s != %s", wsString(got.WS), wsString(want.WS)))
	}
	if (want.SACKPerm || want.Check&CheckSACKPerm != 0) && got.SACKPerm != want.SACKPerm {
		d = append(d, fmt.Sprintf("sackOK %v != %v", got.SACKPerm, want.SACKPerm))
	}
	if want.wantTS() || want.Check&CheckTS != 0 {
		if got.TS != want.wantTS() {
			d = append(d, fmt.Sprintf("TS present %v != %v", got.TS, want.wantTS()))
		} else if got.TS {
			if (want.TSVal != 0 || want.Check&CheckTSVal != 0) && got.TSVal != want.TSVal {
				d = append(d, fmt.Sprintf("TS val %d != %d", got.TSVal, want.TSVal))
			}
			if (want.TSEcr != 0 || want.Check&CheckTSEcr != 0) && got.TSEcr != want.TSEcr {
				d = append(d, fmt.Sprintf("TS ecr %d != %d", got.TSEcr, want.TSEcr))
			}
		}
	}
	if (want.ECN != 0 || want.Check&CheckECN != 0) && got.ECN != want.ECN {
		d = append(d, fmt.Sprintf("ECN %s != %s", ECNName(got.ECN), ECNName(want.ECN)))
	}
	if n := want.payloadLen(); len(got.Payload) != n {
		d = append(d, fmt.Sprintf("length %d != %d", len(got.Payload), n))
	} else if want.Payload != nil && !bytes.Equal(got.Payload, want.Payload) {
		d = append(d, fmt.Sprintf("payload %q != %q", abbrev(got.Payload), abbrev(want.Payload)))
	}
	return d
}

// wantTS reports whether an expectation asks for a TSopt.
func (s Seg) wantTS() bool {
	return s.TS || s.TSVal != 0 || s.TSEcr != 0 || s.Check&(CheckTSVal|CheckTSEcr) != 0
}

func wsString(ws int) string {
	if ws == NoWS {
		return "absent"
	}
	return fmt.Sprint(ws)
}

func abbrev(b []byte) []byte {
	if len(b) > 32 {
		return append(b[:32:32], "..."...)
	}
	return b
}

// ParseFlags turns tcpdump's flag letters into header.TCPFlags.
func ParseFlags(s string) (header.TCPFlags, error) {
	var f header.TCPFlags
	for _, c := range s {
		switch c {
		case 'S':
			f |= header.TCPFlagSyn
		case 'F':
			f |= header.TCPFlagFin
		case 'P':
			f |= header.TCPFlagPsh
		case 'R':
			f |= header.TCPFlagRst
		case 'U':
			f |= header.TCPFlagUrg
		case 'E':
			f |= header.TCPFlagEce
		case 'W':
			f |= header.TCPFlagCwr
		case '.':
			f |= header.TCPFlagAck
		default:
			return 0, fmt.Errorf("tcptest: unknown flag %q in %q", c, s)
		}
	}
	return f, nil
}

// FlagString renders flags as tcpdump does, in its order: "S.", "FP.",
// "R.", "none" for no flags at all.
func FlagString(f header.TCPFlags) string {
	var b strings.Builder
	for _, x := range []struct {
		f header.TCPFlags
		c byte
	}{{header.TCPFlagSyn, 'S'}, {header.TCPFlagFin, 'F'}, {header.TCPFlagPsh, 'P'}, {header.TCPFlagRst, 'R'}, {header.TCPFlagUrg, 'U'}, {header.TCPFlagEce, 'E'}, {header.TCPFlagCwr, 'W'}, {header.TCPFlagAck, '.'}} {
		if f&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// The IP ECN field's codepoints (RFC 3168 5), for Seg.ECN.
const (
	ECNNotECT uint8 = 0b00
	ECNECT1   uint8 = 0b01
	ECNECT0   uint8 = 0b10
	ECNCE     uint8 = 0b11
)

// ECNName names an ECN codepoint as packetdrill and tcpdump do.
func ECNName(ecn uint8) string {
	switch ecn & 3 {
	case ECNECT1:
		return "ect1"
	case ECNECT0:
		return "ect0"
	case ECNCE:
		return "ce"
	}
	return "not-ect"
}
