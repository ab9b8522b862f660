package tap

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Fragments on a link that vouches for checksums. The transport checksum
// of a fragmented datagram covers the reassembled datagram, which only
// gVisor's network layer builds; and gVisor's NIC marks every packet of a
// link with CapabilityRXChecksumOffload validated (nic.go,
// DeliverNetworkPacket), whatever the link said of it, so a reassembled
// datagram goes up with the first fragment's mark and no layer above
// checks its checksum. A fragment cannot be handed up unvalidated, and
// the device cannot check it alone; so it keeps, per datagram, the sum of
// the fragments it delivered (never their bytes), and checks the whole
// when the fragment that completes the datagram comes: if the sum fails,
// that fragment is dropped and counted, and gVisor's reassembly never
// completes (it times the rest out, ReassembleTimeout). Every fragment of
// a good datagram is delivered as it comes.
//
// The device mirrors gVisor's reassembler (fragmentation/reassembler.go)
// where it matters: a duplicate is ignored, a fragment that overlaps
// another abandons the datagram (RFC 8200 4.5; gVisor does so for IPv4
// too, as Linux), and the sum of a datagram is forgotten a little after
// gVisor would have timed it out.

// fragChecker keeps the sums of the datagrams being reassembled above a
// link. Its zero value is ready; it is safe for concurrent use (the read
// loops of a multi-queue device).
type fragChecker struct {
	mu sync.Mutex
	m  map[fragKey]*fragSum
}

// fragKey identifies a datagram: RFC 791 3.2 for IPv4 (source,
// destination, protocol, identification), RFC 8200 4.5 for IPv6 (source,
// destination, identification).
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8 // IPv4's; 0 for IPv6
	v6       bool
}

// fragSum is what the device knows of one datagram.
type fragSum struct {
	since  time.Time
	ranges [][2]int // fragments delivered: [first, end) in the datagram
	sum    uint16   // of the bytes of those fragments, transport header on
	total  int      // the datagram's length, once its last fragment came; -1 before
	skip   int      // bytes of extension headers before the transport header (IPv6)
	proto  uint8    // the transport protocol, from the first fragment
	first  bool     // the first fragment came
	noSum  bool     // UDP over IPv4 with a checksum of zero (RFC 768): nothing to check
}

// Bounds of the device's fragment state, so that a flood of fragments
// costs a bounded amount of memory (gVisor's reassembly is bounded by
// bytes, fragmentation.HighFragThreshold): datagrams in reassembly at
// once, and fragments per datagram (a 64 KiB datagram at an IPv6 minimum
// MTU of 1280 has 52). A fragment past either bound is dropped and
// counted, as Linux drops fragments past ipfrag_high_thresh.
const (
	maxFragDatagrams = 1024
	maxFragments     = 128
)

// fragLifetime is how long the sum of an incomplete datagram is kept:
// gVisor's reassembly timeouts (ipv4.ReassembleTimeout, 30 s;
// ipv6.ReassembleTimeout, 60 s), and a second more, so that the device
// never forgets a datagram gVisor may still complete.
func fragLifetime(v6 bool) time.Duration {
	if v6 {
		return 61 * time.Second
	}
	return 31 * time.Second
}

// fragVerdict is what becomes of a fragment.
type fragVerdict int

const (
	fragDeliver     fragVerdict = iota // deliver it
	fragBadChecksum                    // its checksum fails, or it completes a datagram whose checksum fails: drop it
	fragOverLimits                     // a fragment with no room to keep its datagram's sum: drop it
)

// verify checks frame, which the kernel (or a pipe's sender) did not
// vouch for, on a link that vouches for every frame it delivers: its
// checksums (ipFrameValid), and a fragment's datagram as a whole (check).
func (c *fragChecker) verify(frame []byte) fragVerdict {
	l, ok := parseIPFrame(frame) // parsed once, for both
	switch {
	case !ok:
		return fragDeliver // not IP, or malformed: the network layer judges it
	case !layoutValid(frame, l):
		return fragBadChecksum
	case !l.fragment:
		return fragDeliver
	}
	return c.check(frame, l, time.Now()) // the clock read for fragments only
}

