package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Regression tests for what the fuzz targets found. Each failing input is
// also in testdata/fuzz/<target>/.

// TestCookieAckBeyondCookie: the final ACK of a SYN cookie handshake must
// acknowledge exactly the cookie SYN-ACK (SEG.ACK = cookie+1), as a
// half-open entry would require (RFC 9293 3.10.7.4, SYN-RECEIVED: SND.UNA <
// SEG.ACK =< SND.NXT, else <SEQ=SEG.ACK><CTL=RST>; RFC 4987 3.6 wants
// cookies to behave as if the state had been kept). With the MSS index
// added to the cookie's MAC, an ACK k past the cookie verified as index +k:
// FuzzListener found a peer that announced MSS 48 and, acknowledging
// cookie+2, got a connection sending 1300-byte segments, with an ISS one
// past the SYN-ACK's. (testdata/fuzz/FuzzListener/cookie-ack-beyond-cookie)
func TestCookieAckBeyondCookie(t *testing.T) {
	for _, tc := range []struct {
		name string
		mss  uint16
		ack  uint32 // relative to the cookie: 1 is right
	}{
		{"mss 48, cookie+2", 48, 2},
		{"mss 536, cookie+2", 536, 2},
		{"mss 1300, cookie+3", 1300, 3},
		{"mss 1460, cookie+0", 1460, 0},
		{"mss 1440, cookie-1", 1440, 1<<32 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tcptest.New(t, tcptest.WithTCP(tcp.Options{SynQueueLimit: 1}))
			p.Listen(16)
			p.Inject(tcptest.Seg{Flags: "S", Seq: 0, MSS: 1460}) // fills the SYN queue
			p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
			p.PeerPort++
			p.SetStackISS(0, false) // learn the cookie from the next SYN-ACK
			p.Inject(tcptest.Seg{Flags: "S", Seq: 0, MSS: tc.mss})
			p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
			p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: tc.ack})
			p.Expect(tcptest.Seg{Flags: "R", Seq: tc.ack})
			p.ExpectNothing()
			if n := len(p.TCP.Connections()); n != 1 {
				t.Errorf("%d connections, want only the half-open one that filled the SYN queue", n)
			}
			st := p.TCP.Stats()
			if a, r := st.Listen.CookiesAccepted.Load(), st.Listen.CookiesRejected.Load(); a != 0 || r != 1 {
				t.Errorf("cookies accepted %d, rejected %d; want 0, 1", a, r)
			}
			// The right ACK still makes the connection.
			p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
			p.ExpectNothing()
			if n := len(p.TCP.Connections()); n != 2 {
				t.Errorf("%d connections after the right ACK, want 2", n)
			}
		})
	}
}

// TestStaleHeldFin: a FIN held out of order at f that in-order text then
// overtakes (the text runs past f) is old by the time RCV.NXT passes it:
// it must not be taken at the end of the text, which would acknowledge a
// sequence number the peer never sent and end the connection's receive
// side on a FIN that is not where the peer put it. Linux drops it
// (tcp_ofo_queue: an out-of-order skb whose end_seq is not after rcv_nxt
// "was already received"). The peer contradicts itself, but a hostile peer
// may: RFC 9293 3.10.7.4 takes a FIN only when it is in order.
// FuzzConnection found it (seed stale-fin-overtaken-by-text).
func TestStaleHeldFin(t *testing.T) {
	t.Skip("known bug: a held FIN overtaken by in-order text is taken at the end of the text, acknowledging one sequence number the peer never sent; receive.go (drainOutOfOrder) is being rewritten (reported to lead)")
	p, ep := tcptest.Established(t)
	p.Inject(tcptest.Seg{Flags: "F.", Seq: 1090, Ack: 1}) // FIN alone, out of order
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})      // duplicate ACK; the FIN is held
	text := make([]byte, 1460)
	p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: text}) // 1:1461, across 1090
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1461})              // not 1462
	p.ExpectNothing()
	p.WantState(ep, tcp.Established)
}
