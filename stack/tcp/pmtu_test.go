package tcp_test

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// fragNeeded is an ICMPv4 "fragmentation needed" (RFC 1191) from a router
// between the stack and the peer, reporting next-hop MTU mtu and quoting
// q.
func fragNeeded(q icmpQuote, mtu uint16) []byte {
	pkt := icmpError(header.ICMPv4FragmentationNeeded, q)
	ic := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	ic.SetMTU(mtu)
	ic.SetChecksum(0)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	return pkt
}

// TestPathMTUFragNeeded: three full segments are in flight when a router
// reports a 1280-byte next hop, quoting the first. The engine checks the
// quote (its sequence number is in flight), cuts the MSS to 1280 - 20 -
// 20 = 1240 at once and sends the three again, each cut to fit (Linux
// tcp_simple_retransmit); new data goes out at the new size, and the
// window is not reduced: the drops were not congestion.
func TestPathMTUFragNeeded(t *testing.T) {
	var pmtu []event.Event
	p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{Observer: func(ev event.Event) {
		if ev.Kind == event.KindPathMTU {
			pmtu = append(pmtu, ev)
		}
	}}))
	data := sendSegments(t, p, ep, 3)
	cwnd := ep.Info().Cwnd
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	var got []byte
	for _, s := range p.Drain() {
		if s.Len > 1240 || s.Len+40 > 1280 {
			t.Errorf("segment %d:%d of %d bytes does not fit 1280", s.Seq, s.Seq+uint32(s.Len), s.Len)
		}
		if int(s.Seq)-1 == len(got) {
			got = append(got, s.Payload...)
		}
	}
	if string(got) != string(data) {
		t.Errorf("resent %d bytes, want the %d in flight, in order", len(got), len(data))
	}
	i := ep.Info()
	if i.SndMSS != 1240 || i.Cwnd != cwnd || i.PathMTU != 1280 {
		t.Errorf("after the ICMP: MSS %d, cwnd %d, path MTU %d; want 1240, %d, 1280", i.SndMSS, i.Cwnd, i.PathMTU, cwnd)
	}
	if len(pmtu) != 1 || p.TCP.Stats().PathMTUReductions.Load() != 1 {
		t.Errorf("path MTU events %v, reductions %d; want one", pmtu, p.TCP.Stats().PathMTUReductions.Load())
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(4)})
	ep.Write(payload(0, 3000))
	p.Expect(seg{Flags: ".", Seq: sb(4), Ack: 1, Len: 1240})
	p.Expect(seg{Flags: "P.", Seq: sb(4) + 1240, Ack: 1, Len: 1240})
	p.ExpectNothing() // the last 520 bytes wait for an ACK: Nagle
}

// TestPathMTUNoCongestion: the segments a fragmentation needed cut and
// sent again (Linux's tcp_simple_retransmit, which keeps ssthresh) are
// acknowledged one piece at a time. The drops were not congestion: no
// fast recovery starts on the way, and neither cwnd nor ssthresh falls.
func TestPathMTUNoCongestion(t *testing.T) {
	p, ep := rttPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 10)
	before := ep.Info()
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	out := p.Drain()
	for k := 0; k < len(out) && k < 100; k++ {
		p.Inject(seg{Flags: ".", Seq: 1, Ack: out[k].Seq + uint32(out[k].Len)})
		out = append(out, p.Drain()...)
	}
	i := ep.Info()
	if n := p.TCP.Stats().FastRecoveries.Load(); n != 0 || i.Cwnd < before.Cwnd || i.Ssthresh < before.Ssthresh {
		t.Errorf("after the pieces were acknowledged: %d fast recoveries, cwnd %d (was %d), ssthresh %d (was %d), %s",
			n, i.Cwnd, before.Cwnd, i.Ssthresh, before.Ssthresh, i.CAState)
	}
}

// TestPathMTUFragNeededSynSent: a fragmentation needed quoting our SYN (at
// ISS, RFC 5927 4.1) in SYN-SENT is taken: the handshake goes on, and the
// MSS it agrees is bounded by the MTU reported.
func TestPathMTUFragNeededSynSent(t *testing.T) {
	p := tcptest.New(t)
	ep := p.Connect()
	p.Expect(seg{Flags: "S", Seq: 0})
	p.InjectIPv4(fragNeeded(quote(p, 0), 1280))
	p.ExpectNothing()
	p.WantState(ep, event.SynSent)
	p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	if i := ep.Info(); i.SndMSS != 1240 || i.PathMTU != 1280 {
		t.Errorf("after the handshake: MSS %d, path MTU %d; want 1240, 1280", i.SndMSS, i.PathMTU)
	}
	ep.Write(payload(0, 3000))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1240})
	p.Expect(seg{Flags: "P.", Seq: 1241, Ack: 1, Len: 1240})
}

