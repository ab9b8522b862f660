package tcp_test

import (
	"cmp"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// FuzzListener plays up to eight peers, one per port, against a listener
// with small queues: SYNs with any options (raw option bytes too), final
// ACKs right or wrong, with or without SYN cookies, RSTs, text and FINs on
// the connections made, clock advances, Accept, closing what was accepted,
// closing the listener. After every step:
//
//   - nothing panics, and every segment the stack sends is well formed
//     (tcptest) and goes from the listener's port to one of the peers;
//   - a SYN-ACK acknowledges a SYN that peer sent and offers the window
//     scale, the TSopt and SACK-permitted only if a SYN of that peer did
//     (RFC 7323 2.2, 3.2; RFC 2018 2); a RST without ACK carries the ACK
//     number of a segment that peer sent (RFC 9293 3.10.7.2);
//   - the SYN queue and the accept queue stay within their limits, and
//     the engine holds no more connections than the queues plus those
//     accepted;
//   - Accept hands out each connection once, synchronized: ESTABLISHED, or
//     CLOSE-WAIT if the peer's FIN came while it waited; with window
//     scales of at most 14 (RFC 7323 2.3) and a send MSS no larger than
//     the peer announced (RFC 9293 3.7.1), but for the engine's floor of
//     48 bytes (Linux's TCP_MIN_SND_MSS), and 536 for a SYN cookie
//     (Linux's msstab);
//   - every state change is an edge of RFC 9293's diagram, drops and sends
//     carry named reasons and the counters agree with the events.
//
// At the end the clock runs ten minutes: every half-open entry must have
// expired (SYN-ACK retries exhausted), leaving the SYN queue empty.
//
// A program's first byte sets the engine's options: bits 0-1 the SYN
// queue limit (fzSynQueueLimits), 2-3 the backlog (fzBacklogs), bit 4
// NoSynCookies, 5 AbortOnOverflow, 6 NoTimestamps, 7 NoSACK. The rest are
// ops (the fzL constants, fuzzListener.step).
func FuzzListener(f *testing.F) {
	for _, s := range fzListenSeeds() {
		f.Add(s.Args[0].([]byte))
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		fzRunListener(t, prog)
	})
}

// Op codes of a listener program; arguments follow. As in a connection
// program, an op byte is taken modulo fzLOpSpace and codes from fzLNumOps
// on do nothing.
const (
	fzLSyn     = iota // port, optSel: SYN with options chosen by optSel
	fzLAck            // port, ackDelta, tsSel, lenSel: the final ACK, maybe with text or FIN
	fzLRst            // port, seqDelta, ack?
	fzLSeg            // port, flags, seqDelta(2), ackDelta(2): anything
	fzLAdvance        // durSel
	fzLAccept         //
	fzLClose          // idx, how: close, reset or write to an accepted connection
	fzLCloseLn        // close the listener
	fzLRawSyn         // port, n, n option bytes: a SYN with raw options
	fzLNumOps
	fzLOpSpace = 16
)

const (
	fzPorts      = 8
	fzBasePort   = 41000
	fzMaxLOps    = 128
	fzEndAdvance = 10 * time.Minute
)

var (
	fzSynQueueLimits = []int{1, 2, 4, 0}
	fzBacklogs       = []int{0, 1, 2, 16}
	fzSynMSSs        = []uint16{1460, 536, 1, 48, 65535, 9000, 100, 1220}
	fzSynWSs         = []int{0, 7, 14, 15, 255, 1, 2, 3}
)

// fzPeer is one of the listener program's peers.
type fzPeer struct {
	iss      uint32          // absolute
	syns     map[uint32]bool // sequence numbers of the SYNs it sent
	acks     map[uint32]bool // acknowledgment numbers of segments it sent
	stackISS uint32          // from the last SYN-ACK it got
	tsVal    uint32          // the last TSval the stack sent it
	synAcked bool
	// maxMSS is the largest MSS its SYNs announced (536 for none, RFC
	// 9293 3.7.1); -1 after a SYN with raw options, not modelled.
	maxMSS int
	// Whether any of its SYNs offered window scaling, SACK, timestamps
	// (all true after a SYN with raw options).
	offeredWS, offeredSACK, offeredTS bool
}

