package tcp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Explicit Congestion Notification (RFC 3168, ecn.go): the handshake's
// agreement, ECT(0) on new data only, the receiver's echo of a CE mark
// until the peer's CWR, and the sender's CWR episode.

// ecnPeer is rttPeer for a peer whose SYN asks for ECN (ECE and CWR):
// the SYN-ACK agrees (ECE), and ECN is in force.
func ecnPeer(t *testing.T, o tcp.Options, opts ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint) {
	t.Helper()
	p, l := tcptest.Listen(t, append(opts, tcptest.WithTCP(o))...)
	p.Inject(seg{Flags: "SEW", Seq: 0, MSS: 1460, SACKPerm: true})
	p.Expect(seg{Flags: "SE.", Seq: 0, Ack: 1, Check: tcptest.CheckECN})
	p.Advance(rtt)
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if i := ep.Info(); !i.ECN || i.RTT != rtt {
		t.Fatalf("after the handshake: ECN %v, SRTT %v; want true, %v", i.ECN, i.RTT, rtt)
	}
	return p, ep
}

// eceAck is sackAck with ECE: the peer echoes a CE mark.
func eceAck(ack int, blocks ...[2]int) seg {
	s := sackAck(ack, blocks...)
	s.Flags = "E."
	return s
}

// TestECNPassiveOpen: a listener agrees to ECN when the SYN asks with
// ECE and CWR (RFC 3168 6.1.1), in the default mode as in ECNOn, and
// not otherwise.
func TestECNPassiveOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   tcp.ECNMode
		syn    seg
		synAck string
	}{
		{"asks", tcp.ECNPassive, seg{Flags: "SEW"}, "SE."},
		{"asks, mode on", tcp.ECNOn, seg{Flags: "SEW"}, "SE."},
		{"asks, mode off", tcp.ECNOff, seg{Flags: "SEW"}, "S."},
		{"does not ask", tcp.ECNPassive, seg{Flags: "S"}, "S."},
		{"ECE alone", tcp.ECNPassive, seg{Flags: "SE"}, "S."},
		{"CWR alone", tcp.ECNPassive, seg{Flags: "SW"}, "S."},
		// A SYN must be not-ECT (6.1.1); one that is ECT came through a
		// network that rewrites the field (Linux's
		// tcp_ecn_create_request).
		{"asks, SYN ECT(0)", tcp.ECNPassive, seg{Flags: "SEW", ECN: tcptest.ECNECT0}, "S."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, l := tcptest.Listen(t, tcptest.WithTCP(tcp.Options{ECN: tc.mode}))
			syn := tc.syn
			syn.MSS = 1460
			p.Inject(syn)
			p.Expect(seg{Flags: tc.synAck, Seq: 0, Ack: 1, Check: tcptest.CheckECN})
			p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
			ep, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			want := tc.synAck == "SE."
			if got := ep.Info().ECN; got != want {
				t.Errorf("ECN %v, want %v", got, want)
			}
			if n := p.TCP.Stats().ECNConnections.Load(); n != map[bool]uint64{true: 1}[want] {
				t.Errorf("ECNConnections %d", n)
			}
		})
	}
}

// TestECNActiveOpen: with ECNOn the SYN asks (ECE and CWR), and ECN is
// in force when the SYN-ACK agrees with ECE alone; in the default mode
// the SYN does not ask, and a SYN-ACK's ECE means nothing.
func TestECNActiveOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   tcp.ECNMode
		syn    string
		synAck string
		want   bool
	}{
		{"agreed", tcp.ECNOn, "SEW", "SE.", true},
		{"peer without ECN", tcp.ECNOn, "SEW", "S.", false},
		{"peer reflects both flags", tcp.ECNOn, "SEW", "SEW.", false},
		{"not asked", tcp.ECNPassive, "S", "SE.", false},
		{"off", tcp.ECNOff, "S", "SE.", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tcptest.New(t, tcptest.WithTCP(tcp.Options{ECN: tc.mode}))
			ep := p.Connect()
			p.Expect(seg{Flags: tc.syn, Seq: 0, Check: tcptest.CheckECN})
			p.Inject(seg{Flags: tc.synAck, Seq: 0, Ack: 1, MSS: 1460})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Check: tcptest.CheckECN})
			if got := ep.Info().ECN; got != tc.want {
				t.Errorf("ECN %v, want %v", got, tc.want)
			}
			if _, err := ep.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			ecn := tcptest.ECNNotECT
			if tc.want {
				ecn = tcptest.ECNECT0
			}
			p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hello"), ECN: ecn, Check: tcptest.CheckECN})
		})
	}
}

