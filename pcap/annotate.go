package pcap

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/tapstack/tapstack/stack/tcp"
)

// direction of a frame or of the segment an event is about.
const (
	dirIn  = 1
	dirOut = 2
)

// noteKey finds the annotations of one frame: the segment's direction, its
// connection as the stack names it (Local is the stack's own address, for
// both directions) and its wire key. Outbound state changes that no
// segment caused (a user call, a timer) are filed under the zero SegKey
// with dir outState: they go on the connection's next outbound frame.
type noteKey struct {
	dir  uint8
	conn tcp.ConnID
	key  tcp.SegKey
}

const outState = 3

// annotation is one event, kept small and unformatted: formatting happens
// only when the frame is written.
type annotation struct {
	kind     tcp.EventKind
	send     tcp.SendCause
	attempt  int
	drop     tcp.DropReason
	from, to tcp.State
	detail   string // the cause of a state change not caused by a segment; what became of received text
	seq      uint64 // order of the event among all recorded
}

func (a annotation) String() string {
	switch a.kind {
	case tcp.EventSend:
		if a.attempt > 0 && a.send != tcp.SendKeepalive {
			return a.send.String() + " #" + strconv.Itoa(a.attempt)
		}
		return a.send.String()
	case tcp.EventDrop:
		return "dropped: " + a.drop.String()
	case tcp.EventReceive:
		return a.detail
	case tcp.EventState:
		s := a.from.String() + " → " + a.to.String()
		if a.detail != "" {
			s += " (" + a.detail + ")"
		}
		return s
	}
	return ""
}

// maxPerFrame bounds the annotations kept for one frame; a segment causes
// at most a drop or a few state changes, so more is noise.
const maxPerFrame = 4

type note struct {
	gen uint64
	n   uint8
	a   [maxPerFrame]annotation
}

// notes is the bounded table of annotations waiting for their frame. Its
// size never exceeds len(ring): entries are evicted oldest first.
type notes struct {
	mu      sync.Mutex
	m       map[noteKey]note
	ring    []ringEntry // insertion order; ring[next] is the oldest
	next    int
	gen     uint64
	seq     uint64
	evicted uint64
}

type ringEntry struct {
	k   noteKey
	gen uint64
}

func newNotes(limit int) *notes {
	return &notes{m: make(map[noteKey]note, min(limit, 1024)), ring: make([]ringEntry, limit)}
}

// add files a under k.
func (t *notes) add(k noteKey, a annotation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	a.seq = t.seq
	if n, ok := t.m[k]; ok {
		if int(n.n) < maxPerFrame {
			n.a[n.n] = a
			n.n++
			t.m[k] = n
		}
		return
	}
	// A new entry takes the oldest ring slot, evicting what is still
	// waiting there.
	old := t.ring[t.next]
	if old.gen != 0 {
		if n, ok := t.m[old.k]; ok && n.gen == old.gen {
			delete(t.m, old.k)
			t.evicted++
		}
	}
	t.gen++
	n := note{gen: t.gen, n: 1}
	n.a[0] = a
	t.m[k] = n
	t.ring[t.next] = ringEntry{k: k, gen: t.gen}
	t.next = (t.next + 1) % len(t.ring)
}

// take removes and returns the annotations filed under k, appended to b.
func (t *notes) take(b []annotation, k noteKey) []annotation {
	n, ok := t.m[k]
	if !ok {
		return b
	}
	delete(t.m, k)
	return append(b, n.a[:n.n]...)
}

// forOutbound returns the annotations of an outbound frame of connection c
// with key k: the send itself, preceded by the state changes of c that no
// segment caused and that happened before the send was made (a user's
// Close before its FIN). Frames leave some time after they are made, so a
// later state change stays for a later frame.
func (t *notes) forOutbound(b []annotation, c tcp.ConnID, k tcp.SegKey) []annotation {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) == 0 {
		return b
	}
	sk := noteKey{dir: dirOut, conn: c, key: k}
	send, ok := t.m[sk]
	if !ok {
		return b
	}
	// The send: only the first, if the same segment was made twice
	// before the first copy left.
	first := send.a[0]
	if send.n > 1 {
		copy(send.a[:], send.a[1:send.n])
		send.n--
		t.m[sk] = send
	} else {
		delete(t.m, sk)
	}
	stk := noteKey{dir: outState, conn: c}
	if st, ok := t.m[stk]; ok {
		i := 0
		for ; i < int(st.n) && st.a[i].seq < first.seq; i++ {
			b = append(b, st.a[i])
		}
		switch {
		case i == int(st.n):
			delete(t.m, stk)
		case i > 0:
			copy(st.a[:], st.a[i:st.n])
			st.n -= uint8(i)
			t.m[stk] = st
		}
	}
	return append(b, first)
}

// forInbound returns the annotations of an inbound frame of connection c
// with key k, including drops the engine could not tie to a connection
// (a segment failing validation before demultiplexing).
func (t *notes) forInbound(b []annotation, c tcp.ConnID, k tcp.SegKey) []annotation {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) == 0 {
		return b
	}
	b = t.take(b, noteKey{dir: dirIn, conn: c, key: k})
	return t.take(b, noteKey{dir: dirIn, key: k})
}

func (t *notes) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *notes) evictions() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.evicted
}

// record files ev, if it concerns a frame.
func (t *notes) record(ev tcp.Event) {
	switch ev.Kind {
	case tcp.EventSend:
		t.add(noteKey{dir: dirOut, conn: ev.Conn, key: ev.Key}, annotation{kind: ev.Kind, send: ev.Send, attempt: ev.Attempt})
	case tcp.EventReceive:
		t.add(noteKey{dir: dirIn, conn: ev.Conn, key: ev.Key}, annotation{kind: ev.Kind, detail: ev.Note})
	case tcp.EventDrop:
		if ev.Key == (tcp.SegKey{}) {
			return // nothing on the wire to match: a truncated header
		}
		t.add(noteKey{dir: dirIn, conn: ev.Conn, key: ev.Key}, annotation{kind: ev.Kind, drop: ev.Drop})
	case tcp.EventState:
		a := annotation{kind: ev.Kind, from: ev.From, to: ev.To}
		if ev.Cause.Kind == tcp.CauseSegment && ev.Key != (tcp.SegKey{}) {
			t.add(noteKey{dir: dirIn, conn: ev.Conn, key: ev.Key}, a)
			return
		}
		if ev.To == tcp.Closed || !ev.Conn.Remote.IsValid() {
			// Nothing follows on the wire (TIME-WAIT expiry, an abort
			// whose RST, if any, is its own send; a listener has no
			// frames of its own): do not let it wait for a frame of a
			// later connection on the same 4-tuple.
			return
		}
		a.detail = strings.TrimSpace(ev.Cause.String())
		t.add(noteKey{dir: outState, conn: ev.Conn}, a)
	}
}

// comment joins annotations into one pcapng comment.
func comment(as []annotation) string {
	switch len(as) {
	case 0:
		return ""
	case 1:
		return as[0].String()
	}
	var sb strings.Builder
	for i, a := range as {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(a.String())
	}
	return sb.String()
}

// connOf names a frame's connection from the stack's viewpoint.
func connOf(local, remote netip.AddrPort) tcp.ConnID {
	return tcp.ConnID{Local: local, Remote: remote}
}
