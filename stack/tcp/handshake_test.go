package tcp_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

type seg = tcptest.Seg

// TestHandshakePassive is the three-way handshake of RFC 9293 3.5 figure 7
// with tapstack as TCP B: LISTEN -> SYN-RECEIVED -> ESTABLISHED, and the
// connection appears in Accept only once established (3.10.1).
func TestHandshakePassive(t *testing.T) {
	p, l := tcptest.Listen(t)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Win: 65535})
	if _, err := l.Accept(); err != tcp.ErrWouldBlock {
		t.Fatalf("Accept before the final ACK: %v, want ErrWouldBlock", err)
	}
	if q := l.Queues(); q.SynQueueLen != 1 || q.AcceptQueueLen != 0 {
		t.Fatalf("queues %+v, want one half-open entry", q)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	ep, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	p.WantState(ep, event.Established)
	if ok, err := ep.Established(); !ok || err != nil {
		t.Fatalf("Established() = %v, %v", ok, err)
	}
}

// TestHandshakeActive is figure 7 with tapstack as TCP A:
// CLOSED -> SYN-SENT -> ESTABLISHED, the third segment a bare ACK.
func TestHandshakeActive(t *testing.T) {
	p := tcptest.New(t)
	ep := p.Connect()
	p.Expect(seg{Flags: "S", Seq: 0, Win: 65535})
	p.WantState(ep, event.SynSent)
	if ok, err := ep.Established(); ok || err != nil {
		t.Fatalf("Established() in SYN-SENT = %v, %v, want false, nil", ok, err)
	}
	p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	p.WantState(ep, event.Established)
	if ok, err := ep.Established(); !ok || err != nil {
		t.Fatalf("Established() = %v, %v", ok, err)
	}
}

// TestSimultaneousOpen is RFC 9293 3.5 figure 8: both sides send SYN, each
// answers the other's SYN with a SYN-ACK carrying its own ISS again, and
// each enters ESTABLISHED on the other's SYN-ACK.
func TestSimultaneousOpen(t *testing.T) {
	p, ep := tcptest.SynSent(t)
	// The peer's SYN crosses ours: SYN-SENT -> SYN-RECEIVED, and we
	// answer <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> (3.10.7.3 fourth step).
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
	p.WantState(ep, event.SynReceived)

	t.Run("peer ACKs", func(t *testing.T) {
		// A plain ACK of our SYN completes it (3.10.7.4 fifth step,
		// SYN-RECEIVED).
		p, ep := tcptest.SynSent(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		p.ExpectNothing()
		p.WantState(ep, event.Established)
		if ok, err := ep.Established(); !ok || err != nil {
			t.Fatalf("Established() = %v, %v", ok, err)
		}
	})
	t.Run("peer SYN-ACKs", func(t *testing.T) {
		// Figure 8 line 7: the peer's SYN-ACK <SEQ=0><ACK=1> (its SYN
		// again, now acknowledging ours) moves us to ESTABLISHED. Its
		// SYN lies just below RCV.NXT; Linux (tcp_validate_incoming)
		// accepts exactly this segment in SYN-RECEIVED.
		p, ep := tcptest.SynSent(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
		p.WantState(ep, event.Established)
	})
}

// TestSynMSSOption: a SYN and a SYN-ACK carry our MSS, the MTU less the
// fixed IPv4 and TCP headers (RFC 9293 3.7.1, RFC 6691): 1460 at MTU 1500.
func TestSynMSSOption(t *testing.T) {
	t.Run("SYN", func(t *testing.T) {
		p := tcptest.New(t)
		p.Connect()
		p.Expect(seg{Flags: "S", Seq: 0, MSS: 1460})
	})
	t.Run("SYN-ACK", func(t *testing.T) {
		p, _ := tcptest.Listen(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
	})
	t.Run("MTU 1280", func(t *testing.T) {
		p, _ := tcptest.Listen(t, tcptest.WithMTU(1280))
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1240})
	})
}

// TestSendMSS: the peer's MSS option bounds our segments (RFC 9293
// 3.7.1); without the option the default is 536 (RFC 9293 3.7.1, RFC 6691).
func TestSendMSS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		peerMSS uint16
		want    int
	}{
		{"peer 1000", 1000, 1000},
		{"peer 9000 capped by our MTU", 9000, 1460},
		{"no option", 0, 536},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: tc.peerMSS}))
			if got := ep.Info().SndMSS; got != tc.want {
				t.Errorf("send MSS %d, want %d", got, tc.want)
			}
			if _, err := ep.Write(make([]byte, 2*tc.want)); err != nil {
				t.Fatal(err)
			}
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: tc.want})
			p.Expect(seg{Flags: "P.", Seq: 1 + uint32(tc.want), Ack: 1, Len: tc.want})
		})
	}
}

