package pcap

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/tap"
)

var (
	srv  = netip.MustParseAddrPort("192.0.2.1:80")
	cli  = netip.MustParseAddrPort("192.0.2.2:40000")
	conn = event.ConnID{Local: srv, Remote: cli}
)

const (
	fSYN = event.FlagSyn
	fACK = event.FlagAck
	fFIN = event.FlagFin
	fRST = event.FlagRst
	fPSH = event.FlagPsh
)

// tcpBytes builds an Ethernet/IPv4/TCP frame of conn (as the stack sees
// it) in direction dir with key k and window win; sack, if any, adds SACK
// blocks.
func tcpBytes(dir uint8, c event.ConnID, k event.SegKey, win uint16, sack ...[2]uint32) []byte {
	src, dst := c.Local, c.Remote
	if dir == dirIn {
		src, dst = dst, src
	}
	var opts []byte
	if len(sack) > 0 {
		opts = append(opts, 1, 1, 5, byte(2+8*len(sack)))
		for _, b := range sack {
			opts = append(opts, byte(b[0]>>24), byte(b[0]>>16), byte(b[0]>>8), byte(b[0]),
				byte(b[1]>>24), byte(b[1]>>16), byte(b[1]>>8), byte(b[1]))
		}
	}
	tcpLen := header.TCPMinimumSize + len(opts)
	total := header.EthernetMinimumSize + header.IPv4MinimumSize + tcpLen + k.Len
	b := make([]byte, total)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + tcpLen + k.Len), TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr:  tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	t := header.TCP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	t.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: k.Seq, AckNum: k.Ack,
		DataOffset: uint8(tcpLen), Flags: header.TCPFlags(k.Flags), WindowSize: win})
	copy(t[header.TCPMinimumSize:], opts)
	return b
}

// harness drives an annotator on a fake clock.
type harness struct {
	t   *testing.T
	a   *annotator
	now time.Time
	out []string // comments of written frames, in order
	blk []string // custom blocks
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, a: newAnnotator(50*time.Millisecond, 64, 64), now: time.Unix(1000, 0)}
}

func (h *harness) frame(dir uint8, c event.ConnID, k event.SegKey, win uint16, sack ...[2]uint32) *record {
	b := tcpBytes(dir, c, k, win, sack...)
	r := &record{ts: h.now, dir: dir, data: b, length: len(b), fi: parseFrame(b, dir == dirOut)}
	h.a.addFrame(h.now, r)
	return r
}

func (h *harness) ev(ev event.Event) { h.a.event(h.now, &ev) }

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.write(h.a.take(h.now, false))
}

func (h *harness) write(rs []*record) {
	for _, r := range rs {
		if r.isNote() {
			h.blk = append(h.blk, r.note)
			continue
		}
		h.out = append(h.out, h.a.comment(r))
	}
}

func (h *harness) flush() []string {
	h.write(h.a.take(h.now, true))
	return h.out
}

func key(seq, ack uint32, flags event.Flags, n int) event.SegKey {
	return event.SegKey{Seq: seq, Ack: ack, Flags: flags, Len: n}
}

// orders runs f twice: with events reported before their frames (the
// engine today, for sends) and after them (events delivered once the
// engine's locks are released). f calls step for each pair; the harness
// decides the order.
func orders(t *testing.T, f func(t *testing.T, h *harness, pair func(frame func(), events ...func()))) {
	for _, eventsFirst := range []bool{true, false} {
		name := "frame-then-events"
		if eventsFirst {
			name = "events-then-frame"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			f(t, h, func(frame func(), events ...func()) {
				if eventsFirst {
					for _, e := range events {
						e()
					}
					frame()
					return
				}
				frame()
				for _, e := range events {
					e()
				}
			})
		})
	}
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("comments:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAnnotateHandshake: the passive open, with the listener's decisions
// and their queue lengths on the SYN and the final ACK.
func TestAnnotateHandshake(t *testing.T) {
	listener := event.ConnID{Local: netip.AddrPortFrom(netip.IPv4Unspecified(), 80)}
	orders(t, func(t *testing.T, h *harness, pair func(func(), ...func())) {
		syn, synAck, ack := key(100, 0, fSYN, 0), key(500, 101, fSYN|fACK, 0), key(101, 501, fACK, 0)
		pair(func() { h.frame(dirIn, conn, syn, 65535) },
			func() {
				h.ev(event.Event{Kind: event.KindQueue, Conn: listener, Note: "SYN queued",
					Queue: event.QueueInfo{SynQueueLen: 1, SynQueueLimit: 1024, AcceptQueueLimit: 3}})
			},
			func() {
				h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.Closed, To: event.SynReceived,
					Cause: event.Cause{Kind: event.CauseSegment, Key: syn}, Key: syn})
			})
		pair(func() { h.frame(dirOut, conn, synAck, 65535) },
			func() { h.ev(event.Event{Kind: event.KindSend, Conn: conn, Send: event.SendSynAck, Key: synAck}) })
		pair(func() { h.frame(dirIn, conn, ack, 65535) },
			func() {
				h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.SynReceived, To: event.Established,
					Cause: event.Cause{Kind: event.CauseSegment, Key: ack}, Key: ack})
			},
			func() {
				h.ev(event.Event{Kind: event.KindQueue, Conn: listener, Note: "accept queue add",
					Queue: event.QueueInfo{SynQueueLimit: 1024, AcceptQueueLen: 1, AcceptQueueLimit: 3}})
			})
		got := h.flush()
		// The queue decision and the state change come in the order the
		// events came, which differs between the two orders only in
		// where the queue text lands; both must be on the right frame.
		if len(got) != 3 {
			t.Fatalf("%d frames: %q", len(got), got)
		}
		for i, want := range [][]string{
			{"SYN queued: SYN queue 1/1024, accept queue 0/3", "CLOSED → SYN-RECEIVED"},
			{"SYN-ACK"},
			{"SYN-RECEIVED → ESTABLISHED", "accept queue add: SYN queue 0/1024, accept queue 1/3"},
		} {
			for _, w := range want {
				if !strings.Contains(got[i], w) {
					t.Errorf("frame %d: %q lacks %q", i+1, got[i], w)
				}
			}
		}
	})
}