type fuzzListener struct {
	t      *testing.T
	p      *tcptest.Peer
	l      *tcp.Listener
	peers  [fzPorts]fzPeer
	closed bool // the listener was closed

	accepted []*tcp.Endpoint
	seen     map[*tcp.Endpoint]bool
	cookie   map[event.ConnID]bool // connections a SYN cookie made

	evMu      sync.Mutex
	events    []event.Event
	nextEvent int
	states    map[event.ConnID]event.State
}

func fzListenSeeds() []tcptest.FuzzSeed {
	seed := func(name string, prog ...byte) tcptest.FuzzSeed {
		return tcptest.FuzzSeed{Name: name, Args: []any{prog}}
	}
	return []tcptest.FuzzSeed{
		// A handshake and Accept; a second peer's SYN, ACK, data, FIN.
		seed("handshake-accept-text-fin", 0, fzLSyn, 0, 0, fzLAck, 0, 0, 0, 0, fzLAccept,
			fzLSyn, 1, 0x0f, fzLAck, 1, 0, 1, 4, fzLSeg, 1, 0x11, 0, 100, 0, 0, fzLAccept, fzLClose, 0, 0),
		// SYN queue of 1 and a backlog of 0: cookies, with and without
		// timestamps; overflow of the accept queue.
		seed("cookies-accept-queue-overflow", 0x00, fzLSyn, 0, 0x08, fzLSyn, 1, 0x08, fzLSyn, 2, 0, fzLAck, 1, 0, 1, 0, fzLAck, 2, 0, 0, 0,
			fzLAck, 0, 0, 1, 0, fzLAccept, fzLAccept, fzLAdvance, 5),
		// Without cookies, abort on overflow; RSTs; SYN-ACK retransmissions.
		seed("no-cookies-rst-synack-retransmit", 0x30, fzLSyn, 0, 0, fzLSyn, 1, 0, fzLSyn, 2, 0, fzLRst, 0, 0, 0, fzLRst, 1, 0, 1,
			fzLAdvance, 5, fzLAdvance, 8, fzLAck, 2, 0, 0, 0, fzLAck, 2, 0, 0, 0),
		// Raw options: MSS 0, a window scale of 200, a truncated TSopt.
		seed("raw-syn-options", 0, fzLRawSyn, 3, 12, 2, 4, 0, 0, 3, 3, 200, 1, 8, 10, 0, 0, fzLAck, 3, 0, 0, 0, fzLAccept),
		// Bad final ACKs, a SYN-ACK to the listener, the listener closed.
		seed("bad-acks-listener-close", 0x0c, fzLSyn, 4, 0, fzLAck, 4, 5, 0, 0, fzLSeg, 5, 0x12, 0, 0, 0, 0, fzLAck, 4, 0, 0, 0,
			fzLCloseLn, fzLSyn, 6, 0, fzLAccept),
		// Found by fuzzing (TestCookieAckBeyondCookie): a peer announces
		// MSS 48 and acknowledges cookie+2 with 1460 bytes.
		seed("cookie-ack-beyond-cookie", 0, fzLSyn, 0, 0x30, fzLSyn, 2, 0x38, fzLAck, 2, 1, 0, 9, fzLAccept),
		// Found by fuzzing, a bug of the target's: a cookie's final ACK
		// with text and FIN, accepted in CLOSE-WAIT.
		seed("cookie-ack-with-text-and-fin", 0, fzLSyn, 0, 0x30, fzLSyn, 1, 0x38, fzLAck, 1, 0, 2, 9, fzLAccept),
	}
}

