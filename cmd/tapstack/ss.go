package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runSS is "tapstack ss": a table of connections and listeners with their
// TCP info, like Linux "ss -tin". It runs the in-memory demo workload and
// prints the table at each point of the connection's life: established,
// during the transfer, closing, closed.
func runSS(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "ss", "")
	timeWait := fs.Duration("timewait", 100*time.Millisecond, "TIME-WAIT (2*MSL) of both stacks")
	text := fs.String("text", "hello, tapstack\n", "what the demo client sends")
	pcapPath := fs.String("pcap", "", "write an annotated pcapng capture of the server's end to `file`")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	out := &syncWriter{w: e.stdout}
	return runDemoWorkload(ctx, io.Discard, demoConfig{
		timeWait: *timeWait,
		text:     *text,
		pcapPath: *pcapPath,
		at: func(phase string, server, client *stack.Stack) {
			fmt.Fprintf(out, "-- %s --\n", phase)
			writeSS(out, []namedStack{{"server", server}, {"client", client}})
			fmt.Fprintln(out)
		},
	})
}

type namedStack struct {
	name string
	s    *stack.Stack
}

// writeSS prints the listeners and connections of the stacks, one row per
// socket followed by an indented line of TCP info, as ss -tin does. As in
// ss, a listener's Recv-Q is its accept queue and its Send-Q the backlog.
func writeSS(w io.Writer, stacks []namedStack) {
	const format = "%-7s %-12s %6s %6s  %-22s %-22s"
	fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf(format, "Stack", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"), " "))
	type row struct{ main, info string }
	for _, ns := range stacks {
		var rows []row
		for _, l := range ns.s.TCP().Listeners() {
			q := l.Queues()
			rows = append(rows, row{
				main: fmt.Sprintf(format, ns.name, l.State(), itoa(q.AcceptQueueLen), itoa(q.AcceptQueueLimit), l.Addr().Local, "*:*"),
				info: fmt.Sprintf("\t syn_queue:%d/%d", q.SynQueueLen, q.SynQueueLimit),
			})
		}
		for _, c := range ns.s.TCP().Connections() {
			in := c.Info()
			rows = append(rows, row{
				main: fmt.Sprintf(format, ns.name, in.State, itoa(in.RecvQueued), itoa(in.SendQueued), in.ID.Local, in.ID.Remote),
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

func itoa(n int) string { return strconv.Itoa(n) }

// infoLine is the TCP info of a connection in ss -i's notation.
func infoLine(in tcp.Info) string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3g", float64(d)/float64(time.Millisecond)) }
	var b strings.Builder
	if in.Timestamps {
		b.WriteString("ts ") // as ss -i lists the agreed options first
	}
	fmt.Fprintf(&b, "rtt:%s/%s rto:%s mss:%d cwnd:%d", ms(in.RTT), ms(in.RTTVar), ms(in.RTO), in.SndMSS, in.Cwnd)
	if in.Ssthresh < 1<<30 {
		fmt.Fprintf(&b, " ssthresh:%d", in.Ssthresh)
	}
	if in.SndWndScale >= 0 {
		fmt.Fprintf(&b, " wscale:%d,%d", in.SndWndScale, in.RcvWndScale)
	}
	fmt.Fprintf(&b, " bytes_sent:%d bytes_acked:%d bytes_received:%d retrans:%d age:%s",
		in.BytesSent, in.BytesAcked, in.BytesReceived, in.Retransmits, in.StateAge.Round(time.Microsecond))
	return b.String()
}
