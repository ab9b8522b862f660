package tcp_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// zeroWindow is an established connection whose peer has just closed its
// window, with data waiting to be sent behind it.
func zeroWindow(t *testing.T, o tcp.Options) (*tcptest.Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := tcptest.Established(t, tcptest.WithTCP(o))
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
	if _, err := ep.Write([]byte("behind the window")); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	return p, ep
}

// probes advances the clock to each zero-window probe in turn and counts
// them, up to max, answering each with an ACK that keeps the window
// closed when answer is set. It stops when the connection is CLOSED.
func probes(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, max int, answer bool) int {
	t.Helper()
	n := 0
	for range max {
		rto := ep.Info().RTO
		p.Advance(rto)
		sent := p.Drain()
		if ep.State() == event.Closed {
			return n
		}
		for _, s := range sent {
			if s.Seq == 0 && s.Len == 0 { // SND.UNA-1: Linux's probe
				n++
			}
		}
		if answer {
			p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
			p.Drain()
		}
	}
	return n
}

// TestPersistAnswered: a peer that answers every zero-window probe with
// its closed window is alive, and the connection waits as long as it
// takes (RFC 1122 4.2.2.17), well past MaxRetries probes.
func TestPersistAnswered(t *testing.T) {
	p, ep := zeroWindow(t, tcp.Options{})
	if n := probes(t, p, ep, 40, true); n != 40 {
		t.Fatalf("%d probes answered, want 40 and the connection alive", n)
	}
	p.WantState(ep, event.Established)
}

// TestPersistGivesUp: a peer that vanished behind a zero window answers
// no probe. After MaxRetries unanswered probes (Linux tcp_retries2, as
// tcp_probe_timer counts them) the connection fails with ETIMEDOUT; once
// the user has closed it, after OrphanRetries (Linux tcp_orphan_retries,
// 8). Before this, such a connection stayed in FIN-WAIT-1 for ever.
func TestPersistGivesUp(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		p, ep := zeroWindow(t, tcp.Options{MaxRetries: 5})
		if n := probes(t, p, ep, 50, false); n != 5 {
			t.Errorf("%d probes before giving up, want MaxRetries = 5", n)
		}
		p.WantState(ep, event.Closed)
		if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
			t.Errorf("Read after giving up: %v, want ETIMEDOUT", err)
		}
	})
	t.Run("orphan", func(t *testing.T) {
		p, ep := zeroWindow(t, tcp.Options{})
		ep.Close()
		p.WantState(ep, event.FinWait1)
		if n := probes(t, p, ep, 50, false); n != 8 {
			t.Errorf("%d probes before giving up on an orphan, want OrphanRetries = 8", n)
		}
		p.WantState(ep, event.Closed)
		if n := p.TCP.Stats().Timeouts.Load(); n != 1 {
			t.Errorf("Timeouts %d, want 1", n)
		}
	})
}

// TestUserTimeout: with a user timeout (RFC 5482, Linux TCP_USER_TIMEOUT)
// of 3 s, data that stays unacknowledged fails the connection with
// ETIMEDOUT 3 s after it was sent, not after MaxRetries backed-off
// retransmissions (minutes); the last retransmission timer is cut short
// to end exactly then. The same bound holds behind a zero window.
func TestUserTimeout(t *testing.T) {
	t.Run("unacknowledged", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		ep.SetUserTimeout(3 * time.Second)
		ep.Write([]byte("x"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1})
		start := p.Elapsed()
		for range 1000 {
			if ep.State() == event.Closed {
				break
			}
			p.Advance(10 * time.Millisecond)
			p.Drain()
		}
		p.WantState(ep, event.Closed)
		if d := p.Elapsed() - start; d < 3*time.Second || d > 3*time.Second+10*time.Millisecond {
			t.Errorf("gave up after %v, want 3s", d)
		}
		if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
			t.Errorf("Read: %v, want ETIMEDOUT", err)
		}
	})
	t.Run("zero window", func(t *testing.T) {
		p, ep := zeroWindow(t, tcp.Options{})
		ep.SetUserTimeout(3 * time.Second)
		for range 1000 {
			if ep.State() == event.Closed {
				break
			}
			p.Advance(10 * time.Millisecond)
			p.Drain()
		}
		p.WantState(ep, event.Closed)
		if d := p.Elapsed(); d > 4*time.Second {
			t.Errorf("gave up %v into the fixture, want about 3s after the window closed", d)
		}
	})
}