// TestSendMSSSmallPeer: RFC 9293 3.7.1 (MUST-16): the segments we send
// never carry more than the peer's MSS, however small, down to a floor of
// 48 bytes, Linux's TCP_MIN_SND_MSS (__tcp_mtu_to_mss), below which we
// send 48 as Linux does. With timestamps in force their 12-byte option is
// taken off the MSS after the floor (RFC 6691; Linux's tcp_mtu_to_mss), so
// text and options together fit the MSS: 50 leaves 38 bytes of text.
func TestSendMSSSmallPeer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		peerMSS uint16
		ts      bool
		want    int
	}{
		{"peer 50", 50, false, 50},
		{"peer 50 with timestamps", 50, true, 38},
		{"peer 20 below the floor", 20, false, 48},
		{"peer 20 below the floor with timestamps", 20, true, 36},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []tcptest.Option{tcptest.WithSynOptions(seg{MSS: tc.peerMSS})}
			if tc.ts {
				opts = append(opts, tcptest.WithTimestamps())
			}
			p, ep := tcptest.Established(t, opts...)
			if got := ep.Info().SndMSS; got != tc.want {
				t.Errorf("send MSS %d, want %d", got, tc.want)
			}
			data := payload(0, 3*tc.want)
			if _, err := ep.Write(data); err != nil {
				t.Fatal(err)
			}
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:tc.want]})
			p.Expect(seg{Flags: ".", Seq: 1 + uint32(tc.want), Ack: 1, Payload: data[tc.want : 2*tc.want]})
			p.Expect(seg{Flags: "P.", Seq: 1 + 2*uint32(tc.want), Ack: 1, Payload: data[2*tc.want:]})
		})
	}
}

// TestWindowScale: RFC 7323 2.2 and 1.3. Window scaling is in force only
// when both SYNs carry the option; we offer wscale 7 for the receive
// buffer's default 6 MiB maximum (the smallest shift that covers it: the
// buffer grows, rcvbuf.go), and a SYN-ACK
// carries it only in answer to a SYN that did.
func TestWindowScale(t *testing.T) {
	t.Run("passive, both offer", func(t *testing.T) {
		p, l := tcptest.Listen(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, WS: 7})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Win: 65535, WS: 7})
		// The window of the final ACK is scaled by the peer's shift:
		// 100 << 7 = 12800 bytes (RFC 7323 2.3).
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 100})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		info := ep.Info()
		if info.SndWndScale != 7 || info.RcvWndScale != 7 || info.TCB.SndWnd != 12800 {
			t.Errorf("scales %d/%d, SND.WND %d; want 7/7, 12800", info.SndWndScale, info.RcvWndScale, info.TCB.SndWnd)
		}
		// Our window field is scaled by our shift: 1 MiB >> 7.
		ep.Write([]byte("x"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Win: 1 << 20 >> 7, Payload: []byte("x")})
	})
	t.Run("passive, peer omits", func(t *testing.T) {
		p, l := tcptest.Listen(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Win: 65535, WS: tcptest.NoWS})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 100})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if w := ep.Info().TCB.SndWnd; w != 100 {
			t.Errorf("SND.WND %d, want 100 (unscaled)", w)
		}
		ep.Write([]byte("x"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Win: 65535, Payload: []byte("x")})
	})
	t.Run("active, both offer", func(t *testing.T) {
		p := tcptest.New(t)
		ep := p.Connect()
		p.Expect(seg{Flags: "S", Seq: 0, WS: 7})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460, WS: 2, Win: 1000})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Win: 1 << 20 >> 7})
		// The window of a SYN-ACK is never scaled (RFC 7323 2.2); later
		// ones are.
		if w := ep.Info().TCB.SndWnd; w != 1000 {
			t.Errorf("SND.WND after SYN-ACK %d, want 1000", w)
		}
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 1000})
		if w := ep.Info().TCB.SndWnd; w != 4000 {
			t.Errorf("SND.WND %d, want 1000<<2", w)
		}
	})
	t.Run("active, peer omits", func(t *testing.T) {
		p := tcptest.New(t)
		ep := p.Connect()
		p.Expect(seg{Flags: "S", Seq: 0})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460, Win: 1000})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Win: 65535})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 1000})
		if w := ep.Info().TCB.SndWnd; w != 1000 {
			t.Errorf("SND.WND %d, want 1000 (unscaled)", w)
		}
	})
}

