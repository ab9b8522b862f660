package pktscript

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// upstreamDir is where the 62 upstream scripts are: GPL test data the
// project refers to and never copies (../shared/packetdrill from the
// repository's root), or $TAPSTACK_PACKETDRILL.
func upstreamDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TAPSTACK_PACKETDRILL")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "..", "..", "shared", "packetdrill")
	}
	if _, err := os.Stat(filepath.Join(dir, "tcp")); err != nil {
		if os.Getenv("TAPSTACK_CI") != "" {
			// CI has ../shared beside the clone: a missing directory is
			// a broken set-up, not a reason to pass without the scripts.
			t.Fatalf("upstream packetdrill scripts not found at %s: %v", dir, err)
		}
		t.Skipf("upstream packetdrill scripts not found at %s (set TAPSTACK_PACKETDRILL): %v", dir, err)
	}
	return dir
}

func upstreamScripts(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(upstreamDir(t), "tcp", "*", "*.pkt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 62 {
		t.Fatalf("found %d upstream scripts, want 62", len(files))
	}
	return files
}

// shape names the form of an event line, for the inventory.
func shape(e *Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "time %d ", e.TimeKind)
	switch e.Kind {
	case EventPacket:
		p := e.Packet
		fmt.Fprintf(&b, "packet dir %d flags %q tos %d ports %v win %v <", p.Dir, p.Flags, p.TOSCheck, p.SrcPort != 0, p.Win >= 0)
		if p.AnyOptions {
			b.WriteString("...")
		}
		for _, o := range p.Options {
			fmt.Fprintf(&b, "%d,", o.Kind)
		}
		b.WriteString(">")
	case EventSyscall:
		fmt.Fprintf(&b, "%s blocking %v (", e.Syscall.Name, e.Syscall.Blocking)
		for _, a := range e.Syscall.Args {
			fmt.Fprintf(&b, "%d,", a.Kind)
		}
		fmt.Fprintf(&b, ") = %d %s", e.Syscall.Result.Kind, e.Syscall.Errno)
	case EventCommand:
		b.WriteString("command")
	case EventCode:
		b.WriteString("code")
	}
	return b.String()
}

// TestParseUpstream: every line of the 62 upstream scripts parses (or the
// test names the construct not supported), and every packet and call
// parses back to itself from its rendering.
func TestParseUpstream(t *testing.T) {
	shapes := map[string]int{}
	events := 0
	for _, f := range upstreamScripts(t) {
		s, err := ParseFile(f)
		if pe, ok := err.(*ParseError); ok && pe.Unsupported != "" {
			t.Logf("%s: unsupported construct: %s", f, pe.Unsupported)
			continue
		}
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for i := range s.Events {
			e := &s.Events[i]
			events++
			shapes[shape(e)]++
			switch e.Kind {
			case EventPacket:
				src := "0 " + e.Packet.String()
				again, err := Parse("again", src)
				if err != nil {
					t.Errorf("%s:%d: %q does not parse back: %v", f, e.Line, src, err)
					continue
				}
				if got := again.Events[0].Packet; !reflect.DeepEqual(got, e.Packet) {
					t.Errorf("%s:%d: %q parses back as %+v, want %+v", f, e.Line, src, got, e.Packet)
				}
			case EventSyscall:
				sc := e.Syscall
				src := fmt.Sprintf("0 %s(%s) = %s %s", sc.Name, exprList(sc.Args), sc.Result, sc.Errno)
				if sc.Errno != "" {
					src += " (note)"
				}
				again, err := Parse("again", src)
				if err != nil {
					t.Errorf("%s:%d: %q does not parse back: %v", f, e.Line, src, err)
					continue
				}
				got := again.Events[0].Syscall
				got.Blocking, got.End = sc.Blocking, sc.End
				if !reflect.DeepEqual(got, sc) {
					t.Errorf("%s:%d: %q parses back as %+v, want %+v", f, e.Line, src, got, sc)
				}
			}
		}
	}
	keys := make([]string, 0, len(shapes))
	for k := range shapes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("%d events in %d line shapes:\n%s", events, len(keys), strings.Join(keys, "\n"))
}

