package tcp

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// What held the sender back, and for how long: Linux's chronographs
// (tcp_chrono_start, tcp_chrono_stop), reported in TCP_INFO as
// tcpi_busy_time, tcpi_rwnd_limited and tcpi_sndbuf_limited. At any time
// the connection is in one of: idle (nothing to send or in flight), busy
// (data queued or in flight), limited by the peer's receive window (data
// waits that the window does not admit), or limited by the send buffer
// (the user has more to write than the buffer takes). A limit takes over
// from busy and gives back to it; busy time is the sum of all three, as
// Linux counts it.
type chronoKind uint8

const (
	chronoIdle chronoKind = iota
	chronoBusy
	chronoRwndLimited
	chronoSndbufLimited
	numChronos
)

// chrono is the connection's chronographs: the one running, since when,
// and the time each has run before.
type chrono struct {
	kind  chronoKind
	since tcpip.MonotonicTime
	total [numChronos - 1]time.Duration // by kind - 1: idle keeps no time
}

// set stops the running chronograph and starts k.
func (c *chrono) set(k chronoKind, now tcpip.MonotonicTime) {
	if c.kind == k {
		return
	}
	if c.kind != chronoIdle {
		c.total[c.kind-1] += now.Sub(c.since)
	}
	c.kind, c.since = k, now
}

// chronoStart starts k unless one that takes precedence runs (Linux
// tcp_chrono_start: a limit over busy, the send buffer over the window).
func (e *Endpoint) chronoStart(k chronoKind) {
	if k > e.chrono.kind {
		e.chrono.set(k, e.now())
	}
}

// chronoStop ends k: back to busy while data is queued, else idle (Linux
// tcp_chrono_stop).
func (e *Endpoint) chronoStop(k chronoKind) {
	switch {
	case e.sndBuf.Size() == 0 && e.sndUna == e.sndNxt:
		e.chrono.set(chronoIdle, e.now())
	case k == e.chrono.kind:
		e.chrono.set(chronoBusy, e.now())
	}
}

// chronoAfterOutput records whether the peer's window is what stops new
// data now: data waits and the next segment, up to one MSS of it, does
// not fit in the window (Linux's tcp_snd_wnd_test in tcp_write_xmit).
func (e *Endpoint) chronoAfterOutput() {
	unsent := 0
	if end := e.sndEnd(); e.sndNxt.LessThan(end) {
		unsent = int(e.sndNxt.Size(end))
	}
	rwnd := 0
	if wndEnd := e.sndUna.Add(seqnum.Size(e.sndWnd)); e.sndNxt.LessThan(wndEnd) {
		rwnd = int(e.sndNxt.Size(wndEnd))
	}
	if unsent > 0 && rwnd < min(unsent, e.sndMSS) {
		e.chronoStart(chronoRwndLimited)
	} else if e.chrono.kind == chronoRwndLimited {
		e.chronoStop(chronoRwndLimited)
	}
}

// chronoTimes returns the time the connection was busy (all three
// together, as Linux's tcpi_busy_time), limited by the peer's window and
// limited by the send buffer.
func (e *Endpoint) chronoTimes() (busy, rwnd, sndbuf time.Duration) {
	t := e.chrono.total
	if e.chrono.kind != chronoIdle {
		t[e.chrono.kind-1] += e.now().Sub(e.chrono.since)
	}
	busy, rwnd, sndbuf = t[chronoBusy-1], t[chronoRwndLimited-1], t[chronoSndbufLimited-1]
	return busy + rwnd + sndbuf, rwnd, sndbuf
}