// TestECNEceWithoutAgreement: our SYN asked for ECN and the peer's
// SYN-ACK did not agree, so ECN is not in force (RFC 3168 6.1.1): the
// data goes not-ECT, and an ECE the peer sends anyway reduces nothing
// and draws no CWR.
func TestECNEceWithoutAgreement(t *testing.T) {
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{ECN: tcp.ECNOn}))
	ep := p.Connect()
	p.Expect(seg{Flags: "SEW", Seq: 0, Check: tcptest.CheckECN})
	p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1, MSS: 1460})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Check: tcptest.CheckECN})
	ep.Write([]byte("hello"))
	p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hello"), Check: tcptest.CheckECN})
	p.Inject(seg{Flags: "E.", Seq: 1, Ack: 6})
	ep.Write([]byte("again"))
	p.Expect(seg{Flags: "P.", Seq: 6, Ack: 1, Payload: []byte("again"), Check: tcptest.CheckECN})
	if n := p.TCP.Stats().ECNReductions.Load(); n != 0 {
		t.Errorf("ECNReductions %d without ECN", n)
	}
}

// TestECNSynRetransmit: a SYN sent again goes without ECE and CWR, in
// case a middlebox drops ECN-setup SYNs (RFC 3168 6.1.1.1; Linux's
// tcp_ecn_clear_syn). The first SYN's request stands: a SYN-ACK that
// agrees puts ECN in force, since the peer may have seen that SYN.
func TestECNSynRetransmit(t *testing.T) {
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{ECN: tcp.ECNOn}))
	ep := p.Connect()
	p.Expect(seg{Flags: "SEW", Seq: 0})
	p.Advance(1e9) // the initial RTO
	p.Expect(seg{Flags: "S", Seq: 0})
	p.Inject(seg{Flags: "SE.", Seq: 0, Ack: 1, MSS: 1460})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
	if !ep.Info().ECN {
		t.Error("ECN off after a SYN-ACK that agrees to the first SYN's request")
	}
}

// TestECNNotECT: only new data is ECT(0). A pure ACK, a retransmission
// and a FIN without text go not-ECT (RFC 3168 6.1.4, 6.1.5), so that
// their loss, not a mark, tells of congestion.
func TestECNNotECT(t *testing.T) {
	p, ep := ecnPeer(t, tcp.Options{})
	data := payload(0, 2*1460)
	if _, err := ep.Write(data); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460, ECN: tcptest.ECNECT0, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: "P.", Seq: sb(2), Ack: 1, Len: 1460, ECN: tcptest.ECNECT0})
	// The peer's text, acknowledging the first segment, draws a pure
	// ACK, not-ECT.
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: sb(2), Payload: []byte("x")})
	p.Advance(40e6) // the delayed-ACK time at most
	p.Expect(seg{Flags: ".", Seq: sb(3), Ack: 2, Check: tcptest.CheckECN})
	// The retransmission timeout sends the second segment again,
	// not-ECT.
	p.Advance(200e6) // the minimum RTO, once
	p.Expect(seg{Flags: "P.", Seq: sb(2), Ack: 2, Len: 1460, Check: tcptest.CheckECN | tcptest.IgnorePSH})
	p.Inject(seg{Flags: ".", Seq: 2, Ack: sb(3)})
	if err := ep.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "F.", Seq: sb(3), Ack: 2, Check: tcptest.CheckECN})
}

