package pktscript

import (
	"fmt"
	"strings"
	"time"
)

// Script is a parsed packetdrill script: its command-line options, the
// shell commands around it and its events in order.
type Script struct {
	Path string

	// Options are the "--name=value" lines at the top, in order. A
	// valueless option has Value "".
	Options []ScriptOption

	// Init and Cleanup are the backquoted shell commands before the first
	// event and after the last one ("" when absent).
	Init, Cleanup       string
	InitLine, CleanLine int

	Events []Event
}

// ScriptOption is one "--name=value" line.
type ScriptOption struct {
	Line        int
	Name, Value string
}

// TimeKind says how an event's time is written (packetdrill's
// event_time_t).
type TimeKind uint8

// The time kinds.
const (
	TimeAbsolute      TimeKind = iota + 1 // 0.1
	TimeRelative                          // +0.1
	TimeAny                               // *
	TimeAbsoluteRange                     // 0.1~0.2
	TimeRelativeRange                     // +0.1~+0.2
)

// EventKind says what an event does.
type EventKind uint8

// The event kinds.
const (
	EventPacket  EventKind = iota + 1 // < or > line
	EventSyscall                      // socket call with its expected result
	EventCommand                      // backquoted shell command
	EventCode                         // %{ python }%
)

// Event is one timed line of a script.
type Event struct {
	Line int
	Kind EventKind

	TimeKind  TimeKind
	Time, End time.Duration // End: the end of a range

	Packet  *Packet  // EventPacket
	Syscall *Syscall // EventSyscall
	Command string   // EventCommand
	Code    string   // EventCode
}

// Direction of a packet line.
type Direction uint8

// The directions: packetdrill's < is a packet the script injects, > one it
// expects from the stack under test.
const (
	Inbound  Direction = iota + 1 // <
	Outbound                      // >
)

// ECN codepoints of the IP header (RFC 3168 5), as packetdrill writes
// them: [noecn], [ect0], [ect1], [ce], and [ect01] (ECT(0) or ECT(1),
// outbound only).
const (
	ecnNotECT = 0
	ecnECT1   = 1
	ecnECT0   = 2
	ecnCE     = 3
)

// TOSCheck says what of the IP TOS byte a packet line states.
type TOSCheck uint8

// The TOS checks.
const (
	TOSNone  TOSCheck = iota // not stated: not checked, 0 when injected
	TOSECN                   // the ECN bits: TOS holds the codepoint
	TOSECT01                 // ECT(0) or ECT(1)
	TOSByte                  // the whole byte: (tos 0x..)
)

// Packet is one TCP packet line. Sequence numbers are the script's, before
// any mapping to the live connection.
type Packet struct {
	Dir Direction

	TOSCheck TOSCheck
	TOS      uint8
	TTL      uint8 // 0: not stated

	// SrcPort and DstPort are the ports written as "src>dst" before the
	// flags; 0 when omitted.
	SrcPort, DstPort uint16

	Flags string // tcpdump letters as written; "" for "-"
	Seq   uint32
	Len   int // payload bytes: end - start
	Ack   uint32
	Win   int // -1: not stated (outbound: not checked)
	Urg   uint16

	// Options is the option list as written; nil with AnyOptions for
	// "<...>" (outbound only: not checked).
	Options    []TCPOption
	AnyOptions bool
}

// OptionKind is a TCP option kind as a script names it.
type OptionKind uint8

// The TCP option kinds packetdrill's grammar has.
const (
	OptNOP OptionKind = iota + 1
	OptEOL
	OptMSS
	OptWScale
	OptSACKOK
	OptSACK
	OptTS
	OptMD5
	OptFastOpen
	OptFastOpenExp
	OptAccECN
)

// TCPOption is one entry of a packet line's option list.
type TCPOption struct {
	Kind     OptionKind
	Value    uint32      // MSS, window scale shift
	TSVal    uint32      // TS
	TSEcr    uint32      // TS
	Blocks   [][2]uint32 // SACK blocks as written
	Raw      string      // MD5, FO cookie, AccECN fields: kept only to name it
	Unparsed bool        // a kind tapstack cannot send or check
}

// size is the option's length on the wire.
func (o TCPOption) size() int {
	switch o.Kind {
	case OptNOP, OptEOL:
		return 1
	case OptMSS:
		return 4
	case OptWScale:
		return 3
	case OptSACKOK:
		return 2
	case OptSACK:
		return 2 + 8*len(o.Blocks)
	case OptTS:
		return 10
	case OptMD5:
		return 18
	}
	return 0
}