// TestPathMTUForgedIgnored: an ICMP fragmentation-needed quoting a
// sequence number that is not in flight (a blind forgery, RFC 5927 4.1)
// changes nothing: it is counted as a drop and the MSS stays. (One
// reporting an MTU below IPv4's minimum is taken as no MTU at all:
// TestPathMTUFragNeededNoMTU.)
func TestPathMTUForgedIgnored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		seq    uint32
		mtu    uint16
		reason event.DropReason
	}{
		{"sequence not in flight", 1 << 20, 1280, event.DropICMPOutOfWindow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			sendSegments(t, p, ep, 2)
			p.InjectIPv4(fragNeeded(quote(p, tc.seq), tc.mtu))
			p.ExpectNothing()
			if i := ep.Info(); i.SndMSS != 1460 {
				t.Errorf("MSS %d after a forged ICMP, want 1460", i.SndMSS)
			}
			if n := p.TCP.Stats().Dropped(tc.reason); n != 1 {
				t.Errorf("Dropped(%v) = %d, want 1", tc.reason, n)
			}
		})
	}
}

// TestPathMTUFragNeededNoMTU: a fragmentation needed whose Next-Hop MTU
// is zero, from a router older than RFC 1191 (7: the host must still
// reduce its estimate, "at least" as far as a plateau), or below IPv4's
// minimum of 68 bytes, which gVisor hands over as zero too, is taken as
// Linux takes it: __ip_rt_update_pmtu makes any MTU below ip_rt_min_pmtu
// min(old_mtu, 552), locked, so that packets leave without DF. The two
// segments in flight go again in 552-byte packets without DF. Dropped,
// as it was, the report left the full-sized segments to that router: a
// black hole.
func TestPathMTUFragNeededNoMTU(t *testing.T) {
	for _, tc := range []struct {
		name string
		mtu  uint16
	}{
		{"no MTU", 0},
		{"below IPv4's minimum", 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			sendSegments(t, p, ep, 2)
			p.InjectIPv4(fragNeeded(quote(p, 1), tc.mtu))
			wantLockedAt552(t, p, ep)
			if n := p.TCP.Stats().Dropped(event.DropICMPBadMTU); n != 0 {
				t.Errorf("Dropped(%v) = %d, want 0", event.DropICMPBadMTU, n)
			}
		})
	}
}

// TestPathMTURemembered: a later connection to the same peer starts with
// the path MTU learned earlier (Linux keeps it in the route for 10
// minutes), so its first segments already fit.
func TestPathMTURemembered(t *testing.T) {
	p, ep := tcptest.Established(t)
	sendSegments(t, p, ep, 1)
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	p.Drain()
	p.PeerPort++
	p.SetStackISS(0, false)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Drain()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep2, err := p.Listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if mss := ep2.Info().SndMSS; mss != 1240 {
		t.Errorf("the next connection's MSS is %d, want 1240", mss)
	}
}

// TestPathMTUNotRaised: a report of a next hop larger than the path MTU
// learned (stale, or forged with a sequence number in flight) must not
// raise it: RFC 1191 5 and RFC 8201 4, "a host MUST NOT increase its
// estimate of the Path MTU in response to the contents of a Datagram Too
// Big message"; Linux's __ip_rt_update_pmtu returns when old_mtu < mtu.
// After a report of 1280, one of 1400 is dropped and counted: nothing is
// sent, the connection keeps its MSS, and the next connection to the peer
// starts at 1280 too.
func TestPathMTUNotRaised(t *testing.T) {
	p, ep := tcptest.Established(t)
	sendSegments(t, p, ep, 3)
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	p.Drain() // the three, cut to 1240 (TestPathMTUFragNeeded)
	p.InjectIPv4(fragNeeded(quote(p, 1), 1400))
	p.ExpectNothing()
	if i := ep.Info(); i.PathMTU != 1280 || i.SndMSS != 1240 {
		t.Errorf("after a report of 1400: path MTU %d, MSS %d; want 1280, 1240", i.PathMTU, i.SndMSS)
	}
	if n := p.TCP.Stats().Dropped(event.DropICMPBadMTU); n != 1 {
		t.Errorf("Dropped(%v) = %d, want 1", event.DropICMPBadMTU, n)
	}
	p.PeerPort++
	ep2 := p.Established()
	if i := ep2.Info(); i.SndMSS != 1240 || i.PathMTU != 1280 {
		t.Errorf("the next connection: MSS %d, path MTU %d; want 1240, 1280", i.SndMSS, i.PathMTU)
	}
}

