package tcp_test

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// icmpv4Watched lists the ICMP errors gVisor's IPv4 passes to no transport
// and the engine's ICMPv4 watcher takes (icmp4.go), with the errno
// Linux's tcp_v4_err gives each: EHOSTUNREACH for time exceeded, TTL
// (code 0) or reassembly (code 1) alike, and EPROTO for any parameter
// problem.
var icmpv4Watched = []struct {
	name string
	typ  header.ICMPv4Type
	code header.ICMPv4Code
	want syscall.Errno
}{
	{"time exceeded in transit", header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded, syscall.EHOSTUNREACH},
	{"time exceeded reassembling", header.ICMPv4TimeExceeded, header.ICMPv4ReassemblyTimeout, syscall.EHOSTUNREACH},
	{"parameter problem, pointer", header.ICMPv4ParamProblem, header.ICMPv4UnusedCode, syscall.EPROTO},
	{"parameter problem, bad length", header.ICMPv4ParamProblem, 2, syscall.EPROTO},
}

// TestICMPv4WatchedSynSent: a time exceeded or parameter problem quoting
// our SYN ends the dial, as Linux's tcp_v4_err ends one in SYN-SENT on
// any error it takes (RFC 1122 4.2.3.9 allows it), with the errno
// icmp_err_convert's caller gives it. One quoting another sequence number
// than ISS is a blind forgery (RFC 5927 4.1): counted, and the handshake
// goes on. gVisor hands neither type to TCP, so the dial waited out its
// SYN retransmissions for ETIMEDOUT.
func TestICMPv4WatchedSynSent(t *testing.T) {
	for _, tc := range icmpv4Watched {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.SynSent(t)
			p.InjectIPv4(icmpv4Packet(tc.typ, tc.code, quotedIPv4(quote(p, 0), nil, 0, 8)))
			p.WantState(ep, event.Closed)
			if _, err := ep.Established(); !errors.Is(err, tc.want) {
				t.Fatalf("dial error %v, want %v", err, tc.want)
			}
			p.ExpectNothing()
		})
		t.Run(tc.name+", quoting ISS+1", func(t *testing.T) {
			p, ep := tcptest.SynSent(t)
			p.InjectIPv4(icmpv4Packet(tc.typ, tc.code, quotedIPv4(quote(p, 1), nil, 0, 8)))
			p.ExpectNothing()
			p.WantState(ep, event.SynSent)
			wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), 1)
			p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
			p.WantState(ep, event.Established)
		})
	}
}

// TestICMPv4WatchedSynReceived: a listener's half-open entry quoted by a
// time exceeded or parameter problem ends, its SYN queue slot freed, as
// Linux's tcp_v4_err hands a request sock to tcp_req_err with abort set
// for both types (the peer cannot be reached, or cannot parse what we
// send).
func TestICMPv4WatchedSynReceived(t *testing.T) {
	for _, tc := range icmpv4Watched {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.SynReceived(t)
			p.InjectIPv4(icmpv4Packet(tc.typ, tc.code, quotedIPv4(quote(p, 0), nil, 0, 8)))
			p.ExpectNothing()
			p.WantState(ep, event.Closed)
			wantCount(t, "Listen.HalfOpenUnreachable", p.TCP.Stats().Listen.HalfOpenUnreachable.Load(), 1)
			if q := p.Listener.Queues(); q.SynQueueLen != 0 {
				t.Fatalf("SYN queue %d entries, want 0", q.SynQueueLen)
			}
		})
	}
}

// TestICMPv4OneOwner: every ICMPv4 error has one owner, gVisor's
// HandleError path for destination unreachable and the watcher for time
// exceeded and parameter problem, so none is acted on or counted twice:
// one out-of-window quote of each type counts one drop.
func TestICMPv4OneOwner(t *testing.T) {
	for _, tc := range []struct {
		typ  header.ICMPv4Type
		code header.ICMPv4Code
	}{
		{header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable},
		{header.ICMPv4DstUnreachable, header.ICMPv4FragmentationNeeded},
		{header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded},
		{header.ICMPv4ParamProblem, header.ICMPv4UnusedCode},
	} {
		p, ep := tcptest.Established(t)
		ep.Write([]byte("abc"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("abc")})
		p.InjectIPv4(icmpv4Packet(tc.typ, tc.code, quotedIPv4(quote(p, 9), nil, 0, 8)))
		wantCount(t, "Dropped(ICMP out of window)", p.TCP.Stats().Dropped(event.DropICMPOutOfWindow), 1)
		p.WantState(ep, event.Established)
	}
}

// TestICMPv4DropEvent: an ICMP error that gVisor discards before TCP sees
// it, here one quoting a 4-tuple no socket holds, is reported as a drop
// of the quoted connection, with the message it was.
func TestICMPv4DropEvent(t *testing.T) {
	var r events
	p, _ := tcptest.SynSent(t, tcptest.WithTCP(tcp.Options{Observer: r.observe}))
	p.InjectIPv4(icmpError(header.ICMPv4PortUnreachable, icmpQuote{src: 1, dst: 2, seq: 3}))
	drops := r.of(event.KindDrop)
	want := event.ConnID{Local: netip.AddrPortFrom(tcptest.StackAddr, 1), Remote: netip.AddrPortFrom(tcptest.PeerAddr, 2)}
	if len(drops) != 1 || drops[0].Drop != event.DropICMPNoConnection || drops[0].Conn != want ||
		!strings.Contains(drops[0].Segment.String(), "ICMP error (destination unreachable, code 3) quoting 1 > 2 seq 3") {
		t.Fatalf("drop events %v, want one ICMP no-connection drop for %v", drops, want)
	}
}
