package pcap

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tapstack/tapstack/event"
)

// The words of packet comments. One table holds them all: the writer
// renders from it, and README.md's vocabulary table is checked against it
// (TestReadmeVocabulary), so the documentation cannot drift from the
// capture.

// Term is one entry of the comment vocabulary.
type Term struct {
	Comment string // how it reads in a comment; <n>, <reason>... are placeholders
	Meaning string
	Linux   string // Linux's or Wireshark's name for the same fact, if it has one
}

// sendWords names each send cause as comments print it; a retransmission
// adds its number ("retransmit #2"). Linux's names are in Vocabulary.
var sendWords = map[event.SendCause]string{
	event.SendData:             "data",
	event.SendAck:              "ACK",
	event.SendDelayedAck:       "delayed ACK",
	event.SendWindowUpdate:     "window update",
	event.SendSyn:              "SYN",
	event.SendSynAck:           "SYN-ACK",
	event.SendRetransmit:       "retransmit",
	event.SendFastRetransmit:   "fast retransmit",
	event.SendSynRetransmit:    "SYN retransmit",
	event.SendSynAckRetransmit: "SYN-ACK retransmit",
	event.SendWindowProbe:      "zero window probe",
	event.SendChallengeAck:     "challenge ACK",
	event.SendRst:              "RST",
	event.SendFin:              "FIN",
	event.SendKeepalive:        "keepalive",
	event.SendSynAckCookie:     "SYN-ACK (SYN cookie)",
}

// numbered are the send causes that carry an attempt number.
func numbered(c event.SendCause) bool {
	switch c {
	case event.SendRetransmit, event.SendFastRetransmit, event.SendSynRetransmit, event.SendSynAckRetransmit,
		event.SendWindowProbe, event.SendKeepalive:
		return true
	}
	return false
}

func retransmission(c event.SendCause) bool {
	switch c {
	case event.SendRetransmit, event.SendFastRetransmit, event.SendSynRetransmit, event.SendSynAckRetransmit:
		return true
	}
	return false
}

// sendText renders a send: "retransmit #2", "SYN-ACK".
func sendText(c event.SendCause, attempt int) string {
	w, ok := sendWords[c]
	if !ok {
		w = c.String()
	}
	if attempt > 0 && numbered(c) {
		w += " #" + strconv.Itoa(attempt)
	}
	return w
}

// dropText renders a drop: "dropped: receive buffer full". A segment for
// no socket is answered with RST unless it is one (RFC 9293 3.10.7.1).
func dropText(r event.DropReason, flags event.Flags) string {
	if r == event.DropNoSocket {
		if flags&0x04 != 0 { // RST
			return "dropped: no socket (a RST is not answered)"
		}
		return "dropped: no socket → RST"
	}
	return "dropped: " + r.String()
}

// stateText renders a state change: "CLOSE-WAIT → LAST-ACK (close)".
func stateText(ev *event.Event) string {
	s := ev.From.String() + " → " + ev.To.String()
	if ev.Cause.Kind != event.CauseSegment || ev.Key == (event.SegKey{}) {
		if d := causeText(ev.Cause); d != "" {
			s += " (" + d + ")"
		}
	}
	return s
}

// causeText says what a state change not caused by a segment was: "close",
// "timer TIME-WAIT", "ICMP ...".
func causeText(c event.Cause) string {
	d := strings.TrimSpace(c.Detail)
	switch c.Kind {
	case event.CauseTimer:
		return "timer " + d
	case event.CauseUser, event.CauseSegment:
		return d
	}
	return strings.TrimSpace(c.String())
}

// ackText renders what an inbound acknowledgment did: "ACK: SND.UNA +2896,
// cwnd 14480", "dup ACK #3, SACKed +1448, cwnd 14480 → fast retransmit".
// A note from the engine is appended after an arrow, whatever it says, so
// new notes appear without a change here.
func ackText(ev *event.Event) string {
	var b strings.Builder
	if ev.DupAck > 0 {
		fmt.Fprintf(&b, "dup ACK #%d", ev.DupAck)
	} else {
		b.WriteString("ACK")
	}
	sep := ": "
	if ev.DupAck > 0 {
		sep = ", "
	}
	if ev.Acked > 0 {
		fmt.Fprintf(&b, "%sSND.UNA +%d", sep, ev.Acked)
		sep = ", "
	}
	if ev.Sacked > 0 {
		fmt.Fprintf(&b, "%sSACKed +%d", sep, ev.Sacked)
		sep = ", "
	}
	if ev.Acked == 0 && ev.Sacked == 0 && ev.DupAck == 0 {
		b.WriteString(sep + "nothing new")
		sep = ", "
	}
	fmt.Fprintf(&b, "%scwnd %d", sep, ev.Cwnd)
	if n := strings.TrimSpace(ev.Note); n != "" {
		// The engine may repeat what the fields say ("dup ACK #3;
		// fast retransmit"): keep only what is new.
		if ev.DupAck > 0 {
			n = strings.TrimPrefix(n, fmt.Sprintf("dup ACK #%d", ev.DupAck))
			n = strings.TrimLeft(n, ";, ")
		}
		if n != "" {
			b.WriteString(" → " + n)
		}
	}
	return b.String()
}

