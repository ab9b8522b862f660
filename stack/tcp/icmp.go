package tcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/internal/icmperr"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ICMP errors about segments we sent (RFC 1122 4.2.3.9), checked before
// they act as RFC 5927 asks: an off-path attacker who can guess a 4-tuple
// must not be able to end a dial with a forged "port unreachable".
//
// What gVisor hands Endpoint.HandleError: the network layer (ipv4's and
// ipv6's handleControl) has checked that the quoted IP header's source is
// one of our addresses and consumed that header (and an IPv6 fragment
// header); the NIC then read both ports from the first 8 bytes after it
// (TransportProtocol.ParsePorts) and found us in the demuxer by the
// 4-tuple {quoted source port, quoted source address, quoted destination
// port, quoted destination address}, exact match first. So pkt.Data()
// starts at the quoted TCP header and holds whatever the ICMP sender
// quoted of it: at least 8 bytes, ports and sequence number (RFC 792; RFC
// 4443 2.4 for ICMPv6 quotes as much as fits in 1280 bytes), the
// addresses are no longer in it, pkt.NetworkHeader() is the ICMP message's
// own IP header and pkt.TransportHeader() the ICMP header. A connection is
// registered in the demuxer by its full 4-tuple only, so reaching an
// Endpoint means the quoted addresses are its own; the ports we check
// again from the quote, the sequence number is ours alone to check.

// icmpQuote is what an ICMP error quotes of a segment we sent.
type icmpQuote struct {
	srcPort, dstPort uint16
	seq              seqnum.Value
}

// parseICMPQuote reads the quoted TCP header at the start of pkt.Data().
// It reports false when fewer than the 8 bytes RFC 792 guarantees are
// there (gVisor has already checked that, so this is defence in depth).
func parseICMPQuote(pkt *stack.PacketBuffer) (icmpQuote, bool) {
	b, ok := pkt.Data().PullUp(8)
	if !ok {
		return icmpQuote{}, false
	}
	return quoteOf(b), true
}

// quoteOf reads the 8 bytes of a quoted TCP header at the start of b,
// which holds at least that many.
func quoteOf(b []byte) icmpQuote {
	return icmpQuote{
		srcPort: binary.BigEndian.Uint16(b[0:]),
		dstPort: binary.BigEndian.Uint16(b[2:]),
		seq:     seqnum.Value(binary.BigEndian.Uint32(b[4:])),
	}
}

// icmpErrno is the errno an ICMP error stands for, as Linux's
// icmp_err_convert maps it, or nil for packet too big, which is path MTU
// discovery (pmtu.go) rather than an errno. Every other kind gVisor hands
// us has one: source route failed (code 5), destination host unknown (7)
// and source host isolated (8) were left out, and an error of those
// kinds was ignored without a count where Linux's tcp_v4_err ends a dial
// with it, as RFC 1122 4.2.3.9 allows for these codes too.
func icmpErrno(k stack.TransportErrorKind) error {
	switch k {
	case stack.SourceRouteFailedTransportError:
		return syscall.EOPNOTSUPP
	case stack.DestinationHostDownTransportError:
		return syscall.EHOSTDOWN
	case stack.SourceHostIsolatedTransportError:
		return syscall.ENONET
	case stack.DestinationHostUnreachableTransportError:
		return syscall.EHOSTUNREACH
	case stack.DestinationNetworkUnreachableTransportError:
		return syscall.ENETUNREACH
	case stack.DestinationPortUnreachableTransportError:
		return syscall.ECONNREFUSED
	case stack.DestinationProtoUnreachableTransportError:
		return syscall.ENOPROTOOPT // Linux's icmp_err_convert
	}
	return nil
}

