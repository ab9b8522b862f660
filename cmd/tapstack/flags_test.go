package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestFaultFlagsMark: --mark sets the mark probability of both
// directions, --in-mark and --out-mark one direction's; any of them alone
// turns the fault middleware on.
func TestFaultFlagsMark(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		out, in float64
	}{
		{[]string{"--mark", "5%"}, 0.05, 0.05},
		{[]string{"--mark", "5%", "--out-mark", "0.5"}, 0.5, 0.05},
		{[]string{"--in-mark", "1%"}, 0, 0.01},
		{[]string{"--out-mark", "0"}, 0, 0},
	} {
		cfg, in, ok, err := faultFlagsOf(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !ok || cfg.Mark != tc.out || in.Mark != tc.in || cfg.Seed != 7 {
			t.Errorf("%q: faults on %v, mark out %v, in %v; want on, %v, %v", tc.args, ok, cfg.Mark, in.Mark, tc.out, tc.in)
		}
	}
}

// TestFaultFlagsBlackHole: --blackhole-mtu sets the black hole's MTU of
// both directions, --in-blackhole-mtu and --out-blackhole-mtu one
// direction's (0 takes it away); any of them alone turns the fault
// middleware on. A size that is not a number of bytes is a usage error.
func TestFaultFlagsBlackHole(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		out, in int
		err     bool
	}{
		{args: []string{"--blackhole-mtu", "1400"}, out: 1400, in: 1400},
		{args: []string{"--blackhole-mtu", "1400", "--out-blackhole-mtu", "1280"}, out: 1280, in: 1400},
		{args: []string{"--blackhole-mtu", "1400", "--in-blackhole-mtu", "0"}, out: 1400, in: 0},
		{args: []string{"--in-blackhole-mtu", "576"}, out: 0, in: 576},
		{args: []string{"--out-blackhole-mtu", "0"}, out: 0, in: 0},
		{args: []string{"--blackhole-mtu", "-1"}, err: true},
		{args: []string{"--blackhole-mtu", "67"}, err: true}, // below IPv4's minimum MTU: no SYN would pass
		{args: []string{"--blackhole-mtu", "68"}, out: 68, in: 68},
		{args: []string{"--out-blackhole-mtu", "1.5k"}, err: true},
		{args: []string{"--blackhole-mtu", "65535"}, out: 65535, in: 65535},
		{args: []string{"--blackhole-mtu", "65536"}, err: true}, // no IP packet is longer: it would drop nothing
		{args: []string{"--in-blackhole-mtu", "4294967296"}, err: true},
	} {
		cfg, in, ok, err := faultFlagsOf(tc.args)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "want an MTU in bytes") {
				t.Errorf("%q: %v, want a usage error asking for an MTU", tc.args, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !ok || cfg.BlackHoleMTU != tc.out || in.BlackHoleMTU != tc.in || cfg.Seed != 7 {
			t.Errorf("%q: faults on %v, black hole MTU out %d, in %d; want on, %d, %d", tc.args, ok, cfg.BlackHoleMTU, in.BlackHoleMTU, tc.out, tc.in)
		}
	}
}

// TestModeFlags: --ecn and --mtu-probing take their modes by name,
// default to the engine's zero value (Linux's defaults: tcp_ecn=2,
// tcp_mtu_probing=0), and refuse anything else naming what they want.
func TestModeFlags(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		ecn        tcp.ECNMode
		mtuProbing tcp.MTUProbing
		err        string
	}{
		{nil, tcp.ECNPassive, tcp.MTUProbingOff, ""},
		{[]string{"--ecn", "on", "--mtu-probing", "blackhole"}, tcp.ECNOn, tcp.MTUProbingBlackHole, ""},
		{[]string{"--ecn=off", "--mtu-probing=on"}, tcp.ECNOff, tcp.MTUProbingOn, ""},
		{[]string{"--ecn", "yes"}, 0, 0, "want on, passive or off"},
		{[]string{"--mtu-probing", "1"}, 0, 0, "want off, blackhole or on"},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		ecn, probing := ecnFlagVar(fs), mtuProbingFlagVar(fs)
		err := fs.Parse(tc.args)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one saying %q", tc.args, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case ecn.mode != tc.ecn || probing.mode != tc.mtuProbing:
			t.Errorf("%q: ECN %v, MTU probing %v; want %v, %v", tc.args, ecn.mode, probing.mode, tc.ecn, tc.mtuProbing)
		}
	}
}

// faultFlagsOf parses args (and --seed 7) as a command's fault flags and
// returns the configuration they make, whether they turn the middleware
// on, and the inbound direction's; without one, its Mark and BlackHoleMTU
// are -1, which no flag sets.
func faultFlagsOf(args []string) (out, in tap.FaultConfig, on bool, err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := addFaultFlags(fs)
	if err := fs.Parse(append(args, "--seed", "7")); err != nil {
		return out, in, false, err
	}
	out, on = f.config(io.Discard)
	in = tap.FaultConfig{Mark: -1, BlackHoleMTU: -1}
	if out.Inbound != nil {
		in = *out.Inbound
	}
	return out, in, on, nil
}

