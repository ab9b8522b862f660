package tcp

// Corking: the user says more data follows, so a short segment at the end
// of what is queued should wait for it instead of leaving alone. RFC 9293
// has Nagle's algorithm (3.7.4) for this, which holds a short segment only
// while data is unacknowledged; Linux adds TCP_CORK, which holds it
// whatever is in flight and even with TCP_NODELAY, and MSG_MORE, which
// corks one write. tapstack does as Linux does:
//
//   - full segments leave as the windows allow; only the short tail waits;
//   - with nothing in flight the tail waits at most an RTO: the persist
//     timer sends it then, with PSH (Linux's probe timer, tcp_write_wakeup,
//     the "200 ms ceiling" of tcp(7));
//   - SetCork(false) sends what waits, as Nagle allows; SetNoDelay(true)
//     sends it whatever the cork (Linux's TCP_NAGLE_PUSH);
//   - data written with WriteMore carries no PSH at its end, and is corked
//     only while that write sends: an ACK that comes later sends it as
//     the socket's own setting (Nagle or TCP_NODELAY) allows, as Linux's
//     tcp_push corks only the call it is made for.

// SetCork holds back a short segment at the end of the send buffer
// (Linux's TCP_CORK) while on; turning it off sends what waits.
func (e *Endpoint) SetCork(on bool) {
	e.mu.Lock()
	e.cork = on
	if !on && e.state.Synchronized() {
		e.output()
	}
	e.mu.Unlock()
	e.flush()
}

// WriteMore is Write with Linux's MSG_MORE: more data follows, so a short
// segment at the end of b waits for it rather than leave now, and the end
// of b is no push point (no PSH).
func (e *Endpoint) WriteMore(b []byte) (int, error) {
	n, err := e.write(b, true)
	e.flush() // write's last push (write)
	return n, err
}

// corked reports whether a short segment that would empty the send buffer
// waits for more data: TCP_CORK, or a WriteMore sending, and no push past
// the cork (SetNoDelay, the persist timer's override) under way.
func (e *Endpoint) corked() bool {
	return (e.cork || e.corkWrite) && !e.pushOnce && !e.swsOverride
}

// pushAtEnd reports whether a segment ending at the end of the send buffer
// carries PSH: not when the last write was WriteMore (3.9.1: the user
// did not ask for a push there).
func (e *Endpoint) pushAtEnd() bool { return !e.sndMore }