// shrunkWindow is an established connection with 100 bytes in flight
// whose peer then shrinks its window to zero (RFC 9293 3.8.6.2.2 says it
// should not; RFC 1122 4.2.2.16 says a sender must cope): it ACKs
// nothing of the segment, having dropped it, and offers a zero window.
func shrunkWindow(t *testing.T, o tcp.Options) (*tcptest.Peer, *tcp.Endpoint) {
	t.Helper()
	p, ep := tcptest.Established(t, tcptest.WithTCP(o))
	if _, err := ep.Write(payload(0, 100)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 100})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
	p.ExpectNothing()
	return p, ep
}

// shrunkProbe advances the clock to the next retransmission timeout and
// expects the retransmission of the segment the window shrank under: with
// data in flight it is the zero-window probe. It answers with the closed
// window when answer is set, and reports false once the connection is
// CLOSED instead.
func shrunkProbe(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint, answer bool) bool {
	t.Helper()
	p.Advance(ep.Info().RTO)
	if ep.State() == event.Closed {
		return false
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 100})
	p.ExpectNothing()
	if answer {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: 0, Check: tcptest.CheckWin})
		p.ExpectNothing()
	}
	return true
}

// TestShrunkWindowAnswered: the window shrinks to zero under data in
// flight, so the persist timer does not run and the retransmissions are
// the window's probes. The peer answers every one with its closed window:
// it is alive, and the connection stays open for as long as that lasts
// (RFC 1122 4.2.2.16: a sender "SHOULD NOT time out the connection if
// data beyond the right window edge is not acknowledged"; 4.2.2.17 and
// RFC 9293 3.8.6.1: it MUST NOT close a connection whose receiver keeps
// answering with a zero window), here an hour, past MaxRetries (15)
// timeouts many times over. Linux does the same (tcp_retransmit_timer,
// "receiver dastardly shrinks window"). Before, each answered
// retransmission counted against MaxRetries, and the connection failed
// with ETIMEDOUT after some 15 minutes. When the window opens, the
// transfer goes on.
func TestShrunkWindowAnswered(t *testing.T) {
	p, ep := shrunkWindow(t, tcp.Options{})
	n := 0
	for p.Elapsed() < time.Hour {
		if !shrunkProbe(t, p, ep, true) {
			t.Fatalf("CLOSED after %d answered probes, %v into the test\n%s", n, p.Elapsed(), p.Trace())
		}
		n++
	}
	if rto := ep.Info().RTO; rto != p.TCP.Options().MaxRTO {
		t.Errorf("RTO %v after %d probes, want it backed off to MaxRTO, %v", rto, n, p.TCP.Options().MaxRTO)
	}
	// The window opens: the peer takes the segment.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 101})
	p.ExpectNothing()
	p.WantState(ep, event.Established)
	wantCount(t, "Timeouts", p.TCP.Stats().Timeouts.Load(), 0)
	if _, err := ep.Write(payload(100, 100)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: 101, Ack: 1, Len: 100})
}