// TestWindowScaleOffInfo: Info documents SndWndScale and RcvWndScale as
// -1 when window scaling is off.
func TestWindowScaleOffInfo(t *testing.T) {
	_, ep := tcptest.Established(t) // the fixture's SYN has no wscale
	if i := ep.Info(); i.SndWndScale != -1 || i.RcvWndScale != -1 {
		t.Errorf("Info scales %d/%d with scaling off, want -1/-1 as documented", i.SndWndScale, i.RcvWndScale)
	}
}

// TestHandshakeRTTAfterLostAnswer: our SYN (or SYN-ACK) reached the peer
// but its answer was lost, so we sent it again after the RTO, and the
// answer that finally arrives echoes the first one's TSval. now - TSecr
// is then the RTO wait, not a round trip: it must not seed SRTT (Eifel,
// RFC 3522, as for data), and with no sample the RTO starts at 3 s (RFC
// 6298 5.7). An answer echoing the retransmission is a fair sample. Before
// this rule, a 20% loss transfer began with SRTT ≈ 3 s and RTOs of 13 s.
func TestHandshakeRTTAfterLostAnswer(t *testing.T) {
	const wait = 1 * time.Second // the initial RTO
	const rtt = 30 * time.Millisecond
	for _, tc := range []struct {
		name        string
		passive     bool
		echoLatest  bool
		wantRTT     time.Duration
		wantRTO     time.Duration
		wantSampled bool
	}{
		{name: "active, answer echoes the first SYN", wantRTO: 3 * time.Second},
		{name: "active, answer echoes the retransmitted SYN", echoLatest: true, wantRTT: rtt, wantSampled: true},
		{name: "passive, ACK echoes the first SYN-ACK", passive: true, wantRTO: 3 * time.Second},
		{name: "passive, ACK echoes the retransmitted SYN-ACK", passive: true, echoLatest: true, wantRTT: rtt, wantSampled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p *tcptest.Peer
			var ep *tcp.Endpoint
			var l *tcp.Listener
			if tc.passive {
				p, l = tcptest.Listen(t, tcptest.WithTimestamps())
				p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
			} else {
				p = tcptest.New(t, tcptest.WithTimestamps())
				ep = p.Connect()
			}
			want := seg{Flags: "S", Seq: 0}
			if tc.passive {
				want = seg{Flags: "S.", Seq: 0, Ack: 1}
			}
			first := p.Expect(want)
			p.Advance(wait)
			again := p.Expect(want)
			if again.TSVal == first.TSVal {
				t.Fatalf("the retransmission carries the first TSval %d", first.TSVal)
			}
			p.Advance(rtt)
			echo := first.TSVal
			if tc.echoLatest {
				echo = again.TSVal
			}
			if tc.passive {
				p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, TS: true, TSVal: p.TSClock(), TSEcr: echo})
				p.ExpectNothing()
				var err error
				if ep, err = l.Accept(); err != nil {
					t.Fatalf("Accept: %v", err)
				}
			} else {
				p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460, TS: true, TSVal: p.TSClock(), TSEcr: echo})
				p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
			}
			p.WantState(ep, event.Established)
			i := ep.Info()
			if tc.wantSampled {
				if i.RTT != tc.wantRTT {
					t.Errorf("SRTT %v, want %v from the echo of the retransmission", i.RTT, tc.wantRTT)
				}
				return
			}
			if i.RTT != 0 || i.RTO != tc.wantRTO {
				t.Errorf("SRTT %v, RTO %v; want no sample (0) and RTO %v", i.RTT, i.RTO, tc.wantRTO)
			}
		})
	}
}
