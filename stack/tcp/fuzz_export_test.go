package tcp

// HeldOutOfOrder returns how many bytes of out-of-order data e holds, as
// the engine charges them against the receive buffer. It exists for
// FuzzConnection (fuzz_conn_test.go), which checks that what the receive
// side holds stays within the buffer's limit; Info does not report it.
func HeldOutOfOrder(e *Endpoint) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ooo.bytes
}

// ReceiveMemoryHeld returns what e holds of the stack's receive memory
// (rcvmem.go): its unread text and the heap its out-of-order text pins.
// FuzzConnection checks that Usage counts exactly this.
func ReceiveMemoryHeld(e *Endpoint) int {
	e.rmu.Lock() // a Read copying out holds the receive buffer's front
	defer e.rmu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	return int(e.rcvBuf.Size()) + e.ooo.mem
}
