package tcp

import (
	"io"

	"gvisor.dev/gvisor/pkg/buffer"
)

// Moving bytes between the connection's buffers and the user's readers
// and writers without a copy of the user's own in between: RECEIVE and
// SEND (RFC 9293 3.10.2, 3.10.3) with io.Writer and io.Reader in place
// of a buffer. Read copies received bytes into b, and io.Copy(w, conn)
// then copies b into w: ReadTo hands w the receive buffer's own views, one
// copy fewer. io.Copy(conn, r) reads r into b and Write copies b into the
// send buffer: WriteFrom reads r into the send buffer's next view (a read
// of 4 KiB or less is then copied into the last view's room, as a small
// Write is: a copy that short costs less than a view of its own). These
// are what *net.TCPConn's WriteTo and ReadFrom do with splice(2) and
// sendfile(2), for package conn's.

// readToMax bounds what one ReadTo takes from the receive buffer: the
// window reopens as soon as the bytes leave it, so the peer sends more
// while w writes, and what ReadTo holds outside the buffer stays bounded.
const readToMax = 1 << 20

// ReadTo is Read with w in place of a buffer: it takes up to 1 MiB of
// received bytes from the receive buffer and writes them to w, from the
// buffer's own memory, without blocking for more. It returns the bytes
// w took and the first error: w's, or, with nothing received, Read's
// (io.EOF after the peer's FIN, ErrWouldBlock while more may come, the
// connection's error). Bytes taken but not written because w failed
// are gone, as they are when io.Copy's own Write fails.
func (e *Endpoint) ReadTo(w io.Writer) (int64, error) {
	e.rmu.Lock()
	e.mu.Lock()
	opened := e.beginStamp()
	var out buffer.Buffer
	var err error
	if n := min(e.rcvBuf.Size(), readToMax); n > 0 {
		// A clone shares the views' memory: the receive buffer lets go
		// of the bytes, out holds them until w has them.
		out = e.rcvBuf.Clone()
		out.Truncate(n)
		e.consumed(int(n))
	} else {
		err = e.readErr()
	}
	e.endStamp(opened)
	e.mu.Unlock()
	e.rmu.Unlock()
	e.flush()
	if err != nil {
		return 0, err
	}
	var written int64
	out.Apply(func(v *buffer.View) {
		if err != nil {
			return
		}
		b := v.AsSlice()
		n, werr := w.Write(b)
		written += int64(n)
		switch {
		case werr != nil:
			err = werr
		case n != len(b):
			err = io.ErrShortWrite
		}
	})
	out.Release()
	return written, err
}

// WriteFrom is Write with r in place of a buffer: one Read of r, of at
// most the room in the send buffer and 64 KiB, straight into the send
// buffer's next view; what r returns is queued and sent as Write's would
// be. It returns the bytes queued and r's error (io.EOF at r's end), or
// Write's when no byte can be queued: EPIPE once the sending side is
// closed, ErrWouldBlock while the send buffer is full, the connection's
// error. r is read without the connection's lock: if the connection
// fails or is closed for sending meanwhile, the bytes read are dropped
// and that error returned, as a Write of them would fail.
func (e *Endpoint) WriteFrom(r io.Reader) (int64, error) { return e.WriteFromN(r, maxChunk) }

// WriteFromN is WriteFrom with a Read of at most limit bytes (limit ≤ 0
// or over 64 KiB: 64 KiB). The view read into comes from gVisor's pool,
// which clears it first: a caller that has seen r return little at a
// time (io.Copy's ReadFrom from a connection that delivers 100-byte
// messages) clears 4 KiB a call with a limit of 4 KiB, not 64 KiB, and
// the bytes then go into the send buffer's last view as a small Write's
// do.
func (e *Endpoint) WriteFromN(r io.Reader, limit int) (int64, error) {
	if limit <= 0 || limit > maxChunk {
		limit = maxChunk
	}
	e.wmu.Lock() // one SEND at a time (write)
	defer e.wmu.Unlock()
	e.mu.Lock()
	room, err := e.sendRoom(limit)
	e.mu.Unlock()
	if err != nil {
		return 0, err
	}
	v := buffer.NewViewSize(min(room, limit))
	n, rerr := r.Read(v.AsSlice())
	n = max(min(n, v.Size()), 0)
	v.CapLength(n)
	if n == 0 {
		v.Release()
		return 0, rerr
	}
	var small []byte
	switch {
	case n <= maxMergeChunk:
		// Copied again, under mu, as a small Write is (write): into
		// the last view's room if it has some.
		small = v.AsSlice()
	case n <= v.Capacity()/2:
		// A short read keeps a view of its own size: the send buffer
		// counts bytes, not the chunks holding them, and a reader
		// returning little at a time must not pin 64 KiB for it.
		short := buffer.NewViewWithData(v.AsSlice())
		v.Release()
		v = short
	}
	e.mu.Lock()
	opened := e.beginStamp()
	if small != nil {
		err = e.takeCopied(nil, small)
		v.Release()
	} else {
		err = e.takeCopied(v, nil)
	}
	if err != nil {
		e.endStamp(opened)
		e.mu.Unlock()
		return 0, err
	}
	e.queued(n, false)
	e.endStamp(opened)
	e.mu.Unlock()
	e.flush()
	return int64(n), rerr
}

// maxChunk is the largest view write and WriteFrom put in the send
// buffer: the largest chunk gVisor's buffer pool holds.
const maxChunk = 64 << 10
