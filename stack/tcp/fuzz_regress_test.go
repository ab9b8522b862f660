package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
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
	p, ep := tcptest.Established(t)
	p.Inject(tcptest.Seg{Flags: "F.", Seq: 1090, Ack: 1}) // FIN alone, out of order
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})     // duplicate ACK; the FIN is held
	text := make([]byte, 1460)
	p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: text}) // 1:1461, across 1090
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1461})              // not 1462
	p.ExpectNothing()
	p.WantState(ep, event.Established)
}

// TestSynAckRetransmitKeepsWindow: a retransmitted SYN-ACK must not pull
// back the right edge of a window the stack already offered. In
// SYN-RECEIVED a challenge ACK (RFC 5961 3.2) offers the full scaled
// window; a peer whose final ACK was lost takes it. The SYN-ACK
// retransmitted next offers at most 65535 bytes (RFC 7323 2.2: a SYN's
// window is not scaled), and sendSegment then sets the promised edge to
// RCV.NXT+65535, so text the peer may send within the edge it was offered
// is dropped as out of window. RFC 9293 3.8.6.2.2: the receiver SHOULD NOT
// shrink the window, and must be prepared to accept what it offered.
// FuzzConnection found it (the window edge moved left from 1048577 to
// 1047105; seed synreceived-challenge-ack-synack-shrinks).
func TestSynAckRetransmitKeepsWindow(t *testing.T) {
	p, ep := tcptest.SynReceived(t, tcptest.WithSynOptions(tcptest.Seg{MSS: 1460, WS: 7}))
	p.Inject(tcptest.Seg{Flags: "R", Seq: 100}) // in the window, not at RCV.NXT
	ack := p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	scale := ep.Info().RcvWndScale
	if edge := 1 + uint32(ack.Win)<<scale; edge <= 100001+100 {
		t.Fatalf("the challenge ACK offers a window up to %d; the test needs one past 100101", edge)
	}
	p.Advance(time.Second) // the SYN-ACK's retransmission timeout
	p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1}) // the final ACK: ESTABLISHED
	p.WantState(ep, event.Established)
	// Text within the edge the challenge ACK offered, beyond 65535: held
	// out of order, answered with a duplicate ACK.
	p.Inject(tcptest.Seg{Flags: "P.", Seq: 100001, Ack: 1, Payload: make([]byte, 100)})
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	if n := p.TCP.Stats().Dropped(event.DropOutOfWindow); n != 0 {
		t.Errorf("Dropped(out of window) = %d, want 0: the text was inside the window offered", n)
	}
	if n := tcp.HeldOutOfOrder(ep); n != 100 {
		t.Errorf("%d bytes held out of order, want 100", n)
	}
}
