package main

import (
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// Flags shared by the subcommands that run a stack.

// probability is a flag.Value for a probability written as tc-netem
// writes one ("5%") or as a fraction ("0.05").
type probability struct {
	p   float64
	set bool
}

func (p *probability) String() string {
	if p == nil || !p.set {
		return ""
	}
	return strconv.FormatFloat(p.p*100, 'f', -1, 64) + "%"
}

func (p *probability) Set(s string) error {
	v, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("want a probability such as 5%% or 0.05")
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 1 {
		return fmt.Errorf("want a probability between 0%% and 100%%")
	}
	p.p, p.set = f, true
	return nil
}

// optDuration is a duration flag that remembers whether it was given.
type optDuration struct {
	d   time.Duration
	set bool
}

func (d *optDuration) String() string {
	if d == nil || !d.set {
		return ""
	}
	return d.d.String()
}

func (d *optDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 20ms")
	}
	if v < 0 {
		return fmt.Errorf("want a duration of zero or more")
	}
	d.d, d.set = v, true
	return nil
}

// rate is a link rate flag in tc-netem's notation ("10mbit").
type rate struct {
	bps int64
	set bool
}

func (r *rate) String() string {
	if r == nil || !r.set {
		return ""
	}
	return strconv.FormatInt(r.bps, 10) + "bit"
}

func (r *rate) Set(s string) error {
	v, err := tap.ParseRate(s)
	if err != nil {
		return err
	}
	r.bps, r.set = v, true
	return nil
}

// optBytes is an MTU flag that remembers whether it was given: 0 (none),
// or at least IPv4's minimum MTU, 68 bytes (RFC 791): a path narrower
// than that carries no SYN, so every connection would time out; and at
// most 65535, the longest IP packet (RFC 791's Total Length; an IPv6
// jumbogram needs a link no TAP is), above which the flag would do nothing.
type optBytes struct {
	n   int
	set bool
}

func (b *optBytes) String() string {
	if b == nil || !b.set {
		return ""
	}
	return strconv.Itoa(b.n)
}

func (b *optBytes) Set(s string) error {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 0 || (v > 0 && v < 68) || v > 65535 {
		return fmt.Errorf("want an MTU in bytes, 68 (IPv4's minimum) to 65535, or 0 for none")
	}
	b.n, b.set = v, true
	return nil
}

// bufSize is a buffer size flag in bytes, with an optional binary suffix
// K, M or G (16M is 16 MiB); 0, the default, leaves the engine's. At most
// 1 GiB: a window scale of 14, TCP's largest (RFC 7323 2.3), advertises
// no more.
type bufSize struct {
	n   int
	max int // the largest size taken; 0: 1 GiB, the most a window scale of 14 advertises
}

func (b *bufSize) String() string {
	if b == nil || b.n == 0 {
		return ""
	}
	return strconv.Itoa(b.n)
}

func (b *bufSize) Set(s string) error {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1
	switch {
	case strings.HasSuffix(t, "K"):
		mult = 1 << 10
	case strings.HasSuffix(t, "M"):
		mult = 1 << 20
	case strings.HasSuffix(t, "G"):
		mult = 1 << 30
	}
	if mult > 1 {
		t = t[:len(t)-1]
	}
	limit := b.max
	if limit == 0 {
		limit = 1 << 30
	}
	v, err := strconv.Atoi(t)
	if err != nil || v < 0 || v > limit/mult {
		return fmt.Errorf("want a size in bytes up to %d GiB, such as 16777216 or 16M", limit>>30)
	}
	b.n = v * mult
	return nil
}

// faultSide holds the flags of one direction (or of both, unprefixed).
type faultSide struct {
	loss, dup, reorder, corrupt, mark probability
	delay, jitter                     optDuration
	rate                              rate
	blackHoleMTU                      optBytes
}

// faultFlags are --loss --dup --reorder --corrupt --mark --blackhole-mtu
// --delay --jitter --rate (both directions) with --in-* and --out-*
// overriding one direction, and --seed.
type faultFlags struct {
	both, in, out faultSide
	seed          uint64
}

