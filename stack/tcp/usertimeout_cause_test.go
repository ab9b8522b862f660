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

// TestUserTimeoutCause: when a connection gives up on a silent peer, the
// event that moves it to CLOSED names what ran out. With a user timeout
// (RFC 5482, Linux TCP_USER_TIMEOUT) of 3 s that is the user timeout,
// whether the data waited for an acknowledgment (the retransmission timer,
// RFC 6298 5) or behind a zero window (the persist timer, RFC 9293
// 3.8.6.1); without one it is the timer's own limit (RFC 9293 3.8.3:
// MaxRetries retransmissions, or probes), so a reader of the trace can
// tell a limit the user set from the engine's own.
func TestUserTimeoutCause(t *testing.T) {
	const (
		userTimeout = 3 * time.Second
		maxRetries  = 5 // the retries alone give up after 12.6 s, well after the user timeout
	)
	for _, tc := range []struct {
		name        string
		zeroWindow  bool
		userTimeout time.Duration
		want        string
	}{
		{"retransmission/user timeout", false, userTimeout, "user timeout (RFC 5482)"},
		{"retransmission/retries", false, 0, "retransmit"},
		{"zero window/user timeout", true, userTimeout, "user timeout (RFC 5482)"},
		{"zero window/probes", true, 0, "persist: the peer answered no window probe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &events{}
			o := tcp.Options{MaxRetries: maxRetries, Observer: rec.observe}
			var p *tcptest.Peer
			var ep *tcp.Endpoint
			if tc.zeroWindow {
				p, ep = zeroWindow(t, o)
			} else {
				p, ep = tcptest.Established(t, tcptest.WithTCP(o))
				if _, err := ep.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Len: 1})
			}
			ep.SetUserTimeout(tc.userTimeout)
			start := p.Elapsed()
			// The peer stays silent: every retransmission and probe
			// goes unanswered. 10 ms steps; MaxRetries = 5 backed-off
			// RTOs from 200 ms end at 12.6 s, the probes sooner.
			for range 2000 {
				if ep.State() == event.Closed {
					break
				}
				p.Advance(10 * time.Millisecond)
				p.Drain()
			}
			p.WantState(ep, event.Closed)
			if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
				t.Errorf("Read: %v, want ETIMEDOUT", err)
			}
			p.TCP.SyncEvents()
			var closed []event.Event
			for _, ev := range rec.of(event.KindState) {
				if ev.To == event.Closed {
					closed = append(closed, ev)
				}
			}
			if len(closed) != 1 {
				t.Fatalf("%d transitions to CLOSED, want 1: %v", len(closed), closed)
			}
			if c := closed[0].Cause; c.Kind != event.CauseTimer || c.Detail != tc.want {
				t.Errorf("closed by %q (%v), want timer %q", c.Detail, c.Kind, tc.want)
			}
			if tc.userTimeout > 0 {
				// The user timeout, not the retries, ended it: at 3 s
				// after the data waited (within the 10 ms steps).
				if d := p.Elapsed() - start; d < userTimeout || d > userTimeout+10*time.Millisecond {
					t.Errorf("gave up after %v, want %v", d, userTimeout)
				}
			}
		})
	}
}