// queueText renders a listener decision with its queues: "SYN queued: SYN
// queue 3/1024, accept queue 1/5".
func queueText(ev *event.Event) string {
	q := ev.Queue
	return fmt.Sprintf("%s: SYN queue %d/%d, accept queue %d/%d", ev.Note,
		q.SynQueueLen, q.SynQueueLimit, q.AcceptQueueLen, q.AcceptQueueLimit)
}

// recoveryText renders a change of course in loss recovery.
func recoveryText(ev *event.Event) string {
	return fmt.Sprintf("recovery: %s, cwnd %d, ssthresh %s", strings.TrimSpace(ev.Note), ev.Cwnd, ssthresh(ev.Ssthresh))
}

// pathMTUText is a path MTU event's note as the frame after it carries
// it: the engine's words, which begin "path MTU" or "MTU probe". It is
// not loss recovery: the window stays.
func pathMTUText(ev *event.Event) string { return strings.TrimSpace(ev.Note) }

func ssthresh(v uint32) string {
	if v >= 1<<30 {
		return "∞"
	}
	return strconv.FormatUint(uint64(v), 10)
}

// rtoText is added to the send that a retransmission timeout caused.
func rtoText(rto time.Duration) string {
	return "RTO fired, rto now " + rto.String()
}

// Vocabulary returns every phrase a packet comment may contain, in the
// order README.md's table lists them.
func Vocabulary() []Term {
	return []Term{
		// What the stack sent, and why.
		{"data", "a segment carrying new data", ""},
		{"ACK", "a pure acknowledgment, sent at once", ""},
		{"delayed ACK", "a pure acknowledgment the delayed-ACK timer sent (RFC 9293 3.8.6.3)", "DelayedACKs"},
		{"window update", "an ACK sent because the receive window opened; on inbound frames also the window change from the wire", "tcp.analysis.window_update"},
		{"SYN, SYN-ACK, FIN, RST", "the control segment of an open, a close or a reset", ""},
		{"SYN-ACK (SYN cookie)", "a stateless SYN-ACK whose ISS is a SYN cookie (RFC 4987)", "SyncookiesSent"},
		{"window <w>: the route's initrwnd, <n> segments of <m>", "on a SYN or SYN-ACK: the window it offers is the route's initial receive window (`initrwnd`), n segments of our MSS m, which grows by two segments for each that arrives in order", "RTAX_INITRWND, rcv_ssthresh"},
		{"retransmit #<n> of frame <f>", "the n-th retransmission after a timeout, and the frame that first carried the data", "tcp.analysis.retransmission, TCPTimeouts"},
		{"fast retransmit #<n> of frame <f>", "a retransmission triggered by duplicate ACKs or SACK (RFC 5681, RFC 6675)", "tcp.analysis.fast_retransmission, TCPFastRetrans"},
		{"SYN retransmit #<n>, SYN-ACK retransmit #<n>", "a handshake segment sent again after its timer fired", "TCPSynRetrans"},
		{"RTO fired, rto now <d>", "on the segment a retransmission timeout sent: the backed-off timeout", "tcp.analysis.rto"},
		{"zero window probe #<n>", "a probe into the peer's zero window, sent as Linux does (SEQ = SND.UNA-1, no data)", "TCPWinProbe, tcp.analysis.keep_alive (Wireshark reads this shape as a keep-alive)"},
		{"challenge ACK", "the ACK RFC 5961 asks for in reply to a suspicious RST, SYN or ACK", "TCPChallengeACK"},
		{"keepalive #<n>", "a keepalive probe (RFC 9293 3.8.4); inbound (\"keepalive\"): the peer's probe, read from the wire", "TCPKeepAlive, tcp.analysis.keep_alive"},
		// What became of an inbound acknowledgment.
		{"ACK: SND.UNA +<n>, cwnd <c>", "an inbound ACK moved SND.UNA by n bytes; the congestion window after it", ""},
		{"dup ACK #<n>", "the n-th duplicate ACK (RFC 5681 2); on outbound frames read from the wire as Wireshark does", "tcp.analysis.duplicate_ack"},
		{"SACKed +<n>", "bytes the ACK's SACK blocks newly covered in the scoreboard", "sacked_out"},
		{"SACK <l>-<r>", "the SACK blocks on the wire, relative to the ISN as Wireshark shows sequence numbers", "tcp.options.sack"},
		{"ACK: nothing new", "an ACK that moved nothing (a window update, a retransmitted ACK)", ""},
		{"→ <note>", "what the engine did next because of this ACK (fast retransmit, undo, ...)", ""},
		{"recovery: <note>, cwnd <c>, ssthresh <s>", "loss recovery changed course (RFC 6675, RFC 8985), on the frame of the ACK or send that made it; \"the link refused <n> segments\" is on the first frame of that refusal, never on a copy sent since; a timeout's note counts the segments it deemed lost and those it spared as sent within RACK's RTT and reordering window (RFC 8985 6.3)", "ca_state"},
		{"path MTU <m> (ICMP[ to another connection to the peer]): MSS <a> → <b>, <n> segments sent again", "an ICMP \"fragmentation needed\" or \"packet too big\" (RFC 1191, RFC 8201) lowered the path MTU; the segments in flight that no longer fit go again, cut (no congestion response); \"to another connection\": the path MTU is the peer's, and this connection follows at its next send, without an ICMP of its own (Linux's tcp_current_mss)", "tcpi_pmtu"},
		{"path MTU <m> (ICMP reported <r>, below min_pmtu 552 | ICMP reported no MTU, RFC 1191 7: locked, sent without DF): MSS <a> → <b>, …", "an IPv4 report below 552, or with no MTU, set min(path MTU, 552), locked: the peer's packets leave without DF so that the small hop fragments them (Linux's __ip_rt_update_pmtu)", "fnhe_mtu_locked"},
		{"path MTU from ICMP expired: path MTU <m>, MSS <a> → <b>", "the path MTU an ICMP error taught has expired (10 minutes, RFC 1191 6.3): the live connection takes its MSS back", "tcp_sync_mss"},
		{"path MTU black hole suspected (<n> timeouts, no ICMP): …: MSS <a> → <b>", "repeated timeouts with no ICMP: the path may drop full-sized segments (RFC 2923 2.1, RFC 4821 7.7); on the retransmission at the new MSS (Options.MTUProbing)", "tcp_mtu_probing"},
		{"route metrics: path MTU <m>: MSS <a> → <b>[, <n> segments sent again]", "the route's MTU metric changed on a live connection (`stack.SetRouteMetrics`, as `ip route change ... mtu`): the MSS follows it at once, up or down; a fall cuts and resends what is in flight, as ICMP would", "icsk_pmtu_cookie"},
		{"path MTU <m> (ICMP) ignored: the route locks its MTU at <l>", "an ICMP report on a route whose MTU is locked (`mtu lock`): nothing changes", "RTAX_MTU locked"},
		{"MTU probe: <m> bytes (RFC 4821; the search is between <l> and <h>)", "on the probe's own frame: one segment larger than the MSS, of MTU m, to learn whether it gets through", "tcp_mtu_probe"},
		{"MTU probe of <m> bytes acknowledged | lost | timed out | unanswered: sent again …", "the probe's fate: acknowledged raises the MSS; otherwise the search's top drops below m and nothing else changes (RFC 4821 7.6.2: no congestion)", "TCPMTUPSuccess, TCPMTUPFail"},
		// What became of inbound text.
		{"in order", "the segment's text was taken at RCV.NXT", ""},
		{"out of order: held", "the text lies beyond a hole and waits in the out-of-order queue", "TCPOFOQueue; tcp.analysis.lost_segment"},
		{"in order: fills a hole", "the text filled a hole, and held text became deliverable", "tcp.analysis.retransmission or out_of_order"},
		{"retransmission of frame <f>", "inbound: the peer sent this sequence range before, in frame f", "tcp.analysis.retransmission"},
		// Drops, with their reasons.
		{"dropped: <reason>", "the engine discarded the segment; the reason is one of event.DropReason's names; frame.verdict says TC_ACT_SHOT", "skb_drop_reason"},
		{"dropped: no socket → RST", "no connection and no listener: answered with RST (RFC 9293 3.10.7.1)", "NO_SOCKET"},
		{"dropped: bad checksum", "the TCP checksum did not verify", "TCP_CSUM"},
		{"dropped: old sequence", "the text was entirely old: a duplicate", "TCP_OLD_DATA"},
		{"dropped: out of window", "the segment lies outside the receive window", "TCP_INVALID_SEQUENCE"},
		{"dropped: PAWS: old timestamp", "RFC 7323 PAWS rejected the segment", "TCP_RFC7323_PAWS"},
		{"dropped: accept queue full", "the final ACK (or a SYN) found the accept queue full", "TCP_LISTEN_OVERFLOW / ListenOverflows"},
		{"dropped: SYN queue full", "a SYN found the SYN queue full and cookies off", "TCPReqQFullDrop"},
		{"dropped: receive memory limit", "the stack's connections together hold `tcp.Options.ReceiveMemoryLimit` bytes of received data, unread or out of order: in-order text is dropped and answered with an ACK at once, out-of-order text without one; a connection holding nothing unread is never refused", "TCPRcvQDrop, TCPOFODrop, PROTO_MEM (tcp_mem)"},
		{"dropped: <reason>; ACK rate limited", "the segment was dropped, and the reply it asked for was held back: an ACK by the connection's rate limit (`tcp.Options.InvalidRateLimit`, Linux's `tcp_invalid_ratelimit`), a challenge ACK by the stack's (\"challenge ACK rate limited\", RFC 5961 7); \"dropped: ACK rate limited\" when that was all", "TCPACKSkippedSeq, TCPACKSkippedPAWS, TCPACKSkippedTimeWait"},
		// Listener decisions.
		{"<decision>: SYN queue <n>/<limit>, accept queue <n>/<limit>", "a listener's decision (SYN queued, accept queue add, accept queue overflow, ...) and both queues after it", "ss -lt Recv-Q/Send-Q"},
		// State changes.
		{"<FROM> → <TO>", "the state change this frame caused (inbound) or carries (outbound: the SYN of a connect, the FIN of a close, the RST of an abort)", "tcp_set_state"},
		{"<FROM> → <TO> (<cause>)", "a change a user call or timer made; on the frame that carries its effect", ""},
		{"earlier <time>: <FROM> → <TO> (<cause>)", "a change no frame carried (a TIME-WAIT expiry), told on the connection's next frame; it is also a pcapng custom block at its time", ""},
		// What the wire says.
		{"zero window", "the frame advertises a zero receive window", "tcp.analysis.zero_window"},
		{"window update rwnd <a> → <b>", "a pure ACK that only changes the advertised window", "tcp.analysis.window_update"},
		{"zero window probe", "inbound: one byte sent into our zero window", "tcp.analysis.zero_window_probe"},
		// The link.
		{"fault: <what> (<knob>, seed <s>, #<n>)", "the fault middleware did this to the frame: dropped, duplicated, reordered, corrupted byte <i>, marked CE (an ECN-capable packet, as an AQM router marks it: RFC 3168 5), delayed <d>, dropped: <n> bytes, over the black hole's MTU <m> (a path MTU black hole, RFC 2923 2.1: an IP packet, or the wire segments of a super-frame, of n bytes; the knob reads \"no ICMP\": the sender was not told); dropped frames carry frame.verdict TC_ACT_SHOT", "tc-netem"},
		{"not sent: the link's queue was full", "an outbound frame the link below refused (tap.Pipe's queue, a TAP's outbound queue): the wire never carried it, and the sender was told (tcpip.ErrNoBufferSpace: tapstack's TCP takes refused new data at its tail back and enters CWR, deems a segment lost that a later one overtook, UDP counts it as Linux does); told on the frame itself (through the fault middleware too, \"(#<n>)\"), and frame.verdict says TC_ACT_SHOT; of a frame the fault middleware sent twice, \"its copy not sent\" or \"…, its copy sent\" when the link refused one copy (the frame went on the wire, no verdict), \"…, its copy not sent (#<n>)\" when it refused both", "tx_dropped, qdisc drops (tc -s qdisc)"},
		{"link drops <n>", "frames the link dropped since the previous frame that no frame of the capture stands for (a TAP's kernel refusing a write, EAGAIN), also in frame.drop_count", "epb_dropcount"},
		{"TSO <n>×<mss> of <bytes> B", "a TCP super-frame a TAP's offloads carried (the kernel's TSO, tapstack's coalesced write, gVisor's GSO), written as the n wire segments of mss bytes it stands for, checksums filled in; the first carries the comment for all", "tso, gso, gro (ethtool -k)"},
		{"TSO <i>/<n> of frame <f>", "a later wire segment of the super-frame whose first segment is frame f", ""},
		{"ARP request who-has <ip> tell <ip> → reply sent", "an ARP request and what the stack did with it", "arp"},
		{"→ reply lost (frame <f>)", "our ARP request, echo request or UDP datagram (\"→ ICMP port unreachable lost\"): its answer, frame f, was lost by the fault middleware on its way in, so the stack never got it; the answer says \"(answers frame <g>, lost)\"", "arp, icmp"},
		{"ICMP <type> ...", "an ICMP or ICMPv6 message, with the TCP connection it quotes", "icmp"},
		// UDP datagrams (gVisor's UDP; the stack reports each one).
		{"udp datagram <n> bytes delivered to <addr>", "an inbound datagram queued to the socket bound to addr (\"(to <k> of <m> sockets)\" for broadcast and multicast)", "InDatagrams"},
		{"udp datagram <n> bytes to <addr>: no port: answered ICMP port unreachable (frame <f>)", "no socket holds the port; IP answers with ICMP port unreachable (RFC 1122 4.1.3.1), in frame f (\"not answered\" for a broadcast or multicast destination); frame.verdict says TC_ACT_SHOT", "NoPorts, UDP_NO_SOCKET"},
		{"udp datagram <n> bytes to <addr>: receive buffer full: dropped", "the socket's receive buffer (SO_RCVBUF) was full, or the socket no longer reads", "RcvbufErrors, SOCKET_RCVBUFF"},
		{"udp datagram <n> bytes to <addr>: bad checksum: dropped", "the UDP checksum did not verify (\"malformed header\": the length did not)", "CsumErrors, UDP_CSUM"},
		{"udp datagram <n> bytes sent", "a socket sent this datagram; \"→ ICMP port unreachable (frame <f>)\": the peer had no socket for it", "OutDatagrams"},
		{"UDP <src> > <dst>, <n> bytes (no event)", "a datagram no event explained: the capture's Writer is not the stack's observer, or it was not for this stack", ""},
		{"no engine event", "a TCP frame no event explained (counted in Stats.Unexplained; a test fails on it)", ""},
	}
}

