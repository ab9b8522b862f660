package pktscript

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// ParseError is a script line the parser cannot take. Unsupported names a
// construct of packetdrill's language that this package does not speak
// (UDP and ICMP packet lines, encapsulation, AccECN, ...): a runner reports
// such a script as skipped, naming it, rather than as broken.
type ParseError struct {
	Path        string
	Line        int
	Msg         string
	Unsupported string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

// ParseFile reads and parses the script at path.
func ParseFile(path string) (*Script, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, string(b))
}

// maxScriptBytes bounds what Parse reads: packetdrill scripts are a few
// kilobytes.
const maxScriptBytes = 4 << 20

// Parse parses the script src; path names it in errors.
func Parse(path, src string) (*Script, error) {
	if len(src) > maxScriptBytes {
		return nil, &ParseError{Path: path, Line: 1, Msg: fmt.Sprintf("script of %d bytes exceeds the %d-byte limit", len(src), maxScriptBytes)}
	}
	toks, lerr := lex(src)
	if lerr != nil {
		return nil, &ParseError{Path: path, Line: lerr.line, Msg: lerr.msg}
	}
	p := &parser{toks: toks, path: path, defines: map[string]string{}}
	s, err := p.script()
	if err != nil {
		return nil, err
	}
	s.Path = path
	return s, nil
}

type parser struct {
	toks    []token
	pos     int
	path    string
	defines map[string]string // --define=SYM=value
}

// bailout carries a *ParseError up the recursive descent.
type bailout struct{ err *ParseError }

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) peekAt(k int) token {
	if p.pos+k < len(p.toks) {
		return p.toks[p.pos+k]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *parser) fail(line int, format string, args ...any) {
	panic(bailout{&ParseError{Path: p.path, Line: line, Msg: fmt.Sprintf(format, args...)}})
}

// unsupported stops at a construct of the language this package does not
// speak.
func (p *parser) unsupported(line int, what string) {
	panic(bailout{&ParseError{Path: p.path, Line: line, Msg: "unsupported: " + what, Unsupported: what}})
}

func (p *parser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tokPunct && t.text == s
}

func (p *parser) acceptPunct(s string) bool {
	if p.isPunct(s) {
		p.next()
		return true
	}
	return false
}

func (p *parser) expectPunct(s string, what string) token {
	t := p.next()
	if t.kind != tokPunct || t.text != s {
		p.fail(t.line, "expected %q %s, found %s", s, what, t)
	}
	return t
}

func (p *parser) isWord(s string) bool {
	t := p.peek()
	return t.kind == tokWord && t.text == s
}

// word reads a word, replacing a --define'd symbol by its value.
func (p *parser) word() token {
	t := p.next()
	if t.kind == tokWord {
		if v, ok := p.defines[t.text]; ok {
			return p.defined(t, v)
		}
	}
	return t
}

// defined turns a defined symbol's value into the token lexer.l's word()
// returns for it.
func (p *parser) defined(t token, v string) token {
	switch {
	case strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) && len(v) >= 2:
		return token{kind: tokString, text: v[1 : len(v)-1], line: t.line}
	case strings.HasPrefix(v, "`") && strings.HasSuffix(v, "`") && len(v) >= 2:
		return token{kind: tokBackquote, text: v[1 : len(v)-1], line: t.line}
	}
	if n, err := strconv.ParseInt(v, 0, 64); err == nil {
		return token{kind: tokInt, text: v, i: n, line: t.line}
	}
	return token{kind: tokWord, text: v, line: t.line}
}

func (p *parser) integer(what string) int64 {
	t := p.word()
	if t.kind != tokInt && t.kind != tokHex {
		p.fail(t.line, "expected %s, found %s", what, t)
	}
	return t.i
}

func (p *parser) u32(what string) uint32 {
	line := p.peek().line
	v := p.integer(what)
	if v < 0 || v > math.MaxUint32 {
		p.fail(line, "%s %d out of range", what, v)
	}
	return uint32(v)
}

