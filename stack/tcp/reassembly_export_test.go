package tcp

// Hooks for the black-box tests of package tcp_test.

// SACKOptionSize is sackOptionSize under the connection's lock.
func (e *Endpoint) SACKOptionSize() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sackOptionSize()
}

// OutOfOrder reports the out-of-order queue: text bytes held, the heap
// they are charged, ranges held, and the queue's limits.
func (e *Endpoint) OutOfOrder() (bytes, mem, ranges, memLimit, rangeLimit int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	memLimit, rangeLimit = e.oooLimits()
	return e.ooo.bytes, e.ooo.mem, e.ooo.ranges(), memLimit, rangeLimit
}
