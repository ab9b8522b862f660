package pktscript

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// settings is what a script's shell commands set up: the engine's
// configuration, in this package's own terms (engine.go turns it into the
// engine's options). Zero values mean the engine's default.
type settings struct {
	noTimestamps, noSACK, noSynCookies, noRACK, noTLP, noFRTO bool
	noSlowStartAfterIdle                                      bool
	ecn                                                       tcp.ECNMode
	mtuProbing                                                tcp.MTUProbing
	minGSOSegments, baseMSS                                   int
	abortOnOverflow, rfc1337                                  bool

	// dropAll: a qdisc that holds nothing (pfifo limit 0) sits on the
	// link, which then refuses every packet the stack writes, as Linux's
	// qdisc answers NET_XMIT_DROP. The one setting a script may change
	// while the stack runs.
	dropAll bool

	// route4 and route6 are the metrics of the routes to the peer
	// (`ip route change ... mtu lock 640 advmss 600 initcwnd 11`), which
	// a script may also change while the stack runs.
	route4, route6 tcp.RouteMetrics

	// pacing: the fq qdisc sits on the link; tapstack paces as TCP does
	// internally (Options.Pacing), which fq's per-flow quantum and credit
	// refine.
	pacing bool

	congestionControl string
	// hystart: how CUBIC leaves slow start; Linux's HyStart by default,
	// since the scripts are Linux's tests (tcp_cubic's hystart_detect).
	hystart tcp.HyStartMode

	synRetries, synAckRetries, maxRetries, orphanRetries int

	sendBuffer, receiveBuffer int

	finTimeout       time.Duration
	invalidRateLimit time.Duration
	minRTO           time.Duration

	synQueueLimit, maxTimeWait, maxOrphans, challengeAckLimit int

	// Keepalive defaults for SO_KEEPALIVE (Linux tcp_keepalive_*).
	keepIdle, keepIntvl time.Duration
	keepCount           int

	// Applied lists every setting taken, for -v: "net.ipv4.tcp_sack=1:
	// SACK on (the default)".
	applied []string

	// rack and tlp follow tcp_recovery and tcp_early_retrans: RACK-TLP,
	// RACK alone (Options.NoTLP) or neither (Options.NoRACK); tapstack
	// has no tail loss probe without RACK.
	rack, tlp bool
}

func defaultSettings() settings {
	return settings{rack: true, tlp: true, hystart: tcp.HyStartLinux}
}

// skipError says a script needs something tapstack does not have; it ends
// the run as skipped, naming what.
type skipError struct{ need string }

func (e *skipError) Error() string { return "needs " + e.need }

func needs(format string, args ...any) *skipError {
	return &skipError{fmt.Sprintf(format, args...)}
}

// maxCommandDepth bounds scripts sourcing scripts (defaults.sh).
const maxCommandDepth = 4

// runCommand interprets a backquoted shell command of a script: the
// defaults.sh it sources, sysctl and set_sysctls.py settings, and the few
// ip, tc and ethtool lines the upstream scripts use. dir is the script's
// directory, against which relative paths resolve.
func (s *settings) runCommand(cmd, dir string, depth int) *skipError {
	if depth > maxCommandDepth {
		return needs("shell scripts nested deeper than %d", maxCommandDepth)
	}
	// Line continuations, then one simple command per line or ';'.
	cmd = strings.ReplaceAll(cmd, "\\\n", " ")
	for _, line := range strings.Split(cmd, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			line = line[:i]
		}
		for _, simple := range splitOutsideQuotes(line, ';') {
			if skip := s.runSimple(simple, dir, depth); skip != nil {
				return skip
			}
		}
	}
	return nil
}

