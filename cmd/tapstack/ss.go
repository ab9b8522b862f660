package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runSS is "tapstack ss": a table of connections and listeners with their
// TCP info, like Linux "ss -tin". It runs the in-memory demo workload and
// prints the table at each point of the connection's life: established,
// during the transfer, closing, closed.
func runSS(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "ss", "")
	timeWait := timeWaitFlag(fs, "timewait", 100*time.Millisecond, "TIME-WAIT (2*MSL) of both stacks")
	text := fs.String("text", "hello, tapstack\n", "what the demo client sends")
	rfc1337 := rfc1337Flag(fs)
	pcapPath := fs.String("pcap", "", "write an annotated pcapng capture of the server's end to `file`")
	faults := addFaultFlags(fs)
	otlp := otlpFlag(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := checkTimeWait(fs, "timewait", *timeWait); err != nil {
		return err
	}
	traces, err := newOTLP(*otlp)
	if err != nil {
		return err
	}
	out := &syncWriter{w: e.stdout}
	err = runDemoWorkload(ctx, io.Discard, demoConfig{
		timeWait:  *timeWait,
		rfc1337:   *rfc1337,
		text:      *text,
		pcapPath:  *pcapPath,
		faults:    faults,
		stderr:    e.stderr,
		serverObs: traces.observer("server", nil),
		clientObs: traces.observer("client", nil),
		at: func(phase string, server, client *stack.Stack) {
			fmt.Fprintf(out, "-- %s --\n", phase)
			writeSS(out, []namedStack{{"server", server}, {"client", client}})
			fmt.Fprintln(out)
		},
	})
	reportErr(e, traces.close())
	return err
}

type namedStack struct {
	name string
	s    *stack.Stack
}

// ssState is the name ss(8) prints for a state (misc/ss.c sstate_name).
var ssState = map[event.State]string{
	event.Closed:      "UNCONN",
	event.Listen:      "LISTEN",
	event.SynSent:     "SYN-SENT",
	event.SynReceived: "SYN-RECV",
	event.Established: "ESTAB",
	event.FinWait1:    "FIN-WAIT-1",
	event.FinWait2:    "FIN-WAIT-2",
	event.CloseWait:   "CLOSE-WAIT",
	event.Closing:     "CLOSING",
	event.LastAck:     "LAST-ACK",
	event.TimeWait:    "TIME-WAIT",
}

// writeSS prints the listeners and connections of the stacks as "ss -tain"
// prints sockets: the columns State, Recv-Q, Send-Q, Local Address:Port,
// Peer Address:Port and Process (here the stack's name), then a line of
// TCP info indented by a tab. As in ss, a listener's Recv-Q is its accept
// queue's length and its Send-Q the backlog, one less than the queue holds.
func writeSS(w io.Writer, stacks []namedStack) {
	const format = "%-10s %-6s %-6s %-22s %-22s %s"
	fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf(format, "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Process"), " "))
	type row struct{ main, info string }
	for _, ns := range stacks {
		var rows []row
		proc := fmt.Sprintf("stack:(%q)", ns.name)
		for _, l := range ns.s.TCP().Listeners() {
			q := l.Queues()
			// ss's Send-Q for a listener is the backlog given to
			// listen(2) (inet_diag's idiag_wqueue, sk_max_ack_backlog);
			// the accept queue holds one more (stack/tcp/accept.go).
			backlog := q.AcceptQueueLimit - 1
			rows = append(rows, row{
				main: fmt.Sprintf(format, ssState[l.State()], itoa(q.AcceptQueueLen), itoa(backlog), ssAddr(l.Addr()), "*:*", proc),
				info: fmt.Sprintf("\t syn_queue:%d/%d", q.SynQueueLen, q.SynQueueLimit),
			})
		}
		for _, c := range ns.s.TCP().Connections() {
			in := c.Info()
			rows = append(rows, row{
				main: fmt.Sprintf(format, ssState[in.State], itoa(in.RecvQueued), itoa(in.SendQueued), ssAddr(in.ID.Local), ssAddr(in.ID.Remote), proc),
				info: "\t " + infoLine(in),
			})
		}
		slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.main, b.main) })
		for _, r := range rows {
			fmt.Fprintln(w, strings.TrimRight(r.main, " "))
			fmt.Fprintln(w, r.info)
		}
	}
}

