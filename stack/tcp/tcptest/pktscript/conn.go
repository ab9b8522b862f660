package pktscript

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// connState is one connection as the script sees it: its ports and the
// offsets between the script's sequence numbers and the live ones.
//
// packetdrill's numbering (socket.h): the peer's side is the script's own,
// its SYN's sequence number is used as it is and later ones are relative
// to it; the stack's side is relative to the ISN the stack chose, learned
// from its SYN or SYN-ACK, so that the script's SYN-ACK "0:0(0)" is
// whatever the stack picked.
type connState struct {
	localPort, peerPort uint16

	ec      *conn // the engine's connection; nil until known
	passive bool

	remoteISN     uint32 // the peer's ISN (live = script)
	haveRemoteISN bool
	liveISN       uint32 // the stack's ISN
	scriptISN     uint32 // what the script calls it (its SYN or SYN-ACK's seq)
	haveISN       bool
	scriptISNSet  bool

	// TS val mapping (run_packet.c): each script TS val of an outbound
	// packet maps to the live one, for the peer's TS ecr; the first pair
	// anchors the conversion of later live values to script space.
	tsMap                        map[uint32]uint32
	firstScriptTS, firstActualTS uint32
	haveFirstTS                  bool
	synAckReceived               bool

	// A SYN the peer sent on this connection, not yet answered.
	pendingISN uint32
	synPending bool
}

func (c *connState) String() string {
	return fmt.Sprintf("connection %d>%d", c.peerPort, c.localPort)
}

// ackOffset turns script numbers of the stack's side into live ones.
func (c *connState) ackOffset() uint32 { return c.liveISN - c.scriptISN }

// conn returns the connection of a packet the stack sent, or nil.
func (r *runner) connOfOutbound(w *wirePacket) *connState {
	for _, c := range r.conns {
		if c.localPort == w.srcPort && c.peerPort == w.dstPort {
			if c.synPending {
				c.synPending = false
				if w.flags&flagSYN != 0 && w.seq != c.liveISN {
					c.remoteISN = c.pendingISN
					c.haveISN, c.scriptISNSet, c.haveFirstTS = false, false, false
					clear(c.tsMap)
				}
			}
			if w.flags&flagSYN != 0 && !c.haveISN {
				c.liveISN, c.haveISN = w.seq, true
			}
			return c
		}
	}
	return nil
}

func (r *runner) engineConn(c *connState) *conn {
	if c.ec == nil {
		c.ec = r.eng.findConn(c.localPort, c.peerPort)
	}
	return c.ec
}

func (r *runner) addConn(c *connState) *connState {
	if len(r.conns) >= maxSockets {
		r.fail("more than %d connections", maxSockets)
	}
	c.tsMap = map[uint32]uint32{}
	r.conns = append(r.conns, c)
	return c
}

func (r *runner) connByPeer(port uint16) *connState {
	for _, c := range r.conns {
		if c.peerPort == port {
			return c
		}
	}
	return nil
}

// inboundConn finds the connection a packet line from the peer is for,
// making one as packetdrill does: ports written on the line name it (an
// extension of this runner: packetdrill tests one socket at a time); else
// it is the socket under test's, and a packet while a listener is under
// test opens a new child connection from a new ephemeral port.
func (r *runner) inboundConn(pk *Packet) *connState {
	if pk.SrcPort != 0 || pk.DstPort != 0 {
		if c := r.connByPeer(pk.SrcPort); c != nil {
			if c.localPort != pk.DstPort {
				r.fail("port %d already talks to port %d, not %d", pk.SrcPort, c.localPort, pk.DstPort)
			}
			r.sut, r.sutLn = c, nil
			return c
		}
		c := r.addConn(&connState{localPort: pk.DstPort, peerPort: pk.SrcPort, passive: true,
			remoteISN: pk.Seq, haveRemoteISN: true})
		r.sut, r.sutLn = c, nil
		return c
	}
	if r.sut != nil && r.sutLn == nil {
		return r.sut
	}
	local := r.bindPort
	if r.sutLn != nil && r.sutLn.ln != nil {
		local = r.sutLn.ln.port()
	}
	port := r.nextEph
	for r.connByPeer(port) != nil || port < firstEphemeralPort {
		port++
	}
	r.nextEph = port + 1
	c := r.addConn(&connState{localPort: local, peerPort: port, passive: true, remoteISN: pk.Seq, haveRemoteISN: true})
	r.sut, r.sutLn = c, nil
	return c
}

