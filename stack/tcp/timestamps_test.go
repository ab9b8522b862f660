package tcp_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Packet traces of RFC 7323 timestamps: negotiation (3.2), the TSopt on
// every segment, TS.Recent and its update rule (4.3), PAWS (5.3, 5.5), RTT
// measurement from TSecr (4.1), the send MSS less the option's 12 bytes,
// and SYN cookies that carry the window scale in the timestamp.

func wantTimestamps(t *testing.T, ep *tcp.Endpoint, want bool) {
	t.Helper()
	if got := ep.Info().Timestamps; got != want {
		t.Errorf("Info().Timestamps = %v, want %v", got, want)
	}
}

// TestTimestampsNegotiation: the TSopt is in force only when both SYNs
// carry it (RFC 7323 3.2); we offer it by default, and a SYN-ACK carries
// it only in answer to a SYN that did.
func TestTimestampsNegotiation(t *testing.T) {
	t.Run("active, both offer", func(t *testing.T) {
		p := tcptest.New(t)
		ep := p.Connect()
		// TSecr is 0 on a SYN (3.2: the ACK bit is off).
		syn := p.Expect(seg{Flags: "S", Seq: 0, MSS: 1460, WS: 7, TS: true, Check: tcptest.CheckTSEcr})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460, TS: true, TSVal: 777, TSEcr: syn.TSVal})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, TS: true, TSEcr: 777})
		wantTimestamps(t, ep, true)
	})
	t.Run("active, peer omits", func(t *testing.T) {
		p := tcptest.New(t)
		ep := p.Connect()
		p.Expect(seg{Flags: "S", Seq: 0, TS: true})
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Check: tcptest.CheckTS})
		wantTimestamps(t, ep, false)
		ep.Write([]byte("x"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x"), Check: tcptest.CheckTS})
	})
	t.Run("passive, both offer", func(t *testing.T) {
		p, l := tcptest.Listen(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, TS: true, TSVal: 500})
		sa := p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460, TS: true, TSEcr: 500})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, TS: true, TSVal: 501, TSEcr: sa.TSVal})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		wantTimestamps(t, ep, true)
	})
	t.Run("passive, peer omits", func(t *testing.T) {
		p, l := tcptest.Listen(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Check: tcptest.CheckTS})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		wantTimestamps(t, ep, false)
	})
	t.Run("NoTimestamps", func(t *testing.T) {
		p, l := tcptest.Listen(t, tcptest.WithTCP(tcp.Options{NoTimestamps: true}))
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, TS: true, TSVal: 500})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Check: tcptest.CheckTS})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, TS: true, TSVal: 501, TSEcr: 1})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		wantTimestamps(t, ep, false)

		p.PeerPort++
		p.Connect()
		p.Expect(seg{Flags: "S", Seq: 0, Check: tcptest.CheckTS})
	})
	t.Run("simultaneous open", func(t *testing.T) {
		p := tcptest.New(t)
		ep := p.Connect()
		p.Expect(seg{Flags: "S", Seq: 0, TS: true})
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, TS: true, TSVal: 900})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, TS: true, TSEcr: 900})
		wantTimestamps(t, ep, true)
	})
}

// TestTimestampsEverySegment: with timestamps in force, data, delayed
// ACKs, window updates, FINs and our RSTs all carry the TSopt (RFC 7323
// 3.2), echoing TS.Recent.
func TestTimestampsEverySegment(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTimestamps(), noQuickAck)
	wantTimestamps(t, ep, true)
	ts := p.TSClock() // TS.Recent: the final ACK's TSval
	ep.Write([]byte("data"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("data"), TS: true, TSEcr: ts})
	p.Advance(10 * time.Millisecond)
	ts = p.TSClock()
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 5, Payload: []byte("hi")})
	p.ExpectNothing()
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 5, Ack: 3, TS: true, TSEcr: ts})
	ep.Read(make([]byte, 8))
	ep.Close()
	p.Expect(seg{Flags: "F.", Seq: 5, Ack: 3, TS: true, TSEcr: ts})

	// A RST of the connection carries it too (3.2: SHOULD), echoing
	// TS.Recent since it carries ACK.
	p2, ep2 := tcptest.Established(t, tcptest.WithTimestamps())
	ep2.Reset()
	p2.Expect(seg{Flags: "R.", Seq: 1, Ack: 1, TS: true, TSEcr: tcptest.PeerTSBase, Check: tcptest.CheckTSEcr})
}

