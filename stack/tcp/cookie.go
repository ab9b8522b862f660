package tcp

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// SYN cookies (RFC 4987 3.6). When a listener's SYN queue is full, the
// SYN-ACK's ISS is a cookie and the listener keeps no state; the peer's
// final ACK returns the cookie as SEG.ACK-1 and the connection is rebuilt
// from it. We build the cookie much as Linux does without timestamps
// (net/ipv4/syncookies.c, secure_tcp_syn_cookie):
//
//	cookie = H1(4-tuple) + sseq + (count << 24) + (H2(4-tuple, sseq, count, mssIndex) mod 2^24, low 2 bits replaced by mssIndex)
//
// sseq is the SYN's sequence number, count a coarse clock ticking every
// 64 s; H1 and H2 are keyed hashes under a key derived from the stack's
// secret. The top 8 bits carry the counter, the low 24 bits a 22-bit MAC
// and the MSS index, which the MAC covers, so the peer can neither choose
// an MSS nor forge a cookie except by guessing 22 bits for one of the 4
// indexes (as Linux's 24-bit MAC with the index added). Unlike Linux, H2
// covers sseq and the index: in Linux an ACK one sequence number off, or
// acknowledging cookie+k, still verifies, with another MSS index; here it
// does not, as a half-open entry would answer such an ACK with RST
// (RFC 9293 3.10.7.4).
//
// The MSS survives the round trip, rounded down to the family's table
// (cookieMSSFor). The peer's
// window scale cannot travel in the cookie; like Linux
// (cookie_init_timestamp), we carry it in the low bits of our SYN-ACK's
// TSval when the SYN offered timestamps, and read it back from the ACK's
// TSecr, which echoes it (RFC 7323 4.3). Without timestamps the cookie
// SYN-ACK offers no window scale and, by RFC 7323 2.2, neither side
// scales: such a connection is limited to a 64 KiB window. That is safe
// where guessing a scale is not, and cookies only happen under a flood.
//
// The TSval of a cookie SYN-ACK is the connection's timestamp clock with
// its low 6 bits (Linux's TSBITS) replaced, and moved back one 64 ms step
// if that put it ahead of the clock, so TSvals never go backwards:
//
//	bits 0-3  the peer's window scale, 0-14, or 15 for none
//	bit  4    SACK permitted (never set: see below)
//	bit  5    ECN (never set)
//
// SACK is implemented, but a cookie connection does not negotiate it: the
// cookie SYN-ACK offers no SACK-permitted option (sendCookie), so by RFC
// 2018 2 neither side sends SACK blocks. Linux carries the SYN's
// SACK-permitted in bit 4 and offers it, when the SYN offered timestamps
// (the bits travel only then); here the bit stays clear and a TSecr with
// it set is refused, so a cookie connection, made only under a flood,
// recovers losses without SACK, as one without timestamps would in Linux.
//
// Like the window scale bits in Linux, they are not covered by the MAC: a
// peer that alters them alters only its own connection. We check what we
// can: the bits are ones we could have sent, and the TSecr is no older
// than a cookie can be.

const (
	cookiePeriod  = 64 * time.Second // one tick of the counter (Linux: 60 s in newer kernels)
	cookieMaxAge  = 2                // a cookie is valid while count-c < 2, Linux's MAX_SYNCOOKIE_AGE
	cookieBits    = 24
	cookieMask    = 1<<cookieBits - 1
	cookieMSSMask = 1<<2 - 1 // the MSS index's bits: len(cookieMSS) is 4
)

// The low bits of a cookie SYN-ACK's TSval (Linux's TSBITS and TS_OPT_*).
const (
	cookieTSBits = 6
	cookieTSMask = 1<<cookieTSBits - 1
	cookieTSWS   = 0xf // the window scale's bits (TS_OPT_WSCALE_MASK)
	cookieTSNoWS = 0xf // in them: no window scale
	cookieTSSACK = 1 << 4
	cookieTSECN  = 1 << 5
)

// cookieTimestamp returns the timestamp clock value, before the
// connection's offset, for a cookie SYN-ACK at clock now that carries the
// peer's window scale ws (-1: none). It is never after now.
func cookieTimestamp(now uint32, ws int) uint32 {
	opts := uint32(cookieTSNoWS)
	if ws >= 0 {
		opts = uint32(min(ws, header.MaxWndScale))
	}
	ts := now&^cookieTSMask | opts
	if tsBefore(now, ts) {
		ts -= 1 << cookieTSBits
	}
	return ts
}

// cookieTSDecode recovers the peer's window scale (-1: none) from ts, the
// ACK's TSecr less the connection's offset, at clock now; or a reason.
func cookieTSDecode(ts, now uint32) (ws int, bad string) {
	age := int32(now - ts)
	if age < 0 || time.Duration(age)*time.Millisecond > cookieMaxAge*cookiePeriod+(1<<cookieTSBits)*time.Millisecond {
		return 0, "timestamp echo out of range"
	}
	opts := ts & cookieTSMask
	if opts&(cookieTSSACK|cookieTSECN) != 0 {
		return 0, "timestamp options not offered"
	}
	// Four bits hold 0-14 (header.MaxWndScale) or 15, for none.
	if ws := int(opts & cookieTSWS); ws != cookieTSNoWS {
		return ws, ""
	}
	return -1, ""
}