// injectPacket sends a packet line from the peer.
func (r *runner) injectPacket(pk *Packet) {
	c := r.inboundConn(pk)
	syn := strings.Contains(pk.Flags, "S")
	ack := strings.Contains(pk.Flags, ".")
	switch {
	case syn && ack && !c.passive && !c.synAckReceived:
		// The SYN-ACK of an active open fixes the peer's ISN.
		c.remoteISN, c.haveRemoteISN, c.synAckReceived = pk.Seq, true, true
	case syn && !ack && c.passive:
		// A SYN (again) on a known connection: if a SYN-ACK answers
		// it, it opened a new incarnation of the 4-tuple (a SYN in
		// TIME-WAIT, RFC 6191) and both ISNs start anew; if not (a
		// challenge ACK), the numbering stays (connOfOutbound).
		c.pendingISN, c.synPending = pk.Seq, true
	}
	seq := pk.Seq
	if !syn {
		seq += c.remoteISN
	}
	ackOff := c.ackOffset()
	f := inboundFields{
		v6:      r.v6,
		src:     r.peerAddr(),
		dst:     r.stackAddr(),
		srcPort: c.peerPort,
		dstPort: c.localPort,
		ttl:     pk.TTL,
		seq:     seq,
		ack:     pk.Ack,
		flags:   flagBits(pk.Flags),
		win:     uint16(pk.Win),
		urg:     pk.Urg,
		payload: pk.Len,
	}
	if pk.TOSCheck == TOSECN || pk.TOSCheck == TOSByte {
		f.tos = pk.TOS
	}
	if ack {
		f.ack = pk.Ack + ackOff
	}
	f.options = encodeOptions(pk.Options,
		func(v uint32) uint32 { return v + ackOff },
		func(ecr uint32) uint32 { return r.liveTSEcr(c, ecr, ack) })
	line := pk.String()
	r.logf("%s < %s   line %d", secs(r.eng.now()), line[2:], r.line)
	b := encodeInbound(f)
	if r.cap != nil {
		// Held until drain has the events its arrival made.
		r.cap.hold(r.eng.now(), b)
	}
	r.eng.inject(b, r.v6)
	r.drain()
}

// liveTSEcr maps a TS ecr of the peer to the stack's clock, as
// run_packet.c does: the live TS val of the outbound packet whose script
// TS val it names, or with --tcp_ts_ecr_scaled the value scaled from the
// first pair.
func (r *runner) liveTSEcr(c *connState, ecr uint32, ack bool) uint32 {
	if !ack {
		return ecr
	}
	if v, ok := c.tsMap[ecr]; ok {
		return v
	}
	if r.tsEcrScaled && c.haveFirstTS {
		return ecr - c.firstScriptTS + c.firstActualTS
	}
	r.fail("unable to infer live TS ecr for script TS ecr %d; no matching or preceding outbound TS val", ecr)
	return 0
}

// outboundConn returns the connection a packet line from the stack is
// for: the one its ports name, else the socket under test.
func (r *runner) outboundConn(pk *Packet) *connState {
	if pk.SrcPort != 0 || pk.DstPort != 0 {
		c := r.connByPeer(pk.DstPort)
		if c == nil {
			r.fail("no connection with peer port %d", pk.DstPort)
		}
		r.sut, r.sutLn = c, nil
		return c
	}
	if r.sut == nil || r.sutLn != nil {
		r.fail("no connection for this outbound packet")
	}
	return r.sut
}

// nextOutbound returns the next packet the stack sent on connection c,
// moving the clock up to limit for it; nil if none came.
func (r *runner) nextOutbound(c *connState, limit time.Duration) *sniffed {
	for range maxSteps {
		for len(r.out) > 0 {
			sn := r.out[0]
			r.out = r.out[1:]
			if sn.c == c {
				return sn
			}
			if sn.c != nil {
				r.failDetail(fmt.Sprintf("expected a packet of %v, the stack sent\n  %s %s\n", c, secs(sn.at), sn.line),
					"packet is not for expected socket (it is for %v)", sn.c)
			}
			// A packet for no socket of the script's: packetdrill's
			// sniffer passes it over.
		}
		if !r.step(limit) {
			return nil
		}
	}
	r.fail("no packet after %d clock steps", maxSteps)
	return nil
}