// TestTimestampsRecent is the update rule of RFC 7323 4.3: TS.Recent takes
// SEG.TSval only if SEG.SEQ <= Last.ACK.sent, so an ACK covering several
// segments echoes the earliest; an out-of-order segment does not update it.
func TestTimestampsRecent(t *testing.T) {
	p, _ := tcptest.Established(t, tcptest.WithTimestamps(), noQuickAck)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("a"), TS: true, TSVal: 6001, TSEcr: p.LastTSVal})
	p.ExpectNothing() // delayed
	p.Inject(seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("b"), TS: true, TSVal: 6002, TSEcr: p.LastTSVal})
	p.ExpectNothing() // two bytes are less than two full segments
	// The delayed ACK covers both and echoes the first: the second's
	// SEG.SEQ 2 is beyond Last.ACK.sent 1.
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 3, TS: true, TSEcr: 6001})
	// Out of order: SEG.SEQ 5 > Last.ACK.sent 3, so TS.Recent stays
	// 6001, and the duplicate ACK echoes it.
	p.Inject(seg{Flags: "P.", Seq: 5, Ack: 1, Payload: []byte("e"), TS: true, TSVal: 6010, TSEcr: p.LastTSVal})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 3, TS: true, TSEcr: 6001})
	// In order at Last.ACK.sent: taken. It fills the hole: ACK at once.
	p.Inject(seg{Flags: "P.", Seq: 3, Ack: 1, Payload: []byte("cd"), TS: true, TSVal: 6011, TSEcr: p.LastTSVal})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 6, TS: true, TSEcr: 6011})
}

// TestPAWS is RFC 7323 5.3: a segment whose TSval is older than TS.Recent
// is dropped before the sequence check, even if its sequence number is
// fine, and answered with an ACK; a RST is exempt, and so is a segment
// without a TSopt (we follow Linux, where 3.2 allows a drop).
func TestPAWS(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTimestamps())
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("a"), TS: true, TSVal: 7000, TSEcr: p.LastTSVal})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2, TS: true, TSEcr: 7000}) // the first data: a quick ACK
	// The next byte, but with a timestamp from before 7000 (two ticks:
	// one tick older passes, TestPAWSExemptions): an old duplicate from
	// a wrapped sequence space, for all PAWS can tell.
	p.Inject(seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("b"), TS: true, TSVal: 6998, TSEcr: p.LastTSVal})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2, TS: true, TSEcr: 7000})
	if n := p.TCP.Stats().Dropped(event.DropPAWS); n != 1 {
		t.Errorf("PAWS drops = %d, want 1", n)
	}
	if s := event.DropPAWS.String(); s != "PAWS: old timestamp" {
		t.Errorf("DropPAWS = %q", s)
	}
	// Modulo 2^32: a TSval just past the wrap is newer than 7000.
	p.Inject(seg{Flags: "P.", Seq: 2, Ack: 1, Payload: []byte("b"), TS: true, TSVal: 7000 + 1<<31 - 1, TSEcr: p.LastTSVal})
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 3, TS: true, TSEcr: 7000 + 1<<31 - 1})
	// No TSopt: accepted, as Linux does.
	p.Inject(seg{Flags: "P.", Seq: 3, Ack: 1, Payload: []byte("c"), Check: tcptest.CheckTS})
	p.Advance(40 * time.Millisecond)
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4, TS: true})
	buf := make([]byte, 8)
	if n, _ := ep.Read(buf); string(buf[:n]) != "abc" {
		t.Fatalf("read %q, want abc", buf[:n])
	}
	// A RST without a TSopt resets the connection (3.2, 5.3).
	p.Inject(seg{Flags: "R", Seq: 4, Check: tcptest.CheckTS})
	if _, err := ep.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after RST: %v, want ECONNRESET", err)
	}
	if n := p.TCP.Stats().Dropped(event.DropPAWS); n != 1 {
		t.Errorf("PAWS drops = %d, want 1", n)
	}

	t.Run("RST with an old timestamp", func(t *testing.T) {
		p, ep := tcptest.Established(t, tcptest.WithTimestamps())
		p.Inject(seg{Flags: "R", Seq: 1, TS: true, TSVal: 1})
		p.WantState(ep, event.Closed)
	})
	t.Run("TS.Recent invalid after 24 days", func(t *testing.T) {
		// RFC 7323 5.5: after 24 days idle TS.Recent is no longer
		// trusted, and an older TSval (the peer's clock may have
		// wrapped its sign bit meanwhile) is accepted and taken.
		p, ep := tcptest.Established(t, tcptest.WithTimestamps())
		p.Advance(25 * 24 * time.Hour)
		p.Drain()
		p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x"), TS: true, TSVal: 1, TSEcr: p.LastTSVal})
		p.Advance(40 * time.Millisecond)
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 2, TS: true, TSEcr: 1})
		if n := p.TCP.Stats().Dropped(event.DropPAWS); n != 0 {
			t.Errorf("PAWS drops = %d, want 0", n)
		}
		p.WantState(ep, event.Established)
	})
}

