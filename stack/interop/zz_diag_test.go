package interop

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

func TestZZDiagRTO(t *testing.T) {
	if os.Getenv("ZZDIAG") == "" {
		t.Skip()
	}
	var mu sync.Mutex
	var ring []string
	var out strings.Builder
	obs := func(ev event.Event) {
		mu.Lock()
		defer mu.Unlock()
		line := ev.Time.Format("05.000000") + " " + ev.String()
		if ev.Kind == event.KindAck {
			line += fmt.Sprintf(" [srtt %v rto %v inflight %d]", ev.SRTT, ev.RTO, ev.InFlight)
		}
		ring = append(ring, line)
		if len(ring) > 80 {
			ring = ring[1:]
		}
		if ev.Kind == event.KindRetransmitTimeout {
			out.WriteString("=== RTO\n" + strings.Join(ring, "\n") + "\n")
		}
	}
	prof := lossProfiles[4]
	seed := uint64(7)
	a, c := tap.Pipe()
	s, _ := newTapstack(t, tap.NewFault(a, prof.cfg(seed)), tsPrefix4, tcp.Options{Observer: obs})
	snd := benchEnd{addr: tsPrefix4.Addr(), dial: func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
		return conn.DialContext(ctx, s, "tcp", to.String())
	}}
	f, _ := os.Create("/tmp/zzdiag.pcapng")
	pw, err := pcap.New(c, f, pcap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { pw.CloseCapture(); f.Close() }()
	peer := newPeer(t, tap.NewFault(pw, prof.cfg(seed+1000)), peerPrefix4)
	rcv := benchEnd{addr: peerPrefix4.Addr()}
	ln, err := peer.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	n, d, err := lossyTransfer(snd, rcv, ln, 1*MiB)
	st := s.TCP().Stats()
	t.Logf("%d bytes in %v (%v), %d rtx, %d RTOs", n, d, err, st.Retransmits.Load(), st.RetransmitTimeouts.Load())
	mu.Lock()
	os.WriteFile("/tmp/zzdiag.txt", []byte(out.String()), 0o644)
	mu.Unlock()
}
