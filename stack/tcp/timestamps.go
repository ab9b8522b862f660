package tcp

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// TCP Timestamps (RFC 7323): the TSopt on every segment once both SYNs
// carried it (3.2), TS.Recent and its update rule (4.3), PAWS (5.3, 5.5)
// and RTT measurement from TSecr (4.1). The option itself is encoded in
// options.go and parsed in segment.go; SYN cookies carry the peer's window
// scale in it (cookie.go).

// pawsIdle is how long TS.Recent stays valid without an update: RFC 7323
// 5.5's 24 days (Linux TCP_PAWS_24DAYS). Past it, PAWS would reject every
// segment of a connection idle that long once the peer's clock wrapped
// its sign bit, so TS.Recent is taken as invalid.
const pawsIdle = 24 * 24 * time.Hour

// tsNow is our TSval: the stack's millisecond clock plus the connection's
// offset (RFC 7323 5.4).
func (e *Endpoint) tsNow() uint32 { return tsClockAt(e.now()) + e.tsOffset }

// tsBefore reports whether timestamp a is older than b in the signed
// 32-bit sense of RFC 7323 5.2 ("arithmetic modulo 2^32").
func tsBefore(a, b uint32) bool { return int32(a-b) < 0 }

// setTSRecent records val as TS.Recent, now.
func (e *Endpoint) setTSRecent(val uint32) {
	e.tsRecent = val
	e.tsRecentAge = e.now()
}

// takeSynTimestamp starts the timestamps of a connection from the peer's
// SYN or SYN-ACK: its TSval is TS.Recent and the newest TSval yet.
func (e *Endpoint) takeSynTimestamp(val uint32) {
	e.setTSRecent(val)
	e.tsNewest = val
}

// tsRecentValid reports whether TS.Recent may still be trusted: it was set
// within the last 24 days (RFC 7323 5.5).
func (e *Endpoint) tsRecentValid() bool {
	return e.now().Sub(e.tsRecentAge) < pawsIdle
}

// pawsReject is RFC 7323 5.3 R1, checked before the sequence number: a
// segment with a TSopt whose TSval is older than a valid TS.Recent is an
// old duplicate, unless it is a RST (a RST is judged by its sequence
// number alone, RFC 7323 5.3 and RFC 5961 3). A segment without a TSopt
// cannot be judged: RFC 7323 3.2 lets a TCP drop it, and Linux accepts it
// (tcp_validate_incoming checks PAWS only when saw_tstamp); we follow
// Linux.
//
// Two more exemptions are Linux's (tcp_paws_discard), not the RFC's: a
// TSval one tick older than TS.Recent passes (TCP_PAWS_WINDOW), and so
// does a reordered duplicate ACK (tcp_disordered_ack): a pure ACK at
// RCV.NXT for SND.UNA that would not update the window, no older than an
// RTO. On a path that reorders, the peer's ACKs overtake each other; each
// carries SACK blocks recovery needs, and none can do harm. With 5%
// reordering (interop mixed profile, tapstack to tapstack, 64 MiB) 106
// such ACKs were dropped.
func (e *Endpoint) pawsReject(seg *segment) bool {
	if !e.tsOK || !seg.TS || seg.has(header.TCPFlagRst) || !e.tsRecentValid() {
		return false
	}
	older := int32(e.tsRecent - seg.TSVal)
	if older <= pawsWindow {
		return false
	}
	return !e.disorderedAck(seg, older)
}

// pawsWindow is how many ticks older than TS.Recent a TSval may be and
// still pass PAWS, as Linux's TCP_PAWS_WINDOW.
const pawsWindow = 1

// disorderedAck is Linux's tcp_disordered_ack: seg is a pure duplicate ACK
// in order, that does not move the window, and its TSval is older than
// TS.Recent by at most an RTO (older, in ticks of a millisecond).
func (e *Endpoint) disorderedAck(seg *segment, older int32) bool {
	if !seg.has(header.TCPFlagAck) || seg.Len() != 0 || seg.Seq != e.rcvNxt || seg.Ack != e.sndUna {
		return false
	}
	// Would not update the window (RFC 9293 3.10.7.4's SND.WL1/WL2 rule,
	// Linux's tcp_may_update_window): not a later segment, nor the same
	// one offering more.
	if e.sndWL1.LessThan(seg.Seq) || (seg.Seq == e.sndWL1 && uint32(seg.Window)<<e.sndWndShift > e.sndWnd) {
		return false
	}
	return int64(older) <= e.rto.Milliseconds()
}

// updateTSRecent is RFC 7323 4.3 (2), for a segment that passed the
// sequence check: "If SEG.TSval >= TS.Recent and SEG.SEQ <= Last.ACK.sent,
// then SEG.TSval is copied to TS.Recent; otherwise, it is ignored." The
// second condition makes TSecr echo the earliest segment an ACK covers, so
// a delayed ACK measures the delay too (4.2). Call it before trimming
// moves SEG.SEQ.
func (e *Endpoint) updateTSRecent(seg *segment) {
	if !e.tsOK || !seg.TS || seg.has(header.TCPFlagRst) {
		return
	}
	if tsBefore(e.tsNewest, seg.TSVal) {
		e.tsNewest = seg.TSVal
	}
	// SEG.SEQ as it arrived, before trimming to the window moved it.
	if seqnum.Value(seg.wire.Seq).LessThanEq(e.lastAckSent) && (!tsBefore(seg.TSVal, e.tsRecent) || !e.tsRecentValid()) {
		e.setTSRecent(seg.TSVal)
	}
}

// sampleRTTFromTSecr is RTTM (RFC 7323 4.1): an ACK that acknowledges new
// data echoes, in TSecr, the TSval of the segment that caused it, so
// now - TSecr is a round-trip sample even across retransmissions (Karn's
// rule is not needed, 4.1 and RFC 6298 3). It reports whether a sample was
// taken. Like Linux (tcp_rtt_tsopt_us), a sample is at least one clock
// tick, 1 ms, and a TSecr of 0 or from the future is no sample.
func (e *Endpoint) sampleRTTFromTSecr(seg *segment) bool {
	if !e.tsOK || !seg.TS || seg.TSEcr == 0 {
		return false
	}
	d := int32(e.tsNow() - seg.TSEcr)
	if d < 0 {
		return false
	}
	e.sampleRTT(max(time.Duration(d)*time.Millisecond, time.Millisecond))
	return true
}

// timestampOption writes the TSopt for a segment with flags into b: TSval
// from our clock, TSecr = TS.Recent when the ACK bit is on and 0
// otherwise (RFC 7323 3.2). It returns the bytes written, tsOptionSize.
func (e *Endpoint) timestampOption(flags header.TCPFlags, b []byte) int {
	ecr := uint32(0)
	if flags&header.TCPFlagAck != 0 {
		ecr = e.tsRecent
	}
	return encodeTimestamp(e.tsNow(), ecr, b)
}
