package tcp_test

import (
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestActiveClose: ESTABLISHED -> FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT ->
// CLOSED, the last step exactly 2*MSL (Options.TimeWait) after entering
// TIME-WAIT (RFC 9293 3.6, 3.10.8).
func TestActiveClose(t *testing.T) {
	for _, active := range []bool{false, true} {
		name := "passive open"
		var opts []tcptest.Option
		if active {
			name, opts = "active open", []tcptest.Option{tcptest.ActiveOpen()}
		}
		t.Run(name, func(t *testing.T) {
			p, ep := tcptest.TimeWait(t, opts...)
			tw := p.TCP.Options().TimeWait
			p.Advance(tw - 1)
			p.WantState(ep, event.TimeWait)
			p.Advance(1)
			p.WantState(ep, event.Closed)
			p.ExpectNothing()
			if n := len(p.TCP.Connections()); n != 0 {
				t.Errorf("%d connections left, want 0", n)
			}
		})
	}
}

// TestPassiveClose: ESTABLISHED -> CLOSE-WAIT -> LAST-ACK -> CLOSED; the
// user reads EOF after the peer's FIN (RFC 9293 3.10.7.4 eighth step).
func TestPassiveClose(t *testing.T) {
	p, ep := tcptest.CloseWait(t)
	if _, err := ep.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read in CLOSE-WAIT: %v, want EOF", err)
	}
	ep.Write([]byte("bye"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 2, Payload: []byte("bye")})
	ep.Close()
	p.Expect(seg{Flags: "F.", Seq: 4, Ack: 2})
	p.WantState(ep, event.LastAck)
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 4})
	p.WantState(ep, event.LastAck) // the FIN is not yet acknowledged
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 5})
	p.WantState(ep, event.Closed)
	p.ExpectNothing()
}

// TestLastAckFinRetransmit: in LAST-ACK the FIN is retransmitted on the RTO.
func TestLastAckFinRetransmit(t *testing.T) {
	p, ep := tcptest.LastAck(t)
	p.Advance(ep.Info().RTO)
	p.Expect(seg{Flags: "F.", Seq: 1, Ack: 2})
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 2})
	p.WantState(ep, event.Closed)
}

// TestSimultaneousClose: FINs cross (RFC 9293 3.6 figure 13): FIN-WAIT-1
// -> CLOSING on the peer's FIN, -> TIME-WAIT on the ACK of ours.
func TestSimultaneousClose(t *testing.T) {
	p, ep := tcptest.Closing(t)
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 2})
	p.ExpectNothing()
	p.WantState(ep, event.TimeWait)
}

// TestFinAckInFinWait1: a FIN that also acknowledges our FIN moves
// FIN-WAIT-1 straight to TIME-WAIT ("If our FIN has been ACKed (perhaps in
// this segment), then enter TIME-WAIT", 3.10.7.4 eighth step).
func TestFinAckInFinWait1(t *testing.T) {
	p, ep := tcptest.FinWait1(t)
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 2})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 2})
	p.WantState(ep, event.TimeWait)
}

// TestHalfClose: after CloseWrite the connection still receives
// (RFC 9293 3.10.4: "the user ... may continue to RECEIVE").
func TestHalfClose(t *testing.T) {
	p, ep := tcptest.Established(t)
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
	p.WantState(ep, event.FinWait1)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2})
	p.WantState(ep, event.FinWait2)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 2, Payload: []byte("hello")})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 6}) // the first data: a quick ACK
	buf := make([]byte, 10)
	if n, err := ep.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	// Without Close, FIN-WAIT-2 has no timeout: the peer may take its time.
	p.Advance(10 * time.Minute)
	p.ExpectNothing()
	p.WantState(ep, event.FinWait2)
	p.Inject(seg{Flags: "F.", Seq: 6, Ack: 2})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 7})
	p.WantState(ep, event.TimeWait)
	if _, err := ep.Read(buf); err != io.EOF {
		t.Fatalf("Read after FIN: %v, want EOF", err)
	}
}