func fzRunListener(t *testing.T, prog []byte) *fuzzListener {
	r := &fzReader{b: prog}
	cfg := r.u8()
	c := &fuzzListener{t: t, seen: make(map[*tcp.Endpoint]bool), cookie: make(map[event.ConnID]bool), states: make(map[event.ConnID]event.State)}
	opts := tcp.Options{
		SynQueueLimit:   fzSynQueueLimits[cfg&3],
		NoSynCookies:    cfg&0x10 != 0,
		AbortOnOverflow: cfg&0x20 != 0,
		NoTimestamps:    cfg&0x40 != 0,
		NoSACK:          cfg&0x80 != 0,
		Observer: func(ev event.Event) {
			c.evMu.Lock()
			c.events = append(c.events, ev)
			c.evMu.Unlock()
		},
	}
	c.p = tcptest.New(t, tcptest.WithTCP(opts))
	c.l = c.p.Listen(fzBacklogs[cfg>>2&3])
	for k := range c.peers {
		c.peers[k] = fzPeer{iss: 1000 + uint32(k)*100_000_000, syns: make(map[uint32]bool), acks: make(map[uint32]bool)}
	}
	c.check()
	for n := 0; r.more() && n < fzMaxLOps; n++ {
		c.step(r)
		c.check()
	}
	c.p.Advance(fzEndAdvance)
	c.check()
	if q := c.l.Queues(); q.SynQueueLen != 0 {
		c.fail("%d half-open entries left %v after the last SYN", q.SynQueueLen, fzEndAdvance)
	}
	fzCheckCounters(t, c.p.TCP.Stats(), c.events, c.p.Trace)
	return c
}

func (c *fuzzListener) fail(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf(format+"\ntrace (> from peer, < from stack; relative numbers unless absolute):\n%s", append(args, c.p.Trace())...)
}

// use points the tcptest peer at peer k: its port and ISS, and the stack's
// ISS as that peer learned it.
func (c *fuzzListener) use(k int) *fzPeer {
	c.p.PeerPort = fzBasePort + uint16(k)
	pe := &c.peers[k]
	c.p.SetPeerISS(pe.iss)
	c.p.SetStackISS(pe.stackISS, pe.synAcked)
	return pe
}

func (c *fuzzListener) inject(pe *fzPeer, s tcptest.Seg) {
	f, _ := tcptest.ParseFlags(s.Flags)
	if f&header.TCPFlagSyn != 0 {
		pe.syns[pe.iss+s.Seq] = true
		if pe.maxMSS >= 0 {
			pe.maxMSS = max(pe.maxMSS, int(cmp.Or(s.MSS, 536)))
		}
		pe.offeredWS = pe.offeredWS || s.WS > 0 || s.Check&tcptest.CheckWS != 0
		pe.offeredSACK = pe.offeredSACK || s.SACKPerm
		pe.offeredTS = pe.offeredTS || s.TS
	}
	if f&header.TCPFlagAck != 0 {
		pe.acks[pe.stackISS+s.Ack] = true
	} else {
		pe.acks[s.Ack] = true // sent as the literal value
	}
	c.p.Inject(s)
}