// expectPacket checks the next packet the stack sends against a '>' line.
func (r *runner) expectPacket(ev *Event, t, end time.Duration, tol time.Duration) {
	pk := ev.Packet
	c := r.outboundConn(pk)
	if pk.Flags != "" && strings.Contains(pk.Flags, "S") && !c.scriptISNSet {
		c.scriptISN, c.scriptISNSet = pk.Seq, true
	}
	last := t
	if ev.TimeKind == TimeAbsoluteRange || ev.TimeKind == TimeRelativeRange {
		last = end
	}
	limit := last + tol + sniffGrace
	if ev.TimeKind == TimeAny {
		limit = r.eng.now() + anyTimeWait
	}
	script := fmt.Sprintf("%s %s", secs(t), pk.String())
	// Aggregate segments up to the line's length, as packetdrill does
	// for TSO/GSO packets (unless --strict_segments): tapstack sends
	// MSS-sized segments where Linux hands one large one to the device.
	var parts []*sniffed
	total := 0
	for {
		sn := r.nextOutbound(c, limit)
		if sn == nil {
			got := "nothing"
			if len(parts) > 0 {
				got = fmt.Sprintf("%d bytes in %d segments", total, len(parts))
			}
			r.failDetail(fmt.Sprintf("script packet: %s\n", script),
				"expected %s, got %s by %s sec", pk.String(), got, secs(r.eng.now()))
		}
		if len(parts) > 0 {
			if d := r.fragmentDiff(parts[len(parts)-1], sn); d != "" {
				r.failDetail(r.partsDetail(script, append(parts, sn)),
					"segment %d of an aggregate does not follow segment %d: %s", len(parts)+1, len(parts), d)
			}
		}
		parts = append(parts, sn)
		total += len(sn.w.payload)
		if total >= pk.Len || r.strict {
			break
		}
	}
	if total != pk.Len {
		r.failDetail(r.partsDetail(script, parts),
			"live packet payload: expected %d bytes vs actual %d bytes", pk.Len, total)
	}
	agg := aggregate(parts)
	actual := sniffed{at: parts[len(parts)-1].at, w: agg, c: c}
	diffs := r.verify(c, pk, agg, t)
	if len(diffs) > 0 {
		r.failDetail(r.partsDetail(script, parts), "%s", strings.Join(diffs, "; "))
	}
	// Time: as verify_time, with the range or the point.
	lo, hi := t-tol, last+tol
	if ev.TimeKind != TimeAny && (actual.at < lo || actual.at > hi) {
		want := "at " + secs(t)
		if last != t {
			want = fmt.Sprintf("in time range %s~%s", secs(t), secs(last))
		}
		r.failDetail(r.partsDetail(script, parts),
			"timing error: expected outbound packet %s sec but happened at %s sec; tolerance %s sec",
			want, secs(actual.at), secs(tol))
	}
	r.logf("%s   line %d: matched %s", secs(actual.at), r.line, pk.String())
}

func (r *runner) partsDetail(script string, parts []*sniffed) string {
	var b strings.Builder
	fmt.Fprintf(&b, "script packet: %s\n", script)
	if len(parts) == 1 {
		fmt.Fprintf(&b, "actual packet: %s %s\n", secs(parts[0].at), r.scriptView(parts[0].c, parts[0].w))
		return b.String()
	}
	fmt.Fprintf(&b, "actual packets (%d segments, aggregated as TSO would):\n", len(parts))
	for _, p := range parts {
		fmt.Fprintf(&b, "  %s %s\n", secs(p.at), r.scriptView(p.c, p.w))
	}
	return b.String()
}

// fragmentDiff checks that b can follow a in one aggregate: same
// connection, contiguous, and headers alike but for FIN, PSH and CWR
// (run_packet.c's verify_packet_fragments).
func (r *runner) fragmentDiff(a, b *sniffed) string {
	const loose = flagFIN | flagPSH | flagCWR
	switch {
	case a.w.seq+uint32(len(a.w.payload)) != b.w.seq:
		return fmt.Sprintf("seq %d does not follow %d:%d", a.c.scriptSeq(b.w.seq), a.c.scriptSeq(a.w.seq), a.c.scriptSeq(a.w.seq)+uint32(len(a.w.payload)))
	case a.w.flags&^loose != b.w.flags&^loose:
		return fmt.Sprintf("flags %s vs %s", flagLetters(b.w.flags), flagLetters(a.w.flags))
	case a.w.flags&flagACK != 0 && a.w.ack != b.w.ack:
		return fmt.Sprintf("ack moved by %d", b.w.ack-a.w.ack)
	case a.w.optBytes != b.w.optBytes:
		return "options differ in length"
	}
	return ""
}

