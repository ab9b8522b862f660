package plot_test

import (
	"strings"
	"testing"
	"time"
)

// TestWrappedTransfer pins what the page shows of a lossy transfer whose
// sequence numbers wrap past 2^32 (RFC 9293 3.4: arithmetic modulo
// 2^32), over IPv4 and IPv6: sequence numbers relative to each ISN,
// the SACK block of the peer's duplicate ACK relative to the sender's
// ISN, the lost segment's retransmission marked and counted once, the
// flow's bytes once, windows scaled only after both SYNs (RFC 7323 2.2:
// never a SYN's), and RTT samples only from ACKs of segments sent once
// (Karn's algorithm, RFC 6298 3). It passed from the start.
func TestWrappedTransfer(t *testing.T) {
	ms := time.Millisecond
	// The client's ISN: its second segment wraps; c(n) is ISN+n modulo
	// 2^32.
	const c0 = 1<<32 - 1500
	c := func(n uint32) uint32 { return uint32(c0) + n }
	for _, v6 := range []bool{false, true} {
		w := &wire{t: t, v6: v6}
		w.add(
			wseg{At: 0, C2S: true, Flags: "S", Seq: c0, Win: 64240, WS: 8, MSS: 1460},
			wseg{At: 10 * ms, Flags: "S.", Seq: isnS, Ack: c(1), Win: 65160, WS: 8, MSS: 1460},
			wseg{At: 20 * ms, C2S: true, Flags: ".", Seq: c(1), Ack: isnS + 1, Win: 502},
			wseg{At: 30 * ms, C2S: true, Flags: ".", Seq: c(1), Ack: isnS + 1, Len: 1000, Win: 502},                // 4
			wseg{At: 30 * ms, C2S: true, Flags: ".", Seq: c(1001), Ack: isnS + 1, Len: 1000, Win: 502, IPID: 1},    // 5: lost beyond the capture
			wseg{At: 30 * ms, C2S: true, Flags: "P.", Seq: c(2001), Ack: isnS + 1, Len: 1000, Win: 502},            // 6
			wseg{At: 40 * ms, Flags: ".", Seq: isnS + 1, Ack: c(1001), Win: 509},                                   // 7: RTT 10 ms
			wseg{At: 41 * ms, Flags: ".", Seq: isnS + 1, Ack: c(1001), Win: 509, SACK: []uint32{c(2001), c(3001)}}, // 8
			wseg{At: 45 * ms, C2S: true, Flags: ".", Seq: c(1001), Ack: isnS + 1, Len: 1000, Win: 502, IPID: 2},    // 9: again
			wseg{At: 56 * ms, Flags: ".", Seq: isnS + 1, Ack: c(3001), Win: 509},                                   // 10
		)
		d := w.plot()
		if len(d.Conns) != 1 {
			t.Fatalf("IPv6 %v: %d connections", v6, len(d.Conns))
		}
		cn := d.Conns[0]
		if v6 != strings.HasPrefix(cn.Name, "[2001:db8::2]:40000") {
			t.Errorf("IPv6 %v: connection %q", v6, cn.Name)
		}
		var seqs []int64
		for _, s := range cn.Segs[3:6] {
			seqs = append(seqs, s.Seq)
		}
		sack := cn.Segs[7].SACK
		if seqs[0] != 1 || seqs[1] != 1001 || seqs[2] != 2001 || cn.Segs[8].Seq != 1001 || len(sack) != 1 || sack[0] != [2]int64{2001, 3001} || cn.Segs[9].Ack != 3001 {
			t.Errorf("IPv6 %v: data at %v, again at %d, SACK %v, last ACK %d: want 1 1001 2001, 1001, [2001 3001], 3001",
				v6, seqs, cn.Segs[8].Seq, sack, cn.Segs[9].Ack)
		}
		m := marks(cn)
		if len(m) != 1 || m[9] != "retx wire: sent before" || cn.Flows[0].Retransmit != 1 || cn.Flows[0].Bytes != 3000 {
			t.Errorf("IPv6 %v: marks %v, %d retransmitted, %d bytes: want frame 9 retx, 1, 3000", v6, m, cn.Flows[0].Retransmit, cn.Flows[0].Bytes)
		}
		if cn.Segs[0].Win != 64240 || cn.Segs[1].Win != 65160 || cn.Segs[6].Win != 509<<7 || cn.Flows[0].Scale != 7 {
			t.Errorf("IPv6 %v: windows %d, %d (the SYNs, unscaled), %d (509<<7), scale %d", v6, cn.Segs[0].Win, cn.Segs[1].Win, cn.Segs[6].Win, cn.Flows[0].Scale)
		}
		// Two samples of 10 ms: the SYN-ACK's for the SYN, frame 7's for
		// frame 4. Frame 10 acknowledges the retransmitted range: no
		// sample (Karn).
		if rtt := cn.Series.RTT[0]; len(rtt) != 2 || rtt[0][0] != 0.01 || rtt[0][1] != 10 || rtt[1][0] != 0.04 || rtt[1][1] != 10 {
			t.Errorf("IPv6 %v: RTT points %v, want 10 ms at 10 and 40 ms", v6, rtt)
		}
		if got := states(cn, 0) + " | " + states(cn, 1); got != "SYN-SENT@0 ESTABLISHED@10 | SYN-RECEIVED@10 ESTABLISHED@20" {
			t.Errorf("IPv6 %v: states %s", v6, got)
		}
	}
}