// splitOutsideQuotes splits s at sep where sep is not quoted.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	var q byte
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// shellWords splits a simple command into words, removing quotes and
// expanding $((arithmetic)). Redirections are returned apart: the target
// of ">" and whether any other redirection (2>&1, 2>/dev/null) was seen.
func shellWords(s string) (words []string, redirect string, err error) {
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			flush()
		case c == '"' || c == '\'':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, "", fmt.Errorf("unterminated quote")
			}
			v := s[i+1 : i+1+j]
			if c == '"' {
				if v, err = expandArith(v); err != nil {
					return nil, "", err
				}
			}
			cur.WriteString(v)
			inWord = true
			i += j + 1
		case strings.HasPrefix(s[i:], "$(("):
			j := strings.Index(s[i:], "))")
			if j < 0 {
				return nil, "", fmt.Errorf("unterminated $((")
			}
			v, err := expandArith(s[i : i+j+2])
			if err != nil {
				return nil, "", err
			}
			cur.WriteString(v)
			inWord = true
			i += j + 1
		case c == '>' || (c >= '0' && c <= '9' && i+1 < len(s) && s[i+1] == '>' && !inWord):
			// [n]>target, [n]>&m
			flush()
			if c != '>' {
				i++
			}
			i++
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' {
				j++
			}
			target := s[i:j]
			if c == '>' && !strings.HasPrefix(target, "&") && target != "/dev/null" {
				redirect = target
			}
			i = j - 1
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, redirect, nil
}

// expandArith replaces every $((a*b+c)) in s by its value: integer +, -, *
// and / over decimal numbers, as defaults.sh uses for buffer sizes.
func expandArith(s string) (string, error) {
	for range 16 {
		i := strings.Index(s, "$((")
		if i < 0 {
			return s, nil
		}
		j := strings.Index(s[i:], "))")
		if j < 0 {
			return "", fmt.Errorf("unterminated $((")
		}
		v, err := arith(s[i+3 : i+j])
		if err != nil {
			return "", err
		}
		s = s[:i] + strconv.FormatInt(v, 10) + s[i+j+2:]
	}
	return "", fmt.Errorf("too many $(( ))")
}

// arith evaluates sums of products of integers, left to right.
func arith(s string) (int64, error) {
	s = strings.ReplaceAll(s, " ", "")
	var sum int64
	for _, term := range splitKeep(s, "+-") {
		sign := int64(1)
		switch {
		case strings.HasPrefix(term, "-"):
			sign, term = -1, term[1:]
		case strings.HasPrefix(term, "+"):
			term = term[1:]
		}
		prod := int64(1)
		op := byte('*')
		for _, f := range splitKeep(term, "*/") {
			if f[0] == '*' || f[0] == '/' {
				op, f = f[0], f[1:]
			}
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad arithmetic %q", s)
			}
			if op == '/' {
				if n == 0 {
					return 0, fmt.Errorf("division by zero in %q", s)
				}
				prod /= n
			} else {
				prod *= n
			}
		}
		sum += sign * prod
	}
	return sum, nil
}

// splitKeep splits s before each byte of seps (after the first byte).
func splitKeep(s, seps string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if strings.IndexByte(seps, s[i]) >= 0 {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

func (s *settings) runSimple(line, dir string, depth int) *skipError {
	words, redirect, err := shellWords(line)
	if err != nil {
		return needs("a shell command it could not read (%v): %s", err, strings.TrimSpace(line))
	}
	if len(words) == 0 {
		return nil
	}
	name := filepath.Base(words[0])
	switch {
	case strings.HasSuffix(words[0], ".sh") && strings.HasPrefix(name, "sysctl_restore_"):
		return nil // restores what set_sysctls.py changed: our stack is thrown away
	case strings.HasSuffix(words[0], ".sh"):
		path := words[0]
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return needs("%s (%v)", words[0], err)
		}
		return s.runCommand(string(b), filepath.Dir(path), depth+1)
	case name == "set_sysctls.py":
		for _, a := range words[1:] {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				return needs("a set_sysctls.py argument of the form file=value: %s", a)
			}
			if skip := s.sysctl(k, v); skip != nil {
				return skip
			}
		}
		return nil
	case name == "sysctl":
		for _, a := range words[1:] {
			if strings.HasPrefix(a, "-") {
				continue // -q, -e, -w
			}
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				return needs("sysctl to read %s", a)
			}
			if skip := s.sysctl(k, v); skip != nil {
				return skip
			}
		}
		return nil
	case name == "echo" && redirect != "":
		return s.sysctl(redirect, strings.Join(words[1:], " "))
	case name == "ip":
		return s.ipCommand(words, line)
	case name == "tc":
		return s.tcCommand(words, line)
	case name == "ethtool":
		// tapstack makes every segment itself, at most one MSS: there is
		// no TSO or GSO to turn off.
		for _, w := range words {
			if w == "on" {
				return needs("TSO/GSO offload (%s)", strings.TrimSpace(line))
			}
		}
		s.note("%s: tapstack never offloads segmentation", strings.TrimSpace(line))
		return nil
	case name == "true" || name == ":":
		return nil
	}
	return needs("shell command: %s", strings.TrimSpace(line))
}