func (o TCPOption) String() string {
	switch o.Kind {
	case OptNOP:
		return "nop"
	case OptEOL:
		return "eol"
	case OptMSS:
		return fmt.Sprintf("mss %d", o.Value)
	case OptWScale:
		return fmt.Sprintf("wscale %d", o.Value)
	case OptSACKOK:
		return "sackOK"
	case OptSACK:
		var b strings.Builder
		b.WriteString("sack")
		for _, bl := range o.Blocks {
			fmt.Fprintf(&b, " %d:%d", bl[0], bl[1])
		}
		return b.String()
	case OptTS:
		return fmt.Sprintf("TS val %d ecr %d", o.TSVal, o.TSEcr)
	case OptMD5:
		return "md5 " + o.Raw
	case OptFastOpen:
		return strings.TrimSpace("FO " + o.Raw)
	case OptFastOpenExp:
		return strings.TrimSpace("FOEXP " + o.Raw)
	case OptAccECN:
		return "ECN " + o.Raw
	}
	return "?"
}

// String renders the packet line as a script writes it, without time.
func (p *Packet) String() string {
	var b strings.Builder
	if p.Dir == Inbound {
		b.WriteString("<")
	} else {
		b.WriteString(">")
	}
	switch p.TOSCheck {
	case TOSECN:
		b.WriteString(" [" + ecnName(p.TOS) + "]")
	case TOSECT01:
		b.WriteString(" [ect01]")
	case TOSByte:
		fmt.Fprintf(&b, " (tos 0x%x)", p.TOS)
	}
	if p.SrcPort != 0 || p.DstPort != 0 {
		fmt.Fprintf(&b, " %d>%d", p.SrcPort, p.DstPort)
	}
	f := p.Flags
	if f == "" {
		f = "-"
	}
	fmt.Fprintf(&b, " %s %d:%d(%d)", f, p.Seq, p.Seq+uint32(p.Len), p.Len)
	if strings.Contains(p.Flags, ".") {
		fmt.Fprintf(&b, " ack %d", p.Ack)
	}
	if p.Win >= 0 {
		fmt.Fprintf(&b, " win %d", p.Win)
	}
	if p.Urg != 0 {
		fmt.Fprintf(&b, " urg %d", p.Urg)
	}
	switch {
	case p.AnyOptions:
		b.WriteString(" <...>")
	case len(p.Options) > 0:
		b.WriteString(" <")
		for i, o := range p.Options {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(o.String())
		}
		b.WriteString(">")
	}
	return b.String()
}

func ecnName(v uint8) string {
	switch v {
	case ecnNotECT:
		return "noecn"
	case ecnECT0:
		return "ect0"
	case ecnECT1:
		return "ect1"
	}
	return "ce"
}

// Syscall is a socket call line: name(args) = result [ERRNO (note)].
type Syscall struct {
	Name   string
	Args   []*Expr
	Result *Expr
	Errno  string // "EAGAIN" etc.; "" when none is stated

	// Blocking is set by "...end": the call may block and must return at
	// End (absolute or relative to the event's start, as the event's time
	// is).
	Blocking bool
	End      time.Duration
}

// ExprKind says what an Expr is.
type ExprKind uint8

// The expression kinds of packetdrill's system call arguments.
const (
	ExprEllipsis ExprKind = iota + 1 // ...
	ExprInt                          // 1000, 0x2, -1
	ExprWord                         // SOCK_STREAM, O_NONBLOCK
	ExprString                       // "text" (and "text"... with Ellipsis set)
	ExprList                         // [a, b]
	ExprStruct                       // {a, b} (iovec, msghdr, pollfd, linger, sockaddr)
	ExprOr                           // a|b
	ExprAssign                       // name=value, name(arg)=value inside a struct
	ExprCall                         // htons(80), inet_addr("..."), msg_iov(1)
)

// Expr is a system call argument or result.
type Expr struct {
	Kind     ExprKind
	Int      int64
	Text     string  // Word, String, Call name, Assign name
	Elems    []*Expr // List, Struct, Call arguments; Or operands; Assign: [lhs, rhs]
	Ellipsis bool    // "text"...
}

func (x *Expr) String() string {
	if x == nil {
		return "<nil>"
	}
	join := func(es []*Expr, sep string) string {
		s := make([]string, len(es))
		for i, e := range es {
			s[i] = e.String()
		}
		return strings.Join(s, sep)
	}
	switch x.Kind {
	case ExprEllipsis:
		return "..."
	case ExprInt:
		return fmt.Sprint(x.Int)
	case ExprWord:
		return x.Text
	case ExprString:
		if x.Ellipsis {
			return fmt.Sprintf("%q...", x.Text)
		}
		return fmt.Sprintf("%q", x.Text)
	case ExprList:
		return "[" + join(x.Elems, ", ") + "]"
	case ExprStruct:
		return "{" + join(x.Elems, ", ") + "}"
	case ExprOr:
		return join(x.Elems, "|")
	case ExprAssign:
		return join(x.Elems, "=")
	case ExprCall:
		return x.Text + "(" + join(x.Elems, ", ") + ")"
	}
	return "?"
}