// TestShutdownWhenDone: CloseWrite and CloseRead on a connection reset
// or closed (CLOSED, TIME-WAIT) fail with ENOTCONN, as Linux's
// inet_shutdown on a socket in TCP_CLOSE (a socket's TIME-WAIT leaves it
// there); a FIN queued earlier changes nothing, and the reset's error is
// Read's and Write's to report, not shutdown's.
func TestShutdownWhenDone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) *tcp.Endpoint
	}{
		{"reset", func(t *testing.T) *tcp.Endpoint {
			p, ep := tcptest.Established(t)
			p.Inject(seg{Flags: "R", Seq: 1})
			p.WantState(ep, event.Closed)
			return ep
		}},
		{"reset with our FIN sent", func(t *testing.T) *tcp.Endpoint {
			p, ep := tcptest.FinWait1(t)
			p.Inject(seg{Flags: "R", Seq: 1})
			p.WantState(ep, event.Closed)
			return ep
		}},
		{"TIME-WAIT", func(t *testing.T) *tcp.Endpoint {
			_, ep := tcptest.TimeWait(t)
			return ep
		}},
		{"closed after CloseWrite in CLOSE-WAIT", func(t *testing.T) *tcp.Endpoint {
			p, ep := tcptest.CloseWait(t)
			if err := ep.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			p.Expect(seg{Flags: "F.", Seq: 1, Ack: 2})
			p.Inject(seg{Flags: ".", Seq: 2, Ack: 2})
			p.WantState(ep, event.Closed)
			return ep
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := tc.setup(t)
			if err := ep.CloseWrite(); err != syscall.ENOTCONN {
				t.Errorf("CloseWrite = %v, want ENOTCONN", err)
			}
			if err := ep.CloseRead(); err != syscall.ENOTCONN {
				t.Errorf("CloseRead = %v, want ENOTCONN", err)
			}
		})
	}
}

// TestCloseWithUnreadData: Close with received data the user never read
// resets the connection instead of closing it (RFC 9293 3.10.4 allows
// discarding only by reset; RFC 2525 2.17; Linux does the same).
func TestCloseWithUnreadData(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{NoQuickAck: true}))
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("unread")})
	p.ExpectNothing() // the ACK is delayed
	ep.Close()
	p.Expect(seg{Flags: "R.", Seq: 1, Ack: 7})
	p.WantState(ep, event.Closed)
	p.Advance(time.Second)
	p.ExpectNothing() // in particular, no delayed ACK from a dead TCB
}

// TestCloseWithUnreadDataAfterHalfClose: the same after a half-close
// (CloseWrite), when our FIN left before the peer's text and FIN came:
// CLOSING (the FINs crossed) and LAST-ACK (the peer's FIN came first, our
// FIN answered it). The text is as lost, so Close resets the connection
// <SEQ=SND.NXT><CTL=RST,ACK> (RFC 1122 4.2.2.13, RFC 2525 2.17), as
// Linux's __tcp_close does in every state but LISTEN and CLOSE.
func TestCloseWithUnreadDataAfterHalfClose(t *testing.T) {
	t.Run("LAST-ACK", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		p.Inject(seg{Flags: "FP.", Seq: 1, Ack: 1, Payload: []byte("unread")})
		p.Advance(p.TCP.Options().DelayedAck)
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 8})
		p.WantState(ep, event.CloseWait)
		if err := ep.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: "F.", Seq: 1, Ack: 8})
		p.WantState(ep, event.LastAck)
		ep.Close()
		p.Expect(seg{Flags: "R.", Seq: 2, Ack: 8})
		p.WantState(ep, event.Closed)
		p.Advance(time.Second)
		p.ExpectNothing() // no FIN retransmission from a dead TCB
	})
	t.Run("CLOSING", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		if err := ep.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
		p.WantState(ep, event.FinWait1)
		p.Inject(seg{Flags: "FP.", Seq: 1, Ack: 1, Payload: []byte("unread")})
		p.Expect(seg{Flags: ".", Seq: 2, Ack: 8})
		p.WantState(ep, event.Closing)
		ep.Close()
		p.Expect(seg{Flags: "R.", Seq: 2, Ack: 8})
		p.WantState(ep, event.Closed)
		p.Advance(time.Second)
		p.ExpectNothing()
	})
}

