package tcp

// DuringCopyOut has f run while a Read on a connection of e's stack copies
// without the connection's lock.
func DuringCopyOut(e *Endpoint, f func()) { e.proto.duringCopyOut = f }

// Locked reports whether e's lock is held.
func Locked(e *Endpoint) bool {
	if e.mu.TryLock() {
		e.mu.Unlock()
		return false
	}
	return true
}
