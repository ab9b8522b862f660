package pcap

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestAnnotationText: how one event reads as a packet comment.
func TestAnnotationText(t *testing.T) {
	for _, tc := range []struct {
		a    annotation
		want string
	}{
		{annotation{kind: tcp.EventSend, send: tcp.SendSynAck}, "SYN-ACK"},
		{annotation{kind: tcp.EventSend, send: tcp.SendSynAckRetransmit, attempt: 2}, "SYN-ACK retransmit #2"},
		{annotation{kind: tcp.EventSend, send: tcp.SendKeepalive, attempt: 3}, "keepalive"},
		{annotation{kind: tcp.EventDrop, drop: tcp.DropAcceptQueueFull}, "dropped: accept queue full"},
		{annotation{kind: tcp.EventReceive, detail: "out of order: held"}, "out of order: held"},
		{annotation{kind: tcp.EventState, from: tcp.SynReceived, to: tcp.Established}, "SYN-RECEIVED → ESTABLISHED"},
		{annotation{kind: tcp.EventState, from: tcp.CloseWait, to: tcp.LastAck, detail: "user close"}, "CLOSE-WAIT → LAST-ACK (user close)"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("%+v reads %q, want %q", tc.a, got, tc.want)
		}
	}
}