func (c *fuzzListener) step(r *fzReader) {
	p := c.p
	switch op := r.u8() % fzLOpSpace; op {
	case fzLSyn:
		pe := c.use(int(r.u8() % fzPorts))
		o := r.u8()
		s := tcptest.Seg{Flags: "S", Seq: 0}
		if o&0x01 == 0 {
			s.MSS = fzSynMSSs[o>>4&7]
		}
		if o&0x02 != 0 {
			s.WS, s.Check = fzSynWSs[o>>4&7], tcptest.CheckWS
		}
		s.SACKPerm = o&0x04 != 0
		if o&0x08 != 0 {
			s.TS, s.TSVal = true, p.TSClock()
		}
		c.inject(pe, s)
	case fzLAck:
		pe := c.use(int(r.u8() % fzPorts))
		s := tcptest.Seg{Flags: ".", Seq: 1, Ack: 1 + uint32(int8(r.u8()))}
		ts := r.u8()
		if ts&1 != 0 {
			s.TS, s.TSVal, s.TSEcr = true, p.TSClock(), pe.tsVal
		} else {
			s.Check |= tcptest.CheckTS
		}
		if ts&2 != 0 {
			s.Flags = "F."
		}
		if n := fzPick(fzLens, r.u8()); n > 0 {
			s.Payload = make([]byte, n)
		}
		c.inject(pe, s)
	case fzLRst:
		pe := c.use(int(r.u8() % fzPorts))
		s := tcptest.Seg{Flags: "R", Seq: 1 + uint32(int8(r.u8()))}
		if r.u8()&1 != 0 {
			s.Flags, s.Ack = "R.", 1
		}
		c.inject(pe, s)
	case fzLSeg:
		pe := c.use(int(r.u8() % fzPorts))
		flags := fzFlags(r.u8())
		seq := 1 + uint32(int32(r.i16()))
		ack := 1 + uint32(int32(r.i16()))
		c.inject(pe, tcptest.Seg{Flags: flags, Seq: seq, Ack: ack, Check: tcptest.CheckTS})
	case fzLAdvance:
		p.Advance(fzPick(fzDurs, r.u8()))
	case fzLAccept:
		e, err := c.l.Accept()
		if err != nil {
			if e != nil {
				c.fail("Accept returned a connection and %v", err)
			}
			if (err == tcp.ErrWouldBlock) == c.closed {
				c.fail("Accept: %v with the listener closed %v", err, c.closed)
			}
			return
		}
		if c.seen[e] {
			c.fail("Accept handed out %v twice", e.ID())
		}
		c.seen[e] = true
		c.accepted = append(c.accepted, e)
		if s := e.State(); s != event.Established && s != event.CloseWait {
			c.fail("Accept handed out %v in %v", e.ID(), s)
		}
		if ok, err := e.Established(); !ok || err != nil {
			c.fail("Accept handed out %v with Established() = %v, %v", e.ID(), ok, err)
		}
		port := e.ID().Remote.Port()
		if port < fzBasePort || port >= fzBasePort+fzPorts {
			c.fail("Accept handed out a connection from port %d, which no peer used", port)
		}
		// What the handshake agreed: a window scale of at most 14 (RFC
		// 7323 2.3), a send MSS no larger than the peer announced (RFC
		// 9293 3.7.1). The engine's floor is 48 bytes (Linux's
		// TCP_MIN_SND_MSS); a cookie's is 536, the smallest MSS it can
		// carry (Linux's msstab).
		i := e.Info()
		if i.SndWndScale > 14 || i.RcvWndScale > 14 {
			c.fail("%v: window scales %d and %d, more than 14", e.ID(), i.SndWndScale, i.RcvWndScale)
		}
		floor := 48
		if c.cookie[e.ID()] {
			floor = 536
		}
		if mss := c.peers[port-fzBasePort].maxMSS; mss >= 0 && i.SndMSS > max(mss, floor) {
			c.fail("%v: send MSS %d, but the peer announced at most %d", e.ID(), i.SndMSS, mss)
		}
	case fzLClose:
		i, how := r.u8(), r.u8()
		if len(c.accepted) == 0 {
			return
		}
		e := c.accepted[int(i)%len(c.accepted)]
		switch how % 3 {
		case 0:
			e.Close()
		case 1:
			e.Reset()
		case 2:
			e.Write([]byte("fuzz"))
		}
	case fzLCloseLn:
		c.l.Close()
		c.closed = true
	case fzLRawSyn:
		pe := c.use(int(r.u8() % fzPorts))
		opts := make([]byte, int(r.u8())%(header.TCPOptionsMaximumSize+1))
		for i := range opts {
			opts[i] = r.u8()
		}
		b := fzRawSegment(p.Encode(tcptest.Seg{Flags: "S", Seq: 0}), opts)
		pe.syns[pe.iss] = true
		pe.maxMSS = -1
		pe.offeredWS, pe.offeredSACK, pe.offeredTS = true, true, true
		p.InjectTCP(b, true)
	}
}

