package pcap_test

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap"
)

// dupAcks injects four out-of-order data segments into the server of p,
// which answers each with the same ACK (the first, then three duplicate
// ACKs), identical byte for byte without SACK and Timestamps
// (noSACKNoTS), and returns the server's ACKs from the capture, after
// checking that each carries its own send event, once: "ACK", and the
// wire's "dup ACK #n" in order.
func dupAcks(t *testing.T, p *connPair) ([]pcap.Packet, string) {
	t.Helper()
	p.settle()
	tmpl := p.rec.last(t)
	th := tcpOf(tmpl)
	t0 := time.Now()
	for i := range 4 {
		p.inject(rebuild(tmpl, segment{seq: th.SequenceNumber() + 1000 + uint32(i)*100, ack: th.AckNumber(),
			flags: header.TCPFlagAck | header.TCPFlagPsh, payload: make([]byte, 100)}))
	}
	time.Sleep(300 * time.Millisecond) // the fault's delays, then the window
	frames, dump := p.read(t, t0)
	var acks []pcap.Packet
	for _, f := range frames {
		if f.Direction == pcap.Outbound {
			acks = append(acks, f)
		}
	}
	if len(acks) != 4 {
		t.Fatalf("%d ACKs captured, want 4:\n%s", len(acks), dump)
	}
	for i, a := range acks {
		parts := strings.Split(a.Comment(), "; ")
		if n := countOf(parts, "ACK"); n != 1 {
			t.Errorf("frame %d, ACK %d: the engine's \"ACK\" %d times: %q", a.Number, i+1, n, a.Comment())
		}
		if dup := "dup ACK #" + strconv.Itoa(i); i > 0 && !slices.Contains(parts, dup) {
			t.Errorf("frame %d, ACK %d: %q; want %q", a.Number, i+1, a.Comment(), dup)
		}
		if strings.Contains(a.Comment(), "no engine event") {
			t.Errorf("frame %d: %q", a.Number, a.Comment())
		}
	}
	if st := p.capture.Stats(); st.Unmatched != 0 || st.Unexplained != 0 {
		t.Errorf("stats %+v: events or fault reports unplaced", st)
	}
	return acks, dump
}

func countOf(parts []string, s string) int {
	n := 0
	for _, p := range parts {
		if p == s {
			n++
		}
	}
	return n
}

// TestDupAcksIdentical: the engine's identical duplicate ACKs, without a
// fault and behind one that delays every frame: each ACK carries its own
// send event and the wire's dup ACK count, in order, and each says once
// that the fault delayed it.
func TestDupAcksIdentical(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *tap.FaultConfig
	}{
		{"no fault", nil},
		{"delay", &tap.FaultConfig{Delay: 5 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFaultConnPair(t, 100*time.Millisecond, tc.cfg, noSACKNoTS)
			acks, dump := dupAcks(t, p)
			for _, a := range acks {
				if n := strings.Count(a.Comment(), "fault: delayed"); (tc.cfg != nil) != (n == 1) {
					t.Errorf("frame %d: delayed %d times: %q", a.Number, n, a.Comment())
				}
			}
			if t.Failed() {
				t.Logf("capture:\n%s", dump)
			}
		})
	}
}

// TestDupAcksReorderedOnTheirFrames: the fault below the capture holds
// every other duplicate ACK back (Reorder 100%: the first, held, goes
// after the second; the third after the fourth), the ACKs identical byte
// for byte. What the fault does to a held frame when it finally sends it
// (delays it; finds the delay queue full and drops it) is that frame's,
// though an identical frame was captured since: a report matched to the
// newest frame with the same bytes put the held frame's delay, or its
// drop, on the frame that overtook it, which said "delayed" twice, or was
// shown dropped while the held one, shown sent, never left.
func TestDupAcksReorderedOnTheirFrames(t *testing.T) {
	t.Run("delay", func(t *testing.T) {
		p := newFaultConnPair(t, 100*time.Millisecond, &tap.FaultConfig{Reorder: 1, Delay: 5 * time.Millisecond}, noSACKNoTS)
		acks, dump := dupAcks(t, p)
		for i, a := range acks {
			c := a.Comment()
			if n := strings.Count(c, "fault: delayed"); n != 1 {
				t.Errorf("frame %d: delayed %d times: %q", a.Number, n, c)
			}
			if held := strings.Contains(c, "fault: reordered"); held != (i%2 == 0) {
				t.Errorf("frame %d, ACK %d: %q; held %v, want %v", a.Number, i+1, c, held, i%2 == 0)
			}
		}
		if t.Failed() {
			t.Logf("capture:\n%s", dump)
		}
	})
	t.Run("delay queue full", func(t *testing.T) {
		// One frame may wait out the delay: the second ACK, which
		// overtook the first, takes the room; the held first, then the
		// fourth and the held third find none.
		p := newFaultConnPair(t, 100*time.Millisecond, &tap.FaultConfig{Reorder: 1, Delay: 150 * time.Millisecond, MaxDelayed: 1}, noSACKNoTS)
		acks, dump := dupAcks(t, p)
		for i, a := range acks {
			c := a.Comment()
			full := strings.Count(c, "fault: dropped: delay queue full")
			if want := i != 1; a.Dropped != want || (full == 1) != want || full > 1 {
				t.Errorf("frame %d, ACK %d: %q, dropped %v; want dropped %v, said once", a.Number, i+1, c, a.Dropped, want)
			}
		}
		if st := p.fault.Stats(); st.DroppedDelayed != 3 {
			t.Errorf("the fault dropped %d frames for a full queue, want 3", st.DroppedDelayed)
		}
		if t.Failed() {
			t.Logf("capture:\n%s", dump)
		}
	})
}

// TestFaultNotSentOnItsFrame: the fault middleware below the capture
// delays two identical frames; the link refuses the first when the
// middleware's timer writes it, while the second waits in the delay
// queue. The middleware reports the refusal (tap.FaultNotSent) after the
// second was captured: it is the first frame's, which says "not sent",
// dropped; the second, which left, says nothing of it.
func TestFaultNotSentOnItsFrame(t *testing.T) {
	l := &laterRefusingLink{Endpoint: channel.New(16, 1500, ""), counted: make(chan struct{}), resume: make(chan struct{})}
	var faultObs func(tap.FaultEvent)
	f := tap.NewFault(l, tap.FaultConfig{Delay: time.Millisecond, Observer: func(ev tap.FaultEvent) { faultObs(ev) }})
	var buf bytes.Buffer
	w, err := pcap.New(f, &buf, pcap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	faultObs = w.FaultObserver(nil)
	write := func() {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(bytes.Repeat([]byte{7}, 60))})
		var pl gstack.PacketBufferList
		pl.PushBack(pkt)
		w.WritePackets(pl)
		pkt.DecRef()
	}
	write()
	<-l.counted // the middleware's timer wrote the first; the link refused it
	write()     // the same bytes, delayed in turn
	close(l.resume)
	time.Sleep(20 * time.Millisecond) // the second leaves
	st, pkts := closeAndRead(t, w, &buf, 2)
	for i, p := range pkts {
		refused := i == 0
		if p.Dropped != refused || strings.Contains(p.Comment(), notSent) != refused {
			t.Errorf("frame %d: %q, dropped %v; want %q: %v", p.Number, p.Comment(), p.Dropped, notSent, refused)
		}
	}
	if st.Unmatched != 0 {
		t.Errorf("%d reports unmatched", st.Unmatched)
	}
}