// addFaultFlags registers the fault flags on fs.
func addFaultFlags(fs *flag.FlagSet) *faultFlags {
	f := &faultFlags{}
	for _, s := range []struct {
		prefix, what string
		side         *faultSide
	}{
		{"", "frames of both directions", &f.both},
		{"in-", "frames from the wire to the stack", &f.in},
		{"out-", "frames from the stack to the wire", &f.out},
	} {
		fs.Var(&s.side.loss, s.prefix+"loss", "fault: drop `P` of the "+s.what+" (5% or 0.05); over a TAP with offloads a super-frame (TSO, GRO) is one frame, lost whole, as netem loses a GSO packet")
		fs.Var(&s.side.dup, s.prefix+"dup", "fault: duplicate `P` of the "+s.what)
		fs.Var(&s.side.reorder, s.prefix+"reorder", "fault: send `P` of the "+s.what+" after the next frame")
		fs.Var(&s.side.corrupt, s.prefix+"corrupt", "fault: change one byte after the IP header in `P` of the "+s.what+"; a corrupted segment is lost alone, as on a wire: the stack's frames are sent without GSO and kept out of a TAP's super-frames, and the faults on frames to the stack act on the wire segments of the kernel's super-frames, whose intact runs reach the stack joined again, as GRO joins them")
		fs.Var(&s.side.mark, s.prefix+"mark", "fault: mark CE on `P` of the ECN-capable "+s.what+" (as an AQM router marks instead of dropping; frames not ECN-capable pass)")
		fs.Var(&s.side.blackHoleMTU, s.prefix+"blackhole-mtu", "fault: drop the "+s.what+" whose IP packet is longer than `N` bytes, with no ICMP error, as a path MTU black hole (RFC 2923 2.1)")
		fs.Var(&s.side.delay, s.prefix+"delay", "fault: hold the "+s.what+" back for `D`")
		fs.Var(&s.side.jitter, s.prefix+"jitter", "fault: add up to `D` of random delay to the "+s.what+" (order kept)")
		fs.Var(&s.side.rate, s.prefix+"rate", "fault: limit the "+s.what+" to `RATE` (10mbit, 500kbit)")
	}
	fs.Uint64Var(&f.seed, "seed", 0, "fault: seed of the random decisions (default: random, printed so a run can be repeated)")
	return f
}

// enabled reports whether any fault was asked for.
func (f *faultFlags) enabled() bool {
	for _, s := range []*faultSide{&f.both, &f.in, &f.out} {
		if s.loss.set || s.dup.set || s.reorder.set || s.corrupt.set || s.mark.set || s.blackHoleMTU.set || s.delay.set || s.jitter.set || s.rate.set {
			return true
		}
	}
	return false
}

// config returns the fault middleware's configuration, choosing and
// reporting a seed on w when none was given. ok is false when no fault
// was asked for.
func (f *faultFlags) config(w io.Writer) (cfg tap.FaultConfig, ok bool) {
	if !f.enabled() {
		return cfg, false
	}
	if f.seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		f.seed = binary.LittleEndian.Uint64(b[:]) | 1
		fmt.Fprintf(w, "tapstack: fault seed %d (--seed %d repeats the decisions)\n", f.seed, f.seed)
	}
	cfg = f.side(&f.out)
	in := f.side(&f.in)
	cfg.Inbound = &in
	cfg.Seed = f.seed
	return cfg, true
}

// side merges the unprefixed flags with one direction's.
func (f *faultFlags) side(s *faultSide) tap.FaultConfig {
	pick := func(a, b probability) float64 {
		if a.set {
			return a.p
		}
		return b.p
	}
	dur := func(a, b optDuration) time.Duration {
		if a.set {
			return a.d
		}
		return b.d
	}
	r := f.both.rate.bps
	if s.rate.set {
		r = s.rate.bps
	}
	mtu := f.both.blackHoleMTU.n
	if s.blackHoleMTU.set {
		mtu = s.blackHoleMTU.n
	}
	return tap.FaultConfig{
		Loss:         pick(s.loss, f.both.loss),
		Duplicate:    pick(s.dup, f.both.dup),
		Reorder:      pick(s.reorder, f.both.reorder),
		Corrupt:      pick(s.corrupt, f.both.corrupt),
		Mark:         pick(s.mark, f.both.mark),
		BlackHoleMTU: mtu,
		Delay:        dur(s.delay, f.both.delay),
		Jitter:       dur(s.jitter, f.both.jitter),
		Rate:         r,
	}
}