// TestAnnotateDupAcks: three identical duplicate ACKs on the wire are
// matched with "dup ACK #1", "#2", "#3" in order, whichever comes first.
func TestAnnotateDupAcks(t *testing.T) {
	orders(t, func(t *testing.T, h *harness, pair func(func(), ...func())) {
		k := key(1, 1001, fACK, 0)
		for i := 1; i <= 3; i++ {
			pair(func() { h.frame(dirIn, conn, k, 1000) },
				func() {
					h.ev(event.Event{Kind: event.KindAck, Conn: conn, Key: k, DupAck: i, Cwnd: 14480,
						Note: map[bool]string{true: "fast retransmit"}[i == 3]})
				})
		}
		expect(t, h.flush(),
			"dup ACK #1, cwnd 14480",
			"dup ACK #2, cwnd 14480",
			"dup ACK #3, cwnd 14480 → fast retransmit")
	})
}

// TestAnnotateDupAcksLate: when every event comes after all three frames,
// they still land in order.
func TestAnnotateDupAcksLate(t *testing.T) {
	h := newHarness(t)
	k := key(1, 1001, fACK, 0)
	for range 3 {
		h.frame(dirIn, conn, k, 0)
	}
	for i := 1; i <= 3; i++ {
		h.ev(event.Event{Kind: event.KindAck, Conn: conn, Key: k, DupAck: i, Cwnd: 100})
	}
	got := h.flush()
	for i, c := range got {
		if !strings.HasPrefix(c, fmt.Sprintf("dup ACK #%d,", i+1)) {
			t.Errorf("frame %d: %q", i+1, c)
		}
	}
}

// TestAnnotateCloseOnFin: a close with data still queued goes on the FIN,
// not on the data frames sent after it (issue 10's first bullet).
func TestAnnotateCloseOnFin(t *testing.T) {
	orders(t, func(t *testing.T, h *harness, pair func(func(), ...func())) {
		// The user closes in CLOSE-WAIT before the data has left.
		closeEv := event.Event{Kind: event.KindState, Conn: conn, From: event.CloseWait, To: event.LastAck,
			Cause: event.Cause{Kind: event.CauseUser, Detail: "close"}}
		d1, d2 := key(1, 50, fACK, 1000), key(1001, 50, fACK|fPSH, 1000)
		fin := key(2001, 50, fACK|fFIN, 0)
		pair(func() { h.frame(dirOut, conn, d1, 1000) },
			func() { h.ev(closeEv) },
			func() { h.ev(event.Event{Kind: event.KindSend, Conn: conn, Send: event.SendData, Key: d1}) })
		pair(func() { h.frame(dirOut, conn, d2, 1000) },
			func() { h.ev(event.Event{Kind: event.KindSend, Conn: conn, Send: event.SendData, Key: d2}) })
		pair(func() { h.frame(dirOut, conn, fin, 1000) },
			func() { h.ev(event.Event{Kind: event.KindSend, Conn: conn, Send: event.SendFin, Key: fin}) })
		expect(t, h.flush(), "data", "data", "CLOSE-WAIT → LAST-ACK (close); FIN")
	})
}

