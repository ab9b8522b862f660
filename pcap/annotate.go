package pcap

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/tap"
)

// The annotator matches engine events and fault reports with captured
// frames by wire identity, in either order: an event may be reported
// before its frame passes the link (a send, today) or after it (events
// delivered once the engine's locks are released). Frames wait in a
// bounded window for late annotations; annotations wait in a bounded table
// for late frames. It does no I/O and reads no clock: the Writer gives it
// the time, so tests can feed events and frames in any order.

// directions of a frame.
const (
	dirIn  = 1
	dirOut = 2
)

// class is a kind of annotation; a frame takes at most one of each, except
// state changes, which chain (SYN-RECEIVED → ESTABLISHED → CLOSE-WAIT),
// and a drop, which a held reply's may follow ("dropped: out of window;
// ACK rate limited", pendEv.held).
type class uint16

const (
	clsSend     class = 1 << iota // outbound: why it was sent
	clsAck                        // inbound: what the acknowledgment did
	clsReceive                    // inbound: what became of the text
	clsDrop                       // inbound: why it was discarded
	clsState                      // a state change the segment caused (chains)
	clsUser                       // a state change a user call or timer made, carried by this frame
	clsQueue                      // a listener decision
	clsRecovery                   // loss recovery changed course (chains)
)

// frameKey is a TCP frame's wire identity: direction, connection (as the
// stack names it) and SegKey.
type frameKey struct {
	dir  uint8
	conn event.ConnID
	key  event.SegKey
}

// record is a frame in the window, or a timeline note: a state change or
// listener decision no frame carried, written as a pcapng custom block.
type record struct {
	no         uint64 // frame number in the capture, from 1, as Wireshark numbers records (notes included)
	ts         time.Time
	entered    time.Time // when it became writable (inbound: when the stack returned)
	delivering bool      // inbound, the stack still processing it
	dir        uint8
	data       []byte
	length     int
	fi         frameInfo
	fp         uint64 // fingerprint of the bytes, when faults are observed
	faults     []string
	parts      []part   // from events, in the order they came
	wire       []string // what the wire itself says
	earlier    []string // what happened to the connection with no frame to carry it
	claimed    class
	lastTo     event.State // the last state change's To, for chaining
	dropped    bool        // verdict: discarded by the engine or a fault
	replyHeld  bool        // a rate limit held back the reply it asked for (pendEv.held)
	lost       bool        // inbound, dropped by a fault before the stack saw it
	faultCopy  bool        // inbound, the copy a fault's Duplicate made
	faultFrame uint64      // outbound, the fault middleware's ordinal for it (FaultEvent.Frame), once a report named it
	train      *record     // a wire segment cut from an outbound super-frame (splitOutbound): the first of them, which the fault middleware saw as one frame with them
	packetID   uint64
	segIDs     []uint64 // a super-frame written as its wire segments: each one's packet id (wire.go)
	origFrame  uint64   // a retransmission: the frame that first carried the data
	dropCount  uint64
	note       string // a timeline note's text
	noteConn   event.ConnID
	dead       bool   // a note that found its frame after all
	answered   bool   // ARP/ICMP request: a reply was seen
	replyLost  uint64 // ARP/ICMP request: the frame of a reply the fault lost on its way in, if any
	answerNote string
	mss        int    // a TCP super-frame: its MSS (gso_size); else 0
	offload    string // a wire segment cut from an outbound super-frame: the offload that cut it (superframe.go)
	segs       int    // a super-frame: the blocks it is written as (its wire segments, or 1 as is)
	wantICMP   bool   // a UDP datagram the stack said ICMP port unreachable answers
	icmpFrame  uint64 // a UDP datagram: the frame of the ICMP port unreachable that answered it
	icmpLost   bool   // a UDP datagram: the fault lost that ICMP error on its way in
	refusal    uint16 // outbound, refused by the link: its number among the connection's refused frames (refusedFrame); 0 for none
}

// part is one annotation of a frame. A retransmission names the frame
// that first carried its data, which is known only once it is matched.
type part struct {
	quiet bool
	text  string
	retx  bool
	seq   uint64 // the event's place among all events: parts read in event order
}

// faultNote is an inbound fault report waiting for its frame; copy: the
// fault sent the frame twice, and this is the second copy.
type faultNote struct {
	text string
	copy bool
	at   time.Time
}

// pendEv is an annotation waiting for its frame.
type pendEv struct {
	quiet bool // an ACK that did nothing: left out when the frame has more to say
	seq   uint64
	retx  bool
	id    uint64
	cls   class
	text  string
	at    time.Time
	from  event.State
	to    event.State
	drop  bool
	// held: a drop that tells of a reply a rate limit held back
	// (DropAckRateLimited, DropChallengeRateLimited), which the engine
	// reports after the drop of the segment that asked for it.
	held bool
	// wantICMP: a UDP datagram for no port, which the stack said ICMP
	// port unreachable answers.
	wantICMP bool
	// with are annotations that go on whichever frame takes this one:
	// the recovery notes a send or an ACK brought. Filed apart, under
	// the same key, they went to the oldest frame with that key, which
	// for a retransmission is the original (a tail loss probe's
	// "recovery" on the FIN it repeated, 10 ms before it).
	with []pendEv
}

// recovNotes are the recovery and path MTU notes waiting for their
// connection's next frame; at is when the first came.
type recovNotes struct {
	texts []string
	at    time.Time
}

type pendRef struct {
	id   uint64
	at   time.Time
	k    frameKey
	flag *flagKey // set for flag-matched entries
}

// flagKey files a state change made by a user call or a timer under the
// control flag of the outbound segment that carries its effect.
type flagKey struct {
	conn event.ConnID
	flag header.TCPFlags
}

// Bounds of the annotator's tables.
const (
	maxConns      = 4096 // connections whose wire state is tracked
	maxQueueNotes = 16   // listener decisions waiting to be paired, per port
	maxEarlier    = 4    // notes waiting for a connection's next frame, per connection
)

type annotator struct {
	window   time.Duration // how long a frame waits for late annotations
	maxHeld  int           // frames in the window at most
	maxPend  int           // annotations waiting for frames at most
	pendTTL  time.Duration // how long an annotation waits for its frame
	recs     []*record     // the window, in capture order
	head     int           // recs[head:] are live
	byKey    map[frameKey][]*record
	pend     map[frameKey][]pendEv
	pendFlag map[flagKey][]pendEv
	order    []pendRef // pending annotations, oldest first
	ohead    int
	nextID   uint64
	frames   uint64                 // frame numbers given
	ids      uint64                 // packet ids given
	faultFP  map[uint64][]faultNote // inbound fault reports waiting for their frame
	conns    *connTable
	rto      map[event.ConnID]time.Duration
	recov    map[event.ConnID]recovNotes
	lq       map[uint16]*listenerPairing
	earlier  map[event.ConnID][]string
	icmp     map[event.ConnID]pendEv // state changes waiting for the ICMP error that caused them
	lastTS   time.Time               // the latest capture time given
	evSeq    uint64                  // events seen
	stats    annStats
	out      []*record // records ready to write, returned by take
}

type annStats struct {
	unmatched   uint64 // annotations that never met their frame
	late        uint64 // annotations for a frame already written
	unexplained uint64 // TCP frames written with no engine annotation
	notes       uint64 // timeline notes
}

