package pktscript

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestSysctl: each setting maps to the engine's options, is taken as what
// tapstack does anyway, or skips the script naming it.
func TestSysctl(t *testing.T) {
	for _, tc := range []struct {
		cmd   string
		check func(s settings) bool
		skip  string // "" for taken
	}{
		{"sysctl -q net.ipv4.tcp_timestamps=0", func(s settings) bool { return s.noTimestamps }, ""},
		{"sysctl -q net.ipv4.tcp_sack=0 net.ipv4.tcp_syncookies=0", func(s settings) bool { return s.noSACK && s.noSynCookies }, ""},
		{"sysctl -q net/ipv4/tcp_synack_retries=3", func(s settings) bool { return s.synAckRetries == 3 }, ""},
		{"sysctl -w net.ipv4.tcp_retries2=8 net.ipv4.tcp_orphan_retries=2 net.ipv4.tcp_syn_retries=4",
			func(s settings) bool { return s.maxRetries == 8 && s.orphanRetries == 2 && s.synRetries == 4 }, ""},
		{`sysctl -q net.ipv4.tcp_rmem="4096 540000 $((15*1024*1024))"`, func(s settings) bool { return s.receiveBuffer == 15<<20 }, ""},
		{`sysctl -q net.ipv4.tcp_wmem="4096 $((256*1024)) 4194304"`, func(s settings) bool { return s.sendBuffer == 4194304 }, ""},
		{"sysctl -q net.ipv4.tcp_congestion_control=reno", func(s settings) bool { return s.congestionControl == "reno" }, ""},
		{"sysctl -q net.ipv4.tcp_congestion_control=cubic", func(s settings) bool {
			return s.congestionControl == "cubic" && s.hystart == tcp.HyStartLinux // Linux's HyStart without being asked
		}, ""},
		{"sysctl -q net.ipv4.tcp_early_retrans=0 net.ipv4.tcp_recovery=0", func(s settings) bool { return s.noRACK && !s.noTLP && s.check() == nil }, ""},
		{"sysctl -q net.ipv4.tcp_early_retrans=0", func(s settings) bool { return !s.noRACK && s.noTLP && s.check() == nil }, ""},
		{"sysctl -q net.ipv4.tcp_early_retrans=2", func(s settings) bool { return !s.noRACK && s.noTLP && s.check() == nil }, ""},
		{"sysctl -q net.ipv4.tcp_recovery=0", func(s settings) bool { return s.check() != nil }, ""},
		{"sysctl -q net.ipv4.tcp_recovery=0 net.ipv4.tcp_early_retrans=3", func(s settings) bool { return s.check() != nil }, ""},
		{"sysctl -q net.ipv4.tcp_frto=0", func(s settings) bool { return s.noFRTO }, ""},
		{"sysctl -q net.ipv4.tcp_slow_start_after_idle=0", func(s settings) bool { return s.noSlowStartAfterIdle }, ""},
		{"sysctl -q net.ipv4.tcp_slow_start_after_idle=1", func(s settings) bool { return !s.noSlowStartAfterIdle }, ""},
		{"sysctl -q net.ipv4.tcp_min_tso_segs=10", func(s settings) bool { return s.minGSOSegments == 10 }, ""},
		{"sysctl -q net.ipv4.tcp_abort_on_overflow=1 net.ipv4.tcp_max_syn_backlog=8", func(s settings) bool { return s.abortOnOverflow && s.synQueueLimit == 8 }, ""},
		{"sysctl -q net.ipv4.tcp_rfc1337=1", func(s settings) bool { return s.rfc1337 }, ""},
		{"sysctl -q net.ipv4.tcp_fin_timeout=5 net.ipv4.tcp_invalid_ratelimit=0", func(s settings) bool {
			return s.finTimeout == 5*time.Second && s.invalidRateLimit < 0
		}, ""},
		{"../common/set_sysctls.py /proc/sys/net/ipv4/tcp_timestamps=0 \\\n /proc/sys/net/ipv4/tcp_min_tso_segs=10", func(s settings) bool { return s.noTimestamps }, ""},
		{"sysctl -q net.ipv4.tcp_ecn=0 net.ipv4.tcp_fack=0 net.ipv4.tcp_reordering=3 net.ipv4.tcp_dsack=1", nil, ""},
		{"ip tcp_metrics flush all > /dev/null 2>&1", nil, ""},
		{"tc qdisc add dev tun0 root pfifo; tc qdisc delete dev tun0 root 2>/dev/null", nil, ""},
		{"ethtool -K tun0 tso off gso off", nil, ""},
		{"echo 3 > /sys/module/tcp_cubic/parameters/hystart_detect", func(s settings) bool { return s.hystart == tcp.HyStartLinux }, ""},
		{"echo 0 > /sys/module/tcp_cubic/parameters/hystart_detect", func(s settings) bool { return s.hystart == tcp.HyStartOff }, ""},
		{"/tmp/sysctl_restore_${PPID}.sh", nil, ""},
		{"sysctl -q net.ipv4.tcp_ecn=1", func(s settings) bool { return s.ecn == tcp.ECNOn }, ""},
		{"sysctl -q net.ipv4.tcp_ecn=2", func(s settings) bool { return s.ecn == tcp.ECNPassive }, ""},
		{"sysctl -q net.ipv4.tcp_ecn=0", func(s settings) bool { return s.ecn == tcp.ECNOff }, ""},
		{"sysctl -q net.ipv4.tcp_ecn=3", nil, "net.ipv4.tcp_ecn=3 (Accurate ECN)"},
		{"sysctl -q net.ipv4.tcp_mtu_probing=2", func(s settings) bool { return s.mtuProbing == tcp.MTUProbingOn }, ""},
		{"sysctl -q net.ipv4.tcp_mtu_probing=1 net.ipv4.tcp_base_mss=512", func(s settings) bool {
			return s.mtuProbing == tcp.MTUProbingBlackHole && s.baseMSS == 512
		}, ""},
		{"sysctl -q net.ipv4.tcp_mtu_probing=3", nil, "net.ipv4.tcp_mtu_probing=3"},
		{"sysctl -q net.ipv4.tcp_reordering=10", nil, "net.ipv4.tcp_reordering=10"},
		{"sysctl -q net.core.somaxconn=10", nil, "net.core.somaxconn=10 (no such setting in tapstack)"},
		{"sysctl -q net.ipv4.tcp_syn_retries=0", nil, "net.ipv4.tcp_syn_retries=0"},
		{"tc qdisc replace dev tun0 root fq", func(s settings) bool { return s.pacing }, ""},
		{"tc qdisc add dev tun0 root fq_codel", nil, "fq_codel (tc qdisc add dev tun0 root fq_codel)"},
		{"tc qdisc add dev tun0 root pfifo limit 0", func(s settings) bool { return s.dropAll }, ""},
		{"tc qdisc delete dev tun0 root 2>/dev/null ; tc qdisc add dev tun0 root pfifo limit 0", func(s settings) bool { return s.dropAll }, ""},
		{"tc qdisc add dev tun0 root pfifo limit 0; tc qdisc delete dev tun0 root", func(s settings) bool { return !s.dropAll }, ""},
		{"tc qdisc add dev tun0 root pfifo limit 0; tc qdisc replace dev tun0 root pfifo limit 100", func(s settings) bool { return !s.dropAll }, ""},
		{"tc qdisc add dev tun0 root netem loss 1%", nil, "netem"},
		{"ip route change 192.0.2.1 via 192.168.0.2 dev tun0 advmss 600 mtu lock 640 initcwnd 11", func(s settings) bool {
			return s.route4 == tcp.RouteMetrics{MTU: 640, LockMTU: true, AdvMSS: 600, InitCwnd: 11} && s.route6 == tcp.RouteMetrics{}
		}, ""},
		{"ip -6 route change 2001:DB8::1 via fd3d:fa7b:d17d:8888::0 dev tun0 advmss 1480 mtu lock 1520", func(s settings) bool {
			return s.route6 == tcp.RouteMetrics{MTU: 1500, LockMTU: true, AdvMSS: 1480} // the runner's link: 1500
		}, ""},
		{"ip route add 192.0.2.1/32 mtu 1000", func(s settings) bool { return s.route4 == tcp.RouteMetrics{MTU: 1000} }, ""},
		{"ip route change 198.51.100.7 dev tun0 mtu 1000", nil, "a route to other than the script's remote address"},
		{"ip -6 route change 192.0.2.1 dev tun0 mtu 1000", nil, "a route to other than the script's remote address"},
		{"ip route change 192.0.2.1 dev tun0 rto_min 50ms", func(s settings) bool { return s.route4 == tcp.RouteMetrics{RTOMin: 50 * time.Millisecond} }, ""},
		{"ip route change 192.0.2.1 dev tun0 quickack 1", func(s settings) bool { return s.route4 == tcp.RouteMetrics{QuickAck: true} }, ""},
		{"ip route change 192.0.2.1 dev tun0 hoplimit 20", nil, `route metric "hoplimit": tapstack has`},
		{"ip route change 192.0.2.1 dev tun0 initcwnd ten", nil, `route metric initcwnd "ten": want a number`},
		{"ip route change 192.0.2.1 dev tun0 mtu", nil, `route metric mtu without a value`},
		{"ip route del 192.0.2.1", nil, "ip route del"},
		{"ip link set tun0 mtu 9000", nil, "ip command"},
		{"ethtool -K tun0 tso on", nil, "TSO/GSO offload"},
		{"echo 2 > /sys/module/tcp_cubic/parameters/hystart_detect", nil, "/sys/module/tcp_cubic/parameters/hystart_detect=2"},
		{"echo 1 > /sys/module/tcp_cubic/parameters/hystart_detect", nil, "/sys/module/tcp_cubic/parameters/hystart_detect=1"},
		{"echo 0 > /sys/module/tcp_cubic/parameters/hystart", nil, "/sys/module/tcp_cubic/parameters/hystart=0"},
		{"rm -rf /", nil, "shell command: rm -rf /"},
		{"./nosuch/defaults.sh", nil, "./nosuch/defaults.sh ("},
	} {
		s := defaultSettings()
		skip := s.runCommand(tc.cmd, t.TempDir(), 0)
		switch {
		case tc.skip == "" && skip != nil:
			t.Errorf("%q: %v", tc.cmd, skip)
		case tc.skip != "" && (skip == nil || !strings.Contains(skip.Error(), "needs "+tc.skip)):
			t.Errorf("%q: skip %v, want one naming %q", tc.cmd, skip, tc.skip)
		case tc.skip == "" && tc.check != nil && !tc.check(s):
			t.Errorf("%q: settings %+v", tc.cmd, s)
		}
	}
}