// rfc1337Flag registers --rfc1337: TIME-WAIT outlives a RST
// (tcp.Options.RFC1337).
func rfc1337Flag(fs *flag.FlagSet) *bool {
	return fs.Bool("rfc1337", false, "keep TIME-WAIT when a RST arrives for it, as Linux's net.ipv4.tcp_rfc1337=1 against TIME-WAIT assassination (RFC 1337); by default a RST ends it, as in Linux by default")
}

// timeWaitFlag registers --timewait with a default. The engine reads 0 as
// "the default" (tcp.Options), so --timewait 0 would silently mean 60 s:
// it is rejected instead (see checkTimeWait).
func timeWaitFlag(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	return fs.Duration(name, def, usage+"; must be positive: the engine has no way to skip TIME-WAIT (RFC 9293 3.6.1)")
}

// checkTimeWait rejects a TIME-WAIT that is not positive, as a usage error.
func checkTimeWait(fs *flag.FlagSet, name string, d time.Duration) error {
	if d > 0 {
		return nil
	}
	return usageErr(fs, "--%s %v: TIME-WAIT must be positive (a connection cannot skip it; 0 would mean the 60s default to the engine): give a duration such as 1ms", name, d)
}

// usageErr reports a bad flag value on fs's output in the CLI's one
// message style and returns errUsage (exit status 2).
func usageErr(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "tapstack %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(fs.Output(), "Run \"tapstack %s -h\" for its flags.\n", fs.Name())
	return errUsage
}

// modeFlag is a flag whose value is one of a few named modes of the
// engine, written as the mode's String: --ecn, --mtu-probing. Its zero
// value holds the engine's default, the mode's zero value.
type modeFlag[T interface {
	comparable
	String() string
}] struct {
	mode  T
	modes []T
}

func (f *modeFlag[T]) String() string {
	if f == nil {
		var zero T
		return zero.String()
	}
	return f.mode.String()
}

func (f *modeFlag[T]) Set(s string) error {
	names := make([]string, len(f.modes))
	for i, m := range f.modes {
		if s == m.String() {
			f.mode = m
			return nil
		}
		names[i] = m.String()
	}
	return fmt.Errorf("want %s or %s", strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// ecnFlagVar is --ecn: whether the stack's connections use ECN (RFC
// 3168), as Linux's net.ipv4.tcp_ecn: on (ask on active opens, agree on
// passive ones; tcp_ecn=1), passive (agree only; the default, as
// tcp_ecn=2) or off (tcp_ecn=0).
func ecnFlagVar(fs *flag.FlagSet) *modeFlag[tcp.ECNMode] {
	f := &modeFlag[tcp.ECNMode]{modes: []tcp.ECNMode{tcp.ECNOn, tcp.ECNPassive, tcp.ECNOff}}
	fs.Var(f, "ecn", "ECN (RFC 3168) of the stack's connections: on (ask when dialing, as Linux's tcp_ecn=1), passive (agree when the peer asks, as tcp_ecn=2) or off")
	return f
}

// mtuProbingFlagVar is --mtu-probing: when the stack's connections search
// for the path MTU themselves (RFC 4821), as Linux's
// net.ipv4.tcp_mtu_probing: off (the default, as tcp_mtu_probing=0),
// blackhole (once a black hole is suspected, 1) or on (from the
// handshake on, 2).
func mtuProbingFlagVar(fs *flag.FlagSet) *modeFlag[tcp.MTUProbing] {
	f := &modeFlag[tcp.MTUProbing]{modes: []tcp.MTUProbing{tcp.MTUProbingOff, tcp.MTUProbingBlackHole, tcp.MTUProbingOn}}
	fs.Var(f, "mtu-probing", "path MTU probing (RFC 4821) of the stack's connections: off (ICMP only, as Linux's default tcp_mtu_probing=0), blackhole (once timeouts suggest a path MTU black hole, as tcp_mtu_probing=1) or on (from the handshake on, as 2)")
	return f
}