func newAnnotator(window time.Duration, maxHeld, maxPend int) *annotator {
	return &annotator{
		window:   window,
		maxHeld:  maxHeld,
		maxPend:  maxPend,
		pendTTL:  10 * time.Second,
		byKey:    make(map[frameKey][]*record),
		pend:     make(map[frameKey][]pendEv),
		pendFlag: make(map[flagKey][]pendEv),
		faultFP:  make(map[uint64][]faultNote),
		conns:    newConnTable(maxConns),
		rto:      make(map[event.ConnID]time.Duration),
		recov:    make(map[event.ConnID]recovNotes),
		lq:       make(map[uint16]*listenerPairing),
		earlier:  make(map[event.ConnID][]string),
		icmp:     make(map[event.ConnID]pendEv),
	}
}

func (a *annotator) live() []*record { return a.recs[a.head:] }

// pending is the length of the queue that bounds the pending tables; it
// also holds entries already matched, until they reach its head.
func (a *annotator) pending() int { return len(a.order) - a.ohead }

// waiting counts the annotations waiting for their frame.
func (a *annotator) waiting() int {
	n := 0
	for _, ps := range a.pend {
		n += len(ps)
	}
	for _, ps := range a.pendFlag {
		n += len(ps)
	}
	return n
}

// addFrame puts a captured frame into the window. An inbound frame being
// delivered is not writable until delivered is called.
func (a *annotator) addFrame(now time.Time, r *record) {
	// Frames enter in capture order; their times were read just before,
	// on concurrent goroutines: keep them in order too.
	if r.ts.Before(a.lastTS) {
		r.ts = a.lastTS
	}
	a.lastTS = r.ts
	a.frames++
	r.no = a.frames
	if r.segs > 1 {
		// A super-frame written as its wire segments takes as many
		// frame numbers; r.no is the first's.
		a.frames += uint64(r.segs - 1)
	}
	r.entered = now
	if r.dir == dirIn && r.fp != 0 {
		// Before the wire facts: a copy the fault made is no
		// retransmission (wireFacts).
		if fs, ok := a.faultFP[r.fp]; ok {
			for _, f := range fs {
				r.faults = append(r.faults, f.text)
				r.faultCopy = r.faultCopy || f.copy
			}
			delete(a.faultFP, r.fp)
		}
	}
	if r.fi.kind == kindTCP {
		a.wireFacts(r)
	} else {
		a.ids++
		r.packetID = a.ids
		a.pairReply(r)
	}
	a.recs = append(a.recs, r)
	// A state change an ICMP error caused is that error's; one the
	// fault lost never reached the engine (state).
	if r.fi.quotedTCP && r.dir == dirIn && !r.lost {
		if p, ok := a.icmp[r.fi.quoted]; ok {
			delete(a.icmp, r.fi.quoted)
			a.apply(r, p)
		}
	}
	if r.lost || (r.fi.kind != kindTCP && r.fi.kind != kindUDP) {
		// A frame a fault dropped on its way in never reached the
		// stack: no event is about it.
		return
	}
	if r.fi.kind == kindUDP {
		k := udpKey(r.dir, r.fi.conn, r.fi.key.Len)
		a.byKey[k] = append(a.byKey[k], r)
		a.applyPending(r, k)
		return
	}
	if e, ok := a.earlier[r.fi.conn]; ok {
		r.earlier = e
		delete(a.earlier, r.fi.conn)
	}
	k := frameKey{dir: r.dir, conn: r.fi.conn, key: r.fi.key}
	a.byKey[k] = append(a.byKey[k], r)
	a.applyPending(r, k)
	if r.dir == dirOut {
		for _, f := range []header.TCPFlags{header.TCPFlagSyn, header.TCPFlagFin, header.TCPFlagRst} {
			if !carries(r, f) {
				continue
			}
			fk := flagKey{conn: r.fi.conn, flag: f}
			if ps, ok := a.pendFlag[fk]; ok && r.claimed&clsUser == 0 {
				a.apply(r, ps[0])
				if len(ps) == 1 {
					delete(a.pendFlag, fk)
				} else {
					a.pendFlag[fk] = ps[1:]
				}
			}
		}
	}
}