// TestBufMaxFlags: --wmem-max and --rmem-max take a size in bytes, with K,
// M or G for KiB, MiB and GiB, up to 1 GiB (the most a window scale of
// 14 advertises), and set how far the buffers grow; a maximum below the
// engine's 1 MiB start is where the buffer starts too, so it never holds
// more than asked. Nothing given leaves the engine's defaults.
func TestBufMaxFlags(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		args           []string
		sndMax, rcvMax int
		err            bool
	}{
		{args: nil},
		{args: []string{"--wmem-max", "16M"}, sndMax: 16 * mib},
		{args: []string{"--rmem-max", "33554432"}, rcvMax: 32 * mib},
		{args: []string{"--wmem-max", "64KiB", "--rmem-max", "1g"}, sndMax: 64 << 10, rcvMax: 1 << 30},
		{args: []string{"--wmem-max", "2G"}, err: true},
		{args: []string{"--rmem-max", "-1"}, err: true},
		{args: []string{"--rmem-max", "1.5M"}, err: true},
		{args: []string{"--wmem-max", "lots"}, err: true},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		wmem := bufSizeFlag(fs, "wmem-max", "send", tcp.DefaultSendBufferMax, "tcp_wmem[2]")
		rmem := bufSizeFlag(fs, "rmem-max", "receive", tcp.DefaultReceiveBufferMax, "tcp_rmem[2]")
		err := fs.Parse(tc.args)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "want a size in bytes up to 1 GiB") {
				t.Errorf("%q: %v, want a usage error asking for a size", tc.args, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		var o tcp.Options
		applyBufMax(&o, wmem.n, rmem.n)
		// Where a small maximum starts the buffer is the engine's
		// (TestSendBufferGrows, TestReceiveBufferMaxAlone), and what
		// the flags bound on a wire TestDialBufMax's.
		if o.SendBufferSize != 0 || o.SendBufferMax != tc.sndMax || o.ReceiveBufferSize != 0 || o.ReceiveBufferMax != tc.rcvMax {
			t.Errorf("%q: send buffer %d up to %d, receive %d up to %d; want the default start, up to %d and %d", tc.args,
				o.SendBufferSize, o.SendBufferMax, o.ReceiveBufferSize, o.ReceiveBufferMax, tc.sndMax, tc.rcvMax)
		}
	}
}

// TestRmemLimitFlag: --rmem-limit takes a size as the buffers' flags do,
// up to 1 TiB: a stack-wide limit is not bounded by a window scale. It
// sets tcp.Options.ReceiveMemoryLimit; none given leaves the default.
func TestRmemLimitFlag(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want int
		err  bool
	}{
		{arg: "0", want: 0},
		{arg: "64K", want: 64 << 10},
		{arg: "4G", want: 4 << 30},
		{arg: "1024G", want: 1 << 40},
		{arg: "1025G", err: true},
		{arg: "-1", err: true},
		{arg: "much", err: true},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		b := rmemLimitFlag(fs)
		err := fs.Parse([]string{"--rmem-limit", tc.arg})
		switch {
		case tc.err && (err == nil || !strings.Contains(err.Error(), "want a size in bytes up to 1024 GiB")):
			t.Errorf("%q: %v, want a usage error asking for a size up to 1024 GiB", tc.arg, err)
		case !tc.err && (err != nil || b.n != tc.want):
			t.Errorf("%q: %d, %v; want %d", tc.arg, b.n, err, tc.want)
		case !tc.err:
			var o tcp.Options
			applyRmemLimit(&o, b.n)
			if o.ReceiveMemoryLimit != tc.want {
				t.Errorf("%q: ReceiveMemoryLimit %d, want %d", tc.arg, o.ReceiveMemoryLimit, tc.want)
			}
		}
	}
}

// TestMaxPacingRateFlag: --max-pacing-rate takes a rate in tc's notation,
// at least a byte a second: a rate of 0 would pace nothing and say so
// nowhere.
func TestMaxPacingRateFlag(t *testing.T) {
	for _, tc := range []struct {
		arg string
		bps int64
		err string
	}{
		{"16mbit", 16e6, ""},
		{"8bit", 8, ""},
		{"0mbit", 0, "want at least 8bit"},
		{"4bit", 0, "want at least 8bit"},
		{"fast", 0, "invalid value"},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		r := maxPacingFlag(fs)
		err := fs.Parse([]string{"--max-pacing-rate", tc.arg})
		switch {
		case tc.err == "" && (err != nil || r.bps != tc.bps || !r.set):
			t.Errorf("%q: %d bit/s, set %v, %v; want %d", tc.arg, r.bps, r.set, err, tc.bps)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v, want an error saying %q", tc.arg, err, tc.err)
		}
	}
}
