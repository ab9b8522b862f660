package tcp

import "gvisor.dev/gvisor/pkg/buffer"

// SendBufferMemory returns the bytes of memory the send buffer's views
// hold (their chunks' capacity), against the bytes they count.
func (e *Endpoint) SendBufferMemory() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	e.sndBuf.Apply(func(v *buffer.View) { n += v.Capacity() })
	return n
}
