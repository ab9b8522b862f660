package tcp_test

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestResetClosedPort: RFC 9293 3.10.7.1, a segment for no connection and
// no listener. If the ACK bit is off, <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
// <CTL=RST,ACK>; if on, <SEQ=SEG.ACK><CTL=RST>; a RST is not answered.
// Sequence numbers of the stack's side are absolute here: there is no ISS.
func TestResetClosedPort(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   seg
		want *seg
	}{
		{"SYN", seg{Flags: "S", Seq: 0}, &seg{Flags: "R.", Seq: 0, Ack: 1}},
		{"SYN with data", seg{Flags: "S", Seq: 0, Payload: []byte("abc")}, &seg{Flags: "R.", Seq: 0, Ack: 4}},
		{"ACK", seg{Flags: ".", Seq: 5, Ack: 12345}, &seg{Flags: "R", Seq: 12345}},
		{"data with ACK", seg{Flags: "P.", Seq: 5, Ack: 777, Payload: []byte("hi")}, &seg{Flags: "R", Seq: 777}},
		{"FIN without ACK", seg{Flags: "F", Seq: 9}, &seg{Flags: "R.", Seq: 0, Ack: 10}},
		{"RST", seg{Flags: "R", Seq: 5}, nil},
		{"RST ACK", seg{Flags: "R.", Seq: 5, Ack: 5}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tcptest.New(t)
			p.Inject(tc.in)
			if tc.want != nil {
				p.Expect(*tc.want)
			}
			p.ExpectNothing()
			if n := p.TCP.Stats().Dropped(event.DropNoSocket); n != 1 {
				t.Errorf("Dropped(no socket) = %d, want 1", n)
			}
		})
	}
}

// TestListenerSegments: RFC 9293 3.10.7.2. In LISTEN a RST is ignored,
// an ACK is answered with <SEQ=SEG.ACK><CTL=RST>, and anything without SYN
// is dropped; the listener stays in LISTEN.
func TestListenerSegments(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     seg
		want   *seg
		reason event.DropReason
	}{
		{"RST", seg{Flags: "R", Seq: 1}, nil, event.DropListenRst},
		{"RST ACK", seg{Flags: "R.", Seq: 1, Ack: 7}, nil, event.DropListenRst},
		{"ACK", seg{Flags: ".", Seq: 1, Ack: 777}, &seg{Flags: "R", Seq: 777}, event.DropListenAck},
		{"FIN ACK", seg{Flags: "F.", Seq: 1, Ack: 50}, &seg{Flags: "R", Seq: 50}, event.DropListenAck},
		{"bare FIN", seg{Flags: "F", Seq: 1}, nil, event.DropListenNoSyn},
		{"no flags", seg{Flags: "", Seq: 1, Payload: []byte("x")}, nil, event.DropListenNoSyn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, l := tcptest.Listen(t)
			p.Inject(tc.in)
			if tc.want != nil {
				p.Expect(*tc.want)
			}
			p.ExpectNothing()
			p.WantState(l, event.Listen)
			if n := p.TCP.Stats().Dropped(tc.reason); n != 1 {
				t.Errorf("Dropped(%v) = %d, want 1", tc.reason, n)
			}
			if n := len(p.TCP.Connections()); n != 0 {
				t.Errorf("%d connections, want none", n)
			}
			// The listener still works.
			p.Inject(seg{Flags: "S", Seq: 0})
			p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
		})
	}
}