// fzRawSegment returns the segment b (header without options) with opts
// as its options, padded with zeros (EOL) to a multiple of four bytes.
func fzRawSegment(b, opts []byte) []byte {
	n := (len(opts) + 3) &^ 3
	out := make([]byte, header.TCPMinimumSize+n+len(b)-header.TCPMinimumSize)
	copy(out, b[:header.TCPMinimumSize])
	copy(out[header.TCPMinimumSize:], opts)
	copy(out[header.TCPMinimumSize+n:], b[header.TCPMinimumSize:])
	out[header.TCPDataOffset] = byte((header.TCPMinimumSize+n)/4) << 4
	binary.BigEndian.PutUint16(out[header.TCPChecksumOffset:], 0)
	return out
}

func (c *fuzzListener) check() {
	c.t.Helper()
	c.evMu.Lock()
	evs := c.events[c.nextEvent:]
	c.nextEvent = len(c.events)
	c.evMu.Unlock()
	fzCheckEvents(evs, c.states, c.fail)
	for _, ev := range evs {
		if ev.Kind == event.KindState && ev.From == event.Closed { // a new connection on ev.Conn
			c.cookie[ev.Conn] = strings.HasPrefix(ev.Cause.Detail, "SYN cookie")
		}
	}
	for range 1 << 13 {
		s, src, dst, ok := c.p.NextAny()
		if !ok {
			break
		}
		if src != tcptest.ListenPort || dst < fzBasePort || dst >= fzBasePort+fzPorts {
			c.fail("the stack sent %v from port %d to port %d", s, src, dst)
		}
		pe := &c.peers[dst-fzBasePort]
		switch {
		case s.Flags == "S.":
			// RFC 9293 3.10.7.2: <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>,
			// RCV.NXT being SEG.SEQ+1 of a SYN this peer sent.
			if !pe.syns[s.Ack-1] {
				c.fail("SYN-ACK to port %d acknowledges %d, but the peer sent no SYN at %d", dst, s.Ack, s.Ack-1)
			}
			// RFC 7323 2.2 and 3.2, RFC 2018 2: a SYN-ACK carries the
			// window scale, the TSopt and SACK-permitted only in answer
			// to a SYN that offered them.
			switch {
			case s.WS != tcptest.NoWS && !pe.offeredWS,
				s.TS && !pe.offeredTS,
				s.SACKPerm && !pe.offeredSACK:
				c.fail("SYN-ACK to port %d offers an option its SYNs did not: %v", dst, s)
			}
			pe.stackISS, pe.synAcked = s.Seq, true
		case s.Flags == "R":
			// <SEQ=SEG.ACK><CTL=RST> for a segment with ACK, or, once
			// the peer has a connection, that connection's RST at its
			// SND.NXT.
			if !pe.acks[s.Seq] && !pe.synAcked {
				c.fail("RST to port %d at %d, an ACK number the peer never sent", dst, s.Seq)
			}
		}
		if s.TS {
			pe.tsVal = s.TSVal
		}
	}
	q := c.l.Queues()
	if q.SynQueueLen < 0 || q.SynQueueLen > q.SynQueueLimit {
		c.fail("SYN queue %d/%d", q.SynQueueLen, q.SynQueueLimit)
	}
	if q.AcceptQueueLen < 0 || q.AcceptQueueLen > q.AcceptQueueLimit {
		c.fail("accept queue %d/%d", q.AcceptQueueLen, q.AcceptQueueLimit)
	}
	live := 0
	for _, e := range c.accepted {
		if e.State() != event.Closed {
			live++
		}
	}
	if n := len(c.p.TCP.Connections()); n > q.SynQueueLimit+q.AcceptQueueLimit+live {
		c.fail("%d connections in the engine, more than the queues (%d + %d) and the %d accepted ones", n, q.SynQueueLimit, q.AcceptQueueLimit, live)
	}
	if got, want := c.p.TCP.Stats().Listen.Accepted.Load(), uint64(len(c.accepted)); got != want {
		c.fail("Stats.Listen.Accepted = %d, but Accept returned %d connections", got, want)
	}
}
