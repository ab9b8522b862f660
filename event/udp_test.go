package event_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/event"
)

// TestUDPEventString: a UDP event reads as the datagram and its outcome,
// and each UDP kind has a name of its own.
func TestUDPEventString(t *testing.T) {
	c := event.ConnID{Local: netip.MustParseAddrPort("192.0.2.1:53"), Remote: netip.MustParseAddrPort("192.0.2.2:40000")}
	k := event.SegKey{Len: 12}
	for _, tc := range []struct {
		ev   event.Event
		want string
	}{
		{event.Event{Kind: event.KindUDPDeliver, Conn: c, Key: k}, "192.0.2.1:53-192.0.2.2:40000 udp datagram 12 bytes delivered"},
		{event.Event{Kind: event.KindUDPDeliver, Conn: c, Key: k, Note: "to 2 of 2 sockets"}, "192.0.2.1:53-192.0.2.2:40000 udp datagram 12 bytes delivered (to 2 of 2 sockets)"},
		{event.Event{Kind: event.KindUDPNoPort, Conn: c, Key: k, Note: "answered ICMP port unreachable"}, "192.0.2.1:53-192.0.2.2:40000 udp datagram 12 bytes: no port: answered ICMP port unreachable"},
		{event.Event{Kind: event.KindUDPDrop, Conn: c, Key: k, Drop: event.DropBufferFull}, "192.0.2.1:53-192.0.2.2:40000 udp datagram 12 bytes dropped (receive buffer full)"},
		{event.Event{Kind: event.KindUDPSend, Conn: c, Key: k}, "192.0.2.1:53-192.0.2.2:40000 udp datagram 12 bytes sent"},
	} {
		if got := tc.ev.String(); got != tc.want {
			t.Errorf("%v: String() = %q, want %q", tc.ev.Kind, got, tc.want)
		}
	}
	names := map[string]bool{}
	for k := event.KindState; k <= event.KindUDPSend; k++ {
		n := k.String()
		if names[n] || n == "" || strings.HasPrefix(n, "Kind(") {
			t.Errorf("kind %d: name %q empty, unnamed or used twice", k, n)
		}
		names[n] = true
	}
}
