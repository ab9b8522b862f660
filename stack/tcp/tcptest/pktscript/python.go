package pktscript

import (
	"fmt"
	"strconv"
	"strings"
)

// packetdrill runs the %{ }% blocks of a script with Python after the
// script, each with the TCP_INFO the socket under test had at the block's
// time. The blocks of the upstream scripts are assertions over those
// fields: "assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd", chained comparisons,
// integer arithmetic, variables that live from one block to the next,
// print() and '%'-formatted messages. This file evaluates that subset of
// Python, at the block's time, over the fields tapstack's Info has (see
// tcpInfoFields in engine.go); a block naming a field tapstack lacks is not
// evaluated, and the script is reported as skipped for it unless it fails
// for another reason.

// pyValue is an int, a string, a bool or a tuple.
type pyValue struct {
	kind  byte // 'i' int, 's' string, 'b' bool, 't' tuple
	i     int64
	s     string
	tuple []pyValue
}

func pyInt(i int64) pyValue { return pyValue{kind: 'i', i: i} }
func pyBool(b bool) pyValue {
	if b {
		return pyValue{kind: 'b', i: 1}
	}
	return pyValue{kind: 'b'}
}

func (v pyValue) truth() bool {
	switch v.kind {
	case 's':
		return v.s != ""
	case 't':
		return len(v.tuple) > 0
	}
	return v.i != 0
}

