package tcp

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Path MTU discovery (RFC 1191 for IPv4, RFC 8201 for IPv6): every IPv4
// segment leaves with DF set (but on a route that locks its MTU,
// routemetrics.go, or to a peer whose path MTU is locked below Linux's
// min_pmtu, pathMTUArrives), so a router with a smaller next hop drops it
// and answers ICMP "fragmentation needed" (ICMPv6 "packet too big") with
// the MTU that fits. The engine checks the error against the connection
// as it checks any ICMP error (RFC 5927: the quoted sequence number must
// be in flight, icmp.go), lowers the path MTU it keeps for that
// destination, cuts the MSS to fit at once, and sends again the segments
// in flight that no longer fit, at the new size, as Linux's
// tcp_v4_mtu_reduced and tcp_simple_retransmit do. The loss was not
// congestion: the window stays.

// Path MTU limits: an IPv6 MTU below the protocol's minimum (1280
// bytes, RFC 8200) is a forgery or a broken router and is ignored (RFC
// 8201 4: the estimate never goes below it). An IPv4 MTU below Linux's
// min_pmtu (552) is raised to it, as Linux does, rather than send tiny
// segments, and locked there: the segments leave without DF, so that
// the small hop fragments them (pathMTUArrives). So is an IPv4 report
// without an MTU (0, from a router older than RFC 1191) or with one below
// IPv4's minimum of 68 bytes (RFC 791), as Linux takes them too.
const (
	minIPv6MTU   = 1280
	linuxMinPMTU = 552

	// pmtuExpiry is how long a learned path MTU is kept without a new
	// report (Linux ip_rt_mtu_expires, 10 minutes; RFC 1191 6.3
	// suggests probing again after 10 minutes).
	pmtuExpiry = 10 * time.Minute
	// maxPMTUEntries bounds the table: destinations that reported a
	// smaller MTU. Past it the oldest entry is forgotten.
	maxPMTUEntries = 4096
)

// pmtuTable is the engine's path MTU per destination.
type pmtuTable struct {
	mu sync.Mutex
	m  map[tcpip.Address]pmtuEntry
	// anyLocked says that an entry may lock its MTU, until lockedUntil,
	// the latest of their expiries: writePacket asks the table whether
	// a packet's destination is locked (locks) only then, and sends
	// every packet with DF without a look at it otherwise.
	anyLocked   atomic.Bool
	lockedUntil tcpip.MonotonicTime
	// gen counts the entries learn set. The path MTU lives here, per
	// destination, as Linux keeps it in the route (the exception's
	// fnhe), for every connection to the destination: one whose MSS was
	// sized at another generation looks again before it sends
	// (Endpoint.pmtuGen, followPathMTU), as Linux's tcp_current_mss
	// calls tcp_sync_mss once dst_mtu differs from icsk_pmtu_cookie.
	gen atomic.Uint32
}

// generation is gen as a connection keeps it (Endpoint.pmtuGen).
func (t *pmtuTable) generation() uint16 { return uint16(t.gen.Load()) }

// pmtuEntry is the path MTU learned for a destination. locked: the
// report was of a hop below Linux's min_pmtu, the MTU is min_pmtu (or
// less, the route's own), and packets to the destination leave without
// DF (Linux's fnhe_mtu_locked, ip_dont_fragment).
type pmtuEntry struct {
	mtu     uint32
	locked  bool
	expires tcpip.MonotonicTime
}

// lookup returns the path MTU learned for dst, if it has not expired.
func (t *pmtuTable) lookup(dst tcpip.Address, now tcpip.MonotonicTime) (pmtuEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[dst]
	if !ok || !now.Before(e.expires) {
		return pmtuEntry{}, false
	}
	return e, true
}

// locks reports whether packets to dst leave without DF: its entry locks
// the MTU and has not expired. Once every lock has expired, the entries
// that held one are forgotten (expired, they count for nothing) and
// anyLocked goes off, so that writePacket stops asking: the scan is
// bounded by the table, once per lock's life.
func (t *pmtuTable) locks(dst tcpip.Address, now tcpip.MonotonicTime) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !now.Before(t.lockedUntil) {
		for a, e := range t.m {
			if e.locked {
				delete(t.m, a)
			}
		}
		t.anyLocked.Store(false)
		return false
	}
	e, ok := t.m[dst]
	return ok && e.locked && now.Before(e.expires)
}

