package tcp

// SetCwnd sets the congestion window and slow-start threshold, for
// benchmarks that need a window of a given size at once.
func (e *Endpoint) SetCwnd(cwnd, ssthresh uint32) {
	e.mu.Lock()
	e.cwnd, e.ssthresh = cwnd, ssthresh
	e.mu.Unlock()
}

// RtxRecords returns the records of the retransmission queue and the
// segments they stand for.
func (e *Endpoint) RtxRecords() (records, segs int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rtxq.n, int(e.rtxq.segs)
}

// RtxQueueErr reports an inconsistency of the retransmission queue, if
// any (queueErr), for the fuzz targets.
func (e *Endpoint) RtxQueueErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return queueErr(&e.rtxq)
}