// applyPending gives frame r, filed under key k, the annotations that came
// before it.
func (a *annotator) applyPending(r *record, k frameKey) {
	ps, ok := a.pend[k]
	if !ok {
		return
	}
	kept := ps[:0]
	for _, p := range ps {
		if !a.apply(r, p) {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		delete(a.pend, k)
	} else {
		a.pend[k] = kept
	}
}

// udpDir marks the key of a UDP datagram, so that it never meets a TCP
// segment's.
const udpDir = 0x10

// udpKey files a UDP datagram by direction, ports, peer and payload
// length: the stack's event names the local address a socket is bound
// to, which is unspecified for a socket bound to none, where the frame
// has the source IP picked; so the local address is left out.
func udpKey(dir uint8, c event.ConnID, n int) frameKey {
	c.Local = netip.AddrPortFrom(netip.Addr{}, c.Local.Port())
	c.Remote = netip.AddrPortFrom(c.Remote.Addr().Unmap(), c.Remote.Port())
	return frameKey{dir: dir | udpDir, conn: c, key: event.SegKey{Len: n}}
}

// carries reports whether outbound frame r is the segment that carries a
// user call's effect with control flag f: the SYN of a connect (not a
// SYN-ACK), the FIN of a close, the RST of an abort.
func carries(r *record, f header.TCPFlags) bool {
	if !r.fi.has(f) {
		return false
	}
	if f == header.TCPFlagSyn {
		return !r.fi.has(header.TCPFlagAck)
	}
	return true
}

// isNote reports whether r is a timeline note rather than a frame.
func (r *record) isNote() bool { return r.note != "" }

// delivered marks an inbound frame as processed by the stack: from now it
// waits out the window.
func (a *annotator) delivered(now time.Time, r *record) {
	r.delivering = false
	r.entered = now
}

// apply adds a pending annotation to frame r if r lacks its class. It
// reports whether r took it.
func (a *annotator) apply(r *record, p pendEv) bool {
	// The engine reports one segment's processing in RFC order: a drop
	// ends it; an ACK comes before the text is taken. So a frame whose
	// text was taken takes no drop and no ACK, and a dropped one no text.
	// A drop may follow the ACK's processing (text for a closed
	// connection), never a state change the segment caused: the engine
	// reports that change after the drop.
	switch p.cls {
	case clsDrop:
		if r.claimed&(clsReceive|clsState) != 0 {
			return false
		}
		if p.held && r.claimed&clsDrop != 0 {
			// A segment dropped (out of window, PAWS) whose answer a
			// rate limit then held back is reported dropped twice
			// (stack/tcp reset.go, invalidAckAllowed; timewait.go):
			// both are this frame's. Refused, the second went to the
			// next frame with the same key, a copy the engine had
			// yet to see, and pushed that copy's own drop on to the
			// one after it.
			if r.replyHeld {
				return false
			}
			r.replyHeld = true
			p.text = strings.TrimPrefix(p.text, "dropped: ")
			a.addPart(r, p)
			return true
		}
	case clsAck:
		if r.claimed&clsReceive != 0 {
			return false
		}
	case clsReceive:
		if r.claimed&clsDrop != 0 {
			return false
		}
	}
	if r.claimed&p.cls != 0 {
		// State changes chain: CLOSED → SYN-RECEIVED, then
		// SYN-RECEIVED → ESTABLISHED from one segment is two.
		if p.cls != clsState || r.lastTo != p.from {
			if p.cls != clsRecovery {
				return false
			}
		}
	}
	r.claimed |= p.cls
	if p.cls == clsState || p.cls == clsUser {
		r.lastTo = p.to
	}
	if p.drop {
		r.dropped = true
	}
	r.replyHeld = r.replyHeld || p.held
	r.wantICMP = r.wantICMP || p.wantICMP
	a.addPart(r, p)
	for _, w := range p.with {
		r.claimed |= w.cls
		a.addPart(r, w)
	}
	return true
}

// addPart adds p's text to frame r's parts, in event order whichever
// came first.
func (a *annotator) addPart(r *record, p pendEv) {
	if p.seq == 0 {
		p.seq = a.evSeq
	}
	i := len(r.parts)
	for i > 0 && r.parts[i-1].seq > p.seq {
		i--
	}
	r.parts = slices.Insert(r.parts, i, part{text: p.text, retx: p.retx, seq: p.seq, quiet: p.quiet})
}

// attach gives annotation p to the oldest frame in the window with key k
// that lacks p's class, or files it for a frame to come.
func (a *annotator) attach(now time.Time, k frameKey, p pendEv) {
	if p.seq == 0 {
		p.seq = a.evSeq
	}
	// Frames with the same key (a retransmission, repeated ACKs) are
	// processed in order, and so reported: once a later one has an
	// annotation, the earlier ones are done.
	rs := a.byKey[k]
	start := 0
	for i := len(rs) - 1; i > 0; i-- {
		if len(rs[i].parts) > 0 {
			start = i
			break
		}
	}
	if k.dir == dirIn {
		start = beingDelivered(rs, start)
	}
	for _, r := range rs[start:] {
		if a.apply(r, p) {
			return
		}
	}
	if a.written(k) {
		// Its frame has been written already: the annotation is late.
		// It stays pending in case the same segment passes again.
		a.stats.late++
	}
	a.nextID++
	p.id, p.at = a.nextID, now
	a.pend[k] = append(a.pend[k], p)
	a.order = append(a.order, pendRef{id: p.id, at: now, k: k})
	a.trimPending(now)
}

// beingDelivered returns the index in rs, frames with one key in capture
// order, of the first that the stack is processing now, if every frame
// from start up to it has had an annotation already; otherwise start.
//
// The engine reports what an inbound segment did while it processes it,
// synchronously, from inside Writer.DeliverNetworkPacket, so an inbound
// event that comes while a frame with its key is being delivered is that
// frame's: the copy of a taken ACK is the one a bad checksum or PAWS
// dropped, and the first keeps "ACK: nothing new". Taken by the oldest
// frame that lacked its class, a drop went on the copy's predecessor and
// the copy said "no engine event".
//
// But a connection's events are delivered once its locks are released,
// by whichever goroutine holds its output (stack/tcp flushOut): the
// events of a frame delivered while another goroutine wrote may come
// after its delivery returned, while the next frame with the same key
// (a repeated duplicate ACK) is being delivered. An earlier frame that
// has heard nothing yet may be waiting for just those events, so then
// the frames are taken in order, as before. Several frames with one key
// being delivered at once (a TAP's queues, each read by a goroutine of
// its own) are taken in order too: nothing tells which goroutine an
// event came from.
func beingDelivered(rs []*record, start int) int {
	for i := start; i < len(rs); i++ {
		if rs[i].delivering {
			return i
		}
		if len(rs[i].parts) == 0 {
			break
		}
	}
	return start
}

// written reports whether a frame with key k has left the window; the
// connection table remembers recent keys.
func (a *annotator) written(k frameKey) bool {
	c := a.conns.get(k.conn)
	if c == nil {
		return false
	}
	d := 0
	if k.dir == dirOut {
		d = 1
	}
	return c.wroteKey[d] == k.key && c.wroteSet[d]
}

// attachFlag gives a state change made by a user call or timer to the
// outbound frame of its connection that carries flag f, in the window or
// to come.
func (a *annotator) attachFlag(now time.Time, c event.ConnID, f header.TCPFlags, p pendEv) {
	if p.seq == 0 {
		p.seq = a.evSeq
	}
	for _, r := range a.live() {
		if !r.isNote() && r.dir == dirOut && r.fi.kind == kindTCP && r.fi.conn == c && carries(r, f) && r.claimed&clsUser == 0 {
			a.apply(r, p)
			return
		}
	}
	fk := flagKey{conn: c, flag: f}
	if len(a.pendFlag[fk]) >= maxEarlier {
		a.stats.unmatched++
		return
	}
	a.nextID++
	p.id, p.at = a.nextID, now
	a.pendFlag[fk] = append(a.pendFlag[fk], p)
	a.order = append(a.order, pendRef{id: p.id, at: now, flag: &fk})
	a.trimPending(now)
}

// trimPending forgets the oldest pending annotations beyond the bounds.
// Those waiting for a SYN or FIN wait as long as the table has room (the
// FIN of a close may leave long after the close, behind queued data).
func (a *annotator) trimPending(now time.Time) {
	for a.ohead < len(a.order) {
		o := a.order[a.ohead]
		over := a.pending() > a.maxPend
		old := now.Sub(o.at) > a.pendTTL
		if o.flag != nil && o.flag.flag != header.TCPFlagRst {
			old = false
		}
		if o.flag != nil && o.flag.flag == header.TCPFlagRst && now.Sub(o.at) > a.window {
			old = true
		}
		if !over && !old {
			break
		}
		a.order[a.ohead] = pendRef{}
		a.ohead++
		if o.flag != nil {
			a.dropFlag(now, *o.flag, o.id, true)
		} else if ps, ok := a.pend[o.k]; ok {
			for i, p := range ps {
				if p.id == o.id {
					a.stats.unmatched++
					ps = append(ps[:i], ps[i+1:]...)
					break
				}
			}
			if len(ps) == 0 {
				delete(a.pend, o.k)
			} else {
				a.pend[o.k] = ps
			}
		}
	}
	if a.ohead > 1024 && a.ohead*2 > len(a.order) {
		a.order = append(a.order[:0], a.order[a.ohead:]...)
		a.ohead = 0
	}
}

// dropFlag removes pending flag-matched annotation id; a state change that
// no frame carried becomes a timeline note.
func (a *annotator) dropFlag(now time.Time, fk flagKey, id uint64, asNote bool) {
	ps := a.pendFlag[fk]
	for i, p := range ps {
		if p.id == id {
			if asNote {
				a.addNote(now, fk.conn, p.text)
			}
			ps = append(ps[:i], ps[i+1:]...)
			break
		}
	}
	if len(ps) == 0 {
		delete(a.pendFlag, fk)
	} else {
		a.pendFlag[fk] = ps
	}
}

// releaseFlags turns the state changes of c still waiting for a SYN or FIN
// into timeline notes: the connection moved on without sending it.
func (a *annotator) releaseFlags(now time.Time, c event.ConnID) {
	for _, f := range []header.TCPFlags{header.TCPFlagSyn, header.TCPFlagFin, header.TCPFlagRst} {
		fk := flagKey{conn: c, flag: f}
		for _, p := range a.pendFlag[fk] {
			a.addNote(now, c, p.text)
		}
		delete(a.pendFlag, fk)
	}
}

// addNote records a fact no frame carries: a custom block at its place in
// the capture, and a line on the connection's next frame.
func (a *annotator) addNote(now time.Time, c event.ConnID, text string) {
	a.stats.notes++
	// Wireshark numbers custom blocks as frames: so do we, so that "of
	// frame 12" means Wireshark's frame 12.
	a.frames++
	ts := now
	if ts.Before(a.lastTS) {
		ts = a.lastTS
	}
	a.lastTS = ts
	a.recs = append(a.recs, &record{no: a.frames, ts: ts, entered: now, note: text, noteConn: c})
	if c.Remote.IsValid() {
		e := a.earlier[c]
		if len(e) < maxEarlier {
			a.earlier[c] = append(e, "earlier "+now.Format("15:04:05.000000")+": "+text)
		}
		if len(a.earlier) > maxConns {
			for k := range a.earlier { // any one: the table only needs a bound
				delete(a.earlier, k)
				break
			}
		}
	}
}

// event files one engine event.
func (a *annotator) event(now time.Time, ev *event.Event) {
	a.evSeq++
	switch ev.Kind {
	case event.KindSend:
		text := sendText(ev.Send, ev.Attempt)
		if d, ok := a.rto[ev.Conn]; ok {
			delete(a.rto, ev.Conn)
			text += " (" + rtoText(d) + ")"
		}
		if ev.Note != "" {
			text += "; " + ev.Note // why it left when it did: "paced: held 3.9ms, 16 Mbit/s"
		}
		k := frameKey{dir: dirOut, conn: ev.Conn, key: ev.Key}
		a.attach(now, k, pendEv{cls: clsSend, text: text, retx: retransmission(ev.Send), with: a.takeRecovery(ev.Conn)})
		if ev.Send == event.SendSynAckCookie {
			a.pairKeyed(now, ev.Conn.Local.Port(), qCookie, k)
		}
	case event.KindAck:
		k := frameKey{dir: dirIn, conn: ev.Conn, key: ev.Key}
		quiet := ev.Acked == 0 && ev.Sacked == 0 && ev.DupAck == 0 && strings.TrimSpace(ev.Note) == ""
		a.attach(now, k, pendEv{cls: clsAck, text: ackText(ev), quiet: quiet, with: a.takeRecovery(ev.Conn)})
	case event.KindReceive:
		a.attach(now, frameKey{dir: dirIn, conn: ev.Conn, key: ev.Key}, pendEv{cls: clsReceive, text: ev.Note})
	case event.KindDrop:
		if ev.Key == (event.SegKey{}) {
			a.stats.unmatched++ // nothing on the wire to match: a truncated header
			return
		}
		p := pendEv{cls: clsDrop, text: dropText(ev.Drop, ev.Key.Flags), drop: true,
			held: ev.Drop == event.DropAckRateLimited || ev.Drop == event.DropChallengeRateLimited}
		if !ev.Conn.Local.IsValid() {
			// Failed validation before demultiplexing: match the
			// segment alone, on any connection.
			a.attachAnyConn(now, ev.Key, p)
			return
		}
		k := frameKey{dir: dirIn, conn: ev.Conn, key: ev.Key}
		a.attach(now, k, p)
		syn := header.TCPFlags(ev.Key.Flags)&header.TCPFlagSyn != 0
		switch {
		case (ev.Drop == event.DropSynQueueFull || ev.Drop == event.DropAcceptQueueFull) && syn:
			a.pairKeyed(now, ev.Conn.Local.Port(), qSyn, k)
		case ev.Drop == event.DropAcceptQueueFull:
			a.pairKeyed(now, ev.Conn.Local.Port(), qOverflow, k)
		case ev.Drop == event.DropCookieInvalid:
			a.pairKeyed(now, ev.Conn.Local.Port(), qCookieBad, k)
		}
	case event.KindUDPDeliver, event.KindUDPNoPort, event.KindUDPDrop:
		p := pendEv{cls: clsReceive, text: udpText(ev)}
		if ev.Kind != event.KindUDPDeliver {
			// Linux counts a datagram for no port as a drop too
			// (UDP_NO_SOCKET): the frame's verdict says so.
			p.cls, p.drop = clsDrop, true
			p.wantICMP = ev.Kind == event.KindUDPNoPort && strings.HasPrefix(ev.Note, "answered")
		}
		a.attach(now, udpKey(dirIn, ev.Conn, ev.Key.Len), p)
	case event.KindUDPSend:
		a.attach(now, udpKey(dirOut, ev.Conn, ev.Key.Len), pendEv{cls: clsSend, text: udpText(ev)})
	case event.KindState:
		a.state(now, ev)
	case event.KindQueue:
		a.queue(now, ev)
	case event.KindRetransmitTimeout:
		if len(a.rto) < maxConns {
			a.rto[ev.Conn] = ev.RTO
		}
	case event.KindRecovery, event.KindPathMTU:
		if ev.Kind == event.KindRecovery && ev.Key != (event.SegKey{}) {
			// The link refused this segment: the note goes on the
			// refused frame itself, which says "not sent".
			a.refusalNote(ev)
			break
		}
		if ev.Kind == event.KindRecovery && a.icmpRecovery(ev) {
			break
		}
		// Both change course for the frames that follow: they go on
		// the connection's next frame (the resent segment, the ACK, the
		// probe).
		text := recoveryText(ev)
		if ev.Kind == event.KindPathMTU {
			text = pathMTUText(ev)
		}
		if r, ok := a.recov[ev.Conn]; len(r.texts) < maxEarlier && (ok || len(a.recov) < maxConns) {
			if !ok {
				r.at = now
			}
			r.texts = append(r.texts, text)
			a.recov[ev.Conn] = r
		} else {
			a.stats.unmatched++ // beyond the bound: on no frame
		}
	default:
		// A kind this writer does not know yet: say so on the
		// connection's timeline rather than lose it.
		a.addNote(now, ev.Conn, ev.String())
	}
	a.trimPending(now)
}

// icmpRecovery puts a course change an ICMP error caused (an RTO backoff
// taken back, RFC 6069; stack/tcp icmpld.go) on that error's frame: the
// engine reports no key for an ICMP error, so it goes, as a state change
// an ICMP error caused does (state), on the oldest inbound ICMP error in
// the window that quotes the connection and carries no course change
// yet, one a fault lost excepted. It reports whether it found the frame;
// if not, the note goes on the connection's next frame, as for any other.
func (a *annotator) icmpRecovery(ev *event.Event) bool {
	if ev.Cause.Kind != event.CauseSegment || !strings.HasPrefix(ev.Cause.Detail, "ICMP") {
		return false
	}
	for _, r := range a.live() {
		if !r.isNote() && r.dir == dirIn && !r.lost && r.fi.quotedTCP && r.fi.quoted == ev.Conn && r.claimed&clsRecovery == 0 {
			return a.apply(r, pendEv{cls: clsRecovery, text: recoveryText(ev), seq: a.evSeq})
		}
	}
	return false
}

// refusedFrame numbers frame, the records of one outbound packet that the
// link refused with tcpip.ErrNoBufferSpace, which the sender hears, as the
// engine numbers the packets it was refused (stack/tcp numberRefusal):
// among the connection's with data or a FIN, from 1, and from 1 again
// after 65535, since our SYN or SYN-ACK. A connection whose SYN the
// capture did not see gets no numbers. The count assumes the capture's
// writes are the sender's own, as when no middleware that defers frames
// sits above it (a tap.Fault goes below, FaultObserver).
func (a *annotator) refusedFrame(frame []*record) {
	if len(frame) == 0 {
		return
	}
	r := frame[0] // the first wire segment, whose key the engine's event has
	if r.fi.kind != kindTCP || r.fi.has(header.TCPFlagSyn) || r.fi.key.Len == 0 && !r.fi.has(header.TCPFlagFin) {
		return
	}
	c := a.conns.get(r.fi.conn)
	if c == nil || !c.refusalsKnown {
		return
	}
	c.refusals++
	if c.refusals == 0 {
		c.refusals = 1
	}
	for _, x := range frame {
		x.refusal = c.refusals
	}
}

// refusalNote puts the engine's answer to a refusal (a recovery event
// keyed to the refused segment) on the frame the link refused: the
// connection's outbound frame with that key and the number the engine
// gave the refusal (Event.Attempt; refusedFrame numbered the frame when
// the link refused it, before the engine heard of it, so the note never
// waits for its frame). It may come after frames sent since with the same
// key, a retransmission the link took or the same data refused again once
// taken back: they are not its frame. Once its frame is written, it is
// late (Stats.Late), or unmatched if the capture could not number it.
func (a *annotator) refusalNote(ev *event.Event) {
	k := frameKey{dir: dirOut, conn: ev.Conn, key: ev.Key}
	n := uint16(ev.Attempt)
	for _, r := range a.byKey[k] {
		if r.refusal != 0 && r.refusal == n {
			a.apply(r, pendEv{cls: clsRecovery, text: recoveryText(ev), seq: a.evSeq})
			return
		}
	}
	if a.written(k) {
		a.stats.late++
	} else {
		a.stats.unmatched++
	}
}

// takeRecovery gives the recovery notes waiting for connection c, to go
// on the frame of the ACK or send that came with them: loss recovery
// changes course while an ACK is processed, or when a timer sends a
// probe. They read after that frame's own annotation.
func (a *annotator) takeRecovery(c event.ConnID) []pendEv {
	rs, ok := a.recov[c]
	if !ok {
		return nil
	}
	delete(a.recov, c)
	with := make([]pendEv, len(rs.texts))
	for i, t := range rs.texts {
		with[i] = pendEv{cls: clsRecovery, text: t, seq: a.evSeq}
	}
	return with
}

// attachAnyConn gives p to the inbound TCP frame in the window with
// segment key key, whatever its connection, that is being delivered, or
// else to the oldest that takes it (beingDelivered says when which). A
// frame a fault lost on its way in is none of them: the engine never saw
// it, as attach never offers it (addFrame files it under no key).
func (a *annotator) attachAnyConn(now time.Time, key event.SegKey, p pendEv) {
	var rs []*record
	for _, r := range a.live() {
		if !r.isNote() && r.dir == dirIn && !r.lost && r.fi.kind == kindTCP && r.fi.key == key {
			rs = append(rs, r)
		}
	}
	for _, r := range rs[beingDelivered(rs, 0):] {
		if a.apply(r, p) {
			return
		}
	}
	a.stats.unmatched++
}

// state files a state change: on the segment that caused it; on the
// segment that carries its effect (the SYN of a connect, the FIN of a
// close, the RST of an abort); on the ICMP error that caused it; or, when
// no frame carries it, as a timeline note.
func (a *annotator) state(now time.Time, ev *event.Event) {
	text := stateText(ev)
	p := pendEv{cls: clsState, text: text, from: ev.From, to: ev.To}
	if ev.Cause.Kind == event.CauseSegment && ev.Key != (event.SegKey{}) {
		k := frameKey{dir: dirIn, conn: ev.Conn, key: ev.Key}
		a.attach(now, k, p)
		port := ev.Conn.Local.Port()
		switch {
		case ev.To == event.SynReceived && (ev.From == event.Closed || ev.From == event.Listen):
			a.pairKeyed(now, port, qSyn, k)
		case ev.To == event.Established && (ev.From == event.SynReceived || ev.From == event.Closed || ev.From == event.Listen):
			a.pairKeyed(now, port, qAdd, k)
		}
		if ev.To == event.Closed {
			a.releaseFlags(now, ev.Conn)
		}
		return
	}
	if !ev.Conn.Remote.IsValid() {
		a.addNote(now, ev.Conn, text) // a listener: no frames of its own
		return
	}
	if ev.Cause.Kind == event.CauseSegment && strings.HasPrefix(ev.Cause.Detail, "ICMP") {
		// The engine reports no key for an ICMP error: it goes on the
		// oldest inbound ICMP error in the window that quotes the
		// connection and has no state change yet. One a fault below
		// lost on its way in is not it: the engine never saw it, and
		// the next error quoting the same segment (a router repeats
		// its answer to each retransmission) caused the change, as
		// attach never offers a lost segment its events.
		for _, r := range a.live() {
			if !r.isNote() && r.dir == dirIn && !r.lost && r.fi.quotedTCP && r.fi.quoted == ev.Conn && r.claimed&clsState == 0 {
				a.apply(r, p)
				return
			}
		}
		// Its ICMP frame is still to come (or never will): wait for the
		// window, then tell it as a note.
		if len(a.icmp) < maxConns {
			p.seq, p.at = a.evSeq, now
			a.icmp[ev.Conn] = p
		} else {
			a.addNote(now, ev.Conn, text)
		}
		return
	}
	p.cls = clsUser
	switch ev.To {
	case event.SynSent:
		a.attachFlag(now, ev.Conn, header.TCPFlagSyn, p)
	case event.FinWait1, event.LastAck:
		a.attachFlag(now, ev.Conn, header.TCPFlagFin, p)
	case event.Closed:
		// What still waited for a SYN or FIN will never see it. An abort
		// sends RST, if anything: it leaves at once, so it waits only
		// for the window. A timer into CLOSED (TIME-WAIT, FIN-WAIT-2)
		// sends nothing.
		a.releaseFlags(now, ev.Conn)
		if ev.Cause.Kind == event.CauseUser {
			a.attachFlag(now, ev.Conn, header.TCPFlagRst, p)
		} else {
			a.addNote(now, ev.Conn, text)
		}
	default:
		a.addNote(now, ev.Conn, text)
	}
}

// Listener decisions. The engine reports them on the listener, without the
// segment's key; the key comes from the event the same segment caused on
// the child connection (its state change, or its drop), so each decision
// is paired with the keyed event of its kind on the same port, whichever
// comes first.
type qclass uint8

const (
	qNone      qclass = iota
	qSyn              // a SYN's fate: queued, dropped
	qCookie           // a SYN answered with a cookie (on the SYN-ACK)
	qAdd              // a final ACK that moved a child to the accept queue
	qOverflow         // a final ACK that found the accept queue full
	qCookieBad        // an ACK whose cookie did not verify
)

func queueClass(note string) qclass {
	switch {
	case strings.HasPrefix(note, "SYN queue full: SYN cookie"):
		return qCookie
	case strings.HasPrefix(note, "SYN queued"), strings.HasPrefix(note, "SYN dropped"):
		return qSyn
	case strings.HasPrefix(note, "accept queue add"):
		return qAdd
	case strings.HasPrefix(note, "accept queue overflow"):
		return qOverflow
	case strings.HasPrefix(note, "SYN cookie rejected"):
		return qCookieBad
	}
	return qNone
}

type listenerPairing struct {
	waiting []queued   // decisions waiting for their keyed event
	keyed   []keyedRef // keyed events waiting for their decision
}

type queued struct {
	seq  uint64
	c    qclass
	text string
	at   time.Time
}

type keyedRef struct {
	c  qclass
	k  frameKey
	at time.Time
}

func (a *annotator) pairing(port uint16) *listenerPairing {
	lp := a.lq[port]
	if lp == nil {
		if len(a.lq) >= maxConns {
			for k := range a.lq {
				delete(a.lq, k)
				break
			}
		}
		lp = &listenerPairing{}
		a.lq[port] = lp
	}
	return lp
}

func (a *annotator) queue(now time.Time, ev *event.Event) {
	text := queueText(ev)
	c := queueClass(ev.Note)
	if c == qNone {
		switch {
		case ev.Note == "accepted", ev.Note == "accept queue remove":
			// The user's Accept: bookkeeping with no frame and no
			// state change; the trace and the counters have it.
		default:
			a.addNote(now, ev.Conn, text) // listener closed, half-open expired...
		}
		return
	}
	lp := a.pairing(ev.Conn.Local.Port())
	for i, kr := range lp.keyed {
		if kr.c == c {
			lp.keyed = append(lp.keyed[:i], lp.keyed[i+1:]...)
			a.attach(now, kr.k, pendEv{cls: clsQueue, text: text})
			return
		}
	}
	if len(lp.waiting) == maxQueueNotes {
		a.addNote(now, ev.Conn, lp.waiting[0].text)
		lp.waiting = lp.waiting[1:]
	}
	lp.waiting = append(lp.waiting, queued{seq: a.evSeq, c: c, text: text, at: now})
}

// pairKeyed offers the keyed event for frame k to the decisions of class
// c waiting on port.
func (a *annotator) pairKeyed(now time.Time, port uint16, c qclass, k frameKey) {
	lp := a.pairing(port)
	for i, q := range lp.waiting {
		if q.c == c {
			lp.waiting = append(lp.waiting[:i], lp.waiting[i+1:]...)
			a.attach(now, k, pendEv{seq: q.seq, cls: clsQueue, text: q.text})
			return
		}
	}
	if len(lp.keyed) == maxQueueNotes {
		lp.keyed = lp.keyed[1:]
	}
	lp.keyed = append(lp.keyed, keyedRef{c: c, k: k, at: now})
}

// expireQueue turns decisions that found no keyed event within the window
// into timeline notes, and forgets keyed events no decision claimed; it
// counts unmatched the fault reports and recovery notes that waited for
// their frame longer than pendTTL.
func (a *annotator) expireQueue(now time.Time) {
	for fp, fs := range a.faultFP {
		// An inbound fault report waits for its frame as long as an
		// engine event does (trimPending).
		if now.Sub(fs[0].at) > a.pendTTL {
			a.stats.unmatched += uint64(len(fs))
			delete(a.faultFP, fp)
		}
	}
	for c, r := range a.recov {
		// A connection may end, or fall silent, right after changing
		// course (an RTO that gives up, an abort with nothing to send):
		// its notes wait for a frame as long as an engine event does,
		// so that they never fill the table for good.
		if now.Sub(r.at) > a.pendTTL {
			a.stats.unmatched += uint64(len(r.texts))
			delete(a.recov, c)
		}
	}
	for c, p := range a.icmp {
		if now.Sub(p.at) > a.window {
			delete(a.icmp, c)
			a.addNote(now, c, p.text)
		}
	}
	for port, lp := range a.lq {
		for len(lp.waiting) > 0 && now.Sub(lp.waiting[0].at) > a.window {
			a.addNote(now, event.ConnID{}, lp.waiting[0].text)
			lp.waiting = lp.waiting[1:]
		}
		for len(lp.keyed) > 0 && now.Sub(lp.keyed[0].at) > a.window {
			lp.keyed = lp.keyed[1:]
		}
		if len(lp.waiting) == 0 && len(lp.keyed) == 0 {
			delete(a.lq, port)
		}
	}
}

// fault files a fault report. An outbound frame was captured before the
// middleware below decided, so it is in the window; an inbound one is
// reported just before it reaches the stack (or instead, when it is lost).
// It reports whether the report is on its frame, or waits for it: not
// when an outbound frame has left the window already (unmatched).
func (a *annotator) fault(now time.Time, ev *tap.FaultEvent, fp uint64, lost *record) (found bool) {
	text := "fault: " + ev.String()
	drop := ev.Kind == tap.FaultLoss || ev.Kind == tap.FaultQueueFull || ev.Kind == tap.FaultBlackHole || ev.Kind == tap.FaultNotSent
	if ev.Kind == tap.FaultNotSent {
		// Not a fault the middleware injected: the link below it
		// refused the frame, as Writer.refused says when it sits on
		// the link itself.
		text = ev.String()
	}
	if ev.Dir == tap.FaultOutbound {
		if r := a.outboundFaultFrame(ev, fp); r != nil {
			// A super-frame is one frame to the middleware (lost
			// whole, as netem drops a GSO packet): what it did to
			// it, it did to each wire segment the capture shows.
			for _, x := range a.live() {
				if x == r || r.train != nil && x.train == r.train {
					if !copyFate(x, ev, text, drop) && !copyNotSent(x, ev, text) {
						x.faults = append(x.faults, text)
						x.dropped = x.dropped || drop
					}
					x.faultFrame = r.faultFrame
				}
			}
			return true
		}
		a.stats.unmatched++
		return false
	}
	if lost != nil {
		lost.faults = append(lost.faults, text)
		lost.dropped, lost.lost = true, true
		a.addFrame(now, lost)
		return true
	}
	// The frame follows its reports at once (a frame has four at most:
	// marked, corrupted, duplicated or reordered, delayed), so the table
	// is near empty; what it cannot hold, and what waited in it in vain
	// (expireQueue), never meets its frame, and is counted so.
	fs, ok := a.faultFP[fp]
	if !ok && len(a.faultFP) >= maxConns {
		a.evictFaultNotes()
	}
	if len(fs) >= maxEarlier {
		a.stats.unmatched++
		return false
	}
	a.faultFP[fp] = append(fs, faultNote{text: text, copy: ev.Kind == tap.FaultDuplicate, at: now})
	return true
}

// evictFaultNotes forgets the inbound fault reports that have waited
// longest for their frame, and counts them unmatched.
func (a *annotator) evictFaultNotes() {
	var oldest uint64
	var at time.Time
	for fp, fs := range a.faultFP {
		if at.IsZero() || fs[0].at.Before(at) {
			oldest, at = fp, fs[0].at
		}
	}
	a.stats.unmatched += uint64(len(a.faultFP[oldest]))
	delete(a.faultFP, oldest)
}

// copyFate tells on r, an outbound frame the middleware below sent twice
// (Duplicate), the fate its second copy met there, and reports whether
// report ev, with text and drop, was that. The capture above holds one
// frame, the stack's; the copy is none of its frames. Each copy is
// delayed, or dropped for a full delay queue, in turn, and so reported:
// the original first, unless the original was held back (Reorder), when
// the copy goes first (tap's lane.decide). Told as two reports, the one
// frame read "delayed" twice; told once, "fault: delayed 1ms (#5), its
// copy delayed 1ms (#6)" names both. The frame is shown dropped only
// when both copies were: one left.
func copyFate(r *record, ev *tap.FaultEvent, text string, drop bool) bool {
	if ev.Kind != tap.FaultDelay && ev.Kind != tap.FaultQueueFull {
		return false
	}
	const dup, held = "fault: duplicated ", "fault: reordered"
	const delayed, full = "fault: delayed ", "fault: dropped: delay queue full"
	duplicated, reordered, first := false, false, -1
	for i, f := range r.faults {
		switch {
		case strings.HasPrefix(f, dup):
			duplicated = true
		case strings.HasPrefix(f, held):
			reordered = true
		case strings.HasPrefix(f, delayed) || strings.HasPrefix(f, full):
			if first >= 0 || strings.Contains(f, ", its copy ") {
				return false // both told already
			}
			first = i
		}
	}
	if !duplicated || first < 0 {
		return false
	}
	prev := r.faults[first]
	firstDropped := strings.HasPrefix(prev, full)
	if reordered {
		// The first report was the copy's, sent ahead of the held
		// original; this one is the original's.
		r.faults[first] = text + ", its copy " + strings.TrimPrefix(prev, "fault: ")
	} else {
		r.faults[first] = prev + ", its copy " + strings.TrimPrefix(text, "fault: ")
	}
	r.dropped = firstDropped && drop
	return true
}

// copyNotSent tells on r, an outbound frame the middleware below sent
// twice (Duplicate), that the link refused one copy (FaultNotSent), and
// reports whether report ev, with text, was that. The report says which
// copy (FaultEvent.Copy: both share the frame's ordinal): "its copy not
// sent: ...", or "not sent: ..., its copy sent". The frame reached the wire
// when one copy did, so it is shown dropped only when the link refused the
// other too, told with the first: "not sent: ... (#4), its copy not sent
// (#5)".
func copyNotSent(r *record, ev *tap.FaultEvent, text string) bool {
	if ev.Kind != tap.FaultNotSent {
		return false
	}
	const dup, copyGone, copySent = "fault: duplicated ", "its copy ", ", its copy sent"
	duplicated, prior := false, -1
	for i, f := range r.faults {
		switch {
		case strings.HasPrefix(f, dup):
			duplicated = true
		case strings.HasPrefix(f, copyGone+"not sent") || strings.HasPrefix(f, "not sent") && strings.HasSuffix(f, copySent):
			prior = i
		}
	}
	if !duplicated {
		return false
	}
	ord := text[strings.LastIndex(text, " (#")+1:] // "(#5)"
	switch p := r.faults[max(prior, 0)]; {
	case prior < 0 && ev.Copy:
		r.faults = append(r.faults, copyGone+text)
	case prior < 0:
		r.faults = append(r.faults, text+copySent)
	case ev.Copy:
		r.faults[prior] = strings.TrimSuffix(p, copySent) + ", its copy not sent " + ord
		r.dropped = true
	default:
		r.faults[prior] = text + ", its copy not sent " + p[strings.LastIndex(p, " (#")+1:]
		r.dropped = true
	}
	return true
}

// outboundFaultFrame finds the outbound frame in the window that fault
// report ev, about a frame with fingerprint fp, concerns. The middleware
// decides a frame while the capture's write of it is under way, so a
// report made then is about the newest frame with those bytes. But a
// frame it held back (Reorder) moves on after the frame that overtook it,
// and its reports then (delayed, dropped for a full delay queue) come
// after that frame's: with frames identical byte for byte (a run of
// duplicate ACKs, RFC 5681 4.2), the newest is the wrong one. Such a
// frame had a report when it was held, which named its ordinal
// (FaultEvent.Frame), as every report about it does: a report goes on
// the frame a report with its ordinal went on, or else on the newest
// frame with those bytes that no report has named yet; a frame some
// other report named is not its (once the held frame has left the
// window, its report is unmatched rather than told on a neighbour). So
// with a refusal of the link below (FaultNotSent), which comes when the
// middleware writes a frame it delayed, after frames taken since. A
// report without an ordinal takes the newest frame with its bytes.
func (a *annotator) outboundFaultFrame(ev *tap.FaultEvent, fp uint64) *record {
	live := a.live()
	var newest *record
	for i := len(live) - 1; i >= 0; i-- {
		r := live[i]
		if r.isNote() || r.dir != dirOut || r.fp != fp {
			continue
		}
		if ev.Frame != 0 && r.faultFrame == ev.Frame {
			return r
		}
		if newest == nil && (r.faultFrame == 0 || ev.Frame == 0) {
			newest = r
		}
	}
	if newest != nil && ev.Frame != 0 {
		newest.faultFrame = ev.Frame
	}
	return newest
}

// take returns the records that may be written now, in capture order: the
// head of the window while it is older than the window, not being
// delivered, or beyond maxHeld; every record when all is set.
func (a *annotator) take(now time.Time, all bool) []*record {
	a.expireQueue(now)
	a.trimPending(now)
	out := a.out[:0]
	for a.head < len(a.recs) {
		r := a.recs[a.head]
		n := len(a.recs) - a.head
		if !all && n <= a.maxHeld && !r.isNote() && (r.delivering || now.Sub(r.entered) < a.window) {
			break
		}
		a.recs[a.head] = nil
		a.head++
		if !r.isNote() {
			a.unindex(r)
		}
		if !r.dead {
			out = append(out, r)
		}
	}
	if a.head == len(a.recs) {
		a.recs = a.recs[:0]
		a.head = 0
	} else if a.head > 1024 && a.head*2 > len(a.recs) {
		a.recs = append(a.recs[:0], a.recs[a.head:]...)
		a.head = 0
	}
	a.out = out[:0]
	return out
}

func (a *annotator) unindex(r *record) {
	var k frameKey
	switch r.fi.kind {
	case kindTCP:
		k = frameKey{dir: r.dir, conn: r.fi.conn, key: r.fi.key}
	case kindUDP:
		k = udpKey(r.dir, r.fi.conn, r.fi.key.Len)
	default:
		return
	}
	rs := a.byKey[k]
	for i, x := range rs {
		if x == r {
			rs = append(rs[:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(a.byKey, k)
	} else {
		a.byKey[k] = rs
	}
	if c := a.conns.get(r.fi.conn); c != nil {
		d := 0
		if r.dir == dirOut {
			d = 1
		}
		c.wroteKey[d], c.wroteSet[d] = r.fi.key, true
	}
}

// comment renders a frame's annotations: faults first, then what the
// frame is when it is not TCP, then what the engine said in the order it
// said it, then what the wire says.
func (a *annotator) comment(r *record) string {
	var parts []string
	if r.offload != "" {
		parts = append(parts, r.offload)
	}
	parts = append(append(parts, r.faults...), r.earlier...)
	udpTold := r.fi.kind == kindUDP && len(r.parts) > 0
	if r.fi.kind != kindTCP && !udpTold {
		d := r.fi.describe(r.dir == dirOut) + r.answerNote + udpAnswer(r, false)
		if r.dir == dirIn && !r.answered && !r.dropped && r.isRequest() {
			d += " → no reply"
		}
		parts = append(parts, d)
	}
	for _, pt := range r.parts {
		if pt.quiet && len(r.parts) > 1 {
			continue // "ACK: nothing new" on a data segment says nothing
		}
		p := pt.text
		if pt.retx {
			if r.origFrame != 0 {
				of := " of frame " + strconv.FormatUint(r.origFrame, 10)
				if i := strings.Index(p, " ("); i >= 0 {
					p = p[:i] + of + p[i:]
				} else {
					p += of
				}
			}
		}
		parts = append(parts, p)
	}
	if udpTold {
		parts[len(parts)-1] += udpAnswer(r, true)
	}
	for _, w := range r.wire {
		if strings.HasPrefix(w, "window update") && hasPrefix(r.parts, "window update") {
			w = strings.TrimPrefix(w, "window update ")
		}
		parts = append(parts, w)
	}
	if r.fi.kind == kindTCP && len(r.parts) == 0 && !r.dropped {
		a.stats.unexplained++
		parts = append(parts, "no engine event")
	}
	return strings.Join(parts, "; ")
}

// isRequest reports whether r is an ARP request or ICMP echo request,
// which the stack answers if it is for one of its addresses.
func (r *record) isRequest() bool {
	switch r.fi.kind {
	case kindARP:
		return header.ARPOp(r.fi.op) == header.ARPRequest
	case kindICMPv4:
		return header.ICMPv4Type(r.fi.op) == header.ICMPv4Echo
	case kindICMPv6:
		t := header.ICMPv6Type(r.fi.op)
		return t == header.ICMPv6EchoRequest
	}
	return false
}

func hasPrefix(ps []part, p string) bool {
	for _, s := range ps {
		if strings.HasPrefix(s.text, p) {
			return true
		}
	}
	return false
}

// pairReply ties an ARP or ICMP echo reply to its request in the window,
// and says on the request what the stack did with it. A reply the fault
// lost on its way in never reached the stack, which still waits for one
// (ARP asks again, ping counts it lost): it answers nothing, and the
// request, still open to a reply that arrives, says it was lost.
func (a *annotator) pairReply(r *record) {
	if r.fi.quotedUDP {
		if r.fi.portUnreachable() {
			a.pairPortUnreachable(r)
		}
		return
	}
	var isReply func(req *record) bool
	switch r.fi.kind {
	case kindARP:
		if header.ARPOp(r.fi.op) != header.ARPReply {
			return
		}
		isReply = func(q *record) bool {
			return q.fi.kind == kindARP && header.ARPOp(q.fi.op) == header.ARPRequest && q.fi.dst == r.fi.src && q.fi.src == r.fi.dst
		}
	case kindICMPv4:
		if header.ICMPv4Type(r.fi.op) != header.ICMPv4EchoReply {
			return
		}
		isReply = func(q *record) bool {
			return q.fi.kind == kindICMPv4 && header.ICMPv4Type(q.fi.op) == header.ICMPv4Echo && q.fi.ident == r.fi.ident && q.fi.seqn == r.fi.seqn
		}
	case kindICMPv6:
		switch header.ICMPv6Type(r.fi.op) {
		case header.ICMPv6EchoReply:
			isReply = func(q *record) bool {
				return q.fi.kind == kindICMPv6 && header.ICMPv6Type(q.fi.op) == header.ICMPv6EchoRequest && q.fi.ident == r.fi.ident && q.fi.seqn == r.fi.seqn
			}
		case header.ICMPv6NeighborAdvert:
			isReply = func(q *record) bool {
				return q.fi.kind == kindICMPv6 && header.ICMPv6Type(q.fi.op) == header.ICMPv6NeighborSolicit && q.fi.quoted.Local.Addr() == r.fi.quoted.Local.Addr()
			}
		default:
			return
		}
	default:
		return
	}
	live := a.live()
	for i := len(live) - 1; i >= 0; i-- {
		q := live[i]
		if q.isNote() || q.dir == r.dir || q.answered || !isReply(q) {
			continue
		}
		r.answerNote = " (answers frame " + strconv.FormatUint(q.no, 10) + ")"
		switch {
		case r.lost:
			r.answerNote = " (answers frame " + strconv.FormatUint(q.no, 10) + ", lost)"
			if q.replyLost == 0 {
				q.replyLost = r.no
				q.answerNote = " → reply lost (frame " + strconv.FormatUint(r.no, 10) + ")"
			}
		case r.dir == dirOut:
			q.answered = true
			q.answerNote = " → reply sent (frame " + strconv.FormatUint(r.no, 10) + ")"
		default:
			q.answered = true
			if q.replyLost != 0 {
				q.answerNote += ", answered (frame " + strconv.FormatUint(r.no, 10) + ")"
			} else {
				q.answerNote = " → answered (frame " + strconv.FormatUint(r.no, 10) + ")"
			}
		}
		return
	}
}

// pairPortUnreachable ties an ICMP error quoting a UDP datagram to that
// datagram's frame in the window: the stack's answer to a datagram for no
// port, or the peer's answer to one the stack sent.
func (a *annotator) pairPortUnreachable(r *record) {
	q := r.fi.quoted // the datagram's ends, in its direction
	live := a.live()
	for i := len(live) - 1; i >= 0; i-- {
		d := live[i]
		if d.isNote() || d.dir == r.dir || d.fi.kind != kindUDP || d.icmpFrame != 0 && !d.icmpLost {
			continue
		}
		if netip.AddrPortFrom(d.fi.src, d.fi.udpSrc) != q.Local || netip.AddrPortFrom(d.fi.dst, d.fi.udpDst) != q.Remote {
			continue
		}
		// One the fault lost on its way in never reached the stack: a
		// connected socket was not told ECONNREFUSED.
		d.icmpFrame, d.icmpLost = r.no, r.lost
		r.answerNote = " (answers frame " + strconv.FormatUint(d.no, 10) + ")"
		if r.lost {
			r.answerNote = " (answers frame " + strconv.FormatUint(d.no, 10) + ", lost)"
		}
		return
	}
}

// udpAnswer is what a UDP datagram's comment says of the ICMP error that
// answered it. told: the stack's event is on the frame, and for a datagram
// to no port it says already whether an answer is due.
func udpAnswer(r *record, told bool) string {
	if r.fi.kind != kindUDP {
		return ""
	}
	switch {
	case r.icmpFrame != 0 && told && r.wantICMP:
		return " (frame " + strconv.FormatUint(r.icmpFrame, 10) + ")"
	case r.icmpFrame != 0 && r.icmpLost:
		return " → ICMP port unreachable lost (frame " + strconv.FormatUint(r.icmpFrame, 10) + ")"
	case r.icmpFrame != 0:
		return " → ICMP port unreachable (frame " + strconv.FormatUint(r.icmpFrame, 10) + ")"
	case r.wantICMP:
		return " (but none in the capture: rate limited, or no route back)"
	}
	return ""
}