// learn records mtu for dst, locked or not. An entry that has not
// expired is never raised (RFC 1191 5, RFC 8201 4: a report must not
// increase the estimate): pathMTUArrives drops a report that is not
// below the connection's path MTU, and this keeps two connections to dst
// that take reports at once from raising the one the other learned. It
// reports whether the table was full and forgot the entry closest to
// expiring for it (LimitStats.PathMTUEvictions). The scan for it is
// bounded by the table: each new entry needs an ICMP error that matched
// a live connection to that destination.
func (t *pmtuTable) learn(dst tcpip.Address, mtu uint32, locked bool, now tcpip.MonotonicTime) (evicted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[tcpip.Address]pmtuEntry)
	}
	old, ok := t.m[dst]
	if ok && now.Before(old.expires) && old.mtu < mtu {
		return false
	}
	if !ok && len(t.m) >= maxPMTUEntries {
		var oldest tcpip.Address
		first := true
		for a, e := range t.m {
			if first || e.expires.Before(t.m[oldest].expires) {
				oldest, first = a, false
			}
		}
		delete(t.m, oldest)
		evicted = true
	}
	t.m[dst] = pmtuEntry{mtu: mtu, locked: locked, expires: now.Add(pmtuExpiry)}
	t.gen.Add(1)
	if locked {
		if t.lockedUntil.Before(now.Add(pmtuExpiry)) {
			t.lockedUntil = now.Add(pmtuExpiry)
		}
		t.anyLocked.Store(true)
	}
	return evicted
}