// cookieMSS is Linux's msstab for IPv4: the MSS values a cookie can carry,
// chosen to cover the common paths; the peer's MSS is rounded down to one.
var cookieMSS = [4]uint16{536, 1300, 1440, 1460}

// cookieMSS6 is Linux's msstab for IPv6 (net/ipv6/syncookies.c): the
// MTUs 1280 (IPv6's minimum, RFC 8200 5), 1480 (a tunnel), 1500 and 9000
// less the 60 bytes of the IPv6 and TCP headers. With IPv4's table an
// IPv6 peer behind the minimum MTU, announcing 1220, was sent 536-byte
// segments, and one with no MSS option, whose default is 1220 over IPv6
// (RFC 9293 3.7.1), too.
var cookieMSS6 = [4]uint16{1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60}

// cookieMSSFor is the table of the cookies of a connection over netProto.
func cookieMSSFor(netProto tcpip.NetworkProtocolNumber) *[4]uint16 {
	if netProto == header.IPv6ProtocolNumber {
		return &cookieMSS6
	}
	return &cookieMSS
}

// cookieKey is the key of the cookie hashes: a second derivation of the
// stack's ISN secret (RFC 6528), so the two never share a key.
type cookieKey [sha256.Size]byte

func newCookieKey(secret [16]byte) cookieKey {
	var b [32]byte
	n := copy(b[:], "tapstack SYN cookie v1\x00")
	n += copy(b[n:], secret[:])
	return sha256.Sum256(b[:n])
}

// hash is H1 (tag 1, sseq and count zero) or H2 (tag 2 + MSS index) of
// the 4-tuple.
// It does not allocate.
func (k *cookieKey) hash(id stack.TransportEndpointID, tag byte, sseq seqnum.Value, count uint32) uint32 {
	var b [len(k) + 16 + 16 + 4 + 4 + 4 + 1]byte
	n := copy(b[:], k[:])
	n += copy(b[n:], id.LocalAddress.AsSlice())
	n += copy(b[n:], id.RemoteAddress.AsSlice())
	binary.BigEndian.PutUint16(b[n:], id.LocalPort)
	binary.BigEndian.PutUint16(b[n+2:], id.RemotePort)
	binary.BigEndian.PutUint32(b[n+4:], uint32(sseq))
	binary.BigEndian.PutUint32(b[n+8:], count)
	b[n+12] = tag
	sum := sha256.Sum256(b[:n+13])
	return binary.BigEndian.Uint32(sum[:])
}

// cookieCount is the coarse clock the cookie carries.
func cookieCount(now tcpip.MonotonicTime) uint32 {
	return uint32(now.Sub(tcpip.MonotonicTime{}) / cookiePeriod)
}

// cookieMSSIndex picks the largest entry of table not above mss, as
// Linux's cookie_v4_init_sequence and cookie_v6_init_sequence do; below
// the table it is the first entry.
// So a peer that announced less than 536 is sent 536-byte segments, above
// its MSS, which RFC 9293 3.7.1 forbids. We keep Linux's choice
// (TestSynCookieSmallMSS): the two bits have no room for another size
// without giving up one of the common ones, a 576-byte datagram is one
// every IPv4 host must take (RFC 1122 3.3.2), a smaller hop answers the
// DF with an ICMP that takes the path MTU down to 552 without DF
// (pmtu.go), and cookies are only used while the SYN queue is full.
func cookieMSSIndex(table *[4]uint16, mss uint16) uint32 {
	i := len(table) - 1
	for ; i > 0; i-- {
		if mss >= table[i] {
			break
		}
	}
	return uint32(i)
}

// make returns the cookie for a SYN with sequence number sseq on id.
func (k *cookieKey) make(id stack.TransportEndpointID, sseq seqnum.Value, mssIndex, count uint32) seqnum.Value {
	mac := k.hash(id, 2+byte(mssIndex), sseq, count) & cookieMask &^ cookieMSSMask
	c := k.hash(id, 1, 0, 0) + uint32(sseq) + count<<cookieBits + (mac | mssIndex&cookieMSSMask)
	return seqnum.Value(c)
}

// check verifies cookie, returned by the ACK of a SYN whose sequence number
// was sseq, at counter count. It returns the MSS index, or a reason.
func (k *cookieKey) check(id stack.TransportEndpointID, sseq, cookie seqnum.Value, count uint32) (uint32, string) {
	c := uint32(cookie) - k.hash(id, 1, 0, 0) - uint32(sseq)
	// The counter's low 8 bits; the age is taken modulo 2^8 like Linux.
	age := (count - c>>cookieBits) & (1<<(32-cookieBits) - 1)
	if age >= cookieMaxAge {
		return 0, "too old or forged"
	}
	idx := c & cookieMSSMask
	if (c^k.hash(id, 2+byte(idx), sseq, count-age))&cookieMask&^cookieMSSMask != 0 {
		return 0, "bad MAC"
	}
	return idx, ""
}
