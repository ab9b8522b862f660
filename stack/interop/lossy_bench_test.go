package interop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// lossProfile is a fault profile applied to the frames both ends send:
// data one way, ACKs the other.
type lossProfile struct {
	name string
	cfg  func(seed uint64) tap.FaultConfig
}

var lossProfiles = []lossProfile{
	{"clean", func(uint64) tap.FaultConfig { return tap.FaultConfig{} }},
	{"loss1", func(s uint64) tap.FaultConfig { return tap.FaultConfig{Loss: 0.01, Source: rand.NewPCG(s, 1)} }},
	{"loss5", func(s uint64) tap.FaultConfig { return tap.FaultConfig{Loss: 0.05, Source: rand.NewPCG(s, 5)} }},
	{"mixed", func(s uint64) tap.FaultConfig {
		return tap.FaultConfig{Loss: 0.05, Reorder: 0.05, Duplicate: 0.02, Corrupt: 0.01, Source: rand.NewPCG(s, 7)}
	}},
	{"loss20", func(s uint64) tap.FaultConfig { return tap.FaultConfig{Loss: 0.20, Source: rand.NewPCG(s, 20)} }},
}

// lossyEnd is one end of a lossy benchmark cable, tapstack or gVisor's
// TCP, with its counters of retransmissions and retransmission timeouts.
type lossyEnd struct {
	benchEnd
	counters func() (retransmits, rtos uint64)
}

func lossyTapstack(b *testing.B, l gstack.LinkEndpoint, p netip.Prefix) lossyEnd {
	s := newUnwatched(b, l, p, tcp.Options{})
	return lossyEnd{
		benchEnd: benchEnd{
			addr: p.Addr(),
			listen: func(port uint16) (net.Listener, error) {
				return conn.Listen(s, "tcp", netip.AddrPortFrom(p.Addr(), port).String())
			},
			dial: func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
				return conn.DialContext(ctx, s, "tcp", to.String())
			},
		},
		counters: func() (uint64, uint64) {
			st := s.TCP().Stats()
			return st.Retransmits.Load(), st.RetransmitTimeouts.Load()
		},
	}
}

func lossyGVisor(b *testing.B, l gstack.LinkEndpoint, p netip.Prefix) lossyEnd {
	peer := newPeer(b, l, p)
	return lossyEnd{
		benchEnd: benchEnd{
			addr:   p.Addr(),
			listen: func(port uint16) (net.Listener, error) { return peer.Listen(port) },
			dial:   func(_ context.Context, to netip.AddrPort) (net.Conn, error) { return peer.Dial(to) },
		},
		counters: func() (uint64, uint64) {
			st := peer.S.Stats().TCP
			return st.Retransmits.Value(), st.Timeouts.Value()
		},
	}
}

// lossySize is what one iteration sends: 64 MiB, or TAPSTACK_LOSSY_MIB.
func lossySize() int64 {
	if v, err := strconv.Atoi(os.Getenv("TAPSTACK_LOSSY_MIB")); err == nil && v > 0 {
		return int64(v) * MiB
	}
	return 64 * MiB
}

// BenchmarkLossy sends 64 MiB one way, every byte hashed, over tap.Pipe with the fault
// middleware on both ends (the same seeded faults for every pairing), for
// each fault profile and each pairing of tapstack and gVisor's TCP as
// sender and receiver, each transfer on a fresh cable with its own seed.
// It reports MB/s, and the sender's retransmissions and retransmission
// timeouts per transfer. A transfer that has not
// finished in two minutes reports the bytes it moved (MB/op) instead.
//
//	go test ./stack/interop -run '^$' -bench Lossy -benchtime 1x
func BenchmarkLossy(b *testing.B) {
	type maker func(*testing.B, gstack.LinkEndpoint, netip.Prefix) lossyEnd
	pairs := []struct {
		name             string
		sender, receiver maker
	}{
		{"tapstack-to-gvisor", lossyTapstack, lossyGVisor},
		{"gvisor-to-tapstack", lossyGVisor, lossyTapstack},
		{"gvisor-to-gvisor", lossyGVisor, lossyGVisor},
		{"tapstack-to-tapstack", lossyTapstack, lossyTapstack},
	}
	size := lossySize()
	for _, prof := range lossProfiles {
		for _, pair := range pairs {
			b.Run(prof.name+"/"+pair.name, func(b *testing.B) {
				b.SetBytes(size)
				var moved int64
				var elapsed time.Duration
				var rx, rto uint64
				seed := uint64(7)
				for b.Loop() {
					// A fresh cable per transfer, with the next seed:
					// every pairing meets the same faults, transfer by
					// transfer, and -benchtime Nx averages N of them.
					a, c := tap.Pipe()
					snd := pair.sender(b, tap.NewFault(a, prof.cfg(seed)), tsPrefix4)
					rcv := pair.receiver(b, tap.NewFault(c, prof.cfg(seed+1000)), peerPrefix4)
					seed++
					ln, err := rcv.listen(80)
					if err != nil {
						b.Fatal(err)
					}
					n, d, err := lossyTransfer(snd.benchEnd, rcv.benchEnd, ln, size)
					ln.Close()
					moved += n
					elapsed += d
					r, t := snd.counters()
					rx, rto = rx+r, rto+t
					if err != nil {
						b.Logf("%s after %d bytes in %v", err, n, d.Round(time.Millisecond))
					}
				}
				b.ReportMetric(float64(rx)/float64(b.N), "retransmits/op")
				b.ReportMetric(float64(rto)/float64(b.N), "RTOs/op")
				b.ReportMetric(float64(moved)/float64(b.N)/1e6, "MB/op")
				b.ReportMetric(float64(moved)/elapsed.Seconds()/1e6, "goodMB/s")
			})
		}
	}
}

// lossyTransfer dials from snd to rcv's listener ln and sends size bytes
// of a seeded stream, then closes the write side; it returns how many
// bytes the receiver got, when it got the last (within two minutes), and
// an error if any byte differs (SHA-256 both ends).
func lossyTransfer(snd, rcv benchEnd, ln net.Listener, size int64) (int64, time.Duration, error) {
	accepted := acceptOne(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := snd.dial(ctx, netip.AddrPortFrom(rcv.addr, 80))
	cancel()
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	r := <-accepted
	if r.err != nil {
		return 0, 0, r.err
	}
	defer r.c.Close()
	dl := time.Now().Add(2 * time.Minute)
	c.SetDeadline(dl)
	r.c.SetDeadline(dl)
	from, ok1 := c.(halfCloser)
	to, ok2 := r.c.(halfCloser)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%T or %T cannot close its write side", c, r.c)
	}
	// Every byte hashed (SHA-256 of a seeded stream), as the soak does.
	start := time.Now()
	sent, got := flow(from, to, size, uint64(size))
	d := time.Since(start)
	switch {
	case sent.err != nil:
		return got.n, d, fmt.Errorf("send: %w", sent.err)
	case got.err != nil:
		return got.n, d, fmt.Errorf("receive: %w", got.err)
	case sent.n != got.n || sent.sum != got.sum:
		return got.n, d, fmt.Errorf("sent %v, received %v", sent, got)
	}
	return got.n, d, nil
}
