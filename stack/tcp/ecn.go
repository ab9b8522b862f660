package tcp

import (
	"strconv"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Explicit Congestion Notification (RFC 3168): a router whose queue
// builds marks a packet Congestion Experienced (CE) in its IP header
// instead of dropping it; the receiver echoes the mark to the sender
// (ECE on its ACKs), and the sender reduces its window as for a loss,
// with nothing to retransmit, and says so (CWR on its next new data).
//
// What goes where, as Linux's classic ECN does it (tcp_ecn_send,
// tcp_ecn_check_ce, tcp_enter_cwr):
//
//   - The handshake agrees (6.1.1): a SYN with ECE and CWR asks, a
//     SYN-ACK with ECE and not CWR agrees. A SYN sent again goes without
//     the flags, as Linux's tcp_ecn_clear_syn has it: a SYN that went
//     unanswered may have met a middlebox that drops ECN-setup SYNs
//     (6.1.1.1). The first SYN's request stands, as in Linux: the peer
//     may have seen it and agree on a SYN-ACK to the plain one, and a
//     SYN-ACK without ECE turns ECN off. A SYN that is itself
//     ECN-capable is not answered with ECN (Linux's
//     tcp_ecn_create_request): SYNs must not be ECT (6.1.1), so its
//     network is taken for one that rewrites the field.
//     A SYN cookie's SYN-ACK agrees to nothing: the cookie keeps no room
//     for it (Linux keeps it in the timestamp).
//   - The sender marks ECT(0) on new data only (6.1.5, 6.1.6):
//     retransmissions, window probes, pure ACKs and control segments go
//     not-ECT, so that their loss, not a mark, tells of congestion.
//   - The receiver, on data marked CE, sets ECE on every ACK until a
//     segment with CWR arrives (6.1.3), and acknowledges the first mark
//     at once: the sender may have a window of one segment.
//   - The sender, on ECE, enters CWR (below) if it is not already
//     reducing, and sets CWR on its next new data segment; it does
//     likewise on every other reduction (fast recovery, a timeout), as
//     6.1.2 asks. On a GSO packet CWR is on the packet's header, and the
//     link that cuts it keeps it on the first segment only, as Linux's
//     tcp_gso_segment does (tap's gso.go, the kernel's GSO).
//
// CWR is Linux's TCP_CA_CWR: the congestion control picks ssthresh and
// PRR (RFC 6937) brings the window down to it over the next round trip,
// as in fast recovery, but nothing is deemed lost and nothing is undone:
// a mark is a real congestion signal. It ends when an ACK goes past the
// RecoveryPoint (SND.NXT when it began): strictly past, as Linux has it,
// so that the CWR flag itself reached the receiver. A loss found during
// CWR turns it into fast recovery without a second reduction (Linux's
// tcp_enter_recovery within a reduction): the sender reduces at most
// once per window of data (6.1.2).

// ecnState is a connection's ECN.
type ecnState struct {
	on   bool // in force: both SYNs agreed (6.1.1)
	seen bool // ECN-capable or CE-marked text arrived (tcpi_options' ECN_SEEN)
	echo bool // the receiver's echo of a CE mark: ECE on every ACK until the peer's CWR (6.1.3)
	cwr  bool // the sender reduced its window: CWR on its next new data segment (6.1.2)
}

// ECNMode says whether connections use ECN (Options.ECN).
type ECNMode uint8

// The modes, as Linux's net.ipv4.tcp_ecn.
const (
	// ECNPassive agrees to ECN when the peer's SYN asks for it, and asks
	// for it on no active open: Linux's default, tcp_ecn=2.
	ECNPassive ECNMode = iota
	// ECNOn asks for ECN on active opens too: tcp_ecn=1.
	ECNOn
	// ECNOff never uses ECN: tcp_ecn=0.
	ECNOff
)

var ecnModeNames = [...]string{ECNPassive: "passive", ECNOn: "on", ECNOff: "off"}

func (m ECNMode) String() string {
	if int(m) < len(ecnModeNames) {
		return ecnModeNames[m]
	}
	return "ECNMode(" + strconv.Itoa(int(m)) + ")"
}

// The ECN field of the IP header (RFC 3168 5): the low two bits of the
// IPv4 TOS byte and of the IPv6 traffic class.
const (
	ecnNotECT uint8 = 0b00
	ecnECT1   uint8 = 0b01
	ecnECT0   uint8 = 0b10
	ecnCE     uint8 = 0b11
	ecnMask   uint8 = 0b11
)

// ipECN is the ECN field of pkt's IP header.
func ipECN(pkt *stack.PacketBuffer) uint8 {
	h := pkt.NetworkHeader().Slice()
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		if len(h) >= header.IPv4MinimumSize {
			tos, _ := header.IPv4(h).TOS()
			return tos & ecnMask
		}
	case header.IPv6ProtocolNumber:
		if len(h) >= header.IPv6MinimumSize {
			tc, _ := header.IPv6(h).TOS()
			return tc & ecnMask
		}
	}
	return ecnNotECT
}

// ecnSynFlags are the ECN flags of a SYN we send: ECE and CWR on the
// first SYN of an active open when ECNOn asks, none on a SYN sent again
// (RFC 3168 6.1.1.1, Linux's tcp_ecn_clear_syn).
func (e *Endpoint) ecnSynFlags(again bool) header.TCPFlags {
	if again || e.proto.opts.ECN != ECNOn {
		return 0
	}
	return header.TCPFlagEce | header.TCPFlagCwr
}

