package tcp

import (
	"fmt"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"

	"github.com/tapstack/tapstack/event"
)

// Packetization-layer path MTU discovery (RFC 4821), as Linux does it for
// TCP (tcp_mtu_probing, tcp_mtu_probe). Path MTU discovery by ICMP
// (pmtu.go) fails on a black hole (RFC 2923 2.1): a path whose next hop
// has a smaller MTU and whose "fragmentation needed" never comes back,
// because a firewall drops ICMP. Every full-sized segment then vanishes,
// the smaller ones pass, and a sender that only listens for ICMP
// retransmits the same full-sized segment until it gives up. With
// probing the sender finds the MTU itself, from what the peer
// acknowledges.
//
// The search (RFC 4821 7.2) keeps two MTUs: searchLow, known to get
// through, and searchHigh, the largest not known to fail. It starts from
// the larger of BaseMSS's MTU and the one the connection's MSS makes, up
// to the MTU the handshake and the path allow. A probe is one segment
// of the size halfway between them, sent as new data (7.4: it carries
// data the connection needed to send anyway); its acknowledgment raises
// searchLow, and with it the MSS; its loss lowers searchHigh, and is not
// taken for congestion (7.6.2: the window stays, the probe's data goes
// again at the current MSS). The search ends when the two are within
// mtuProbeThreshold and starts again after ProbeInterval.
//
// Black hole detection (RFC 4821 7.7, RFC 2923 2.1), Linux's
// tcp_mtu_probing in tcp_write_timeout: when the retransmission timer
// has fired again and again (the data has waited about 15 minimum RTOs,
// Linux's tcp_retries1 = 3 doublings from TCP_RTO_MIN), a full-sized
// segment may be what the path drops. The first time, the search starts
// (MTUProbingBlackHole) and the MSS drops to BaseMSS; each later time
// in the same silence halves it, down to 48 bytes (minSndMSS; Linux's
// tcp_mtu_probe_floor and tcp_min_snd_mss). The retransmissions that
// follow go at the new size.
//
// When: Options.MTUProbing, as Linux's tcp_mtu_probing sysctl: off by
// default as in Linux (0), after a black hole is suspected (1), or from
// the handshake on (2).

// MTUProbing says when a connection searches for the path MTU itself
// (RFC 4821).
type MTUProbing uint8

// The modes, as Linux's tcp_mtu_probing.
const (
	MTUProbingOff       MTUProbing = iota // never: ICMP alone (pmtu.go); Linux's default, 0
	MTUProbingBlackHole                   // once the retransmission timer suggests a black hole: 1
	MTUProbingOn                          // from the handshake on: 2
)

func (m MTUProbing) String() string {
	switch m {
	case MTUProbingOff:
		return "off"
	case MTUProbingBlackHole:
		return "blackhole"
	case MTUProbingOn:
		return "on"
	}
	return fmt.Sprintf("MTUProbing(%d)", uint8(m))
}

// The search's constants, as Linux's sysctls have them.
const (
	DefaultBaseMSS       = 1024             // tcp_base_mss: where the search starts, and the MSS after a black hole
	DefaultProbeInterval = 10 * time.Minute // tcp_probe_interval: how long a finished search rests
	mtuProbeThreshold    = 8                // tcp_probe_threshold: the search ends when searchHigh - searchLow is less
)

// mtuProbe is one connection's search. Sizes are MTUs: IP packets, headers
// and the timestamp option included.
type mtuProbe struct {
	searchLow, searchHigh int
	probeSize             int          // MTU of the probe in flight; 0: none
	probeSeq, probeEnd    seqnum.Value // its sequence space
	stamp                 tcpip.MonotonicTime
}

// capAt keeps the search at or below mtu: what the handshake allows, or
// a path MTU ICMP reported (Linux's tcp_sync_mss lowers search_high).
func (p *mtuProbe) capAt(mtu int) {
	p.searchHigh = min(p.searchHigh, mtu)
	p.searchLow = min(p.searchLow, p.searchHigh)
}

// mtuForMSS is the size of the IP packet a segment of mss bytes makes
// (Linux's tcp_mss_to_mtu); mssForMTU (pmtu.go) is its inverse.
func (e *Endpoint) mtuForMSS(mss int) int {
	n := mss + e.netHeaderLen() + 20
	if e.tsOK {
		n += tsOptionSize
	}
	return n
}

// mtuProbeInit is the handshake's part (Linux's tcp_mtup_init): with
// MTUProbingOn it starts the search, up to the MSS the handshake agreed
// (synMSS), the ceiling any search comes back to.
func (e *Endpoint) mtuProbeInit() {
	e.mtup = nil
	if e.proto.opts.MTUProbing == MTUProbingOn {
		e.mtuProbeStart()
	}
}