// TestECNEcho: text marked CE draws an ACK at once with ECE, and every
// ACK carries ECE until text with CWR arrives, whose ACK goes at once
// without it (RFC 3168 6.1.3; Linux's tcp_ecn_check_ce and
// tcp_ecn_accept_cwr).
func TestECNEcho(t *testing.T) {
	rec := &events{}
	p, ep := ecnPeer(t, tcp.Options{Observer: rec.observe})
	// First text, not marked: a plain ACK.
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100), ECN: tcptest.ECNECT0})
	p.Advance(40e6) // the delayed-ACK time
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 101})
	// Marked CE: ECE at once.
	p.Inject(seg{Flags: "P.", Seq: 101, Ack: 1, Payload: payload(0, 100), ECN: tcptest.ECNCE})
	p.Expect(seg{Flags: "E.", Seq: 1, Ack: 201})
	// Not marked: ECE still, until the sender's CWR.
	p.Inject(seg{Flags: "P.", Seq: 201, Ack: 1, Payload: payload(0, 100), ECN: tcptest.ECNECT0})
	p.Expect(seg{Flags: "E.", Seq: 1, Ack: 301})
	// Our own data carries ECE as well.
	if _, err := ep.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "EP.", Seq: 1, Ack: 301, Payload: []byte("reply"), ECN: tcptest.ECNECT0})
	// CWR: the echo ends, and the ACK goes at once.
	p.Inject(seg{Flags: "WP.", Seq: 301, Ack: 6, Payload: payload(0, 100), ECN: tcptest.ECNECT0})
	p.Expect(seg{Flags: ".", Seq: 6, Ack: 401})
	i := ep.Info()
	if i.ECNEcho || !i.ECNSeen {
		t.Errorf("ECNEcho %v, ECNSeen %v; want false, true", i.ECNEcho, i.ECNSeen)
	}
	if n := p.TCP.Stats().CEReceived.Load(); n != 1 {
		t.Errorf("CEReceived %d, want 1", n)
	}
	p.TCP.SyncEvents()
	if evs := rec.of(event.KindRecovery); len(evs) != 1 || evs[0].Note != "ECN: text arrived marked CE (Congestion Experienced); ECE on every ACK until the peer's CWR" {
		t.Errorf("recovery events %v; want one for the CE mark", evs)
	}
}

// TestECNEchoHandshakeAck: text marked CE on the ACK that completes a
// passive open is text like any other (RFC 3168 6.1.3): its ACK carries
// ECE.
func TestECNEchoHandshakeAck(t *testing.T) {
	p, l := tcptest.Listen(t)
	p.Inject(seg{Flags: "SEW", Seq: 0, MSS: 1460, SACKPerm: true})
	p.Expect(seg{Flags: "SE.", Seq: 0, Ack: 1, Check: tcptest.CheckECN})
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100), ECN: tcptest.ECNCE})
	ep, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p.Advance(200 * time.Millisecond)
	p.Expect(seg{Flags: "E.", Seq: 1, Ack: 101})
	if i := ep.Info(); !i.ECNEcho {
		t.Errorf("ECNEcho %v after CE-marked text", i.ECNEcho)
	}
}

// TestECNCongestionWindowReduced: an ACK with ECE puts the sender in CWR
// (Linux's tcp_enter_cwr): ssthresh from CUBIC, PRR brings the window
// down with nothing deemed lost or retransmitted, the next new segment
// carries CWR, and a second ECE within the window changes nothing (RFC
// 3168 6.1.2). The episode ends once an ACK passes the RecoveryPoint.
func TestECNCongestionWindowReduced(t *testing.T) {
	rec := &events{}
	p, ep := ecnPeer(t, tcp.Options{Observer: rec.observe})
	sendSegments(t, p, ep, 10)
	before := ep.Info()
	more := payload(10*1460, 10*1460)
	if _, err := ep.Write(more); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing() // the window is full

	p.Advance(rtt)
	p.Inject(eceAck(3))
	i := ep.Info()
	st := p.TCP.Stats()
	if i.CAState != "CWR" || i.Ssthresh != 7*1460 || st.ECNReductions.Load() != 1 {
		t.Fatalf("after ECE: %s, ssthresh %d, ECNReductions %d; want CWR, %d, 1", i.CAState, i.Ssthresh, st.ECNReductions.Load(), 7*1460)
	}
	// PRR: 8 segments in flight, above ssthresh 7: 2 delivered let
	// ceil(2·7/10) = 2 go. The first carries CWR, and only it.
	p.Expect(seg{Flags: "W.", Seq: sb(11), Ack: 1, Len: 1460, ECN: tcptest.ECNECT0, Check: tcptest.IgnorePSH})
	p.Expect(seg{Flags: ".", Seq: sb(12), Ack: 1, Len: 1460, ECN: tcptest.ECNECT0, Check: tcptest.IgnorePSH})
	p.ExpectNothing()

	// A second ECE in the same window: no second reduction.
	p.Inject(eceAck(5))
	if i := ep.Info(); i.CAState != "CWR" || i.Ssthresh != 7*1460 || st.ECNReductions.Load() != 1 {
		t.Errorf("after a second ECE: %s, ssthresh %d, ECNReductions %d; want CWR, %d, 1", i.CAState, i.Ssthresh, st.ECNReductions.Load(), 7*1460)
	}
	for p.Drain() != nil {
	}
	// The ACK of everything sent before the episode (the RecoveryPoint,
	// segment 10's end) is not past it; the ACK of segment 11 is.
	p.Inject(sackAck(11))
	if i := ep.Info(); i.CAState != "CWR" {
		t.Errorf("at the RecoveryPoint: %s, want CWR still", i.CAState)
	}
	p.Drain()
	p.Inject(sackAck(12))
	i = ep.Info()
	if i.CAState != "open" || i.Cwnd != i.Ssthresh || i.Cwnd >= before.Cwnd {
		t.Errorf("after the episode: %s, cwnd %d, ssthresh %d (before %d); want open, cwnd = ssthresh, reduced", i.CAState, i.Cwnd, i.Ssthresh, before.Cwnd)
	}
	if n := st.Retransmits.Load() + st.FastRecoveries.Load() + st.Undos.Load(); n != 0 {
		t.Errorf("%d retransmissions, fast recoveries and undos; want none", n)
	}
}

