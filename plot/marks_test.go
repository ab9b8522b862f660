package plot_test

import (
	"testing"
	"time"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/plot"
)

// marks lists the marked segments of a connection as "frame:mark".
func marks(c *plot.Conn) map[int]string {
	m := map[int]string{}
	for _, s := range c.Segs {
		if s.Mark != "" {
			m[s.No] = s.Mark + " " + s.Why
		}
	}
	return m
}

// TestTailLossProbeMarks: a tail loss probe that sends the last segment
// again is a retransmission (RFC 8985 7.3; the engine counts it in
// Retransmits, as Linux's tcp_send_loss_probe does through
// __tcp_retransmit_skb), marked and counted as one; one that sends new
// data is a probe and no retransmission. tapstack (the server) sends two
// segments, the second is lost, the probe sends it again (attempt 1);
// later a probe carries new data (attempt 0).
func TestTailLossProbeMarks(t *testing.T) {
	ms := time.Millisecond
	w := &wire{t: t, tapstack: true}
	w.add(handshake()...)
	w.add(
		wseg{At: 30 * ms, Flags: ".", Seq: isnS + 1, Ack: isnC + 1, Len: 1000, Win: 509},     // frame 4
		wseg{At: 30 * ms, Flags: "P.", Seq: isnS + 1001, Ack: isnC + 1, Len: 1000, Win: 509}, // 5
		wseg{At: 40 * ms, C2S: true, Flags: ".", Seq: isnC + 1, Ack: isnS + 1001, Win: 502},  // 6
		wseg{At: 90 * ms, Flags: "P.", Seq: isnS + 1001, Ack: isnC + 1, Len: 1000, Win: 509}, // 7: the probe, a copy
		wseg{At: 100 * ms, C2S: true, Flags: ".", Seq: isnC + 1, Ack: isnS + 2001, Win: 502}, // 8
		wseg{At: 200 * ms, Flags: "P.", Seq: isnS + 2001, Ack: isnC + 1, Len: 500, Win: 509}, // 9: the probe, new data
		wseg{At: 210 * ms, C2S: true, Flags: ".", Seq: isnC + 1, Ack: isnS + 2501, Win: 502}, // 10
	)
	const ack, psh = 0x10, 0x08
	for _, e := range []struct {
		at      time.Duration
		seq, n  uint32
		flags   uint8
		cause   string
		attempt int
	}{
		{30 * ms, isnS + 1, 1000, ack, "data", 0},
		{30 * ms, isnS + 1001, 1000, ack | psh, "data", 0},
		{90 * ms, isnS + 1001, 1000, ack | psh, "tail loss probe", 1},
		{200 * ms, isnS + 2001, 500, ack | psh, "tail loss probe", 0},
	} {
		w.event(e.at, pcap.EventRecord{Kind: "send", Send: e.cause, Attempt: e.attempt, Seq: e.seq, Ack: isnC + 1, Flags: e.flags, Len: int(e.n)})
	}
	c := w.plot().Conns[0]
	m := marks(c)
	if m[7] != "retx tail loss probe" || m[9] != "probe tail loss probe" || c.Flows[0].Retransmit != 1 {
		t.Errorf("frame 7 (the last segment again) %q, frame 9 (new data) %q, %d retransmitted: want retx, probe and 1",
			m[7], m[9], c.Flows[0].Retransmit)
	}
}

