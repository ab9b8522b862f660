package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runDial is "tapstack dial": connect over a TAP device, send stdin, shut
// down the sending side (FIN) and copy the reply to stdout until the
// peer's FIN.
func runDial(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "dial", "host:port")
	lf := addLinkFlags(fs, "dial through")
	timeout := fs.Duration("timeout", 10*time.Second, "give up connecting after this long")
	trace := fs.Bool("trace", false, "print every engine event on stderr")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := lf.check(fs); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usageErr(fs, "--timeout %v: want a positive duration such as 10s", *timeout)
	}
	if why := badPeer(fs.Arg(0), lf.prefix); why != "" {
		return usageErr(fs, "%q: %s", fs.Arg(0), why)
	}
	var opts tcp.Options
	if *trace {
		opts.Observer = traceLine(&syncWriter{w: e.stderr}, "dial")
	}
	s, closeStack, err := lf.open(e, opts)
	if err != nil {
		return err
	}
	defer closeStack(shutdownGrace)

	d := conn.Dialer{Stack: s, Timeout: *timeout}
	c, err := d.DialTCP(ctx, "tcp", fs.Arg(0))
	if err != nil {
		return err
	}
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })()

	sent := make(chan error, 1)
	// Progress of a large input, on a terminal stderr when the reply
	// does not go to the terminal too.
	var prog *progress
	if !isTerminal(e.stdout) {
		prog = newProgress(e.stderr, "dial "+fs.Arg(0), 0)
		prog.retransmits(s.TCP().Stats().Retransmits.Load)
		defer prog.end()
	}
	go func() {
		_, err := io.Copy(c, prog.reader(e.stdin))
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- err
	}()
	if _, err := io.Copy(e.stdout, c); err != nil {
		return err
	}
	select {
	case err := <-sent:
		if err != nil {
			return err
		}
	default:
		// stdin is still open, but the peer has finished: so do we.
	}
	c.Close()
	// Give the ACK of the peer's FIN time to leave before the stack goes:
	// it has once we are in TIME-WAIT (or CLOSED).
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return waitState(wctx, c, event.TimeWait, event.Closed)
}

// badPeer says why dial cannot reach host:port peer from a stack at local,
// or "": it takes an IP address (the stack has no resolver) or none (the
// local system, as net.Dial), a port from 1 to 65535 or a service name,
// and an address of local's family, which alone the stack can send from.
func badPeer(peer string, local netip.Prefix) string {
	host, port, err := net.SplitHostPort(peer)
	if err != nil {
		return "want host:port, such as 192.0.2.1:7"
	}
	n, err := net.LookupPort("tcp", port)
	switch {
	case err != nil:
		return fmt.Sprintf("port %q: want 1 to 65535 or a service name", port)
	case n == 0:
		return "port 0: want 1 to 65535"
	case host == "":
		return ""
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "want an IP address, such as 192.0.2.1:7 (dial resolves no names)"
	}
	return otherFamily(a, local)
}

// otherFamily says why peer is out of reach of a stack whose only address
// is local's, or "": an IPv4 peer from an IPv6 address, or the reverse,
// has no route. Its own loopback and the unspecified address (which
// means it) are in reach of either.
func otherFamily(peer netip.Addr, local netip.Prefix) string {
	peer = peer.Unmap()
	if peer.IsLoopback() || peer.IsUnspecified() || peer.Is4() == local.Addr().Is4() {
		return ""
	}
	fam := func(a netip.Addr) string {
		if a.Is4() {
			return "IPv4"
		}
		return "IPv6"
	}
	return fmt.Sprintf("an %s peer, and --addr %s is %s: the stack has no address to reach it from", fam(peer), local, fam(local.Addr()))
}