// TestParseLines: each line shape of the language, what it parses to.
func TestParseLines(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		line  string
		check func(e *Event) bool
	}{
		{"+.1 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>", func(e *Event) bool {
			p := e.Packet
			return e.TimeKind == TimeRelative && e.Time == 100*ms && p.Dir == Inbound && p.Flags == "S" &&
				p.Seq == 0 && p.Len == 0 && p.Win == 32792 && len(p.Options) == 6 &&
				reflect.DeepEqual(p.Options[0], TCPOption{Kind: OptMSS, Value: 1000}) && reflect.DeepEqual(p.Options[5], TCPOption{Kind: OptWScale, Value: 7})
		}},
		{"0.5 > P. 1:2001(2000) ack 1", func(e *Event) bool {
			p := e.Packet
			return e.TimeKind == TimeAbsolute && e.Time == 500*ms && p.Dir == Outbound && p.Flags == "P." &&
				p.Seq == 1 && p.Len == 2000 && p.Ack == 1 && p.Win == -1 && p.Options == nil && !p.AnyOptions
		}},
		{"* > S 0:0(0) <...>", func(e *Event) bool { return e.TimeKind == TimeAny && e.Packet.AnyOptions }},
		{"+.3~+.303 > . 1:1(0) ack 1", func(e *Event) bool {
			return e.TimeKind == TimeRelativeRange && e.Time == 300*ms && e.End == 303*ms
		}},
		{"1~2 > . 1:1(0) ack 1", func(e *Event) bool {
			return e.TimeKind == TimeAbsoluteRange && e.Time == time.Second && e.End == 2*time.Second
		}},
		{"+0 < - 1:1001(1000) win 20000", func(e *Event) bool { return e.Packet.Flags == "" && e.Packet.Len == 1000 }},
		{"+0 < [ect1] . 1:1(0) ack 1 win 320", func(e *Event) bool {
			return e.Packet.TOSCheck == TOSECN && e.Packet.TOS == ecnECT1
		}},
		{"+0 > [ect01] . 1:1(0) ack 1", func(e *Event) bool { return e.Packet.TOSCheck == TOSECT01 }},
		{"+0 > (tos 0x10) . 1:1(0) ack 1", func(e *Event) bool { return e.Packet.TOSCheck == TOSByte && e.Packet.TOS == 0x10 }},
		{"+0 < 40001>8080 SEW 0:0(0) win 1 <sack 1:2 3:4,nop,nop,TS val 5 ecr 6,eol,eol>", func(e *Event) bool {
			p := e.Packet
			return p.SrcPort == 40001 && p.DstPort == 8080 && p.Flags == "SEW" &&
				reflect.DeepEqual(p.Options[0].Blocks, [][2]uint32{{1, 2}, {3, 4}}) &&
				reflect.DeepEqual(p.Options[3], TCPOption{Kind: OptTS, TSVal: 5, TSEcr: 6})
		}},
		{"+0 > F. 1:1(0) ack 1 win 0 urg 5", func(e *Event) bool { return e.Packet.Win == 0 && e.Packet.Urg == 5 }},
		{"+.08...0.180 connect(3, ..., ...) = 0", func(e *Event) bool {
			sc := e.Syscall
			return sc.Name == "connect" && sc.Blocking && sc.End == 180*ms && len(sc.Args) == 3 &&
				sc.Args[1].Kind == ExprEllipsis && sc.Result.Int == 0
		}},
		{"+.002 ... 0.004 connect(4, ..., ...) = 0", func(e *Event) bool { return e.Syscall.Blocking && e.Syscall.End == 4*ms }},
		{"+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)", func(e *Event) bool {
			return e.Syscall.Result.Int == -1 && e.Syscall.Errno == "EINPROGRESS"
		}},
		{"+0 fcntl(3, F_GETFL) = 0x2 (flags O_RDWR)", func(e *Event) bool {
			return e.Syscall.Result.Int == 2 && e.Syscall.Errno == ""
		}},
		{"+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0", func(e *Event) bool {
			a := e.Syscall.Args[2]
			return a.Kind == ExprOr && len(a.Elems) == 2 && a.Elems[1].Text == "O_NONBLOCK"
		}},
		{"+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0", func(e *Event) bool {
			on, secs, ok := lingerValue(e.Syscall.Args[3])
			return ok && on && secs == 0
		}},
		{"+0 getsockopt(4, SOL_TCP, TCP_MAXSEG, [1100], [4]) = 0", func(e *Event) bool {
			a := e.Syscall.Args[3]
			return a.Kind == ExprList && a.Elems[0].Int == 1100
		}},
		{"+0 sendmsg(4, {msg_name(...)=..., msg_iov(3)=[{..., 100}, {..., 200}, {..., 195}], msg_flags=0}, MSG_MORE) = 495", func(e *Event) bool {
			r := &runner{}
			return r.iovLen(e.Syscall.Args[1]) == 495
		}},
		{"+0 poll([{fd=3, events=POLLIN|POLLOUT, revents=POLLOUT}], 1, 0) = 1", func(e *Event) bool {
			return e.Syscall.Args[0].Kind == ExprList && e.Syscall.Args[0].Elems[0].Kind == ExprStruct
		}},
		{"+0 bind(3, {sa_family=AF_INET, sin_port=htons(8081), sin_addr=inet_addr(\"192.0.2.1\")}, 16) = 0", func(e *Event) bool {
			p, ok := sockaddrPort(e.Syscall.Args[1])
			return ok && p == 8081
		}},
		{"+0 write(4, ..., 1000) = 1000 // a comment", func(e *Event) bool { return e.Syscall.Args[2].Int == 1000 }},
		{"+0 `tc qdisc replace dev tun0 root fq`", func(e *Event) bool {
			return e.Kind == EventCommand && e.Command == "tc qdisc replace dev tun0 root fq"
		}},
		{"+0 %{\nassert tcpi_snd_cwnd == 2, tcpi_snd_cwnd\n}%", func(e *Event) bool {
			return e.Kind == EventCode && e.Code == "\nassert tcpi_snd_cwnd == 2, tcpi_snd_cwnd\n"
		}},
		{"/* a C comment\n spanning lines */ +1.2~+1.240 > . 26000:26000(0) ack 1", func(e *Event) bool {
			return e.Line == 3 && e.End == 1240*ms
		}},
	} {
		s, err := Parse("t", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"+tc.line+"\n")
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if len(s.Events) != 2 || !tc.check(&s.Events[1]) {
			t.Errorf("%q: parsed as %+v", tc.line, s.Events[1:])
		}
	}
}

