//go:build linux

package tap

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"

	"github.com/tapstack/tapstack/internal/viewrefs"
)

// The read path with offloads. A TAP read returns one frame, up to a 64
// KiB super-frame, and truncates it silently if the buffer is short. The
// frame is read in two pieces with one readv: its first bytes (the
// virtio-net header and every header of a TCP segment) into a small
// buffer, the rest straight into a pooled 64 KiB chunk that the packets
// handed to the stack then share: a super-frame's payload is never
// copied on its way in. Shorter frames are copied from the buffers, as
// before. Without offloads a frame is read whole into one buffer
// (readPlain) and copied from it.
//
// gVisor's pool clears every chunk it hands out, and a super-frame's
// read then overwrites the chunk nearly whole: receiving from the kernel
// over GRO, the clearing was 7% of the CPU. The reader keeps the chunks
// of the frames it handed over (spent) and reads into one again once
// the stack has let go of every packet made from it (package viewrefs),
// as Linux's drivers recycle a page whose count says the stack is done
// with it. What the frame leaves of a reused chunk is cleared, as the
// pool would have cleared it, so that no view of it can show a byte of
// an earlier frame.

// rxHead is the size of the first piece: the virtio-net header, Ethernet,
// the largest IPv4 header (60) and the largest TCP header (60).
const rxHead = vnetHdrLen + 14 + 60 + 60

// rxFrame is a frame read with its virtio-net header: its first bytes in
// head, contiguous, and the rest, if any, in rest.
type rxFrame struct {
	head  []byte       // the virtio-net header and the frame's first bytes
	rest  *buffer.View // the frame's remaining bytes, or nil; the reader's
	chunk bool         // rest is the chunk read into, to be kept for reuse (done)
}

// len is the frame's length, virtio-net header included.
func (f *rxFrame) len() int {
	if f.rest == nil {
		return len(f.head)
	}
	return len(f.head) + f.rest.Size()
}

// buffer returns the frame's bytes [from, to), counted without the
// virtio-net header, as a packet payload: what lies in head is copied,
// what lies in rest is shared.
func (f *rxFrame) buffer(from, to int) buffer.Buffer {
	var b buffer.Buffer
	h := f.head[vnetHdrLen:]
	if from < len(h) {
		_ = b.Append(buffer.NewViewWithData(h[from:min(to, len(h))]))
	}
	if to > len(h) && f.rest != nil {
		start := max(from, len(h))
		v := f.rest.Clone()
		v.TrimFront(start - len(h))
		v.CapLength(to - start)
		_ = b.Append(v)
	}
	return b
}

// packetBuffer returns the frame's first size bytes as a packet's
// payload, the headers of a TCP segment in a view apart from its payload.
// gVisor's IPv4 reads the network header again while it holds a view of
// it (HandlePacket, with the stack's HandleLocal), and a view whose chunk
// is shared is copied whole to be read (buffer.PullUp): a frame in one
// piece was copied on its way in, 64 KiB for a super-frame; the headers
// alone cost little.
func (f *rxFrame) packetBuffer(size int) buffer.Buffer {
	h := f.head[vnetHdrLen:]
	l, err := parseTCPPrefix(h, size)
	if err != nil || size-l.data < 256 {
		return f.buffer(0, size)
	}
	b := f.buffer(0, l.data)
	p := f.buffer(l.data, size)
	b.Merge(&p)
	return b
}

// frameBuffer is packetBuffer for a frame read whole into frame, without
// a virtio-net header.
func frameBuffer(frame []byte) buffer.Buffer {
	l, err := parseTCPFrame(frame)
	if err != nil || len(frame)-l.data < 256 {
		return buffer.MakeWithData(frame)
	}
	b := buffer.MakeWithData(frame[:l.data])
	p := buffer.MakeWithData(frame[l.data:])
	b.Merge(&p)
	return b
}

// rxReader reads frames with their virtio-net header; it belongs to the
// read loop.
type rxReader struct {
	l    *fdLink
	rc   syscall.RawConn // the queue's descriptor
	rxq  *rxQueue        // the hand-over to the stack while the read loop runs; nil: deliver on the read loop
	head [rxHead]byte
	data *buffer.View // where the rest of the next frame goes: a pooled 64 KiB chunk
	// dirty: data held bytes before this read (reused, or kept after a
	// short frame was copied out of it); fresh from the pool, it is
	// clear.
	dirty bool
	// spent holds the chunks of frames handed to the stack, oldest
	// first, until the stack lets go of them and read takes one again.
	spent viewrefs.Held
	flat  []byte // a frame gathered whole, for checksum work
	iov   [2]unix.Iovec

	// The read path without offloads: one frame per read, whole, into
	// plain (readPlain), and the run of segments being joined (gro.go).
	gro         groRun
	plain       []byte
	readPlainFn func(uintptr) bool

	// The current readv's result, for readFn.
	n      int
	errno  unix.Errno
	readFn func(uintptr) bool

	// noWait makes read return errNoFrame at once when no frame is
	// ready, instead of waiting for one: the reader is in a burst,
	// whose end it must tell the stack before it sleeps.
	noWait bool
}

// errNoFrame: no frame is ready (rxReader.noWait).
var errNoFrame = errors.New("tap: no frame ready")

func newRxReader(l *fdLink, rc syscall.RawConn) *rxReader {
	r := &rxReader{l: l, rc: rc}
	r.readFn = r.readv // bound once: a method value made per read would allocate
	r.readPlainFn = r.readOne
	return r
}

