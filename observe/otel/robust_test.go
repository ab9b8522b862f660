package otel_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tapstack/tapstack/event"
	otel "github.com/tapstack/tapstack/observe/otel"
)

// Events in any order, for any state pair, of kinds and notes the engine
// makes and some it does not: the tracer never panics, never traces more
// than MaxConns connections, and Close ends every span it started.
func TestArbitraryEvents(t *testing.T) {
	live := &liveSpans{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(live))
	const maxConns = 8
	tr := otel.New(otel.Options{TracerProvider: tp, MaxConns: maxConns, MaxEventsPerConn: 16})
	r := rand.New(rand.NewPCG(1, 2))
	notes := []string{"SYN queued", "accept queue add", "accepted", "accept queue remove",
		"accept queue overflow: final ACK dropped", "half-open expired: SYN-ACK retries exhausted", ""}
	now := time.Unix(0, 0)
	for i := range 200_000 {
		ev := event.Event{
			Time:  now.Add(time.Duration(i) * time.Microsecond),
			Kind:  event.Kind(r.IntN(12)),
			Conn:  newWorldID(r.IntN(20)),
			From:  event.State(r.IntN(event.NumStates + 1)),
			To:    event.State(r.IntN(event.NumStates + 1)),
			Send:  event.SendCause(r.IntN(event.NumSendCauses + 1)),
			Drop:  event.DropReason(r.IntN(event.NumDropReasons + 1)),
			Note:  notes[r.IntN(len(notes))],
			Cause: event.Cause{Kind: event.CauseKind(r.IntN(5)), Key: event.SegKey{Flags: event.Flags(r.Uint32())}},
			Segment: event.SegmentInfo{Flags: event.Flags(r.Uint32()), Window: uint16(r.IntN(2)),
				Len: r.IntN(2000), Ack: r.Uint32()},
			Acked: r.Uint32() % 3000,
		}
		if r.IntN(10) == 0 {
			ev.Conn.Remote = netip.AddrPort{} // a listener's own event
		}
		tr.Observe(ev)
		if st := tr.Stats(); st.Open > maxConns {
			t.Fatalf("event %d: %d connections traced, more than MaxConns %d", i, st.Open, maxConns)
		}
	}
	st := tr.Stats()
	t.Logf("%+v; spans started %d, open %d", st, live.started, live.live)
	if st.Traced == 0 {
		t.Fatal("no connection traced: the test exercised nothing")
	}
	tr.Close()
	if live.live != 0 || tr.Stats().Open != 0 {
		t.Errorf("after Close: %d spans open, %d connections traced; want none", live.live, tr.Stats().Open)
	}
}
