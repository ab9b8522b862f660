package tap

import "sync/atomic"

// hook is a function the stack above a link registers for the link to
// call on a goroutine of its own (a burst's end, OnBatchEnd; room in the
// outbound queue, OnOutboundRoom), set and called without a lock.
type hook struct {
	fn atomic.Pointer[func()]
}

// set registers fn, replacing the one before.
func (h *hook) set(fn func()) { h.fn.Store(&fn) }

// call calls the registered function, if any.
func (h *hook) call() {
	if fn := h.fn.Load(); fn != nil {
		(*fn)()
	}
}