// TestShrunkWindowOrphanGivesUp: the same answered shrunk window, but the
// user has closed the connection: nobody will ever read what it would
// deliver, and a peer that keeps its window closed would hold it for
// ever. Like Linux, which keeps only a socket that is not orphaned
// (SOCK_DEAD) in tcp_retransmit_timer's zero-window branch and times an
// orphan's retransmissions out by tcp_orphan_retries, the orphan's
// answered retransmissions count against OrphanRetries (8), as the
// persist timer's probes of an orphan do (TestPersistGivesUp).
func TestShrunkWindowOrphanGivesUp(t *testing.T) {
	p, ep := shrunkWindow(t, tcp.Options{})
	ep.Close()
	p.ExpectNothing() // the FIN waits for the window (TestFinWaitsForWindow)
	p.WantState(ep, event.FinWait1)
	n := 0
	for range 50 {
		if !shrunkProbe(t, p, ep, true) {
			break
		}
		n++
	}
	if n != 8 {
		t.Errorf("%d answered retransmissions before giving up on an orphan, want OrphanRetries = 8", n)
	}
	p.WantState(ep, event.Closed)
	wantCount(t, "Timeouts", p.TCP.Stats().Timeouts.Load(), 1)
}

// TestShrunkWindowSilentPeerGivesUp: the peer answers the probes of its
// shrunk window for a while, past MaxRetries (5 here) of them, then
// falls silent. A peer that answers no probe has gone, window or not
// (the persist timer's rule, TestPersistGivesUp): after MaxRetries
// unanswered retransmissions in a row the connection fails with
// ETIMEDOUT. Linux gives up once nothing came back for 2*TCP_RTO_MAX
// (tcp_rtx_probe0_timed_out); we count unanswered probes, as our persist
// timer and Linux's tcp_probe_timer do.
func TestShrunkWindowSilentPeerGivesUp(t *testing.T) {
	const maxRetries = 5
	p, ep := shrunkWindow(t, tcp.Options{MaxRetries: maxRetries})
	for i := range 2 * maxRetries {
		if !shrunkProbe(t, p, ep, true) {
			t.Fatalf("CLOSED after %d answered probes\n%s", i, p.Trace())
		}
	}
	n := 0
	for range 50 {
		if !shrunkProbe(t, p, ep, false) {
			break
		}
		n++
	}
	if n != maxRetries {
		t.Errorf("%d unanswered retransmissions before giving up, want MaxRetries = %d", n, maxRetries)
	}
	p.WantState(ep, event.Closed)
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("Read after giving up: %v, want ETIMEDOUT", err)
	}
	wantCount(t, "Timeouts", p.TCP.Stats().Timeouts.Load(), 1)
}

// TestFinWaitsForWindow: the FIN takes a sequence number, so it needs
// room in the peer's window as data does: a receiver with a zero window
// drops it (RFC 9293 3.10.7.4: a segment of length 1 is not acceptable
// with RCV.WND = 0; Linux's tcp_data_queue drops it,
// TCPZeroWindowDrop). After shutdown(SHUT_WR) with the window closed it
// waits and the persist timer probes, as RFC 9293 3.8.6.1 has it for
// data; as Linux does (tcp_snd_wnd_test counts the FIN in end_seq,
// tcp_check_probe_timer arms the probes). The peer answers for an hour;
// when its window opens the FIN goes, and the connection closes as usual.
// Before, the FIN left into the closed window, was in flight, so no
// persist timer ran, and its answered retransmissions timed the
// connection out.
func TestFinWaitsForWindow(t *testing.T) {
	p, ep := tcptest.Established(t)
	if _, err := ep.Write(payload(0, 100)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 100})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 101, Win: 0, Check: tcptest.CheckWin})
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.WantState(ep, event.FinWait1)
	p.ExpectNothing() // no room for the FIN
	n := 0
	for p.Elapsed() < time.Hour {
		p.Advance(ep.Info().RTO)
		p.Expect(seg{Flags: ".", Seq: 100, Ack: 1}) // SND.UNA-1: the window probe
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 101, Win: 0, Check: tcptest.CheckWin})
		p.ExpectNothing()
		p.WantState(ep, event.FinWait1)
		n++
	}
	if n < 30 {
		t.Errorf("%d probes in an hour, want one at least every MaxRTO", n)
	}
	// The window opens: the FIN goes, and the close completes.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 101, Win: 1})
	p.Expect(seg{Flags: "F.", Seq: 101, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 102})
	p.WantState(ep, event.FinWait2)
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 102})
	p.Expect(seg{Flags: ".", Seq: 102, Ack: 2})
	p.WantState(ep, event.TimeWait)
	wantCount(t, "Timeouts", p.TCP.Stats().Timeouts.Load(), 0)
}