// readv is the RawConn callback: one readv into head and data; false
// (wait for the descriptor) when no frame is ready.
func (r *rxReader) readv(fd uintptr) bool {
	n, _, e := unix.Syscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&r.iov[0])), uintptr(len(r.iov)))
	return r.result(n, e)
}

// result keeps a read's outcome for read or readPlain, and says whether
// the RawConn callback is done: false to wait for the descriptor.
func (r *rxReader) result(n uintptr, e unix.Errno) bool {
	if e == unix.EAGAIN && r.noWait {
		r.errno = e
		return true
	}
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	r.n, r.errno = int(n), e
	return true
}

// readOne is the RawConn callback for a device without a virtio-net
// header: one read into plain; false (wait for the descriptor) when no
// frame is ready.
func (r *rxReader) readOne(fd uintptr) bool {
	n, _, e := unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.plain[0])), uintptr(len(r.plain)))
	return r.result(n, e)
}

// readPlain reads the next frame of a device without a virtio-net
// header, whole. The frame is valid until the next read.
func (r *rxReader) readPlain() ([]byte, error) {
	if r.plain == nil {
		r.plain = make([]byte, maxFrame)
	}
	if err := r.readWith(r.readPlainFn, "read"); err != nil {
		return nil, err
	}
	return r.plain[:r.n], nil
}

// readWith runs one read callback (readv or readOne) through the
// runtime poller and turns its outcome into an error: errNoFrame when
// noWait found nothing ready, the system call's error (op) otherwise.
// The frame's length is then in r.n.
func (r *rxReader) readWith(fn func(uintptr) bool, op string) error {
	r.n, r.errno = 0, 0
	if err := r.rc.Read(fn); err != nil {
		return err
	}
	if r.errno == unix.EAGAIN {
		return errNoFrame
	}
	if r.errno != 0 {
		return os.NewSyscallError(op, r.errno)
	}
	return nil
}

// read reads the next frame. The frame is valid until the next read;
// packets made from it hold their own references.
func (r *rxReader) read() (rxFrame, error) {
	if r.data == nil {
		r.data, r.dirty = r.chunk()
	}
	d := r.data.AsSlice()
	r.iov[0] = unix.Iovec{Base: &r.head[0]}
	r.iov[0].SetLen(len(r.head))
	r.iov[1] = unix.Iovec{Base: &d[0]}
	r.iov[1].SetLen(len(d))
	if err := r.readWith(r.readFn, "readv"); err != nil {
		return rxFrame{}, err
	}
	if r.n <= len(r.head) {
		return rxFrame{head: r.head[:r.n]}, nil
	}
	tail := r.n - len(r.head)
	if tail < rxShareMin {
		// A short frame is copied out, and the chunk kept for the next
		// read: a 1,500-byte segment held in a receive queue must not
		// pin 64 KiB.
		r.dirty = true
		return rxFrame{head: r.head[:], rest: buffer.NewViewWithData(d[:tail])}, nil
	}
	if r.dirty {
		clear(d[tail:])
	}
	rest := r.data
	r.data = nil
	rest.CapLength(tail)
	return rxFrame{head: r.head[:], rest: rest, chunk: true}, nil
}

// rxSpentMax bounds the chunks a reader keeps for reuse (4 MiB), and
// rxSpentScan the oldest of them read looks at: a chunk the stack still
// holds after rxSpentMax more frames (data unread in a receive queue) is
// released to the pool.
const (
	rxSpentMax  = 64
	rxSpentScan = 4
)

// chunk returns a 64 KiB view to read into, and whether it held bytes
// before: a spent chunk the stack let go of, or a new one from the pool.
func (r *rxReader) chunk() (*buffer.View, bool) {
	if viewrefs.Available() {
		if v := r.spent.TakeFree(rxSpentScan); v != nil {
			v.Grow(buffer.MaxChunkSize)
			r.l.rxChunksReused.Add(1)
			return v, true
		}
	}
	return buffer.NewViewSize(buffer.MaxChunkSize), false
}

// rxShareMin is the shortest rest of a frame that keeps the chunk it was
// read into: at least a quarter of it is used. Super-frames are
// longer; frames of an MTU of 1500 are copied.
const rxShareMin = buffer.MaxChunkSize / 4

// done releases the reader's reference to frame f's storage; packets made
// from it keep theirs.
func (r *rxReader) done(f rxFrame) {
	switch {
	case f.rest == nil:
	case f.chunk && viewrefs.Available():
		if old := r.spent.Add(f.rest, rxSpentMax); old != nil {
			old.Release()
		}
	default:
		f.rest.Release()
	}
}

// releaseSpent releases the chunks kept for reuse; the read loop calls it
// as it ends.
func (r *rxReader) releaseSpent() { r.spent.Release() }

// flatten returns f gathered into one slice, valid until the next
// flatten.
func (r *rxReader) flatten(f rxFrame) rxFrame {
	if f.rest == nil {
		return f
	}
	if r.flat == nil {
		r.flat = make([]byte, 0, vnetHdrLen+maxFrame)
	}
	r.flat = append(append(r.flat[:0], f.head...), f.rest.AsSlice()...)
	return rxFrame{head: r.flat}
}

// String describes f for debugging.
func (f rxFrame) String() string {
	return fmt.Sprintf("frame of %d bytes (%d in head)", f.len(), len(f.head))
}