func (p *parser) script() (s *Script, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bailout)
			if !ok {
				panic(r)
			}
			s, err = nil, b.err
		}
	}()
	s = &Script{}
	for p.peek().kind == tokOption {
		s.Options = append(s.Options, p.option())
	}
	if t := p.peek(); t.kind == tokBackquote {
		p.next()
		s.Init, s.InitLine = t.text, t.line
	}
	for p.peek().kind != tokEOF {
		// A last backquoted command without a time is the cleanup
		// command.
		if t := p.peek(); t.kind == tokBackquote && p.peekAt(1).kind == tokEOF {
			p.next()
			s.Cleanup, s.CleanLine = t.text, t.line
			break
		}
		if len(s.Events) >= maxEvents {
			p.fail(p.peek().line, "more than %d events", maxEvents)
		}
		s.Events = append(s.Events, p.event())
	}
	if len(s.Events) == 0 {
		return nil, &ParseError{Path: p.path, Line: p.peek().line, Msg: "no events"}
	}
	// packetdrill checks the time's value only: "+0" will do.
	if e := s.Events[0]; e.Time != 0 {
		return nil, &ParseError{Path: p.path, Line: e.Line, Msg: "first event should be at time 0"}
	}
	return s, nil
}

// maxEvents bounds a script's events (the longest upstream script has a
// few hundred).
const maxEvents = 100000

func (p *parser) option() ScriptOption {
	t := p.next()
	o := ScriptOption{Line: t.line, Name: t.text}
	if !p.acceptPunct("=") {
		return o
	}
	v := p.next()
	switch v.kind {
	case tokInt, tokHex, tokWord, tokString, tokIPv4, tokIPv6, tokFloat:
		o.Value = v.text
	default:
		p.fail(v.line, "bad value %s for option --%s", v, o.Name)
	}
	// --define=SYM=value
	if v.kind == tokWord && p.acceptPunct("=") {
		w := p.next()
		switch w.kind {
		case tokString:
			o.Value += `="` + w.text + `"`
		case tokBackquote:
			o.Value += "=`" + w.text + "`"
		case tokEOF:
			p.fail(w.line, "bad value for option --%s", o.Name)
		default:
			o.Value += "=" + w.text
		}
	}
	if o.Name == "define" {
		if sym, val, ok := strings.Cut(o.Value, "="); ok {
			p.defines[sym] = val
		}
	}
	return o
}

func (p *parser) event() Event {
	e := Event{Line: p.peek().line}
	p.eventTime(&e)
	t := p.peek()
	switch {
	case t.kind == tokPunct && (t.text == "<" || t.text == ">"):
		e.Kind = EventPacket
		e.Packet = p.packet()
	case t.kind == tokCode:
		p.next()
		e.Kind, e.Code = EventCode, t.text
	case t.kind == tokBackquote:
		p.next()
		e.Kind, e.Command = EventCommand, t.text
	case t.kind == tokWord || t.kind == tokEllipsis:
		e.Kind = EventSyscall
		e.Syscall = p.syscall()
	default:
		p.fail(t.line, "expected a packet, system call, command or code, found %s", t)
	}
	// packetdrill: '*' and ranges only for outbound packets.
	outbound := e.Kind == EventPacket && e.Packet.Dir == Outbound
	switch e.TimeKind {
	case TimeAny:
		if !outbound {
			p.fail(e.Line, "event time * can only be used with outbound packets")
		}
	case TimeAbsoluteRange, TimeRelativeRange:
		if !outbound {
			p.fail(e.Line, "event time range can only be used with outbound packets")
		}
		if e.End < e.Time {
			p.fail(e.Line, "time range is backwards")
		}
	}
	return e
}

// eventTime reads '+' time, time, '*', time '~' time or '+' time '~' '+'
// time.
func (p *parser) eventTime(e *Event) {
	if p.acceptPunct("*") {
		e.TimeKind = TimeAny
		return
	}
	rel := p.acceptPunct("+")
	e.Time = p.time()
	e.TimeKind = TimeAbsolute
	if rel {
		e.TimeKind = TimeRelative
	}
	if !p.acceptPunct("~") {
		return
	}
	if rel {
		p.expectPunct("+", "after ~ in a relative time range")
		e.TimeKind = TimeRelativeRange
	} else {
		e.TimeKind = TimeAbsoluteRange
	}
	e.End = p.time()
}

