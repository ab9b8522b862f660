// Command dns is a small authoritative DNS server (RFC 1035) on tapstack's
// UDP, and a client that finds a web server by name through it.
//
// By default it needs no privileges: two stacks on an in-memory cable,
// the server (192.0.2.1) answering for example.test and serving HTTP, the
// client (192.0.2.2) resolving example.test with Go's resolver dialing
// through tapstack (conn.Resolver) and fetching http://example.test/:
//
//	go run ./examples/dns
//
// With -tap it serves DNS on a Linux TAP device until Ctrl-C, for dig on
// the host (needs CAP_NET_ADMIN, or a TAP device owned by the user):
//
//	go run ./examples/dns -tap tap0 -addr 192.0.2.2/24
//	dig @192.0.2.2 example.test
//
// The server is in server.go (Zone, Serve); messages are parsed and built
// with golang.org/x/net/dns/dnsmessage. This file is the demo's wiring.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, os.Args[1:])
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "dns:", err)
		os.Exit(1)
	}
}

// options are the example's flags.
type options struct {
	tap  string       // a TAP device to serve on, or "" for the in-memory demo
	addr netip.Prefix // the stack's address on it
	name string       // the name answered for
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	fs.StringVar(&o.tap, "tap", "", "serve DNS on this Linux TAP device instead of the in-memory demo")
	fs.TextVar(&o.addr, "addr", netip.Prefix{}, "the stack's address/prefix on the TAP device, e.g. 192.0.2.2/24; DNS listens on its port 53")
	fs.StringVar(&o.name, "name", "example.test", "the name answered for, with the stack's address")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.addr.IsValid() && o.tap == "" {
		return o, errors.New("-addr needs -tap")
	}
	return o, nil
}

func run(ctx context.Context, w io.Writer, args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	if o.tap == "" {
		return inMemory(ctx, w, o.name)
	}
	return serveTAP(ctx, w, o)
}

// inMemory serves DNS and HTTP on one stack and has the other find the
// web server by name.
func inMemory(ctx context.Context, out io.Writer, name string) error {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		return err
	}
	defer p.Close() // closing the stacks closes the servers' sockets too
	if err := startServers(p.Server, p.ServerAddr, Zone{name: {p.ServerAddr}}); err != nil {
		return err
	}

	r := conn.Resolver(p.Client, netip.MustParseAddrPort("192.0.2.1:53"))
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "client: %s is %v (asked 192.0.2.1:53 through tapstack)\n", name, addrs)
	hc := &http.Client{Transport: &http.Transport{
		DialContext: (&conn.Dialer{Stack: p.Client, Resolver: r}).DialContext,
	}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+name+"/", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "client: GET http://%s/: %s: %s\n", name, resp.Status, strings.TrimSpace(string(body)))
	hc.CloseIdleConnections()
	return nil
}

// startServers serves zone's names by DNS on port 53 of addr and a page
// by HTTP on its port 80, on stack s, until s is closed.
func startServers(s *stack.Stack, addr netip.Addr, zone Zone) error {
	pc, err := conn.ListenPacket(s, "udp", netip.AddrPortFrom(addr, 53).String())
	if err != nil {
		return err
	}
	go Serve(pc, zone)
	ln, err := conn.Listen(s, "tcp", netip.AddrPortFrom(addr, 80).String())
	if err != nil {
		return err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s over tapstack\n", r.Host)
	}))
	return nil
}

// serveTAP answers for o.name on port 53 of a TAP device until ctx ends.
func serveTAP(ctx context.Context, out io.Writer, o options) error {
	s, err := stack.OpenTAP(o.tap, o.addr, stack.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	zone := Zone{o.name: {o.addr.Addr()}}
	pc, err := conn.ListenPacket(s, "udp", netip.AddrPortFrom(o.addr.Addr(), 53).String())
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { pc.Close() })()
	fmt.Fprintf(out, "DNS on %s for %s; try: dig @%s %s (Ctrl-C stops)\n", pc.LocalAddr(), o.name, o.addr.Addr(), o.name)
	err = Serve(pc, zone)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
