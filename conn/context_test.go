package conn_test

import (
	"context"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

type ctxKey string

// Conn.Context is what the stack's ConnContext made of the connection's
// 4-tuple when Dial or Accept handed it over: for a dialed connection
// from DialContext's context, whose values it keeps and whose
// cancellation it does not; for an accepted one from
// context.Background. Without the hook it is that context as it is.
func TestConnContext(t *testing.T) {
	fake(t, func(t *testing.T, clock *faketime.ManualClock) {
		hook := func(name string, seen *[]event.ConnID) func(context.Context, event.ConnID) context.Context {
			return func(ctx context.Context, id event.ConnID) context.Context {
				*seen = append(*seen, id)
				return context.WithValue(ctx, ctxKey("stack"), name)
			}
		}
		var dialed, accepted []event.ConnID
		p, err := stack.NewPair(stack.PairOptions{
			Client: stack.Options{Clock: clock, ConnContext: hook("client", &dialed)},
			Server: stack.Options{Clock: clock, ConnContext: hook("server", &accepted)},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		dctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey("app"), "request 7"))
		c, s := connectContext(t, dctx, p.Client, p.Server)
		cancel()

		cid := event.ConnID{Local: netip.MustParseAddrPort(c.LocalAddr().String()), Remote: netip.MustParseAddrPort(c.RemoteAddr().String())}
		sid := event.ConnID{Local: cid.Remote, Remote: cid.Local}
		if len(dialed) != 1 || dialed[0] != cid || len(accepted) != 1 || accepted[0] != sid {
			t.Errorf("ConnContext called with %v (client) and %v (server), want [%v] and [%v]", dialed, accepted, cid, sid)
		}
		if got := c.Context().Value(ctxKey("stack")); got != "client" {
			t.Errorf("dialed Conn.Context: stack %v, want the client hook's", got)
		}
		if got := c.Context().Value(ctxKey("app")); got != "request 7" {
			t.Errorf("dialed Conn.Context: app %v, want DialContext's value", got)
		}
		if err := c.Context().Err(); err != nil {
			t.Errorf("dialed Conn.Context: %v after the dial's context was cancelled, want none", err)
		}
		if got := s.Context().Value(ctxKey("stack")); got != "server" {
			t.Errorf("accepted Conn.Context: stack %v, want the server hook's", got)
		}

		// Without the hook: the contexts as given.
		client, server := tsPair(t, clock, tcp.Options{}, tcp.Options{})
		c2, s2 := connect(t, client, server)
		if c2.Context() == nil || s2.Context() != context.Background() || c2.Context().Value(ctxKey("stack")) != nil {
			t.Errorf("without ConnContext: contexts %v and %v, want the dial's (without cancel) and Background", c2.Context(), s2.Context())
		}
	})
}
