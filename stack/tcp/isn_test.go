package tcp_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestISNAndTimestampOffset: an active open's ISN is RFC 6528's
// M + F(4-tuple, secret), M ticking every 4 µs, and its TSval clock
// carries an offset keyed the same way (RFC 7323 5.4, 7.1). A second
// SYN on the same 4-tuple a millisecond later has an ISN 250 ticks on
// and a TSval 1 ms on, so the new connection's numbers continue the old
// one's past the peer's TIME-WAIT and PAWS checks; another 4-tuple has
// an ISN and an offset of its own.
func TestISNAndTimestampOffset(t *testing.T) {
	p := tcptest.New(t)
	const localPort = 40123
	syn := func(peerPort uint16) (iss, tsval uint32) {
		t.Helper()
		ep, err := p.TCP.ConnectWith(netip.AddrPortFrom(netip.Addr{}, localPort), netip.AddrPortFrom(tcptest.PeerAddr, peerPort), tcp.ConnectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.StackPort, p.PeerPort = localPort, peerPort
		p.SetStackISS(0, false)
		p.Expect(tcptest.Seg{Flags: "S", Seq: 0})
		iss, _ = p.StackISS()
		tsval = p.LastTSVal
		ep.Reset() // in SYN-SENT the connection is deleted, silently
		p.ExpectNothing()
		return iss, tsval
	}
	iss1, ts1 := syn(80)
	p.Advance(time.Millisecond)
	iss2, ts2 := syn(80)
	if d := iss2 - iss1; d != 250 {
		t.Errorf("same 4-tuple 1 ms later: the ISN moved by %d, want 250 (one tick per 4 µs)", d)
	}
	if d := ts2 - ts1; d != 1 {
		t.Errorf("same 4-tuple 1 ms later: the TSval moved by %d, want 1 (same offset)", d)
	}
	iss3, ts3 := syn(81)
	if iss3 == iss2 || ts3 == ts2 {
		t.Errorf("another 4-tuple at the same instant: ISN %d and TSval %d, the first 4-tuple's %d and %d: F or the offset does not cover the ports",
			iss3, ts3, iss2, ts2)
	}
}
