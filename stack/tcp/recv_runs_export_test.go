package tcp

// RcvBufViews returns the first byte of each view of e's receive buffer,
// oldest first: where its bytes are kept.
func RcvBufViews(e *Endpoint) []*byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*byte
	views := e.rcvBuf.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		if v.Size() > 0 {
			out = append(out, &v.AsSlice()[0])
		}
	}
	return out
}
