//go:build linux

package interop

import (
	"io"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap"
)

// tapAllocCases runs run once per TAP mode (offloads off, super-frames
// split, offloads on) and direction, each on a fresh namespace and one
// connection between tapstack and the kernel, with deadlines set once and
// move (mover) moving size bytes from the sender to the receiver: the
// set-up TestSteadyStateAllocsTAP and BenchmarkAllocsPerSegmentTAP share.
func tapAllocCases[T interface {
	testing.TB
	Run(string, func(T)) bool
}](tb T, ns string, size int, run func(tb T, k *offloadNet, move func())) {
	for _, mode := range []offloadMode{
		{"off", []tap.Option{tap.WithOffloads(false)}},
		{"split", []tap.Option{tap.WithGRO(false)}},
		{"offloads", nil},
	} {
		for _, fromKernel := range []bool{false, true} {
			name := mode.name + "/tapstack-to-kernel"
			if fromKernel {
				name = mode.name + "/kernel-to-tapstack"
			}
			tb.Run(name, func(tb T) {
				k := newOffloadNet(tb, ns, 0, mode.opts...)
				tc, kc := k.connect(tb)
				defer tc.Close()
				defer kc.Close()
				var from, to io.ReadWriter = tc, kc
				if fromKernel {
					from, to = kc, tc
				}
				dl := time.Now().Add(kernelTimeout)
				if err := tc.SetDeadline(dl); err != nil {
					tb.Fatal(err)
				}
				if err := kc.SetDeadline(dl); err != nil {
					tb.Fatal(err)
				}
				run(tb, k, mover(tb, from, to, size))
			})
		}
	}
}