// TestDataAfterClose: data for a connection the user has closed can never
// be read, so it is answered with RST (RFC 9293 3.10.4 lets CLOSE discard
// data only by reset; RFC 2525 2.17; Linux tcp_rcv_state_process). The
// RST's sequence number is the data's ACK field, the peer's RCV.NXT, as
// Linux's: our FIN is still in flight here, and a RST at SND.NXT past it
// would be in the peer's window but not at RCV.NXT, and earn only a
// challenge ACK (RFC 5961 3.2).
func TestDataAfterClose(t *testing.T) {
	p, ep := tcptest.Established(t)
	ep.Close()
	p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("late")})
	p.Expect(seg{Flags: "R", Seq: 1})
	p.WantState(ep, event.Closed)
	wantCount(t, "Dropped(closed)", p.TCP.Stats().Dropped(event.DropClosed), 1)
}

// TestTimeWaitFinRetransmit: a retransmitted FIN in TIME-WAIT is
// acknowledged again and restarts the 2*MSL timer (3.10.7.4 eighth step).
func TestTimeWaitFinRetransmit(t *testing.T) {
	p, ep := tcptest.TimeWait(t)
	tw := p.TCP.Options().TimeWait
	p.Advance(tw / 2)
	p.Inject(seg{Flags: "F.", Seq: 1, Ack: 2})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 2})
	p.WantState(ep, event.TimeWait)
	p.Advance(tw - 1) // past the original deadline
	p.WantState(ep, event.TimeWait)
	p.Advance(1)
	p.WantState(ep, event.Closed)
}

// TestFinWait2Timeout: an orphaned connection (Close, not CloseWrite) in
// FIN-WAIT-2 gives up after FinWait2Timeout, like Linux's tcp_fin_timeout.
func TestFinWait2Timeout(t *testing.T) {
	p, ep := tcptest.FinWait2(t, tcptest.WithTCP(tcp.Options{FinWait2Timeout: 5 * time.Second}))
	p.Advance(5*time.Second - 1)
	p.WantState(ep, event.FinWait2)
	p.Advance(1)
	p.WantState(ep, event.Closed)
}

// recorder collects the observer's state events.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) observe(ev event.Event) {
	if ev.Kind != event.KindState {
		return
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// TestStateEvents: every transition of one active-close life is reported
// once, in order, with its cause (RFC 9293 3.3.2 figure 5).
func TestStateEvents(t *testing.T) {
	var r recorder
	p, ep := tcptest.TimeWait(t, tcptest.ActiveOpen(), tcptest.WithTCP(tcp.Options{Observer: r.observe}))
	p.Advance(p.TCP.Options().TimeWait)
	p.WantState(ep, event.Closed)
	want := []struct {
		from, to event.State
		cause    event.CauseKind
	}{
		{event.Closed, event.SynSent, event.CauseUser},
		{event.SynSent, event.Established, event.CauseSegment},
		{event.Established, event.FinWait1, event.CauseUser},
		{event.FinWait1, event.FinWait2, event.CauseSegment},
		{event.FinWait2, event.TimeWait, event.CauseSegment},
		{event.TimeWait, event.Closed, event.CauseTimer},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ev := range r.events {
		t.Logf("event %d: %v", i, ev)
	}
	if len(r.events) != len(want) {
		t.Fatalf("%d state events, want %d", len(r.events), len(want))
	}
	for i, w := range want {
		ev := r.events[i]
		if ev.From != w.from || ev.To != w.to || ev.Cause.Kind != w.cause {
			t.Errorf("event %d: %v -> %v (%v), want %v -> %v (%v)", i, ev.From, ev.To, ev.Cause.Kind, w.from, w.to, w.cause)
		}
		if ev.Conn != ep.ID() {
			t.Errorf("event %d: conn %v, want %v", i, ev.Conn, ep.ID())
		}
	}
}

// TestLastAckSendsQueuedData: Close in CLOSE-WAIT with more queued than
// the window allows enters LAST-ACK at once (RFC 9293 3.10.4); the rest of
// the data, then the FIN, still go out as ACKs open the window.
func TestLastAckSendsQueuedData(t *testing.T) {
	p, ep := tcptest.CloseWait(t)
	data := payload(0, 12*1460) // more than the initial window of 10 segments
	ep.Write(data)
	for i := 0; i < 10; i++ {
		p.Expect(seg{Flags: trainFlags(i, 10), Seq: uint32(1 + i*1460), Ack: 2, Len: 1460})
	}
	ep.Close()
	p.WantState(ep, event.LastAck)
	p.ExpectNothing()
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 1 + 2*1460})
	p.Expect(seg{Flags: ".", Seq: 1 + 10*1460, Ack: 2, Len: 1460})
	p.Expect(seg{Flags: "FP.", Seq: 1 + 11*1460, Ack: 2, Len: 1460})
	p.Inject(seg{Flags: ".", Seq: 2, Ack: 2 + 12*1460})
	p.WantState(ep, event.Closed)
}

