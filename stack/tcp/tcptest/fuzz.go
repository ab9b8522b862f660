package tcptest

import "fmt"

// Helpers for fuzz targets, which talk to many ports at once and cannot
// say in advance which segment comes next.

// NextAny returns the next segment the stack sent, to whatever ports, with
// absolute sequence and acknowledgment numbers (SACK blocks too), and
// false if there is none. Like DrainAny, it fails the test on a packet
// that is not a well-formed TCP segment from the stack to the peer, and it
// leaves what the peer learned (tapstack's ISS) untouched.
func (p *Peer) NextAny() (seg Seg, src, dst uint16, ok bool) {
	p.t.Helper()
	pkt := p.Link.Read()
	if pkt == nil {
		return Seg{}, 0, 0, false
	}
	v := pkt.ToView()
	pkt.DecRef()
	b := append([]byte(nil), v.AsSlice()...)
	v.Release()
	q := Peer{learned: true} // absolute numbers: both ISS are 0
	seg, src, dst, err := q.decode(b)
	if err != nil {
		p.fail("tcptest: the stack sent a bad packet: %v\n% x", err, b)
	}
	if seg.TS {
		p.LastTSVal = seg.TSVal
	}
	p.log(fmt.Sprintf("< IP %v.%d > %v.%d: %s (absolute)", StackAddr, src, PeerAddr, dst, seg))
	return seg, src, dst, true
}

// SetPeerISS changes the peer's initial sequence number (absolute), the
// base of the relative numbers of the peer's side, for a test that plays
// several peers, one per port, each with its own ISS.
func (p *Peer) SetPeerISS(iss uint32) { p.peerISS = iss }