// TestTimestampsRTT is RTTM (RFC 7323 4.1): the RTT comes from TSecr,
// also for the handshake's ACK and for an ACK of a retransmission, where
// Karn's rule would forbid timing without timestamps.
func TestTimestampsRTT(t *testing.T) {
	p, l := tcptest.Listen(t, tcptest.WithTimestamps())
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, TS: true})
	// The SYN-ACK is lost; its retransmission is answered 100 ms later.
	p.Advance(time.Second)
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, TS: true})
	p.Advance(100 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if i := ep.Info(); i.RTT != 100*time.Millisecond || i.RTO != 300*time.Millisecond {
		t.Fatalf("RTT %v, RTO %v after the handshake; want 100ms, 300ms", i.RTT, i.RTO)
	}
	// Data, lost once: the RTO fires and the retransmission is ACKed
	// 100 ms later, echoing its TSval: a sample of 100 ms.
	ep.Write([]byte("x"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1, TS: true})
	p.Advance(300 * time.Millisecond)
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1, TS: true})
	if rto := ep.Info().RTO; rto != 600*time.Millisecond {
		t.Fatalf("RTO %v after the timeout, want 600ms", rto)
	}
	p.Advance(100 * time.Millisecond)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	// RFC 6298 2.3: SRTT 100 ms; RTTVAR 3/4 of 50 ms. The RTO is
	// SRTT + max(4·RTTVAR, MinRTO) = 100+max(150, 200), as Linux floors
	// the variance term rather than the whole RTO (RFC 6298 2.4's floor
	// would give 250 ms).
	if i := ep.Info(); i.RTT != 100*time.Millisecond || i.RTTVar != 37500*time.Microsecond || i.RTO != 300*time.Millisecond {
		t.Fatalf("RTT %v, RTTVAR %v, RTO %v; want 100ms, 37.5ms, 300ms", i.RTT, i.RTTVar, i.RTO)
	}
}

// TestTimestampsMSS: with timestamps every segment has 12 option bytes, so
// a full segment carries the MSS less 12 (RFC 6691; Linux tcp_current_mss)
// and IP never fragments: 20 + 32 + 1448 = 1500.
func TestTimestampsMSS(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTimestamps())
	if got := ep.Info().SndMSS; got != 1448 {
		t.Errorf("send MSS %d, want 1448", got)
	}
	ep.SetNoDelay(true)
	ep.Write(make([]byte, 3000))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1448, TS: true})
	p.Expect(seg{Flags: ".", Seq: 1449, Ack: 1, Len: 1448, TS: true})
	p.Expect(seg{Flags: "P.", Seq: 2897, Ack: 1, Len: 104, TS: true})

	t.Run("active", func(t *testing.T) {
		p, ep := tcptest.EstablishedActive(t, tcptest.WithTimestamps(), tcptest.WithSynOptions(seg{MSS: 1000}))
		if got := ep.Info().SndMSS; got != 988 {
			t.Errorf("send MSS %d, want 988", got)
		}
		ep.Write(make([]byte, 988))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 988, TS: true})
	})
}

// TestTimestampsClock: TSval follows the stack's clock in milliseconds,
// from a per-connection offset (RFC 7323 5.4), and never goes backwards.
func TestTimestampsClock(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTimestamps())
	ep.Write([]byte("a"))
	a := p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1, TS: true})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	p.Advance(1234 * time.Millisecond)
	ep.Write([]byte("b"))
	b := p.Expect(seg{Flags: "P.", Seq: 2, Ack: 1, Len: 1, TS: true})
	if d := b.TSVal - a.TSVal; d != 1234 {
		t.Errorf("TSval advanced %d in 1234 ms", d)
	}
	// Another stack's connection on the same 4-tuple starts elsewhere:
	// the offset is keyed by the stack's secret.
	p2, ep2 := tcptest.Established(t, tcptest.WithTimestamps())
	ep2.Write([]byte("c"))
	c := p2.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1, TS: true})
	if c.TSVal == a.TSVal {
		t.Errorf("two stacks' connections share TSval %d", c.TSVal)
	}
}

