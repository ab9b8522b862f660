package tcp

import (
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"

	"github.com/tapstack/tapstack/internal/viewrefs"
)

// Chunk reuse: a sender's copies into chunks that need no clearing.
//
// Every chunk gVisor's buffer pool hands out is cleared first (newChunk),
// so that no view shows bytes it did not write. A Write of 64 KiB thus
// clears 64 KiB and then overwrites them: in a bulk transfer over
// tap.Pipe the clearing was 10% of tapstack's CPU. Linux's TCP copies
// into its socket's page fragment and, once the page is used up, takes
// it again from the start if its reference count says that no packet
// holds it any more (skb_page_frag_refill), else a fresh page, which is
// not cleared either.
//
// The engine does the same with the 64 KiB chunks of the views its send
// buffer lets go of (chunkCache): a chunk nobody else holds is reset and
// copied into whole by the next 64 KiB piece of a Write, which leaves no
// byte of what it held before visible. A chunk still held (a packet in
// a link's queue or a capture, a receiver in this process that has not
// read the segment yet) waits in the cache until its holders let go,
// and is taken only then. A chunk is filled only whole, so none of a
// reused chunk's old bytes lies beyond a view's end where a buffer
// operation could grow into it.
//
// gVisor keeps the reference count private; package viewrefs reads it,
// and turns reuse off should a new gVisor move it. A wrong answer could
// not corrupt a byte sent: View.Write copies a chunk that is shared
// before it writes (copy on write). It would cost that copy, and the
// clearing of the chunk copied into, which is what the count is read to
// avoid (TestChunkReuse counts the reuses).

// chunkCache holds 64 KiB views whose chunks the engine may copy into
// again: ready, held by nobody else, reset; held, still shared, oldest
// first. Both are bounded: the cache pins at most
// (cacheReady+cacheHeld)×64 KiB, 14 MiB per stack.
type chunkCache struct {
	mu    sync.Mutex
	ready []*buffer.View
	held  viewrefs.Held
}

const (
	// cacheReady is a send buffer's chunks at its default largest:
	// one ACK may let them all go at once (tap.Pipe's receiver
	// acknowledges each burst of frames once, batch.go). With 16, a
	// bulk sender in memory released a tenth of its chunks to gVisor's
	// pool, which cleared them to hand them out again: 4% of its CPU
	// (TestChunkReuseWholeBuffer).
	cacheReady = DefaultSendBufferMax / maxChunk
	// cacheHeld follows what a receiver in the same process (tap.Pipe)
	// holds of the sender's chunks: the segments it has not read, up to
	// its receive buffer at its default largest, and those on their way
	// to it, up to the sender's send buffer. The send buffer lets go of
	// a chunk once it is acknowledged, which is before the reader copies
	// it out; a chunk pushed out of the cache then is lost to it, and a
	// new one from gVisor's pool is cleared in its place. With 64 (a
	// send buffer's worth) a bulk sender to tapstack over tap.Pipe copied
	// 74-85% of its 64 KiB pieces into reused chunks; with this, 98-99%
	// (TestChunkCacheFollowsReceiverInMemory), and tapstack bench's bulk
	// figures over tap.Pipe went from 1.42-1.44× gVisor's TCP to
	// 1.57-1.68× (CPU per GiB 0.90× to 0.79×; two runs each, alternated).
	cacheHeld = (DefaultReceiveBufferMax + DefaultSendBufferMax) / maxChunk
	// cacheScan bounds the held views take looks at, oldest first,
	// when none is ready.
	cacheScan = 8
)

// take returns a reset view of a 64 KiB chunk nobody else holds, or nil.
func (c *chunkCache) take() *buffer.View {
	if !viewrefs.Available() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.ready); n > 0 {
		v := c.ready[n-1]
		c.ready[n-1] = nil
		c.ready = c.ready[:n-1]
		return v
	}
	return c.held.TakeFree(cacheScan)
}

// give takes v, a view the send buffer lets go of: kept if its chunk is
// a whole 64 KiB one and there is room, released otherwise; the oldest
// held view makes room for a newer one, being the likeliest to stay
// held (a peer that does not read).
func (c *chunkCache) give(v *buffer.View) {
	if v.Capacity() != maxChunk || !viewrefs.Available() {
		v.Release()
		return
	}
	c.mu.Lock()
	if viewrefs.Exclusive(v) {
		if len(c.ready) < cacheReady {
			v.Reset()
			c.ready = append(c.ready, v)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		v.Release()
		return
	}
	old := c.held.Add(v, cacheHeld)
	c.mu.Unlock()
	if old != nil {
		old.Release()
	}
}

// release frees every view the cache holds.
func (c *chunkCache) release() {
	c.mu.Lock()
	ready := c.ready
	c.ready = nil
	c.held.Release()
	c.mu.Unlock()
	for _, v := range ready {
		v.Release()
	}
}
