package main

// The DNS server: a zone and the loop that answers from it.

import (
	"errors"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

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
