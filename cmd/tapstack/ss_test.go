package main

import (
	"math"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// TestInfoLineBackoff: as ss -i, backoff follows rto once the RTO has
// backed off, and is left out while it has not.
func TestInfoLineBackoff(t *testing.T) {
	in := tcp.Info{RTO: 800 * time.Millisecond, RTT: 100 * time.Millisecond, SndMSS: 1460, RcvMSS: 1460, Cwnd: 14600, Ssthresh: 1 << 31, SndWndScale: -1, CongestionControl: "cubic"}
	if l := infoLine(in); strings.Contains(l, "backoff") || !strings.Contains(l, "cubic rto:800 rtt:100.000/0.000 mss:1460") {
		t.Errorf("no backoff: %q", l)
	}
	in.Backoff = 2
	if l := infoLine(in); !strings.Contains(l, "cubic rto:800 backoff:2 rtt:100.000/0.000 mss:1460") {
		t.Errorf("backoff 2: %q", l)
	}
}

// TestInfoLinePacing: the pacing rate in bits a second after the byte
// counters, with the cap after a slash when there is one, as ss -tin
// prints them ("pacing_rate 16000000bps/16000000bps" for a kernel socket
// with SO_MAX_PACING_RATE 2,000,000); none before an RTT sample.
func TestInfoLinePacing(t *testing.T) {
	in := tcp.Info{CongestionControl: "cubic", SndMSS: 1460, PacingRate: 2000000, MaxPacingRate: 2000000}
	if l := infoLine(in); !strings.Contains(l, " bytes_received:0 pacing_rate 16000000bps/16000000bps retrans:0") {
		t.Errorf("capped: %s", l)
	}
	in.MaxPacingRate = math.MaxUint64
	if l := infoLine(in); !strings.Contains(l, " pacing_rate 16000000bps retrans:0") {
		t.Errorf("no cap: %s", l)
	}
	in.PacingRate = 0
	if l := infoLine(in); strings.Contains(l, "pacing_rate") {
		t.Errorf("before an RTT sample: %s", l)
	}
}

// TestInfoLineDeliveryRate: the delivery rate in bits a second after the
// pacing rate, then delivered and app_limited, as ss -tin prints a kernel
// socket's ("pacing_rate 191936230624bps delivery_rate 65483000000bps
// delivered:8", "delivered:1 app_limited"); each left out while it has
// nothing to say.
func TestInfoLineDeliveryRate(t *testing.T) {
	in := tcp.Info{CongestionControl: "cubic", SndMSS: 1460, PacingRate: 2000000, MaxPacingRate: math.MaxUint64,
		DeliveryRate: 1460000, Delivered: 31}
	if l := infoLine(in); !strings.Contains(l, " pacing_rate 16000000bps delivery_rate 11680000bps delivered:31 retrans:0") {
		t.Errorf("a sample: %s", l)
	}
	in.DeliveryRateAppLimited = true
	if l := infoLine(in); !strings.Contains(l, " delivery_rate 11680000bps delivered:31 app_limited retrans:0") {
		t.Errorf("app-limited: %s", l)
	}
	in.DeliveryRate, in.Delivered, in.DeliveryRateAppLimited = 0, 0, false
	if l := infoLine(in); strings.Contains(l, "delivery_rate") || strings.Contains(l, "delivered") || strings.Contains(l, "app_limited") {
		t.Errorf("no sample: %s", l)
	}
}

// TestInfoLineLimits: busy time and what limited it before retrans, and
// after it lost and sacked (in segments), reordering when not 3,
// reord_seen, minrtt in milliseconds to the microsecond, and snd_wnd, as
// ss -tin prints a kernel socket's ("busy:48ms rwnd_limited:48ms(100.0%)
// retrans:0/1 dsack_dups:1 rcv_space:65495 rcv_ssthresh:65495
// minrtt:0.016 snd_wnd:220160").
func TestInfoLineLimits(t *testing.T) {
	in := tcp.Info{CongestionControl: "cubic", SndMSS: 1448, BusyTime: 800 * time.Millisecond,
		RwndLimited: 200 * time.Millisecond, SndbufLimited: 400 * time.Millisecond, Retransmits: 2,
		Lost: 2 * 1448, Sacked: 1449, Reordering: 5, ReorderEvents: 1, MinRTT: 16400 * time.Nanosecond}
	in.TCB.SndWnd = 220160
	want := " busy:800ms rwnd_limited:200ms(25.0%) sndbuf_limited:400ms(50.0%) retrans:2 lost:2 sacked:2 reordering:5 reord_seen:1 minrtt:0.016 snd_wnd:220160"
	if l := infoLine(in); !strings.HasSuffix(l, want) {
		t.Errorf("got  %s\nwant ...%s", l, want)
	}
	in = tcp.Info{CongestionControl: "cubic", SndMSS: 1448, Reordering: 3}
	if l := infoLine(in); !strings.HasSuffix(l, " retrans:0") {
		t.Errorf("nothing to say after retrans: %s", l)
	}
}

// TestInfoLineBBR: a connection under BBR shows its model after the byte
// counters, as ss -tin prints a kernel socket's tcp_bbr_info (ss.c:
// " bbr:(bw:%sbps,mrtt:%g,pacing_gain:%g,cwnd_gain:%g)", the bandwidth
// in bits a second with -n, the min RTT in milliseconds, the gains over
// 256): startup's gains are 739/256.
func TestInfoLineBBR(t *testing.T) {
	in := tcp.Info{CongestionControl: "bbr", SndMSS: 1448, BytesSent: 10, PacingRate: 4924820, MaxPacingRate: math.MaxUint64,
		BBR: &tcp.BBRInfo{Mode: "startup", Bandwidth: 4974566, MinRTT: 10698724 * time.Nanosecond, PacingGain: 739.0 / 256, CwndGain: 739.0 / 256}}
	want := "bbr wscale:0,0"
	l := infoLine(in)
	if !strings.Contains(l, " bytes_received:0 bbr:(bw:39796528bps,mrtt:10.698,pacing_gain:2.88672,cwnd_gain:2.88672) pacing_rate 39398560bps") {
		t.Errorf("a BBR connection: %s", l)
	}
	if !strings.Contains(l, want) {
		t.Errorf("the congestion control's name: %s", l)
	}
	in.BBR = nil
	if l := infoLine(in); strings.Contains(l, "bbr:(") {
		t.Errorf("no model, no bbr:(...): %s", l)
	}
}

// TestSSListenerBacklog: ss -tln prints a listener's Send-Q as the
// backlog it was given (inet_diag's idiag_wqueue is sk_max_ack_backlog),
// 4 for listen(fd, 4), though the accept queue holds one more
// (sk_acceptq_is_full compares with ">"); its Recv-Q is the accept
// queue's length.
func TestSSListenerBacklog(t *testing.T) {
	s := stack.New(stack.Options{})
	defer s.Close()
	if _, err := s.TCP().Listen(netip.MustParseAddrPort("0.0.0.0:80"), 4); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	writeSS(&b, []namedStack{{"server", s}})
	if !regexp.MustCompile(`(?m)^LISTEN\s+0\s+4\s+\*:80\s+\*:\*\s+stack:\("server"\)$`).MatchString(b.String()) {
		t.Errorf("a listener of backlog 4:\n%s", b.String())
	}
}