// aggregate joins segments into one packet as packetdrill's
// aggregate_packets: the last one's headers, the first one's seq and CWR.
func aggregate(parts []*sniffed) *wirePacket {
	if len(parts) == 1 {
		return parts[0].w
	}
	last := *parts[len(parts)-1].w
	first := parts[0].w
	last.seq = first.seq
	last.flags = last.flags&^flagCWR | first.flags&flagCWR
	var payload []byte
	for _, p := range parts {
		payload = append(payload, p.w.payload...)
	}
	last.payload = payload
	return &last
}

// scriptSeq maps the stack's live sequence number to the script's.
func (c *connState) scriptSeq(v uint32) uint32 { return v - c.ackOffset() }

// scriptAck maps an acknowledgment of the peer's data to the script's.
func (c *connState) scriptAck(w *wirePacket) uint32 {
	if w.flags&flagACK == 0 {
		return w.ack // not mapped, as tcp_convert_seq_number
	}
	if w.flags&flagSYN != 0 {
		return w.ack
	}
	return w.ack - c.remoteISN
}

// scriptTSVal maps a live TS val to the script's clock, anchored at the
// first pair seen.
func (c *connState) scriptTSVal(v uint32) uint32 {
	if !c.haveFirstTS {
		return v
	}
	return c.firstScriptTS + (v - c.firstActualTS)
}

// scriptView renders a packet the stack sent as a script line.
func (r *runner) scriptView(c *connState, w *wirePacket) string {
	var b strings.Builder
	b.WriteString(">")
	if ecn := w.tos & 3; ecn != 0 {
		b.WriteString(" [" + ecnName(ecn) + "]")
	}
	seq, ack := w.seq, w.ack
	sack := func(v uint32) uint32 { return v }
	tsval := func(v uint32) uint32 { return v }
	if c == nil || len(r.conns) > 1 {
		fmt.Fprintf(&b, " %d>%d", w.srcPort, w.dstPort)
	}
	if c != nil {
		seq = c.scriptSeq(w.seq)
		ack = c.scriptAck(w)
		sack = func(v uint32) uint32 { return v - c.remoteISN }
		tsval = c.scriptTSVal
	}
	n := uint32(len(w.payload))
	fmt.Fprintf(&b, " %s %d:%d(%d)", flagLetters(w.flags), seq, seq+n, n)
	if w.flags&flagACK != 0 {
		fmt.Fprintf(&b, " ack %d", ack)
	}
	fmt.Fprintf(&b, " win %d", w.win)
	if w.urg != 0 {
		fmt.Fprintf(&b, " urg %d", w.urg)
	}
	if len(w.options) > 0 {
		s := make([]string, len(w.options))
		for i, o := range w.options {
			s[i] = wireOptionString(o, sack, tsval)
		}
		b.WriteString(" <" + strings.Join(s, ",") + ">")
	}
	return b.String()
}

func (r *runner) describeOutbound(sn *sniffed) string {
	s := r.scriptView(sn.c, sn.w)
	return s[2:]
}

