package plot

import (
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tapstack/tapstack/pcap"
)

// The page's data: what the capture says, per connection, in the units
// the page draws (seconds since the capture's first record, bytes
// relative to each side's initial sequence number). It is embedded in the
// page as JSON, and tests read it back ([Extract]) to check it against the
// capture.

// Version of the embedded data.
const Version = 1

// Data is everything a page shows.
type Data struct {
	Version   int         `json:"version"`
	Title     string      `json:"title"`
	Start     string      `json:"start"` // the first record's time, RFC 3339
	Frames    int         `json:"frames"`
	Others    int         `json:"others"`    // frames that are not TCP
	Annotated bool        `json:"annotated"` // tapstack's engine events are in the capture
	Commented bool        `json:"commented"` // frames have comments
	Events    int         `json:"events"`
	Conns     []*Conn     `json:"conns"`
	Listeners []*Listener `json:"listeners"`
	Notes     []Note      `json:"notes,omitempty"`
}

// Note is a fact no frame carried (a pcapng custom block of tapstack's).
type Note struct {
	T    float64 `json:"t"`
	Conn string  `json:"conn,omitempty"`
	Text string  `json:"text"`
}

// Conn is one connection: its segments, both flows, both ends' states and
// the engine's series.
type Conn struct {
	Name string `json:"name"`
	// A is the capturing stack's end when the capture says which frames
	// were outbound (tapstack's captures), else the end that sent the
	// first SYN (the client), else the first frame's sender.
	A, B     string   `json:"-"`
	Ends     [2]End   `json:"ends"`
	Start    float64  `json:"start"`
	End      float64  `json:"end"`
	Segs     []Seg    `json:"segs"`
	Flows    [2]Flow  `json:"flows"`
	States   [2][]St  `json:"states"`
	Series   Series   `json:"series"`
	Ladder   []int    `json:"ladder"` // indices into Segs; -1 marks the frames left out
	Notes    []Note   `json:"notes,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// End names one end of a connection and where its states come from.
type End struct {
	Addr   string `json:"addr"`
	Role   string `json:"role"`   // "tapstack", "peer", "client", "server"
	States string `json:"states"` // "engine" (events) or "wire" (inferred from segments)
}

// Seg is one TCP frame of a connection.
type Seg struct {
	No   int        `json:"no"`          // Wireshark's frame number
	T    float64    `json:"t"`           // seconds since the capture's start
	Dir  int        `json:"d,omitempty"` // 0: A to B, 1: B to A
	Seq  int64      `json:"s"`           // relative to the sender's ISN
	Ack  int64      `json:"a,omitempty"` // relative to the receiver's ISN; 0 without ACK
	Len  int        `json:"l,omitempty"`
	Win  int64      `json:"w"` // the advertised window, scaled
	Flag string     `json:"f"` // S, SA, A, PA, FA, R, RA ...
	SACK [][2]int64 `json:"k,omitempty"`
	// Mark is what the segment was: "retx" (a retransmission, a tail
	// loss probe that sends the last segment again included), "probe"
	// (zero window probe, keepalive, tail loss probe of new data), "dup"
	// (a copy the network made of an earlier frame), "rst", or "drop"
	// (an inbound segment the engine discarded). Why is the engine's
	// send cause or drop reason, or what the wire shows ("wire: ...").
	Mark string `json:"m,omitempty"`
	Why  string `json:"y,omitempty"`
	// Drop says the frame was dropped (the capture's verdict): by the
	// engine, or by a fault on the link before it reached its receiver.
	// DropWhy is the engine's reason or the fault's words.
	Drop    bool   `json:"x,omitempty"`
	DropWhy string `json:"z,omitempty"`
	Comment string `json:"c,omitempty"`
}

// Flow is one direction's totals.
type Flow struct {
	From, To string `json:"-"`
	// Bytes is the data the sender sent, each byte once: retransmissions
	// and the SYN's and FIN's sequence numbers are not counted.
	Bytes      int64 `json:"bytes"`
	Segments   int   `json:"segments"`
	Retransmit int   `json:"retx"`
	Drops      int   `json:"drops"`
	Scale      int   `json:"scale"` // window scale in force for this sender's windows, -1 if none
	MSS        int   `json:"mss,omitempty"`
}

// St is a state change of one end.
type St struct {
	T     float64 `json:"t"`
	From  string  `json:"from"` // "" when the capture began after it
	To    string  `json:"to"`
	Cause string  `json:"cause,omitempty"`
	No    int     `json:"no,omitempty"` // the frame that caused or carried it, if known
}

// Series are values over time; each point is [t, value...].
type Series struct {
	// Cwnd: [t, cwnd, ssthresh] from the engine's ACK, recovery and RTO
	// events; ssthresh -1 when unset (infinite).
	Cwnd [][3]float64 `json:"cwnd,omitempty"`
	// InFlight per flow: [t, bytes], SND.NXT - SND.UNA as the wire shows
	// it, or the engine's pipe when its events carry it; none for the
	// peer's flow in a tapstack capture, taken at its receiver.
	InFlight       [2][][2]float64 `json:"inflight"`
	InFlightEngine bool            `json:"inflightEngine,omitempty"`
	// RTT per flow, from the wire: [t, sample ms, srtt ms, rto ms], RFC
	// 6298 over samples taken as Karn's algorithm allows; or the engine's
	// SRTT when its events carry it. A tapstack capture has none for the
	// peer's flow: it is taken at the receiver, where a segment's ACK
	// follows it by the receiver's ACK delay, not a round trip.
	RTT       [2][][4]float64 `json:"rtt"`
	RTTEngine bool            `json:"rttEngine,omitempty"`
	RTOFired  [][2]float64    `json:"rtoFired,omitempty"` // [t, backed-off RTO ms]
	Recovery  []Mark          `json:"recovery,omitempty"`
	MinRTOms  float64         `json:"minRto"`
}

// Mark is an instant worth a line on a chart.
type Mark struct {
	T    float64 `json:"t"`
	Text string  `json:"text"`
}

// Listener is a listening socket's queues over time.
type Listener struct {
	Addr string `json:"addr"`
	// Points: [t, SYN queue, its limit, accept queue, its limit] after
	// each decision; Decisions the same instants, named.
	Points    [][5]float64 `json:"queues"`
	Decisions []Mark       `json:"decisions"`
	States    []St         `json:"states,omitempty"`
}

// build makes the page's data from a capture read by readCapture.
func build(c *capture, title string) *Data {
	d := &Data{
		Version:   Version,
		Title:     title,
		Others:    c.others,
		Frames:    len(c.frames) + c.others,
		Annotated: len(c.events) > 0,
		Commented: c.commented,
		Events:    len(c.events),
		Conns:     []*Conn{},
		Listeners: []*Listener{},
	}
	var t0 time.Time
	for _, f := range c.frames {
		if t0.IsZero() || f.t.Before(t0) {
			t0 = f.t
		}
	}
	for _, e := range c.events {
		if t := time.Unix(0, e.Time); t0.IsZero() || t.Before(t0) {
			t0 = t
		}
	}
	if !t0.IsZero() {
		d.Start = t0.UTC().Format(time.RFC3339Nano)
	}
	rel := func(t time.Time) float64 { return round6(t.Sub(t0).Seconds()) }
	relNS := func(ns int64) float64 { return rel(time.Unix(0, ns)) }

	conns := splitConns(c)
	// Engine events, by connection (local, remote): an event belongs to
	// the last instance of its 4-tuple that began before it.
	byTuple := map[[2]string][]*connBuild{}
	for _, cb := range conns {
		k := [2]string{cb.local.String(), cb.remote.String()}
		byTuple[k] = append(byTuple[k], cb)
	}
	listeners := map[string]*Listener{}
	var lorder []string
	for i := range c.events {
		e := &c.events[i]
		// A listener's decisions name the connection the segment was
		// for; they are the listener's (its local address).
		if e.Remote == "" || e.Kind == "queue" {
			// One listener per port: its own events name the address
			// it is bound to (0.0.0.0:80), its decisions the address a
			// segment came to.
			lp, _ := netip.ParseAddrPort(e.Local)
			key := strconv.Itoa(int(lp.Port()))
			l := listeners[key]
			if l == nil {
				l = &Listener{Addr: e.Local}
				listeners[key] = l
				lorder = append(lorder, key)
			}
			if e.Remote == "" {
				l.Addr = e.Local
			}
			addListenerEvent(l, e, relNS(e.Time))
			continue
		}
		cands := byTuple[[2]string{e.Local, e.Remote}]
		at := time.Unix(0, e.Time).Add(eventSlack)
		var owner *connBuild
		for _, cb := range cands {
			if owner == nil || !cb.first.After(at) {
				owner = cb
			}
		}
		if e.Kind == "state" && e.From != "CLOSED" && owner != nil && owner.engineState() != e.From {
			// A change continues the states of its own instance: the
			// SYN that reopens a 4-tuple in TIME-WAIT (RFC 6191) ends
			// the old instance's TIME-WAIT as the new one begins.
			for i := len(cands) - 1; i >= 0; i-- {
				if cb := cands[i]; cb.engineState() == e.From && !cb.first.After(at) {
					owner = cb
					break
				}
			}
		}
		if owner != nil {
			owner.events = append(owner.events, e)
			if e.Kind == "state" {
				owner.state = e.To
			}
		}
	}
	for _, a := range lorder {
		d.Listeners = append(d.Listeners, listeners[a])
	}
	for _, cb := range conns {
		d.Conns = append(d.Conns, cb.finish(rel, relNS))
	}
	for _, n := range c.notes {
		note := Note{T: rel(n.Time), Conn: n.Conn, Text: n.Text}
		// The last instance of the connection that began before it.
		matched := false
		for i := len(d.Conns) - 1; i >= 0 && n.Conn != ""; i-- {
			if cn := d.Conns[i]; n.Conn == cn.A+"-"+cn.B && note.T >= cn.Start-eventSlack.Seconds() {
				cn.Notes = append(cn.Notes, note)
				matched = true
				break
			}
		}
		if !matched {
			d.Notes = append(d.Notes, note)
		}
	}
	return d
}

// eventSlack is how long before its connection's first frame an event
// may come: the engine reports a send just before the frame passes the
// link.
const eventSlack = 50 * time.Millisecond

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// connBuild gathers one connection while the capture is read.
type connBuild struct {
	a, b          netip.AddrPort // A and B as Conn defines them
	local, remote netip.AddrPort // the capturing stack's view, for events (directed captures)
	directed      bool
	frames        []*frame
	events        []*pcap.EventRecord
	first         time.Time
	closed        bool // both FINs or a RST seen: a new SYN is a new connection
	fins          [2]bool
	state         string // the engine's state after the events so far; "" before any
}

// engineState is the state the engine's events left the connection in.
func (cb *connBuild) engineState() string {
	if cb.state == "" {
		return "CLOSED"
	}
	return cb.state
}

// splitConns groups TCP frames by 4-tuple, a new connection starting
// with a SYN after the previous one on the same 4-tuple ended.
func splitConns(c *capture) []*connBuild {
	type tuple struct{ x, y netip.AddrPort }
	canon := func(s, d netip.AddrPort) tuple {
		if s.Addr().Less(d.Addr()) || (s.Addr() == d.Addr() && s.Port() < d.Port()) {
			return tuple{s, d}
		}
		return tuple{d, s}
	}
	open := map[tuple]*connBuild{}
	var out []*connBuild
	for i := range c.frames {
		f := &c.frames[i]
		k := canon(f.src, f.dst)
		cb := open[k]
		synOnly := f.has(flagSYN) && !f.has(flagACK)
		if cb != nil && cb.closed && synOnly {
			cb = nil
		}
		if cb == nil {
			cb = &connBuild{first: f.t, directed: c.directed}
			switch {
			case f.dir == dirOut:
				cb.a, cb.b = f.src, f.dst
			case f.dir == dirIn:
				cb.a, cb.b = f.dst, f.src
			case f.has(flagSYN) && f.has(flagACK):
				cb.a, cb.b = f.dst, f.src
			default:
				cb.a, cb.b = f.src, f.dst
			}
			cb.local, cb.remote = cb.a, cb.b
			open[k] = cb
			out = append(out, cb)
		}
		cb.frames = append(cb.frames, f)
		d := 0
		if f.src != cb.a {
			d = 1
		}
		if f.has(flagRST) && !f.dropped {
			cb.closed = true
		}
		if f.has(flagFIN) && !f.dropped {
			cb.fins[d] = true
			if cb.fins[0] && cb.fins[1] {
				cb.closed = true
			}
		}
	}
	return out
}

// seqTrack unwraps one direction's 32-bit sequence numbers into
// bytes relative to its ISN.
type seqTrack struct {
	set  bool
	isn  uint32
	last uint32
	rel  int64
}

func (s *seqTrack) init(isn uint32) {
	if !s.set {
		s.set, s.isn, s.last, s.rel = true, isn, isn, 0
	}
}

// of returns v relative to the ISN, taking the unwrapped value nearest
// the last one seen.
func (s *seqTrack) of(v uint32) int64 {
	if !s.set {
		s.init(v)
	}
	r := s.rel + int64(int32(v-s.last))
	s.last, s.rel = v, r
	return r
}

func (s *seqTrack) peek(v uint32) int64 {
	if !s.set {
		return 0
	}
	return s.rel + int64(int32(v-s.last))
}

// flags renders TCP flags as tcpdump does: S, F, R, P, then A as ".".
func flagString(fl uint8) string {
	var b strings.Builder
	if fl&flagSYN != 0 {
		b.WriteByte('S')
	}
	if fl&flagFIN != 0 {
		b.WriteByte('F')
	}
	if fl&flagRST != 0 {
		b.WriteByte('R')
	}
	if fl&flagPSH != 0 {
		b.WriteByte('P')
	}
	if fl&flagACK != 0 {
		b.WriteByte('.')
	}
	return b.String()
}

// evKey is an event's segment, to match with its frame.
type evKey struct {
	out      bool
	seq, ack uint32
	flags    uint8
	length   int
}

func (cb *connBuild) finish(rel func(time.Time) float64, relNS func(int64) float64) *Conn {
	c := &Conn{A: cb.a.String(), B: cb.b.String()}
	c.Name = c.A + " ⇄ " + c.B
	engine := len(cb.events) > 0
	switch {
	case cb.directed:
		c.Ends[0] = End{Addr: c.A, Role: "tapstack", States: "wire"}
		c.Ends[1] = End{Addr: c.B, Role: "peer", States: "wire"}
		if engine {
			c.Ends[0].States = "engine"
		}
	default:
		c.Ends[0] = End{Addr: c.A, Role: "client", States: "wire"}
		c.Ends[1] = End{Addr: c.B, Role: "server", States: "wire"}
		if len(cb.frames) > 0 && !(cb.frames[0].has(flagSYN) && !cb.frames[0].has(flagACK)) {
			c.Ends[0].Role, c.Ends[1].Role = "A", "B"
		}
	}
	// Send and drop events by segment, in order, for their frames.
	sends := map[evKey][]*pcap.EventRecord{}
	for _, e := range cb.events {
		switch e.Kind {
		case "send":
			k := evKey{true, e.Seq, e.Ack, e.Flags, e.Len}
			sends[k] = append(sends[k], e)
		case "drop":
			k := evKey{false, e.Seq, e.Ack, e.Flags, e.Len}
			sends[k] = append(sends[k], e)
		}
	}
	// take gives a frame at time t the first event for its segment,
	// leaving events more than a second older behind: they met no frame
	// (the pcap writer counts them as unmatched).
	take := func(k evKey, t time.Time) *pcap.EventRecord {
		es := sends[k]
		for len(es) > 0 && time.Unix(0, es[0].Time).Before(t.Add(-time.Second)) {
			es = es[1:]
		}
		sends[k] = es
		if len(es) == 0 || time.Unix(0, es[0].Time).After(t.Add(time.Second)) {
			return nil
		}
		sends[k] = es[1:]
		return es[0]
	}
	// ISNs and window scales from the SYNs.
	var seqs [2]seqTrack
	var ws [2]int8 = [2]int8{-1, -1}
	var synSeen [2]bool
	for _, f := range cb.frames {
		d := cb.dirOf(f)
		if f.has(flagSYN) && !synSeen[d] {
			synSeen[d] = true
			seqs[d].init(f.seq)
			ws[d] = f.ws
			if f.mss > 0 {
				c.Flows[d].MSS = f.mss
			}
		}
	}
	scaled := ws[0] >= 0 && ws[1] >= 0 // RFC 7323 2.2: both SYNs carried it
	for d := range 2 {
		c.Flows[d].Scale = -1
		if scaled {
			c.Flows[d].Scale = int(ws[d])
		}
	}
	if !scaled && !(synSeen[0] && synSeen[1]) && slices.ContainsFunc(cb.frames, func(f *frame) bool { return !f.has(flagSYN | flagRST) }) {
		// Without both SYNs whether the windows are scaled, and by
		// what, is unknown: the page draws the headers' fields.
		c.Warnings = append(c.Warnings, "The capture does not have both SYNs: the window scale (RFC 7323 2.2) is unknown, so the windows drawn are the headers' fields, unscaled, and sequence numbers count from each side's first frame.")
	}

	var maxEnd [2]int64 // highest sequence number sent, per direction
	var sent [2]bool
	// The first and the last data byte sent, per direction, relative:
	// the first is the one after the SYN when the capture has it.
	var dataLo, dataHi [2]int64
	var hasData [2]bool
	var una [2]int64 // highest ACK seen for direction d's data
	var unaSet [2]bool
	rtt := [2]*rttEstimator{newRTT(), newRTT()}
	copies := map[copyKey]int{} // segments seen, to their frame numbers
	for _, f := range cb.frames {
		d := cb.dirOf(f)
		o := 1 - d
		s := Seg{No: f.no, T: rel(f.t), Dir: d, Len: f.plen, Flag: flagString(f.flags), Comment: f.comment, Drop: f.dropped}
		s.Seq = seqs[d].of(f.seq)
		if f.has(flagACK) {
			s.Ack = seqs[o].peek(f.ack)
			if !seqs[o].set {
				// The other side's ISN is unknown (the capture began
				// mid-connection): count from this ACK.
				seqs[o].init(f.ack)
			}
		}
		s.Win = int64(f.win)
		if scaled && !f.has(flagSYN) {
			s.Win <<= uint(ws[d])
		}
		for _, b := range f.sack {
			s.SACK = append(s.SACK, [2]int64{seqs[o].peek(b[0]), seqs[o].peek(b[1])})
		}
		end := s.Seq + int64(f.plen)
		if f.has(flagSYN) || f.has(flagFIN) {
			end++
		}
		// What the engine said about this frame.
		engineSaid := false
		// Every outbound segment has its send event; an inbound one has a
		// drop event only if the capture marks it dropped (the pcap
		// writer matched them; a retransmission has its original's key).
		if out := f.dir == dirOut; cb.directed && (out || f.dropped) {
			if e := take(evKey{out, f.seq, f.ack, f.flags, f.plen}, f.t); e != nil {
				engineSaid = true
				if out {
					// A plain send's cause is in its comment already.
					if s.Mark = sendMark(e.Send, e.Attempt); s.Mark != "" {
						s.Why = e.Send
					}
				} else {
					s.Mark, s.Why = "drop", e.Drop
					s.DropWhy = e.Drop
				}
			}
		}
		if f.dropped && s.DropWhy == "" {
			s.DropWhy = faultText(f.comment)
		}
		// What the wire shows, for segments no event named: text or
		// SYN/FIN below the highest sequence number sent is sent again,
		// unless the network copied it.
		key := copyKeyOf(f, d)
		if s.Mark == "" && !engineSaid && sent[d] && end > s.Seq && end <= maxEnd[d] {
			if no, ok := copies[key]; ok && f.copyable() {
				s.Mark, s.Why = "dup", "wire: a copy of frame "+strconv.Itoa(no)
			} else {
				s.Mark, s.Why = "retx", "wire: sent before"
			}
		}
		if end > s.Seq && f.copyable() {
			if _, ok := copies[key]; !ok {
				copies[key] = f.no
			}
		}
		if s.Mark == "" && f.has(flagRST) {
			s.Mark, s.Why = "rst", "RST"
		}
		if s.Mark == "" && f.plen <= 1 && unaSet[d] && s.Seq == una[d]-1 && !f.has(flagSYN|flagFIN|flagRST) {
			s.Mark, s.Why = "probe", "wire: SEQ = SND.UNA-1 (zero window probe or keepalive)"
		}
		fl := &c.Flows[d]
		fl.Segments++
		if s.Mark == "retx" {
			fl.Retransmit++
		}
		if s.Drop {
			fl.Drops++
		}
		if !f.dropped || f.dir == dirOut {
			// A frame dropped on its way in never reached the stack;
			// one dropped on its way out was still sent.
			if end > s.Seq || !sent[d] {
				if !sent[d] || end > maxEnd[d] {
					maxEnd[d] = end
				}
				sent[d] = true
			}
			if f.has(flagACK) && (!unaSet[o] || s.Ack > una[o]) {
				una[o], unaSet[o] = s.Ack, true
			}
		}
		if f.plen > 0 {
			// A frame lost on its way was still sent: its bytes count
			// (once) whatever became of them.
			lo, hi := s.Seq, s.Seq+int64(f.plen)
			if f.has(flagSYN) {
				lo, hi = lo+1, hi+1
			}
			if synSeen[d] {
				lo = 1
			}
			if !hasData[d] {
				dataLo[d], dataHi[d], hasData[d] = lo, hi, true
			}
			dataLo[d], dataHi[d] = min(dataLo[d], lo), max(dataHi[d], hi)
			fl.Bytes = dataHi[d] - dataLo[d]
		}
		// Series from the wire.
		if !f.dropped || f.dir == dirOut {
			if end > s.Seq {
				rtt[d].sent(s.T, s.Seq, end, s.Mark == "retx")
			}
			if f.has(flagACK) {
				rtt[o].acked(s.T, s.Ack)
			}
		}
		for dd := range 2 {
			if sent[dd] && unaSet[dd] {
				v := float64(max(0, maxEnd[dd]-una[dd]))
				pts := c.Series.InFlight[dd]
				if n := len(pts); n == 0 || pts[n-1][1] != v {
					c.Series.InFlight[dd] = append(pts, [2]float64{s.T, v})
				}
			}
		}
		c.Segs = append(c.Segs, s)
	}
	for d := range 2 {
		c.Series.RTT[d] = rtt[d].points
	}
	if cb.directed {
		// tapstack's capture point is its own end: from the peer's
		// segment to the ACK is tapstack's ACK delay (a delayed ACK's
		// 40 ms), no round trip, and the peer's RTT is out of sight;
		// so are the peer's bytes in the network, its SND.NXT −
		// SND.UNA: what the capture sees is what tapstack has not yet
		// acknowledged.
		c.Series.RTT[1] = nil
		c.Series.InFlight[1] = nil
	}
	c.Series.MinRTOms = minRTO.Seconds() * 1000

	// Engine series and the capturing end's states.
	var engineStates []St
	var engineInflight [][2]float64
	var engineRTT [][4]float64
	for _, e := range cb.events {
		t := relNS(e.Time)
		switch e.Kind {
		case "ack", "recovery", "rto":
			if e.Cwnd > 0 {
				ss := float64(e.Ssthresh)
				if e.Ssthresh == 0 || e.Ssthresh >= 1<<30 {
					ss = -1
				}
				c.Series.Cwnd = append(c.Series.Cwnd, [3]float64{t, float64(e.Cwnd), ss})
			}
			if e.InFlight > 0 || (e.Kind == "ack" && e.SRTT > 0) {
				engineInflight = append(engineInflight, [2]float64{t, float64(e.InFlight)})
			}
			if e.SRTT > 0 {
				engineRTT = append(engineRTT, [4]float64{t, -1, float64(e.SRTT) / 1e6, float64(e.RTO) / 1e6})
			}
		}
		switch e.Kind {
		case "recovery", "pmtu":
			c.Series.Recovery = append(c.Series.Recovery, Mark{T: t, Text: e.Text})
		case "rto":
			c.Series.RTOFired = append(c.Series.RTOFired, [2]float64{t, float64(e.RTO) / 1e6})
		case "state":
			st := St{T: t, From: e.From, To: e.To, Cause: shortCause(e.Cause)}
			engineStates = append(engineStates, st)
		}
	}
	if len(engineInflight) > 0 {
		c.Series.InFlight[0], c.Series.InFlightEngine = engineInflight, true
	}
	if len(engineRTT) > 0 {
		c.Series.RTT[0], c.Series.RTTEngine = engineRTT, true
	}
	wire := inferStates(c.Segs)
	c.States[1] = wire[1]
	if len(engineStates) > 0 {
		c.States[0] = engineStates
		attachStateFrames(c.States[0], c.Segs)
	} else {
		c.States[0] = wire[0]
	}
	if len(c.Segs) > 0 {
		c.Start, c.End = c.Segs[0].T, c.Segs[len(c.Segs)-1].T
	}
	for _, st := range c.States[0] {
		c.Start, c.End = min(c.Start, st.T), max(c.End, st.T)
	}
	c.Ladder = ladder(len(c.Segs))
	return c
}

// copyKey is what a copy of a segment made by the network (a duplicating
// link, a capture on two interfaces) has in common with it, and a
// retransmission does not: the sender builds a retransmission anew, with
// the next IPv4 identification and the timestamp clock's TSval (RFC 7323
// 3.2: the current clock; Linux's __tcp_retransmit_skb).
type copyKey struct {
	dir          int
	seq, ack     uint32
	flags        uint8
	win          uint16
	plen         int
	ipID         uint16
	tsVal, tsEcr uint32
}

func copyKeyOf(f *frame, d int) copyKey {
	return copyKey{d, f.seq, f.ack, f.flags, f.win, f.plen, f.ipID, f.tsVal, f.tsEcr}
}

// copyable says whether a copy of f can be told from a retransmission:
// by a nonzero IPv4 identification (an IPv4 sender that leaves it 0
// under DF would give a retransmission the same), or by the timestamps.
func (f *frame) copyable() bool { return f.v4 && f.ipID != 0 || f.ts }

func (cb *connBuild) dirOf(f *frame) int {
	if f.src == cb.a && f.dst == cb.b {
		return 0
	}
	return 1
}

// segmentCause matches the tcpdump-style line the engine gives as the
// cause of a change a segment made.
var segmentCause = regexp.MustCompile(`^\S+ > \S+: Flags \[([^\]]*)\]`)

// shortCause shortens a segment's line to its flags: the page names the
// frame, whose sequence numbers it shows relative to the ISN.
func shortCause(c string) string {
	if m := segmentCause.FindStringSubmatch(c); m != nil {
		return "segment [" + m[1] + "]"
	}
	return c
}

// sendMark classes an engine send cause. A tail loss probe sends new
// data (attempt 0) when it can, else the last segment again: that one is a
// retransmission (RFC 8985 7.3), as the engine counts it.
func sendMark(cause string, attempt int) string {
	switch {
	case strings.Contains(cause, "retransmit"), cause == "tail loss probe" && attempt > 0:
		return "retx"
	case cause == "window probe", cause == "keepalive", cause == "tail loss probe":
		return "probe"
	case cause == "RST":
		return "rst"
	}
	return ""
}

// faultText picks what a fault did from a frame's comment, for a frame
// dropped without an engine event: "fault: dropped (loss 5%, seed 7, #3)".
func faultText(comment string) string {
	for _, p := range strings.Split(comment, "; ") {
		if strings.HasPrefix(p, "fault: ") || strings.HasPrefix(p, "dropped") {
			return p
		}
	}
	return "dropped"
}

// attachStateFrames names, for each engine state change, the frame that
// caused or carried it when the capture's comments say so.
func attachStateFrames(sts []St, segs []Seg) {
	j := 0
	for i := range sts {
		needle := sts[i].From + " → " + sts[i].To
		for k := j; k < len(segs); k++ {
			if strings.Contains(segs[k].Comment, needle) && !strings.Contains(segs[k].Comment, "earlier ") {
				sts[i].No = segs[k].No
				j = k
				break
			}
		}
	}
}

// ladder picks the frames of the ladder diagram: the first and the last
// ladderEach of the connection.
const ladderEach = 12

func ladder(n int) []int {
	var out []int
	if n <= 2*ladderEach+1 {
		for i := range n {
			out = append(out, i)
		}
		return out
	}
	for i := range ladderEach {
		out = append(out, i)
	}
	out = append(out, -1)
	for i := n - ladderEach; i < n; i++ {
		out = append(out, i)
	}
	return out
}

func addListenerEvent(l *Listener, e *pcap.EventRecord, t float64) {
	switch e.Kind {
	case "queue":
		l.Points = append(l.Points, [5]float64{t, float64(e.SynQueue), float64(e.SynQueueMax), float64(e.AcceptQueue), float64(e.AcceptQueueMax)})
		l.Decisions = append(l.Decisions, Mark{T: t, Text: e.Text})
	case "state":
		l.States = append(l.States, St{T: t, From: e.From, To: e.To, Cause: e.Cause})
	}
}

// minRTO is Linux's TCP_RTO_MIN, which the wire estimate uses as the
// engine does (RFC 6298 2.4 asks for one second).
const minRTO = 200 * time.Millisecond

// rttEstimator takes RTT samples from the wire for one flow, as a sender
// at the capture point would: the time from a segment's first
// transmission to the first ACK that covers it, no sample from a range
// sent twice (Karn's algorithm, RFC 6298 3), and smooths them as RFC
// 6298 2 does.
type rttEstimator struct {
	q          []sentRange // sent and not yet acknowledged, by end
	srtt, var_ float64
	has        bool
	points     [][4]float64
}

type sentRange struct {
	t          float64
	start, end int64
	retx       bool
}

// maxRTTQueue bounds the ranges waiting for their ACK.
const maxRTTQueue = 1 << 16

func newRTT() *rttEstimator { return &rttEstimator{} }

func (r *rttEstimator) sent(t float64, start, end int64, retx bool) {
	if retx {
		for i := range r.q {
			if r.q[i].end > start && r.q[i].start < end {
				r.q[i].retx = true
			}
		}
		return
	}
	if n := len(r.q); n > 0 && end <= r.q[n-1].end {
		return
	}
	if len(r.q) == maxRTTQueue {
		r.q = r.q[1:]
	}
	r.q = append(r.q, sentRange{t: t, start: start, end: end})
}

func (r *rttEstimator) acked(t float64, ack int64) {
	i := 0
	var last *sentRange
	karn := false
	for i < len(r.q) && r.q[i].end <= ack {
		last = &r.q[i]
		karn = karn || r.q[i].retx
		i++
	}
	if last == nil {
		return
	}
	sample := (t - last.t) * 1000
	r.q = r.q[i:]
	if karn || sample < 0 {
		return
	}
	// RFC 6298 2.2 and 2.3: alpha 1/8, beta 1/4, K 4.
	if !r.has {
		r.srtt, r.var_, r.has = sample, sample/2, true
	} else {
		r.var_ = 0.75*r.var_ + 0.25*math.Abs(r.srtt-sample)
		r.srtt = 0.875*r.srtt + 0.125*sample
	}
	rto := max(r.srtt+4*r.var_, minRTO.Seconds()*1000)
	r.points = append(r.points, [4]float64{t, round3(sample), round3(r.srtt), round3(rto)})
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// inferStates reads both ends' states off the segments, as RFC 9293's
// state diagram (3.3.2) says each segment moves its sender and receiver,
// seen from the capture point. A segment dropped (lost on the link, or
// discarded by the receiving engine) moved its sender when it left, and
// its receiver not at all.
func inferStates(segs []Seg) [2][]St {
	var out [2][]St
	state := [2]string{"CLOSED", "CLOSED"}
	var finSeq [2]int64 // sequence number after each side's FIN
	var finSent, finRcvd, finAcked [2]bool
	set := func(e int, to, cause string, s *Seg) {
		if state[e] == to {
			return
		}
		out[e] = append(out[e], St{T: s.T, From: state[e], To: to, Cause: "wire: " + cause, No: s.No})
		state[e] = to
	}
	if len(segs) > 0 && !strings.ContainsAny(segs[0].Flag, "SR") {
		// The capture began after the handshake: both ends were
		// synchronized (3.3.2), in a state it cannot tell; the data
		// and ACKs say ESTABLISHED, the FINs to come what follows.
		for e := range 2 {
			out[e] = append(out[e], St{T: segs[0].T, To: "ESTABLISHED", Cause: "wire: the capture began after the handshake", No: segs[0].No})
			state[e] = "ESTABLISHED"
		}
	}
	for i := range segs {
		s := &segs[i]
		arrived := !s.Drop
		x, y := s.Dir, 1-s.Dir // sender, receiver
		syn, ack, fin, rst := strings.Contains(s.Flag, "S"), strings.Contains(s.Flag, "."), strings.Contains(s.Flag, "F"), strings.Contains(s.Flag, "R")
		switch {
		case rst:
			set(x, "CLOSED", "sent RST", s)
			if arrived {
				set(y, "CLOSED", "RST received", s)
			}
			continue
		case syn && !ack:
			set(x, "SYN-SENT", "sent SYN", s)
		case syn && ack:
			if state[x] == "CLOSED" {
				state[x] = "LISTEN" // it answered a SYN: it was listening
			}
			set(x, "SYN-RECEIVED", "sent SYN-ACK", s)
			if arrived && state[y] == "SYN-SENT" {
				set(y, "ESTABLISHED", "SYN-ACK received", s)
			}
		}
		if ack && arrived {
			// The receiver learns its SYN or FIN was acknowledged.
			if state[y] == "SYN-RECEIVED" && !syn {
				set(y, "ESTABLISHED", "its SYN-ACK acknowledged", s)
			}
			if finSent[y] && s.Ack >= finSeq[y] && !finAcked[y] {
				finAcked[y] = true
				switch state[y] {
				case "FIN-WAIT-1":
					set(y, "FIN-WAIT-2", "its FIN acknowledged", s)
				case "CLOSING":
					set(y, "TIME-WAIT", "its FIN acknowledged", s)
				case "LAST-ACK":
					set(y, "CLOSED", "its FIN acknowledged", s)
				}
			}
		}
		if fin && !finSent[x] {
			finSent[x] = true
			finSeq[x] = s.Seq + int64(s.Len) + 1
			if state[x] == "CLOSE-WAIT" {
				set(x, "LAST-ACK", "sent FIN", s)
			} else {
				set(x, "FIN-WAIT-1", "sent FIN", s)
			}
		}
		if fin && arrived && !finRcvd[y] {
			finRcvd[y] = true
			switch state[y] {
			case "ESTABLISHED", "SYN-RECEIVED":
				set(y, "CLOSE-WAIT", "FIN received", s)
			case "FIN-WAIT-1":
				set(y, "CLOSING", "FIN received", s)
			case "FIN-WAIT-2":
				set(y, "TIME-WAIT", "FIN received", s)
			}
		}
	}
	return out
}