// mtuProbeStart starts the search: from BaseMSS's MTU up to what the
// handshake allows. The MSS is not cut yet: it follows searchLow only
// when something resynchronizes it, as in Linux, where tcp_mtup_init
// leaves mss_cache as it is.
func (e *Endpoint) mtuProbeStart() {
	p := &mtuProbe{searchLow: e.mtuForMSS(e.proto.opts.BaseMSS), searchHigh: e.mtuForMSS(int(e.synMSS)), stamp: e.now()}
	// Never above what the peer's MSS and the path allow: a peer that
	// announced less than BaseMSS, or a path whose MTU is smaller than
	// BaseMSS's, keeps its MSS, and a black hole halves from there. The
	// path's MTU bounds searchHigh where it is used (mtuProbeSend), so
	// that a route's MTU metric raised later lets the search go higher;
	// an MTU ICMP reported bounds it for good.
	p.searchLow = min(p.searchLow, e.pathMTU(), p.searchHigh)
	if learned, ok := e.learnedMTU(e.metrics()); ok {
		p.capAt(int(learned.mtu))
	}
	e.mtup = p
}

// syncMSS sets the send MSS from what bounds it (Linux's tcp_sync_mss):
// the peer's MSS and the user's clamp (synMSS), the path MTU (the route's
// or its metric's, or one ICMP reported), and while a search runs the
// largest size known to get through.
func (e *Endpoint) syncMSS() {
	mss := min(int(e.synMSS), e.mssForMTU(uint32(e.sizingMTU())))
	if p := e.mtup; p != nil {
		mss = min(mss, e.mssForMTU(uint32(p.searchLow)))
	}
	e.sndMSS = max(mss, e.mssFloor())
}

// blackHoleSuspected is the check a retransmission timeout makes before
// it retransmits (RFC 4821 7.7, Linux's tcp_mtu_probing from
// tcp_write_timeout): after the second timeout in a row, once the data
// has waited 15 minimum RTOs (Linux's retransmits_timed_out with
// tcp_retries1, counted here from progressAt, as the user timeout is),
// the path may be dropping full-sized segments. The caller holds e.mu.
func (e *Endpoint) blackHoleSuspected() {
	if e.proto.opts.MTUProbing == MTUProbingOff || e.retries < 2 || e.synMSS == 0 {
		return
	}
	if e.now().Sub(e.progressAt) < 15*e.minRTO() {
		return
	}
	old := e.sndMSS
	what := ""
	if e.mtup == nil {
		e.mtuProbeStart()
		what = fmt.Sprintf("path MTU black hole suspected (%d timeouts, no ICMP): probing starts, MSS at most %d", e.retries, e.proto.opts.BaseMSS)
	} else {
		p := e.mtup
		mss := min(e.mssForMTU(uint32(p.searchLow))/2, e.proto.opts.BaseMSS)
		p.searchLow = min(e.mtuForMSS(max(mss, minSndMSS)), p.searchHigh)
		what = fmt.Sprintf("path MTU black hole suspected (%d timeouts, no ICMP): the search drops to MTU %d", e.retries, p.searchLow)
	}
	e.syncMSS()
	e.proto.stats.MTUBlackHoles.Add(1)
	if e.observed() {
		e.emit(event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
			Note: fmt.Sprintf("%s: MSS %d → %d", what, old, e.sndMSS)})
	}
}

// mtuProbeSend sends a probe instead of the next new segment when the
// search wants one and the connection can afford it (Linux's
// tcp_mtu_probe): in open state, with a window of at least 11 segments
// and no SACK blocks to carry (their room would change the size), and
// enough data queued to send the probe and, behind it, enough segments
// for loss detection to judge it: what the reordering degree would take,
// plus one. It reports whether it sent one, and whether output should
// send no new data now (wait): the probe fits the peer's window or the
// congestion window only once some of the flight is acknowledged.
func (e *Endpoint) mtuProbeSend() (sent, wait bool) {
	p := e.mtup
	if p == nil || p.probeSize != 0 || e.caState != caOpen || e.sackOptionSize() > 0 ||
		e.cwnd < 11*uint32(e.sndMSS) {
		return false, false
	}
	// The path's MTU as it is now bounds the search: a route's MTU
	// metric may have changed since it began (routemetrics.go).
	high := min(p.searchHigh, e.pathMTU())
	if cur := min(e.mtuForMSS(e.sndMSS), high); cur > p.searchLow {
		// Full segments get through at the MSS the connection has:
		// the search starts above it. Linux's starts at tcp_base_mss
		// whatever the MSS, and a probe's success there lowers the
		// MSS to the probe's size for a while.
		p.searchLow = cur
	}
	size := (high + p.searchLow) / 2
	probe := e.mssForMTU(uint32(size))
	if high-p.searchLow < mtuProbeThreshold || probe > e.mssForMTU(uint32(high)) || probe <= e.sndMSS {
		e.mtuReprobe()
		return false, false
	}
	needed := probe + int(e.reorderingDegree()+1)*e.sndMSS
	unsent := 0 // data only: sndEnd is the FIN's number, if one is queued
	if end := e.sndEnd(); e.sndNxt.LessThan(end) {
		unsent = int(e.sndNxt.Size(end))
	}
	if unsent < needed || int(e.sndWnd) < needed {
		return false, false
	}
	if e.sndUna.Add(seqnum.Size(e.sndWnd)).LessThan(e.sndNxt.Add(seqnum.Size(needed))) {
		return false, true // the peer's window must slide first
	}
	// Room for the probe and one more segment, as Linux's two packets;
	// with nothing in flight, never wait.
	if inflight := e.inflight(); uint64(inflight)+uint64(probe)+uint64(e.sndMSS) > uint64(e.cwnd) {
		return false, inflight > 0
	}
	seq := e.sndNxt
	e.trainEnd() // a packet of its own: the link must not cut it to the MSS
	mark := len(e.events)
	if !e.sendNewDataSized(event.SendData, probe) {
		return false, false
	}
	e.trainEnd()
	p.probeSize = e.mtuForMSS(probe)
	p.probeSeq, p.probeEnd = seq, e.sndNxt
	if e.observed() {
		// Before the probe's send event: the capture puts it on the
		// probe's frame.
		e.emitBefore(mark, event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
			Note: fmt.Sprintf("MTU probe: %d bytes (RFC 4821; the search is between %d and %d)", p.probeSize, p.searchLow, high)})
	}
	e.proto.stats.MTUProbes.Add(1)
	return true, false
}

