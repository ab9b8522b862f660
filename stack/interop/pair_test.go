package interop

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// tapstackPair is two tapstack stacks on one cable; the client dials the
// server's listener.
func tapstackPair(t testing.TB, v6 bool) (client, server *stack.Stack, c, s *conn.Conn) {
	t.Helper()
	cp, sp := familyPrefixes(v6)
	a, b := tap.Pipe()
	ga, gb := a, b
	client, _ = newTapstack(t, ga, cp, tcp.Options{})
	server, _ = newTapstack(t, gb, sp, tcp.Options{})
	ln, err := conn.Listen(server, "tcp", netip.AddrPortFrom(sp.Addr(), 80).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := acceptOne(ln)
	c, err = (&conn.Dialer{Stack: client}).DialTCP(context.Background(), "tcp", netip.AddrPortFrom(sp.Addr(), 80).String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-accepted
	if r.err != nil {
		c.Close()
		t.Fatal(r.err)
	}
	return client, server, c, r.c.(*conn.Conn)
}

// TestTapstackPair moves 16 MiB each way between two tapstack stacks.
func TestTapstackPair(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, dir := range []struct {
			name string
			dir  direction
		}{{"client-to-server", aToB}, {"server-to-client", bToA}, {"both", both}} {
			name := "ipv4/" + dir.name
			if v6 {
				name = "ipv6/" + dir.name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				client, server, c, s := tapstackPair(t, v6)
				d := exchange(t, c, s, bulkSize, dir.dir, bulkTimeout())
				t.Logf("%d MiB %s in %v; client %+v; server %+v", bulkSize/MiB, dir.name,
					d.Round(time.Millisecond), summary(c.Info()), summary(s.Info()))
				c.Close()
				s.Close()
				waitState(t, c, 10*time.Second, event.Closed)
				waitState(t, s, 10*time.Second, event.Closed)
				waitNoConnections(t, client, 10*time.Second)
				waitNoConnections(t, server, 10*time.Second)
			})
		}
	}
}
