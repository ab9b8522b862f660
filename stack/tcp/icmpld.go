package tcp

import (
	"syscall"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/internal/icmperr"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TCP-LD (RFC 6069, "Making TCP More Robust to Long Connectivity
// Disruptions"), as Linux has it in tcp_v4_err and tcp_v6_err with
// tcp_ld_RTO_revert.
//
// While a connection retransmits on its RTO, each timeout doubles the RTO
// (RFC 6298 5.5): loss is taken for congestion. A router that answers
// the retransmission with a net or host unreachable says otherwise: the
// path is down, not congested. RFC 6069 4 then takes back one doubling
// and rearms the timer with what is left of the reverted RTO, so that
// the connection notices the path's return within about one RTO instead
// of an exponentially backed-off one. The error stays a soft error
// (RFC 1122 4.2.3.9; icmpArrives): reported if the connection later
// gives up.
//
// Where we follow Linux rather than the letter of the RFC:
//   - The RTO is recomputed from SRTT (RFC 6298 2.3; the initial RTO if
//     no RTT was measured) and doubled once for each backoff left, not
//     RFC 6069's RTO_base saved at the first timeout; both stand for the
//     RTO before backing off, since Karn's rule takes no RTT sample from
//     a retransmission.
//   - The remaining time is counted from when the segment at SND.UNA
//     last left (the head of the retransmission queue), as Linux counts
//     it from the skb's timestamp.
//   - Any quote of SND.UNA counts, whichever of its transmissions the
//     router answered: RFC 6069 asks for the answer to a retransmission,
//     which neither Linux nor we can tell apart (both have the same
//     SEG.SEQ; RFC 6069 5.1 discusses the ambiguity).
//   - RFC 6069 defines the algorithm for the ESTABLISHED state; Linux,
//     and we, apply it in every synchronized state that retransmits
//     (a FIN-WAIT-1 or LAST-ACK connection backs off the same way).
//   - The retries count (Linux's icsk_retransmits) is not taken back.
//     MaxRetries bounds the time of the tries, not their number
//     (retriesTimedOut, as Linux's retransmits_timed_out): a revert
//     leaves the time to give up as it was and adds tries within it.

// connectivityDisrupted reports whether an ICMP error that gVisor's
// HandleError path hands icmpArrives is one RFC 6069 3 takes for a
// connectivity disruption: an ICMPv6 destination unreachable with code 0
// (no route to destination), as Linux's tcp_v6_err tests. (ICMPv6's
// address unreachable, code 3, is not among them: RFC 6069 3 names code
// 0 alone as the counterpart of IPv4's two.) For IPv4 it is never: RFC
// 6069 3 and Linux's tcp_v4_err revert for a destination unreachable with
// code 0 (net) or 1 (host) alone, but gVisor's IPv4 hands on codes 6 and
// 9 to 15 (destination network unknown, administratively prohibited, for
// TOS, precedence) as the same net or host unreachable kinds, without
// their code (its handleICMP). The ICMPv4 watcher, which sees the real
// code, takes that decision instead (disruptionArrives).
func connectivityDisrupted(terr stack.TransportError) bool {
	return terr.Origin() == tcpip.SockExtErrorOriginICMP6 &&
		terr.Type() == uint8(header.ICMPv6DstUnreachable) && header.ICMPv6Code(terr.Code()) == header.ICMPv6NetworkUnreachable
}

// disruption4 is the errno of an ICMPv4 destination unreachable that RFC
// 6069 3 takes for a connectivity disruption, code 0 (net) or 1 (host),
// and nil for any other message.
func disruption4(m icmperr.Error) error {
	if m.Net != header.IPv4ProtocolNumber || header.ICMPv4Type(m.Type) != header.ICMPv4DstUnreachable {
		return nil
	}
	switch header.ICMPv4Code(m.Code) {
	case header.ICMPv4NetUnreachable:
		return syscall.ENETUNREACH
	case header.ICMPv4HostUnreachable:
		return syscall.EHOSTUNREACH
	}
	return nil
}

// disruptionArrives is the ICMPv4 watcher's part in a net or host
// unreachable (disruption4) quoting q, cause: the RTO revert alone (RFC
// 6069 4), under the same checks icmpArrives makes, its ports and RFC
// 5927's sequence number, and only in a synchronized state, as Linux's
// tcp_v4_err. gVisor's HandleError path still owns the error itself, the
// soft error or the end of a dial, and hands it to icmpArrives right
// after (gVisor's IPv4 delivers the raw copy first, on the same
// goroutine); so this counts no drop, lest a forged quote count twice.
// The order is Linux's: tcp_ld_RTO_revert runs before sk_err_soft is set.
func (e *Endpoint) disruptionArrives(q icmpQuote, cause error) {
	e.mu.Lock()
	if q.srcPort == e.id.LocalPort && q.dstPort == e.id.RemotePort &&
		e.state.Synchronized() && e.icmpQuoteValid(q.seq) {
		e.revertRTOBackoff(q.seq, cause)
	}
	e.mu.Unlock()
	e.flush()
}

// rtoBackoff is how many times the RTO has doubled since SND.UNA last
// moved: the retransmission timeouts less the doublings RFC 6069 took
// back (Linux's icsk_backoff).
func (e *Endpoint) rtoBackoff() int {
	return max(e.retries-int(e.rtoReverts), 0)
}

// revertRTOBackoff is RFC 6069 4's reversion, as Linux's
// tcp_ld_RTO_revert, for an ICMP error that signals a connectivity
// disruption, cause (its errno), and quotes seq, in a synchronized state: if seq is SND.UNA,
// the segment the timer retransmits, and the RTO has backed off, one
// doubling is taken back, and the timer rearmed with what is left of the
// new RTO since the segment last left, or the segment retransmitted at
// once if nothing is (Linux calls tcp_retransmit_timer: a timeout like any
// other, counted and backed off). The caller holds e.mu.
func (e *Endpoint) revertRTOBackoff(seq seqnum.Value, cause error) {
	if seq != e.sndUna || e.retries == 0 || e.rtoBackoff() == 0 || e.rtxq.empty() || e.rtoReverts == ^uint8(0) {
		return
	}
	e.rtoReverts++
	rto := e.computeRTOOrInitial()
	for range e.rtoBackoff() {
		rto = min(2*rto, e.proto.opts.MaxRTO)
	}
	e.rto = rto
	e.proto.stats.RTOReverts.Add(1)
	if e.proto.opts.Observer != nil {
		// Caused by the ICMP error: a capture puts it on that frame
		// (pcap's icmpRecovery), not on the connection's next one.
		e.emit(event.Event{Kind: event.KindRecovery, Conn: e.connID(), Note: "RTO backoff reverted (RFC 6069)", Cwnd: e.cwnd, Ssthresh: e.ssthresh,
			Cause: event.Cause{Kind: event.CauseSegment, Detail: "ICMP " + cause.Error()}})
	}
	q := &e.rtxq
	left := rto - e.now().Sub(q.at(q.head).xmit)
	if left > 0 {
		e.setTimer(timerRetransmit, e.withinUserTimeout(left))
		return
	}
	e.stopTimer(timerRetransmit)
	e.retransmitTimeout()
}
