package otel_test

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	otel "github.com/tapstack/tapstack/observe/otel"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
	"github.com/tapstack/tapstack/tap"
)

// A transfer over a cable that loses 5% of the frames each way (seeded,
// so every run loses the same ones): the client's trace carries one
// tcp.retransmit event per retransmitted segment, with its cause, as
// many as its root's tcp.retransmits and as the engine counted; the
// server's carries the bytes that arrived.
func TestLossyTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 256 << 10
		w := newWorld(t, worldOptions{
			maxEvents: 1 << 16,
			clientLink: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
				return tap.NewFault(l, tap.FaultConfig{Loss: 0.05, Seed: 5, Inbound: &tap.FaultConfig{Loss: 0.05}})
			},
		})
		c, s := w.connect(t, 80)
		// The client sends, waits for the server's answer, then closes:
		// the losses fall in the transfer phase.
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, size)
			_, err := io.ReadFull(s, b)
			if err != nil {
				t.Error(err)
			}
			io.WriteString(s, "ok")
			got <- b
		}()
		answered := make(chan error, 1)
		go func() {
			if _, err := c.Write(data); err != nil {
				answered <- err
				return
			}
			_, err := io.ReadFull(c, make([]byte, 2))
			answered <- err
		}()
		var err error
		for i := 0; ; i++ {
			synctest.Wait()
			select {
			case err = <-answered:
			default:
				if i == 10_000 {
					t.Fatal("transfer not done after 100 s of fake time")
				}
				w.clock.Advance(10 * time.Millisecond)
				continue
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if b := <-got; !bytes.Equal(b, data) {
			t.Fatalf("server read %d bytes, not what was sent", len(b))
		}
		c.Close()
		w.advance(0)
		s.Close()
		for range 100 { // FINs may be lost too: let the timers repair them
			w.advance(100 * time.Millisecond)
		}
		w.advance(2 * timeWait)
		if st := w.ct.Stats(); st.Open != 0 {
			t.Fatalf("client tracer: %d connections still open", st.Open)
		}

		cl, sv := w.traces(t, "client"), w.traces(t, "server")
		if len(cl) != 1 || len(sv) != 1 {
			t.Fatalf("%d client and %d server traces, want one each", len(cl), len(sv))
		}
		ctr := cl[0]
		rtx := ctr.events(otel.EventRetransmit)
		causes := map[string]int{}
		for _, e := range rtx {
			causes[eventAttr(e, "tcp.retransmit.cause")]++
		}
		engine := w.client.TCP().Stats().Retransmits.Load()
		t.Logf("client: %d retransmissions by cause %v, %d RTOs, %d drops; engine counted %d",
			len(rtx), causes, len(ctr.events(otel.EventRTO)), len(ctr.events(otel.EventDrop)), engine)
		if len(rtx) == 0 {
			t.Fatal("no tcp.retransmit event at 5% loss")
		}
		if n := strconv.Itoa(len(rtx)); attr(ctr.root, "tcp.retransmits") != n || uint64(len(rtx)) != engine {
			t.Errorf("tcp.retransmits %s, %d tcp.retransmit events, engine counted %d: want all equal",
				attr(ctr.root, "tcp.retransmits"), len(rtx), engine)
		}
		for _, e := range rtx {
			if eventAttr(e, "tcp.retransmit.attempt") == "0" || eventAttr(e, "tcp.seq") == "" {
				t.Errorf("retransmit event without attempt or seq: %v", e.Attributes)
				break
			}
		}
		if len(ctr.spans[otel.SpanTransfer].Events) == 0 {
			t.Error("no event in the client's tcp.transfer span")
		}
		wantAttrs(t, "client root", ctr.root, map[string]string{
			"tcp.bytes_acked": strconv.Itoa(size), "tcp.bytes_received": "2",
			"tcp.bytes_sent": strconv.Itoa(size + atoi(attr(ctr.root, "tcp.bytes_retransmitted"))),
			"error.type":     "",
		})
		wantAttrs(t, "server root", sv[0].root, map[string]string{"tcp.bytes_received": strconv.Itoa(size), "tcp.bytes_sent": "2", "error.type": ""})
		// The root's totals are what the engine's Info says at close.
		wantInfo(t, "client", ctr.root, c.Info())
		wantInfo(t, "server", sv[0].root, s.Info())
	})
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// A full accept queue (backlog 0: one connection may wait, as in Linux),
// scripted segment by segment: two SYNs are queued, a's final ACK fills
// the accept queue, b's is dropped (tcp.queue and tcp.drop events in b's
// handshake); b stays half-open in the SYN queue until, after Accept made
// room, its SYN-ACK is retransmitted and answered. b's syn_queue and
// handshake spans last that second; its accept_queue wait follows.
func TestAcceptQueueFull(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr := otel.New(otel.Options{TracerProvider: tp, Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "server")}})
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{Observer: tr.Observe}))
	l := p.Listen(0)
	syn := func(port uint16) uint32 {
		p.PeerPort = port
		p.SetStackISS(0, false)
		p.Inject(tcptest.Seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
		iss, _ := p.StackISS()
		return iss
	}
	use := func(port uint16, iss uint32) { p.PeerPort = port; p.SetStackISS(iss, true) }
	issA, issB := syn(40001), syn(40002)
	use(40001, issA)
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	use(40002, issB)
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing() // dropped: the accept queue is full
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p.Advance(time.Second)
	p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1}) // b's SYN-ACK again
	p.Inject(tcptest.Seg{Flags: ".", Seq: 1, Ack: 1})
	p.ExpectNothing()
	p.Advance(time.Second)
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// Both peers leave with a RST: the traces end.
	for _, c := range []struct {
		port uint16
		iss  uint32
	}{{40001, issA}, {40002, issB}} {
		use(c.port, c.iss)
		p.Inject(tcptest.Seg{Flags: "R.", Seq: 1, Ack: 1})
	}
	p.WantState(a, event.Closed)
	p.WantState(b, event.Closed)

	w := &world{exp: exp}
	sv := w.traces(t, "server")
	if len(sv) != 2 {
		t.Fatalf("%d traces, want 2", len(sv))
	}
	for _, ct := range sv {
		if got, want := ct.shape(), "tcp.connection(tcp.handshake(tcp.syn_queue) tcp.accept_queue tcp.transfer)"; got != want {
			t.Errorf("trace:\n got %s\nwant %s", got, want)
		}
		wantAttrs(t, "root", ct.root, map[string]string{"error.type": "ECONNRESET"})
	}
	full := sv[1]
	if attr(full.root, "network.peer.port") != "40002" {
		t.Fatalf("second trace is of port %s, want 40002", attr(full.root, "network.peer.port"))
	}
	var decisions []string
	for _, e := range full.spans[otel.SpanHandshake].Events {
		switch e.Name {
		case otel.EventQueueDecision:
			decisions = append(decisions, e.Name+": "+eventAttr(e, "tcp.queue.decision"))
		case otel.EventDrop, otel.EventRetransmit:
			decisions = append(decisions, e.Name+": "+eventAttr(e, "tcp.drop.reason")+eventAttr(e, "tcp.retransmit.cause"))
		}
	}
	want := fmt.Sprint([]string{
		"tcp.queue: accept queue overflow: final ACK dropped",
		"tcp.drop: accept queue full",
		"tcp.retransmit: SYN-ACK retransmit",
	})
	if got := fmt.Sprint(decisions); got != want {
		t.Errorf("handshake events of the second connection:\n got %s\nwant %s", got, want)
	}
	hs, sq, aq := full.spans[otel.SpanHandshake], full.spans[otel.SpanSynQueue], full.spans[otel.SpanAcceptQueue]
	if d := hs.EndTime.Sub(hs.StartTime); d != time.Second {
		t.Errorf("second handshake took %v, want the 1 s of the SYN-ACK timer", d)
	}
	if !sq.EndTime.Equal(hs.EndTime) {
		t.Errorf("syn_queue ended at %v, handshake at %v: want together", sq.EndTime, hs.EndTime)
	}
	if d := aq.EndTime.Sub(aq.StartTime); !aq.StartTime.Equal(hs.EndTime) || d != time.Second || attr(aq, "tcp.accept_queue.outcome") != "accepted" {
		t.Errorf("accept_queue %v from the handshake's end, lasting %v, outcome %q; want 0, 1s, accepted",
			aq.StartTime.Sub(hs.EndTime), d, attr(aq, "tcp.accept_queue.outcome"))
	}
	wantAttrs(t, "second root", full.root, map[string]string{"tcp.retransmits": "1", "tcp.drops": "1"})
}