// TestFinWaitsForRoomAfterData: the last data fills the peer's window to
// its right edge: the data goes, and the FIN, for which no room is left,
// waits for the next ACK to open the window (RFC 9293 3.8.6.1; the FIN's
// sequence number must lie within SND.UNA + SND.WND, as Linux's
// tcp_snd_wnd_test counts it). Linux would hold the whole last segment
// until it fits with its FIN; sending the data that fits costs no more
// segments and delivers it sooner.
func TestFinWaitsForRoomAfterData(t *testing.T) {
	p, ep := tcptest.Established(t)
	shift := max(ep.Info().SndWndScale, 0) // -1: no window scaling
	win := func(bytes int) uint16 { return uint16(bytes >> shift) }
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Win: win(100)})
	if _, err := ep.Write(payload(0, 100)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 100})
	if _, err := ep.Write(payload(100, 200)); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing() // the window is full
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	// Room for the 200 bytes left, not for the FIN after them.
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 101, Win: win(200)})
	p.Expect(seg{Flags: "P.", Seq: 101, Ack: 1, Len: 200})
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 301, Win: win(200)})
	p.Expect(seg{Flags: "F.", Seq: 301, Ack: 1})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 302})
	p.WantState(ep, event.FinWait2)
}

// TestPersistOrphanAnsweredGivesUp: the user closed the connection (an
// orphan: its FIN waits behind the data) and the peer answers every
// window probe with its window still closed. RFC 1122 4.2.2.17 keeps a
// connection while its receiver answers, and one the user has not closed
// is kept (TestPersistAnswered); but nobody will read what an orphan
// waits to deliver, and a peer that never opens its window would hold
// it, and its send buffer, for ever. Linux's tcp_probe_timer gives a
// SOCK_DEAD socket up once the backed-off probe interval has reached
// TCP_RTO_MAX and icsk_backoff, which such answers do not reset, has
// reached tcp_orphan_retries: the same here with MaxRTO and
// OrphanRetries (8), counted in Timeouts (TCPAbortOnTimeout) and in
// LimitStats.OrphanProbeAborts. Before this the orphan stayed in
// FIN-WAIT-1 through 60 answered probes, 1 h 43 min, and beyond.
func TestPersistOrphanAnsweredGivesUp(t *testing.T) {
	const maxRTO = 120 * time.Second // Options.MaxRTO's default, Linux's TCP_RTO_MAX
	p, ep := zeroWindow(t, tcp.Options{})
	ep.Close()
	p.WantState(ep, event.FinWait1)
	atMax := 0 // probe intervals at MaxRTO
	n := 0
	for range 60 {
		if ep.Info().RTO == maxRTO {
			atMax++
		}
		if probes(t, p, ep, 1, true) == 0 {
			break
		}
		n++
	}
	p.WantState(ep, event.Closed)
	t.Logf("%d probes answered, %d intervals at MaxRTO, %v", n, atMax, p.Elapsed())
	// The backoffs reach OrphanRetries before the interval reaches
	// MaxRTO (from 200 ms, ten doublings), so the first timer at MaxRTO
	// gives up, as Linux's does with tcp_orphan_retries 8.
	if n < 8 || atMax != 1 {
		t.Errorf("given up after %d answered probes and %d intervals at MaxRTO, want at least OrphanRetries (8) and 1", n, atMax)
	}
	if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("Read after giving up: %v, want ETIMEDOUT", err)
	}
	wantCount(t, "Timeouts", p.TCP.Stats().Timeouts.Load(), 1)
	wantCount(t, "OrphanProbeAborts", p.TCP.Limits().OrphanProbeAborts.Load(), 1)
	if u := p.TCP.Usage(); u.Orphans != 0 {
		t.Errorf("Usage().Orphans = %d, want 0", u.Orphans)
	}
}