// check takes note of fragment frame, laid out as l (l.fragment), and
// says what becomes of it. The IPv4 header checksum has been checked.
func (c *fragChecker) check(frame []byte, l ipLayout, now time.Time) fragVerdict {
	k := fragKey{id: l.id, v6: l.v6}
	src, dst := l.addrs(frame)
	copy(k.src[:], src)
	copy(k.dst[:], dst)
	if !l.v6 {
		k.proto = l.proto
	}
	first, end := l.fragOff, l.fragOff+l.end-l.frag
	if end == first || l.more && (end-first)%8 != 0 || (first == 0 && l.l4 > l.end) {
		// Malformed: gVisor drops it, and it joins no datagram.
		return fragDeliver
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.m[k]
	if d != nil && now.Sub(d.since) > fragLifetime(l.v6) {
		delete(c.m, k)
		d = nil
	}
	if d == nil {
		if len(c.m) >= maxFragDatagrams {
			c.expire(now)
			if len(c.m) >= maxFragDatagrams {
				return fragOverLimits
			}
		}
		if c.m == nil {
			c.m = make(map[fragKey]*fragSum)
		}
		d = &fragSum{since: now, total: -1}
		c.m[k] = d
	}
	for _, r := range d.ranges {
		if first == r[0] && end == r[1] {
			return fragDeliver // a duplicate: gVisor keeps the first copy
		}
		if first < r[1] && r[0] < end {
			// An overlap: gVisor abandons the datagram, and will
			// drop this fragment with it.
			delete(c.m, k)
			return fragDeliver
		}
	}
	if (!l.more && (d.total >= 0 || d.covers(end))) || (d.total >= 0 && end > d.total) {
		// A second, different last fragment, or one past the last:
		// gVisor abandons the datagram too (ErrFragmentConflict).
		delete(c.m, k)
		return fragDeliver
	}
	if len(d.ranges) >= maxFragments {
		return fragOverLimits
	}
	from := l.frag
	if first == 0 {
		d.first, d.proto, d.skip = true, l.proto, l.l4-l.frag
		from = l.l4 // the checksum covers the transport header on
		if off := l.checksumOffset(); l.proto == uint8(header.UDPProtocolNumber) && !l.v6 && off >= 0 && l.l4+off+2 <= l.end {
			d.noSum = frame[l.l4+off] == 0 && frame[l.l4+off+1] == 0
		}
	}
	// Fragment offsets are multiples of 8, and IPv6 extension headers
	// too: every fragment's bytes start at an even place in the
	// transport segment, and their sums add up as they are (RFC 1071).
	d.sum = checksum.Combine(d.sum, checksum.Checksum(frame[from:l.end], 0))
	d.ranges = append(d.ranges, [2]int{first, end})
	if !l.more {
		d.total = end
	}
	if !d.complete() {
		return fragDeliver
	}
	delete(c.m, k)
	if d.valid(l, src, dst) {
		return fragDeliver
	}
	return fragBadChecksum
}

// covers reports whether a fragment already holds bytes at or past end.
func (d *fragSum) covers(end int) bool {
	for _, r := range d.ranges {
		if r[1] > end {
			return true
		}
	}
	return false
}

// complete reports whether the fragments cover the datagram: they do
// not overlap, so their lengths add up to its length.
func (d *fragSum) complete() bool {
	if d.total < 0 || !d.first {
		return false
	}
	n := 0
	for _, r := range d.ranges {
		n += r[1] - r[0]
	}
	return n == d.total
}

// valid checks the reassembled datagram's transport checksum, of the
// protocol its first fragment named, as ipFrameValid checks a packet's.
func (d *fragSum) valid(l ipLayout, src, dst []byte) bool {
	whole := ipLayout{proto: d.proto, v6: l.v6}
	whole.l4, whole.end = 0, d.total-d.skip
	off := whole.checksumOffset()
	if off < 0 || d.noSum || whole.end < whole.minTransport() ||
		(d.proto == uint8(header.ICMPv4ProtocolNumber) && l.v6) || (d.proto == uint8(header.ICMPv6ProtocolNumber) && !l.v6) {
		return true
	}
	x := d.sum
	if whole.withPseudo() {
		p := checksum.Checksum(src, 0)
		p = checksum.Checksum(dst, p)
		p = checksum.Combine(p, uint16(d.proto))
		x = checksum.Combine(x, checksum.Combine(p, uint16(whole.end)))
	}
	return x == 0xffff
}

// expire forgets the datagrams gVisor has timed out.
func (c *fragChecker) expire(now time.Time) {
	for k, d := range c.m {
		if now.Sub(d.since) > fragLifetime(k.v6) {
			delete(c.m, k)
		}
	}
}