// netHeaderLen is the size of the IP header in front of our segments.
func (e *Endpoint) netHeaderLen() int {
	if e.netProto == header.IPv6ProtocolNumber {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

// mssForMTU is the largest payload a segment may carry on a path of mtu
// bytes: less the IP and TCP headers and, when timestamps are in force,
// their option (RFC 6691, Linux tcp_mtu_to_mss), at least the floor
// (minSndMSS, mssFloor).
func (e *Endpoint) mssForMTU(mtu uint32) int {
	mss := int(mtu) - e.netHeaderLen() - header.TCPMinimumSize
	if e.tsOK {
		mss -= tsOptionSize
	}
	return max(mss, e.mssFloor())
}

// pathMTU is the MTU the send MSS is bounded by (Info.PathMTU): the
// route's metric if it has one (routemetrics.go), else the route's own,
// or a smaller one ICMP reported for the peer unless the route locks its
// MTU; 0 without a route.
func (e *Endpoint) pathMTU() int {
	mtu, _, _ := e.pathMTUBound()
	return mtu
}

// pathMTUBound is pathMTU, whether a path MTU ICMP reported is what
// bounds it, and when that report expires.
func (e *Endpoint) pathMTUBound() (int, bool, tcpip.MonotonicTime) {
	if e.route == nil {
		return 0, false, tcpip.MonotonicTime{}
	}
	m32 := e.route.MTU() + uint32(e.netHeaderLen()) // the route's MTU is the IP payload's
	m := e.metrics()
	if m.MTU > 0 {
		m32 = m.MTU
	}
	if l, ok := e.learnedMTU(m); ok && l.mtu < m32 {
		return int(l.mtu), true, l.expires
	}
	return int(m32), false, tcpip.MonotonicTime{}
}

// sizingMTU is pathMTU for what sizes the segments by it (the
// handshake's pathMSS, applyPathMTU, syncMSS): when a path MTU ICMP
// reported bounds it, the MSS is set again once that expires (output,
// pathMTUExpiry).
func (e *Endpoint) sizingMTU() int {
	// The generation before the lookup: an entry learned after it is
	// looked at again (followPathMTU).
	e.pmtuGen = e.proto.pmtu.generation()
	mtu, learned, expires := e.pathMTUBound()
	if learned {
		e.pmtuExpires = pmtuSeconds(expires)
	}
	return mtu
}

// learnedMTU is the path MTU ICMP reported for the peer, unless its
// route's metrics m lock the MTU.
func (e *Endpoint) learnedMTU(m RouteMetrics) (pmtuEntry, bool) {
	if m.LockMTU {
		return pmtuEntry{}, false
	}
	return e.proto.pmtu.lookup(e.id.RemoteAddress, e.now())
}

// pmtuSeconds is t in whole seconds of the engine's clock, rounded up,
// at least 1: the form of Endpoint.pmtuExpires, which has 4 bytes of
// padding to live in. A second late is soon enough for a 10-minute
// expiry.
func pmtuSeconds(t tcpip.MonotonicTime) uint32 {
	return max(clockSeconds(t.Add(time.Second-1)), 1)
}

// clockSeconds is t in whole seconds of the engine's clock, rounded down.
func clockSeconds(t tcpip.MonotonicTime) uint32 {
	return uint32(min(t.Sub(tcpip.MonotonicTime{})/time.Second, math.MaxUint32))
}

// pathMTUExpiry sets the send MSS again once the path MTU ICMP reported
// for the peer, which bounded it, has expired (pmtuExpiry; RFC 1191 6.3,
// RFC 8201 4: the estimate is raised again after about 10 minutes), as
// Linux's tcp_current_mss calls tcp_sync_mss when the route's MTU no
// longer matches the connection's icsk_pmtu_cookie. The table forgets
// the entry by itself, but nothing told the connections that had cut
// their MSS to it: one report, stale or forged with a sequence number in
// flight, cut a long-lived connection's segments for good. output calls
// it (pathMTUChanged) before each run that may send, with e.pmtuExpires
// set, as Linux's tcp_write_xmit asks tcp_current_mss: the cost for the
// rest is a comparison of that field with zero and of pmtuGen with the
// table's generation, which changes only when a path MTU is learned, and
// for these the clock reading the run takes anyway (stamp.go). The
// caller holds e.mu.
func (e *Endpoint) pathMTUExpiry() {
	if clockSeconds(e.now()) < e.pmtuExpires {
		return
	}
	// syncMSS sets the deadline again if a path MTU learned still
	// bounds the MSS: the report was refreshed, or a new one came. The
	// MSS rises; it may also fall to where a path MTU search stands
	// (plpmtud.go), as Linux's tcp_sync_mss takes search_low, and then
	// the segments in flight are left as they are: nothing says they
	// were dropped.
	e.pmtuExpires = 0
	old := e.sndMSS
	e.syncMSS()
	if e.sndMSS != old && e.observed() {
		e.emit(event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
			Note: fmt.Sprintf("path MTU from ICMP expired: path MTU %d, MSS %d → %d", e.pathMTU(), old, e.sndMSS)})
	}
}

// pathMTUChanged is what output asks before a run that may send, when
// the path MTU table learned an entry since the connection last sized its
// segments (Endpoint.pmtuGen) or a path MTU that bounds them may have
// expired (pmtuExpires). The caller holds e.mu.
//
//go:noinline
func (e *Endpoint) pathMTUChanged() {
	if e.pmtuGen != e.proto.pmtu.generation() {
		e.followPathMTU("ICMP to another connection to the peer")
	}
	if e.pmtuExpires != 0 {
		e.pathMTUExpiry()
	}
}

// followPathMTU lowers the send MSS to the path MTU when the path MTU
// fell below it since the connection last sized its segments: another
// connection to the peer took a fragmentation needed or packet too big,
// and the entry it taught holds for this one too (the same destination,
// the same route). As Linux's tcp_current_mss, the connection follows at
// its next transmission, without waiting for an ICMP of its own, and, as
// when it takes one itself (mssLowered), its segments in flight that no
// longer fit are marked lost and sent again cut to fit: they left with DF
// into the same hop. An entry for another destination leaves the MSS as
// it is; the MSS never rises here (pathMTUExpiry raises it), nor follows
// a path MTU search (plpmtud.go). It reports whether the MSS fell; the
// caller sends. The caller holds e.mu.
func (e *Endpoint) followPathMTU(why string) bool {
	if e.route == nil || e.synMSS == 0 {
		e.pmtuGen = e.proto.pmtu.generation()
		return false
	}
	mtu := e.sizingMTU()
	mss := max(min(int(e.synMSS), e.mssForMTU(uint32(mtu))), e.mssFloor())
	if mss >= e.sndMSS {
		return false
	}
	if p := e.mtup; p != nil {
		p.capAt(mtu) // as Linux's tcp_sync_mss lowers search_high
	}
	old := e.sndMSS
	e.sndMSS = mss
	e.resendTooBig(old, fmt.Sprintf("path MTU %d (%s)", mtu, why))
	return true
}

// pathMSS is the largest segment payload the path MTU allows, timestamps
// aside: what the handshake bounds the send MSS by.
func (e *Endpoint) pathMSS() int {
	return e.sizingMTU() - e.netHeaderLen() - header.TCPMinimumSize
}

// applyPathMTU lowers the send MSS to what the path MTU allows, when the
// connection is established: an MTU ICMP reported for the peer since the
// handshake began.
func (e *Endpoint) applyPathMTU() {
	if mss := e.mssForMTU(uint32(e.sizingMTU())); mss < e.sndMSS {
		e.sndMSS = mss
	}
}

// pathMTUArrives is an ICMP fragmentation-needed or packet-too-big error
// whose quote checked out: mtu is the next hop's MTU it reports, 0 for
// none (icmpArrives). The caller holds e.mu.
func (e *Endpoint) pathMTUArrives(mtu uint32) {
	if e.netProto == header.IPv6ProtocolNumber && mtu < minIPv6MTU {
		e.dropBadMTU(fmt.Sprintf("ICMP packet too big: MTU %d below the minimum %d", mtu, minIPv6MTU))
		return
	}
	m := e.metrics()
	if m.LockMTU {
		// The route locks its MTU (Linux's `mtu lock`): the report
		// changes nothing, for this connection or the destination.
		if e.proto.opts.Observer != nil {
			e.emit(event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
				Note: fmt.Sprintf("path MTU %d (ICMP) ignored: the route locks its MTU at %d", mtu, e.pathMTU())})
		}
		return
	}
	cur, reported := uint32(e.pathMTU()), mtu
	learned, _ := e.learnedMTU(m)
	lock := false
	if e.netProto != header.IPv6ProtocolNumber && mtu < linuxMinPMTU {
		// A hop below Linux's min_pmtu (552), or no MTU at all: a
		// router from before RFC 1191 leaves the Next-Hop MTU field
		// zero (RFC 1191 7), and gVisor hands us 0 for any MTU below
		// IPv4's 68 as well. Linux's icmp_unreach passes the field on
		// as it is, and __ip_rt_update_pmtu takes 0 as any MTU below
		// ip_rt_min_pmtu; RFC 1191 7's plateau table is only a MAY.
		// Dropping the report, as the engine did, left the full-sized
		// segments to be dropped by that router for ever: a black
		// hole; and with DF still set a path MTU of 552 is one too,
		// each new report changing nothing. As Linux's
		// __ip_rt_update_pmtu, the path MTU becomes min(old_mtu, 552)
		// and is locked (the exception's fnhe_mtu_locked), so that
		// ip_dont_fragment sends without DF and the small hop
		// fragments what we send, rather than segments that small.
		// While the lock holds Linux takes no report (ip_mtu_locked):
		// here one comes to min(old_mtu, 552), the path MTU again, and
		// is dropped below.
		mtu, lock = min(cur, linuxMinPMTU), true
	}
	if mtu > cur || mtu == cur && (!lock || learned.locked) {
		// RFC 1191 5 and RFC 8201 4: a host MUST NOT increase its
		// estimate of the path MTU in response to a Datagram Too Big.
		// A report of a hop no smaller than the path we keep (a stale
		// one from before the path changed, or a forgery that quotes a
		// sequence number in flight) says nothing we can use, and
		// learning it would raise the path MTU for every connection to
		// the peer, into the smaller hop. Linux's __ip_rt_update_pmtu
		// returns at once when old_mtu < mtu; an equal report, which it
		// takes only to refresh its entry's age past half its life,
		// changes nothing here: the entry expires as RFC 1191 6.3 asks
		// and the path is tried at full size again.
		if mtu == cur && e.followPathMTU("ICMP") {
			// The path MTU another connection to the peer learned,
			// which this one had not followed yet: Linux's
			// tcp_v4_mtu_reduced compares the report with the
			// socket's own icsk_pmtu_cookie, not the route's MTU.
			// Dropped, the report left this connection's segments in
			// flight to be sent again at their old size: a black
			// hole.
			e.output()
			return
		}
		note := fmt.Sprintf("ICMP packet too big: MTU %d not below the path MTU %d (RFC 1191 5, RFC 8201 4)", reported, cur)
		if lock {
			note = fmt.Sprintf("ICMP packet too big: MTU %d, below min_pmtu: the path MTU is locked at %d already", reported, cur)
		}
		e.dropBadMTU(note)
		return
	}
	if e.proto.pmtu.learn(e.id.RemoteAddress, mtu, lock, e.now()) {
		e.proto.limits.PathMTUEvictions.Add(1)
	}
	e.pmtuExpires = pmtuSeconds(e.now().Add(pmtuExpiry)) // the MSS goes back up then (pathMTUExpiry)
	if p := e.mtup; p != nil {
		p.capAt(int(mtu)) // the search stays under what the path reported (plpmtud.go)
	}
	mss := e.mssForMTU(mtu)
	if mss >= e.sndMSS {
		return // not smaller than what we send already
	}
	why := fmt.Sprintf("path MTU %d (ICMP)", mtu)
	if lock && reported == 0 {
		why = fmt.Sprintf("path MTU %d (ICMP reported no MTU, RFC 1191 7: locked, sent without DF)", mtu)
	} else if lock {
		why = fmt.Sprintf("path MTU %d (ICMP reported %d, below min_pmtu %d: locked, sent without DF)", mtu, reported, linuxMinPMTU)
	}
	old := e.sndMSS
	e.sndMSS = mss
	e.mssLowered(old, why)
}