// Describe renders an engine event in the words of packet comments, for
// traces and logs: the same vocabulary as the capture.
func Describe(ev event.Event) string {
	switch ev.Kind {
	case event.KindSend:
		if ev.Note != "" {
			return sendText(ev.Send, ev.Attempt) + "; " + ev.Note
		}
		return sendText(ev.Send, ev.Attempt)
	case event.KindDrop:
		return dropText(ev.Drop, ev.Key.Flags)
	case event.KindReceive:
		return ev.Note
	case event.KindAck:
		return ackText(&ev)
	case event.KindState:
		s := ev.From.String() + " → " + ev.To.String()
		if d := causeText(ev.Cause); d != "" && ev.Cause.Kind != event.CauseSegment {
			s += " (" + d + ")"
		}
		return s
	case event.KindQueue:
		return queueText(&ev)
	case event.KindRetransmitTimeout:
		return rtoText(ev.RTO)
	case event.KindRecovery:
		return recoveryText(&ev)
	case event.KindPathMTU:
		return pathMTUText(&ev)
	case event.KindUDPDeliver, event.KindUDPNoPort, event.KindUDPDrop, event.KindUDPSend:
		return udpText(&ev)
	}
	return ev.String()
}

// udpText renders a UDP datagram event as its frame's comment: "udp
// datagram 12 bytes delivered to 192.0.2.2:53".
func udpText(ev *event.Event) string {
	n := strconv.Itoa(ev.Key.Len)
	switch ev.Kind {
	case event.KindUDPDeliver:
		s := "udp datagram " + n + " bytes delivered to " + ev.Conn.Local.String()
		if ev.Note != "" {
			s += " (" + ev.Note + ")"
		}
		return s
	case event.KindUDPNoPort:
		s := "udp datagram " + n + " bytes to " + ev.Conn.Local.String() + ": no port"
		if ev.Note != "" {
			s += ": " + ev.Note
		}
		return s
	case event.KindUDPDrop:
		return "udp datagram " + n + " bytes to " + ev.Conn.Local.String() + ": " + ev.Drop.String() + ": dropped"
	case event.KindUDPSend:
		return "udp datagram " + n + " bytes sent"
	}
	return ev.String()
}