// time reads seconds as an integer or a decimal fraction.
func (p *parser) time() time.Duration {
	t := p.next()
	switch t.kind {
	case tokInt, tokFloat:
	default:
		p.fail(t.line, "expected a time, found %s", t)
	}
	f, err := strconv.ParseFloat(t.text, 64)
	if err != nil || f < 0 {
		p.fail(t.line, "bad time %s", t.text)
	}
	if f > 1e6 {
		p.fail(t.line, "time %s beyond 10^6 s", t.text)
	}
	return time.Duration(math.Round(f*1e6)) * time.Microsecond
}

func (p *parser) packet() *Packet {
	dir := p.next()
	pk := &Packet{Dir: Inbound, Win: -1}
	if dir.text == ">" {
		pk.Dir = Outbound
	}
	switch {
	case p.isWord("ipv4"), p.isWord("ipv6"):
		p.unsupported(dir.line, "explicit IP header ("+p.peek().text+" A > B:)")
	case p.isWord("gre"), p.isWord("GREv0"), p.isWord("mpls"):
		p.unsupported(dir.line, p.peek().text+" encapsulation")
	}
	p.ipInfo(pk)
	switch {
	case p.isWord("udp"):
		p.unsupported(dir.line, "UDP packet lines")
	case p.isWord("icmp"):
		p.unsupported(dir.line, "ICMP packet lines")
	case p.isWord("encap"):
		p.unsupported(dir.line, "PSP encapsulation")
	}
	// opt_port_info: INTEGER '>' INTEGER
	if t := p.peek(); t.kind == tokInt && p.peekAt(1).kind == tokPunct && p.peekAt(1).text == ">" {
		src := p.integer("source port")
		p.next()
		dst := p.integer("destination port")
		if src < 0 || src > 65535 || dst < 0 || dst > 65535 {
			p.fail(t.line, "port out of range")
		}
		pk.SrcPort, pk.DstPort = uint16(src), uint16(dst)
	}
	pk.Flags = p.flags()
	// seq: start:end(len)
	line := p.peek().line
	start := p.u32("TCP start sequence number")
	p.expectPunct(":", "in start:end(length)")
	end := p.u32("TCP end sequence number")
	p.expectPunct("(", "in start:end(length)")
	n := p.integer("TCP payload size")
	p.expectPunct(")", "in start:end(length)")
	if n < 0 || n > 65535 {
		p.fail(line, "TCP payload size out of range")
	}
	if end != start+uint32(n) {
		p.fail(line, "inconsistent TCP sequence numbers and payload size")
	}
	pk.Seq, pk.Len = start, int(n)
	if p.isWord("ack") {
		p.next()
		pk.Ack = p.u32("TCP ack sequence number")
	}
	if p.isWord("win") {
		p.next()
		line := p.peek().line
		w := p.integer("TCP window")
		if w < 0 || w > 65535 {
			p.fail(line, "TCP window value out of range")
		}
		pk.Win = int(w)
	}
	if p.isWord("urg") {
		p.next()
		line := p.peek().line
		u := p.integer("urgent pointer")
		if u < 0 || u > 65535 {
			p.fail(line, "urg_ptr value out of range")
		}
		pk.Urg = uint16(u)
	}
	if p.isPunct("<") {
		p.next()
		if p.peek().kind == tokEllipsis {
			p.next()
			pk.AnyOptions = true
		} else {
			pk.Options = p.tcpOptions()
		}
		p.expectPunct(">", "closing the TCP option list")
	}
	if pk.Dir == Inbound {
		switch {
		case pk.AnyOptions:
			p.fail(dir.line, "<...> for TCP options can only be used with outbound packets")
		case pk.Win < 0:
			p.fail(dir.line, "window must be specified for inbound packets")
		case pk.TOSCheck == TOSECT01:
			p.fail(dir.line, "[ect01] can only be used with outbound packets")
		}
	}
	size := 0
	for _, o := range pk.Options {
		size += o.size()
	}
	if size%4 != 0 {
		p.fail(dir.line, "TCP options are not padded correctly to ensure TCP header is a multiple of 4 bytes: %d excess bytes", size%4)
	}
	if size > 40 {
		p.fail(dir.line, "TCP header too large")
	}
	return pk
}