// TestAnnotateTimerClose: TIME-WAIT expiry has no frame: it is a custom
// block, and the connection's next frame says when it happened.
func TestAnnotateTimerClose(t *testing.T) {
	h := newHarness(t)
	h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.TimeWait, To: event.Closed,
		Cause: event.Cause{Kind: event.CauseTimer, Detail: "TIME-WAIT"}})
	h.advance(time.Second)
	if len(h.blk) != 1 || h.blk[0] != "TIME-WAIT → CLOSED (timer TIME-WAIT)" {
		t.Fatalf("blocks %q", h.blk)
	}
	syn := key(7, 0, fSYN, 0)
	h.frame(dirIn, conn, syn, 100)
	h.ev(event.Event{Kind: event.KindDrop, Conn: conn, Drop: event.DropNoSocket, Key: syn})
	got := h.flush()
	if len(got) != 1 || !strings.HasPrefix(got[0], "earlier ") || !strings.Contains(got[0], "TIME-WAIT → CLOSED (timer TIME-WAIT); dropped: no socket → RST") {
		t.Errorf("comments %q", got)
	}
}

// TestAnnotateAbortRST: an abort goes on its RST; an abort with nothing to
// send becomes a note once the window has passed.
func TestAnnotateAbortRST(t *testing.T) {
	orders(t, func(t *testing.T, h *harness, pair func(func(), ...func())) {
		rst := key(9, 0, fRST, 0)
		pair(func() { h.frame(dirOut, conn, rst, 0) },
			func() {
				h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.Established, To: event.Closed,
					Cause: event.Cause{Kind: event.CauseUser, Detail: "abort"}})
			},
			func() { h.ev(event.Event{Kind: event.KindSend, Conn: conn, Send: event.SendRst, Key: rst}) })
		expect(t, h.flush(), "ESTABLISHED → CLOSED (abort); RST")
	})
	h := newHarness(t)
	other := event.ConnID{Local: srv, Remote: netip.MustParseAddrPort("192.0.2.2:40001")}
	h.ev(event.Event{Kind: event.KindState, Conn: other, From: event.SynSent, To: event.Closed,
		Cause: event.Cause{Kind: event.CauseUser, Detail: "abort"}})
	h.advance(time.Second)
	h.ev(event.Event{Kind: event.KindState, Conn: other, From: event.SynSent, To: event.Closed}) // trims
	if len(h.blk) == 0 || h.blk[0] != "SYN-SENT → CLOSED (abort)" {
		t.Errorf("blocks %q", h.blk)
	}
}

// TestAnnotateLate: an event that comes after its frame's window has
// passed is not written on a later frame with the same key; it is counted.
func TestAnnotateLate(t *testing.T) {
	h := newHarness(t)
	k := key(1, 1, fACK, 0)
	h.frame(dirIn, conn, k, 100)
	h.advance(time.Second)
	h.ev(event.Event{Kind: event.KindAck, Conn: conn, Key: k, Acked: 1, Cwnd: 1})
	if h.a.stats.late != 1 {
		t.Errorf("late = %d, want 1", h.a.stats.late)
	}
	got := h.flush()
	if len(got) != 1 || got[0] != "no engine event" {
		t.Errorf("comments %q", got)
	}
}

// TestAnnotateWire: what the wire says, as Wireshark's TCP analysis reads
// it: zero window, window update, SACK blocks relative to the ISN, and a
// retransmission tied to its original by packet id.
func TestAnnotateWire(t *testing.T) {
	h := newHarness(t)
	syn, synAck := key(999, 0, fSYN, 0), key(4999, 1000, fSYN|fACK, 0)
	h.frame(dirIn, conn, syn, 100)
	h.frame(dirOut, conn, synAck, 100)
	d1 := key(5000, 1000, fACK, 100)
	first := h.frame(dirOut, conn, d1, 100)
	h.frame(dirOut, conn, key(5100, 1000, fACK, 100), 100)
	h.frame(dirIn, conn, key(1000, 5000, fACK, 0), 0)
	h.frame(dirIn, conn, key(1000, 5000, fACK, 0), 10, [2]uint32{5100, 5200})
	again := h.frame(dirOut, conn, d1, 100)
	if again.packetID != first.packetID || again.origFrame != first.no {
		t.Errorf("retransmission: packet id %d (original %d), frame %d (original %d)", again.packetID, first.packetID, again.origFrame, first.no)
	}
	got := h.flush()
	want := []string{"", "", "", "", "zero window", "window update rwnd 0 → 10; SACK 101-201", ""}
	for i := range want {
		c := strings.ReplaceAll(got[i], "no engine event", "")
		c = strings.TrimPrefix(strings.TrimSuffix(c, "; "), "; ")
		if c != want[i] {
			t.Errorf("frame %d: %q, want %q", i+1, c, want[i])
		}
	}
}

// TestAnnotateFaults: an inbound frame the fault middleware dropped is
// written with a drop verdict; an outbound fault lands on its frame.
func TestAnnotateFaults(t *testing.T) {
	h := newHarness(t)
	b := tcpBytes(dirIn, conn, key(1, 1, fACK, 10), 100)
	lost := &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false), fp: 7}
	h.a.fault(h.now, &tap.FaultEvent{Dir: tap.FaultInbound, Kind: tap.FaultLoss, N: 312, Prob: 0.05, Seed: 7, Seeded: true}, 7, lost)
	out := h.frame(dirOut, conn, key(1, 1, fACK, 0), 100)
	out.fp = 99
	h.a.fault(h.now, &tap.FaultEvent{Dir: tap.FaultOutbound, Kind: tap.FaultDuplicate, N: 1, Prob: 0.02}, 99, nil)
	h.ev(event.Event{Kind: event.KindSend, Conn: conn, Send: event.SendAck, Key: key(1, 1, fACK, 0)})
	expect(t, h.flush(), "fault: dropped (loss 5%, seed 7, #312)", "fault: duplicated (dup 2%, #1); ACK")
	if !lost.dropped {
		t.Error("lost frame has no drop verdict")
	}
}