// verify compares a packet the stack sent with a script line, field by
// field, as run_packet.c's verify_outbound_live_packet does with strict
// checks: IP TOS and TTL as stated, every TCP flag, seq, ack, the window
// unless omitted, the urgent pointer, the options in order (TS val only
// with --tcp_ts_tick_usecs, TS ecr never), and the payload (zeros, as the
// script's calls write). t is the line's time, for the TS val tolerance.
func (r *runner) verify(c *connState, pk *Packet, w *wirePacket, t time.Duration) []string {
	var d []string
	check := func(name string, want, got uint32) {
		if want != got {
			d = append(d, fmt.Sprintf("%s: expected %d vs actual %d", name, want, got))
		}
	}
	if w.v6 != r.v6 {
		d = append(d, "IP version")
	}
	ecn := w.tos & 3
	switch pk.TOSCheck {
	case TOSECN:
		check("ip_ecn", uint32(pk.TOS), uint32(ecn))
	case TOSECT01:
		if ecn != ecnECT0 && ecn != ecnECT1 {
			d = append(d, fmt.Sprintf("ip_ecn: expected ect0 or ect1 vs actual %s", ecnName(ecn)))
		}
	case TOSByte:
		check("tos", uint32(pk.TOS), uint32(w.tos))
	}
	if pk.TTL != 0 {
		check("ttl", uint32(pk.TTL), uint32(w.ttl))
	}
	if !pk.AnyOptions {
		size := 0
		for _, o := range pk.Options {
			size += o.size()
		}
		check("tcp_data_offset", uint32(5+size/4), uint32(5+w.optBytes/4))
	}
	want := flagBits(pk.Flags)
	if want != w.flags {
		d = append(d, fmt.Sprintf("flags: expected %s vs actual %s", flagLetters(want), flagLetters(w.flags)))
	}
	check("tcp_seq", pk.Seq, c.scriptSeq(w.seq))
	check("tcp_ack_seq", pk.Ack, c.scriptAck(w))
	if pk.Win >= 0 {
		check("tcp_window", uint32(pk.Win), uint32(w.win))
	}
	check("tcp_urg_ptr", uint32(pk.Urg), uint32(w.urg))
	if !pk.AnyOptions {
		d = append(d, r.verifyOptions(c, pk, w, t)...)
	}
	if len(w.payload) == pk.Len && !bytes.Equal(w.payload, make([]byte, pk.Len)) {
		d = append(d, "incorrect outbound data payload (not the zeros the script wrote)")
	}
	return d
}

func (r *runner) verifyOptions(c *connState, pk *Packet, w *wirePacket, t time.Duration) []string {
	// Learn the TS val mapping first (map_outbound_live_packet), even if
	// the comparison then fails.
	var sTS *TCPOption
	for i := range pk.Options {
		if pk.Options[i].Kind == OptTS {
			sTS = &pk.Options[i]
		}
	}
	var aTSVal uint32
	aHas := false
	for _, o := range w.options {
		if o.kind == 8 && len(o.data) == 8 {
			aTSVal, aHas = binary.BigEndian.Uint32(o.data), true
		}
	}
	if sTS != nil && aHas {
		if len(c.tsMap) < 1<<16 {
			c.tsMap[sTS.TSVal] = aTSVal
		}
		if !c.haveFirstTS {
			c.firstScriptTS, c.firstActualTS, c.haveFirstTS = sTS.TSVal, aTSVal, true
		}
	}
	mismatch := func() []string {
		return []string{fmt.Sprintf("bad outbound TCP options: expected <%s> vs actual <%s>",
			optionsString(pk.Options), r.wireOptionsString(c, w))}
	}
	if len(pk.Options) != len(w.options) {
		return mismatch()
	}
	for i, so := range pk.Options {
		ao := w.options[i]
		if scriptOptionKind(so.Kind) != ao.kind {
			return mismatch()
		}
		switch so.Kind {
		case OptNOP, OptEOL:
		case OptTS:
			if len(ao.data) != 8 {
				return mismatch()
			}
			if r.tsTick > 0 {
				got := int64(int32(c.scriptTSVal(aTSVal) - so.TSVal))
				if got < 0 {
					got = -got
				}
				// Tolerance from the script's start, as
				// verify_outbound_tcp_option.
				tol := r.toleranceFor(t, 0)
				if time.Duration(got)*r.tsTick > tol {
					return []string{fmt.Sprintf("bad outbound TCP timestamp value: expected %d vs actual %d, tolerance %s sec",
						so.TSVal, c.scriptTSVal(aTSVal), secs(tol))}
				}
			}
		default:
			want := encodeOptions([]TCPOption{so}, func(v uint32) uint32 { return v + c.remoteISN }, func(v uint32) uint32 { return v })
			if !bytes.Equal(want[2:], ao.data) || int(want[1]) != len(ao.data)+2 {
				return []string{fmt.Sprintf("bad value in outbound TCP option %s: actual %s", so.String(),
					wireOptionString(ao, func(v uint32) uint32 { return v - c.remoteISN }, c.scriptTSVal))}
			}
		}
	}
	return nil
}

func optionsString(opts []TCPOption) string {
	s := make([]string, len(opts))
	for i, o := range opts {
		s[i] = o.String()
	}
	return strings.Join(s, ",")
}

func (r *runner) wireOptionsString(c *connState, w *wirePacket) string {
	s := make([]string, len(w.options))
	for i, o := range w.options {
		s[i] = wireOptionString(o, func(v uint32) uint32 { return v - c.remoteISN }, c.scriptTSVal)
	}
	return strings.Join(s, ",")
}
