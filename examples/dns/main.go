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
// Messages are parsed and built with golang.org/x/net/dns/dnsmessage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/net/dns/dnsmessage"

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
	out := log.New(w, "", 0)
	if o.tap == "" {
		return inMemory(ctx, out, o.name)
	}
	return serveTAP(ctx, out, o)
}

// serveTAP answers for o.name on port 53 of a TAP device until ctx ends.
func serveTAP(ctx context.Context, out *log.Logger, o options) error {
	s, err := stack.OpenTAP(o.tap, o.addr, stack.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	zone := Zone{o.name: {o.addr.Addr()}}
	pc, err := conn.ListenPacket(s, "udp", net.JoinHostPort(o.addr.Addr().String(), "53"))
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { pc.Close() })()
	out.Printf("DNS on %s for %s; try: dig @%s %s (Ctrl-C stops)", pc.LocalAddr(), o.name, o.addr.Addr(), o.name)
	err = Serve(pc, zone)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// inMemory serves DNS and HTTP on one stack and has the other find the
// web server by name.
func inMemory(ctx context.Context, out *log.Logger, name string) error {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	pc, err := conn.ListenPacket(p.Server, "udp", "192.0.2.1:53")
	if err != nil {
		return err
	}
	defer pc.Close()
	go Serve(pc, Zone{name: {p.ServerAddr}})
	ln, err := conn.Listen(p.Server, "tcp", "192.0.2.1:80")
	if err != nil {
		return err
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s over tapstack\n", r.Host)
	}))

	r := conn.Resolver(p.Client, netip.MustParseAddrPort("192.0.2.1:53"))
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	out.Printf("client: %s is %v (asked 192.0.2.1:53 through tapstack)", name, addrs)
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
	out.Printf("client: GET http://%s/: %s: %s", name, resp.Status, strings.TrimSpace(string(body)))
	hc.CloseIdleConnections()
	return nil
}

// Zone maps names (without the final dot, any case) to their addresses:
// A records for IPv4, AAAA for IPv6.
type Zone map[string][]netip.Addr

// maxQueries bounds how many queries Serve answers before it returns;
// ample for a demo, and the loop is bounded.
const maxQueries = 1 << 30

// Serve answers DNS queries arriving on pc from zone until pc is closed:
// the addresses of a name it has (AA set), NXDOMAIN for one it has not,
// FORMERR for what does not parse as a query, NOTIMP for an opcode other
// than QUERY (RFC 1035 4.1.1).
func Serve(pc net.PacketConn, zone Zone) error {
	names := make(map[string][]netip.Addr, len(zone))
	for n, a := range zone {
		names[strings.ToLower(strings.TrimSuffix(n, "."))] = a
	}
	buf := make([]byte, 512) // RFC 1035 2.3.4: UDP messages are 512 bytes
	for range maxQueries {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply, ok := answer(buf[:n], names)
		if !ok {
			continue // not even a header: nothing to answer
		}
		if _, err := pc.WriteTo(reply, from); err != nil && errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}

// answer builds the reply to query, or reports false if query has no
// header to reply to.
func answer(query []byte, names map[string][]netip.Addr) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil, false
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired}
	q, err := p.Question()
	switch {
	case h.OpCode != 0:
		rh.RCode = dnsmessage.RCodeNotImplemented
		return build(rh, nil, nil)
	case err != nil:
		rh.RCode = dnsmessage.RCodeFormatError
		return build(rh, nil, nil)
	}
	addrs, ok := names[strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))]
	if !ok {
		rh.RCode = dnsmessage.RCodeNameError
		return build(rh, &q, nil)
	}
	rh.Authoritative = true
	var answers []dnsmessage.Resource
	for _, a := range addrs {
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		switch {
		case a.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL):
			answers = append(answers, dnsmessage.Resource{Header: rr, Body: &dnsmessage.AResource{A: a.As4()}})
		case a.Is6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
			answers = append(answers, dnsmessage.Resource{Header: rr, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
		}
	}
	return build(rh, &q, answers)
}

func build(h dnsmessage.Header, q *dnsmessage.Question, answers []dnsmessage.Resource) ([]byte, bool) {
	m := dnsmessage.Message{Header: h, Answers: answers}
	if q != nil {
		m.Questions = []dnsmessage.Question{*q}
	}
	b, err := m.Pack()
	if err != nil {
		return nil, false
	}
	return b, true
}