// The server does not read: its receive buffer fills, it advertises a
// zero window (tcp.window_closed, side local, in its trace; side peer in
// the client's), the client probes it, and when the application reads the
// window opens again on both sides. Once it reads, the window may close
// and open again if the reader falls behind the sender (seen under
// -race on a loaded machine): the events come in closed-opened pairs,
// one at least, and end opened.
func TestZeroWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, worldOptions{})
		c, s := w.connect(t, 80)
		s.SetReadBuffer(16 << 10)
		const size = 256 << 10
		sent := make(chan error, 1)
		go func() {
			_, err := c.Write(make([]byte, size))
			sent <- err
		}()
		for range 20 { // long enough for a window probe or two
			w.advance(100 * time.Millisecond)
		}
		got := readAll(s)
		for i := 0; ; i++ {
			synctest.Wait()
			select {
			case err := <-sent:
				if err != nil {
					t.Fatal(err)
				}
			default:
				if i == 1000 {
					t.Fatal("write not done after 100 s of fake time")
				}
				w.clock.Advance(100 * time.Millisecond)
				continue
			}
			break
		}
		c.Close()
		if b := <-got; len(b) != size {
			t.Fatalf("server read %d bytes", len(b))
		}
		s.Close()
		w.advance(2 * timeWait)

		cl, sv := w.traces(t, "client"), w.traces(t, "server")
		if len(cl) != 1 || len(sv) != 1 {
			t.Fatalf("%d client and %d server traces, want one each", len(cl), len(sv))
		}
		// windows checks that ct's window events are closed-opened
		// pairs on side, one at least.
		windows := func(who string, ct *connTrace, side string) {
			var out []string
			for _, e := range ct.spans[otel.SpanTransfer].Events {
				if e.Name == otel.EventWindowClosed || e.Name == otel.EventWindowOpened {
					out = append(out, e.Name+" "+eventAttr(e, "tcp.window.side"))
				}
			}
			pair := []string{otel.EventWindowClosed + " " + side, otel.EventWindowOpened + " " + side}
			ok := len(out) >= 2 && len(out)%2 == 0
			for i := 0; ok && i < len(out); i++ {
				ok = out[i] == pair[i%2]
			}
			if !ok {
				t.Errorf("%s window events %v, want %v once or more", who, out, pair)
			}
		}
		windows("client", cl[0], "peer")
		windows("server", sv[0], "local")
	})
}

