package pcap_test

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// observedPair is newPair that also keeps every event the server's engine
// reported, to compare with what the capture recorded.
func observedPair(t *testing.T, out io.Writer, opts pcap.Options) (*pair, func() []event.Event) {
	t.Helper()
	a, b := tap.Pipe()
	w, err := pcap.New(a, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var evs []event.Event
	p := &pair{capture: w}
	p.server = stack.New(stack.Options{TCP: tcp.Options{TimeWait: 50 * time.Millisecond, Observer: w.Observer(func(ev event.Event) {
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	})}})
	if _, err := p.server.AddNIC(w, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	p.client = stack.New(stack.Options{TCP: tcp.Options{TimeWait: 50 * time.Millisecond}})
	if _, err := p.client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close(); p.client.Close(); p.server.Close() })
	return p, func() []event.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]event.Event(nil), evs...)
	}
}

// Every event the engine reported is in the capture, in order, with the
// fields a plot needs; the frames around them are numbered as before.
func TestEventsRecorded(t *testing.T) {
	var buf bytes.Buffer
	p, observed := observedPair(t, &buf, pcap.Options{})
	echoOnce(t, p, "hello, events\n")
	p.server.Close()
	if err := p.capture.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	want := observed()
	got, err := pcap.ReadEvents(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("capture holds %d events, the engine reported %d", len(got), len(want))
	}
	st := p.capture.EventStats()
	if st.Recorded != uint64(len(want)) || st.Skipped != 0 || st.Blocks == 0 {
		t.Errorf("event stats %+v for %d events", st, len(want))
	}
	// Events of one connection (or listener) reach the observer in the
	// order the engine made them; those of different ones may be
	// delivered concurrently, so the capture and the test's own observer,
	// called one after the other, may see two connections' events
	// interleaved differently. Compare each connection's in order; a
	// listener's queue decisions name the connection but come from the
	// listener's own queue of events.
	key := func(local, remote netip.AddrPort, queue bool) string {
		return fmt.Sprint(local, " ", remote, " ", queue)
	}
	byConn := map[string][]int{}
	for j := range got {
		l, rem := got[j].ConnOf()
		k := key(l, rem, got[j].Kind == "queue")
		byConn[k] = append(byConn[k], j)
	}
	var states []string
	for i, ev := range want {
		k := key(ev.Conn.Local, ev.Conn.Remote, ev.Kind == event.KindQueue)
		if len(byConn[k]) == 0 {
			t.Fatalf("event %d (%v): no more events of its connection in the capture", i, ev)
		}
		// A listener's queue events come from two goroutines: the
		// link's (a connection joins the accept queue) and the user's
		// (Accept takes it), so the two observers may see an add and
		// an accept in either order: a queue event is matched by its
		// text, the others in order.
		at := 0
		if ev.Kind == event.KindQueue {
			for x, jj := range byConn[k] {
				if got[jj].Text == pcap.Describe(ev) {
					at = x
					break
				}
			}
		}
		j := byConn[k][at]
		byConn[k] = slices.Delete(byConn[k], at, at+1)
		r := got[j]
		switch ev.Kind {
		case event.KindSend, event.KindAck, event.KindReceive, event.KindDrop:
			if r.Text != "" {
				t.Errorf("event %d: text %q: its words are on its frame", i, r.Text)
			}
		default:
			if r.Text != pcap.Describe(ev) {
				t.Errorf("event %d: text %q, want %q", i, r.Text, pcap.Describe(ev))
			}
		}
		if r.Kind == "send" && r.Send != ev.Send.String() || r.Kind == "drop" && r.Drop != ev.Drop.String() {
			t.Errorf("event %d: send %q drop %q, want %v", i, r.Send, r.Drop, ev)
		}
		l, rem := r.ConnOf()
		if l != ev.Conn.Local || rem != ev.Conn.Remote {
			t.Errorf("event %d: connection %v-%v, want %v", i, l, rem, ev.Conn)
		}
		if r.Seq != ev.Key.Seq || r.Ack != ev.Key.Ack || event.Flags(r.Flags) != ev.Key.Flags || r.Len != ev.Key.Len {
			t.Errorf("event %d (%v): key %d/%d/%#x/%d, want %+v", i, ev, r.Seq, r.Ack, r.Flags, r.Len, ev.Key)
		}
		if r.Cwnd != ev.Cwnd || r.Ssthresh != ev.Ssthresh || r.Acked != ev.Acked || r.DupAck != ev.DupAck {
			t.Errorf("event %d (%v): cwnd %d ssthresh %d acked %d dup %d", i, ev, r.Cwnd, r.Ssthresh, r.Acked, r.DupAck)
		}
		if r.SRTT != int64(ev.SRTT) || r.RTTVar != int64(ev.RTTVar) || r.InFlight != ev.InFlight {
			t.Errorf("event %d (%v): srtt %d rttvar %d in flight %d", i, ev, r.SRTT, r.RTTVar, r.InFlight)
		}
		if ev.Kind == event.KindAck && ev.Acked > 0 && r.SRTT == 0 {
			t.Errorf("event %d (%v): an ACK of new data without the RTT estimate", i, ev)
		}
		if ev.Kind == event.KindState {
			if r.Kind != "state" || r.From != ev.From.String() || r.To != ev.To.String() {
				t.Errorf("event %d: %+v, want %v", i, r, ev)
			}
			states = append(states, r.From+" → "+r.To)
		}
		if ev.Kind == event.KindQueue && (r.SynQueue != ev.Queue.SynQueueLen || r.AcceptQueueMax != ev.Queue.AcceptQueueLimit) {
			t.Errorf("event %d: queues %+v, want %+v", i, r, ev.Queue)
		}
		if j > 0 && r.Time < got[j-1].Time {
			t.Errorf("event %d recorded before event %d", j, j-1)
		}
	}
	t.Logf("%d events in %d blocks; states %s", len(got), st.Blocks, strings.Join(states, ", "))

	// The blocks are no frames: numbering and comments are as before.
	pkts, err := pcap.ReadAll(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	notes, _ := pcap.ReadNotes(bytes.NewReader(buf.Bytes()))
	if last := pkts[len(pkts)-1].Number; last < len(pkts) || last > len(pkts)+len(notes) {
		t.Errorf("last frame is number %d, with %d frames and %d notes", last, len(pkts), len(notes))
	}
	if _, err := pcaptest.Version(); err != nil {
		t.Log("tshark is not installed: not checking that Wireshark reads the blocks")
		return
	}
	path := filepath.Join(t.TempDir(), "events.pcapng")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	frames, err := pcaptest.Tshark(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != len(pkts)+len(notes) {
		t.Errorf("tshark reads %d records, the capture has %d frames and %d notes", len(frames), len(pkts), len(notes))
	}
}

// Batches are bounded: a long run writes many blocks, none above the
// bound, and a size-limited file loses events rather than frames.
func TestEventsBatchedAndBounded(t *testing.T) {
	var buf bytes.Buffer
	p, observed := observedPair(t, &buf, pcap.Options{})
	for range 20 {
		echoOnce(t, p, strings.Repeat("x", 20000))
	}
	p.server.Close()
	if err := p.capture.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	got, err := pcap.ReadEvents(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	st := p.capture.EventStats()
	if n := len(observed()); len(got) != n || st.Blocks < 2 {
		t.Fatalf("%d events read, %d observed, in %d blocks", len(got), n, st.Blocks)
	}
	if b := blockSizes(buf.Bytes(), 5); b.max > 48<<10 {
		t.Errorf("largest events block %d bytes", b.max)
	}

	var small bytes.Buffer
	p2, _ := observedPair(t, &small, pcap.Options{MaxBytes: 2000})
	echoOnce(t, p2, "hi\n")
	p2.server.Close()
	p2.capture.CloseCapture()
	if int64(small.Len()) > 2000 {
		t.Errorf("a 2000-byte limit wrote %d bytes", small.Len())
	}
	if st := p2.capture.EventStats(); st.Skipped == 0 {
		t.Errorf("a full file lost no events: %+v", st)
	}
}

type sizes struct{ n, max int }

func blockSizes(b []byte, typ uint32) sizes {
	var s sizes
	for len(b) >= 12 {
		t := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		l := int(uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24)
		if l < 12 || l > len(b) {
			break
		}
		if t == typ {
			s.n++
			s.max = max(s.max, l)
		}
		b = b[l:]
	}
	return s
}

// An event that reaches the observer once the capture is closed (the
// stack closed its link before an engine goroutine delivered it) is not
// in the capture: it is counted as lost, as EventStats.Skipped says,
// rather than lost without a trace.
func TestEventsAfterCloseCounted(t *testing.T) {
	a, b := tap.Pipe()
	defer b.Close()
	var buf bytes.Buffer
	w, err := pcap.New(a, &buf, pcap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	obs := w.Observer(nil)
	c := event.ConnID{Local: netip.MustParseAddrPort("192.0.2.1:80"), Remote: netip.MustParseAddrPort("192.0.2.2:40000")}
	obs(event.Event{Kind: event.KindState, Conn: c, From: event.FinWait1, To: event.FinWait2})
	if err := w.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	obs(event.Event{Kind: event.KindState, Conn: c, From: event.FinWait2, To: event.TimeWait})
	if st := w.EventStats(); st.Recorded != 1 || st.Skipped != 1 {
		t.Errorf("event stats %+v, want 1 recorded and 1 lost after the close", st)
	}
	got, err := pcap.ReadEvents(bytes.NewReader(buf.Bytes()))
	if err != nil || len(got) != 1 || got[0].To != "FIN-WAIT-2" {
		t.Errorf("capture holds %+v (%v), want the FIN-WAIT-2 alone", got, err)
	}
}