// TestAnnotationText: how single events read.
func TestAnnotationText(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{sendText(event.SendSynAck, 0), "SYN-ACK"},
		{sendText(event.SendSynAckRetransmit, 2), "SYN-ACK retransmit #2"},
		{sendText(event.SendKeepalive, 3), "keepalive #3"},
		{sendText(event.SendWindowProbe, 1), "zero window probe #1"},
		{dropText(event.DropAcceptQueueFull, fACK), "dropped: accept queue full"},
		{dropText(event.DropNoSocket, fSYN), "dropped: no socket → RST"},
		{ackText(&event.Event{Acked: 2896, Cwnd: 14480}), "ACK: SND.UNA +2896, cwnd 14480"},
		{ackText(&event.Event{DupAck: 3, Sacked: 1448, Cwnd: 14480, Note: "dup ACK #3; fast retransmit"}), "dup ACK #3, SACKed +1448, cwnd 14480 → fast retransmit"},
		{stateText(&event.Event{From: event.CloseWait, To: event.LastAck, Cause: event.Cause{Kind: event.CauseUser, Detail: "close"}}), "CLOSE-WAIT → LAST-ACK (close)"},
		{queueText(&event.Event{Note: "SYN queued", Queue: event.QueueInfo{SynQueueLen: 3, SynQueueLimit: 1024, AcceptQueueLen: 1, AcceptQueueLimit: 5}}), "SYN queued: SYN queue 3/1024, accept queue 1/5"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
}

// icmpBytes builds an inbound ICMPv4 destination unreachable (port
// unreachable) from the peer quoting the stack's segment of conn c.
func icmpBytes(c event.ConnID, seq uint32) []byte {
	quoted := tcpBytes(dirOut, c, key(seq, 0, fSYN, 0), 100)[header.EthernetMinimumSize:]
	quoted = quoted[:header.IPv4MinimumSize+8]
	total := header.EthernetMinimumSize + header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quoted)
	b := make([]byte, total)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total - header.EthernetMinimumSize), TTL: 64,
		Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:  tcpip.AddrFrom4(c.Remote.Addr().As4()), DstAddr: tcpip.AddrFrom4(c.Local.Addr().As4()),
	})
	icmp := header.ICMPv4(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4DstUnreachable)
	icmp.SetCode(header.ICMPv4PortUnreachable)
	copy(icmp[header.ICMPv4MinimumSize:], quoted)
	return b
}

// TestAnnotateICMP: a dial that an ICMP error ends has its state change on
// the ICMP frame that quotes its SYN, in either order; without such a frame
// it becomes a note once the window has passed.
func TestAnnotateICMP(t *testing.T) {
	orders(t, func(t *testing.T, h *harness, pair func(func(), ...func())) {
		pair(func() {
			b := icmpBytes(conn, 77)
			h.a.addFrame(h.now, &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false)})
		}, func() {
			h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.SynSent, To: event.Closed,
				Cause: event.Cause{Kind: event.CauseSegment, Detail: "ICMP connection refused"}})
		})
		got := h.flush()
		want := "ICMP port unreachable for TCP 192.0.2.1:80 > 192.0.2.2:40000 seq 77; SYN-SENT → CLOSED (ICMP connection refused)"
		if len(got) != 1 || got[0] != want || len(h.blk) != 0 {
			t.Errorf("comments %q, notes %q; want %q", got, h.blk, want)
		}
	})
}

// TestAnnotateICMPRevert: the RTO backoff an ICMP unreachable took back
// (RFC 6069, stack/tcp icmpld.go) goes on that ICMP frame, which caused
// it, not on the connection's next frame.
func TestAnnotateICMPRevert(t *testing.T) {
	h := newHarness(t)
	b := icmpBytes(conn, 77)
	h.a.addFrame(h.now, &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false)})
	h.ev(event.Event{Kind: event.KindRecovery, Conn: conn, Note: "RTO backoff reverted (RFC 6069)", Cwnd: 1, Ssthresh: 5,
		Cause: event.Cause{Kind: event.CauseSegment, Detail: "ICMP host unreachable"}})
	h.frame(dirOut, conn, key(1, 1, fACK|fPSH, 1), 101)
	got := h.flush()
	want := "ICMP port unreachable for TCP 192.0.2.1:80 > 192.0.2.2:40000 seq 77; recovery: RTO backoff reverted (RFC 6069), cwnd 1, ssthresh 5"
	if len(got) != 2 || got[0] != want || strings.Contains(got[1], "RFC 6069") {
		t.Errorf("comments %q; want the first %q, the second without the revert", got, want)
	}
}