// TestTimeWaitReopen: a new SYN above RCV.NXT reopens a connection in
// TIME-WAIT (RFC 1122 4.2.2.13): the old TCB goes, and the listener
// answers with an ISN above the old sequence space (old SND.NXT + 65537,
// as Linux). Without timestamps, a SYN at or below RCV.NXT may be an old
// duplicate, and is only ACKed (TestTimeWaitSynReopens has the rules with
// timestamps).
func TestTimeWaitReopen(t *testing.T) {
	p, ep := tcptest.TimeWait(t)
	p.Inject(seg{Flags: "S", Seq: 1})
	p.Expect(seg{Flags: ".", Seq: 2, Ack: 2}) // old duplicate: ACK (challenge)
	p.WantState(ep, event.TimeWait)

	p.Inject(seg{Flags: "S", Seq: 100000})
	p.WantState(ep, event.Closed)
	p.Expect(seg{Flags: "S.", Seq: 2 + 65537, Ack: 100001})
	if q := p.Listener.Queues(); q.SynQueueLen != 1 {
		t.Errorf("SYN queue length %d, want 1", q.SynQueueLen)
	}
	p.Inject(seg{Flags: ".", Seq: 100001, Ack: 2 + 65538})
	ne, err := p.Listener.Accept()
	if err != nil {
		t.Fatalf("Accept after reopening: %v", err)
	}
	p.WantState(ne, event.Established)
}

// TestCloseReadKeepsData: shutdown(SHUT_RD) as Linux does it. Read returns
// io.EOF once nothing is queued, but text queued before the call, and
// text that arrives after it, is acknowledged, kept and readable: the peer
// was told it was delivered. A Close that finds some unread resets.
func TestCloseReadKeepsData(t *testing.T) {
	p, ep := tcptest.Established(t)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("before")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 7})
	if err := ep.CloseRead(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 100)
	if n, err := ep.Read(b); n != 6 || err != nil || string(b[:n]) != "before" {
		t.Fatalf("Read after CloseRead = %d %q, %v; want the 6 bytes queued before", n, b[:n], err)
	}
	if n, err := ep.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("Read with nothing queued after CloseRead = %d, %v; want io.EOF", n, err)
	}
	p.Inject(seg{Flags: "P.", Seq: 7, Ack: 1, Payload: []byte("after")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 12})
	if n, err := ep.Read(b); n != 5 || err != nil || string(b[:n]) != "after" {
		t.Fatalf("Read of text that came after CloseRead = %d %q, %v; want the 5 bytes", n, b[:n], err)
	}
	p.Inject(seg{Flags: "P.", Seq: 12, Ack: 1, Payload: []byte("unread")})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 18})
	ep.Close()
	p.Expect(seg{Flags: "R.", Seq: 1, Ack: 18})
	p.WantState(ep, event.Closed)
}