// TestResetSynSent: RFC 9293 3.10.7.3. A RST whose ACK acknowledges our
// SYN refuses the connection; one with an unacceptable ACK, or with no
// ACK, is dropped (RFC 5961 3.2 keeps this rule).
func TestResetSynSent(t *testing.T) {
	t.Run("acceptable ACK", func(t *testing.T) {
		p, ep := tcptest.SynSent(t)
		p.Inject(seg{Flags: "R.", Seq: 0, Ack: 1})
		p.ExpectNothing()
		p.WantState(ep, event.Closed)
		ok, err := ep.Established()
		if ok || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Established() = %v, %v; want false, ECONNREFUSED", ok, err)
		}
		if _, err := ep.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("Read: %v, want ECONNREFUSED", err)
		}
	})
	for _, tc := range []struct {
		name string
		in   seg
	}{
		{"ACK of ISS", seg{Flags: "R.", Seq: 0, Ack: 0}},
		{"ACK beyond SND.NXT", seg{Flags: "R.", Seq: 0, Ack: 5}},
		{"no ACK", seg{Flags: "R", Seq: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.SynSent(t)
			p.Inject(tc.in)
			p.ExpectNothing()
			p.WantState(ep, event.SynSent)
			if ok, err := ep.Established(); ok || err != nil {
				t.Fatalf("Established() = %v, %v; want false, nil", ok, err)
			}
			// The handshake still completes.
			p.Inject(seg{Flags: "S.", Seq: 0, Ack: 1})
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
			p.WantState(ep, event.Established)
		})
	}
	t.Run("bad ACK without RST", func(t *testing.T) {
		// "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset
		// <SEQ=SEG.ACK><CTL=RST>" and stay in SYN-SENT.
		p, ep := tcptest.SynSent(t)
		p.Inject(seg{Flags: "S.", Seq: 0, Ack: 100})
		p.Expect(seg{Flags: "R", Seq: 100})
		p.WantState(ep, event.SynSent)
	})
}

// TestResetSynchronized: RFC 9293 3.10.7.4 second step as RFC 5961 3.2
// amends it: a RST exactly at RCV.NXT resets the connection; elsewhere in
// the window it earns a challenge ACK; outside the window it is dropped.
// A SYN in a synchronized state earns a challenge ACK (RFC 5961 4.2).
func TestResetSynchronized(t *testing.T) {
	t.Run("RST at RCV.NXT", func(t *testing.T) {
		p, ep := tcptest.Established(t)
		p.Inject(seg{Flags: "R", Seq: 1})
		p.ExpectNothing()
		p.WantState(ep, event.Closed)
		if _, err := ep.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Read: %v, want ECONNRESET", err)
		}
		if _, err := ep.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Write: %v, want ECONNRESET", err)
		}
		if n := p.TCP.Stats().ResetsReceived.Load(); n != 1 {
			t.Errorf("ResetsReceived %d, want 1", n)
		}
	})
	for _, tc := range []struct {
		name   string
		in     seg
		want   *seg
		reason event.DropReason
	}{
		{"RST in window, not at RCV.NXT", seg{Flags: "R", Seq: 100}, &seg{Flags: ".", Seq: 1, Ack: 1}, event.DropRstInvalid},
		{"RST ACK in window, not at RCV.NXT", seg{Flags: "R.", Seq: 2, Ack: 1}, &seg{Flags: ".", Seq: 1, Ack: 1}, event.DropRstInvalid},
		{"RST beyond the window", seg{Flags: "R", Seq: 1 + 65535 + 10}, nil, event.DropOutOfWindow},
		{"RST below RCV.NXT", seg{Flags: "R", Seq: 0}, nil, event.DropOldSequence},
		{"SYN in window", seg{Flags: "S", Seq: 50}, &seg{Flags: ".", Seq: 1, Ack: 1}, event.DropSynUnexpected},
		{"SYN at RCV.NXT", seg{Flags: "S", Seq: 1}, &seg{Flags: ".", Seq: 1, Ack: 1}, event.DropSynUnexpected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			p.Inject(tc.in)
			if tc.want != nil {
				p.Expect(*tc.want)
			}
			p.ExpectNothing()
			p.WantState(ep, event.Established)
			if n := p.TCP.Stats().Dropped(tc.reason); n != 1 {
				t.Errorf("Dropped(%v) = %d, want 1", tc.reason, n)
			}
			// The connection still carries data.
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("ok")})
			buf := make([]byte, 10)
			if n, err := ep.Read(buf); err != nil || string(buf[:n]) != "ok" {
				t.Errorf("Read = %q, %v", buf[:n], err)
			}
		})
	}
	t.Run("RST in CLOSE-WAIT", func(t *testing.T) {
		p, ep := tcptest.CloseWait(t)
		p.Inject(seg{Flags: "R", Seq: 2})
		p.ExpectNothing()
		p.WantState(ep, event.Closed)
	})
	t.Run("RST in TIME-WAIT", func(t *testing.T) {
		// RFC 9293 3.10.7.4: in TIME-WAIT a RST at RCV.NXT closes.
		p, ep := tcptest.TimeWait(t)
		p.Inject(seg{Flags: "R", Seq: 2})
		p.ExpectNothing()
		p.WantState(ep, event.Closed)
	})
}

