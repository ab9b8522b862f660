//go:build !race

package interop

import (
	"io"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
	"unsafe"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// BenchmarkGoroutineStack measures the room a server's goroutine per
// connection has left in a 4 KiB stack when it runs the engine and gVisor's
// network layer below it (tcp.Protocol.writePacket says why that matters):
// reading to the peer's FIN and closing, as tapstack bench's connections/s
// does, and writing a 100-byte response. It reports B-spare, the bytes
// between the deepest frame and the point where the goroutine would copy
// its stack into 8 KiB (negative: it does), to within one calibration
// step (about 64 bytes, reported as B-step).
//
// A goroutine is grown to 8 KiB, burns k frames of a small known size
// (the step), then runs the operation on a fresh connection and reports
// whether its stack moved: the smallest k that moves it, in steps, less
// 4 KiB, is the room the operation leaves in 4 KiB. The step is measured
// the same way, with two frames of known size for the operation. The
// collector is off meanwhile, as it may shrink a stack. Under the race
// detector, whose frames differ, it does not build; it skips when the
// runtime starts goroutines above 4 KiB.
//
//	GODEBUG=adaptivestackstart=0 go test ./stack/interop -run '^$' -bench GoroutineStack
func BenchmarkGoroutineStack(b *testing.B) {
	s := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(s)
	if size := s[0].Value.Uint64(); size > 4096 {
		b.Skipf("goroutines start with %d bytes of stack; run with GODEBUG=adaptivestackstart=0", size)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// Two operations of known depth: frames of 2,048 and 2,560 bytes.
	k2048 := stackLevels(func(probe func(func())) { probe(func() { stackFrame(2048) }) })
	k2560 := stackLevels(func(probe func(func())) { probe(func() { stackFrame(2560) }) })
	if k2048 <= k2560 {
		b.Fatalf("calibration: %d steps before a 2,048-byte frame moves the stack, %d before a 2,560-byte one", k2048, k2560)
	}
	step := 512 / float64(k2048-k2560)
	for _, op := range []struct {
		name string
		run  func(c, s *conn.Conn)
	}{
		{"read-to-FIN-close", func(c, s *conn.Conn) {
			go func() { c.Write(make([]byte, 100)); c.Close() }()
			io.Copy(io.Discard, s)
			s.Close()
		}},
		{"write-100", func(c, s *conn.Conn) {
			go io.Copy(io.Discard, c)
			s.Write(make([]byte, 100))
		}},
	} {
		b.Run(op.name, func(b *testing.B) {
			var k int
			for b.Loop() {
				k = stackLevels(func(probe func(func())) {
					pa, pb := tap.Pipe(tap.WithPipeGSO(true))
					snd := newUnwatched(b, pa, tsPrefix4, tcp.Options{})
					rcv := newUnwatched(b, pb, peerPrefix4, tcp.Options{})
					c, s := connectPair(b, snd, rcv, peerPrefix4)
					s.SetDeadline(time.Now().Add(20 * time.Second))
					probe(func() { op.run(c, s) })
					c.Close()
					snd.Close()
					rcv.Close()
				})
			}
			b.ReportMetric(float64(k)*step-4096, "B-spare")
			b.ReportMetric(step, "B-step")
		})
	}
}

// stackLevels returns the fewest frames of stackBurn after which an
// operation moves the stack of a goroutine grown to 8 KiB. run makes what
// the operation needs, hands the operation to probe once, and cleans up.
func stackLevels(run func(probe func(op func()))) int {
	for k := range 512 {
		moved := false
		probe := func(op func()) {
			done := make(chan bool)
			go func() {
				stackFrame(4096) // grows the stack to 8 KiB
				var x int
				at := stackAddr(&x)
				stackBurn(k, op)
				done <- stackAddr(&x) != at
			}()
			moved = <-done
		}
		run(probe)
		if moved {
			return k
		}
	}
	return 512
}

// stackAddr is where p lies: it changes when the runtime copies the stack
// p is on.
//
//go:noinline
func stackAddr(p *int) uintptr { return uintptr(unsafe.Pointer(p)) }

// stackBurn runs op k frames deeper than it was called.
//
//go:noinline
func stackBurn(k int, op func()) byte {
	var pad [24]byte
	if k == 0 {
		op()
		return pad[0]
	}
	pad[k%len(pad)] = byte(k)
	return stackBurn(k-1, op) + pad[(k+1)%len(pad)]
}

// stackFrame takes a frame of at least n bytes, up to 4,096.
//
//go:noinline
func stackFrame(n int) byte {
	switch {
	case n <= 2048:
		return stackFrame2048(n - 1)
	case n <= 2560:
		return stackFrame2560(n - 1)
	}
	return stackFrame4096(n - 1)
}

//go:noinline
func stackFrame2048(i int) byte {
	var b [2048]byte
	b[i] = 1
	return b[i/2]
}

//go:noinline
func stackFrame2560(i int) byte {
	var b [2560]byte
	b[i] = 1
	return b[i/2]
}

//go:noinline
func stackFrame4096(i int) byte {
	var b [4096]byte
	b[i] = 1
	return b[i/2]
}
