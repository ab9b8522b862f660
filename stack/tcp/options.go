package tcp

import (
	"slices"
	"strconv"
	"time"

	"github.com/tapstack/tapstack/event"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Options configure the engine. The zero value of every field means the
// default, which follows Linux where RFC 9293 leaves a choice.
type Options struct {
	// TimeWait is how long a connection stays in TIME-WAIT: 2*MSL of
	// RFC 9293 3.4.2. Default 60 s, Linux's TCP_TIMEWAIT_LEN.
	TimeWait time.Duration

	// RFC1337 keeps a connection in TIME-WAIT when a RST arrives for it,
	// as RFC 1337 3 (F1) recommends against "TIME-WAIT assassination"
	// and Linux does with net.ipv4.tcp_rfc1337=1: the RST is dropped
	// (DropRstTimeWait). By default, as RFC 9293 3.10.7.4 and Linux's
	// default, an acceptable RST ends TIME-WAIT: an old duplicate's ACK,
	// answered with a RST by a peer that has closed, can then cut the
	// 2*MSL short.
	RFC1337 bool

	// FinWait2Timeout bounds FIN-WAIT-2 for a connection the user has
	// fully closed, like Linux's tcp_fin_timeout (default 60 s). RFC 9293
	// lets FIN-WAIT-2 last forever; an orphan cannot be told anything, so
	// Linux and we give up.
	FinWait2Timeout time.Duration

	// InitialRTO, MinRTO and MaxRTO bound the retransmission timeout.
	// RFC 6298 2.1 sets the initial RTO to 1 s. Its 1 s minimum (2.4) is a
	// SHOULD; we follow Linux's 200 ms (TCP_RTO_MIN) and 120 s maximum.
	InitialRTO, MinRTO, MaxRTO time.Duration

	// SynRetries is how often a SYN is retransmitted before Dial fails with
	// ETIMEDOUT (Linux tcp_syn_retries, default 6).
	SynRetries int
	// SynAckRetries is how often a SYN-ACK is retransmitted before the
	// half-open entry is dropped (Linux tcp_synack_retries, default 5).
	SynAckRetries int
	// MaxRetries bounds the retransmission timeouts of data before the
	// connection fails with ETIMEDOUT (Linux tcp_retries2, default 15):
	// as in Linux, by the time that many take from an RTO of 200 ms
	// doubled up to MaxRTO (924.6 s for 15; retriesTimedOut), so a larger
	// RTO tries fewer times, a user timeout replaces it. It also bounds
	// the zero-window probes a silent peer leaves unanswered, by count
	// (Linux tcp_probe_timer).
	MaxRetries int
	// OrphanRetries bounds the zero-window probes of a connection the
	// user has closed (Linux tcp_orphan_retries; its 0 means 8, the
	// default here).
	OrphanRetries int

	// CongestionControl names the algorithm: "cubic" (RFC 9438, leaving
	// slow start as HyStart says; the default, as in Linux), "reno"
	// (RFC 5681) or "bbr" (BBR v1 as Linux's, bbr.go; it paces every
	// connection). An unknown name means the default;
	// Info().CongestionControl says what a connection uses.
	// NewCongestionControl, if set, makes each connection's algorithm
	// instead.
	CongestionControl    string
	NewCongestionControl func() CongestionControl
	// HyStart says how CUBIC leaves slow start before a loss does:
	// HyStartPlusPlus, the default, with HyStart++ (RFC 9406);
	// HyStartLinux with the HyStart of Linux's tcp_cubic
	// (hystart_linux.go); HyStartOff not at all. Only CUBIC reads it,
	// when a connection's CUBIC is made (SetCongestionControl's too).
	HyStart HyStartMode

	// NoRACK turns RACK-TLP (RFC 8985) off: losses are then found by
	// the DupThresh rule (RFC 5681, RFC 6675) and NewReno's partial
	// ACKs, and no tail loss probe is sent. By default RACK-TLP is on
	// whenever SACK is, as in Linux (tcp_recovery=1).
	NoRACK bool
	// NoTLP turns the tail loss probe (RFC 8985 7) off and keeps RACK's
	// loss detection, as Linux's tcp_early_retrans below 3 does: a tail
	// loss is then left to the retransmission timeout.
	NoTLP bool
	// NoRecoveryProbe keeps tail loss probes to open state, as RFC 8985
	// and Linux do. By default a probe may also go out during fast
	// recovery when no ACK arrived for 2·SRTT, one per such silence, so
	// that a lost ACK or a lost retransmission does not leave the
	// recovery to the RTO (see probeAllowed in rack.go).
	NoRecoveryProbe bool
	// TailLossProbes is how many tail loss probes may go out, one
	// after another, into a silence: a probe that draws no ACK at all
	// is followed by another, 2·PTO after the first, 4·PTO after the
	// second and so on, each only if it comes before the RTO (see
	// probeAgain in rack.go). 0 means 4, the default; 1 is RFC 8985's
	// single probe, as Linux sends it.
	TailLossProbes int
	// TailLossProbeSegments is how many full-sized segments of new data
	// a tail loss probe carries when there are that many to send (see
	// probeTimeout in rack.go): 0 means 2, the default, which a receiver
	// acknowledges at once where it may hold the ACK of one for its
	// delayed-ACK timer; 1 is RFC 8985's probe, as Linux sends it.
	TailLossProbeSegments int
	// NoFRTO turns off F-RTO (RFC 5682), which detects spurious
	// retransmission timeouts (Linux tcp_frto, on by default).
	NoFRTO bool
	// NoSlowStartAfterIdle keeps the congestion window across an idle
	// spell. By default, as RFC 5681 4.1 asks and Linux does
	// (tcp_slow_start_after_idle=1), a connection that sent no data for
	// longer than an RTO and has none in flight restarts from at most
	// the initial window: its ACK clock is gone and the window it had
	// may no longer fit the path.
	NoSlowStartAfterIdle bool

	// SendBufferSize and ReceiveBufferSize are the per-connection buffers
	// in bytes (default 1 MiB each, DefaultSendBufferSize and
	// DefaultReceiveBufferSize). The receive buffer bounds the window.
	SendBufferSize, ReceiveBufferSize int
	// SendBufferMax is how far the send buffer grows by itself when it,
	// and neither window, is what holds the sender back (default 4 MiB,
	// DefaultSendBufferMax, Linux's tcp_wmem[2]; at most SendBufferSize
	// means no growth; set without SendBufferSize, below its default, it
	// is where the buffer starts too): see expandSendBuffer. A buffer the user sets
	// (Endpoint.SetBuffers, Conn.SetWriteBuffer) stays as set, as
	// SO_SNDBUF locks Linux's.
	SendBufferMax int
	// ReceiveBufferMax is how far the receive buffer, and with it the
	// window, grows by itself when the user reads in a round trip more
	// than the buffer's share of it (default 6 MiB,
	// DefaultReceiveBufferMax, Linux's tcp_rmem[2]; at most
	// ReceiveBufferSize means no growth; set without ReceiveBufferSize,
	// below its default, it is where the buffer starts too): see
	// growReceiveBuffer. The
	// window scale is chosen for it. A buffer the user sets
	// (Endpoint.SetBuffers, Conn.SetReadBuffer) stays as set, as
	// SO_RCVBUF locks Linux's.
	ReceiveBufferMax int

	// ReceiveMemoryLimit bounds, stack-wide, the bytes of received data
	// the connections hold: in-order text the users have not read and
	// the heap out-of-order text pins (default 1 GiB,
	// DefaultReceiveMemoryLimit). Each connection's receive buffer is
	// bounded on its own, but a peer that opens many connections and
	// fills each, or only its out-of-order queue, which needs nothing of
	// the user, would otherwise hold MaxConnections times that. Near the
	// limit no window opens further; at it, text is dropped, unless the
	// connection holds nothing unread (rcvmem.go). Linux's tcp_mem does
	// this job; its limit is sized from the host's memory at boot, which
	// a library cannot know is its own to take.
	ReceiveMemoryLimit int

	// SynQueueLimit bounds half-open connections per listener (Linux
	// tcp_max_syn_backlog; default 1024).
	SynQueueLimit int

	// NoSynCookies turns SYN cookies (RFC 4987 3.6) off. By default, as
	// with Linux's tcp_syncookies=1, a SYN that finds the SYN queue full
	// is answered with a SYN-ACK whose ISS is a cookie and no state is
	// kept; the final ACK rebuilds the connection. With NoSynCookies such
	// a SYN is dropped. A cookie connection has window scaling only if
	// the SYN carried timestamps, which carry the peer's scale (see
	// cookie.go).
	NoSynCookies bool

	// NoTimestamps turns the TCP Timestamps option (RFC 7323 3) off. By
	// default, as with Linux's tcp_timestamps=1, every SYN offers it and a
	// SYN-ACK answers a SYN that offered it; when both SYNs carry it, every
	// segment does, for PAWS (RFC 7323 5) and RTT measurement (RFC 7323 4).
	NoTimestamps bool

	// NoSACK stops offering SACK (RFC 2018). By default every SYN offers
	// SACK-permitted and a SYN-ACK answers a SYN that offered it; when
	// both did, our ACKs report out-of-order data in SACK blocks, and our
	// sender keeps a scoreboard of the peer's blocks and recovers from
	// loss as RFC 6675 describes, retransmitting only the holes. Without
	// SACK, recovery is NewReno (RFC 6582).
	NoSACK bool

	// AbortOnOverflow answers the final ACK of a handshake with RST when
	// the accept queue is full, like Linux's tcp_abort_on_overflow. By
	// default the ACK is dropped and the peer's retransmission completes
	// the handshake once Accept has made room.
	AbortOnOverflow bool

	// DelayedAck is the longest an ACK is held back (RFC 9293 3.8.6.3
	// allows up to 500 ms; Linux uses 40 ms, TCP_DELACK_MIN).
	DelayedAck time.Duration

	// NoQuickAck turns off Linux's quick-ACK mode (delack.go), which
	// ACKs the first data of a connection, and the first after an idle
	// spell, at once. The ACK policy is then RFC 1122's alone: an ACK for
	// every second full segment, the rest after DelayedAck. Use it to see
	// the classic Nagle and delayed-ACK stall from the first segment.
	NoQuickAck bool

	// AckPerBurst and NoAckPerBurst choose how a receiver answers a
	// burst of in-order full-sized text that its link delivered at once
	// (a TAP reader draining the kernel's queue, a pipe's pump; batch.go).
	// Per burst, it sends two ACKs: the burst's first at its second
	// segment, and one at its end for the rest. Per segment, one for
	// every second segment (RFC 5681 4.2, Linux without GRO).
	//
	// By default a burst is answered per burst while the path shows
	// neither loss nor reordering, and per segment for the next 1,024
	// ACKs after text came out of order or twice (disorderSegmentAcks).
	// Per burst saves ACKs and CPU on a clean path: the kernel →
	// tapstack over a TAP without offloads, 1.7 → 2.2-2.5 Gbit/s (gVisor's
	// TCP, which ACKs once per batch it handles: 2.1-2.4), 11,600 → 600
	// ACKs per 32 MiB; gVisor → tapstack in memory without GSO, 110 →
	// 297 MB/s. On a lossy path it costs the sender's ACK clock (5% loss
	// each way, tapstack → tapstack in memory: 136 goodput MB/s per
	// segment, 102 per burst), and there the default is per segment.
	// AckPerBurst answers per burst even then; NoAckPerBurst always per
	// segment (AckPerBurst wins if both are set). Coalesced text
	// (segments longer than the MSS, from GRO or a GSO pipe) is always
	// answered per burst: its first super-frame at once, the rest at the
	// burst's end.
	AckPerBurst   bool
	NoAckPerBurst bool

	// NoSackCompression sends an ACK for every segment of out-of-order
	// text at once (RFC 5681 4.2), as Linux did before 4.18. By default,
	// on a link that marks its bursts, the first 32 such ACKs after
	// in-order text go at once, and after them text that grows the
	// latest SACK block's range draws one ACK at the burst's end (batch.go
	// compressSack, after Linux's SACK compression): the kernel sending
	// over a TAP without offloads at 1% loss each way, 0.42-0.49 → 0.99-
	// 1.18 Gbit/s.
	NoSackCompression bool

	// ChallengeAckLimit is the stack-wide budget of challenge ACKs per
	// second (RFC 5961 7 and 10). As in Linux since the fix for
	// CVE-2016-5696, the budget of each second is drawn at random from
	// [limit/2, limit*3/2), and every connection is first held to one
	// challenge ACK per InvalidRateLimit, so that no connection can count
	// the challenge ACKs of another. Default 1000, Linux's value before
	// 6.0 (tcp_challenge_ack_limit; Linux now defaults to no global limit
	// and relies on the per-connection one alone).
	ChallengeAckLimit int

	// InvalidRateLimit is the least time between two ACKs a connection
	// sends in reply to unacceptable segments: out-of-window segments
	// (RFC 9293 3.10.7.4), data into a zero window, segments PAWS rejects
	// (RFC 7323 5.3), ACKs of unsent data (RFC 9293 3.10.7.4 fifth step)
	// and the challenge ACKs of RFC 5961. Two TCPs that each find the
	// other's segments unacceptable would otherwise ACK each other
	// forever, and a peer could make us answer every segment it forges.
	// Default 500 ms, Linux's tcp_invalid_ratelimit; negative turns the
	// limit off. The ACK of a segment with text or a FIN and no SYN is
	// never held, in TIME-WAIT too, as Linux's tcp_oow_rate_limited: no
	// ACK loop carries one, and the peer needs that ACK to learn that its
	// retransmission was a duplicate, or to close.
	InvalidRateLimit time.Duration

	// MaxTimeWait bounds the connections kept in TIME-WAIT, stack-wide,
	// like Linux's tcp_max_tw_buckets: a connection that would enter
	// TIME-WAIT beyond it is deleted at once (CLOSED), and
	// LimitStats.TimeWaitOverflows counts it. TIME-WAIT is kept as a
	// compact record, not a full connection (timewait.go). Default
	// 131072: Linux sets it at boot to half its established-connection
	// hash, which grows with memory; 131072 is its value on a host with
	// 16 to 32 GiB.
	MaxTimeWait int

	// MaxOrphans bounds orphaned connections, stack-wide, like Linux's
	// tcp_max_orphans: connections the user has closed that have not yet
	// reached CLOSED or TIME-WAIT (FIN-WAIT-1, FIN-WAIT-2, CLOSING,
	// LAST-ACK). A Close that would make one more is an abort instead:
	// RST, CLOSED, and LimitStats.OrphanResets counts it, as Linux's
	// TCPAbortOnMemory. Default 131072, sized like MaxTimeWait.
	MaxOrphans int

	// MaxConnections bounds the connections of the stack, half-open ones
	// included, TIME-WAIT records not (MaxTimeWait bounds those). Beyond
	// it Connect fails with EMFILE and a SYN or SYN-cookie ACK is dropped
	// (DropConnectionLimit). Linux has no such sysctl: a socket is a file
	// descriptor there, bounded per process by fs.nr_open, whose default
	// 1048576 is ours.
	MaxConnections int

	// MinGSOSegments is the fewest segments the sender puts in one GSO
	// packet (a train of back-to-back segments where the link does not
	// segment; PSH marks the last of each), whatever the pacing rate
	// would make it: Linux's tcp_min_tso_segs, default 2. See gsoSegs.
	MinGSOSegments int

	// Pacing paces every connection's packets at its pacing rate, as
	// Linux's fq qdisc does (pacing.go): off by default, as in Linux
	// without fq, where a connection sends what its windows allow back
	// to back. Endpoint.SetMaxPacingRate paces one connection, capped.
	Pacing bool
	// MaxPacingRate, in bytes a second, caps every connection's pacing
	// rate, as the fq qdisc's maxrate caps each flow's, and turns pacing
	// on; SetMaxPacingRate sets one connection's cap instead.
	MaxPacingRate uint64

	// ECN says whether connections use Explicit Congestion Notification
	// (RFC 3168): ECNPassive, the default as in Linux (tcp_ecn=2),
	// agrees when a peer's SYN asks; ECNOn asks on active opens too
	// (tcp_ecn=1); ECNOff never uses it (tcp_ecn=0). See ecn.go.
	ECN ECNMode

	// MTUProbing says when connections search for the path MTU
	// themselves (RFC 4821, plpmtud.go), which finds a path MTU black
	// hole that ICMP never reports: MTUProbingOff, the default as in
	// Linux (tcp_mtu_probing=0); MTUProbingBlackHole once the
	// retransmission timer suggests one (1); MTUProbingOn from the
	// handshake on (2). BaseMSS is where the search starts and the MSS a
	// suspected black hole drops to (Linux's tcp_base_mss, default
	// 1024); ProbeInterval how long a finished search rests before it
	// starts again (tcp_probe_interval, default 10 minutes).
	MTUProbing    MTUProbing
	BaseMSS       int
	ProbeInterval time.Duration

	// Observer, if set, receives every Event.
	Observer event.Observer
}

// HyStartMode says how CUBIC leaves slow start early (Options.HyStart).
type HyStartMode uint8

const (
	// HyStartPlusPlus is HyStart++ (RFC 9406, cubic.go): a round whose
	// lowest RTT rose moves to Conservative Slow Start, which hands over
	// to congestion avoidance after five rounds unless the RTT falls
	// back. In the first slow start only. The default.
	HyStartPlusPlus HyStartMode = iota
	// HyStartLinux is the HyStart of Linux's tcp_cubic with its default
	// hystart_detect=3 (hystart_linux.go): a train of closely spaced
	// ACKs that lasts half the minimum RTT (all of it when paced), or a
	// round whose lowest RTT rose by more than an eighth of the minimum
	// (4 to 16 ms), sets ssthresh = cwnd at once, and congestion
	// avoidance begins. It watches every
	// slow start from a window of 16 segments up, until it has found an
	// exit; a retransmission timeout lets it find another.
	HyStartLinux
	// HyStartOff leaves slow start at ssthresh or a loss only, as Linux
	// with hystart_detect=0.
	HyStartOff
)

var hyStartModeNames = [...]string{HyStartPlusPlus: "hystart++", HyStartLinux: "linux", HyStartOff: "off"}

func (m HyStartMode) String() string {
	if int(m) < len(hyStartModeNames) {
		return hyStartModeNames[m]
	}
	return "HyStartMode(" + strconv.Itoa(int(m)) + ")"
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.TimeWait, 60*time.Second)
	def(&o.FinWait2Timeout, 60*time.Second)
	def(&o.InitialRTO, time.Second)
	def(&o.MinRTO, 200*time.Millisecond)
	def(&o.MaxRTO, 120*time.Second)
	def(&o.DelayedAck, 40*time.Millisecond)
	defInt(&o.SynRetries, 6)
	defInt(&o.SynAckRetries, 5)
	defInt(&o.MaxRetries, 15)
	defInt(&o.OrphanRetries, 8)
	defInt(&o.TailLossProbes, 4)
	defInt(&o.TailLossProbeSegments, 2)
	if !slices.Contains(congestionControls, o.CongestionControl) {
		o.CongestionControl = "cubic"
	}
	// A maximum set alone below a default start starts the buffer there:
	// the maximum is what the user asked for, and a buffer that began
	// above it would never shrink to it.
	if o.SendBufferSize == 0 && o.SendBufferMax > 0 {
		o.SendBufferSize = min(DefaultSendBufferSize, o.SendBufferMax)
	}
	if o.ReceiveBufferSize == 0 && o.ReceiveBufferMax > 0 {
		o.ReceiveBufferSize = min(DefaultReceiveBufferSize, o.ReceiveBufferMax)
	}
	defInt(&o.SendBufferSize, DefaultSendBufferSize)
	defInt(&o.SendBufferMax, DefaultSendBufferMax)
	o.SendBufferMax = max(o.SendBufferMax, o.SendBufferSize)
	defInt(&o.ReceiveBufferMax, DefaultReceiveBufferMax)
	defInt(&o.ReceiveBufferSize, DefaultReceiveBufferSize)
	defInt(&o.SynQueueLimit, 1024)
	defInt(&o.ChallengeAckLimit, 1000)
	if o.InvalidRateLimit == 0 {
		o.InvalidRateLimit = 500 * time.Millisecond
	}
	defInt(&o.MaxTimeWait, 131072)
	defInt(&o.MaxOrphans, 131072)
	defInt(&o.MaxConnections, 1<<20)
	defInt(&o.ReceiveMemoryLimit, DefaultReceiveMemoryLimit)
	defInt(&o.MinGSOSegments, 2)
	defInt(&o.BaseMSS, DefaultBaseMSS)
	def(&o.ProbeInterval, DefaultProbeInterval)
	return o
}

