package tcp

import (
	"math"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Keepalive defaults, as Linux's tcp_keepalive_time, tcp_keepalive_intvl
// and tcp_keepalive_probes. RFC 9293 3.8.4 asks for an idle time of no less
// than two hours by default.
const (
	DefaultKeepaliveIdle     = 2 * time.Hour
	DefaultKeepaliveInterval = 75 * time.Second
	DefaultKeepaliveCount    = 9
)

// SetKeepAlive turns keepalive probes on or off (RFC 9293 3.8.4; off by
// default, as the RFC requires). After idle without hearing from the peer
// a probe goes every interval; after count unanswered probes the
// connection is reset and fails with ETIMEDOUT. Zero values take the
// defaults above.
func (e *Endpoint) SetKeepAlive(on bool, idle, interval time.Duration, count int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keepalive = on
	e.keepIdle = cmpOr(idle, DefaultKeepaliveIdle)
	e.keepIntvl = cmpOr(interval, DefaultKeepaliveInterval)
	e.keepCount = int32(min(count, math.MaxInt32))
	if count <= 0 {
		e.keepCount = DefaultKeepaliveCount
	}
	if !on {
		e.stopTimer(timerKeepalive)
		return
	}
	e.heardFromPeer()
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// heardFromPeer restarts the idle period after any segment arrived.
func (e *Endpoint) heardFromPeer() {
	e.keepProbes = 0
	switch e.state {
	case event.Established, event.CloseWait, event.FinWait1, event.FinWait2:
		e.setTimer(timerKeepalive, e.keepIdle)
	default:
		e.stopTimer(timerKeepalive)
	}
}

// keepaliveTimeout sends a probe, or gives up. Like Linux
// (tcp_keepalive_timer), a probe is an ACK carrying SND.UNA-1 and no data,
// which the peer must answer (RFC 9293 3.8.4 allows either this or one
// garbage byte); giving up sends a RST.
func (e *Endpoint) keepaliveTimeout() {
	switch e.state {
	case event.Established, event.CloseWait, event.FinWait1, event.FinWait2:
	default:
		return
	}
	if e.state == event.FinWait2 && e.userClosed {
		// An orphan: the FIN-WAIT-2 timeout ends it (Linux's
		// tcp_keepalive_timer does not probe a dead socket in
		// FIN_WAIT2 either; tcp_fin_timeout takes over).
		return
	}
	end := e.sndEnd()
	if e.finQueued {
		end++ // the FIN's sequence number
	}
	if e.sndUna != end {
		// Data or our FIN is unsent or unacknowledged: the
		// retransmission and persist timers watch the peer. The FIN
		// counts: it takes a sequence number, so once it is sent SND.NXT
		// lies one past the end of the data. Once all of it is
		// acknowledged, as in FIN-WAIT-2 after a half-close, only
		// keepalive watches a peer that may have vanished (RFC 9293
		// 3.8.4; Linux's tcp_keepalive_timer probes in FIN_WAIT2).
		e.setTimer(timerKeepalive, e.keepIdle)
		return
	}
	if e.keepProbes >= e.keepCount {
		e.sendActiveReset()
		e.fail(syscall.ETIMEDOUT, timerCause(timerKeepalive))
		return
	}
	e.keepProbes++
	e.sendSegment(event.SendKeepalive, header.TCPFlagAck, e.sndUna-1, buffer.Buffer{}, nil)
	e.setTimer(timerKeepalive, e.keepIntvl)
}