// ssAddr prints an address as ss does: 192.0.2.1:7, [2001:db8::1]:7,
// *:7 for the unspecified address.
func ssAddr(a netip.AddrPort) string {
	if a.Addr().IsUnspecified() {
		return "*:" + strconv.Itoa(int(a.Port()))
	}
	return a.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// infoLine is the TCP info of a connection in the order and units ss -i
// prints it (misc/ss.c tcp_show_info): options, congestion control,
// wscale, rto in milliseconds, backoff when the RTO has backed off, rtt
// in milliseconds with microsecond
// precision, mss, pmtu and advmss (the MSS we announced, less the
// timestamp option), cwnd and
// ssthresh in segments, then the byte counters, the pacing and delivery
// rates.
func infoLine(in tcp.Info) string {
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
	}
	// g is printf's %g, which ss uses for rto, minrtt and BBR's model
	// (six significant digits); gms is a duration in ms to the µs so.
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	gms := func(d time.Duration) string { return g(float64(d.Microseconds()) / 1000) }
	var b strings.Builder
	if in.Timestamps {
		b.WriteString("ts ")
	}
	if in.SACK {
		b.WriteString("sack ")
	}
	if in.ECN {
		b.WriteString("ecn ")
	}
	if in.ECNSeen {
		b.WriteString("ecnseen ")
	}
	cc := in.CongestionControl
	if cc == "" {
		cc = "unknown"
	}
	b.WriteString(cc)
	if in.SndWndScale >= 0 {
		fmt.Fprintf(&b, " wscale:%d,%d", in.SndWndScale, in.RcvWndScale)
	}
	mss := max(in.SndMSS, 1)
	// ss prints rto with printf's %g: six significant digits.
	rto := g(float64(in.RTO) / float64(time.Millisecond))
	fmt.Fprintf(&b, " rto:%s", rto)
	if in.Backoff > 0 {
		fmt.Fprintf(&b, " backoff:%d", in.Backoff) // as ss: only when the RTO has backed off
	}
	fmt.Fprintf(&b, " rtt:%s/%s mss:%d", ms(in.RTT), ms(in.RTTVar), in.SndMSS)
	if in.PathMTU > 0 {
		// A path MTU black hole found by probing shows as an MSS
		// below what pmtu allows, as in Linux's ss.
		fmt.Fprintf(&b, " pmtu:%d", in.PathMTU)
	}
	// advmss is the MSS we announced less the timestamp option when
	// it is in force, as Linux's tp->advmss (tcp_connect_init).
	advmss := in.RcvMSS
	if in.Timestamps {
		advmss -= 12
	}
	fmt.Fprintf(&b, " advmss:%d cwnd:%d", advmss, int(in.Cwnd)/mss)
	if in.Ssthresh < 1<<30 {
		fmt.Fprintf(&b, " ssthresh:%d", int(in.Ssthresh)/mss)
	}
	fmt.Fprintf(&b, " bytes_sent:%d bytes_acked:%d bytes_received:%d",
		in.BytesSent, in.BytesAcked, in.BytesReceived)
	// BBR's model, as ss -n prints tcp_bbr_info: the bandwidth in bits a
	// second, the min RTT in ms (%g of microseconds/1000) and the gains.
	if m := in.BBR; m != nil {
		fmt.Fprintf(&b, " bbr:(bw:%dbps,mrtt:%s,pacing_gain:%s,cwnd_gain:%s)", m.Bandwidth*8, gms(m.MinRTT), g(m.PacingGain), g(m.CwndGain))
	}
	// ss -n prints the pacing rate in bits a second, and the cap after a
	// slash when there is one, as Linux reports both whether or not the
	// connection is paced (tcpi_pacing_rate, tcpi_max_pacing_rate).
	if in.PacingRate > 0 && in.PacingRate != math.MaxUint64 {
		fmt.Fprintf(&b, " pacing_rate %dbps", in.PacingRate*8)
		if in.MaxPacingRate != math.MaxUint64 {
			fmt.Fprintf(&b, "/%dbps", in.MaxPacingRate*8)
		}
	}
	// Then the delivery rate, the segments delivered and whether the
	// rate was app-limited (tcpi_delivery_rate, tcpi_delivered,
	// tcpi_delivery_rate_app_limited), each only when there is one.
	if in.DeliveryRate > 0 {
		fmt.Fprintf(&b, " delivery_rate %dbps", in.DeliveryRate*8)
	}
	if in.Delivered > 0 {
		fmt.Fprintf(&b, " delivered:%d", in.Delivered)
	}
	if in.DeliveryRateAppLimited {
		b.WriteString(" app_limited")
	}
	// How long data waited to go, and how much of that for the peer's
	// window or the send buffer (tcpi_busy_time, tcpi_rwnd_limited,
	// tcpi_sndbuf_limited): what limited a slow transfer.
	if in.BusyTime > 0 {
		fmt.Fprintf(&b, " busy:%dms", in.BusyTime.Milliseconds())
		for _, l := range []struct {
			name string
			d    time.Duration
		}{{"rwnd_limited", in.RwndLimited}, {"sndbuf_limited", in.SndbufLimited}} {
			if l.d > 0 {
				fmt.Fprintf(&b, " %s:%dms(%.1f%%)", l.name, l.d.Milliseconds(), 100*float64(l.d)/float64(in.BusyTime))
			}
		}
	}
	// ss prints retrans as unacknowledged/total; the engine counts only
	// the total.
	fmt.Fprintf(&b, " retrans:%d", in.Retransmits)
	// Then, as ss: the segments deemed lost and SACKed (the engine
	// counts bytes: here in segments of the MSS, rounded up), the
	// reordering degree when not the default 3 and how often reordering
	// was seen, the minimum RTT in milliseconds (printf's %g) and the
	// peer's window.
	for _, c := range []struct {
		name  string
		bytes uint32
	}{{"lost", in.Lost}, {"sacked", in.Sacked}} {
		if c.bytes > 0 {
			fmt.Fprintf(&b, " %s:%d", c.name, (int(c.bytes)+mss-1)/mss)
		}
	}
	if in.Reordering != 3 {
		fmt.Fprintf(&b, " reordering:%d", in.Reordering)
	}
	if in.ReorderEvents > 0 {
		fmt.Fprintf(&b, " reord_seen:%d", in.ReorderEvents)
	}
	if in.MinRTT > 0 {
		fmt.Fprintf(&b, " minrtt:%s", gms(in.MinRTT)) // tcpi_min_rtt is in µs
	}
	if in.TCB.SndWnd > 0 {
		fmt.Fprintf(&b, " snd_wnd:%d", in.TCB.SndWnd)
	}
	return b.String()
}