// synOptions are the options we put on a SYN or SYN-ACK.
type synOptions struct {
	mss          uint16
	ws           int // -1: do not send
	sackPerm     bool
	ts           bool // send the TSopt with tsVal and tsEcr (RFC 7323 3.2)
	tsVal, tsEcr uint32
}

// encodeSynOptions writes the SYN options in Linux's order (MSS,
// SACK-permitted, TS, NOP, WS: tcp_options_write) and pads to a multiple of
// four bytes (RFC 9293 3.1). The TSopt is kept 4-byte aligned, by
// SACK-permitted or two NOPs before it, as RFC 7323 appendix A suggests.
// It returns the length.
func encodeSynOptions(o synOptions, b []byte) int {
	n := header.EncodeMSSOption(uint32(o.mss), b)
	switch {
	case o.sackPerm && o.ts:
		n += header.EncodeSACKPermittedOption(b[n:])
		n += header.EncodeTSOption(o.tsVal, o.tsEcr, b[n:])
	case o.ts:
		n += encodeTimestamp(o.tsVal, o.tsEcr, b[n:])
	case o.sackPerm:
		n += header.EncodeNOP(b[n:])
		n += header.EncodeNOP(b[n:])
		n += header.EncodeSACKPermittedOption(b[n:])
	}
	if o.ws >= 0 {
		n += header.EncodeNOP(b[n:])
		n += header.EncodeWSOption(o.ws, b[n:])
	}
	return n + header.AddTCPOptionPadding(b, n)
}

