package plot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/pcap"
)

// TestStatesOfLostSegments: a segment lost on the link moved its sender
// when it left, and its receiver not at all (RFC 9293 3.3.2: a state
// changes on sending a FIN and on receiving one). tapstack's capture
// (the server's end) sees the client's FIN dropped by a fault on its way
// in, then its retransmission; its own FIN leaves and is lost beyond the
// capture, then goes again.
func TestStatesOfLostSegments(t *testing.T) {
	ms := time.Millisecond
	w := &wire{t: t, tapstack: true}
	w.add(handshake()...)
	w.add(
		wseg{At: 30 * ms, C2S: true, Flags: "F.", Seq: isnC + 1, Ack: isnS + 1, Win: 502, Dropped: true, Comment: "fault: dropped (loss 5%, seed 1, #1)"},
		wseg{At: 250 * ms, C2S: true, Flags: "F.", Seq: isnC + 1, Ack: isnS + 1, Win: 502},
		wseg{At: 251 * ms, Flags: ".", Seq: isnS + 1, Ack: isnC + 2, Win: 509},
		wseg{At: 260 * ms, Flags: "F.", Seq: isnS + 1, Ack: isnC + 2, Win: 509, Dropped: true, Comment: "fault: dropped (loss 5%, seed 1, #2)"},
		wseg{At: 480 * ms, Flags: "F.", Seq: isnS + 1, Ack: isnC + 2, Win: 509},
		wseg{At: 490 * ms, C2S: true, Flags: ".", Seq: isnC + 2, Ack: isnS + 2, Win: 502},
	)
	c := w.plot().Conns[0]
	if c.Ends[0].Role != "tapstack" || c.Ends[0].States != "wire" {
		t.Fatalf("ends %+v", c.Ends)
	}
	for i, want := range []string{
		"SYN-RECEIVED@10 ESTABLISHED@20 CLOSE-WAIT@250 LAST-ACK@260 CLOSED@490",
		"SYN-SENT@0 ESTABLISHED@10 FIN-WAIT-1@30 FIN-WAIT-2@251 TIME-WAIT@480",
	} {
		if got := states(c, i); got != want {
			t.Errorf("%s (%s):\n got %s\nwant %s", c.Ends[i].Addr, c.Ends[i].Role, got, want)
		}
	}
}

// TestCaptureBeganMidConnection: a capture that began after the
// handshake shows both ends synchronized from its first frame, not
// CLOSED until the FINs, and says that the windows it draws are the
// headers' unscaled fields: the window scale was in the SYNs (RFC 7323
// 2.2), which it does not have.
func TestCaptureBeganMidConnection(t *testing.T) {
	ms := time.Millisecond
	w := &wire{t: t}
	w.add(
		wseg{At: 0, C2S: true, Flags: "P.", Seq: isnC + 1, Ack: isnS + 1, Len: 100, Win: 502},
		wseg{At: 10 * ms, Flags: ".", Seq: isnS + 1, Ack: isnC + 101, Win: 509},
		wseg{At: 20 * ms, C2S: true, Flags: "F.", Seq: isnC + 101, Ack: isnS + 1, Win: 502},
		wseg{At: 30 * ms, Flags: "F.", Seq: isnS + 1, Ack: isnC + 102, Win: 509},
		wseg{At: 40 * ms, C2S: true, Flags: ".", Seq: isnC + 102, Ack: isnS + 2, Win: 502},
	)
	c := w.plot().Conns[0]
	for i, want := range []string{
		"ESTABLISHED@0 FIN-WAIT-1@20 FIN-WAIT-2@30 TIME-WAIT@30",
		"ESTABLISHED@0 CLOSE-WAIT@20 LAST-ACK@30 CLOSED@40",
	} {
		if got := states(c, i); got != want {
			t.Errorf("%s:\n got %s\nwant %s", c.Ends[i].Addr, got, want)
		}
	}
	if c.Flows[0].Scale != -1 || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "unscaled") {
		t.Errorf("window scale %d, warnings %q: want -1 and one saying the windows are unscaled", c.Flows[0].Scale, c.Warnings)
	}
	// With the handshake, scaling is known: on, or off for want of the
	// option in one SYN, and nothing to warn of.
	w = &wire{t: t}
	hs := handshake()
	hs[1].WS = 0
	w.add(hs...)
	if c := w.plot().Conns[0]; c.Flows[0].Scale != -1 || len(c.Warnings) != 0 {
		t.Errorf("a SYN-ACK without window scale: scale %d, warnings %q", c.Flows[0].Scale, c.Warnings)
	}
}

// TestTimeWaitReuse: a new SYN that reopens a 4-tuple in TIME-WAIT (RFC
// 1122 4.2.2.13, RFC 6191) makes two connections on the page, each with
// its own frames and its own engine states: the old one's TIME-WAIT ends
// (CLOSED, on that SYN) in the old one, where it continues the old one's
// states, not at the start of the new one.
func TestTimeWaitReuse(t *testing.T) {
	ms := time.Millisecond
	const isnC2 = isnC + 100000
	w := &wire{t: t, tapstack: true}
	w.add(handshake()...)
	w.add(
		wseg{At: 30 * ms, Flags: "F.", Seq: isnS + 1, Ack: isnC + 1, Win: 509},
		wseg{At: 40 * ms, C2S: true, Flags: "F.", Seq: isnC + 1, Ack: isnS + 2, Win: 502},
		wseg{At: 41 * ms, Flags: ".", Seq: isnS + 2, Ack: isnC + 2, Win: 509},
		// The client comes back on the same port.
		wseg{At: 100 * ms, C2S: true, Flags: "S", Seq: isnC2, Win: 64240, WS: 8, MSS: 1460},
		wseg{At: 100 * ms, Flags: "S.", Seq: isnS + 70000, Ack: isnC2 + 1, Win: 65160, WS: 8, MSS: 1460},
		wseg{At: 110 * ms, C2S: true, Flags: ".", Seq: isnC2 + 1, Ack: isnS + 70001, Win: 502},
	)
	for _, st := range []struct {
		at       time.Duration
		from, to string
		cause    string
	}{
		{0, "CLOSED", "SYN-RECEIVED", "segment"},
		{20 * ms, "SYN-RECEIVED", "ESTABLISHED", "segment"},
		{30 * ms, "ESTABLISHED", "FIN-WAIT-1", "user close"},
		{40 * ms, "FIN-WAIT-1", "TIME-WAIT", "segment"},
		{100 * ms, "TIME-WAIT", "CLOSED", "segment"}, // the new SYN ends it
		{100 * ms, "CLOSED", "SYN-RECEIVED", "segment"},
		{110 * ms, "SYN-RECEIVED", "ESTABLISHED", "segment"},
	} {
		w.event(st.at, pcap.EventRecord{Kind: "state", From: st.from, To: st.to, Cause: st.cause})
	}
	d := w.plot()
	if len(d.Conns) != 2 {
		t.Fatalf("%d connections, want 2", len(d.Conns))
	}
	for i, want := range []string{
		"SYN-RECEIVED@0 ESTABLISHED@20 FIN-WAIT-1@30 TIME-WAIT@40 CLOSED@100",
		"SYN-RECEIVED@100 ESTABLISHED@110",
	} {
		c := d.Conns[i]
		if got := states(c, 0); c.Ends[0].States != "engine" || got != want || len(c.Segs) != []int{6, 3}[i] {
			t.Errorf("connection %d: %d frames, tapstack's states (from the %s):\n got %s\nwant %s", i, len(c.Segs), c.Ends[0].States, got, want)
		}
	}
}