func TestAnnotateICMPNoFrame(t *testing.T) {
	h := newHarness(t)
	h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.SynSent, To: event.Closed,
		Cause: event.Cause{Kind: event.CauseSegment, Detail: "ICMP host unreachable"}})
	h.advance(time.Second)
	if len(h.blk) != 1 || h.blk[0] != "SYN-SENT → CLOSED (ICMP host unreachable)" {
		t.Errorf("notes %q", h.blk)
	}
}

// TestAnnotateRetransmittedFin: the peer's FIN and its retransmission have
// one key; the first changed the state, so the drop of the second goes on
// the second, not on the first.
func TestAnnotateRetransmittedFin(t *testing.T) {
	h := newHarness(t)
	fin := key(100, 500, fACK|fFIN, 0)
	h.frame(dirIn, conn, fin, 100)
	h.ev(event.Event{Kind: event.KindAck, Conn: conn, Key: fin, Cwnd: 10})
	h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.Established, To: event.CloseWait,
		Cause: event.Cause{Kind: event.CauseSegment, Key: fin}, Key: fin})
	h.frame(dirIn, conn, fin, 100)
	h.ev(event.Event{Kind: event.KindDrop, Conn: conn, Drop: event.DropOldSequence, Key: fin})
	expect(t, h.flush(), "ESTABLISHED → CLOSE-WAIT", "dropped: old sequence; retransmission of frame 1")
}

// TestAnnotateProbeRecoveryOnProbe: a tail loss probe resends the FIN,
// the same segment on the wire. Its recovery note goes on the probe's
// frame, with the probe's send cause, not on the FIN it repeats, which
// still waits in the window and had no recovery note of its own (it went
// there once, in a CI run where a starved client made the server probe).
// So does an ACK's recovery note go on that ACK's frame, the second of
// two identical ones.
func TestAnnotateProbeRecoveryOnProbe(t *testing.T) {
	orders(t, func(t *testing.T, h *harness, pair func(func(), ...func())) {
		fin := key(100, 500, fACK|fFIN, 0)
		pair(func() { h.frame(dirOut, conn, fin, 100) },
			func() { h.ev(event.Event{Kind: event.KindSend, Conn: conn, Key: fin, Send: event.SendFin}) })
		h.now = h.now.Add(10 * time.Millisecond)
		pair(func() { h.frame(dirOut, conn, fin, 100) },
			func() {
				h.ev(event.Event{Kind: event.KindRecovery, Conn: conn, Note: "tail loss probe", Cwnd: 14480, Ssthresh: ^uint32(0)})
			},
			func() {
				h.ev(event.Event{Kind: event.KindSend, Conn: conn, Key: fin, Send: event.SendTLP, Attempt: 1})
			})
		dup := key(500, 100, fACK, 0)
		pair(func() { h.frame(dirIn, conn, dup, 100) },
			func() { h.ev(event.Event{Kind: event.KindAck, Conn: conn, Key: dup, DupAck: 1, Cwnd: 14480}) })
		pair(func() { h.frame(dirIn, conn, dup, 100) },
			func() {
				h.ev(event.Event{Kind: event.KindRecovery, Conn: conn, Note: "fast recovery", Cwnd: 7240, Ssthresh: 7240})
			},
			func() { h.ev(event.Event{Kind: event.KindAck, Conn: conn, Key: dup, DupAck: 2, Cwnd: 7240}) })
		expect(t, h.flush(),
			"FIN",
			"tail loss probe; recovery: tail loss probe, cwnd 14480, ssthresh ∞",
			"dup ACK #1, cwnd 14480",
			"dup ACK #2, cwnd 7240; recovery: fast recovery, cwnd 7240, ssthresh 7240")
	})
}

// receive puts inbound frame k in the window as the Writer does: being
// delivered, until its caller calls h.a.delivered.
func (h *harness) receive(k event.SegKey) *record {
	b := tcpBytes(dirIn, conn, k, 100)
	r := &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false), delivering: true}
	h.a.addFrame(h.now, r)
	return r
}

// deliver receives inbound frame k, with the events the engine reports
// while it processes it.
func (h *harness) deliver(k event.SegKey, events ...event.Event) {
	r := h.receive(k)
	for _, ev := range events {
		h.ev(ev)
	}
	h.a.delivered(h.now, r)
}