// TestECNLossInCWR: a loss found while CWR brings the window down turns
// it into fast recovery without a second reduction, and nothing in it
// can be undone (Linux's tcp_enter_recovery within a reduction).
func TestECNLossInCWR(t *testing.T) {
	p, ep := ecnPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	p.Inject(eceAck(2))
	cwr := ep.Info()
	if cwr.CAState != "CWR" {
		t.Fatalf("after ECE: %s, want CWR", cwr.CAState)
	}
	// Segment 2 is lost: the SACKs of 3 to 6 show it (RACK, with the
	// reordering window closed by three segments SACKed).
	p.Inject(sackAck(2, [2]int{3, 7}))
	i := ep.Info()
	st := p.TCP.Stats()
	if i.CAState != "fast recovery" || i.Ssthresh != cwr.Ssthresh || st.ECNReductions.Load() != 1 {
		t.Errorf("after the loss: %s, ssthresh %d (in CWR %d), ECNReductions %d; want fast recovery, unchanged, 1",
			i.CAState, i.Ssthresh, cwr.Ssthresh, st.ECNReductions.Load())
	}
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Len: 1460, Check: tcptest.CheckECN | tcptest.IgnorePSH})
}

// TestECNCWRAfterLoss: every window reduction, not only an echo's, puts
// CWR on the next new data (RFC 3168 6.1.2): here fast recovery's.
func TestECNCWRAfterLoss(t *testing.T) {
	p, ep := ecnPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 10)
	if _, err := ep.Write(payload(10*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(sackAck(1, [2]int{2, 6}))
	if i := ep.Info(); i.CAState != "fast recovery" {
		t.Fatalf("%s, want fast recovery", i.CAState)
	}
	p.Expect(seg{Flags: ".", Seq: sb(1), Ack: 1, Len: 1460, Check: tcptest.CheckECN | tcptest.IgnorePSH})
	p.Inject(sackAck(1, [2]int{2, 8}))
	p.Expect(seg{Flags: "WP.", Seq: sb(11), Ack: 1, Len: 1460, ECN: tcptest.ECNECT0})
}

// TestECNCWROneSegment: where the link segments (GSO), CWR goes on the
// GSO packet and so on its first wire segment only: the link cuts it as
// Linux's tcp_gso_segment does, CWR cleared on the rest (tap's gso.go;
// tcptest's splitter), so one segment carries it (RFC 3168 6.1.2).
func TestECNCWROneSegment(t *testing.T) {
	p, ep := ecnPeer(t, tcp.Options{}, tcptest.WithGSO())
	sendSegments(t, p, ep, 10)
	if _, err := ep.Write(payload(10*1460, 10*1460)); err != nil {
		t.Fatal(err)
	}
	p.ExpectNothing()
	p.Advance(rtt)
	p.Inject(eceAck(9))
	gso := p.GSOPackets
	segs := p.Drain()
	if len(segs) < 3 {
		t.Fatalf("%d segments after the ECE; want at least 3", len(segs))
	}
	for k, s := range segs {
		cwr := strings.Contains(s.Flags, "W")
		if cwr != (k == 0) || s.ECN != tcptest.ECNECT0 {
			t.Errorf("segment %d: flags %q, %s; want CWR on the first only, all ECT(0)", k, s.Flags, tcptest.ECNName(s.ECN))
		}
	}
	if p.GSOPackets == gso {
		t.Errorf("no GSO packet: the train went one segment at a time")
	}
}

// TestECNReorderTimerInCWR: a loss RACK's reordering timer finds during
// CWR, with no ACK to carry it, starts fast recovery as one an ACK shows
// would (Linux's tcp_rack_reo_timeout enters recovery from any state but
// recovery), and the lost segment goes again.
func TestECNReorderTimerInCWR(t *testing.T) {
	p, ep := ecnPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	p.Inject(eceAck(2))
	// Segment 2 missing, 3 SACKed: within the reordering window, not
	// yet lost.
	p.Inject(sackAck(2, [2]int{3, 4}))
	if i := ep.Info(); i.CAState != "CWR" || i.Lost != 0 {
		t.Fatalf("after the SACK: %s, %d bytes lost; want CWR, none yet", i.CAState, i.Lost)
	}
	p.Drain()
	p.Advance(rtt) // past RACK's reordering window: the timer fires
	if i := ep.Info(); i.CAState != "fast recovery" {
		t.Fatalf("after the reordering timer: %s, want fast recovery", i.CAState)
	}
	p.Expect(seg{Flags: ".", Seq: sb(2), Ack: 1, Len: 1460, Check: tcptest.CheckECN | tcptest.IgnorePSH})
}

// TestECNCWRAfterProbeRepair: a loss a tail loss probe repaired reduces
// the window in one step (tlp_test.go), and that reduction too puts CWR
// on the next new data (RFC 3168 6.1.2; Linux's tcp_process_tlp_ack
// goes through tcp_init_cwnd_reduction).
func TestECNCWRAfterProbeRepair(t *testing.T) {
	p, ep := ecnPeer(t, tcp.Options{})
	sendSegments(t, p, ep, 5)
	p.Advance(rtt)
	p.Inject(sackAck(5)) // segments 1-4 arrived; 5 was lost
	i := ep.Info()
	p.Advance(min(2*i.RTT+200*time.Millisecond, i.RTO))
	p.Expect(seg{Flags: "P.", Seq: sb(5), Ack: 1, Len: 1460, Check: tcptest.CheckECN}) // the probe, not-ECT
	p.Advance(rtt)
	p.Inject(sackAck(6))
	if _, err := ep.Write(payload(5*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "P.", Seq: sb(6), Ack: 1, Len: 1460, ECN: tcptest.ECNECT0})
	p.Advance(rtt)
	p.Inject(sackAck(7)) // past the probe's end: the loss it repaired reduces the window
	if n := p.TCP.Stats().TLPRecoveries.Load(); n != 1 {
		t.Fatalf("TLP recoveries %d, want 1", n)
	}
	if _, err := ep.Write(payload(6*1460, 1460)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg{Flags: "WP.", Seq: sb(7), Ack: 1, Len: 1460, ECN: tcptest.ECNECT0})
}

// TestECNTimeoutInCWR: a retransmission timeout within the window CWR
// already reduced continues that episode: ssthresh stays (RFC 3168 6.1.2:
// one reduction per window of data), as Linux's tcp_enter_loss reduces it
// only in open or disorder state, or once SND.UNA reached high_seq. The
// same holds for a fast recovery that CWR turned into, or that an ECN
// echo started with the loss: nothing in those can be undone, and that
// does not make the timeout a new episode. The window before the timeout
// (PRR has brought it down over segments 2 to 9) is one segment after it,
// as at any timeout.
func TestECNTimeoutInCWR(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ack   []seg // the peer's ACKs before the timeout
		state string
	}{
		{"CWR", []seg{eceAck(2), sackAck(3), sackAck(4), sackAck(5), sackAck(6), sackAck(7), sackAck(8), sackAck(9), sackAck(10)}, "CWR"},
		{"fast recovery from CWR", []seg{eceAck(2), sackAck(2, [2]int{3, 7})}, "fast recovery"},
		{"fast recovery with the echo", []seg{eceAck(2, [2]int{3, 7})}, "fast recovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := ecnPeer(t, tcp.Options{NoFRTO: true, NoTLP: true})
			sendSegments(t, p, ep, 10)
			if _, err := ep.Write(payload(10*1460, 20*1460)); err != nil {
				t.Fatal(err)
			}
			p.ExpectNothing()
			p.Advance(rtt)
			for _, a := range tc.ack {
				p.Inject(a)
				p.Drain()
			}
			before := ep.Info()
			if before.CAState != tc.state || before.Ssthresh != 7*1460 {
				t.Fatalf("before the timeout: %s, ssthresh %d; want %s, %d", before.CAState, before.Ssthresh, tc.state, 7*1460)
			}
			p.Advance(before.RTO)
			p.Drain()
			i := ep.Info()
			st := p.TCP.Stats()
			if st.RetransmitTimeouts.Load() != 1 || i.CAState != "RTO recovery" || i.Cwnd != 1460 {
				t.Fatalf("after the timeout: %s, cwnd %d, %d timeouts; want RTO recovery, 1460, 1", i.CAState, i.Cwnd, st.RetransmitTimeouts.Load())
			}
			if i.Ssthresh != before.Ssthresh {
				t.Errorf("after the timeout: ssthresh %d (%.1f segments), want %d kept: one reduction per window (RFC 3168 6.1.2)",
					i.Ssthresh, float64(i.Ssthresh)/1460, before.Ssthresh)
			}
		})
	}
}

