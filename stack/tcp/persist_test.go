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