// icmpArrives is HandleError: an ICMP error about a segment we sent.
// Once the quote checks out, we follow Linux (tcp_v4_err): a hard error
// during the handshake ends the connection; in a synchronized state it is
// only remembered as a soft error, since routes come back (RFC 1122
// 4.2.3.9), and reported if the connection later times out.
func (e *Endpoint) icmpArrives(terr stack.TransportError, pkt *stack.PacketBuffer) {
	err := transportErrno(terr)
	tooBig := terr.Kind() == stack.PacketTooBigTransportError
	if tooBig {
		err = fmt.Errorf("packet too big, MTU %d", terr.Info())
	}
	if err == nil {
		return
	}
	q, ok := parseICMPQuote(pkt)
	e.mu.Lock()
	reason := event.DropNone
	switch {
	case !ok || q.srcPort != e.id.LocalPort || q.dstPort != e.id.RemotePort:
		reason = event.DropICMPBadQuote
	case !e.icmpQuoteValid(q.seq):
		reason = event.DropICMPOutOfWindow
	}
	if reason != event.DropNone {
		e.mu.Unlock()
		e.proto.dropICMP(e.connID(), q, err, reason)
		return
	}
	switch {
	case tooBig:
		// gVisor reports the MTU less the IP header (the room left
		// for us), and 0 for an MTU below the protocol's minimum (68
		// for IPv4, 1280 for IPv6; its calculateNetworkMTU), among
		// them an IPv4 Next-Hop MTU of zero (RFC 1191 7). That 0
		// stays 0: no MTU reported.
		mtu := terr.Info()
		if mtu > 0 {
			mtu += uint32(e.netHeaderLen())
		}
		e.pathMTUArrives(mtu) // pmtu.go
	case e.state == event.SynReceived && e.listener != nil:
		// A listener's half-open entry (Linux's request sock, which
		// tcp_v4_err and tcp_v6_err hand to tcp_req_err): an error
		// Linux calls abort ends it, quietly (it has no user), and
		// frees its SYN queue slot; any other is forgotten, since
		// the entry has no user to report a soft error to either.
		// Linux counts the drop in ListenDrops too.
		if halfOpenAbort(terr) {
			e.proto.stats.Listen.HalfOpenUnreachable.Add(1)
			e.proto.stats.ListenDrops.Add(1)
			e.fail(err, event.Cause{Kind: event.CauseSegment, Detail: "ICMP " + err.Error()})
		}
	case e.state == event.SynSent || e.state == event.SynReceived:
		// A user's open still in its handshake, SYN-RECEIVED after a
		// simultaneous open included (Linux's tcp_v4_err: TCP_SYN_SENT
		// and TCP_SYN_RECV alike): the hard error ends it.
		e.err = err
		e.transition(event.Closed, event.Cause{Kind: event.CauseSegment, Detail: "ICMP " + err.Error()})
	case e.state != event.Closed:
		// A soft error: reported only if the connection later times
		// out, in place of ETIMEDOUT, as Linux's tcp_write_err does,
		// and forgotten once an ACK moves SND.UNA (ack.go). A net
		// or host unreachable may also take back one RTO backoff
		// (RFC 6069; icmpld.go).
		e.softErr = err
		if connectivityDisrupted(terr) {
			e.revertRTOBackoff(q.seq, err)
		}
	}
	e.mu.Unlock()
	e.flush()
}

// halfOpenAbort reports whether an ICMP error about a listener's SYN-ACK
// ends the half-open entry, as Linux's tcp_v4_err and tcp_v6_err tell
// tcp_req_err. For IPv4, a time exceeded or parameter problem (which the
// watcher takes, icmp4.go), and a net or host unreachable: gVisor folds
// codes 9 to 15 (administratively prohibited, for TOS, precedence) into
// those two kinds without their code, so they end the entry here where
// Linux would keep it. For IPv6, what icmpv6_err_convert calls fatal:
// port unreachable, administratively prohibited, policy failure, reject
// route and any parameter problem (the watcher's, icmp6.go), not no route,
// address unreachable or a time exceeded.
func halfOpenAbort(terr stack.TransportError) bool {
	if terr.Origin() == tcpip.SockExtErrorOriginICMP6 {
		switch header.ICMPv6Type(terr.Type()) {
		case header.ICMPv6ParamProblem:
			return true
		case header.ICMPv6DstUnreachable:
		default:
			return false
		}
		switch header.ICMPv6Code(terr.Code()) {
		case header.ICMPv6PortUnreachable, header.ICMPv6Prohibited, header.ICMPv6Policy, header.ICMPv6RejectRoute:
			return true
		}
		return false
	}
	switch header.ICMPv4Type(terr.Type()) {
	case header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
		return true
	}
	switch terr.Kind() {
	case stack.DestinationNetworkUnreachableTransportError, stack.DestinationHostUnreachableTransportError:
		return true
	}
	return false
}

