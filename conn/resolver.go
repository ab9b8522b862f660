package conn

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/tapstack/tapstack/stack"
)

// Resolver returns a net.Resolver that asks DNS servers through s: Go's
// own resolver (PreferGo) with its UDP and TCP connections dialed on the
// stack, so names resolve over the stack's interfaces, not the host's.
// Queries go to servers, the first for the first attempt and the next
// one for each retry Go's resolver makes; with no server given, to the
// servers of the host's /etc/resolv.conf, reached through s. As with any
// PreferGo resolver, /etc/hosts is read first. Use it as Dialer.Resolver,
// or directly (LookupHost, LookupNetIP). Cancelling a lookup's context
// ends it at once: its sockets' deadlines pass (Go's resolver waits on a
// socket only until its deadline).
func Resolver(s *stack.Stack, servers ...netip.AddrPort) *net.Resolver {
	servers = append([]netip.AddrPort(nil), servers...)
	var next atomic.Uint64
	d := &Dialer{Stack: s}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if len(servers) > 0 {
				i := next.Add(1) - 1
				address = servers[i%uint64(len(servers))].String()
			}
			c, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			// Go's resolver ends each exchange by cancelling ctx, and
			// Dialer.Timeout cancels it early: either way the socket's
			// blocked reads and writes return. Past its exchange the
			// socket is closed, and the deadline changes nothing.
			context.AfterFunc(ctx, func() { _ = c.SetDeadline(s.Clock().Now()) })
			return c, nil
		},
	}
}
