package stack

import (
	"fmt"
	"net/netip"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/tap"
)

// PairOptions configure [NewPair]. The zero value makes two stacks with
// the engine's defaults on the real clock.
type PairOptions struct {
	// Client and Server configure the two stacks. To drive both from one
	// fake clock, give both the same Clock.
	Client, Server Options

	// ClientPrefixes and ServerPrefixes are the addresses of each stack's
	// interface on the cable, each with an on-link route. Empty means
	// 192.0.2.2/24 for the client and 192.0.2.1/24 for the server
	// (TEST-NET-1, RFC 5737, which never leaves a test).
	ClientPrefixes, ServerPrefixes []netip.Prefix

	// ClientLink and ServerLink, if set, wrap the cable's end before its
	// stack attaches it: link middleware such as tap.NewFault or a pcap
	// capture on that side.
	ClientLink, ServerLink func(gstack.LinkEndpoint) gstack.LinkEndpoint

	// Pipe configures the cable (tap.WithPipeMTU, tap.WithPipeQueue).
	Pipe []tap.PipeOption
}

// Pair is two stacks joined by an in-memory Ethernet cable (tap.Pipe), the
// smallest network a demo, an example or a test needs: no device and no
// privileges. The cable is the first interface (NIC 1) of each stack.
type Pair struct {
	Client, Server *Stack

	// ClientAddr and ServerAddr are the first address of each side, the
	// ones to dial and listen on.
	ClientAddr, ServerAddr netip.Addr
}

// NewPair makes two stacks and joins them with an in-memory cable. Close
// the Pair (or both stacks) when done.
func NewPair(opts PairOptions) (*Pair, error) {
	cp, sp := opts.ClientPrefixes, opts.ServerPrefixes
	if len(cp) == 0 {
		cp = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")}
	}
	if len(sp) == 0 {
		sp = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}
	}
	a, b := tap.Pipe(opts.Pipe...)
	p := &Pair{
		Client: New(opts.Client), Server: New(opts.Server),
		ClientAddr: cp[0].Addr(), ServerAddr: sp[0].Addr(),
	}
	for _, side := range []struct {
		name     string
		s        *Stack
		link     gstack.LinkEndpoint
		wrap     func(gstack.LinkEndpoint) gstack.LinkEndpoint
		prefixes []netip.Prefix
	}{
		{"client", p.Client, a, opts.ClientLink, cp},
		{"server", p.Server, b, opts.ServerLink, sp},
	} {
		link := side.link
		if side.wrap != nil {
			link = side.wrap(link)
		}
		if _, err := side.s.AddNIC(link, side.prefixes...); err != nil {
			p.Close()
			a.Close() // an end no stack took: nothing else closes it
			b.Close()
			return nil, fmt.Errorf("stack: NewPair: %s: %w", side.name, err)
		}
	}
	return p, nil
}

// Close closes both stacks, the client first (see [Stack.Close]).
func (p *Pair) Close() {
	p.Client.Close()
	p.Server.Close()
}