// icmpQuoteValid is RFC 5927 4.1's check that an ICMP error is about a
// segment this connection could have sent: its quoted sequence number
// must lie in SND.UNA =< SEG.SEQ =< SND.NXT. It is the one check every
// ICMP error goes through, hard, soft, or (later) path MTU. The caller
// holds e.mu.
//
// In SYN-SENT and SYN-RECEIVED the only segment we sent is our SYN or
// SYN-ACK, at ISS. In the synchronized states we follow Linux (tcp_v4_err:
// between(seq, snd_una, snd_nxt)) and accept SND.NXT itself too, which
// RFC 5927's half-open range leaves out: our bare ACKs carry it, and an
// error about one is as genuine. SND.NXT never moves back: a
// retransmission resends what is below it (rtxqueue.go), as Linux's
// snd_nxt.
func (e *Endpoint) icmpQuoteValid(seq seqnum.Value) bool {
	switch {
	case e.state == event.SynSent || e.state == event.SynReceived:
		return seq == e.iss
	case e.state.Synchronized() && e.state != event.TimeWait:
		return e.sndUna.LessThanEq(seq) && seq.LessThanEq(e.sndNxt)
	}
	return false
}

// dropICMP counts and reports an ICMP error that was not acted on.
func (p *Protocol) dropICMP(c event.ConnID, q icmpQuote, err error, r event.DropReason) {
	p.stats.Drops[r].Add(1)
	if p.opts.Observer != nil {
		p.emit(event.Event{Kind: event.KindDrop, Conn: c, Drop: r, Segment: event.SegmentInfo{
			SrcPort: q.srcPort, DstPort: q.dstPort, Seq: uint32(q.seq), WS: -1,
			Note: fmt.Sprintf("ICMP error (%v) quoting %d > %d seq %d", err, q.srcPort, q.dstPort, uint32(q.seq)),
		}})
	}
}

// icmpToListener is an ICMP error that the demuxer gave a listener: it
// quotes a 4-tuple on the listener's port with no connection of its own
// (none, or one in TIME-WAIT, which is not in the demuxer). A listener
// sends nothing an error could be about; like Linux for TIME-WAIT
// (tcp_v4_err), it is counted and ignored.
func (l *Listener) icmpToListener(terr stack.TransportError, pkt *stack.PacketBuffer) {
	err := transportErrno(terr)
	if err == nil {
		err = fmt.Errorf("kind %d", terr.Kind())
	}
	q, _ := parseICMPQuote(pkt)
	l.proto.dropICMP(event.ConnID{Local: l.Addr()}, q, err, event.DropICMPNoConnection)
}

// icmpWatch is the engine as gVisor's raw endpoint for ICMP and ICMPv6
// (icmp4.go, icmp6.go).
type icmpWatch Protocol

// HandlePacket implements stack.RawTransportEndpoint: an ICMP or ICMPv6
// packet, its IP header in pkt.NetworkHeader, its ICMP header in
// pkt.TransportHeader, the data the message body. The packet is a copy
// the caller releases.
func (w *icmpWatch) HandlePacket(pkt *stack.PacketBuffer) {
	p := (*Protocol)(w)
	m, ok := icmperr.Read(p.stack, pkt)
	// What is no TCP quote is no concern of ours.
	if ok && m.Protocol == header.TCPProtocolNumber {
		p.watchedArrives(pkt.NICID, m)
	}
}

// watchedArrives is an ICMP or ICMPv6 error quoting TCP that came in on
// nic. It acts on one the watcher owns (a watched errno: icmp4.go,
// icmp6.go), and counts one of gVisor's that gVisor's handleControl or
// DeliverTransportError will discard before TCP sees it, leaving gVisor
// to act on the others; an error of a type or code neither owns is
// ignored, as by gVisor.
func (p *Protocol) watchedArrives(nic tcpip.NICID, m icmperr.Error) {
	var errno syscall.Errno
	var gvisors bool
	if m.Net == header.IPv6ProtocolNumber {
		errno = icmpv6Errno(header.ICMPv6Type(m.Type), header.ICMPv6Code(m.Code))
		gvisors = gvisorsICMPv6(header.ICMPv6Type(m.Type), header.ICMPv6Code(m.Code))
	} else {
		errno = icmpv4Errno(header.ICMPv4Type(m.Type))
		gvisors = header.ICMPv4Type(m.Type) == header.ICMPv4DstUnreachable
	}
	switch {
	case errno == 0 && !gvisors:
		return
	case m.Drop == event.DropICMPBadQuote && gvisors:
		return // gVisor does not check the quoted IPv4 header length: its own to act on
	case m.Drop != event.DropNone:
		p.dropWatched(m, icmpQuote{}, m.Drop)
		return
	}
	ep := p.quotedEndpoint(m.Net, nic, m.Src, m.Dst, m.Transport)
	switch {
	case ep == nil:
		// No connection or listener: gVisor's deliverError drops it
		// without a word.
		p.dropWatched(m, quoteOf(m.Transport), event.DropICMPNoConnection)
	case !gvisors:
		handQuote(ep, watchedError{origin: m.Origin(), typ: m.Type, code: m.Code, errno: errno}, m.Transport)
	default:
		// gVisor's: it acts on the error itself. Only the RTO
		// revert needs the code it folds away (icmpld.go).
		if cause := disruption4(m); cause != nil {
			if te, isConn := ep.(*transportEndpoint); isConn {
				(*Endpoint)(te).disruptionArrives(quoteOf(m.Transport), cause)
			}
		}
	}
}