// TestPathMTUExpires: a path MTU learned from ICMP is kept 10 minutes
// (RFC 1191 6.3, RFC 8201 4: then the estimate goes up again; Linux's
// ip_rt_mtu_expires), and the connections whose MSS it bounds get their
// MSS back then, as Linux's tcp_current_mss sees the route's MTU differ
// from icsk_pmtu_cookie and calls tcp_sync_mss: the one that took the
// report, and one opened to the peer meanwhile, which started at the
// learned size. Before, the table forgot the entry but the connections
// kept their cut MSS for good.
func TestPathMTUExpires(t *testing.T) {
	var notes []string
	p, ep := tcptest.Established(t, tcptest.WithTCP(mtuNotes(&notes)))
	sendSegments(t, p, ep, 1)
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1240})
	p.Expect(seg{Flags: "P.", Seq: 1241, Ack: 1, Len: 220})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(2)})
	iss, _ := p.StackISS()

	p.Advance(5 * time.Minute)
	p.PeerPort++
	ep2 := p.Established()
	ep2.Write(payload(0, 2*1240))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1240})
	p.Expect(seg{Flags: "P.", Seq: 1241, Ack: 1, Len: 1240})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 2481})

	p.Advance(5 * time.Minute) // the report is 10 minutes old
	ep2.Write(payload(0, 2*1460))
	p.Expect(seg{Flags: ".", Seq: 2481, Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: 3941, Ack: 1, Len: 1460})
	p.PeerPort--
	p.SetStackISS(iss, true)
	ep.Write(payload(0, 2*1460))
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Len: 1460})
	p.Expect(seg{Flags: "P.", Seq: sb(3), Ack: 1, Len: 1460})
	for k, e := range []*tcp.Endpoint{ep, ep2} {
		if i := e.Info(); i.SndMSS != 1460 || i.PathMTU != 1500 {
			t.Errorf("connection %d: MSS %d, path MTU %d; want 1460, 1500", k+1, i.SndMSS, i.PathMTU)
		}
	}
	wantNotes(t, notes, "path MTU 1280 (ICMP): MSS 1460 → 1240",
		"path MTU from ICMP expired: path MTU 1500, MSS 1240 → 1460", "path MTU from ICMP expired: path MTU 1500, MSS 1240 → 1460")
}

// ipv4Out is a packet the stack sent, as the IP layer sees it.
type ipv4Out struct {
	size int    // total length
	df   bool   // Don't Fragment
	seq  uint32 // the TCP sequence number, absolute
}

// drainIPv4 reads the packets the stack sent, raw: the peer learns
// nothing from them (the stack's ISS from its SYN-ACK).
func drainIPv4(p *tcptest.Peer) []ipv4Out {
	var out []ipv4Out
	for range 1 << 10 {
		pkt := p.Link.Read()
		if pkt == nil {
			break
		}
		v := pkt.ToView()
		ip := header.IPv4(v.AsSlice())
		out = append(out, ipv4Out{size: int(ip.TotalLength()), df: ip.Flags()&header.IPv4FlagDontFragment != 0,
			seq: header.TCP(ip.Payload()).SequenceNumber()})
		v.Release()
		pkt.DecRef()
	}
	return out
}

// wantLockedAt552 reads what the stack sent after a report that locks
// the path MTU at IPv4's min_pmtu: the two segments in flight again, cut
// to packets of at most 552 bytes without DF, and the path MTU and MSS
// that say so.
func wantLockedAt552(t *testing.T, p *tcptest.Peer, ep *tcp.Endpoint) {
	t.Helper()
	out := drainIPv4(p)
	if len(out) < 2 {
		t.Fatalf("sent %v after the report, want the two segments in flight again", out)
	}
	for _, o := range out {
		if o.size > 552 || o.df {
			t.Errorf("a %d-byte packet, DF %v; want at most 552 bytes, no DF", o.size, o.df)
		}
	}
	if i := ep.Info(); i.PathMTU != 552 || i.SndMSS != 512 {
		t.Errorf("path MTU %d, MSS %d; want 552, 512", i.PathMTU, i.SndMSS)
	}
}

