package conn_test

import (
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// BenchmarkCopy moves 64 MiB per iteration over tap.Pipe (with GSO, as
// tapstack bench runs it) from a writer to a receiver that checksums what
// it reads with io.Copy(crc32, conn), and reports the process's CPU time
// per GiB:
//
//   - tapstack/WriteTo: tapstack to tapstack; io.Copy takes the Conn's
//     WriteTo, and CRC-32C reads the receive buffer's own memory;
//   - tapstack/Read: the same with WriteTo hidden, so io.Copy reads
//     into a buffer first, as it must for a conn without one;
//   - gvisor: gVisor's TCP at both ends (gonet has no WriteTo).
func BenchmarkCopy(b *testing.B) {
	const size = 64 << 20
	block := randomBytes(1 << 20)
	for _, bc := range []struct {
		name string
		hide bool
		pair func(b *testing.B) (snd, rcv net.Conn)
	}{
		{"tapstack/WriteTo", false, tapstackCopyPair},
		{"tapstack/Read", true, tapstackCopyPair},
		{"gvisor", false, gvisorCopyPair},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			b.SetBytes(size)
			var cpu time.Duration
			for b.Loop() {
				// A connection per iteration: io.Copy reads to EOF,
				// and an io.LimitReader would hide WriteTo.
				b.StopTimer()
				snd, rcv := bc.pair(b)
				var src io.Reader = rcv
				if bc.hide {
					src = onlyReader{rcv}
				}
				b.StartTimer()
				cpu0 := cpuTime()
				sent := make(chan error, 1)
				go func() {
					var err error
					for n := 0; n < size && err == nil; n += len(block) {
						_, err = snd.Write(block)
					}
					if err == nil {
						err = snd.(interface{ CloseWrite() error }).CloseWrite()
					}
					sent <- err
				}()
				if n, err := io.Copy(h, src); n != size || err != nil {
					b.Fatalf("received %d bytes, %v", n, err)
				}
				if err := <-sent; err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - cpu0
			}
			// The machine may be shared: CPU per GiB is the figure to
			// compare, more than the rate.
			b.ReportMetric(cpu.Seconds()/float64(b.N)*float64(1<<30)/size, "cpu-s/GiB")
		})
	}
}

// tapstackCopyPair is a connection between two tapstack stacks on a
// tap.Pipe with GSO.
func tapstackCopyPair(b *testing.B) (snd, rcv net.Conn) {
	x, y := tap.Pipe(tap.WithPipeGSO(true))
	cs := newTS(b, x, nil, tcp.Options{}, tsPrefix)
	ss := newTS(b, y, nil, tcp.Options{}, peerPrefix)
	c, s := connect(b, cs, ss)
	return c, s
}

// gvisorCopyPair is a connection between two gVisor-TCP stacks on a
// tap.Pipe with GSO.
func gvisorCopyPair(b *testing.B) (snd, rcv net.Conn) {
	x, y := tap.Pipe(tap.WithPipeGSO(true))
	cp, err := gvpeer.New(x, tsPrefix, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cp.Close)
	sp, err := gvpeer.New(y, peerPrefix, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sp.Close)
	ln, err := sp.Listen(80)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		k, _ := ln.Accept()
		acc <- k
	}()
	c, err := cp.Dial(netip.AddrPortFrom(peerAddr, 80))
	if err != nil {
		b.Fatal(err)
	}
	s := <-acc
	if s == nil {
		b.Fatal("gVisor's listener accepted nothing")
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReadFromSmallReads: io.Copy into a Conn from a reader that
// returns 100 bytes per Read (a proxy reading a connection of small
// messages), 16 MiB per iteration over tap.Pipe, the receiver discarding:
//
//   - tapstack: io.Copy takes the Conn's ReadFrom, which reads a view of
//     about what the reader gave last (4 KiB here) rather than 64 KiB
//     that gVisor's pool clears first: 26-34 MB/s with 64 KiB, 133-138
//     with the read size following the reader;
//   - gvisor: gVisor's TCP at both ends (gonet has no ReadFrom: io.Copy
//     reads into its 32 KiB buffer and writes what each read gave).
func BenchmarkReadFromSmallReads(b *testing.B) {
	const size = 16 << 20
	for _, bc := range []struct {
		name string
		pair func(b *testing.B) (snd, rcv net.Conn)
	}{
		{"tapstack", tapstackCopyPair},
		{"gvisor", gvisorCopyPair},
	} {
		b.Run(bc.name, func(b *testing.B) {
			snd, rcv := bc.pair(b)
			go io.Copy(io.Discard, rcv)
			b.SetBytes(size)
			for b.Loop() {
				if _, err := io.Copy(snd, &smallReads{n: 100, left: size}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// smallReads gives left zero bytes, n at a time.
type smallReads struct{ n, left int }

func (r *smallReads) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	k := min(r.n, len(p), r.left)
	clear(p[:k])
	r.left -= k
	return k, nil
}