// dropWatched counts and reports, for reason r, an ICMP error m that no
// connection will see, by what it quotes: a segment from m.Src (one of
// our addresses or not, r says) to m.Dst that quoted q.
func (p *Protocol) dropWatched(m icmperr.Error, q icmpQuote, r event.DropReason) {
	var c event.ConnID
	if m.Src.Len() > 0 {
		c = connIDOf(stack.TransportEndpointID{LocalPort: q.srcPort, LocalAddress: m.Src, RemotePort: q.dstPort, RemoteAddress: m.Dst})
	}
	var err error
	switch {
	case m.Net == header.IPv4ProtocolNumber && header.ICMPv4Type(m.Type) == header.ICMPv4DstUnreachable,
		m.Net == header.IPv6ProtocolNumber && header.ICMPv6Type(m.Type) == header.ICMPv6DstUnreachable:
		err = fmt.Errorf("destination unreachable, code %d", m.Code)
	case m.Net == header.IPv6ProtocolNumber && header.ICMPv6Type(m.Type) == header.ICMPv6PacketTooBig:
		err = errors.New("packet too big")
	case m.Net == header.IPv6ProtocolNumber:
		err = icmpv6Errno(header.ICMPv6Type(m.Type), header.ICMPv6Code(m.Code))
	default:
		err = icmpv4Errno(header.ICMPv4Type(m.Type))
	}
	p.dropICMP(c, q, err, r)
}

// watchedError is an ICMP error that gVisor's network layer hands no
// transport and one of the engine's watchers (icmp4.go, icmp6.go) takes
// instead, as the transport error it stands for, with the errno Linux
// gives it.
type watchedError struct {
	origin    tcpip.SockErrOrigin
	typ, code uint8
	errno     syscall.Errno
}

func (w watchedError) Origin() tcpip.SockErrOrigin { return w.origin }
func (w watchedError) Type() uint8                 { return w.typ }
func (w watchedError) Code() uint8                 { return w.code }
func (w watchedError) Info() uint32                { return 0 }

// Kind is the kind nearest the errno; icmpArrives takes the errno itself
// (transportErrno).
func (w watchedError) Kind() stack.TransportErrorKind {
	return stack.DestinationHostUnreachableTransportError
}

// transportErrno is the errno an ICMP error stands for (icmpErrno), or
// the one a watchedError carries.
func transportErrno(terr stack.TransportError) error {
	if w, ok := terr.(watchedError); ok {
		return w.errno
	}
	return icmpErrno(terr.Kind())
}

// quotedEndpoint is the connection or listener that the quoted TCP header
// th, of a segment from src (one of our addresses) to dst, was sent by:
// what gVisor's DeliverTransportError finds by the quoted 4-tuple, exact
// match first. It is nil if th is shorter than the 8 bytes with the ports
// and sequence number, or no connection or listener holds the 4-tuple.
func (p *Protocol) quotedEndpoint(netProto tcpip.NetworkProtocolNumber, nic tcpip.NICID, src, dst tcpip.Address, th []byte) stack.TransportEndpoint {
	if len(th) < 8 {
		return nil
	}
	q := quoteOf(th)
	id := stack.TransportEndpointID{LocalPort: q.srcPort, LocalAddress: src, RemotePort: q.dstPort, RemoteAddress: dst}
	return p.stack.FindTransportEndpoint(netProto, header.TCPProtocolNumber, id, nic)
}

// handQuote hands ep a watched error, with the data at the quoted TCP
// header th, as gVisor's deliverError hands it the others: icmpArrives
// (or icmpToListener) then checks the quote as for any ICMP error (RFC
// 5927).
func handQuote(ep stack.TransportEndpoint, terr watchedError, th []byte) {
	quote := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(th)})
	defer quote.DecRef()
	ep.HandleError(terr, quote)
}
