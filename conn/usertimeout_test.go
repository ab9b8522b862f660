package conn_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestUserTimeout: SetUserTimeout (RFC 5482, Linux TCP_USER_TIMEOUT)
// ends a connection whose peer vanished while data was in flight: Read
// fails with ETIMEDOUT a second after the data went out, where the
// engine's retry limits alone would wait for minutes.
func TestUserTimeout(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		var link *cuttable
		cs, ss := tsPairLinks(t, clock, tcp.Options{}, tcp.Options{}, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			link = newCuttable(l)
			return link
		}, nil)
		c, _ := connect(t, cs, ss)
		if err := c.SetUserTimeout(time.Second); err != nil {
			t.Fatal(err)
		}
		if err := c.SetUserTimeout(-1); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("SetUserTimeout(-1): %v, want EINVAL", err)
		}
		link.cut.Store(true)
		if _, err := c.Write([]byte("into the void")); err != nil {
			t.Fatal(err)
		}
		ch := start(clock, func() error { _, err := c.Read(make([]byte, 1)); return err })
		r, took := advanceUntil(t, clock, ch, 10*time.Millisecond, time.Minute, "Read")
		if !errors.Is(r.err, syscall.ETIMEDOUT) {
			t.Fatalf("Read: %v, want ETIMEDOUT", r.err)
		}
		// The retransmission timer backs off from 200 ms, and its last
		// interval is cut to end with the user timeout, as Linux's
		// tcp_clamp_rto_to_user_timeout does: the connection fails at 1s
		// to the tick.
		if took != time.Second {
			t.Errorf("ETIMEDOUT after %v of the fake clock, want 1s", took)
		}
	})
}
