package tcp_test

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestSynCookieMSS6: a SYN cookie carries the peer's MSS as an index into
// a table of four, and over IPv6 the table is Linux's for IPv6
// (net/ipv6/syncookies.c msstab: 1280, 1480, 1500 and 9000 less 60), not
// IPv4's {536, 1300, 1440, 1460}: a peer behind the minimum IPv6 MTU,
// announcing 1220, is sent 1220-byte segments, not 536-byte ones, and a
// SYN without the option is taken as 1220 (RFC 9293 3.7.1: the default
// send MSS is 1220 for IPv6), as takeSynOptions takes it without cookies.
func TestSynCookieMSS6(t *testing.T) {
	for _, tc := range []struct{ mss, want uint16 }{
		{1220, 1220}, {1400, 1220}, {1420, 1420}, {1440, 1440}, {0, 1220},
	} {
		t.Run(strconv.Itoa(int(tc.mss)), func(t *testing.T) {
			p := newPeer6(t, tcp.Options{SynQueueLimit: 1, NoTimestamps: true})
			l, err := p.TCP.Listen(netip.AddrPortFrom(stackAddr6, tcptest.ListenPort), 16)
			if err != nil {
				t.Fatal(err)
			}
			p.PeerPort = 50000 // a half-open entry fills the SYN queue
			p.inject(seg{Flags: "S", Seq: 0, MSS: 1440})
			if o, ok := p.next(); !ok || o.flags != "S." {
				t.Fatalf("SYN answered with %v, %v; want SYN-ACK", o, ok)
			}
			p.PeerPort = 40001
			p.inject(seg{Flags: "S", Seq: 0, MSS: tc.mss})
			if o, ok := p.next(); !ok || o.flags != "S." {
				t.Fatalf("SYN answered with %v, %v; want the cookie SYN-ACK", o, ok)
			}
			if n := p.TCP.Stats().Listen.CookiesSent.Load(); n != 1 {
				t.Fatalf("CookiesSent %d, want 1", n)
			}
			p.inject(seg{Flags: ".", Seq: 1, Ack: 1})
			ep, err := l.Accept()
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			if got := ep.Info().SndMSS; got != int(tc.want) {
				t.Errorf("send MSS %d after a cookie for a peer's %d, want %d", got, tc.mss, tc.want)
			}
		})
	}
}