// A SYN that never gets an answer: the client retransmits it with the
// RTO backing off (RFC 6298 5.5) until it gives up; its handshake holds
// the RTO firings and the SYN retransmissions, and the trace fails with
// the error Dial returned: ETIMEDOUT when the listener drops the SYNs
// (its accept queue is full, as Linux does), EHOSTUNREACH when the cable
// is dead and ARP never resolves the server.
func TestSynTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, errType string
		dead          bool
	}{
		{"accept queue full", "ETIMEDOUT", false},
		{"dead cable", "EHOSTUNREACH", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var o worldOptions
				if tc.dead {
					o.clientLink = func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
						return tap.NewFault(l, tap.FaultConfig{Loss: 1, Seed: 1})
					}
				}
				w := newWorld(t, o)
				if !tc.dead {
					lc := conn.ListenConfig{Backlog: -1}
					ln, err := lc.Listen(w.server, "tcp", "192.0.2.1:80")
					if err != nil {
						t.Fatal(err)
					}
					defer ln.Close()
					first, err := conn.Dial(w.client, "tcp", "192.0.2.1:80") // fills the accept queue
					if err != nil {
						t.Fatal(err)
					}
					defer first.Close()
					w.advance(0)
				}
				dialed := make(chan error, 1)
				go func() {
					_, err := conn.Dial(w.client, "tcp", "192.0.2.1:80")
					dialed <- err
				}()
				var err error
				for i := 0; ; i++ {
					synctest.Wait()
					select {
					case err = <-dialed:
					default:
						if i == 600 {
							t.Fatal("dial still waiting after 10 min of fake time")
						}
						w.clock.Advance(time.Second)
						continue
					}
					break
				}
				if err == nil {
					t.Fatal("dial succeeded")
				}
				cl := w.traces(t, "client")
				var tr *connTrace
				for _, c := range cl {
					if attr(c.root, "error.type") != "" {
						tr = c
					}
				}
				if tr == nil {
					t.Fatalf("no failed trace among %d client traces", len(cl))
				}
				hs := tr.spans[otel.SpanHandshake]
				var rtos, syns int
				for _, e := range hs.Events {
					switch {
					case e.Name == otel.EventRTO:
						rtos++
					case e.Name == otel.EventRetransmit && eventAttr(e, "tcp.retransmit.cause") == "SYN retransmit":
						syns++
					}
				}
				t.Logf("dial: %v; %d RTOs, %d SYN retransmissions in %v", err, rtos, syns, hs.EndTime.Sub(hs.StartTime))
				if rtos == 0 || syns == 0 || attr(tr.root, "tcp.rto_count") != strconv.Itoa(rtos) {
					t.Errorf("%d tcp.rto and %d SYN retransmit events, tcp.rto_count %s: want both and the count equal",
						rtos, syns, attr(tr.root, "tcp.rto_count"))
				}
				wantAttrs(t, "root", tr.root, map[string]string{"error.type": tc.errType, "tcp.state.final": "SYN-SENT"})
				if hs.Status.Code != codes.Error {
					t.Errorf("handshake status %v, want Error", hs.Status)
				}
			})
		})
	}
}