// TestParseScript: options, the first and the last command.
func TestParseScript(t *testing.T) {
	s, err := Parse("t", "--tolerance_usecs=10000\n--strict_segments\n--define=PORT=8081\n"+
		"`../common/defaults.sh\nsysctl -q net.ipv4.tcp_sack=0`\n"+
		"0 bind(3, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"x\")}, 16) = 0\n"+
		"`/tmp/sysctl_restore_${PPID}.sh`\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []ScriptOption{{1, "tolerance_usecs", "10000"}, {2, "strict_segments", ""}, {3, "define", "PORT=8081"}}
	if !reflect.DeepEqual(s.Options, want) {
		t.Errorf("options %+v, want %+v", s.Options, want)
	}
	if s.InitLine != 4 || !strings.HasPrefix(s.Init, "../common/defaults.sh\n") || s.Cleanup != "/tmp/sysctl_restore_${PPID}.sh" {
		t.Errorf("init %d %q, cleanup %q", s.InitLine, s.Init, s.Cleanup)
	}
	if p, ok := sockaddrPort(s.Events[0].Syscall.Args[1]); !ok || p != 8081 {
		t.Errorf("--define'd port: %d %v", p, ok)
	}
}

// TestParseErrors: lines packetdrill rejects are rejected with the line
// and a reason; constructs this package does not speak are named.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		src, msg, unsupported string
	}{
		{"0 < S 0:0(0) <mss 1460>", "window must be specified", ""},
		{"0 < S 0:0(0) win 1 <...>", "<...> for TCP options can only be used with outbound packets", ""},
		{"0 > . 1:1001(999) ack 1", "inconsistent TCP sequence numbers", ""},
		{"0 > . 1:1(0) ack 1 <mss 1460,nop>", "not padded correctly", ""},
		{"0 > . 1:1(0) ack 1 <mss 1460", `expected ">"`, ""},
		{"0 > Q 1:1(0) ack 1", "bad TCP flags", ""},
		{"+.1~+.05 > . 1:1(0) ack 1", "time range is backwards", ""},
		{"0~1 write(3, ..., 1) = 1", "event time range can only be used with outbound packets", ""},
		{"* write(3, ..., 1) = 1", "event time * can only be used with outbound packets", ""},
		{"1 write(3, ..., 1) = 1", "first event should be at time 0", ""},
		{"0 write(3, ..., 1)", `expected "="`, ""},
		{"0 write(3, ..., \"x) = 1", "unterminated", ""},
		{"0 %{ assert 1", "unterminated %{", ""},
		{"0 > . 1:1(0) ack 99999999999", "out of range", ""},
		{"0 < udp (100)", "unsupported: UDP packet lines", "UDP packet lines"},
		{"0 > icmp unreachable", "unsupported", "ICMP packet lines"},
		{"0 > S 0:0(0) <FO 1234>", "unsupported", "TCP Fast Open option"},
		{"0 > S 0:0(0) <md5 00>", "unsupported", "TCP MD5 signature option"},
		{"0 > ipv4 1.1.1.1 > 2.2.2.2: S 0:0(0)", "unsupported", "explicit IP header (ipv4 A > B:)"},
		{"0 > (flowlabel 0x1) S 0:0(0)", "unsupported", "IPv6 flow labels"},
		{"// nothing but a comment\n", "no events", ""},
	} {
		_, err := Parse("t.pkt", tc.src)
		pe, ok := err.(*ParseError)
		if !ok || !strings.Contains(pe.Error(), tc.msg) || pe.Unsupported != tc.unsupported || !strings.HasPrefix(pe.Error(), "t.pkt:") {
			t.Errorf("%q: error %v, want one with %q (unsupported %q)", tc.src, err, tc.msg, tc.unsupported)
		}
	}
}

// FuzzParse: no input makes the parser panic or run away.
func FuzzParse(f *testing.F) {
	f.Add("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+.1 < S 0:0(0) win 1 <mss 1000,sackOK,nop,nop,nop,wscale 7>\n")
	f.Add("0 sendmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 40}], msg_flags=0}, MSG_MORE) = 40")
	f.Add("--tolerance_usecs=1\n`x`\n0 %{ assert a <= b <= c, 'x' % (1, 2) }%\n`y`")
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse("fuzz", src)
		if err == nil && len(s.Events) == 0 {
			t.Fatal("a script without events parsed")
		}
	})
}
