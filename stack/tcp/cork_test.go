package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestCork: TCP_CORK and MSG_MORE as Linux has them (cork.go). A short
// segment at the end of the queue waits for more data whatever is in
// flight; full segments leave; uncorking, or TCP_NODELAY, sends what
// waits; with nothing in flight, the persist timer sends it after an RTO.
// Data written with WriteMore carries no PSH at its end and is corked
// only while its own write sends.
func TestCork(t *testing.T) {
	const mss = 1000
	data := payload(0, 4*mss)
	t.Run("uncork sends", func(t *testing.T) {
		p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: mss}))
		ep.SetCork(true)
		ep.Write(data[:40])
		ep.Write(data[40:80])
		p.ExpectNothing()
		ep.SetCork(false)
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: data[:80]})
	})
	t.Run("full segments leave", func(t *testing.T) {
		p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: mss}))
		ep.SetCork(true)
		ep.Write(data[:2*mss+100])
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:mss]})
		p.Expect(seg{Flags: "P.", Seq: 1 + mss, Ack: 1, Payload: data[mss : 2*mss]}) // the train's end
		p.ExpectNothing()                                                            // the 100-byte tail waits
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + 2*mss})
		p.ExpectNothing() // nothing in flight, still corked
		p.Advance(ep.Info().RTO)
		p.Expect(seg{Flags: "P.", Seq: 1 + 2*mss, Ack: 1, Payload: data[2*mss : 2*mss+100]})
	})
	t.Run("nodelay pushes", func(t *testing.T) {
		p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: mss}))
		ep.SetCork(true)
		ep.Write(data[:40])
		ep.SetNoDelay(true)
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: data[:40]})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 41})
		ep.Write(data[40:80]) // still corked: TCP_NODELAY pushed once
		p.ExpectNothing()
	})
	t.Run("MSG_MORE", func(t *testing.T) {
		p, ep := tcptest.Established(t, tcptest.WithSynOptions(seg{MSS: mss}))
		ep.SetNoDelay(true)
		ep.WriteMore(data[:mss+50])
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:mss]})
		p.ExpectNothing() // the 50 wait, despite TCP_NODELAY
		ep.WriteMore(data[mss+50 : mss+60])
		p.ExpectNothing()
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1 + mss})
		// The ACK sends what waits, as TCP_NODELAY allows, with no
		// PSH: its writes said more was coming.
		p.Expect(seg{Flags: ".", Seq: 1 + mss, Ack: 1, Payload: data[mss : mss+60]})
		ep.WriteMore(data[mss+60 : mss+70])
		ep.Write(data[mss+70 : mss+80]) // a plain write ends the run, with PSH
		p.Expect(seg{Flags: "P.", Seq: 1 + mss + 60, Ack: 1, Payload: data[mss+60 : mss+80]})
	})
}