// undoRecorder is a timeoutRecorder that counts OnUndo.
type undoRecorder struct {
	timeoutRecorder
	undos int
}

func (r *undoRecorder) OnUndo() { r.undos++ }

// TestECNSpuriousTimeoutInCWR: a timeout within CWR's window that F-RTO
// then finds spurious (RFC 5682 3: a SACK for data sent before it and
// never retransmitted) ends RTO recovery, but has no reduction of its own
// to undo, and CWR's, for a mark, is not undone: ssthresh stays and the
// congestion control hears no OnUndo, as Linux's tcp_try_undo_loss
// restores nothing where tcp_enter_cwr set prior_ssthresh to 0.
func TestECNSpuriousTimeoutInCWR(t *testing.T) {
	rec := &undoRecorder{}
	p, ep := ecnPeer(t, tcp.Options{NoTLP: true, NewCongestionControl: func() tcp.CongestionControl { return rec }})
	sendSegments(t, p, ep, 10)
	p.Advance(rtt)
	p.Inject(eceAck(2))
	cwr := ep.Info()
	if cwr.CAState != "CWR" || len(rec.samples) != 1 {
		t.Fatalf("after ECE: %s, OnCongestion %d times; want CWR, once", cwr.CAState, len(rec.samples))
	}
	p.Drain()
	p.Advance(cwr.RTO)
	p.Drain()
	if i := ep.Info(); i.CAState != "RTO recovery" || i.Ssthresh != cwr.Ssthresh || len(rec.samples) != 1 {
		t.Fatalf("after the timeout: %s, ssthresh %d, OnCongestion %d times; want RTO recovery, %d, once", i.CAState, i.Ssthresh, len(rec.samples), cwr.Ssthresh)
	}
	p.Advance(rtt)
	p.Inject(sackAck(2, [2]int{5, 6})) // segment 5's original arrived
	i := ep.Info()
	if i.CAState != "open" || p.TCP.Stats().SpuriousRTOs.Load() != 1 {
		t.Fatalf("after the SACK: %s, %d spurious timeouts; want open, 1", i.CAState, p.TCP.Stats().SpuriousRTOs.Load())
	}
	if i.Ssthresh != cwr.Ssthresh || rec.undos != 0 {
		t.Errorf("after the spurious timeout: ssthresh %d, OnUndo %d times; want CWR's %d kept, never", i.Ssthresh, rec.undos, cwr.Ssthresh)
	}
}