func (s *settings) note(format string, args ...any) {
	s.applied = append(s.applied, fmt.Sprintf(format, args...))
}

func (s *settings) ipCommand(words []string, line string) *skipError {
	line = strings.TrimSpace(line)
	args := words[1:]
	family := 0 // 4 or 6; 0 until the destination says
	if len(args) > 0 && (args[0] == "-4" || args[0] == "-6") {
		family = int(args[0][1] - '0')
		args = args[1:]
	}
	if len(args) >= 1 && args[0] == "tcp_metrics" {
		s.note("ip tcp_metrics: tapstack keeps no per-destination metrics")
		return nil
	}
	if len(args) < 3 || args[0] != "route" {
		return needs("ip command (%s)", line)
	}
	return s.ipRoute(family, args[1], args[2:], line)
}

// Packetdrill's remote addresses (its --remote_ip defaults), which its
// tun device routes via the gateway: the runner's peer addresses.
var (
	scriptRemote4 = netip.MustParseAddr("192.0.2.1")
	scriptRemote6 = netip.MustParseAddr("2001:db8::1")
)

// ipRoute takes `ip route add|change|replace REMOTE [via GW] [dev DEV]
// [mtu [lock] N] [advmss N] [initcwnd N]`: the route to the script's
// remote address with Linux's route metrics, which the runner gives the
// route to its peer (stack.SetRouteMetrics). Packetdrill routes the remote
// address through a gateway on its tun device; the runner's peer is on
// the link, so via and dev change nothing.
func (s *settings) ipRoute(family int, verb string, args []string, line string) *skipError {
	switch verb {
	case "add", "change", "replace":
	default:
		return needs("ip route %s (%s)", verb, line)
	}
	dst, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimSuffix(args[0], "/32"), "/128"))
	if err != nil || (dst != scriptRemote4 && dst != scriptRemote6) || (family == 4 && !dst.Is4()) || (family == 6 && dst.Is4()) {
		return needs("a route to other than the script's remote address (%s)", line)
	}
	// via and dev name packetdrill's gateway and tun device: the
	// runner's peer is on its one link. The rest are the metrics.
	var metrics []string
	for i := 1; i < len(args); i++ {
		if (args[i] == "via" || args[i] == "dev") && i+1 < len(args) {
			i++
			continue
		}
		metrics = append(metrics, args[i])
	}
	m, err := tcp.ParseRouteMetrics(strings.Join(metrics, " "))
	if err != nil {
		return needs("%v (%s)", err, line)
	}
	clamped := ""
	if m.MTU > tcptest.MTU {
		// Linux takes a route MTU above the device's (the upstream
		// IPv6 mtu_probe test sets 1520 on its tun); tapstack refuses
		// one its link cannot carry.
		clamped = fmt.Sprintf(" (the runner's link carries %d: MTU %d taken as %d)", tcptest.MTU, m.MTU, tcptest.MTU)
		m.MTU = tcptest.MTU
	}
	if dst.Is4() {
		s.route4 = m
	} else {
		s.route6 = m
	}
	s.note("%s: the route to the peer gets %q%s", line, m.String(), clamped)
	return nil
}

// tcCommand takes the qdiscs that change nothing for a stack that neither
// paces nor queues below TCP (pfifo with room, and removing a qdisc) and
// pfifo with no room at all, which makes the link refuse every packet
// (dropAll).
func (s *settings) tcCommand(words []string, line string) *skipError {
	line = strings.TrimSpace(line)
	if len(words) < 3 || words[1] != "qdisc" {
		return needs("traffic control (%s)", line)
	}
	switch words[2] {
	case "del", "delete":
		if s.dropAll {
			s.note("%s: the link takes packets again", line)
		}
		s.dropAll = false
		return nil
	case "add", "replace", "change":
	default:
		return needs("traffic control (%s)", line)
	}
	full := false
	for i, w := range words {
		switch w {
		case "fq":
			s.pacing = true
			s.note("%s: Options.Pacing, TCP's internal pacing (fq's per-flow quantum and credit are not modelled)", line)
			return nil
		case "fq_codel":
			return needs("%s (%s)", w, line)
		case "limit":
			full = i+1 < len(words) && words[i+1] == "0"
		case "netem":
			return needs("netem (%s)", line)
		}
	}
	if !contains(words, "pfifo") {
		return needs("traffic control (%s)", line)
	}
	s.dropAll = full
	if full {
		s.note("%s: the link refuses every packet (tcpip.ErrNoBufferSpace), as the qdisc drops it (NET_XMIT_DROP)", line)
		return nil
	}
	s.note("%s: tapstack's link neither paces nor drops", line)
	return nil
}

