package plot_test

import (
	"testing"
	"time"
)

// TestFlowBytes: a flow's bytes are the data its sender sent, each byte
// once: a retransmission adds nothing, and neither do the SYN's and FIN's
// sequence numbers, whether the connection closed with FINs, was reset,
// or was caught mid-way by a capture that began after the SYNs.
func TestFlowBytes(t *testing.T) {
	ms := time.Millisecond
	data := []wseg{
		{At: 30 * ms, C2S: true, Flags: "P.", Seq: isnC + 1, Ack: isnS + 1, Len: 100, Win: 502},
		{At: 250 * ms, C2S: true, Flags: "P.", Seq: isnC + 1, Ack: isnS + 1, Len: 100, Win: 502}, // the RTO's retransmission
		{At: 260 * ms, Flags: ".", Seq: isnS + 1, Ack: isnC + 101, Win: 509},
	}
	for _, tc := range []struct {
		name string
		segs []wseg
	}{
		{"reset", append(append(handshake(), data...),
			wseg{At: 300 * ms, C2S: true, Flags: "R.", Seq: isnC + 101, Ack: isnS + 1})},
		{"closed", append(append(handshake(), data...),
			wseg{At: 300 * ms, C2S: true, Flags: "F.", Seq: isnC + 101, Ack: isnS + 1, Win: 502},
			wseg{At: 310 * ms, Flags: "F.", Seq: isnS + 1, Ack: isnC + 102, Win: 509},
			wseg{At: 320 * ms, C2S: true, Flags: ".", Seq: isnC + 102, Ack: isnS + 2, Win: 502})},
		{"mid-connection", data},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &wire{t: t}
			w.add(tc.segs...)
			d := w.plot()
			if len(d.Conns) != 1 {
				t.Fatalf("%d connections", len(d.Conns))
			}
			c := d.Conns[0]
			client, server := c.Flows[0], c.Flows[1]
			if client.Bytes != 100 || client.Retransmit != 1 || server.Bytes != 0 {
				t.Errorf("client sent %d bytes, %d retransmitted; server %d bytes: want 100, 1 and 0", client.Bytes, client.Retransmit, server.Bytes)
			}
		})
	}
}