// ipInfo reads [ect0], (tos 0x10), [ttl 3], (flowlabel 0x..), [ce, flowlabel ...].
func (p *parser) ipInfo(pk *Packet) {
	var closer string
	switch {
	case p.isPunct("["):
		closer = "]"
	case p.isPunct("("):
		closer = ")"
	default:
		return
	}
	open := p.next()
	for first := true; ; first = false {
		if !first && !p.acceptPunct(",") {
			break
		}
		t := p.word()
		switch t.text {
		case "noecn":
			pk.TOSCheck, pk.TOS = TOSECN, ecnNotECT
		case "ect0":
			pk.TOSCheck, pk.TOS = TOSECN, ecnECT0
		case "ect1":
			pk.TOSCheck, pk.TOS = TOSECN, ecnECT1
		case "ce":
			pk.TOSCheck, pk.TOS = TOSECN, ecnCE
		case "ect01":
			pk.TOSCheck = TOSECT01
		case "tos":
			v := p.integer("TOS byte")
			if v < 0 || v > 255 {
				p.fail(t.line, "tos out of range for 8 bits")
			}
			pk.TOSCheck, pk.TOS = TOSByte, uint8(v)
		case "ttl":
			v := p.integer("TTL")
			if v < 0 || v > 255 {
				p.fail(t.line, "ttl out of range")
			}
			pk.TTL = uint8(v)
		case "flowlabel":
			p.unsupported(open.line, "IPv6 flow labels")
		default:
			p.fail(t.line, "unknown IP info %s", t)
		}
	}
	p.expectPunct(closer, "closing the IP info")
}

// flags reads tcpdump's letters: a word ("S", "FP", "SEW") with an
// optional ".", a lone "." or "-" for none.
func (p *parser) flags() string {
	t := p.next()
	var f string
	switch {
	case t.kind == tokPunct && t.text == ".":
		return "."
	case t.kind == tokPunct && t.text == "-":
		return ""
	case t.kind == tokWord:
		f = t.text
		if p.isPunct(".") {
			p.next()
			f += "."
		}
	case t.kind == tokFloat:
		p.unsupported(t.line, "AccECN ACE flags ("+t.text+")")
	default:
		p.fail(t.line, "expected TCP flags, found %s", t)
	}
	for _, c := range f {
		switch {
		case strings.ContainsRune(".FSRPEWU", c):
		case strings.ContainsRune("A01234567", c):
			p.unsupported(t.line, "AccECN flags ("+f+")")
		default:
			p.fail(t.line, "bad TCP flags %q", f)
		}
	}
	return f
}

func (p *parser) tcpOptions() []TCPOption {
	var opts []TCPOption
	for first := true; ; first = false {
		if !first && !p.acceptPunct(",") {
			return opts
		}
		if len(opts) >= 40 {
			p.fail(p.peek().line, "TCP option list too long")
		}
		opts = append(opts, p.tcpOption())
	}
}

func (p *parser) tcpOption() TCPOption {
	t := p.word()
	switch t.text {
	case "nop":
		return TCPOption{Kind: OptNOP}
	case "eol":
		return TCPOption{Kind: OptEOL}
	case "mss":
		v := p.integer("mss value")
		if v < 0 || v > 65535 {
			p.fail(t.line, "mss value out of range")
		}
		return TCPOption{Kind: OptMSS, Value: uint32(v)}
	case "wscale":
		v := p.integer("window scale")
		if v < 0 || v > 255 {
			p.fail(t.line, "window scale shift count out of range")
		}
		return TCPOption{Kind: OptWScale, Value: uint32(v)}
	case "sackOK":
		return TCPOption{Kind: OptSACKOK}
	case "sack":
		o := TCPOption{Kind: OptSACK}
		for p.peek().kind == tokInt {
			l := p.u32("TCP SACK left sequence number")
			p.expectPunct(":", "in a SACK block")
			r := p.u32("TCP SACK right sequence number")
			o.Blocks = append(o.Blocks, [2]uint32{l, r})
		}
		if len(o.Blocks) == 0 {
			p.fail(t.line, "sack without blocks")
		}
		if len(o.Blocks) > 4 {
			p.fail(t.line, "more than 4 SACK blocks")
		}
		return o
	case "TS":
		if !p.isWord("val") {
			p.fail(t.line, "expected TS val N ecr N")
		}
		p.next()
		val := p.u32("ts val")
		if !p.isWord("ecr") {
			p.fail(t.line, "expected TS val N ecr N")
		}
		p.next()
		ecr := p.u32("ecr val")
		return TCPOption{Kind: OptTS, TSVal: val, TSEcr: ecr}
	case "md5":
		p.unsupported(t.line, "TCP MD5 signature option")
	case "FO", "FOEXP":
		p.unsupported(t.line, "TCP Fast Open option")
	case "ECN":
		p.unsupported(t.line, "AccECN option")
	}
	p.fail(t.line, "unknown TCP option %s", t)
	return TCPOption{}
}