// dropBadMTU counts and reports a packet-too-big error whose MTU the
// engine does not take (DropICMPBadMTU), for the reason note.
func (e *Endpoint) dropBadMTU(note string) {
	e.proto.stats.Drops[event.DropICMPBadMTU].Add(1)
	if e.proto.opts.Observer != nil {
		e.emit(event.Event{Kind: event.KindDrop, Conn: e.connID(), Drop: event.DropICMPBadMTU,
			Segment: event.SegmentInfo{WS: -1, Note: note}})
	}
}

// mssLowered follows a cut of the send MSS from old to e.sndMSS, for the
// reason why: the segments in flight larger than the new MSS were dropped
// on the way (or will be), so they are sent again, cut to fit (Linux's
// tcp_simple_retransmit). The loss was not congestion: the window stays.
// The caller holds e.mu.
func (e *Endpoint) mssLowered(old int, why string) {
	e.resendTooBig(old, why)
	e.output()
}

// resendTooBig is mssLowered but for the sending: it marks lost the
// segments in flight larger than the new MSS, for output to send again.
func (e *Endpoint) resendTooBig(old int, why string) {
	mss := e.sndMSS
	e.proto.stats.PathMTUReductions.Add(1)
	e.splitRecords()
	q := &e.rtxq
	resent := 0
	for i := q.head; i < q.tail(); i++ {
		s := q.at(i)
		n := int(s.len())
		if s.has(segFin) {
			n--
		}
		if n > mss && !s.has(segSacked) {
			q.markLost(i)
			resent++
		}
	}
	if e.proto.opts.Observer != nil {
		e.emit(event.Event{Kind: event.KindPathMTU, Conn: e.connID(), Cwnd: e.cwnd, Ssthresh: e.ssthresh,
			Note: fmt.Sprintf("%s: MSS %d → %d, %s sent again", why, old, mss, plural(resent, "segment"))})
	}
}
