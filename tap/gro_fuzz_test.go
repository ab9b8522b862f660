//go:build linux

package tap

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzGRO reads, on a device without offloads, a run of the kernel's
// segments that the input changes: bytes flipped (checksums made right
// again or not), segments lost, repeated, swapped, their window or flags
// changed, frames of any bytes between them, bursts ended anywhere. The
// device must never panic, and what it hands the stack, each super-frame
// cut at its MSS, must be every frame it read, byte for byte, in order.
//
//	go test ./tap -run '^$' -fuzz FuzzGRO
func FuzzGRO(f *testing.F) {
	f.Add([]byte{0, 0})
	f.Add([]byte{1, 1, 0, 40, 5, 3, 7, 0})
	f.Add([]byte{0, 2, 1, 3, 2, 5, 3, 6, 4, 9, 6, 0x08})
	f.Add([]byte{0, 3, 8, 200, 0x80, 77, 9, 2, 7, 7})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		mss := []int{1448, 536, 100, 7}[in[1]%4]
		frames := wireRun(t, in[0]&1 == 1, 1<<31-5000, 65530, 9*mss+int(in[0]>>1), mss)
		ends := map[int]bool{}
		ops := in[2:]
		for len(ops) >= 2 && len(frames) > 0 {
			op, arg := ops[0], int(ops[1])
			ops = ops[2:]
			k := arg % len(frames)
			switch op % 9 {
			case 0: // a byte flipped, checksums left wrong
				fr := append([]byte(nil), frames[k]...)
				fr[(arg*31)%len(fr)] ^= 1 << (op >> 5)
				frames[k] = fr
			case 1: // a byte flipped, checksums made right
				fr := append([]byte(nil), frames[k]...)
				fr[(arg*31)%len(fr)] ^= 1 << (op >> 5)
				if _, err := parseTCPFrame(fr); err == nil {
					refill(fr)
				}
				frames[k] = fr
			case 2: // lost
				frames = append(frames[:k:k], frames[k+1:]...)
			case 3: // repeated
				frames = append(frames[:k+1:k+1], frames[k:]...)
			case 4: // swapped with the next
				if k+1 < len(frames) {
					frames[k], frames[k+1] = frames[k+1], frames[k]
				}
			case 5: // a frame of the input's bytes between
				n := min(len(ops), 14+arg%64)
				frames = append(frames[:k:k], append([][]byte{append([]byte(nil), ops[:n]...)}, frames[k:]...)...)
				ops = ops[n:]
			case 6: // flags
				frames[k] = retouch(frames[k], func(h header.TCP) { h.SetFlags(op) })
			case 7: // window
				frames[k] = retouch(frames[k], func(h header.TCP) { h.SetWindowSize(uint16(arg)) })
			case 8: // the burst ends after frame k
				ends[k] = true
			}
		}
		var d recvDispatcher
		_, r := groReader(&d)
		var read [][]byte
		for i, fr := range frames {
			r.readFrames(fr)
			if len(fr) >= header.EthernetMinimumSize {
				read = append(read, fr)
			}
			if ends[i] {
				r.burstEnd()
			}
		}
		r.burstEnd()
		var cut [][]byte
		for i, fr := range d.frames {
			if g := d.gso[i]; g.MSS > 0 {
				if err := WireSegments(fr, int(g.MSS), func(s []byte) { cut = append(cut, append([]byte(nil), s...)) }); err != nil {
					t.Fatalf("super-frame %d: %v", i, err)
				}
				continue
			}
			cut = append(cut, fr)
		}
		if len(cut) != len(read) {
			t.Fatalf("the stack got %d wire segments; %d frames were read", len(cut), len(read))
		}
		for i := range cut {
			if !bytes.Equal(cut[i], read[i]) {
				t.Fatalf("wire segment %d handed on differs from the frame read:\n%x\n%x", i, cut[i], read[i])
			}
		}
	})
}

// retouch returns a copy of frame with its TCP header changed by fn and
// its checksums made right, or a plain copy if it is no TCP segment.
func retouch(frame []byte, fn func(header.TCP)) []byte {
	fr := append([]byte(nil), frame...)
	if _, err := parseTCPFrame(fr); err == nil {
		fn(tcpOf(fr))
		refill(fr)
	}
	return fr
}
