// Package pktscript runs packetdrill scripts against tapstack's TCP
// engine, in-process, on a fake clock, without privileges.
//
// packetdrill (github.com/google/packetdrill) is the language Linux's TCP
// maintainers pin their stack's behaviour in: a script makes the socket
// calls of one side and plays the packets of the other on a timeline,
//
//	0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
//	+0  bind(3, ..., ...) = 0
//	+0  listen(3, 1) = 0
//	+0  < S 0:0(0) win 65535 <mss 1460>
//	+0  > S. 0:0(0) ack 1 <mss 1460>
//	+.1 < . 1:1(0) ack 1 win 65535
//	+0  accept(3, ..., ...) = 4
//
// Here the calls go to the engine's API (Listen, Accept, Connect, Read,
// Write, CloseWrite, Close, ...), '<' packets are injected by the scripted
// peer of package tcptest, '>' packets are checked against what the stack
// sends, and time is a faketime.ManualClock moved from one timer to the
// next, so that a script of minutes runs in milliseconds and every packet
// is seen at the instant it leaves.
//
// # Matching, as packetdrill matches
//
// Times are absolute ("0.1"), relative ("+.1": to the end of the previous
// event, or to the previous inbound packet's time for back-to-back
// inbound packets), ranges ("+.3~+.4") or any ("*", outbound only), with
// packetdrill's tolerance: --tolerance_usecs (default 4 ms) or
// --tolerance_percent (default 12.5) of the time since the previous event,
// whichever is more. A blocking call written "+0...0.2 read(...)" may block
// while later events run and must return at 0.2; a call without "...end"
// must return at once. Timers that fall due at an event's time run before
// it.
//
// Sequence numbers are relative as in tcpdump: the peer's ISN is its SYN's
// number as written, the stack's is whatever its SYN or SYN-ACK carried,
// called by the script's number (0). An outbound line checks every flag,
// seq, ack, the window unless omitted, the urgent pointer, the options in
// order ("<...>" takes any), the IP ECN bits and TTL where written and the
// payload (zeros, which is what the script's writes send). TS val is
// checked only with --tcp_ts_tick_usecs, TS ecr never; a TS ecr the peer
// sends is mapped to the stack's TS val it names. An outbound line longer
// than one segment takes successive segments until its length, as
// packetdrill aggregates TSO/GSO packets (not with --strict_segments):
// tapstack sends MSS-sized segments where Linux hands the device one large
// one. Packets the script does not expect are passed over until a '>'
// line consumes them, in order.
//
// One extension: ports written before the flags ("< 40001>8080 S ...")
// name a connection of their own, so one script can drive several
// connections of a listener (packetdrill tests one socket at a time).
//
// # Environment
//
// Backquoted shell lines are read, not run: defaults.sh is followed,
// sysctl and set_sysctls.py settings map to the engine's options where
// tapstack has the setting (tcp_timestamps, tcp_sack, tcp_syncookies,
// tcp_*retries*, tcp_rmem/tcp_wmem, tcp_congestion_control,
// tcp_recovery/tcp_early_retrans, tcp_frto, tcp_abort_on_overflow,
// tcp_slow_start_after_idle, tcp_min_tso_segs, tcp_ecn, ...),
// are taken when the value is what tapstack does anyway (tcp_fack=0,
// tcp_reordering=3, tcp_ecn_fallback=1, ...) or concerns a mechanism it
// lacks and the script does not use (TSO sizing, pacing ratios, Fast Open
// keys), and otherwise make the script skip, naming the setting. %{ }%
// blocks are evaluated (a subset of Python: assertions, comparisons,
// arithmetic, variables, print) over the TCP_INFO fields the engine's Info
// has, in Linux's units; a block naming a field it lacks is not evaluated,
// and the script is reported as skipped for it unless something else
// failed.
//
// A script's outcome is PASS, FAIL at a line with the expected packet, the
// packet the stack sent and the packets and engine events before it, or
// SKIP naming what tapstack lacks.
//
// # Use
//
// In a test, Run(t, "testdata/x.pkt", Options{}) or RunString; elsewhere
// Exec and ExecString; from a shell, "tapstack script FILE.pkt...".
package pktscript