// TestAnnotateIdenticalCopies: two inbound frames with one key (a pure
// ACK and its copy); the engine takes the first and drops the second, for
// its checksum (reported before demultiplexing, with no connection) or
// PAWS. The engine reports a segment's fate while the frame is being
// delivered, so the drop goes on the copy, and the first keeps its ACK;
// the copy of the handshake's ACK likewise keeps its own "nothing new".
// Events that come after their frame was delivered (another goroutine
// flushed them) still go to the oldest frame that has heard nothing.
func TestAnnotateIdenticalCopies(t *testing.T) {
	ack := key(1001, 5001, fACK, 0)
	took := event.Event{Kind: event.KindAck, Conn: conn, Key: ack, Cwnd: 14480}
	t.Run("bad checksum", func(t *testing.T) {
		h := newHarness(t)
		h.deliver(ack, took)
		h.deliver(ack, event.Event{Kind: event.KindDrop, Drop: event.DropBadChecksum, Key: ack})
		expect(t, h.flush(), "ACK: nothing new, cwnd 14480", "dropped: bad checksum")
	})
	t.Run("PAWS", func(t *testing.T) {
		h := newHarness(t)
		h.deliver(ack, took)
		h.deliver(ack, event.Event{Kind: event.KindDrop, Conn: conn, Drop: event.DropPAWS, Key: ack})
		expect(t, h.flush(), "ACK: nothing new, cwnd 14480", "dropped: PAWS: old timestamp")
	})
	t.Run("handshake ACK", func(t *testing.T) {
		h := newHarness(t)
		h.deliver(ack, event.Event{Kind: event.KindState, Conn: conn, From: event.SynReceived, To: event.Established,
			Cause: event.Cause{Kind: event.CauseSegment, Key: ack}, Key: ack})
		h.deliver(ack, took)
		expect(t, h.flush(), "SYN-RECEIVED → ESTABLISHED", "ACK: nothing new, cwnd 14480")
	})
	t.Run("events after their delivery", func(t *testing.T) {
		h := newHarness(t)
		h.deliver(ack) // its event comes late, during the next delivery
		r := h.receive(ack)
		h.ev(took)
		h.ev(event.Event{Kind: event.KindDrop, Conn: conn, Drop: event.DropPAWS, Key: ack})
		h.a.delivered(h.now, r)
		expect(t, h.flush(), "ACK: nothing new, cwnd 14480", "dropped: PAWS: old timestamp")
	})
}

// TestAnnotateReplyHeld: three copies of a segment out of the window. The
// engine drops each, answers the first, and holds back the answer to the
// others (tcp.Options.InvalidRateLimit), reporting a second drop for each
// of them: that one is told on its own copy, after the first drop.
func TestAnnotateReplyHeld(t *testing.T) {
	k := key(1<<30, 5001, fACK, 0)
	drop := func(r event.DropReason) event.Event {
		return event.Event{Kind: event.KindDrop, Conn: conn, Drop: r, Key: k}
	}
	h := newHarness(t)
	h.deliver(k, drop(event.DropOutOfWindow))
	h.deliver(k, drop(event.DropOutOfWindow), drop(event.DropAckRateLimited))
	h.deliver(k, drop(event.DropOutOfWindow), drop(event.DropAckRateLimited))
	expect(t, h.flush(),
		"dropped: out of window",
		"dropped: out of window; ACK rate limited",
		"dropped: out of window; ACK rate limited")
	if h.a.waiting() != 0 {
		t.Errorf("%d events wait for a frame", h.a.waiting())
	}
}

// TestAnnotateICMPLostTakesNoState: an ICMP port unreachable quoting our
// SYN is lost by the fault middleware below the capture on its way in; a
// second one, quoting the same SYN, reaches the engine, which fails the
// open. The state change is the second's: the lost one, which the engine
// never saw, says only what the fault did, whether the change is reported
// before the frames or after them.
func TestAnnotateICMPLostTakesNoState(t *testing.T) {
	orders(t, func(t *testing.T, h *harness, pair func(func(), ...func())) {
		pair(func() {
			b := icmpBytes(conn, 77)
			lost := &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false), fp: 7}
			h.a.fault(h.now, &tap.FaultEvent{Dir: tap.FaultInbound, Kind: tap.FaultLoss, N: 1, Prob: 0.5}, 7, lost)
			b = icmpBytes(conn, 77)
			h.a.addFrame(h.now, &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false), fp: 7})
		}, func() {
			h.ev(event.Event{Kind: event.KindState, Conn: conn, From: event.SynSent, To: event.Closed,
				Cause: event.Cause{Kind: event.CauseSegment, Detail: "ICMP connection refused"}})
		})
		icmp := "ICMP port unreachable for TCP 192.0.2.1:80 > 192.0.2.2:40000 seq 77"
		expect(t, h.flush(), "fault: dropped (loss 50%, #1); "+icmp, icmp+"; SYN-SENT → CLOSED (ICMP connection refused)")
		if len(h.blk) != 0 {
			t.Errorf("notes %q", h.blk)
		}
	})
}

