package interop

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// benchSize is what one iteration of BenchmarkBulk sends.
const benchSize = 64 * MiB

// benchEnd is one side of a benchmark cable: a listener or a dialer on
// either tapstack or gVisor's TCP.
type benchEnd struct {
	addr   netip.Addr
	listen func(port uint16) (net.Listener, error)
	dial   func(ctx context.Context, to netip.AddrPort) (net.Conn, error)
}

func tapstackEnd(b testing.TB, l gstack.LinkEndpoint, p netip.Prefix) benchEnd {
	s := newUnwatched(b, l, p, tcp.Options{})
	return benchEnd{
		addr: p.Addr(),
		listen: func(port uint16) (net.Listener, error) {
			return conn.Listen(s, "tcp", netip.AddrPortFrom(p.Addr(), port).String())
		},
		dial: func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
			return conn.DialContext(ctx, s, "tcp", to.String())
		},
	}
}

func gvisorEnd(b testing.TB, l gstack.LinkEndpoint, p netip.Prefix) benchEnd {
	peer := newPeer(b, l, p)
	return benchEnd{
		addr:   p.Addr(),
		listen: func(port uint16) (net.Listener, error) { return peer.Listen(port) },
		dial: func(_ context.Context, to netip.AddrPort) (net.Conn, error) {
			return peer.Dial(to)
		},
	}
}

// BenchmarkBulk sends 64 MiB one way per iteration over tap.Pipe, from a
// dialing sender to a listening receiver, for each pairing of tapstack
// and gVisor's TCP; gVisor to gVisor is the baseline. The gso/ variants
// use a pipe that offers segmentation offload (tap.WithPipeGSO), the
// gso-mtu65520/ ones such a pipe at the largest MTU a TAP takes, where
// every segment is a packet of its own (as loopback's 64 KiB MTU makes
// Linux's).
func BenchmarkBulk(b *testing.B) {
	type maker func(testing.TB, gstack.LinkEndpoint, netip.Prefix) benchEnd
	for _, bc := range []struct {
		name     string
		sender   maker
		receiver maker
	}{
		{"tapstack-to-tapstack", tapstackEnd, tapstackEnd},
		{"tapstack-to-gvisor", tapstackEnd, gvisorEnd},
		{"gvisor-to-tapstack", gvisorEnd, tapstackEnd},
		{"gvisor-to-gvisor", gvisorEnd, gvisorEnd},
	} {
		for _, lc := range []struct {
			prefix string
			gso    bool
			mtu    uint32
		}{{"", false, tap.DefaultMTU}, {"gso/", true, tap.DefaultMTU}, {"gso-mtu65520/", true, 65520}} {
			b.Run(lc.prefix+bc.name, func(b *testing.B) {
				pa, pb := tap.Pipe(tap.WithPipeGSO(lc.gso), tap.WithPipeMTU(lc.mtu))
				ga, gb := pa, pb
				snd := bc.sender(b, ga, tsPrefix4)
				rcv := bc.receiver(b, gb, peerPrefix4)
				ln, err := rcv.listen(80)
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				chunk := make([]byte, 64<<10)
				for i := range chunk {
					chunk[i] = byte(i)
				}
				rbuf := make([]byte, 64<<10)
				b.SetBytes(benchSize)
				b.ReportAllocs()
				sent0, acks0 := pa.Stats().Sent, pb.Stats().Sent
				for b.Loop() {
					accepted := acceptOne(ln)
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					c, err := snd.dial(ctx, netip.AddrPortFrom(rcv.addr, 80))
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					r := <-accepted
					if r.err != nil {
						b.Fatal(r.err)
					}
					dl := time.Now().Add(2 * time.Minute)
					c.SetDeadline(dl)
					r.c.SetDeadline(dl)
					done := make(chan error, 1)
					go func() {
						// The reader hides a tapstack Conn's WriteTo:
						// io.Discard would take its receive buffer without
						// a copy where gVisor's bytes are copied out. The
						// writer hides io.Discard's ReadFrom, which would
						// read 8 KiB at a time into a buffer of its own
						// rather than rbuf's 64 KiB.
						n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r.c}, rbuf)
						if err == nil && n != benchSize {
							err = io.ErrUnexpectedEOF
						}
						done <- err
					}()
					for sent := 0; sent < benchSize; sent += len(chunk) {
						if _, err := c.Write(chunk); err != nil {
							b.Fatal(err)
						}
					}
					if err := c.(halfCloser).CloseWrite(); err != nil {
						b.Fatal(err)
					}
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					c.Close()
					r.c.Close()
				}
				// Frames per GiB each way: the sender's segments (or
				// super-frames) and the receiver's ACKs, so that an ACK
				// policy or a batching change shows as a count.
				gib := float64(b.N) * benchSize / (1 << 30)
				b.ReportMetric(float64(pa.Stats().Sent-sent0)/gib, "frames/GiB")
				b.ReportMetric(float64(pb.Stats().Sent-acks0)/gib, "acks/GiB")
			})
		}
	}
}