// TestPathMTUBelowMinimumLocked: a router reports a real next hop of 300
// bytes (not below IPv4's 68, so RFC 1191 would have it honoured). As
// Linux's __ip_rt_update_pmtu, the path MTU becomes its min_pmtu, 552,
// and is locked (fnhe_mtu_locked), so that ip_dont_fragment sends without
// DF and the 300-byte hop fragments the packets: the two segments in
// flight go again, cut to 552-byte packets without DF; new data does too,
// on this connection and the next to the peer. A second report changes
// nothing while the lock holds (ip_mtu_locked). Once the entry expires
// (10 minutes) DF is back. With DF set the small hop would drop every
// packet again, and the connection stall.
func TestPathMTUBelowMinimumLocked(t *testing.T) {
	p, ep := tcptest.Established(t)
	sendSegments(t, p, ep, 2)
	p.InjectIPv4(fragNeeded(quote(p, 1), 300))
	wantLockedAt552(t, p, ep)
	p.InjectIPv4(fragNeeded(quote(p, 1), 300))
	if out := drainIPv4(p); len(out) != 0 {
		t.Errorf("sent %v after a second report while the lock holds", out)
	}
	if n := p.TCP.Stats().Dropped(event.DropICMPBadMTU); n != 1 {
		t.Errorf("Dropped(%v) = %d after the second report, want 1", event.DropICMPBadMTU, n)
	}
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(3)})
	ep.Write(payload(0, 100))
	if out := drainIPv4(p); len(out) != 1 || out[0].df {
		t.Errorf("new data sent as %v, want one packet without DF", out)
	}
	iss, _ := p.StackISS()
	p.PeerPort++
	p.SetStackISS(0, false)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	synAck := drainIPv4(p)
	if len(synAck) != 1 || synAck[0].df {
		t.Fatalf("the SYN-ACK to the next connection went as %v, want one packet without DF", synAck)
	}
	p.SetStackISS(synAck[0].seq, true)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep2, err := p.Listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if i := ep2.Info(); i.SndMSS != 512 {
		t.Errorf("the next connection's MSS is %d, want 512", i.SndMSS)
	}
	p.PeerPort--
	p.SetStackISS(iss, true)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: sb(3) + 100})
	p.Advance(10 * time.Minute)
	ep.Write(payload(0, 100))
	if out := drainIPv4(p); len(out) != 1 || !out[0].df {
		t.Errorf("10 minutes after the report, new data sent as %v, want one packet with DF", out)
	}
}

// TestDontFragment: every IPv4 segment leaves with DF set (RFC 1191), so
// routers report a smaller MTU instead of fragmenting; on a route that
// locks its MTU (`mtu lock`), without, as Linux's ip_dont_fragment has
// it, and with a route's MTU that is not locked, with DF again.
func TestDontFragment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics *stack.RouteMetrics
		df      bool
	}{
		{"no metrics", nil, true},
		{"mtu 1400", &stack.RouteMetrics{MTU: 1400}, true},
		{"mtu lock 1400", &stack.RouteMetrics{MTU: 1400, LockMTU: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			if tc.metrics != nil {
				setMetrics(t, p, *tc.metrics)
			}
			ep.Write([]byte("x"))
			pkt := p.Link.Read()
			if pkt == nil {
				t.Fatal("nothing sent")
			}
			defer pkt.DecRef()
			v := pkt.ToView()
			defer v.Release()
			if ip := header.IPv4(v.AsSlice()); (ip.Flags()&header.IPv4FlagDontFragment != 0) != tc.df {
				t.Errorf("IPv4 flags %#x: DF %v, want %v", ip.Flags(), !tc.df, tc.df)
			}
		})
	}
}