// TestResetBelowRcvNxtWithText: RFC 5961 3.2 (RFC 9293 3.10.7.4, second
// step): only a RST whose sequence number is exactly RCV.NXT resets the
// connection. A RST whose SEG.SEQ lies below RCV.NXT but whose text
// reaches into the window passes the acceptability test of the first
// step, which counts SEG.LEN; it is in the window, not at RCV.NXT, and
// earns a challenge ACK, as in Linux (tcp_validate_incoming: tcp_sequence
// on seq..end_seq, then a reset only at rcv_nxt). Its text is not taken.
// One whose text ends at RCV.NXT is not acceptable and is dropped in
// silence (first step).
func TestResetBelowRcvNxtWithText(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     seg // RCV.NXT is 2001
		want   *seg
		reason event.DropReason
	}{
		{"RST ACK 50 below, 100 bytes", seg{Flags: "R.", Seq: 1951, Ack: 1, Payload: payload(0, 100)}, &seg{Flags: ".", Seq: 1, Ack: 2001}, event.DropRstInvalid},
		{"RST 1 below, 2 bytes", seg{Flags: "R", Seq: 2000, Payload: payload(0, 2)}, &seg{Flags: ".", Seq: 1, Ack: 2001}, event.DropRstInvalid},
		{"RST 1000 below, 1400 bytes", seg{Flags: "R", Seq: 1001, Payload: payload(0, 1400)}, &seg{Flags: ".", Seq: 1, Ack: 2001}, event.DropRstInvalid},
		{"RST ACK, text ending at RCV.NXT", seg{Flags: "R.", Seq: 1901, Ack: 1, Payload: payload(1900, 100)}, nil, event.DropOldSequence},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 2000)})
			p.Advance(time.Second)
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 2001})
			p.Inject(tc.in)
			if tc.want != nil {
				p.Expect(*tc.want) // the challenge ACK
			}
			p.ExpectNothing()
			p.WantState(ep, event.Established)
			wantCount(t, "Dropped("+tc.reason.String()+")", p.TCP.Stats().Dropped(tc.reason), 1)
			wantCount(t, "ResetsReceived", p.TCP.Stats().ResetsReceived.Load(), 0)
			// The connection still carries data, and the RST's text
			// was not taken.
			p.Inject(seg{Flags: "P.", Seq: 2001, Ack: 1, Payload: []byte("ok")})
			if got, want := readAll(t, ep), append(payload(0, 2000), "ok"...); !bytes.Equal(got, want) {
				t.Errorf("read %d bytes ending %q, want %d ending %q", len(got), got[max(0, len(got)-4):], len(want), want[len(want)-4:])
			}
		})
	}
}

// TestSynBelowRcvNxt: RFC 5961 4.2 (RFC 9293 3.10.7.4, fourth step): in a
// synchronized state, "If the SYN bit is set, irrespective of the sequence
// number, TCP endpoints MUST send a 'challenge ACK'" and drop the segment.
// A SYN below RCV.NXT whose text or FIN reaches RCV.NXT passes the
// acceptability test; its SYN is checked as it arrived, before the
// segment is trimmed to the window, as Linux's tcp_validate_incoming
// checks it before tcp_data_queue trims, so neither its text nor its FIN
// is taken.
func TestSynBelowRcvNxt(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   seg // RCV.NXT is 101
	}{
		{"SYN ACK one below, 20 bytes", seg{Flags: "S.", Seq: 100, Ack: 1, Payload: []byte("INJECTED-BY-A-SYN!!!")}},
		{"SYN FIN ACK one below", seg{Flags: "SF.", Seq: 100, Ack: 1}},
		{"SYN FIN ACK one below, 20 bytes", seg{Flags: "SF.", Seq: 100, Ack: 1, Payload: []byte("INJECTED-BY-A-SYN!!!")}},
		{"SYN 50 below, 100 bytes", seg{Flags: "S", Seq: 51, Payload: payload(0, 100)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ep := tcptest.Established(t)
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 100)})
			p.Advance(time.Second)
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 101})
			p.Inject(tc.in)
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 101}) // the challenge ACK
			p.ExpectNothing()
			p.WantState(ep, event.Established)
			wantCount(t, "Dropped(unexpected SYN)", p.TCP.Stats().Dropped(event.DropSynUnexpected), 1)
			wantCount(t, "Sent(challenge ACK)", p.TCP.Stats().Sent(event.SendChallengeAck), 1)
			// The connection still carries data, and the SYN's text
			// was not taken.
			p.Inject(seg{Flags: "P.", Seq: 101, Ack: 1, Payload: []byte("ok")})
			if got, want := readAll(t, ep), append(payload(0, 100), "ok"...); !bytes.Equal(got, want) {
				t.Errorf("read %q, want %q", got, want)
			}
		})
	}
}

