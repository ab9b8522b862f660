package pcap_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/stack"
)

// TestUDPComments: the frame that carries a datagram says what the stack
// did with it, as the stack's UDP events tell it: delivered to a socket,
// no port (and the ICMP port unreachable that answered, frame for frame),
// refused by a full receive buffer, sent. Captured on the server.
func TestUDPComments(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run makes the traffic; it returns the port of the client's
		// socket.
		run     func(t *testing.T, p *pair) uint16
		dir     pcap.Direction
		comment string // of the last UDP frame in dir; %c is the client's port
		dropped bool
		icmp    string // the comment of the ICMP frame, if one is expected
		record  string // the kind of the machine-readable event record of the datagram
	}{
		{
			name: "delivered",
			run: func(t *testing.T, p *pair) uint16 {
				srv := listenUDP(t, p.server, 53)
				c := dialUDP(t, p.client, 53)
				write(t, c, 12)
				read(t, srv)
				return port(c)
			},
			dir:     pcap.Inbound,
			comment: "udp datagram 12 bytes delivered to 192.0.2.1:53",
			record:  "udp deliver",
		},
		{
			// IP fragments the datagram (the cable's MTU is 1500);
			// its first fragment carries the header and the comment.
			name: "fragmented",
			run: func(t *testing.T, p *pair) uint16 {
				srv := listenUDP(t, p.server, 53)
				c := dialUDP(t, p.client, 53)
				write(t, c, 3000)
				read(t, srv)
				return port(c)
			},
			dir:     pcap.Inbound,
			comment: "udp datagram 3000 bytes delivered to 192.0.2.1:53",
			record:  "udp deliver",
		},
		{
			name: "no port",
			run: func(t *testing.T, p *pair) uint16 {
				c := dialUDP(t, p.client, 9)
				write(t, c, 12)
				// The ICMP answer reaches the client's socket.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Read(make([]byte, 16)); err == nil {
					t.Fatal("read after a datagram to no port succeeded")
				}
				return port(c)
			},
			dir:     pcap.Inbound,
			comment: "udp datagram 12 bytes to 192.0.2.1:9: no port: answered ICMP port unreachable (frame 4)",
			dropped: true,
			icmp:    "ICMP port unreachable for UDP 192.0.2.2:%c > 192.0.2.1:9 (answers frame 3)",
			record:  "udp no port",
		},
		{
			name: "receive buffer full",
			run: func(t *testing.T, p *pair) uint16 {
				srv := listenUDP(t, p.server, 53)
				if err := srv.SetReadBuffer(1); err != nil { // gVisor's minimum
					t.Fatal(err)
				}
				c := dialUDP(t, p.client, 53)
				for i := 0; p.server.UDPStats().ReceiveBufferFull == 0; i++ {
					if i == 64 {
						t.Fatal("64 datagrams of 1000 bytes did not fill the receive buffer")
					}
					write(t, c, 1000)
					waitUDP(t, p.server, uint64(i+1))
				}
				return port(c)
			},
			dir:     pcap.Inbound,
			comment: "udp datagram 1000 bytes to 192.0.2.1:53: receive buffer full: dropped",
			dropped: true,
			record:  "udp drop",
		},
		{
			name: "sent",
			run: func(t *testing.T, p *pair) uint16 {
				cl := listenUDP(t, p.client, 5353)
				srv := listenUDP(t, p.server, 53)
				if _, err := srv.WriteToUDPAddrPort(make([]byte, 7), netip.MustParseAddrPort("192.0.2.2:5353")); err != nil {
					t.Fatal(err)
				}
				read(t, cl)
				return 5353
			},
			dir:     pcap.Outbound,
			comment: "udp datagram 7 bytes sent",
			record:  "udp send",
		},
		{
			name: "sent to no port",
			run: func(t *testing.T, p *pair) uint16 {
				srv, err := conn.DialUDP(p.server, "udp4", &net.UDPAddr{Port: 53}, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 5353})
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				write(t, srv, 7)
				srv.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := srv.Read(make([]byte, 16)); err == nil {
					t.Fatal("read after a datagram to no port succeeded")
				}
				return 5353
			},
			dir:     pcap.Outbound,
			comment: "udp datagram 7 bytes sent → ICMP port unreachable (frame 4)",
			icmp:    "ICMP port unreachable for UDP 192.0.2.1:53 > 192.0.2.2:%c (answers frame 3)",
			record:  "udp send",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := newPair(t, &buf, pcap.Options{}, nil)
			cport := tc.run(t, p)
			// The stack reports a delivery once the socket has the
			// datagram, so a reader may have it first: wait for one
			// event per datagram received or sent, bounded.
			st := p.server.UDPStats()
			for i := 0; p.capture.EventStats().Recorded < st.Received+st.Sent; i++ {
				if i == 1000 {
					t.Fatalf("%d events recorded for %+v", p.capture.EventStats().Recorded, st)
				}
				time.Sleep(time.Millisecond)
			}
			if err := p.capture.CloseCapture(); err != nil {
				t.Fatal(err)
			}
			pkts, err := pcap.ReadAll(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			var last, icmp *pcap.Packet
			var all []string
			for i := range pkts {
				pk := &pkts[i]
				all = append(all, pk.Direction.String()+" | "+pk.Comment())
				if _, _, ok := pk.UDP(); ok && pk.Direction == tc.dir {
					last = pk
				}
				if strings.HasPrefix(pk.Comment(), "ICMP") {
					icmp = pk
				}
			}
			t.Logf("capture:\n%s", strings.Join(all, "\n"))
			if last == nil {
				t.Fatalf("no %v UDP frame", tc.dir)
			}
			cp := itoa(int(cport))
			if want := strings.ReplaceAll(tc.comment, "%c", cp); last.Comment() != want {
				t.Errorf("comment %q, want %q", last.Comment(), want)
			}
			if last.Dropped != tc.dropped {
				t.Errorf("verdict dropped = %v, want %v", last.Dropped, tc.dropped)
			}
			// Wireshark shows the same comment.
			path := filepath.Join(t.TempDir(), "udp.pcapng")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			switch out, err := pcaptest.Comments(path); {
			case errors.Is(err, pcaptest.ErrNoTshark):
				t.Log("tshark is not installed: Wireshark's reading is not checked")
			case err != nil:
				t.Error(err)
			case !strings.Contains(out, "\t"+strings.ReplaceAll(tc.comment, "%c", itoa(int(cport)))+"\n"):
				t.Errorf("tshark's comments lack %q:\n%s", tc.comment, out)
			}

			recs, err := pcap.ReadEvents(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			conn, n, _ := last.UDP()
			found := false
			for _, r := range recs {
				l, rem := r.ConnOf()
				found = found || (r.Kind == tc.record && r.Len == n && l.Port() == conn.Local.Port() && rem == conn.Remote)
			}
			if !found {
				t.Errorf("no %q event record of %d bytes %v in %+v", tc.record, n, conn, recs)
			}
			switch {
			case tc.icmp == "" && icmp != nil:
				t.Errorf("unexpected ICMP frame: %q", icmp.Comment())
			case tc.icmp != "" && icmp == nil:
				t.Error("no ICMP frame")
			case tc.icmp != "" && icmp.Comment() != strings.ReplaceAll(tc.icmp, "%c", cp):
				t.Errorf("ICMP comment %q, want %q", icmp.Comment(), strings.ReplaceAll(tc.icmp, "%c", cp))
			}
		})
	}
}

func listenUDP(t *testing.T, s *stack.Stack, port int) *conn.UDPConn {
	t.Helper()
	c, err := conn.ListenUDP(s, "udp4", &net.UDPAddr{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialUDP(t *testing.T, s *stack.Stack, port int) *conn.UDPConn {
	t.Helper()
	c, err := conn.DialUDP(s, "udp4", nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func port(c *conn.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

func write(t *testing.T, c *conn.UDPConn, n int) {
	t.Helper()
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, c *conn.UDPConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadFrom(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
}

// waitUDP waits until s's UDP has taken n datagrams, whatever became of
// them: they cross the cable on its goroutine.
func waitUDP(t *testing.T, s *stack.Stack, n uint64) {
	t.Helper()
	for i := 0; s.UDPStats().Received < n; i++ {
		if i == 10000 {
			t.Fatalf("UDP received %d datagrams, want %d", s.UDPStats().Received, n)
		}
		time.Sleep(time.Millisecond)
	}
}