// twoToPeer is two connections to the same peer, from its ports 40000
// (ep, current on return) and 40001 (ep2), with the stack's ISS of each
// for tcptest's relative numbers: switch with use.
func twoToPeer(t *testing.T, opts ...tcptest.Option) (p *tcptest.Peer, ep, ep2 *tcp.Endpoint, use func(k int)) {
	t.Helper()
	p, ep = tcptest.Established(t, opts...)
	iss1, _ := p.StackISS()
	p.PeerPort++
	ep2 = p.Established()
	iss2, _ := p.StackISS()
	use = func(k int) {
		if k == 1 {
			p.PeerPort = 40000
			p.SetStackISS(iss1, true)
			return
		}
		p.PeerPort = 40001
		p.SetStackISS(iss2, true)
	}
	use(1)
	return p, ep, ep2, use
}

// TestPathMTUOtherConnections: a fragmentation needed that one connection
// takes lowers the path MTU to the peer for every connection to it, and
// each cuts its MSS at its next transmission, without waiting for an ICMP
// of its own, as Linux's do: the path MTU lives in the route (the
// exception's fnhe), and tcp_current_mss calls tcp_sync_mss once dst_mtu
// differs from icsk_pmtu_cookie. The two full segments the second
// connection had in flight exceeded the path MTU as well, with DF: they
// are sent again cut to fit, as when the connection takes the ICMP itself
// (tcp_simple_retransmit) or its route's MTU metric falls. Before, the
// second connection went on sending 1460-byte segments into the 1280-byte
// hop until an ICMP of its own.
func TestPathMTUOtherConnections(t *testing.T) {
	var notes []string
	p, ep, ep2, use := twoToPeer(t, tcptest.WithTCP(mtuNotes(&notes)))
	use(2)
	sendSegments(t, p, ep2, 2) // in flight, dropped by the router
	use(1)
	sendSegments(t, p, ep, 1)
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1240})
	p.Expect(seg{Flags: "P.", Seq: 1241, Ack: 1, Len: 220})
	use(2)
	ep2.Write(payload(2*1460, 2*1460))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1240, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 1241, Ack: 1, Len: 220, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1240, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 2701, Ack: 1, Len: 220, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 2921, Ack: 1, Len: 1240, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 4161, Ack: 1, Len: 1240, Check: tcptest.IgnorePSH})
	p.ExpectNothing() // the last 440 bytes wait for an ACK: Nagle
	if i := ep2.Info(); i.SndMSS != 1240 || i.PathMTU != 1280 {
		t.Errorf("the other connection: MSS %d, path MTU %d; want 1240, 1280", i.SndMSS, i.PathMTU)
	}
	wantNotes(t, notes, "path MTU 1280 (ICMP): MSS 1460 → 1240",
		"path MTU 1280 (ICMP to another connection to the peer): MSS 1460 → 1240, 2 segments sent again")
}

// TestPathMTUOtherConnectionsOwnICMP: the same router's report about the
// second connection's own segment comes before that connection sends
// again. The path MTU it reports is the one the first report taught, no
// smaller, but the connection's MSS still exceeds it: it is taken, the
// MSS cut and the segments in flight sent again to fit, as Linux's
// tcp_v4_mtu_reduced compares the reported MTU with the socket's own
// icsk_pmtu_cookie, not with the route's. Before, the report was dropped
// as "not below the path MTU", and the connection's retransmissions went
// on at 1460 bytes: a black hole.
func TestPathMTUOtherConnectionsOwnICMP(t *testing.T) {
	p, ep, ep2, use := twoToPeer(t)
	use(2)
	sendSegments(t, p, ep2, 2)
	use(1)
	sendSegments(t, p, ep, 1)
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	p.Drain()
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1461}) // the first connection is done
	use(2)
	p.InjectIPv4(fragNeeded(quote(p, 1), 1280))
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Len: 1240, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 1241, Ack: 1, Len: 220, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 1461, Ack: 1, Len: 1240, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: 2701, Ack: 1, Len: 220, Check: tcptest.IgnorePSH})
	p.ExpectNothing()
	p.Advance(3 * time.Second) // retransmission timeouts: still cut to fit
	for _, s := range p.Drain() {
		if s.Len > 1240 {
			t.Errorf("a retransmission of %d bytes does not fit 1280", s.Len)
		}
	}
	if i := ep2.Info(); i.SndMSS != 1240 {
		t.Errorf("the other connection's MSS %d, want 1240", i.SndMSS)
	}
	if n := p.TCP.Stats().Dropped(event.DropICMPBadMTU); n != 0 {
		t.Errorf("Dropped(%v) = %d, want 0", event.DropICMPBadMTU, n)
	}
}