// TestDefaultsSh: a defaults.sh is followed from the script's directory,
// and sourcing scripts is bounded.
func TestDefaultsSh(t *testing.T) {
	dir := t.TempDir()
	common := filepath.Join(dir, "common")
	if err := os.Mkdir(common, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(common, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("defaults.sh", "#!/bin/bash\n# comment\nsysctl -q net.ipv4.tcp_sack=0\n\n./more.sh\n")
	write("more.sh", "sysctl -q net.ipv4.tcp_timestamps=0  # trailing comment\n")
	write("loop.sh", "./loop.sh\n")
	s := defaultSettings()
	if skip := s.runCommand("../common/defaults.sh", filepath.Join(dir, "topic"), 0); skip != nil {
		t.Fatal(skip)
	}
	if !s.noSACK || !s.noTimestamps {
		t.Errorf("settings %+v, want SACK and timestamps off", s)
	}
	if skip := s.runCommand("./loop.sh", common, 0); skip == nil || !strings.Contains(skip.Error(), "nested deeper") {
		t.Errorf("a script sourcing itself: %v", skip)
	}
}

// TestUpstreamDefaults: the defaults.sh the upstream scripts use maps
// without a skip.
func TestUpstreamDefaults(t *testing.T) {
	dir := upstreamDir(t)
	s := defaultSettings()
	if skip := s.runCommand("../common/defaults.sh", filepath.Join(dir, "tcp", "blocking"), 0); skip != nil {
		t.Fatal(skip)
	}
	if skip := s.check(); skip != nil {
		t.Fatal(skip)
	}
	if s.noSACK || s.noTimestamps || s.noSynCookies || s.noRACK || s.synRetries != 5 || s.receiveBuffer != 15<<20 {
		t.Errorf("settings %+v", s)
	}
}