// A passive connection that never establishes: the peer's SYN is
// answered, the SYN-ACK retransmitted twice (SynAckRetries 2, at 1 and
// 3 s), and at 7 s the half-open entry expires. Its trace ends there,
// failed with ETIMEDOUT in its handshake, with both retransmissions and
// both timeouts counted, and the tracer holds nothing.
func TestHalfOpenExpires(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr := otel.New(otel.Options{TracerProvider: tp, Attributes: []attribute.KeyValue{attribute.String("tapstack.stack", "server")}})
	p, _ := tcptest.SynReceived(t, tcptest.WithTCP(tcp.Options{Observer: tr.Observe, SynAckRetries: 2}))
	for _, at := range []time.Duration{time.Second, 3 * time.Second} {
		p.Advance(at - p.Elapsed())
		p.Expect(tcptest.Seg{Flags: "S.", Seq: 0, Ack: 1})
	}
	p.Advance(7*time.Second - p.Elapsed())
	p.ExpectNothing()

	sv := (&world{exp: exp}).traces(t, "server")
	if len(sv) != 1 {
		t.Fatalf("%d traces, want 1", len(sv))
	}
	ct := sv[0]
	if got, want := ct.shape(), "tcp.connection(tcp.handshake(tcp.syn_queue))"; got != want {
		t.Errorf("trace:\n got %s\nwant %s", got, want)
	}
	wantAttrs(t, "root", ct.root, map[string]string{"error.type": "ETIMEDOUT", "tcp.state.final": "SYN-RECEIVED",
		"tcp.role": "passive", "tcp.retransmits": "2", "tcp.rto_count": "2", "tcp.bytes_received": "0"})
	if d := ct.root.EndTime.Sub(ct.root.StartTime); d != 7*time.Second {
		t.Errorf("the root lasted %v, want 7s", d)
	}
	if hs := ct.spans[otel.SpanHandshake]; hs.Status.Code != codes.Error || !hs.EndTime.Equal(ct.root.EndTime) {
		t.Errorf("handshake status %v, ended %v before the root", hs.Status, ct.root.EndTime.Sub(hs.EndTime))
	}
	wantStates(t, "server", ct, "CLOSED→SYN-RECEIVED", "SYN-RECEIVED→CLOSED")
	if st := tr.Stats(); st.Traced != 1 || st.Open != 0 {
		t.Errorf("tracer stats %+v, want 1 traced, none open", st)
	}
}
