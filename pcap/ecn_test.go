package pcap_test

import (
	"bytes"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestECNNotes: ECN in a capture of a server's end, where a router below
// the capture marks every ECN-capable frame from the client CE. The
// client asks for ECN; the server agrees. The client's text is in the
// capture as the server got it, CE, with the fault's note; the server's
// first frame with ECE carries the engine's note on why; and the
// client's later text carries CWR: it reduced its window for the echo.
func TestECNNotes(t *testing.T) {
	server, client, capture := capturedCable(t, tap.FaultConfig{Seed: 1, Inbound: &tap.FaultConfig{Mark: 1}},
		tcp.Options{}, tcp.Options{ECN: tcp.ECNOn})
	ln, err := conn.Listen(server, "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer s.Close()
		// Echo each message, then the end of the stream.
		_, err = io.Copy(s, s)
		served <- err
	}()
	c, err := conn.Dial(client, "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	reply := make([]byte, 5)
	for _, msg := range []string{"hello", "again", "third"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, reply); err != nil || string(reply) != msg {
			t.Fatalf("echo of %q: %q, %v", msg, reply, err)
		}
	}
	c.(*conn.Conn).CloseWrite()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	c.Close()
	pkts := capture()

	const ip = header.EthernetMinimumSize
	tcpOf := func(p pcap.Packet) header.TCP { return header.TCP(p.Data[ip+header.IPv4MinimumSize:]) }
	payload := func(p pcap.Packet) string {
		return string(p.Data[ip+header.IPv4MinimumSize+int(tcpOf(p).DataOffset()):])
	}
	has := func(p pcap.Packet, f header.TCPFlags) bool { return tcpOf(p).Flags()&f != 0 }
	var marked, echoed, cwr int
	for i, p := range pkts {
		if len(p.Data) < ip+header.IPv4MinimumSize+header.TCPMinimumSize || header.IPv4(p.Data[ip:]).Protocol() != uint8(header.TCPProtocolNumber) {
			continue
		}
		ecn, _ := header.IPv4(p.Data[ip:]).TOS()
		switch {
		case p.Direction == pcap.Inbound && payload(p) != "":
			if ecn&3 != 0b11 || !strings.Contains(p.Comment(), "fault: marked CE") {
				t.Errorf("frame %d, the client's %q: ECN %02b, comment %q; want CE and the fault's note", i+1, payload(p), ecn&3, p.Comment())
			}
			marked++
			if has(p, header.TCPFlagCwr) {
				cwr++
			}
		case p.Direction == pcap.Outbound && has(p, header.TCPFlagEce) && !has(p, header.TCPFlagSyn):
			echoed++
			if echoed == 1 && !strings.Contains(p.Comment(), "ECN: text arrived marked CE") {
				t.Errorf("frame %d, the server's first echo: comment %q, want the engine's note on the mark", i+1, p.Comment())
			}
		}
	}
	t.Logf("%d frames: %d marked, %d echoing, %d with CWR", len(pkts), marked, echoed, cwr)
	if marked != 3 || echoed == 0 || cwr == 0 {
		t.Errorf("%d marked texts, %d echoes, %d CWRs; want 3 marked, an echo and a CWR", marked, echoed, cwr)
	}
}

// capturedCable is two stacks on a tap.Pipe: the captured one at
// 192.0.2.1, whose frames a pcap.Writer records above a fault
// middleware configured as cfg (its Observer is the capture's), and the
// other at 192.0.2.2. capture waits for the captured stack's events,
// closes the capture and returns its packets. Everything is closed when
// the test ends, the cable first.
func capturedCable(t *testing.T, cfg tap.FaultConfig, captured, other tcp.Options) (cs, peer *stack.Stack, capture func() []pcap.Packet) {
	t.Helper()
	a, b := tap.Pipe()
	var faultObs func(tap.FaultEvent)
	cfg.Observer = func(ev tap.FaultEvent) { faultObs(ev) }
	var buf bytes.Buffer
	w, err := pcap.New(tap.NewFault(a, cfg), &buf, pcap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	faultObs = w.FaultObserver(nil)
	captured.Observer = w.Observer(nil)
	cs, peer = stack.New(stack.Options{TCP: captured}), stack.New(stack.Options{TCP: other})
	t.Cleanup(cs.Close)
	t.Cleanup(peer.Close)
	t.Cleanup(func() { a.Close(); b.Close() })
	if _, err := cs.AddNIC(w, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	return cs, peer, func() []pcap.Packet {
		cs.TCP().SyncEvents()
		w.CloseCapture()
		pkts, err := pcap.ReadAll(&buf)
		if err != nil {
			t.Fatal(err)
		}
		return pkts
	}
}