func (p *parser) syscall() *Syscall {
	sc := &Syscall{}
	if p.peek().kind == tokEllipsis {
		p.next()
		sc.Blocking = true
		sc.End = p.time()
	}
	name := p.word()
	if name.kind != tokWord {
		p.fail(name.line, "expected a system call name, found %s", name)
	}
	sc.Name = name.text
	p.expectPunct("(", "after the system call name")
	if !p.acceptPunct(")") {
		for {
			sc.Args = append(sc.Args, p.expr(0))
			if p.acceptPunct(")") {
				break
			}
			p.expectPunct(",", "between arguments")
		}
	}
	p.expectPunct("=", "before the expected result")
	sc.Result = p.expr(0)
	// opt_errno: WORD note; opt_note: note
	if t := p.peek(); t.kind == tokWord && p.peekAt(1).kind == tokPunct && p.peekAt(1).text == "(" {
		p.next()
		sc.Errno = t.text
	}
	if p.isPunct("(") {
		p.next()
		for !p.isPunct(")") {
			t := p.next()
			if t.kind == tokEOF {
				p.fail(t.line, "unterminated note")
			}
		}
		p.next()
	}
	return sc
}

// maxExprDepth bounds nesting of system call arguments.
const maxExprDepth = 32

// expr reads an expression: operands joined by '|'.
func (p *parser) expr(depth int) *Expr {
	if depth > maxExprDepth {
		p.fail(p.peek().line, "expression nested too deeply")
	}
	x := p.operand(depth)
	if !p.isPunct("|") {
		return x
	}
	or := &Expr{Kind: ExprOr, Elems: []*Expr{x}}
	for p.acceptPunct("|") {
		or.Elems = append(or.Elems, p.operand(depth))
	}
	return or
}

func (p *parser) operand(depth int) *Expr {
	t := p.word()
	switch t.kind {
	case tokEllipsis:
		return &Expr{Kind: ExprEllipsis}
	case tokInt, tokHex:
		return &Expr{Kind: ExprInt, Int: t.i}
	case tokString:
		x := &Expr{Kind: ExprString, Text: t.text}
		for p.peek().kind == tokString { // "a" "b": concatenation
			x.Text += p.next().text
		}
		if p.peek().kind == tokEllipsis {
			p.next()
			x.Ellipsis = true
		}
		return x
	case tokWord:
		var x *Expr
		if p.isPunct("(") {
			p.next()
			x = &Expr{Kind: ExprCall, Text: t.text}
			if !p.acceptPunct(")") {
				for {
					x.Elems = append(x.Elems, p.expr(depth+1))
					if p.acceptPunct(")") {
						break
					}
					p.expectPunct(",", "between arguments")
				}
			}
		} else {
			x = &Expr{Kind: ExprWord, Text: t.text}
		}
		if p.acceptPunct("=") {
			return &Expr{Kind: ExprAssign, Text: t.text, Elems: []*Expr{x, p.expr(depth + 1)}}
		}
		return x
	case tokPunct:
		switch t.text {
		case "[":
			return &Expr{Kind: ExprList, Elems: p.exprList(depth, "]")}
		case "{":
			return &Expr{Kind: ExprStruct, Elems: p.exprList(depth, "}")}
		}
	}
	p.fail(t.line, "unexpected %s in an expression", t)
	return nil
}

func (p *parser) exprList(depth int, closer string) []*Expr {
	var xs []*Expr
	if p.acceptPunct(closer) {
		return xs
	}
	for {
		xs = append(xs, p.expr(depth+1))
		if p.acceptPunct(closer) {
			return xs
		}
		p.expectPunct(",", "between elements")
	}
}
