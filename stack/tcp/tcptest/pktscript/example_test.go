package pktscript_test

import (
	"fmt"

	"github.com/tapstack/tapstack/stack/tcp/tcptest/pktscript"
)

// A server's side of a handshake and a write, in packetdrill's language:
// the calls are tapstack's, the '<' packets the peer's, the '>' packets
// what tapstack must send.
func ExampleExecString() {
	r := pktscript.ExecString("hello.pkt", "`sysctl -q net.ipv4.tcp_timestamps=0`\n"+`
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  bind(3, ..., ...) = 0
+0  listen(3, 1) = 0
+0  < S 0:0(0) win 65535 <mss 1460,sackOK,nop,nop>
+0  > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK>
+.1 < . 1:1(0) ack 1 win 65535
+0  accept(3, ..., ...) = 4
+0  write(4, ..., 5) = 5
+0  > P. 1:6(5) ack 1
+.1 < . 1:1(0) ack 6 win 65535
+0  %{ assert tcpi_snd_cwnd == 10 and tcpi_rtt == 100000, (tcpi_snd_cwnd, tcpi_rtt) }%
`, pktscript.Options{})
	fmt.Println(r)
	// Output: PASS
}