func (v pyValue) String() string {
	switch v.kind {
	case 's':
		return v.s
	case 'b':
		if v.i != 0 {
			return "True"
		}
		return "False"
	case 't':
		s := make([]string, len(v.tuple))
		for i, e := range v.tuple {
			s[i] = e.repr()
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return strconv.FormatInt(v.i, 10)
}

func (v pyValue) repr() string {
	if v.kind == 's' {
		return "'" + v.s + "'"
	}
	return v.String()
}

// pyEnv is the Python state of one script: variables live across blocks.
type pyEnv struct {
	vars map[string]pyValue
	out  []string // what print() printed
}

func newPyEnv() *pyEnv {
	vars := map[string]pyValue{}
	// Linux's tcp_ca_state values and tcpi_state values, as packetdrill's
	// preamble defines them (include/net/tcp.h, include/net/tcp_states.h).
	for i, n := range []string{"TCP_CA_Open", "TCP_CA_Disorder", "TCP_CA_CWR", "TCP_CA_Recovery", "TCP_CA_Loss"} {
		vars[n] = pyInt(int64(i))
	}
	for i, n := range []string{"TCP_ESTABLISHED", "TCP_SYN_SENT", "TCP_SYN_RECV", "TCP_FIN_WAIT1", "TCP_FIN_WAIT2",
		"TCP_TIME_WAIT", "TCP_CLOSE", "TCP_CLOSE_WAIT", "TCP_LAST_ACK", "TCP_LISTEN", "TCP_CLOSING"} {
		vars[n] = pyInt(int64(i + 1))
	}
	vars["TCPI_OPT_TIMESTAMPS"] = pyInt(1)
	vars["TCPI_OPT_SACK"] = pyInt(2)
	vars["TCPI_OPT_WSCALE"] = pyInt(4)
	vars["True"], vars["False"] = pyBool(true), pyBool(false)
	return &pyEnv{vars: vars}
}

// pyError is a failed assertion or a Python error in a block.
type pyError struct{ msg string }

func (e *pyError) Error() string { return e.msg }

// tcpiNames returns the tcpi_ names code reads, in order of first use.
func tcpiNames(code string) []string {
	toks, err := pyLex(code)
	if err != nil {
		return nil
	}
	var names []string
	seen := map[string]bool{}
	for _, t := range toks {
		if t.kind == 'n' && strings.HasPrefix(t.s, "tcpi_") && !seen[t.s] {
			seen[t.s] = true
			names = append(names, t.s)
		}
	}
	return names
}

// run executes a block with the given tcpi_ values.
func (env *pyEnv) run(code string, info map[string]int64) error {
	toks, err := pyLex(code)
	if err != nil {
		return &pyError{"python: " + err.Error()}
	}
	for k, v := range info {
		env.vars[k] = pyInt(v)
	}
	p := &pyParser{toks: toks, env: env}
	return p.block()
}

// pyTok is a token: 'n' name, 'i' int, 's' string, 'o' operator, ';'
// statement end, 'e' end.
type pyTok struct {
	kind byte
	s    string
	i    int64
}

// maxPyTokens bounds a block, maxPyDepth its nesting of brackets (and so
// the evaluator's recursion).
const (
	maxPyTokens = 100000
	maxPyDepth  = 64
)

func pyLex(code string) ([]pyTok, error) {
	var toks []pyTok
	depth := 0 // inside (): newlines do not end statements
	for i := 0; i < len(code); {
		if len(toks) > maxPyTokens {
			return nil, fmt.Errorf("block too long")
		}
		c := code[i]
		switch {
		case c == '\\' && i+1 < len(code) && code[i+1] == '\n':
			i += 2
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(code) && code[i] != '\n' {
				i++
			}
		case c == '\n' || c == ';':
			if depth == 0 {
				toks = append(toks, pyTok{kind: ';'})
			}
			i++
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(code) && code[j] != c {
				if code[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(code) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, pyTok{kind: 's', s: code[i+1 : j]})
			i = j + 1
		case isDigit(c):
			j := i
			for j < len(code) && (isWordByte(code[j])) {
				j++
			}
			v, err := strconv.ParseInt(strings.ReplaceAll(code[i:j], "_", ""), 0, 64)
			if err != nil {
				return nil, fmt.Errorf("bad number %q", code[i:j])
			}
			toks = append(toks, pyTok{kind: 'i', i: v})
			i = j
		case isWordByte(c):
			j := i
			for j < len(code) && isWordByte(code[j]) {
				j++
			}
			toks = append(toks, pyTok{kind: 'n', s: code[i:j]})
			i = j
		default:
			op := ""
			for _, o := range []string{"**", "//", "==", "!=", "<=", ">=", "+=", "-=", "*=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", "=", "[", "]", ":"} {
				if strings.HasPrefix(code[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("unexpected %q", c)
			}
			switch op {
			case "(", "[":
				depth++
				if depth > maxPyDepth {
					return nil, fmt.Errorf("nested deeper than %d", maxPyDepth)
				}
			case ")", "]":
				depth--
			}
			toks = append(toks, pyTok{kind: 'o', s: op})
			i += len(op)
		}
	}
	return append(toks, pyTok{kind: 'e'}), nil
}

type pyParser struct {
	toks []pyTok
	pos  int
	env  *pyEnv
	// skipEval parses without evaluating (an assertion's message when
	// the assertion holds).
	skipEval bool
}

func (p *pyParser) peek() pyTok { return p.toks[p.pos] }

func (p *pyParser) next() pyTok {
	t := p.toks[p.pos]
	if t.kind != 'e' {
		p.pos++
	}
	return t
}

func (p *pyParser) isOp(s string) bool {
	t := p.peek()
	return t.kind == 'o' && t.s == s
}

func (p *pyParser) isName(s string) bool {
	t := p.peek()
	return t.kind == 'n' && t.s == s
}

func (p *pyParser) block() (err error) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(*pyError)
			if !ok {
				panic(r)
			}
			err = e
		}
	}()
	for p.peek().kind != 'e' {
		if p.peek().kind == ';' {
			p.next()
			continue
		}
		p.statement()
		if t := p.peek(); t.kind != ';' && t.kind != 'e' {
			p.fail("unexpected %s after a statement", p.tokString(t))
		}
	}
	return nil
}

func (p *pyParser) fail(format string, args ...any) {
	panic(&pyError{"python: " + fmt.Sprintf(format, args...)})
}

func (p *pyParser) tokString(t pyTok) string {
	switch t.kind {
	case 'i':
		return strconv.FormatInt(t.i, 10)
	case 's':
		return "'" + t.s + "'"
	case ';':
		return "end of statement"
	case 'e':
		return "end of block"
	}
	return t.s
}

func (p *pyParser) statement() {
	switch {
	case p.isName("assert"):
		p.next()
		cond := p.expr()
		if p.isOp(",") {
			p.next()
			if p.skipEval || cond.truth() {
				p.skipEval = true
				p.expr()
				p.skipEval = false
				return
			}
			msg := p.expr()
			panic(&pyError{"AssertionError: " + msg.String()})
		}
		if !p.skipEval && !cond.truth() {
			panic(&pyError{"AssertionError"})
		}
	case p.isName("print"):
		p.next()
		if !p.isOp("(") {
			p.fail("print without (")
		}
		p.next()
		var parts []string
		for !p.isOp(")") {
			parts = append(parts, p.expr().String())
			if !p.isOp(",") {
				break
			}
			p.next()
		}
		if !p.isOp(")") {
			p.fail("print( without )")
		}
		p.next()
		if len(p.env.out) < 10000 {
			p.env.out = append(p.env.out, strings.Join(parts, " "))
		}
	case p.isName("pass"):
		p.next()
	case p.peek().kind == 'n' && pyKeyword(p.peek().s):
		p.fail("unsupported statement %q", p.peek().s)
	case p.peek().kind == 'n' && p.pos+1 < len(p.toks) && p.toks[p.pos+1].kind == 'o' &&
		(p.toks[p.pos+1].s == "=" || p.toks[p.pos+1].s == "+=" || p.toks[p.pos+1].s == "-=" || p.toks[p.pos+1].s == "*="):
		name := p.next().s
		op := p.next().s
		v := p.expr()
		if op != "=" {
			old, ok := p.env.vars[name]
			if !ok {
				p.fail("NameError: name '%s' is not defined", name)
			}
			v = p.arith(op[:1], old, v)
		}
		p.env.vars[name] = v
	default:
		p.expr() // an expression statement
	}
}

// expr: a tuple of one or more comparisons joined by and/or.
func (p *pyParser) expr() pyValue {
	return p.or()
}

// or and and short-circuit as Python's do: the right operand is not
// evaluated (only parsed) when the left decides.
func (p *pyParser) or() pyValue {
	v := p.and()
	for p.isName("or") {
		p.next()
		v = p.rest(v, v.truth(), p.and)
	}
	return v
}

func (p *pyParser) and() pyValue {
	v := p.not()
	for p.isName("and") {
		p.next()
		v = p.rest(v, !v.truth(), p.not)
	}
	return v
}

// rest parses a right operand, evaluating it unless decided; Python
// returns the deciding operand itself.
func (p *pyParser) rest(left pyValue, decided bool, operand func() pyValue) pyValue {
	if !decided || p.skipEval {
		return operand()
	}
	p.skipEval = true
	operand()
	p.skipEval = false
	return left
}

func (p *pyParser) not() pyValue {
	if p.isName("not") {
		p.next()
		return pyBool(!p.not().truth())
	}
	return p.comparison()
}

// comparison evaluates Python's chained comparisons: a < b <= c is
// a < b and b <= c.
func (p *pyParser) comparison() pyValue {
	left := p.sum()
	if !p.isCompare() {
		return left
	}
	result := true
	for p.isCompare() {
		op := p.next().s
		right := p.sum()
		if !p.skipEval && result {
			result = p.compare(op, left, right)
		}
		left = right
	}
	return pyBool(result)
}

func (p *pyParser) isCompare() bool {
	t := p.peek()
	if t.kind != 'o' {
		return false
	}
	switch t.s {
	case "==", "!=", "<", "<=", ">", ">=":
		return true
	}
	return false
}

func (p *pyParser) compare(op string, a, b pyValue) bool {
	if a.kind == 's' || b.kind == 's' {
		switch op {
		case "==":
			return a.kind == b.kind && a.s == b.s
		case "!=":
			return !(a.kind == b.kind && a.s == b.s)
		}
		p.fail("TypeError: cannot order %s and %s", a.repr(), b.repr())
	}
	if a.kind == 't' || b.kind == 't' {
		p.fail("TypeError: tuple comparison")
	}
	switch op {
	case "==":
		return a.i == b.i
	case "!=":
		return a.i != b.i
	case "<":
		return a.i < b.i
	case "<=":
		return a.i <= b.i
	case ">":
		return a.i > b.i
	}
	return a.i >= b.i
}

func (p *pyParser) sum() pyValue {
	v := p.product()
	for p.isOp("+") || p.isOp("-") {
		op := p.next().s
		v = p.arith(op, v, p.product())
	}
	return v
}

func (p *pyParser) product() pyValue {
	v := p.unary()
	for p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%") {
		op := p.next().s
		v = p.arith(op, v, p.unary())
	}
	return v
}

func (p *pyParser) unary() pyValue {
	if p.isOp("-") {
		p.next()
		v := p.unary()
		if p.skipEval {
			return v
		}
		if v.kind == 's' || v.kind == 't' {
			p.fail("TypeError: bad operand for unary -")
		}
		return pyInt(-v.i)
	}
	if p.isOp("+") {
		p.next()
		return p.unary()
	}
	return p.primary()
}

func (p *pyParser) arith(op string, a, b pyValue) pyValue {
	if p.skipEval {
		return a
	}
	if op == "%" && a.kind == 's' {
		return pyValue{kind: 's', s: p.format(a.s, b)}
	}
	if a.kind == 's' && b.kind == 's' && op == "+" {
		return pyValue{kind: 's', s: a.s + b.s}
	}
	if a.kind == 's' || b.kind == 's' || a.kind == 't' || b.kind == 't' {
		p.fail("TypeError: unsupported operand types for %s", op)
	}
	switch op {
	case "+":
		return pyInt(a.i + b.i)
	case "-":
		return pyInt(a.i - b.i)
	case "*":
		return pyInt(a.i * b.i)
	case "/", "//":
		// Python 3's / is true division; the scripts divide only to
		// compare with integers, so floor division stands in.
		if b.i == 0 {
			p.fail("ZeroDivisionError")
		}
		q := a.i / b.i
		if (a.i%b.i != 0) && ((a.i < 0) != (b.i < 0)) {
			q--
		}
		return pyInt(q)
	case "%":
		if b.i == 0 {
			p.fail("ZeroDivisionError")
		}
		m := a.i % b.i
		if m != 0 && (m < 0) != (b.i < 0) {
			m += b.i
		}
		return pyInt(m)
	}
	p.fail("unsupported operator %s", op)
	return pyValue{}
}

// format is Python's printf-style '%' for %d, %i, %s, %x and %%.
func (p *pyParser) format(f string, arg pyValue) string {
	args := []pyValue{arg}
	if arg.kind == 't' {
		args = arg.tuple
	}
	var b strings.Builder
	k := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 >= len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		if f[i] == '%' {
			b.WriteByte('%')
			continue
		}
		if k >= len(args) {
			p.fail("TypeError: not enough arguments for format string")
		}
		switch f[i] {
		case 'x':
			fmt.Fprintf(&b, "%x", args[k].i)
		default:
			b.WriteString(args[k].String())
		}
		k++
	}
	return b.String()
}

