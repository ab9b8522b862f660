package tcp

import (
	"net/netip"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Connect is the active OPEN call of RFC 9293 3.10.1: it chooses a route
// and a local port, sends a SYN to remote and returns the connection in
// SYN-SENT. Wait on Changed until Established reports true or an error.
// local may leave the address invalid or unspecified (the route chooses
// it) and the port zero (an ephemeral port). Errors are syscall errnos:
// ENETUNREACH or EHOSTUNREACH without a route, EADDRNOTAVAIL for a local
// address that is not the stack's or no free port, EADDRINUSE for a
// 4-tuple taken, EMFILE at MaxConnections, ENETDOWN once the stack is
// shutting down. The two that Linux's bind(2) returns before connect(2)
// runs, for the local address or port given (EADDRNOTAVAIL for an
// address not the stack's, EADDRINUSE for a port asked for and taken),
// come in a *BindError; errors.Is sees the errno in it.
func (p *Protocol) Connect(local, remote netip.AddrPort) (*Endpoint, error) {
	return p.ConnectWith(local, remote, ConnectOptions{})
}

// A BindError is Connect's error for the local address or port it was
// given, the step Linux takes in bind(2) before connect(2): package net
// names that call in its error (os.SyscallError "bind"), and conn does
// the same.
type BindError struct {
	Errno syscall.Errno // EADDRNOTAVAIL or EADDRINUSE
}

func (e *BindError) Error() string { return "bind: " + e.Errno.Error() }

// Unwrap returns the errno, for errors.Is and errors.As.
func (e *BindError) Unwrap() error { return e.Errno }

// ConnectOptions are what a connection must know before its SYN leaves.
type ConnectOptions struct {
	// MaxSegment clamps the MSS, as Linux's TCP_MAXSEG set before
	// connect: the SYN offers at most MaxSegment (RFC 9293 3.7.1), and
	// segments sent carry at most that. 0: the route's MSS. Outside
	// Linux's range, 88 to 32767, Connect fails with EINVAL.
	MaxSegment int
	// NIC is the interface the connection leaves by, as a link-local
	// address's zone (sin6_scope_id) binds a socket to its interface in
	// Linux's tcp_v6_connect (sk_bound_dev_if): a link-local address
	// means something only on one link (RFC 4291 2.5.6), and two links
	// may have a host at the same one. 0: the routes choose. An
	// interface with no route to remote is ENETUNREACH.
	NIC tcpip.NICID
}

// ConnectWith is Connect with options.
func (p *Protocol) ConnectWith(local, remote netip.AddrPort, o ConnectOptions) (*Endpoint, error) {
	if o.MaxSegment != 0 && (o.MaxSegment < minUserMSS || o.MaxSegment > maxUserMSS) {
		return nil, syscall.EINVAL
	}
	ra := remote.Addr().Unmap()
	if !ra.IsValid() {
		return nil, syscall.EINVAL
	}
	netProto := header.IPv4ProtocolNumber
	if ra.Is6() {
		netProto = header.IPv6ProtocolNumber
	}
	var laddr tcpip.Address
	if la := local.Addr().Unmap(); la.IsValid() && !la.IsUnspecified() {
		laddr = tcpip.AddrFromSlice(la.AsSlice())
		if p.stack.CheckLocalAddress(0, netProto, laddr) == 0 {
			return nil, &BindError{syscall.EADDRNOTAVAIL}
		}
	}
	r, terr := p.findRoute(routeQuery{nic: o.NIC, netProto: netProto, local: laddr, remote: tcpip.AddrFromSlice(ra.AsSlice())})
	if terr != nil {
		return nil, routeErrno(terr)
	}
	if r.IsOutboundBroadcast() {
		// RFC 1122 4.2.3.10: an OPEN "for an invalid remote IP address
		// (e.g., a broadcast or multicast address)" MUST be rejected.
		// A subnet's directed broadcast has a route, which Linux's
		// tcp_v4_connect refuses (RTCF_BROADCAST) with ENETUNREACH;
		// the limited broadcast and multicast find none.
		p.releaseRoute(r)
		return nil, syscall.ENETUNREACH
	}
	id := stack.TransportEndpointID{
		LocalAddress:  r.LocalAddress(),
		RemoteAddress: r.RemoteAddress(),
		RemotePort:    remote.Port(),
	}
	e := p.newEndpoint(netProto, id, r)
	e.clampUserMSS(o.MaxSegment)
	// The port: the one asked for, or an ephemeral one (RFC 6056
	// Algorithm 1, through gVisor's picker), that no listener holds and
	// whose 4-tuple is free: in the demuxer (registering it there takes
	// it) and in TIME-WAIT (ports.go).
	networks := [1]tcpip.NetworkProtocolNumber{netProto}
	test := func(port uint16) (bool, tcpip.Error) {
		if p.listenerHolds(netProto, id.LocalAddress, port) {
			return false, nil
		}
		e.id.LocalPort = port
		if p.timeWaitFor(e.id) != nil {
			// The 4-tuple is in TIME-WAIT, which is not in the
			// demuxer: as taken as if it were.
			return false, nil
		}
		if err := e.registerDemux(networks[:]); err != nil {
			if _, ok := err.(*tcpip.ErrPortInUse); ok {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	p.ports.mu.Lock()
	port, terr := local.Port(), tcpip.Error(nil)
	if port != 0 {
		if ok, err := test(port); err != nil {
			terr = err
		} else if !ok {
			terr = &tcpip.ErrPortInUse{}
		}
	} else {
		port, terr = p.stack.PickEphemeralPort(p.stack.SecureRNG(), test)
	}
	if terr == nil {
		p.ports.take(id.LocalAddress, port)
	}
	p.ports.mu.Unlock()
	if terr != nil {
		p.releaseRoute(r)
		if _, ok := terr.(*tcpip.ErrPortInUse); ok {
			if local.Port() != 0 {
				// The port asked for: bind(2)'s EADDRINUSE
				// (without SO_REUSEADDR, as package net dials).
				return nil, &BindError{syscall.EADDRINUSE}
			}
			return nil, syscall.EADDRINUSE
		}
		if _, ok := terr.(*tcpip.ErrNoPortAvailable); ok {
			return nil, syscall.EADDRNOTAVAIL
		}
		return nil, syscall.EADDRINUSE
	}
	e.id.LocalPort = port
	e.portHeld = true
	e.registered = true
	if err := p.register(e); err != nil {
		// Still CLOSED: give back the demuxer entry and the port
		// (a transition to CLOSED would be no change, and release
		// nothing).
		e.mu.Lock()
		e.release()
		e.mu.Unlock()
		e.flush()
		return nil, err
	}

	e.mu.Lock()
	opened := e.beginStamp()
	e.iss = p.isn(e.id)
	e.tsOffset = p.tsOffset(e.id)
	e.sndUna = e.iss
	e.sndNxt = e.iss + 1
	e.sndBufSeq = e.iss + 1
	e.transition(event.SynSent, userCause("connect"))
	e.sendSyn(event.SendSyn)
	// The user timeout (RFC 5482) counts from the first SYN, as Linux's
	// tcp_connect sets retrans_stamp: retransmitTimeout.
	e.progressAt = e.now()
	e.setTimer(timerRetransmit, e.rto)
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
	return e, nil
}

// routeErrno maps gVisor's routing errors to the errno Linux returns from
// connect(2).
func routeErrno(err tcpip.Error) error {
	switch err.(type) {
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrNetworkUnreachable:
		return syscall.ENETUNREACH
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrUnknownNICID:
		return syscall.ENODEV
	}
	return syscall.ENETUNREACH
}

// sendSyn sends <SEQ=ISS><CTL=SYN> with our MSS and window scale: we always
// offer scaling (RFC 7323 1.3), and it is in force only if the peer's
// SYN-ACK offers it too. Unless NoTimestamps, it offers the TSopt with
// TSecr 0 (RFC 7323 3.2), like Linux with tcp_timestamps=1.
func (e *Endpoint) sendSyn(cause event.SendCause) {
	var opts [header.TCPOptionsMaximumSize]byte
	e.synTSval = e.tsNow()
	n := encodeSynOptions(synOptions{
		mss: uint16(e.rcvMSS), ws: int(e.rcvWndShift),
		ts: !e.proto.opts.NoTimestamps, tsVal: e.synTSval,
		sackPerm: !e.proto.opts.NoSACK,
	}, opts[:])
	e.sendSegment(cause, header.TCPFlagSyn|e.ecnSynFlags(cause == event.SendSynRetransmit), e.iss, buffer.Buffer{}, opts[:n])
}

// sendSynAck sends <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>. The window scale
// option goes only in answer to one (RFC 7323 1.3), and so does the TSopt
// (RFC 7323 3.2: a <SYN,ACK> may carry it only if the <SYN> did), echoing
// the SYN's TSval.
func (e *Endpoint) sendSynAck(cause event.SendCause) {
	var opts [header.TCPOptionsMaximumSize]byte
	ws := -1
	if e.wsOK {
		ws = int(e.rcvWndShift)
	}
	e.synTSval = e.tsNow()
	n := encodeSynOptions(synOptions{
		mss: uint16(e.rcvMSS), ws: ws,
		ts: e.tsOK, tsVal: e.synTSval, tsEcr: e.tsRecent,
		sackPerm: e.sackOK, // RFC 2018 2: only in answer to a SYN that offered it
	}, opts[:])
	e.sendSegment(cause, header.TCPFlagSyn|header.TCPFlagAck|e.ecnSynAckFlags(), e.iss, buffer.Buffer{}, opts[:n])
}

// setSendMSS sets the send MSS from the peer's (RFC 9293 3.7.1, RFC
// 6691): the peer's, lowered by the user's clamp, is the most the MSS can
// ever rise to (synMSS, Linux's mss_clamp); the path MTU (the route's, a
// route metric's, one ICMP reported) bounds it now. With timestamps in
// force both leave room for the option, taken off after the floor
// (minSndMSS), as Linux's tcp_mtu_to_mss. The MSS we announced does not
// bound it: a route's AdvMSS is only announced, as Linux's advmss.
func (e *Endpoint) setSendMSS(peer int) {
	clamp := peer
	if e.userMSS > 0 {
		clamp = min(clamp, int(e.userMSS))
	}
	ts := 0
	if e.tsOK {
		ts = tsOptionSize
	}
	e.synMSS = uint16(max(min(clamp, 0xffff), minSndMSS) - ts)
	e.sndMSS = max(min(clamp, e.pathMSS()), minSndMSS) - ts
}

// takeSynOptions applies the peer's SYN options: the send MSS (RFC 9293
// 3.7.1 and RFC 6691: the peer's MSS or the default when absent, never
// more than our own path allows), window scaling (RFC 7323 2.2: in force
// only if both SYNs carry the option) and timestamps (RFC 7323 3.2: the
// same rule; we offer them unless NoTimestamps, and answer them likewise).
//
// With timestamps in force every segment carries 12 option bytes, so the
// payload we put in a segment is the MSS less 12 (RFC 6691: the MSS counts
// no TCP options; Linux's tcp_current_mss does the same): a full segment
// still fits the peer's MSS and our MTU, and IP never fragments.
func (e *Endpoint) takeSynOptions(seg *segment, weOffered bool) {
	e.tsOK = seg.TS && !e.proto.opts.NoTimestamps
	e.sackOK = seg.SACKPermitted && !e.proto.opts.NoSACK
	if e.tsOK {
		e.takeSynTimestamp(seg.TSVal)
	}
	mss := int(seg.MSS)
	if mss == 0 {
		mss = header.TCPDefaultMSS
		if e.netProto == header.IPv6ProtocolNumber {
			mss = 1220 // RFC 9293 3.7.1: 1220 for IPv6
		}
	}
	e.setSendMSS(mss)
	e.wsOK = seg.WS >= 0 && weOffered
	if e.wsOK {
		e.sndWndShift = uint8(min(seg.WS, header.MaxWndScale))
	} else {
		e.sndWndShift = 0
		e.rcvWndShift = 0
	}
}

// synSentArrives is SEGMENT ARRIVES in SYN-SENT (RFC 9293 3.10.7.3).
func (e *Endpoint) synSentArrives(seg *segment) verdict {
	// First, check the ACK bit.
	ackOK := false
	if seg.has(header.TCPFlagAck) {
		if seg.Ack.LessThanEq(e.iss) || e.sndNxt.LessThan(seg.Ack) {
			e.drop(seg, event.DropSynSentBadAck)
			if !seg.has(header.TCPFlagRst) {
				e.sendReset(seg.Ack)
			}
			return stay()
		}
		ackOK = e.sndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.sndNxt)
	}
	// Second, check the RST bit. A RST is acceptable only if it
	// acknowledges our SYN (RFC 5961 3.2 keeps this rule for SYN-SENT).
	if seg.has(header.TCPFlagRst) {
		if !ackOK {
			e.drop(seg, event.DropRstInvalid)
			return stay()
		}
		e.proto.stats.ResetsReceived.Add(1)
		return e.failed(syscall.ECONNREFUSED, e.segmentCause(seg))
	}
	// Third, security: not implemented (RFC 9293 3.10.7.3 allows this).
	// Fourth, check the SYN bit.
	if !seg.has(header.TCPFlagSyn) {
		// Fifth: neither SYN nor RST: drop.
		e.drop(seg, event.DropSynSentBadAck)
		return stay()
	}
	e.irs = seg.Seq
	e.rcvNxt = seg.Seq + 1
	e.rcvAcc = e.rcvNxt
	e.takeSynOptions(seg, true)
	if !ackOK {
		// Simultaneous open (3.5, figure 8): SYN-RECEIVED, answer
		// SYN-ACK.
		e.setSndWnd(uint32(seg.Window), seg)
		return moveTo(event.SynReceived, e.segmentCause(seg), thenSynAckOut)
	}
	e.ecnTakeSynAck(seg)
	e.sndUna = seg.Ack
	e.sampleHandshakeRTT(seg)
	e.retries = 0
	e.stopTimer(timerRetransmit)
	// The window in a SYN-ACK is never scaled (RFC 7323 2.2).
	e.setSndWnd(uint32(seg.Window), seg)
	e.initCongestion()
	return moveTo(event.Established, e.segmentCause(seg), thenSynAckAccepted)
}

// synAckAccepted goes on in ESTABLISHED after our SYN was acknowledged:
// "form an ACK segment and send it ... If there are other controls or
// text in the segment, then continue processing at the sixth step"
// (3.10.7.3); then the CLOSE the user called during the handshake, and
// the data queued.
func (e *Endpoint) synAckAccepted(seg *segment) verdict {
	e.sendAck(event.SendAck)
	if seg.Payload.Size() > 0 || seg.has(header.TCPFlagFin) {
		seg.Seq++
		seg.Flags &^= header.TCPFlagSyn
		if v := e.processTextAndFin(seg); v.move {
			v.then = thenQueuedCloseThenOutput
			return v
		}
	}
	return e.queuedCloseThenOutput(seg)
}

func (e *Endpoint) queuedCloseThenOutput(*segment) verdict {
	if v := e.queuedClose(); v.move {
		v.then = thenOutput
		return v
	}
	e.output()
	return stay()
}

// synAckOut answers a SYN in SYN-RECEIVED, just entered: <SEQ=ISS>
// <ACK=RCV.NXT><CTL=SYN,ACK>, retransmitted on the RTO (3.10.7.2,
// 3.10.7.3).
func (e *Endpoint) synAckOut(*segment) verdict {
	e.retries = 0
	e.sendSynAck(event.SendSynAck)
	e.setTimer(timerRetransmit, e.rto)
	return stay()
}

// sampleHandshakeRTT seeds the estimator with the handshake's round trip
// when the ACK of our SYN (or SYN-ACK) arrives (RFC 6298 allows it as the
// first sample; Linux does the same): from the ACK's TSecr when
// timestamps are on (RFC 7323 4.1), else timed from the first SYN unless
// it was retransmitted (Karn, RFC 6298 3).
//
// A TSecr older than our latest SYN's TSval echoes an earlier SYN: the
// peer got it, its answer was lost, and now - TSecr holds the RTO wait
// and its backoff, seconds on a lossy path. Linux takes that sample
// (tcp_ack_update_rtt); it seeded SRTT with 3 s at 20% loss and every
// later RTO with 13 s. We take none, as for data after a retransmission
// (Eifel, RFC 3522; ack.go), and, with no sample after a SYN timeout,
// re-initialize the RTO to 3 s (RFC 6298 5.7) until data gives one.
func (e *Endpoint) sampleHandshakeRTT(seg *segment) {
	retransmitted := e.retries > 0
	if e.tsOK && seg.TS && seg.TSEcr != 0 && !(retransmitted && tsBefore(seg.TSEcr, e.synTSval)) {
		if e.sampleRTTFromTSecr(seg) {
			return
		}
	}
	if !retransmitted {
		e.sampleRTT(e.now().Sub(e.stateSince))
		return
	}
	e.rto = min(max(e.proto.opts.InitialRTO, 3*time.Second), e.proto.opts.MaxRTO)
}

// setSndWnd records the peer's window and the segment that carried it
// (SND.WL1, SND.WL2: 3.10.7.4 fifth step).
func (e *Endpoint) setSndWnd(wnd uint32, seg *segment) {
	e.sndWnd = wnd
	e.sndWL1 = seg.Seq
	e.sndWL2 = seg.Ack
	e.maxSndWnd = max(e.maxSndWnd, wnd)
}

// drop counts and reports a segment this connection discards.
// The caller holds e.mu.
func (e *Endpoint) drop(seg *segment, r event.DropReason) {
	e.proto.stats.Drops[r].Add(1)
	if e.proto.opts.Observer != nil {
		e.emit(event.Event{Kind: event.KindDrop, Conn: e.connID(), Drop: r, Segment: seg.info(), Key: seg.wire})
	}
}
