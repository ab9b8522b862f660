package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
)

type namedStack struct {
	name string
	s    *stack.Stack
}

// collector reads the engines' counters and queues at scrape time.
type collector struct {
	stacks []namedStack
	queues map[string]*stack.EventQueue
}

// The engine's metrics, one a line: name, help, variable labels.
var (
	descSegments        = desc("tapstack_tcp_segments_total", "TCP segments received (direction=in) and sent (direction=out).", "stack", "direction")
	descRetransmits     = desc("tapstack_tcp_retransmits_total", "Segments retransmitted.", "stack")
	descResets          = desc("tapstack_tcp_resets_total", "RSTs received (direction=in) and sent (direction=out).", "stack", "direction")
	descOpens           = desc("tapstack_tcp_opens_total", "Connections opened actively (Dial) or passively (Listen).", "stack", "kind")
	descTimeouts        = desc("tapstack_tcp_timeouts_total", "Connections that gave up retransmitting.", "stack")
	descDrops           = desc("tapstack_tcp_drops_total", "Inbound segments discarded, by reason.", "stack", "reason")
	descSends           = desc("tapstack_tcp_sends_total", "Segments sent, by cause.", "stack", "cause")
	descListenOverflows = desc("tapstack_tcp_listen_overflows_total", "SYNs and ACKs dropped because an accept queue was full (Linux ListenOverflows).", "stack")
	descListenDrops     = desc("tapstack_tcp_listen_drops_total", "SYNs dropped by a listener for any reason (Linux ListenDrops).", "stack")
	descQueueLen        = desc("tapstack_tcp_listen_queue_length", "A listener's SYN queue (queue=syn) or accept queue (queue=accept) length.", "stack", "listener", "queue")
	descQueueLimit      = desc("tapstack_tcp_listen_queue_limit", "A listener's SYN queue or accept queue limit.", "stack", "listener", "queue")
	descConns           = desc("tapstack_tcp_connections", "Connections by state.", "stack", "state")
	descRcvMem          = desc("tapstack_tcp_receive_memory_bytes", "Received data the connections hold, unread or out of order (Usage().ReceiveMemory; Linux's tcp_mem usage).", "stack")
	descRcvMemLimit     = desc("tapstack_tcp_receive_memory_limit_bytes", "The stack's receive memory limit (Options.ReceiveMemoryLimit; Linux's tcp_mem[2]).", "stack")
	descEventsDropped   = desc("tapstack_monitor_events_dropped_total", "Engine events the monitor's bounded queue dropped.", "stack")
)

// desc describes a metric with the given variable labels.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// allStates are the states reported by tapstack_tcp_connections, so a
// state with no connection reads 0 rather than disappearing.
var allStates = []event.State{event.SynSent, event.SynReceived, event.Established, event.FinWait1, event.FinWait2,
	event.CloseWait, event.Closing, event.LastAck, event.TimeWait}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSegments, descRetransmits, descResets, descOpens, descTimeouts,
		descDrops, descSends, descListenOverflows, descListenDrops, descQueueLen, descQueueLimit, descConns, descRcvMem, descRcvMemLimit, descEventsDropped} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, ns := range c.stacks {
		n := ns.name
		st := ns.s.TCP().Stats()
		counter(descSegments, st.SegmentsIn.Load(), n, "in")
		counter(descSegments, st.SegmentsOut.Load(), n, "out")
		counter(descRetransmits, st.Retransmits.Load(), n)
		counter(descResets, st.ResetsReceived.Load(), n, "in")
		counter(descResets, st.ResetsSent.Load(), n, "out")
		counter(descOpens, st.ActiveOpens.Load(), n, "active")
		counter(descOpens, st.PassiveOpens.Load(), n, "passive")
		counter(descTimeouts, st.Timeouts.Load(), n)
		counter(descListenOverflows, st.ListenOverflows.Load(), n)
		counter(descListenDrops, st.ListenDrops.Load(), n)
		for r := range st.Drops {
			if r == int(event.DropNone) {
				continue
			}
			counter(descDrops, st.Drops[r].Load(), n, event.DropReason(r).String())
		}
		for cause := range st.Sends {
			counter(descSends, st.Sends[cause].Load(), n, event.SendCause(cause).String())
		}
		for _, l := range ns.s.TCP().Listeners() {
			q, addr := l.Queues(), l.Addr().String()
			gauge(descQueueLen, q.SynQueueLen, n, addr, "syn")
			gauge(descQueueLimit, q.SynQueueLimit, n, addr, "syn")
			gauge(descQueueLen, q.AcceptQueueLen, n, addr, "accept")
			gauge(descQueueLimit, q.AcceptQueueLimit, n, addr, "accept")
		}
		byState := map[event.State]int{}
		for _, e := range ns.s.TCP().Connections() {
			byState[e.State()]++
		}
		for _, s := range allStates {
			gauge(descConns, byState[s], n, s.String())
		}
		gauge(descRcvMem, ns.s.TCP().Usage().ReceiveMemory, n)
		gauge(descRcvMemLimit, ns.s.TCP().Options().ReceiveMemoryLimit, n)
		if q := c.queues[n]; q != nil {
			counter(descEventsDropped, q.Dropped(), n)
		}
	}
}

// lifecycle turns state events into histograms: handshake time (from
// SYN-SENT or SYN-RECEIVED to ESTABLISHED) and connection lifetime (from
// leaving CLOSED to entering it again).
type lifecycle struct {
	handshake, lifetime *prometheus.HistogramVec

	mu    sync.Mutex
	open  map[connKey]time.Time // when the connection left CLOSED
	limit int                   // bounds open: a flood of half-open connections must not grow it forever
}

type connKey struct {
	stack string
	conn  event.ConnID
}

func newLifecycle(reg prometheus.Registerer) *lifecycle {
	l := &lifecycle{
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tapstack_tcp_handshake_seconds",
			Help:    "Time from SYN-SENT or SYN-RECEIVED to ESTABLISHED.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		}, []string{"stack"}),
		lifetime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tapstack_tcp_connection_lifetime_seconds",
			Help:    "Time from leaving CLOSED to CLOSED again, TIME-WAIT included.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 4, 10), // 100µs .. 26s
		}, []string{"stack"}),
		open:  make(map[connKey]time.Time),
		limit: 1 << 16,
	}
	reg.MustRegister(l.handshake, l.lifetime)
	return l
}

// observe returns the event consumer for one stack; it runs on an
// EventQueue's goroutine.
func (l *lifecycle) observe(stackName string) func(event.Event) {
	return func(ev event.Event) {
		if ev.Kind != event.KindState || !ev.Conn.Remote.IsValid() {
			return
		}
		k := connKey{stackName, ev.Conn}
		l.mu.Lock()
		defer l.mu.Unlock()
		switch {
		case ev.From == event.Closed:
			if len(l.open) < l.limit {
				l.open[k] = ev.Time
			}
		case ev.To == event.Established && (ev.From == event.SynSent || ev.From == event.SynReceived):
			if t, ok := l.open[k]; ok {
				l.handshake.WithLabelValues(stackName).Observe(ev.Time.Sub(t).Seconds())
			}
		case ev.To == event.Closed:
			if t, ok := l.open[k]; ok {
				l.lifetime.WithLabelValues(stackName).Observe(ev.Time.Sub(t).Seconds())
				delete(l.open, k)
			}
		}
	}
}
