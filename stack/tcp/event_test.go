package tcp_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// events records every event, of any kind.
type events struct {
	mu  sync.Mutex
	all []event.Event
}

func (r *events) observe(ev event.Event) {
	r.mu.Lock()
	r.all = append(r.all, ev)
	r.mu.Unlock()
}

func (r *events) of(kind event.Kind) []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Event
	for _, ev := range r.all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func (r *events) reset() {
	r.mu.Lock()
	r.all = nil
	r.mu.Unlock()
}

type step struct {
	from, to event.State
	cause    event.CauseKind
}

// TestLifeEvents: the exact state events of a whole connection life, for
// each way to end it, each reported once with its cause (RFC 9293 3.3.2,
// figure 5), and the send causes of the passive-close life.
func TestLifeEvents(t *testing.T) {
	const seg, timer, user = event.CauseSegment, event.CauseTimer, event.CauseUser
	open := []step{{event.Closed, event.SynReceived, seg}, {event.SynReceived, event.Established, seg}}
	for _, tc := range []struct {
		name string
		life func(p *tcptest.Peer, ep *tcp.Endpoint)
		want []step
	}{
		{"passive close", func(p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hi")})
			p.Advance(time.Second) // nothing: the first data had a quick ACK
			ep.Read(make([]byte, 8))
			p.Inject(tcptest.Seg{Flags: "F.", Seq: 3, Ack: 1})
			ep.Write([]byte("bye"))
			ep.Close()
			p.Inject(tcptest.Seg{Flags: ".", Seq: 4, Ack: 5})
		}, append(open, step{event.Established, event.CloseWait, seg}, step{event.CloseWait, event.LastAck, user}, step{event.LastAck, event.Closed, seg})},
		{"active close", func(p *tcptest.Peer, ep *tcp.Endpoint) {
			ep.Close()
			p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 2})
			p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 2})
			p.Advance(p.TCP.Options().TimeWait)
		}, append(open, step{event.Established, event.FinWait1, user}, step{event.FinWait1, event.FinWait2, seg},
			step{event.FinWait2, event.TimeWait, seg}, step{event.TimeWait, event.Closed, timer})},
		{"simultaneous close", func(p *tcptest.Peer, ep *tcp.Endpoint) {
			ep.Close()
			p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 1})
			p.Inject(tcptest.Seg{Flags: ".", Seq: 2, Ack: 2})
			p.Advance(p.TCP.Options().TimeWait)
		}, append(open, step{event.Established, event.FinWait1, user}, step{event.FinWait1, event.Closing, seg},
			step{event.Closing, event.TimeWait, seg}, step{event.TimeWait, event.Closed, timer})},
		{"FIN and ACK together", func(p *tcptest.Peer, ep *tcp.Endpoint) {
			ep.Close()
			p.Inject(tcptest.Seg{Flags: "F.", Seq: 1, Ack: 2})
			p.Advance(p.TCP.Options().TimeWait)
			// The fifth step (ACK) moves to FIN-WAIT-2 before the eighth
			// (FIN) moves on to TIME-WAIT: two events for one segment,
			// as in Linux's tcp_rcv_state_process.
		}, append(open, step{event.Established, event.FinWait1, user}, step{event.FinWait1, event.FinWait2, seg},
			step{event.FinWait2, event.TimeWait, seg}, step{event.TimeWait, event.Closed, timer})},
		{"reset by peer", func(p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(tcptest.Seg{Flags: "R", Seq: 1})
		}, append(open, step{event.Established, event.Closed, seg})},
		{"close with unread data", func(p *tcptest.Peer, ep *tcp.Endpoint) {
			p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("unread")})
			ep.Close()
		}, append(open, step{event.Established, event.Closed, user})},
		{"abort", func(p *tcptest.Peer, ep *tcp.Endpoint) {
			ep.Reset()
		}, append(open, step{event.Established, event.Closed, user})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r events
			p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: r.observe}))
			tc.life(p, ep)
			p.WantState(ep, event.Closed)
			got := r.of(event.KindState)
			for i, ev := range got {
				t.Logf("event %d: %v", i, ev)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d state events, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				ev := got[i]
				if ev.From != w.from || ev.To != w.to || ev.Cause.Kind != w.cause {
					t.Errorf("event %d: %v -> %v (%v), want %v -> %v (%v)", i, ev.From, ev.To, ev.Cause.Kind, w.from, w.to, w.cause)
				}
				if ev.Conn != ep.ID() {
					t.Errorf("event %d: conn %v, want %v", i, ev.Conn, ep.ID())
				}
				if w.cause == seg && ev.Key.Flags == 0 {
					t.Errorf("event %d: caused by a segment but carries no segment key", i)
				}
			}
			if tc.name != "passive close" {
				return
			}
			var sends []event.SendCause
			for _, ev := range r.of(event.KindSend) {
				sends = append(sends, ev.Send)
			}
			// The first data draws a quick ACK; the FIN's ACK waits
			// (finAckPolicy) and rides on the reply.
			want := []event.SendCause{event.SendSynAck, event.SendAck, event.SendData, event.SendFin}
			if len(sends) != len(want) {
				t.Fatalf("send causes %v, want %v", sends, want)
			}
			for i := range want {
				if sends[i] != want[i] {
					t.Fatalf("send causes %v, want %v", sends, want)
				}
			}
		})
	}
}

