package tcp

// DuringReadUnlocked has f run while a Read on a connection of e's stack copies
// without the connection's lock.
func DuringReadUnlocked(e *Endpoint, f func()) { e.proto.duringReadUnlocked = f }

// Locked reports whether e's lock is held.
func Locked(e *Endpoint) bool {
	if e.mu.TryLock() {
		e.mu.Unlock()
		return false
	}
	return true
}