// TestAnnotateLostReportsCounted: what the annotator cannot put on a frame
// is counted (Stats.Unmatched), never lost without a trace: an inbound
// fault report whose frame never comes, once it has waited as long as an
// engine event waits; the reports beyond the bounds of the table they wait
// in (per frame, and frames); the recovery and path MTU notes beyond the
// bound of those waiting for a connection's next frame.
func TestAnnotateLostReportsCounted(t *testing.T) {
	in := func(k tap.FaultKind) *tap.FaultEvent {
		return &tap.FaultEvent{Dir: tap.FaultInbound, Kind: k, N: 1, Prob: 1, Delay: time.Millisecond}
	}
	t.Run("never delivered", func(t *testing.T) {
		h := newHarness(t)
		h.a.fault(h.now, in(tap.FaultDuplicate), 7, nil)
		h.advance(h.a.pendTTL + time.Second)
		if h.a.stats.unmatched != 1 || len(h.a.faultFP) != 0 {
			t.Errorf("unmatched %d, %d frames' reports still waiting; want 1, 0", h.a.stats.unmatched, len(h.a.faultFP))
		}
	})
	t.Run("table full", func(t *testing.T) {
		h := newHarness(t)
		for i := range maxConns + 1 {
			h.a.fault(h.now, in(tap.FaultDelay), uint64(i+1), nil)
		}
		for range maxEarlier + 1 {
			h.a.fault(h.now, in(tap.FaultDelay), 1<<40, nil)
		}
		// Two frames' reports made room for the next frames', and the
		// last frame had one report too many.
		if h.a.stats.unmatched != 3 {
			t.Errorf("unmatched %d, want 3", h.a.stats.unmatched)
		}
	})
	t.Run("recovery notes", func(t *testing.T) {
		h := newHarness(t)
		for i := range maxEarlier + 2 {
			h.ev(event.Event{Kind: event.KindRecovery, Conn: conn, Note: "fast retransmit " + strconv.Itoa(i), Cwnd: 10})
		}
		h.ev(event.Event{Kind: event.KindPathMTU, Conn: conn, Note: "path MTU 1280"})
		if h.a.stats.unmatched != 3 {
			t.Errorf("unmatched %d, want 3", h.a.stats.unmatched)
		}
	})
}

// TestAnnotateRecoveryNoteExpires: a recovery or path MTU note waits for
// its connection's next frame (the resent segment, the probe, the ACK),
// but a connection may end right after one (an RTO that gives up, a user's
// abort with nothing to send) and send nothing more. Such a note waits as
// long as any other annotation (pendTTL), then is counted unmatched: it
// never holds a place in its table for good, so once 4,097 connections
// have left one behind, over more than pendTTL, the next connection's note
// still reaches its frame.
func TestAnnotateRecoveryNoteExpires(t *testing.T) {
	h := newHarness(t)
	end := func(c event.ConnID) {
		h.ev(event.Event{Kind: event.KindRecovery, Conn: c, Note: "RTO", Cwnd: 1, Ssthresh: 2})
		h.ev(event.Event{Kind: event.KindState, Conn: c, From: event.Established, To: event.Closed,
			Cause: event.Cause{Kind: event.CauseTimer, Detail: "retransmissions exhausted"}})
	}
	end(conn)
	h.advance(h.a.pendTTL + time.Second)
	if h.a.stats.unmatched != 1 || len(h.a.recov) != 0 {
		t.Fatalf("unmatched %d, %d connections' notes still waiting; want 1, 0", h.a.stats.unmatched, len(h.a.recov))
	}
	step := 2 * h.a.pendTTL / (maxConns + 1)
	for i := range maxConns + 1 {
		end(event.ConnID{Local: srv, Remote: netip.AddrPortFrom(cli.Addr(), uint16(10000+i))})
		h.advance(step)
	}
	h.out, h.blk = nil, nil
	last := event.ConnID{Local: srv, Remote: netip.AddrPortFrom(cli.Addr(), 9999)}
	probe := key(100, 500, fACK, 1)
	h.ev(event.Event{Kind: event.KindRecovery, Conn: last, Note: "tail loss probe", Cwnd: 10, Ssthresh: ^uint32(0)})
	h.ev(event.Event{Kind: event.KindSend, Conn: last, Key: probe, Send: event.SendTLP, Attempt: 1})
	h.frame(dirOut, last, probe, 100)
	expect(t, h.flush(), "tail loss probe; recovery: tail loss probe, cwnd 10, ssthresh ∞")
	h.advance(h.a.pendTTL + time.Second)
	if h.a.stats.unmatched != maxConns+2 || len(h.a.recov) != 0 {
		t.Errorf("unmatched %d, %d connections' notes still waiting; want %d, 0", h.a.stats.unmatched, len(h.a.recov), maxConns+2)
	}
}

