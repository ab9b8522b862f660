package pktscript

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// upstreamPass lists the upstream scripts tapstack passes. A script that
// leaves the list fails TestUpstreamScripts: a regression, or a
// deliberate change to be recorded here and in README's table of
// differences.
var upstreamPass = []string{
	"blocking/blocking-accept.pkt",
	"blocking/blocking-connect.pkt",
	"blocking/blocking-read.pkt",
	"close/close-local-close-then-remote-fin.pkt",
	"close/close-on-syn-sent.pkt",
	"close/close-remote-fin-then-close.pkt",
	"cubic/cubic-hystart-delay-min-rtt-jumps-downward.pkt",
	"cubic/cubic-hystart-delay-rtt-jumps-upward.pkt",
	"cwnd_moderation/cwnd-moderation-disorder-no-moderation.pkt",
	"ecn/ecn-uses-ect0.pkt",
	"fast_recovery/prr-ss-10pkt-lost-1.pkt",
	"fast_recovery/prr-ss-30pkt-lost-1_4-11_16.pkt",
	"fast_recovery/prr-ss-30pkt-lost1_4.pkt",
	"fast_recovery/prr-ss-ack-below-snd_una-cubic.pkt",
	"fast_retransmit/fr-4pkt-fack-last-byte.pkt",
	"fast_retransmit/fr-4pkt-sack.pkt",
	"fast_retransmit/fr-4pkt.pkt",
	"limited_transmit/limited-transmit-no-sack.pkt",
	"limited_transmit/limited-transmit-sack.pkt",
	"mss/mss-getsockopt-tcp_maxseg-server.pkt",
	"mss/mss-setsockopt-tcp_maxseg-client.pkt",
	"mss/mss-setsockopt-tcp_maxseg-server.pkt",
	"nagle/https_client.pkt",
	"nagle/sendmsg_msg_more.pkt",
	"nagle/sockopt_cork_nodelay.pkt",
	"sack/sack-shift-sacked-2-6-8-3-9-nofack.pkt",
	"sack/sack-shift-sacked-7-3-4-8-9-fack.pkt",
	"sack/sack-shift-sacked-7-5-6-8-9-fack.pkt",
	"shutdown/shutdown-rd-close.pkt",
	"shutdown/shutdown-rd-wr-close.pkt",
	"shutdown/shutdown-rdwr-close.pkt",
	"shutdown/shutdown-rdwr-send-queue-ack-close.pkt",
	"shutdown/shutdown-rdwr-write-queue-close.pkt",
	"shutdown/shutdown-wr-close.pkt",
	"slow_start/slow-start-ack-per-1pkt.pkt",
	"slow_start/slow-start-ack-per-2pkt-send-5pkt.pkt",
	"slow_start/slow-start-ack-per-2pkt-send-6pkt.pkt",
	"slow_start/slow-start-ack-per-2pkt.pkt",
	"slow_start/slow-start-ack-per-4pkt.pkt",
	"slow_start/slow-start-after-idle.pkt",
	"slow_start/slow-start-after-win-update.pkt",
	"slow_start/slow-start-app-limited-9-packets-out.pkt",
	"slow_start/slow-start-app-limited.pkt",
	"slow_start/slow-start-fq-ack-per-2pkt.pkt",
	"tcp_info/tcp-info-last_data_recv.pkt",
	"tcp_info/tcp-info-rwnd-limited.pkt",
	"ts_recent/fin_tsval.pkt",
	"ts_recent/reset_tsval.pkt",
	"user_timeout/user-timeout-probe.pkt",
	"user_timeout/user_timeout.pkt",
	"validate/validate-established-no-flags.pkt",
}

// TestUpstreamScripts runs the 62 upstream scripts and logs the tally per
// topic (go test -run TestUpstreamScripts -v shows it). It fails on a
// panic, a skip that does not name what is missing, a failure without a
// line, and a listed script that no longer passes.
func TestUpstreamScripts(t *testing.T) {
	dir := upstreamDir(t)
	type tally struct{ pass, fail, skip int }
	topics := map[string]*tally{}
	var total tally
	var lines []string
	got := map[string]Status{}
	for _, f := range upstreamScripts(t) {
		rel, err := filepath.Rel(filepath.Join(dir, "tcp"), f)
		if err != nil {
			t.Fatal(err)
		}
		r := Exec(f, Options{})
		got[rel] = r.Status
		topic := filepath.Dir(rel)
		if topics[topic] == nil {
			topics[topic] = &tally{}
		}
		switch r.Status {
		case Pass:
			topics[topic].pass++
			total.pass++
		case Fail:
			topics[topic].fail++
			total.fail++
			if r.Line == 0 {
				t.Errorf("%s: a failure without a line: %s", rel, r)
			}
		case Skip:
			topics[topic].skip++
			total.skip++
			if !strings.HasPrefix(r.Reason, "needs ") {
				t.Errorf("%s: a skip that names nothing: %s", rel, r)
			}
		default:
			t.Errorf("%s: no outcome", rel)
		}
		if strings.HasPrefix(r.Reason, "panic") {
			t.Errorf("%s: %s\n%s", rel, r, r.Detail)
		}
		lines = append(lines, fmt.Sprintf("%-62s %s", rel, r))
	}
	for _, p := range upstreamPass {
		if s, ok := got[p]; !ok || s != Pass {
			t.Errorf("%s: %v, was PASS", p, s)
		}
	}
	names := make([]string, 0, len(topics))
	for n := range topics {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %4s %4s %4s\n", "topic", "pass", "fail", "skip")
	for _, n := range names {
		c := topics[n]
		fmt.Fprintf(&b, "%-18s %4d %4d %4d\n", n, c.pass, c.fail, c.skip)
	}
	fmt.Fprintf(&b, "%d passed, %d failed, %d skipped", total.pass, total.fail, total.skip)
	t.Logf("upstream scripts:\n%s\n\n%s", strings.Join(lines, "\n"), b.String())
	if tally := fmt.Sprintf("**%d pass, %d fail, %d skip**", total.pass, total.fail, total.skip); !strings.Contains(readme(t), tally) {
		t.Errorf("README does not give the tally %s: update its section on the upstream scripts", tally)
	}
	if len(upstreamPass) < total.pass {
		t.Logf("%d scripts pass that upstreamPass does not list: add them", total.pass-len(upstreamPass))
	}
}
