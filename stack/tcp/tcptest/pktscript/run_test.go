package pktscript

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/pcap"
)

// prelude opens a connection from the peer (MSS 1000, no timestamps, no
// SACK): lines 1 to 8; tests add lines from 9 on.
const prelude = "`sysctl -q net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0`\n" +
	"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n" +
	"+0 bind(3, ..., ...) = 0\n" +
	"+0 listen(3, 1) = 0\n" +
	"+0 < S 0:0(0) win 65535 <mss 1000>\n" +
	"+0 > S. 0:0(0) ack 1 <mss 1460>\n" +
	"+.1 < . 1:1(0) ack 1 win 65535\n" +
	"+0 accept(3, ..., ...) = 4\n"

// TestRunScripts: what the runner makes of each kind of line, and how a
// difference is reported: the line, what differed, and for a packet the
// expected and the actual one and the exchange before it.
func TestRunScripts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		status Status
		line   int
		reason string   // a substring of the reason
		detail []string // substrings of the detail
	}{
		{"handshake and data", prelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n", Pass, 0, "", nil},
		{"segments aggregate as TSO", prelude + "+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n", Pass, 0, "", nil},
		{"strict segments", "--strict_segments\n" + prelude + "+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n",
			Fail, 11, "live packet payload: expected 3000 bytes vs actual 1000 bytes", []string{"script packet: 0.100000 > P. 1:3001(3000) ack 1", "actual packet: 0.100000 > . 1:1001(1000) ack 1"}},
		{"wrong ack", prelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 2\n",
			Fail, 10, "tcp_ack_seq: expected 2 vs actual 1", []string{"script packet: 0.100000 > P. 1:11(10) ack 2", "actual packet: 0.100000 > P. 1:11(10) ack 1 win ", "engine: ", "send data"}},
		{"wrong flags and window", prelude + "+0 write(4, ..., 10) = 10\n+0 > F. 1:11(10) ack 1 win 1\n",
			Fail, 10, "flags: expected F. vs actual P.; tcp_window: expected 1 vs actual", nil},
		{"options differ", prelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <nop,nop,TS val 1 ecr 0>\n",
			Fail, 10, "bad outbound TCP options: expected <nop,nop,TS val 1 ecr 0> vs actual <>", nil},
		{"any options", prelude + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <...>\n", Pass, 0, "", nil},
		{"delayed ACK late", prelude + "+0 setsockopt(4, SOL_TCP, TCP_QUICKACK, [0], 4) = 0\n+0 < P. 1:101(100) ack 1 win 65535\n+0 > . 1:1(0) ack 101\n",
			Fail, 11, "timing error: expected outbound packet at 0.100000 sec but happened at 0.140000 sec; tolerance 0.004000 sec", nil},
		{"delayed ACK in range", prelude + "+0 setsockopt(4, SOL_TCP, TCP_QUICKACK, [0], 4) = 0\n+0 < P. 1:101(100) ack 1 win 65535\n+0~+.05 > . 1:1(0) ack 101\n", Pass, 0, "", nil},
		{"delayed ACK on time", prelude + "+0 setsockopt(4, SOL_TCP, TCP_QUICKACK, [0], 4) = 0\n+0 < P. 1:101(100) ack 1 win 65535\n+.04 > . 1:1(0) ack 101\n", Pass, 0, "", nil},
		{"delayed ACK early", prelude + "+0 setsockopt(4, SOL_TCP, TCP_QUICKACK, [0], 4) = 0\n+0 < P. 1:101(100) ack 1 win 65535\n+.1 > . 1:1(0) ack 101\n",
			Fail, 11, "expected outbound packet at 0.200000 sec but happened at 0.140000 sec; tolerance 0.012500 sec", nil},
		{"delayed ACK any time", prelude + "+0 setsockopt(4, SOL_TCP, TCP_QUICKACK, [0], 4) = 0\n+0 < P. 1:101(100) ack 1 win 65535\n* > . 1:1(0) ack 101\n", Pass, 0, "", nil},
		{"nothing sent", prelude + "+.1 > . 1:1(0) ack 1\n", Fail, 9, "expected > . 1:1(0) ack 1, got nothing by 2.212500 sec", nil},
		{"blocking read", prelude + "+0...0.1 read(4, ..., 100) = 100\n+.1 < P. 1:101(100) ack 1 win 65535\n", Pass, 0, "", nil},
		{"blocking read early", prelude + "+0...0.15 read(4, ..., 100) = 100\n+.1 < P. 1:101(100) ack 1 win 65535\n",
			Fail, 9, "timing error: expected system call return at 0.250000 sec but happened at 0.200000 sec", nil},
		{"blocking read late", prelude + "+0...0.05 read(4, ..., 100) = 100\n+.1 < P. 1:101(100) ack 1 win 65535\n",
			Fail, 9, "timing error: expected system call return at 0.150000 sec but happened at 0.200000 sec", nil},
		{"call blocks", prelude + "+0 read(4, ..., 100) = 100\n", Fail, 9, "read blocked for 120.000000 sec; the script expects it to return at once", nil},
		{"nonblocking read", prelude + "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 fcntl(4, F_GETFL) = 0x802\n+0 read(4, ..., 100) = -1 EAGAIN (Resource temporarily unavailable)\n", Pass, 0, "", nil},
		{"wrong result", prelude + "+0 write(4, ..., 10) = 11\n", Fail, 9, "write returned 10, expected 11", nil},
		{"errno", prelude + "+0 shutdown(4, SHUT_WR) = 0\n+0 > F. 1:1(0) ack 1\n+0 write(4, ..., 1) = -1 EPIPE (Broken pipe)\n", Pass, 0, "", nil},
		{"wrong errno", prelude + "+0 shutdown(4, SHUT_WR) = 0\n+0 write(4, ..., 1) = -1 EAGAIN (x)\n", Fail, 10, "write returned -1 EPIPE, expected -1 EAGAIN", nil},
		{"still blocked at the end", prelude + "+0...1 read(4, ..., 100) = 100\n", Fail, 9, "exiting while a blocking system call (read) is in progress", nil},
		{"TCP_INFO", prelude + "+0 %{ assert tcpi_snd_mss == 1000, tcpi_snd_mss; assert tcpi_state == TCP_ESTABLISHED }%\n", Pass, 0, "", nil},
		{"TCP_INFO differs", prelude + "+0 %{ assert tcpi_snd_cwnd == 1, tcpi_snd_cwnd }%\n", Fail, 9, "AssertionError: 10 (tcpi_snd_cwnd=10)", nil},
		{"TCP_INFO field missing", prelude + "+0 %{ assert tcpi_fackets == 0 }%\n", Skip, 0, "needs tcpi_fackets in TCP_INFO", nil},
		{"a failure beats a skip", prelude + "+0 %{ assert tcpi_fackets == 0 }%\n+0 write(4, ..., 1) = 2\n", Fail, 10, "write returned 1", nil},
		{"getsockopt", prelude + "+0 getsockopt(4, SOL_TCP, TCP_MAXSEG, [1000], [4]) = 0\n" +
			"+0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [5000], 4) = 0\n+0 getsockopt(4, SOL_SOCKET, SO_SNDBUF, [10000], [4]) = 0\n" +
			"+0 ioctl(4, SIOCINQ, [0]) = 0\n", Pass, 0, "", nil},
		{"SO_SNDBUF bounds a write", prelude + "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [5000], 4) = 0\n" +
			"+0 write(4, ..., 20000) = 10000\n", Pass, 0, "", nil},
		{"getsockopt differs", prelude + "+0 getsockopt(4, SOL_TCP, TCP_MAXSEG, [1460], [4]) = 0\n", Fail, 9, "getsockopt TCP_MAXSEG: expected [1460], got [1000]", nil},
		{"linger abort", prelude + "+0 setsockopt(4, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0\n+0 close(4) = 0\n+0 > R. 1:1(0) ack 1\n", Pass, 0, "", nil},
		{"setting skipped", "`sysctl -q net.ipv4.tcp_ecn=3`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n", Skip, 0, "needs net.ipv4.tcp_ecn=3 (Accurate ECN)", nil},
		{"setting changed while running", prelude + "+0 `sysctl -q net.ipv4.tcp_sack=1`\n", Skip, 0, "needs a setting changed while the stack runs: sysctl -q net.ipv4.tcp_sack=1", nil},
		{"no-op command while running", prelude + "+0 `tc qdisc add dev tun0 root pfifo`\n", Pass, 0, "", nil},
		{"unsupported construct", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < udp (10)\n", Skip, 0, "needs UDP packet lines (line 2)", nil},
		{"unsupported call", prelude + "+0 setsockopt(4, SOL_TCP, TCP_NOTSENT_LOWAT, [1], 4) = 0\n", Skip, 0, "needs setsockopt TCP_NOTSENT_LOWAT", nil},
		{"syntax error", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > Q 1:1(0)\n", Fail, 2, "bad TCP flags", nil},
		{"unknown option", "--frobnicate\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n", Skip, 0, "needs option --frobnicate", nil},
		{"active open", "`sysctl -q net.ipv4.tcp_timestamps=0`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n" +
			"+0...0.1 connect(3, ..., ...) = 0\n+0 > S 0:0(0) <...>\n+.1 < S. 0:0(0) ack 1 win 65535 <mss 1000>\n+0 > . 1:1(0) ack 1\n" +
			"+0 write(3, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n", Pass, 0, "", nil},
		{"nonblocking connect", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n" +
			"+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)\n+0 > S 0:0(0) <...>\n" +
			"+.1 < S. 0:0(0) ack 1 win 65535 <mss 1000>\n+0 > . 1:1(0) ack 1\n+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0\n", Pass, 0, "", nil},
		{"connection refused", "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0...0.1 connect(3, ..., ...) = -1 ECONNREFUSED (Connection refused)\n" +
			"+0 > S 0:0(0) <...>\n+.1 < R. 0:0(0) ack 1 win 0\n", Pass, 0, "", nil},
		{"IPv6", "--ip_version=ipv6\n" + strings.Replace(prelude, "<mss 1460>", "<mss 1440>", 1) + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n", Pass, 0, "", nil},
		{"timestamps mapped", "--tcp_ts_tick_usecs=1000\n`sysctl -q net.ipv4.tcp_sack=0`\n" +
			"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n" +
			"+0 < S 0:0(0) win 65535 <mss 1000,nop,nop,TS val 100 ecr 0>\n+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,TS val 700 ecr 100>\n" +
			"+.1 < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 200 ecr 700>\n+0 accept(3, ..., ...) = 4\n" +
			"+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <nop,nop,TS val 800 ecr 200>\n", Pass, 0, "", nil},
		{"timestamp off by 50 ms", "--tcp_ts_tick_usecs=1000\n`sysctl -q net.ipv4.tcp_sack=0`\n" +
			"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n" +
			"+0 < S 0:0(0) win 65535 <mss 1000,nop,nop,TS val 100 ecr 0>\n+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,TS val 700 ecr 100>\n" +
			"+.1 < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 200 ecr 700>\n+0 accept(3, ..., ...) = 4\n" +
			"+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1 <nop,nop,TS val 850 ecr 200>\n",
			Fail, 11, "bad outbound TCP timestamp value: expected 850 vs actual 800, tolerance 0.012500 sec", nil},
		{"unknown TS ecr", "`sysctl -q net.ipv4.tcp_sack=0`\n" +
			"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n" +
			"+0 < S 0:0(0) win 65535 <mss 1000,nop,nop,TS val 100 ecr 0>\n+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,TS val 700 ecr 100>\n" +
			"+.1 < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 200 ecr 123>\n",
			Fail, 7, "unable to infer live TS ecr for script TS ecr 123", nil},
		{"another connection's packet", "`sysctl -q net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0`\n" +
			"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n" +
			"+0 < 40001>8080 S 0:0(0) win 65535 <mss 1000>\n+0 < 40002>8080 S 0:0(0) win 65535 <mss 1000>\n" +
			"+0 > 8080>40002 S. 0:0(0) ack 1 <mss 1460>\n",
			Fail, 7, "packet is not for expected socket (it is for connection 40001>8080)", []string{"expected a packet of connection 40002>8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ExecString(tc.name+".pkt", tc.script, Options{})
			if r.Status != tc.status || r.Line != tc.line || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("%s (line %d, %q)\nwant %v at line %d with %q\ndetail:\n%s\ntrace:\n%s", r.String(), r.Line, r.Reason,
					tc.status, tc.line, tc.reason, r.Detail, r.Trace)
			}
			for _, d := range tc.detail {
				if !strings.Contains(r.Detail, d) {
					t.Errorf("detail lacks %q:\n%s", d, r.Detail)
				}
			}
		})
	}
}

// TestRunResultString: the one-line summaries the CLI prints.
func TestRunResultString(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{Status: Pass}, "PASS"},
		{Result{Status: Fail, Line: 17, Reason: "tcp_ack_seq: expected 2 vs actual 1"}, "FAIL line 17: tcp_ack_seq: expected 2 vs actual 1"},
		{Result{Status: Fail, Reason: "open x: no such file"}, "FAIL: open x: no such file"},
		{Result{Status: Skip, Reason: "needs ECN"}, "SKIP: needs ECN"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestCapture: the exchange as a pcapng section, every frame with its
// direction and the engine's words for it, on the script's clock.
func TestCapture(t *testing.T) {
	var buf bytes.Buffer
	r := ExecString("capture.pkt", prelude+"+.5 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n", Options{Capture: &buf})
	if r.Status != Pass {
		t.Fatalf("%s\n%s", r, r.Detail)
	}
	pkts, err := pcap.ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		dir     pcap.Direction
		comment string
		at      float64
	}{
		{pcap.Inbound, "SYN queued", 0},
		{pcap.Outbound, "SYN-ACK", 0},
		{pcap.Inbound, "SYN-RECEIVED → ESTABLISHED", 0.1},
		{pcap.Outbound, "data", 0.6},
	}
	if len(pkts) != len(want) {
		t.Fatalf("%d frames, want %d", len(pkts), len(want))
	}
	for i, w := range want {
		p := pkts[i]
		at := p.Time.Sub(pkts[0].Time).Seconds()
		if p.Direction != w.dir || !strings.Contains(p.Comment(), w.comment) || at < w.at-1e-9 || at > w.at+1e-9 {
			t.Errorf("frame %d: %v at %.6f, %q; want %v at %.6f with %q", i+1, p.Direction, at, p.Comment(), w.dir, w.at, w.comment)
		}
	}
}

// TestTapstackScripts: tapstack's own scripts in testdata, for the queue
// and teardown behaviours, pass.
func TestTapstackScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.pkt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("%d scripts in testdata, want the SYN queue, accept queue and TIME-WAIT ones", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			Run(t, f, Options{})
		})
	}
}
