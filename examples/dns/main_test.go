package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

// TestInMemory runs the demo: the client resolves example.test through
// the server's DNS on tapstack and fetches the page by that name.
func TestInMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, nil); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	for _, want := range []string{
		"client: example.test is [192.0.2.1]",
		"client: GET http://example.test/: 200 OK: hello from example.test over tapstack",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// resolverPair serves zone, and the web page, on the server of a pair
// (startServers) and returns the pair and a resolver asking the server
// through the client's stack.
func resolverPair(t *testing.T, zone Zone) (*stack.Pair, *net.Resolver) {
	t.Helper()
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := startServers(p.Server, p.ServerAddr, zone); err != nil {
		t.Fatal(err)
	}
	return p, conn.Resolver(p.Client, netip.MustParseAddrPort("192.0.2.1:53"))
}

// TestGoResolver: Go's resolver, dialing through tapstack, gets A and
// AAAA records and NXDOMAIN from the server.
func TestGoResolver(t *testing.T) {
	_, r := resolverPair(t, Zone{
		"example.test": {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
		"v4.test":      {netip.MustParseAddr("192.0.2.7")},
	})
	ctx := context.Background()
	for _, tc := range []struct {
		network, host, want string
	}{
		{"ip", "example.test", "[192.0.2.1 2001:db8::1]"},
		{"ip4", "example.test", "[192.0.2.1]"},
		{"ip6", "EXAMPLE.test.", "[2001:db8::1]"},
		{"ip", "v4.test", "[192.0.2.7]"},
	} {
		addrs, err := r.LookupNetIP(ctx, tc.network, tc.host)
		if err != nil {
			t.Errorf("LookupNetIP(%s, %s): %v", tc.network, tc.host, err)
			continue
		}
		// Go orders the addresses by RFC 6724 against the host's own
		// routes: compare them sorted.
		slices.SortFunc(addrs, netip.Addr.Compare)
		if got := netipString(addrs); got != tc.want {
			t.Errorf("LookupNetIP(%s, %s) = %v, want %s", tc.network, tc.host, addrs, tc.want)
		}
	}
	_, err := r.LookupHost(ctx, "nowhere.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("LookupHost(nowhere.test) = %v, want a not-found *net.DNSError (NXDOMAIN)", err)
	}
}

func netipString(addrs []netip.Addr) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestHTTPGetByName: http.Get("http://example.test/") in memory, the
// name resolved by the DNS server on tapstack and the connection dialed
// through it: Dialer.DialContext plugs into http.Transport as is.
func TestHTTPGetByName(t *testing.T) {
	p, r := resolverPair(t, Zone{"example.test": {netip.MustParseAddr("192.0.2.1")}})
	tr := &http.Transport{DialContext: (&conn.Dialer{Stack: p.Client, Resolver: r}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://example.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from example.test over tapstack\n" {
		t.Errorf("GET = %s %q", resp.Status, body)
	}
}

// TestMalformedQueries: what is not a query gets FORMERR, NOTIMP or no
// answer, and the server keeps serving.
func TestMalformedQueries(t *testing.T) {
	names := map[string][]netip.Addr{"example.test": {netip.MustParseAddr("192.0.2.1")}}
	for _, tc := range []struct {
		name  string
		query []byte
		ok    bool
		rcode byte
	}{
		{"empty", nil, false, 0},
		{"header only", []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, true, 1},                 // FORMERR: question missing
		{"opcode STATUS", []byte{0, 1, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true, 4},            // NOTIMP
		{"a response", []byte{0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, 0},              // never answer answers
		{"truncated name", []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x'}, true, 1}, // FORMERR
	} {
		reply, ok := answer(tc.query, names)
		if ok != tc.ok {
			t.Errorf("%s: answered %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if ok && (len(reply) < 4 || reply[3]&0xf != tc.rcode) {
			t.Errorf("%s: reply %x, want RCODE %d", tc.name, reply, tc.rcode)
		}
	}
}

// FuzzAnswer: no query, however malformed, makes the server panic, and
// every reply it builds parses as a response to the query's ID.
func FuzzAnswer(f *testing.F) {
	names := map[string][]netip.Addr{"example.test": {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}}
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, query []byte) {
		reply, ok := answer(query, names)
		if !ok {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(reply)
		if err != nil || !h.Response || h.ID != uint16(query[0])<<8|uint16(query[1]) {
			t.Fatalf("reply %x to %x: header %+v, %v", reply, query, h, err)
		}
	})
}