// mtuReprobe starts the search again once it has rested ProbeInterval
// (Linux's tcp_mtu_check_reprobe): up to what the handshake allows, from
// the current MSS.
func (e *Endpoint) mtuReprobe() {
	p := e.mtup
	now := e.now()
	if now.Sub(p.stamp) < e.proto.opts.ProbeInterval {
		return
	}
	p.probeSize = 0
	p.searchHigh = e.mtuForMSS(int(e.synMSS))
	p.searchLow = e.mtuForMSS(e.sndMSS)
	p.stamp = now
}

// mtuProbeOnAck is the probe's success (Linux's tcp_mtup_probe_success):
// SND.UNA passed it, so a packet of its size got through. The MSS rises
// to it; the window keeps its bytes (Linux rescales its packet count by
// the same ratio). The caller holds e.mu.
func (e *Endpoint) mtuProbeOnAck() {
	p := e.mtup
	if p == nil || p.probeSize == 0 || e.sndUna.LessThan(p.probeEnd) {
		return
	}
	old := e.sndMSS
	p.searchLow, p.probeSize = p.probeSize, 0
	e.syncMSS()
	e.proto.stats.MTUProbeSuccesses.Add(1)
	if e.observed() {
		e.emit(event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
			Note: fmt.Sprintf("MTU probe of %d bytes acknowledged (RFC 4821): MSS %d → %d", p.searchLow, old, e.sndMSS)})
	}
}

// mtuProbeLost is a loss found while the probe is the oldest segment
// outstanding (Linux's tcp_fastretrans_alert: "MTU probe failure: don't
// reduce cwnd"): the probe's size does not get through. searchHigh drops
// below it, and the loss is no congestion: no recovery starts, and the
// probe's data goes again at the MSS (retransmitSeg cuts it), as Linux's
// tcp_simple_retransmit. It reports whether it took the loss. The caller
// holds e.mu.
func (e *Endpoint) mtuProbeLost() bool {
	p := e.mtup
	if p == nil || p.probeSize == 0 || e.sndUna != p.probeSeq {
		return false
	}
	q := &e.rtxq
	if q.empty() || !q.at(q.head).has(segLost) {
		return false
	}
	e.mtuProbeFailed("lost")
	return true
}

// mtuProbeFailed ends a probe that did not get through.
func (e *Endpoint) mtuProbeFailed(how string) {
	p := e.mtup
	size := p.probeSize
	p.searchHigh, p.probeSize = size-1, 0
	e.proto.stats.MTUProbeFailures.Add(1)
	if e.observed() {
		e.emit(event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
			Note: fmt.Sprintf("MTU probe of %d bytes %s (RFC 4821): no congestion, the search is between %d and %d", size, how, p.searchLow, p.searchHigh)})
	}
}

// mtuProbeTimeout is a retransmission timeout with the probe still
// outstanding. The timeout deems it lost with the rest and sends its
// data again in MSS-sized pieces, whose acknowledgment says nothing of
// the probe's size: the probe ends here. When it was the oldest segment
// outstanding, the timeout is its failure, as a loss found by an ACK
// would be; else the loss ahead of it may be all there was, and the
// search stays as it is. (Linux leaves the probe in flight, and would
// take the acknowledgment of those pieces for its success.)
func (e *Endpoint) mtuProbeTimeout() {
	p := e.mtup
	if p == nil || p.probeSize == 0 || !e.sndUna.LessThan(p.probeEnd) {
		return
	}
	if e.sndUna == p.probeSeq {
		e.mtuProbeFailed("timed out")
		return
	}
	p.probeSize = 0
}
