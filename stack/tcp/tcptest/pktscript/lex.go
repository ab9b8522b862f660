package pktscript

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The lexer follows packetdrill's lexer.l token for token, except that the
// words its grammar treats as keywords (ack, win, mss, ...) are plain words
// here and the parser looks at their text where it expects one.

type tokKind uint8

const (
	tokEOF       tokKind = iota
	tokInt               // 1000, -1
	tokHex               // 0x2
	tokFloat             // .1, 0.200, -1.5
	tokWord              // letters, digits, _
	tokString            // "text" (delimiters removed, escapes kept)
	tokBackquote         // `command` (delimiters removed)
	tokCode              // %{ code }% (delimiters and outer blanks removed)
	tokOption            // --name (dashes removed)
	tokEllipsis          // ...
	tokIPv4              // 192.0.2.1
	tokIPv6              // 2001:db8::1
	tokPunct             // any other single character
)

type token struct {
	kind tokKind
	text string
	line int
	i    int64 // tokInt, tokHex
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of script"
	case tokString:
		return strconv.Quote(t.text)
	case tokBackquote:
		return "`" + abbrev(t.text, 30) + "`"
	case tokCode:
		return "%{ " + abbrev(t.text, 30) + " }%"
	case tokOption:
		return "--" + t.text
	}
	return fmt.Sprintf("%q", t.text)
}

func abbrev(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// lexError is a character sequence no token rule matches (an unclosed
// string, code block or comment).
type lexError struct {
	line int
	msg  string
}

// lex splits src into tokens. It is bounded by the input: every step
// consumes at least one byte.
func lex(src string) ([]token, *lexError) {
	var toks []token
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		start, startLine := i, line
		emit := func(k tokKind, text string, end int) {
			toks = append(toks, token{kind: k, text: text, line: startLine})
			line += strings.Count(src[start:end], "\n")
			i = end
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if c == '\n' {
				line++
			}
			i++
			continue
		case strings.HasPrefix(src[i:], "//"):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			i += j // the newline is counted by the whitespace rule
			continue
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return nil, &lexError{line, "unterminated /* comment"}
			}
			end := i + 2 + j + 2
			line += strings.Count(src[i:end], "\n")
			i = end
			continue
		case strings.HasPrefix(src[i:], "%{"):
			j := strings.Index(src[i+2:], "}%")
			if j < 0 {
				return nil, &lexError{line, "unterminated %{ code block"}
			}
			end := i + 2 + j + 2
			code := strings.Trim(src[i+2:end-2], " \t")
			emit(tokCode, code, end)
			continue
		case c == '`' || c == '"':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, &lexError{line, fmt.Sprintf("unterminated %c", c)}
			}
			k := tokString
			if c == '`' {
				k = tokBackquote
			}
			emit(k, src[i+1:j], j+1)
			continue
		case strings.HasPrefix(src[i:], "..."):
			emit(tokEllipsis, "...", i+3)
			continue
		case strings.HasPrefix(src[i:], "--") && i+2 < len(src) && isWordByte(src[i+2]):
			j := i + 2
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			emit(tokOption, src[i+2:j], j)
			continue
		}
		// Numbers, words and addresses: the longest match wins, and of
		// equal lengths the rule listed first in lexer.l (float, integer,
		// hex, word, address).
		best, bestKind := 0, tokPunct
		try := func(n int, k tokKind) {
			if n > best {
				best, bestKind = n, k
			}
		}
		try(matchFloat(src[i:]), tokFloat)
		try(matchInt(src[i:]), tokInt)
		try(matchHex(src[i:]), tokHex)
		try(matchWord(src[i:]), tokWord)
		try(matchIPv4(src[i:]), tokIPv4)
		try(matchIPv6(src[i:]), tokIPv6)
		if best == 0 {
			emit(tokPunct, string(c), i+1)
			continue
		}
		text := src[i : i+best]
		t := token{kind: bestKind, text: text, line: line}
		switch bestKind {
		case tokInt:
			v, err := strconv.ParseInt(text, 10, 64)
			if err != nil {
				return nil, &lexError{line, fmt.Sprintf("integer %s out of range", text)}
			}
			t.i = v
		case tokHex:
			v, err := strconv.ParseUint(text[2:], 16, 64)
			if err != nil {
				return nil, &lexError{line, fmt.Sprintf("integer %s out of range", text)}
			}
			t.i = int64(v)
		}
		toks = append(toks, t)
		i += best
	}
	toks = append(toks, token{kind: tokEOF, line: line})
	return toks, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digits(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}

// matchFloat is [-]?[0-9]*[.][0-9]+.
func matchFloat(s string) int {
	n := 0
	if n < len(s) && s[n] == '-' {
		n++
	}
	n += digits(s[n:])
	if n >= len(s) || s[n] != '.' {
		return 0
	}
	d := digits(s[n+1:])
	if d == 0 {
		return 0
	}
	return n + 1 + d
}

// matchInt is [-]?[0-9]+.
func matchInt(s string) int {
	n := 0
	if n < len(s) && s[n] == '-' {
		n++
	}
	d := digits(s[n:])
	if d == 0 {
		return 0
	}
	return n + d
}

// matchHex is 0x[0-9a-fA-F]+.
func matchHex(s string) int {
	if !strings.HasPrefix(s, "0x") {
		return 0
	}
	n := 2
	for n < len(s) && strings.IndexByte("0123456789abcdefABCDEF", s[n]) >= 0 {
		n++
	}
	if n == 2 {
		return 0
	}
	return n
}

func matchWord(s string) int {
	n := 0
	for n < len(s) && isWordByte(s[n]) {
		n++
	}
	return n
}

// matchIPv4 is [0-9]+.[0-9]+.[0-9]+.[0-9]+.
func matchIPv4(s string) int {
	n := 0
	for k := range 4 {
		d := digits(s[n:])
		if d == 0 {
			return 0
		}
		n += d
		if k < 3 {
			if n >= len(s) || s[n] != '.' {
				return 0
			}
			n++
		}
	}
	return n
}

// matchIPv6 takes the longest run of hex digits, colons and dots that is
// an IPv6 address. lexer.l's expression admits no "a:b" pair (a sequence
// range), and neither does netip.
func matchIPv6(s string) int {
	// The longest IPv6 text, with an embedded IPv4 address, is 45 bytes:
	// the bound keeps lexing linear.
	const maxIPv6 = 45
	n := 0
	for n < len(s) && n < maxIPv6 && (strings.IndexByte("0123456789abcdefABCDEF:.", s[n]) >= 0) {
		n++
	}
	if !strings.Contains(s[:n], ":") {
		return 0
	}
	for ; n > 1; n-- {
		if !strings.Contains(s[:n], ":") {
			return 0
		}
		if a, err := netip.ParseAddr(s[:n]); err == nil && a.Is6() {
			return n
		}
	}
	return 0
}