// TestSynOutOfWindow: RFC 5961 4.2, folded into RFC 9293 3.10.7.4's
// fourth step: in a synchronized state a SYN gets a challenge ACK
// "irrespective of the sequence number", so one the first step finds
// outside the window, or the PAWS test finds old, is answered with a
// challenge ACK, under the challenge ACKs' limits, not with the duplicate
// ACK of an unacceptable segment. Linux does the same:
// tcp_validate_incoming sends a SYN that fails tcp_sequence, or PAWS, to
// its syn_challenge label (tcp_send_challenge_ack) before the dupack.
func TestSynOutOfWindow(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   seg // RCV.NXT is 1, RCV.WND 65535
		ts   bool
	}{
		{"SYN beyond the window", seg{Flags: "S", Seq: 1 + 65535 + 10}, false},
		{"SYN ACK far beyond the window", seg{Flags: "S.", Seq: 1 << 30, Ack: 1}, false},
		{"SYN ending at RCV.NXT", seg{Flags: "S", Seq: 0}, false},
		{"SYN with text below the window", seg{Flags: "S.", Seq: ^uint32(0) - 998, Ack: 1, Payload: payload(0, 100)}, false},
		{"SYN failing PAWS", seg{Flags: "S", Seq: 1, TS: true, TSVal: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []tcptest.Option
			if tc.ts {
				opts = append(opts, tcptest.WithTimestamps())
			}
			p, ep := tcptest.Established(t, opts...)
			p.Inject(tc.in)
			p.Expect(seg{Flags: ".", Seq: 1, Ack: 1}) // the challenge ACK
			p.ExpectNothing()
			p.WantState(ep, event.Established)
			st := p.TCP.Stats()
			wantCount(t, "Dropped(unexpected SYN)", st.Dropped(event.DropSynUnexpected), 1)
			wantCount(t, "Sent(challenge ACK)", st.Sent(event.SendChallengeAck), 1)
			p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("ok")})
			if got := readAll(t, ep); string(got) != "ok" {
				t.Errorf("read %q, want %q", got, "ok")
			}
		})
	}
	// The stack-wide budget of RFC 5961 7 holds the challenge ACK an
	// out-of-window SYN asks for as it holds any other: with a budget of
	// one a second (and no per-connection limit), a SYN in the window
	// spends it and one beyond the window gets nothing.
	t.Run("stack-wide budget", func(t *testing.T) {
		p, ep := tcptest.Established(t, tcptest.WithTCP(tcp.Options{ChallengeAckLimit: 1, InvalidRateLimit: -1}))
		p.Inject(seg{Flags: "S", Seq: 50})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
		p.Inject(seg{Flags: "S", Seq: 1 << 30})
		p.ExpectNothing()
		st := p.TCP.Stats()
		wantCount(t, "Dropped(unexpected SYN)", st.Dropped(event.DropSynUnexpected), 2)
		wantCount(t, "Dropped(challenge ACK rate limited)", st.Dropped(event.DropChallengeRateLimited), 1)
		p.Advance(time.Second)
		p.Inject(seg{Flags: "S", Seq: 1 << 30})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1})
		p.WantState(ep, event.Established)
	})
}