// echoBytes builds an ICMPv4 echo request (out, from c.Local) or echo
// reply (in, from c.Remote) with identifier 7 and sequence number seq.
func echoBytes(dir uint8, c event.ConnID, seq uint16) []byte {
	src, dst, typ := c.Local.Addr(), c.Remote.Addr(), header.ICMPv4Echo
	if dir == dirIn {
		src, dst, typ = dst, src, header.ICMPv4EchoReply
	}
	total := header.EthernetMinimumSize + header.IPv4MinimumSize + header.ICMPv4MinimumSize
	b := make([]byte, total)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	header.IPv4(b[header.EthernetMinimumSize:]).Encode(&header.IPv4Fields{
		TotalLength: uint16(total - header.EthernetMinimumSize), TTL: 64,
		Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:  tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	icmp := header.ICMPv4(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	icmp.SetType(typ)
	icmp.SetIdent(7)
	icmp.SetSequence(seq)
	return b
}

// arpBytes builds an ARP request from c.Local for c.Remote's address (out)
// or the peer's reply (in).
func arpBytes(dir uint8, c event.ConnID) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.ARPProtocolNumber})
	h := header.ARP(b[header.EthernetMinimumSize:])
	h.SetIPv4OverEthernet()
	us, peer := c.Local.Addr().As4(), c.Remote.Addr().As4()
	h.SetOp(header.ARPRequest)
	copy(h.HardwareAddressSender(), []byte{2, 0, 0, 0, 0, 1})
	copy(h.ProtocolAddressSender(), us[:])
	copy(h.ProtocolAddressTarget(), peer[:])
	if dir == dirIn {
		h.SetOp(header.ARPReply)
		copy(h.HardwareAddressSender(), []byte{2, 0, 0, 0, 0, 2})
		copy(h.ProtocolAddressSender(), peer[:])
		copy(h.HardwareAddressTarget(), []byte{2, 0, 0, 0, 0, 1})
		copy(h.ProtocolAddressTarget(), us[:])
	}
	return b
}

// TestAnnotateLostReplyNotAnswer: a reply the fault middleware lost on its
// way in (tap.FaultLoss, inbound) never reached the stack, which is still
// waiting: our echo request or ARP request it would have answered is not
// "answered" by it. The request says its reply was lost, the reply that it
// was; a copy of the reply that does arrive (the fault duplicated it and
// lost one copy), or the answer to a repeated request, answers as before.
// So with an ICMP port unreachable answering our datagram: a connected
// socket lost to it was never told ECONNREFUSED.
func TestAnnotateLostReplyNotAnswer(t *testing.T) {
	h := newHarness(t)
	out := func(b []byte) {
		h.a.addFrame(h.now, &record{ts: h.now, dir: dirOut, data: b, length: len(b), fi: parseFrame(b, true)})
	}
	in := func(b []byte) {
		h.a.addFrame(h.now, &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false)})
	}
	n := 0
	lose := func(b []byte) {
		n++
		lost := &record{ts: h.now, dir: dirIn, data: b, length: len(b), fi: parseFrame(b, false)}
		h.a.fault(h.now, &tap.FaultEvent{Dir: tap.FaultInbound, Kind: tap.FaultLoss, N: uint64(n), Prob: 0.5}, uint64(n), lost)
	}
	out(echoBytes(dirOut, conn, 1)) // 1
	lose(echoBytes(dirIn, conn, 1)) // 2
	out(arpBytes(dirOut, conn))     // 3
	lose(arpBytes(dirIn, conn))     // 4
	out(arpBytes(dirOut, conn))     // 5: ARP asks again
	in(arpBytes(dirIn, conn))       // 6
	out(echoBytes(dirOut, conn, 2)) // 7
	lose(echoBytes(dirIn, conn, 2)) // 8
	in(echoBytes(dirIn, conn, 2))   // 9: the copy that arrived
	dgram := udpBytes(dirOut, conn, 7)
	out(dgram) // 10
	h.ev(event.Event{Kind: event.KindUDPSend, Conn: conn, Key: event.SegKey{Len: 7}})
	lose(icmpUnreachBytes(header.ICMPv4PortUnreachable, cli.Addr(), srv.Addr(), dgram[header.EthernetMinimumSize:])) // 11
	expect(t, h.flush(),
		"ICMP echo request → reply lost (frame 2)",
		"fault: dropped (loss 50%, #1); ICMP echo reply (answers frame 1, lost)",
		"ARP request who-has 192.0.2.2 tell 192.0.2.1 → reply lost (frame 4)",
		"fault: dropped (loss 50%, #2); ARP reply 192.0.2.2 is-at 02:00:00:00:00:02 (answers frame 3, lost)",
		"ARP request who-has 192.0.2.2 tell 192.0.2.1 → answered (frame 6)",
		"ARP reply 192.0.2.2 is-at 02:00:00:00:00:02 (answers frame 5)",
		"ICMP echo request → reply lost (frame 8), answered (frame 9)",
		"fault: dropped (loss 50%, #3); ICMP echo reply (answers frame 7, lost)",
		"ICMP echo reply (answers frame 7)",
		"udp datagram 7 bytes sent → ICMP port unreachable lost (frame 11)",
		"fault: dropped (loss 50%, #4); ICMP port unreachable for UDP 192.0.2.1:80 > 192.0.2.2:40000 (answers frame 10, lost)")
}
