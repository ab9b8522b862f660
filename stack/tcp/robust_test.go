package tcp_test

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// TestMalformed: a segment that fails validation is dropped before any
// state is touched, silently (no RST: we cannot trust its fields), and
// counted under its reason. RFC 9293 3.1 (checksum, data offset), DESIGN
// "segment validation before any state is touched".
func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		make   func(p *tcptest.Peer) []byte
		reason event.DropReason
	}{
		{"bad checksum", func(p *tcptest.Peer) []byte {
			b := p.Encode(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("data")})
			b[16] ^= 0xff
			return b
		}, event.DropBadChecksum},
		{"data offset 4", func(p *tcptest.Peer) []byte {
			b := p.Encode(seg{Flags: "R", Seq: 1})
			b[12] = 4 << 4
			tcptest.FixChecksum(b)
			return b
		}, event.DropMalformed},
		{"data offset 0", func(p *tcptest.Peer) []byte {
			b := p.Encode(seg{Flags: "R", Seq: 1})
			b[12] = 0
			tcptest.FixChecksum(b)
			return b
		}, event.DropMalformed},
		{"data offset beyond the segment", func(p *tcptest.Peer) []byte {
			b := p.Encode(seg{Flags: "R", Seq: 1})
			b[12] = 15 << 4
			tcptest.FixChecksum(b)
			return b
		}, event.DropMalformed},
		{"truncated header", func(p *tcptest.Peer) []byte {
			return p.Encode(seg{Flags: "R", Seq: 1})[:12]
		}, event.DropMalformed},
	} {
		for _, target := range []string{"connection", "listener", "closed port"} {
			t.Run(tc.name+"/"+target, func(t *testing.T) {
				p, ep := tcptest.Established(t)
				switch target {
				case "listener":
					p.PeerPort++ // no connection on this 4-tuple
				case "closed port":
					p.StackPort++
				}
				p.InjectTCP(tc.make(p), false)
				p.ExpectNothing()
				p.WantState(ep, event.Established)
				p.WantState(p.Listener, event.Listen)
				if n := p.TCP.Stats().Dropped(tc.reason); n != 1 {
					t.Errorf("Dropped(%v) = %d, want 1", tc.reason, n)
				}
			})
		}
	}
}

// FuzzSegment injects arbitrary bytes as a TCP segment (inside a valid
// IPv4 header) into a stack with a listener and an established
// connection. Nothing may panic, every reply must be a well-formed
// segment, states must stay valid, and the engine must still accept and
// serve a new connection afterwards.
func FuzzSegment(f *testing.F) {
	// Seeds: real segments toward the connection and the listener, and
	// a few broken ones.
	p0, _ := tcptest.Established(f)
	for _, s := range []seg{
		{Flags: "S", Seq: 0, MSS: 1460, WS: 7, SACKPerm: true},
		{Flags: ".", Seq: 1, Ack: 1},
		{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("hello")},
		{Flags: "F.", Seq: 1, Ack: 1},
		{Flags: "R", Seq: 1},
		{Flags: "R.", Seq: 100, Ack: 1},
		{Flags: "S.", Seq: 50, Ack: 1},
		{Flags: "FSRP.", Seq: 1, Ack: 1, Payload: []byte("x")},
	} {
		b := p0.Encode(s)
		for target := range uint8(4) {
			f.Add(b, true, target)
		}
	}
	f.Add([]byte{}, false, uint8(0))
	f.Add(make([]byte, 19), true, uint8(1))
	f.Add(append(p0.Encode(seg{Flags: "S"}), 2, 4, 0, 0), true, uint8(2)) // MSS 0 past the header

	f.Fuzz(func(t *testing.T, data []byte, fix bool, target uint8) {
		p, ep := tcptest.Established(t)
		b := append([]byte(nil), data...)
		if len(b) >= 4 {
			switch target % 4 {
			case 1: // toward the established connection
				binary.BigEndian.PutUint16(b[0:], p.PeerPort)
				binary.BigEndian.PutUint16(b[2:], p.StackPort)
			case 2: // toward the listener, from a new port
				binary.BigEndian.PutUint16(b[0:], p.PeerPort+1)
				binary.BigEndian.PutUint16(b[2:], p.StackPort)
			case 3: // toward the connection, numbers near the window
				binary.BigEndian.PutUint16(b[0:], p.PeerPort)
				binary.BigEndian.PutUint16(b[2:], p.StackPort)
				if len(b) >= 12 {
					iss, _ := p.StackISS()
					seq := binary.BigEndian.Uint32(b[4:])
					ack := binary.BigEndian.Uint32(b[8:])
					binary.BigEndian.PutUint32(b[4:], p.PeerISS()+1+seq%4096-64)
					binary.BigEndian.PutUint32(b[8:], iss+1+ack%16-8)
				}
			}
		}
		p.InjectTCP(b, fix)
		p.DrainAny()
		p.Advance(3 * time.Minute) // run every timer
		p.DrainAny()
		for _, e := range append(p.TCP.Connections(), ep) {
			if s := e.State().String(); strings.HasPrefix(s, "State(") {
				t.Fatalf("invalid state %s", s)
			}
			i := e.Info()
			if i.State.String() != "CLOSED" && seqnum.Value(i.TCB.SndNxt).LessThan(seqnum.Value(i.TCB.SndUna)) {
				t.Fatalf("SND.NXT %d < SND.UNA %d", i.TCB.SndNxt, i.TCB.SndUna)
			}
		}
		// The engine still serves a new connection.
		p.PeerPort += 7
		p.SetStackISS(0, false)
		p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
		p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1})
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		var c *tcp.Endpoint
		for range 4 {
			e, err := p.Listener.Accept()
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			if e.ID().Remote.Port() == p.PeerPort {
				c = e
				break
			}
		}
		if c == nil {
			t.Fatal("new connection not accepted")
		}
		c.Write([]byte("ok"))
		p.Expect(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("ok")})
	})
}