// TestDropReasons: every unacceptable segment is dropped with its own
// reason, reported once as an event and counted.
func TestDropReasons(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string // "connection", "listener" or "closed port"
		inject func(p *tcptest.Peer)
		reason event.DropReason
	}{
		{"data beyond the window", "connection", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "P.", Seq: 1 << 30, Ack: 1, Payload: []byte("x")})
		}, event.DropOutOfWindow},
		{"old duplicate", "connection", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
			p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
		}, event.DropOldSequence},
		{"no ACK bit", "connection", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "P", Seq: 1, Payload: []byte("x")})
		}, event.DropNoAck},
		{"ACK of unsent data", "connection", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1000})
		}, event.DropAckUnsent},
		{"ACK too old", "connection", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1 + 3<<30})
		}, event.DropInvalidAck},
		{"RST inside the window, not at RCV.NXT", "connection", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "R", Seq: 100})
		}, event.DropRstInvalid},
		{"SYN when synchronized", "connection", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "S", Seq: 1})
		}, event.DropSynUnexpected},
		{"bad checksum", "connection", func(p *tcptest.Peer) {
			b := p.Encode(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("x")})
			b[16] ^= 0xff
			p.InjectTCP(b, false)
		}, event.DropBadChecksum},
		{"ACK to a listener", "listener", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
		}, event.DropListenAck},
		{"RST to a listener", "listener", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "R", Seq: 1})
		}, event.DropListenRst},
		{"FIN to a listener", "listener", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "F", Seq: 1})
		}, event.DropListenNoSyn},
		{"SYN to a closed port", "closed port", func(p *tcptest.Peer) {
			p.Inject(tcptest.Seg{Flags: "S", Seq: 0})
		}, event.DropNoSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r events
			p, _ := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: r.observe}))
			switch tc.target {
			case "listener":
				p.PeerPort++
			case "closed port":
				p.StackPort++
			}
			r.reset()
			before := p.TCP.Stats().Dropped(tc.reason)
			tc.inject(p)
			p.Drain()
			drops := r.of(event.KindDrop)
			if len(drops) != 1 || drops[0].Drop != tc.reason {
				t.Fatalf("drop events %v, want one with reason %q", drops, tc.reason)
			}
			if drops[0].Key.Flags == 0 && tc.reason != event.DropBadChecksum {
				t.Errorf("drop event carries no segment key")
			}
			if got := p.TCP.Stats().Dropped(tc.reason) - before; got != 1 {
				t.Errorf("counter %q rose by %d, want 1", tc.reason, got)
			}
		})
	}
}

// TestReceiveEvents: every segment whose text is taken says what became
// of it, so a trace or a capture shows holes being filled.
func TestReceiveEvents(t *testing.T) {
	var r events
	p, _ := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: r.observe}))
	r.reset()
	p.Inject(tcptest.Seg{Flags: "P.", Seq: 101, Ack: 1, Payload: payload(100, 100)})
	p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
	p.Inject(tcptest.Seg{Flags: "P.", Seq: 201, Ack: 1, Payload: payload(200, 100)})
	var notes []string
	for _, ev := range r.of(event.KindReceive) {
		notes = append(notes, ev.Note)
		if ev.Key.Len != 100 {
			t.Errorf("receive event %v: key length %d, want 100", ev, ev.Key.Len)
		}
	}
	want := []string{"out of order: held", "in order: fills a hole", "in order"}
	if len(notes) != len(want) || notes[0] != want[0] || notes[1] != want[1] || notes[2] != want[2] {
		t.Fatalf("receive notes %q, want %q", notes, want)
	}
}