func contains(ws []string, w string) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}

// sysctl applies one setting. key is a sysctl name (net.ipv4.tcp_sack or
// net/ipv4/tcp_sack) or a /proc/sys or /sys/module path.
func (s *settings) sysctl(key, value string) *skipError {
	key = strings.TrimSpace(key)
	value = strings.TrimSpace(strings.Trim(strings.TrimSpace(value), `"'`))
	if strings.HasPrefix(key, "/sys/module/") {
		return s.moduleParam(key, value)
	}
	key = strings.TrimPrefix(key, "/proc/sys/")
	key = strings.ReplaceAll(key, "/", ".")
	setting := key + "=" + value
	name, ok := strings.CutPrefix(key, "net.ipv4.")
	if !ok {
		return needs("%s (no such setting in tapstack)", setting)
	}
	num := func() (int64, bool) {
		n, err := strconv.ParseInt(value, 0, 64)
		return n, err == nil
	}
	onOff := func() (on bool, ok bool) {
		switch value {
		case "0":
			return false, true
		case "1":
			return true, true
		}
		return false, false
	}
	took := func(what string) *skipError {
		s.note("%s: %s", setting, what)
		return nil
	}
	// flag sets a switch of the engine's options, 0 or 1.
	flag := func(dst *bool, what string) *skipError {
		on, ok := onOff()
		if !ok {
			return needs("%s", setting)
		}
		*dst = on
		return took(what)
	}
	count := func(dst *int, what string) *skipError {
		n, ok := num()
		if !ok || n < 0 || n > 1<<30 {
			return needs("%s (not a count)", setting)
		}
		*dst = int(n)
		if n == 0 {
			// The engine reads 0 as its default; a count of 0 has no
			// meaning it can express.
			return needs("%s (0 is the engine's default, not none)", setting)
		}
		return took(what)
	}
	switch name {
	case "tcp_timestamps":
		on, ok := onOff()
		if !ok {
			return needs("%s (timestamps without random offsets)", setting)
		}
		s.noTimestamps = !on
		return took("Options.NoTimestamps")
	case "tcp_sack":
		on, ok := onOff()
		if !ok {
			return needs("%s", setting)
		}
		s.noSACK = !on
		return took("Options.NoSACK")
	case "tcp_dsack":
		if value != "1" {
			return needs("%s (tapstack always reports and uses D-SACK)", setting)
		}
		return took("D-SACK on, as always in tapstack")
	case "tcp_fack":
		if value != "0" {
			return needs("%s (FACK)", setting)
		}
		return took("no FACK, as tapstack")
	case "tcp_reordering":
		if value != "3" {
			return needs("%s (tapstack's DupThresh is 3)", setting)
		}
		return took("DupThresh 3, as tapstack")
	case "tcp_syncookies":
		switch value {
		case "0":
			s.noSynCookies = true
		case "1":
			s.noSynCookies = false
		default:
			return needs("%s (cookies for every SYN)", setting)
		}
		return took("Options.NoSynCookies")
	case "tcp_syn_retries":
		return count(&s.synRetries, "Options.SynRetries")
	case "tcp_synack_retries":
		return count(&s.synAckRetries, "Options.SynAckRetries")
	case "tcp_retries2":
		return count(&s.maxRetries, "Options.MaxRetries")
	case "tcp_orphan_retries":
		return count(&s.orphanRetries, "Options.OrphanRetries")
	case "tcp_max_syn_backlog":
		return count(&s.synQueueLimit, "Options.SynQueueLimit")
	case "tcp_max_tw_buckets":
		return count(&s.maxTimeWait, "Options.MaxTimeWait")
	case "tcp_max_orphans":
		return count(&s.maxOrphans, "Options.MaxOrphans")
	case "tcp_challenge_ack_limit":
		return count(&s.challengeAckLimit, "Options.ChallengeAckLimit")
	case "tcp_abort_on_overflow":
		return flag(&s.abortOnOverflow, "Options.AbortOnOverflow")
	case "tcp_rfc1337":
		return flag(&s.rfc1337, "Options.RFC1337")
	case "tcp_fin_timeout":
		n, ok := num()
		if !ok || n <= 0 {
			return needs("%s", setting)
		}
		s.finTimeout = time.Duration(n) * time.Second
		return took("Options.FinWait2Timeout")
	case "tcp_invalid_ratelimit":
		n, ok := num()
		if !ok || n < 0 {
			return needs("%s", setting)
		}
		s.invalidRateLimit = time.Duration(n) * time.Millisecond
		if n == 0 {
			s.invalidRateLimit = -1 // the engine's "off"
		}
		return took("Options.InvalidRateLimit")
	case "tcp_rto_min_us":
		n, ok := num()
		if !ok || n <= 0 {
			return needs("%s", setting)
		}
		s.minRTO = time.Duration(n) * time.Microsecond
		return took("Options.MinRTO")
	case "tcp_keepalive_time":
		n, ok := num()
		if !ok || n <= 0 {
			return needs("%s", setting)
		}
		s.keepIdle = time.Duration(n) * time.Second
		return took("SO_KEEPALIVE idle time")
	case "tcp_keepalive_intvl":
		n, ok := num()
		if !ok || n <= 0 {
			return needs("%s", setting)
		}
		s.keepIntvl = time.Duration(n) * time.Second
		return took("SO_KEEPALIVE interval")
	case "tcp_keepalive_probes":
		return count(&s.keepCount, "SO_KEEPALIVE probes")
	case "tcp_congestion_control":
		if slices.Contains(tcp.CongestionControls(), value) {
			s.congestionControl = value
			return took("Options.CongestionControl")
		}
		return needs("%s (tapstack has %s)", setting, strings.Join(tcp.CongestionControls(), ", "))
	case "tcp_frto":
		// Linux since 4.10 reads any non-zero value as F-RTO on.
		n, ok := num()
		if !ok || n < 0 {
			return needs("%s", setting)
		}
		s.noFRTO = n == 0
		return took("Options.NoFRTO")
	case "tcp_recovery":
		n, ok := num()
		if !ok || n < 0 {
			return needs("%s", setting)
		}
		s.rack = n&1 != 0
		return s.rackTLP(setting)
	case "tcp_early_retrans":
		n, ok := num()
		if !ok || n < 0 || n > 4 {
			return needs("%s", setting)
		}
		s.tlp = n >= 3 // Linux: 3 and 4 enable the tail loss probe
		return s.rackTLP(setting)
	case "tcp_slow_start_after_idle":
		n, ok := num()
		if !ok || n < 0 {
			return needs("%s", setting)
		}
		s.noSlowStartAfterIdle = n == 0
		return took("Options.NoSlowStartAfterIdle")
	case "tcp_ecn":
		// Linux's 0, 1 and 2 are ECNOff, ECNOn and ECNPassive; 3 and
		// up ask for Accurate ECN, which tapstack has not.
		m, ok := linuxMode(value, tcp.ECNOff, tcp.ECNOn, tcp.ECNPassive)
		if !ok {
			return needs("%s (Accurate ECN)", setting)
		}
		s.ecn = m
		return took("Options.ECN " + s.ecn.String())
	case "tcp_ecn_fallback":
		if value != "1" {
			return needs("%s (tapstack always sends a SYN again without ECN)", setting)
		}
		return took("a SYN sent again asks for no ECN, as tapstack")
	case "tcp_ecn_option":
		return took("moot without Accurate ECN")
	case "tcp_rmem", "tcp_wmem":
		f := strings.Fields(value)
		if len(f) != 3 {
			return needs("%s (three sizes)", setting)
		}
		max, err := strconv.Atoi(f[2])
		if err != nil || max <= 0 {
			return needs("%s (three sizes)", setting)
		}
		// Linux autotunes each buffer up to the maximum, and scales
		// its window by the maximum (tcp_select_initial_window): the
		// engine's fixed buffer takes the maximum.
		if name == "tcp_rmem" {
			s.receiveBuffer = max
			return took("Options.ReceiveBufferSize (the maximum)")
		}
		s.sendBuffer = max
		return took("Options.SendBufferSize (the maximum)")
	case "tcp_window_scaling":
		if value != "1" {
			return needs("%s (window scaling off)", setting)
		}
		return took("window scaling on, as always in tapstack")
	case "tcp_mtu_probing":
		m, ok := linuxMode(value, tcp.MTUProbingOff, tcp.MTUProbingBlackHole, tcp.MTUProbingOn)
		if !ok {
			return needs("%s", setting)
		}
		s.mtuProbing = m
		return took("Options.MTUProbing")
	case "tcp_base_mss":
		skip := count(&s.baseMSS, "Options.BaseMSS")
		s.baseMSS = min(s.baseMSS, 65535)
		return skip
	case "tcp_notsent_lowat":
		if n, ok := num(); !ok || n != 4294967295 {
			return needs("%s (TCP_NOTSENT_LOWAT)", setting)
		}
		return took("no not-sent low-water mark, as tapstack")
	case "tcp_min_tso_segs":
		n, ok := num()
		if !ok || n <= 0 {
			return needs("%s", setting)
		}
		s.minGSOSegments = int(min(n, 64))
		return took("Options.MinGSOSegments")
	case "tcp_tso_win_divisor", "tcp_limit_output_bytes", "tcp_autocorking",
		"tcp_pacing_ss_ratio", "tcp_pacing_ca_ratio", "tcp_moderate_rcvbuf",
		"tcp_no_metrics_save", "tcp_fastopen", "tcp_fastopen_key":
		// TSO sizing and deferral, TCP small queues, pacing ratios
		// (effective only under fq), buffer autotuning, the metrics
		// cache and Fast Open (a script using it is refused by its
		// packets or calls): mechanisms tapstack lacks, moot here.
		return took("moot for tapstack")
	}
	return needs("%s (no such setting in tapstack)", setting)
}