// ecnTakeSynAck puts ECN in force when our first SYN asked (ECNOn: the
// stack's options do not change) and the SYN-ACK agrees: ECE without CWR
// (RFC 3168 6.1.1). A SYN-ACK with both is a peer reflecting the flags
// it does not understand.
func (e *Endpoint) ecnTakeSynAck(seg *segment) {
	e.ecn.on = e.proto.opts.ECN == ECNOn && seg.Flags&(header.TCPFlagEce|header.TCPFlagCwr) == header.TCPFlagEce
	e.ecnTaken()
}

// ecnTakeSyn puts ECN in force for a passive open when the SYN asks for
// it, with ECE and CWR, is not itself ECN-capable, and ECNOff does not
// forbid it (RFC 3168 6.1.1, Linux's tcp_ecn_create_request). The
// SYN-ACK then agrees (ecnSynAckFlags).
func (e *Endpoint) ecnTakeSyn(seg *segment) {
	e.ecn.on = e.proto.opts.ECN != ECNOff && seg.Flags&(header.TCPFlagEce|header.TCPFlagCwr) == header.TCPFlagEce|header.TCPFlagCwr &&
		seg.ecn == ecnNotECT
	e.ecnTaken()
}

func (e *Endpoint) ecnTaken() {
	if e.ecn.on {
		e.proto.stats.ECNConnections.Add(1)
		e.outECN = new(outECN)
	}
}

// ecnSynAckFlags are the ECN flags of our SYN-ACK: ECE when we agreed.
func (e *Endpoint) ecnSynAckFlags() header.TCPFlags {
	if e.ecn.on {
		return header.TCPFlagEce
	}
	return 0
}

// ecnMark decides the ECN of a segment we send, other than a SYN: ECE
// while the receiver echoes a mark, CWR on the first new data after a
// reduction, and the IP header's ECN field it goes with, ECT(0) on new
// data only (RFC 3168 6.1.2 to 6.1.6; Linux's tcp_ecn_send). New data is
// what SendData, SendFin and SendTLP send first (attempt 0); a
// retransmission, a window probe and a segment without text go
// not-ECT.
func (e *Endpoint) ecnMark(cause event.SendCause, attempt int, flags *header.TCPFlags, n int) uint8 {
	if !e.ecn.on || *flags&(header.TCPFlagSyn|header.TCPFlagRst) != 0 {
		return ecnNotECT
	}
	if e.ecn.echo && *flags&header.TCPFlagAck != 0 {
		*flags |= header.TCPFlagEce
	}
	if n == 0 || attempt != 0 || (cause != event.SendData && cause != event.SendFin && cause != event.SendTLP) {
		return ecnNotECT
	}
	if e.ecn.cwr {
		*flags |= header.TCPFlagCwr
		e.ecn.cwr = false
	}
	return ecnECT0
}

// ecnTextArrives is the receiver's part for a segment with text, in
// window (RFC 3168 6.1.3; Linux's tcp_ecn_accept_cwr, then
// tcp_ecn_check_ce): CWR ends the echo, CE starts it again. It reports
// whether the ACK should go at once: for the first mark of an echo, and
// for text with CWR, whose sender may have a window of one segment.
func (e *Endpoint) ecnTextArrives(seg *segment) (ackNow bool) {
	if !e.ecn.on {
		return false
	}
	if seg.has(header.TCPFlagCwr) {
		e.ecn.echo = false
		ackNow = true
	}
	switch seg.ecn {
	case ecnCE:
		e.ecn.seen = true
		e.proto.stats.CEReceived.Add(1)
		if !e.ecn.echo {
			e.ecn.echo = true
			ackNow = true
			e.emitRecovery("ECN: text arrived marked CE (Congestion Experienced); ECE on every ACK until the peer's CWR")
		}
	case ecnECT0, ecnECT1:
		e.ecn.seen = true
	}
	return ackNow
}

// ecnQueueCWR asks for CWR on the next new data segment: the window was
// just reduced (RFC 3168 6.1.2 asks it of every reduction; Linux's
// tcp_ecn_queue_cwr).
func (e *Endpoint) ecnQueueCWR() {
	if e.ecn.on {
		e.ecn.cwr = true
	}
}

// ecnEchoed reports an ACK that echoes congestion: ECE on a segment
// other than a SYN of a connection using ECN (Linux's
// tcp_ecn_rcv_ecn_echo).
func (e *Endpoint) ecnEchoed(seg *segment) bool {
	return e.ecn.on && seg.Flags&(header.TCPFlagEce|header.TCPFlagSyn) == header.TCPFlagEce
}

// enterCWR is the response to an ECE from open (Linux's tcp_enter_cwr):
// ssthresh from the congestion control, PRR from here, the CWR flag on
// the next new data, nothing deemed lost and nothing to undo.
func (e *Endpoint) enterCWR() {
	e.undo.active = false
	e.frto = false
	e.initCwndReduction()
	e.setCAState(caCWR)
	e.proto.stats.ECNReductions.Add(1)
	e.emitRecovery("CWR: the peer echoed congestion (ECE); window reduced, nothing lost")
}

// cwrOnAck is an ACK in CWR: the episode ends once SND.UNA is past its
// RecoveryPoint, strictly, so that the CWR flag reached the receiver
// (Linux's tcp_fastretrans_alert); cwnd is then ssthresh, as at the end
// of fast recovery.
func (e *Endpoint) cwrOnAck(a *ackInfo) {
	if e.recover.LessThan(e.sndUna) {
		if e.rateController() == nil {
			e.cwnd = e.ssthresh
		}
		e.setCAState(caOpen)
		a.endedRecovery = true
		e.emitRecovery("CWR ends")
	}
}