// TestSynCookieTimestamps: a SYN with timestamps that gets a SYN cookie is
// answered with a SYN-ACK whose TSval carries the peer's window scale
// (Linux cookie_init_timestamp); the ACK's TSecr brings it back, and the
// connection has window scaling and timestamps in force.
func TestSynCookieTimestamps(t *testing.T) {
	setup := func(t *testing.T) (*tcptest.Peer, *tcp.Listener, *notes) {
		p, l, n := listen(t, 16, tcp.Options{SynQueueLimit: 1})
		fillSynQueue(t, p, 1)
		p.PeerPort = 40001
		p.SetStackISS(0, false)
		return p, l, n
	}
	t.Run("window scale recovered", func(t *testing.T) {
		p, l, n := setup(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, WS: 7, TS: true, TSVal: 4242})
		sa := p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460, WS: 7, Win: 65535, TS: true, TSEcr: 4242})
		if st := p.TCP.Stats(); st.Sent(event.SendSynAckCookie) != 1 {
			t.Fatal("no cookie sent")
		}
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 100, TS: true, TSVal: 4243, TSEcr: sa.TSVal})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		i := ep.Info()
		if i.SndWndScale != 7 || i.RcvWndScale != 7 || i.TCB.SndWnd != 12800 || !i.Timestamps || i.SndMSS != 1448 {
			t.Errorf("scales %d/%d, SND.WND %d, timestamps %v, MSS %d; want 7/7, 12800, true, 1448",
				i.SndWndScale, i.RcvWndScale, i.TCB.SndWnd, i.Timestamps, i.SndMSS)
		}
		n.want(t, "SYN cookie accepted: mss 1460, TS, wscale 7")
		ep.Write([]byte("x"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Win: 1 << 20 >> 7, Payload: []byte("x"), TS: true, TSEcr: 4243})
	})
	t.Run("no window scale", func(t *testing.T) {
		p, l, _ := setup(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, TS: true, TSVal: 4242})
		sa := p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, WS: tcptest.NoWS, TS: true, TSEcr: 4242})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 100, TS: true, TSVal: 4243, TSEcr: sa.TSVal})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if i := ep.Info(); i.SndWndScale != -1 || !i.Timestamps || i.TCB.SndWnd != 100 {
			t.Errorf("scale %d, timestamps %v, SND.WND %d; want -1, true, 100", i.SndWndScale, i.Timestamps, i.TCB.SndWnd)
		}
	})
	t.Run("ACK without timestamp", func(t *testing.T) {
		// Like Linux: no TSopt on the ACK, no options: no scaling.
		p, l, _ := setup(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, WS: 7, TS: true, TSVal: 4242})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, WS: 7, TS: true})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 100})
		ep, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if i := ep.Info(); i.SndWndScale != -1 || i.Timestamps {
			t.Errorf("scale %d, timestamps %v; want -1, false", i.SndWndScale, i.Timestamps)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		p, _, n := setup(t)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, WS: 7, TS: true, TSVal: 4242})
		sa := p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, TS: true})
		// The SACK bit we never set, then an echo from far in the past.
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, TS: true, TSVal: 4243, TSEcr: sa.TSVal ^ 0x10})
		p.Expect(seg{Flags: "R", Seq: 1})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, TS: true, TSVal: 4243, TSEcr: sa.TSVal - 200000})
		p.Expect(seg{Flags: "R", Seq: 1})
		if got := p.TCP.Stats().Listen.CookiesRejected.Load(); got != 2 {
			t.Errorf("CookiesRejected = %d, want 2", got)
		}
		n.want(t, "SYN cookie rejected")
	})
}

// TestTimestampsTrace: events show the TSopt as tcpdump does.
func TestTimestampsTrace(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	obs := func(ev event.Event) {
		if ev.Kind == event.KindSend {
			mu.Lock()
			lines = append(lines, ev.Segment.String())
			mu.Unlock()
		}
	}
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: obs}))
	p.Connect()
	syn := p.Expect(seg{Flags: "S", TS: true})
	mu.Lock()
	defer mu.Unlock()
	want := "options [mss 1460,sackOK,TS val " + strconv.FormatUint(uint64(syn.TSVal), 10) + " ecr 0,wscale 7]"
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("SYN event %q, want it to contain %q", lines, want)
	}
}
