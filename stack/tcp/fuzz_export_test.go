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