// tsOptionSize is the room the TSopt takes on every segment, with its two
// NOPs (RFC 7323 appendix A): what the send MSS shrinks by while
// timestamps are in force (RFC 6691 and Linux's tcp_current_mss).
// The buffers' defaults (Options): each starts at 1 MiB and grows by
// itself up to 4 MiB (send) and 6 MiB (receive), Linux's tcp_wmem[2] and
// tcp_rmem[2]. A sender can have no more in flight than its send buffer
// holds: on a path of 10 ms round trip 4 MiB bound it at about 3.3
// Gbit/s, as Linux's default bounds Linux's; raise SendBufferMax (and the
// receiver its maximum) for a longer or faster path.
const (
	DefaultSendBufferSize    = 1 << 20
	DefaultSendBufferMax     = 4 << 20
	DefaultReceiveBufferSize = 1 << 20
	DefaultReceiveBufferMax  = 6 << 20
)

// DefaultReceiveMemoryLimit is Options.ReceiveMemoryLimit's default:
// 1 GiB, room for 170 connections with full 6 MiB buffers, where Linux's
// tcp_mem[2] on a host of 16 GiB is about 1.5 GiB.
const DefaultReceiveMemoryLimit = 1 << 30

const tsOptionSize = 12

// encodeTimestamp writes NOP, NOP, TSopt: the layout Linux sends and
// recognizes on its fast path. It returns tsOptionSize.
func encodeTimestamp(val, ecr uint32, b []byte) int {
	n := header.EncodeNOP(b)
	n += header.EncodeNOP(b[n:])
	return n + header.EncodeTSOption(val, ecr, b[n:])
}

// windowScaleFor returns the smallest shift that lets a 16-bit window field
// cover a buffer of size bytes (RFC 7323 2.3), at most 14.
func windowScaleFor(size int) int {
	ws := 0
	for size > 0xffff && ws < header.MaxWndScale {
		size >>= 1
		ws++
	}
	return ws
}
