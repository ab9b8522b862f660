package tcp

// SetCwnd sets the congestion window and slow-start threshold, for
// benchmarks that need a window of a given size at once.
func (e *Endpoint) SetCwnd(cwnd, ssthresh uint32) {
	e.mu.Lock()
	e.cwnd, e.ssthresh = cwnd, ssthresh
	e.mu.Unlock()
}