// rackTLP maps tcp_recovery and tcp_early_retrans, as they stand, to
// Options.NoRACK and NoTLP.
func (s *settings) rackTLP(setting string) *skipError {
	s.noRACK = !s.rack && !s.tlp
	s.noTLP = s.rack && !s.tlp
	if !s.rack && s.tlp {
		// Settled when the other half comes.
		s.note("%s: RACK off, tail loss probe on: not in tapstack unless tcp_early_retrans follows", setting)
		return nil
	}
	s.note("%s: Options.NoRACK=%v, NoTLP=%v", setting, s.noRACK, s.noTLP)
	return nil
}

// check reports settings that were left half way (a tail loss probe
// without RACK).
func (s *settings) check() *skipError {
	if s.tlp && !s.rack {
		return needs("a tail loss probe without RACK (tcp_recovery=0, tcp_early_retrans >= 3)")
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// moduleParam takes /sys/module/tcp_cubic/parameters/... settings.
func (s *settings) moduleParam(path, value string) *skipError {
	setting := path + "=" + value
	if path == "/sys/module/tcp_cubic/parameters/hystart_detect" {
		// 3 is Linux's default, ACK trains and delay both, which
		// the runner gives CUBIC anyway; 0 is neither. 1 and 2, one
		// of them alone, tapstack does not have.
		switch value {
		case "3":
			s.hystart = tcp.HyStartLinux
			s.note("%s: Options.HyStart=HyStartLinux (Linux's HyStart, ACK train and delay; the default here)", setting)
			return nil
		case "0":
			s.hystart = tcp.HyStartOff
			s.note("%s: Options.HyStart=HyStartOff (slow start until ssthresh or a loss)", setting)
			return nil
		}
	}
	return needs("%s (no such setting in tapstack)", setting)
}

// linuxMode reads a sysctl whose values 0, 1, 2, ... name modes, in
// order (tcp_ecn, tcp_mtu_probing).
func linuxMode[T any](value string, modes ...T) (T, bool) {
	if n, err := strconv.Atoi(value); err == nil && n >= 0 && n < len(modes) {
		return modes[n], true
	}
	var zero T
	return zero, false
}