// TestNetworkDuplicate: a copy of a segment the network made (the same
// IPv4 identification, the same TSval and TSecr: the sender built it
// once) is no retransmission, neither marked nor counted as one; a
// retransmission is a new datagram (a new identification, a new TSval).
// Over IPv6, which has no identification in its header, the timestamps
// tell them apart.
func TestNetworkDuplicate(t *testing.T) {
	ms := time.Millisecond
	for _, v6 := range []bool{false, true} {
		w := &wire{t: t, v6: v6}
		hs := handshake()
		hs[0].TSval, hs[1].TSval, hs[1].TSecr, hs[2].TSval, hs[2].TSecr = 10, 500, 10, 20, 500
		w.add(hs...)
		w.add(
			wseg{At: 30 * ms, C2S: true, Flags: "P.", Seq: isnC + 1, Ack: isnS + 1, Len: 100, Win: 502, IPID: 7, TSval: 30, TSecr: 500},                     // frame 4
			wseg{At: 30*ms + 50*time.Microsecond, C2S: true, Flags: "P.", Seq: isnC + 1, Ack: isnS + 1, Len: 100, Win: 502, IPID: 7, TSval: 30, TSecr: 500}, // 5: a copy
			wseg{At: 250 * ms, C2S: true, Flags: "P.", Seq: isnC + 1, Ack: isnS + 1, Len: 100, Win: 502, IPID: 9, TSval: 250, TSecr: 500},                   // 6: the RTO's
			wseg{At: 260 * ms, Flags: ".", Seq: isnS + 1, Ack: isnC + 101, Win: 509, TSval: 760, TSecr: 250},
		)
		c := w.plot().Conns[0]
		m := marks(c)
		if m[5] != "dup wire: a copy of frame 4" || m[6] != "retx wire: sent before" || c.Flows[0].Retransmit != 1 {
			t.Errorf("IPv6 %v: frame 5 (the network's copy) %q, frame 6 (a retransmission) %q, %d retransmitted: want dup, retx and 1",
				v6, m[5], m[6], c.Flows[0].Retransmit)
		}
	}
}

// TestRTTAtTheReceiver: in tapstack's capture the capture point is
// tapstack's end, so the time from the peer's segment to tapstack's ACK
// is tapstack's own ACK delay (here its 40 ms delayed-ACK timer), not a
// round trip of the peer's: the page has no RTT samples for the peer's
// flow, and draws tapstack's (its SYN-ACK's 10 ms).
func TestRTTAtTheReceiver(t *testing.T) {
	ms := time.Millisecond
	w := &wire{t: t, tapstack: true}
	w.add(handshake()...)
	for i := range uint32(3) {
		at := time.Duration(30+100*i) * ms
		w.add(
			wseg{At: at, C2S: true, Flags: "P.", Seq: isnC + 1 + 100*i, Ack: isnS + 1, Len: 100, Win: 502},
			wseg{At: at + 40*ms, Flags: ".", Seq: isnS + 1, Ack: isnC + 101 + 100*i, Win: 509}, // delayed
		)
	}
	c := w.plot().Conns[0]
	if rtt := c.Series.RTT; len(rtt[1]) != 0 || len(rtt[0]) != 1 || rtt[0][0][1] != 10 {
		t.Errorf("RTT points: tapstack's %v, the peer's %v; want one of 10 ms, none", rtt[0], rtt[1])
	}
}

// TestInFlightAtTheReceiver: for the same reason, the peer's bytes in
// flight are out of sight of tapstack's capture: what it sees between
// the peer's highest segment and its own ACK is what tapstack has
// received and not yet acknowledged, not what the network holds of the
// peer's (its SND.NXT − SND.UNA, RFC 9293 3.3.1). The page has no "in
// flight" for the peer's flow, and keeps tapstack's.
func TestInFlightAtTheReceiver(t *testing.T) {
	ms := time.Millisecond
	w := &wire{t: t, tapstack: true}
	w.add(handshake()...)
	w.add(
		wseg{At: 30 * ms, C2S: true, Flags: "P.", Seq: isnC + 1, Ack: isnS + 1, Len: 100, Win: 502},
		wseg{At: 70 * ms, Flags: "P.", Seq: isnS + 1, Ack: isnC + 101, Len: 50, Win: 509},
		wseg{At: 80 * ms, C2S: true, Flags: ".", Seq: isnC + 101, Ack: isnS + 51, Win: 502},
	)
	c := w.plot().Conns[0]
	if f := c.Series.InFlight; len(f[1]) != 0 || len(f[0]) == 0 || f[0][len(f[0])-1][1] != 0 {
		t.Errorf("in flight: tapstack's %v, the peer's %v; want tapstack's ending at 0, none", f[0], f[1])
	}
}