func (p *pyParser) primary() pyValue {
	t := p.next()
	switch t.kind {
	case 'i':
		return pyInt(t.i)
	case 's':
		v := pyValue{kind: 's', s: t.s}
		for p.peek().kind == 's' {
			v.s += p.next().s
		}
		return v
	case 'n':
		if p.isOp("(") {
			p.fail("function %s() is not supported", t.s)
		}
		v, ok := p.env.vars[t.s]
		if !ok {
			if p.skipEval {
				return pyInt(0)
			}
			p.fail("NameError: name '%s' is not defined", t.s)
		}
		return v
	case 'o':
		if t.s == "(" {
			if p.isOp(")") {
				p.next()
				return pyValue{kind: 't'}
			}
			v := p.expr()
			if !p.isOp(",") {
				if !p.isOp(")") {
					p.fail("missing )")
				}
				p.next()
				return v
			}
			tuple := []pyValue{v}
			for p.isOp(",") {
				p.next()
				if p.isOp(")") {
					break
				}
				tuple = append(tuple, p.expr())
			}
			if !p.isOp(")") {
				p.fail("missing )")
			}
			p.next()
			return pyValue{kind: 't', tuple: tuple}
		}
	}
	p.fail("unexpected %s", p.tokString(t))
	return pyValue{}
}

// pyKeyword reports Python's statement keywords this subset lacks.
func pyKeyword(s string) bool {
	switch s {
	case "import", "from", "def", "class", "if", "elif", "else", "for", "while", "with", "try", "except",
		"finally", "return", "lambda", "global", "nonlocal", "del", "raise", "yield", "async", "await":
		return true
	}
	return false
}
