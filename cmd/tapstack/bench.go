package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	rtrace "runtime/trace"
	"slices"
	"strconv"
	"strings"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// runBench is "tapstack bench": tapstack and gVisor's TCP on the same
// link in the same run, in interleaved rounds, over tap.Pipe (both ends
// in this process) and over a TAP device in a network namespace of its
// own with the Linux kernel as the peer. It prints, for each figure, the
// median and range of each stack over the rounds and of the per-round
// ratios tapstack ÷ gVisor, and every round's ratio.
//
// Method. A comparison in one process is fair only if neither side
// inherits the other's state, and the former 8 MiB default was not: one
// transfer each, tapstack always first, timed from the first byte. The
// first transfer of a process pays for growing the heap from nothing
// (the garbage collector runs every few MiB of a small heap, and every
// new page faults), and the second pays for collecting the garbage the
// first left; 8 MiB over tap.Pipe takes ~40 ms, a few collections, so
// those costs and slow start made up a large part of it, and landed on
// whichever stack ran first (tapstack measured 0.5× at 8 MiB and 1.0× at
// 256 MiB; measured again here, the stack run first in a fresh process
// reached 30–70 MB/s and the same stack second 75–140 MB/s). So now:
//
//   - an untimed warm-up runs every workload once for both stacks before
//     the first round;
//   - each figure is measured for both stacks back to back in every
//     round, the order alternating from round to round and figure to
//     figure, and the ratio is taken per round, when both saw the same
//     background load; the table gives medians, which one disturbed
//     round does not move;
//   - the heap is collected before each measurement;
//   - bulk throughput is timed in the steady state, from the moment an
//     eighth of the transfer has arrived.
func runBench(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "bench", "")
	size := fs.Int64("size", 64<<20, "bytes to move in each bulk transfer")
	write := fs.Int("write", benchBlockSize, "bytes the sender hands to each Write of a bulk transfer (1 to 1048576): small writes measure the send path's cost per call, where a bulk transfer's large ones measure its cost per byte")
	rounds := fs.Int("rounds", 5, "interleaved rounds")
	links := fs.String("link", "pipe,tap", "links to measure: pipe (tap.Pipe), tap (a TAP device, the kernel as the peer), or both")
	// 20,000 connections a measurement, about a second each: with 2,000 the
	// connections/s ratio of a run moved by ±0.2 from run to run on this
	// project's 2-core machine, with 20,000 by about ±0.1.
	nconns := fs.Int("conns", 20000, "connections opened and closed per connections/s measurement")
	echoN := fs.Int("echo", 2000, "round trips per echo measurement")
	heapN := fs.String("heap-conns", "1000,10000", "idle connections held per heap measurement (tap.Pipe only), comma-separated")
	figs := fs.String("figures", strings.Join(benchGroups, ","), "figures to measure, comma-separated: bulk (both ways, with CPU and allocations; and the floor), conns (connections/s with 1 and 8 dialers), echo (64 B round trips, p50 and p99), heap (idle connections, tap.Pipe only)")
	mtu := fs.Uint("mtu", tap.DefaultMTU, "IP MTU of the link (up to 65520)")
	offloads := fs.Bool("offloads", true, "TAP offloads (virtio-net header, TSO, coalescing)")
	gro := fs.Bool("gro", true, "TAP: hand the stack super-frames whole: the kernel's, or without offloads the segments the device joins (false: wire segments)")
	cc := fs.String("cc", "cubic", "congestion control of tapstack's TCP: "+strings.Join(tcp.CongestionControls(), ", ")+" (gVisor's TCP keeps its default, reno)")
	kernelCC := fs.String("kernel-cc", defaultKernelCC, "TAP: congestion control of the kernel's TCP in the namespace (cubic is Linux's default; empty: what the namespace inherits from the host)")
	coalesce := fs.Bool("coalesce", true, "TAP: write runs of one flow's segments as one super-frame, from a writer goroutine")
	queues := fs.Int("queues", 1, "TAP: queues of the device (multi_queue), each with a read loop and a writer goroutine, for both stacks (1 to 256)")
	pipeGSO := fs.Bool("pipe-gso", true, "tap.Pipe: offer segmentation offload, super-frames carried whole as over a TAP with offloads (off whenever faults are injected)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	execTrace := fs.String("trace", "", "write a Go execution trace of the run to this file (go tool trace): where each goroutine ran, waited and was runnable with a core idle; each stack's rounds begin and end with a log event in category bench, \"start\" or \"end\" and the stack, link and figure")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the rounds to this file, each sample labelled with its stack, link and figure (go tool pprof -tagfocus stack=tapstack), and print where each stack's CPU went, by layer: its TCP, gVisor's network layer and buffers, the link, the copies (100 samples a second: give it transfers of 1 GiB)")
	otlp := otlpFlag(fs)
	faults := addFaultFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *size <= 0 {
		return usageErr(fs, "--size %d: want a positive number of bytes", *size)
	}
	if *write < 1 || *write > benchBlockSize {
		return usageErr(fs, "--write %d: want 1 to %d bytes", *write, benchBlockSize)
	}
	if *rounds < 1 || *nconns < 1 || *echoN < 1 {
		return usageErr(fs, "--rounds, --conns and --echo must be positive")
	}
	if *queues < 1 || *queues > 256 {
		return usageErr(fs, "--queues %d: want 1 to 256 (the kernel's most for a TAP)", *queues)
	}
	if !slices.Contains(tcp.CongestionControls(), *cc) {
		return usageErr(fs, "--cc %q: want one of %s", *cc, strings.Join(tcp.CongestionControls(), ", "))
	}
	if *mtu < 576 || *mtu > 65520 {
		return usageErr(fs, "--mtu %d: want 576 to 65520", *mtu)
	}
	var heaps []int
	for _, f := range strings.Split(*heapN, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return usageErr(fs, "--heap-conns %q: want positive numbers separated by commas", *heapN)
		}
		heaps = append(heaps, n)
	}
	groups := map[string]bool{}
	for _, g := range strings.Split(*figs, ",") {
		if g = strings.TrimSpace(g); !slices.Contains(benchGroups, g) {
			return usageErr(fs, "--figures %q: want some of %s, separated by commas", *figs, strings.Join(benchGroups, ", "))
		}
		groups[g] = true
	}
	var wantPipe, wantTAP bool
	for _, l := range strings.Split(*links, ",") {
		switch strings.TrimSpace(l) {
		case "pipe":
			wantPipe = true
		case "tap":
			wantTAP = true
		default:
			return usageErr(fs, "--link %q: want pipe, tap or pipe,tap", *links)
		}
	}
	if len(groups) == 1 && groups["heap"] && len(heaps) == 0 {
		return usageErr(fs, "--figures heap with --heap-conns %q: no idle heap to measure; give counts of connections such as 1000,10000", *heapN)
	}
	if wantTAP && !wantPipe && len(groups) == 1 && groups["heap"] {
		return usageErr(fs, "--figures heap: the idle heap is measured over tap.Pipe only (--link pipe), where both ends of each connection are in this process")
	}
	if wantTAP && *kernelCC != "" {
		if avail, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control"); err == nil && !slices.Contains(strings.Fields(string(avail)), *kernelCC) {
			return usageErr(fs, "--kernel-cc %q: the kernel has %s", *kernelCC, strings.Join(strings.Fields(string(avail)), ", "))
		}
	}
	if cfg, _ := faults.config(io.Discard); cfg.BlackHoleMTU > 0 || (cfg.Inbound != nil && cfg.Inbound.BlackHoleMTU > 0) {
		// gVisor's TCP has no path MTU probing: its rounds would wait
		// out every retry, and the comparison would measure nothing.
		return usageErr(fs, "--blackhole-mtu: gVisor's TCP, the bench's baseline, cannot cross a path MTU black hole (it has no RFC 4821 probing); see tapstack through one with the demo, dial or serve and --mtu-probing blackhole, or go run ./examples/blackhole")
	}
	// The output files before any work, as every command's (checkOutput).
	if err := checkOutput("cpuprofile", *cpuProfile); err != nil {
		return err
	}
	if err := checkOutput("trace", *execTrace); err != nil {
		return err
	}
	cfg, withFaults := faults.config(e.stderr)
	b := &bencher{
		rounds: *rounds, size: *size, write: *write, conns: *nconns, echo: *echoN, heaps: heaps, mtu: uint32(*mtu), groups: groups,
		log: e.stderr,
	}
	if withFaults {
		b.wrap = func(l gstack.LinkEndpoint) gstack.LinkEndpoint { return tap.NewFault(l, cfg) }
	}
	var report benchReport
	tapOpts := []tap.Option{tap.WithOffloads(*offloads), tap.WithGRO(*gro), tap.WithCoalescing(*coalesce), tap.WithQueues(*queues)}
	traces, err := newOTLP(*otlp)
	if err != nil {
		return err
	}
	// Only tapstack's connections can be traced: its figures then
	// include the tracer's cost, and the output says so.
	defer func() {
		if err := traces.close(); err != nil {
			fmt.Fprintf(e.stderr, "tapstack bench: --otlp: %v\n", err)
		}
	}()
	if traces != nil {
		report.Traced = *otlp
	}
	out := e.stdout
	if !*asJSON {
		fmt.Fprintf(out, "tapstack bench: %s; tapstack vs gVisor's TCP on the same link, %d interleaved rounds", benchHeader(groups), *rounds)
		if groups["bulk"] {
			fmt.Fprintf(out, ", %d MiB per transfer", *size>>20)
			if *write != benchBlockSize {
				fmt.Fprintf(out, " in writes of %d B", *write)
			}
		}
		fmt.Fprintln(out)
		if traces != nil {
			fmt.Fprintf(out, "tapstack's connections are traced to %s (--otlp): its figures include the tracer's cost, gVisor's do not\n", *otlp)
		}
	}
	if *execTrace != "" {
		tf, err := os.Create(*execTrace)
		if err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
		if err := rtrace.Start(tf); err != nil {
			tf.Close()
			return err
		}
		defer func() { rtrace.Stop(); tf.Close() }()
	}
	var stopProfile func()
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		stopProfile = stop
		defer func() {
			if stopProfile != nil {
				stopProfile()
			}
		}()
		b.profile = true
	}
	report.Rounds, report.Size, report.Write, report.GOMAXPROCS = *rounds, *size, *write, runtime.GOMAXPROCS(0)
	run := func(l benchLink, desc string, tasks []benchTask) error {
		res, err := b.measure(ctx, l, tasks)
		if err != nil {
			return err
		}
		res.Link, res.Detail = l.name(), desc
		report.Links = append(report.Links, res)
		if !*asJSON {
			res.print(out)
		}
		return nil
	}
	if wantPipe && len(b.tasks(true)) > 0 { // none: --figures heap with --heap-conns ""
		gso := *pipeGSO && !withFaults // faults act on wire segments, not on 64 KiB super-frames
		desc := fmt.Sprintf("MTU %d, in memory", *mtu)
		if gso {
			desc += ", GSO"
		}
		if err := run(pipeLink{mtu: uint32(*mtu), wrap: b.wrap, gso: gso, traces: traces, cc: *cc}, desc, b.tasks(true)); err != nil {
			return err
		}
	}
	if wantTAP && len(b.tasks(false)) > 0 { // none: --figures heap alone, tap.Pipe's only
		ns, err := newBenchNetns(uint32(*mtu), *kernelCC, *queues)
		if err != nil {
			msg := "TAP with the kernel as the peer skipped: " + err.Error()
			report.Skipped = append(report.Skipped, msg)
			if !*asJSON {
				fmt.Fprintln(out, msg)
			}
		} else {
			l := kernelLink{ns: ns, opts: tapOpts, wrap: b.wrap, next: newHostCounter(), traces: traces, cc: *cc}
			desc := fmt.Sprintf("MTU %d, offloads %v, kernel TCP %s; frames delivered through the device's queue to tapstack, on its read loop to gVisor", *mtu, l.offloads(), ns.ccName())
			if *queues > 1 {
				desc = fmt.Sprintf("MTU %d, %d queues, offloads %v, kernel TCP %s; frames delivered through the device's queue to tapstack, on the read loops to gVisor", *mtu, *queues, l.offloads(), ns.ccName())
			}
			err := run(l, desc, b.tasks(false))
			l.close()
			if err != nil {
				return err
			}
		}
	}
	if len(report.Links) == 0 && len(report.Skipped) > 0 {
		// Every link asked for was skipped (--link tap without the
		// privileges for its namespace): a run that measured nothing
		// failed, whatever it printed.
		what := "measure in memory with --link pipe"
		if strings.Contains(report.Skipped[0], "lacks CAP_") {
			what = "run as root, or " + what
		}
		return fmt.Errorf("nothing measured: %s (%s)", strings.Join(report.Skipped, "; "), what)
	}
	if stopProfile != nil {
		stopProfile()
		stopProfile = nil
		report.splitCPU(*cpuProfile, out, e.stderr, !*asJSON)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	}
	return report.ourFailures()
}

// ourFailures is an error if tapstack failed a run: the tables are out,
// and the command fails. gVisor's TCP failing is a result, not an error.
func (r benchReport) ourFailures() error {
	n := 0
	for _, l := range r.Links {
		for _, f := range l.Failures {
			if f.Stack == kindTapstack.String() {
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("tapstack failed %d run(s): see the failed runs under the table", n)
}

// startCPUProfile starts the CPU profile of -cpuprofile and returns what
// stops it. Samples of the rounds carry the labels stack (tapstack or
// gVisor), link and figure; the warm-up's and the runtime's own (the
// garbage collector's workers) carry none.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// bencher runs the rounds.
type bencher struct {
	rounds, conns, echo int
	size                int64
	write               int // bytes per Write in bulk transfers (0: 1 MiB)
	heaps               []int
	mtu                 uint32
	wrap                func(gstack.LinkEndpoint) gstack.LinkEndpoint // faults, if asked for
	log                 io.Writer
	profile             bool            // label each measurement's goroutines for the CPU profile
	groups              map[string]bool // the figures asked for (--figures), by group; nil: all
}

// wants reports whether group g of figures is to be measured.
func (b *bencher) wants(g string) bool { return b.groups == nil || b.groups[g] }

// benchGroups are the groups of figures --figures chooses from, in the
// order the table gives them.
var benchGroups = []string{"bulk", "conns", "echo", "heap"}

// benchHeader names the figures of the groups asked for, for the
// output's first line.
func benchHeader(groups map[string]bool) string {
	if len(groups) == len(benchGroups) {
		return "bulk transfer, connections/s, echo latency, CPU, allocations and idle heap"
	}
	names := map[string]string{"bulk": "bulk transfer with its CPU and allocations", "conns": "connections/s with their CPU and allocations", "echo": "echo latency", "heap": "idle heap"}
	var parts []string
	for _, g := range benchGroups {
		if groups[g] {
			parts = append(parts, names[g])
		}
	}
	return strings.Join(parts, ", ")
}

// floorLink is a link whose bulk figures have a floor (bench_floor.go):
// tap.Pipe without faults, where both ends are in this process and the
// link adds no limit of its own.
type floorLink interface{ floor() bool }

// benchFigure is one row of the table.
type benchFigure struct {
	Name   string `json:"figure"`
	Unit   string `json:"unit"`
	Higher bool   `json:"higher_is_better"`
	format string
}

// benchTask is one workload; it yields one or more figures.
type benchTask struct {
	bulk    bool // a bulk transfer: its link's floor is measured beside it
	figures []benchFigure
	run     func(ctx context.Context, e *benchEnv, warm bool) ([]float64, error)
}

// mss is the payload of a full segment at the bench's MTU, with the
// timestamps option both stacks use: what "a data segment" is.
func (b *bencher) mss() float64 { return float64(b.mtu) - 40 - 12 }

// tasks lists the workloads; the heap ones run over tap.Pipe only, where
// both ends of each connection are in this process.
func (b *bencher) tasks(pipe bool) []benchTask {
	bulkTask := func(up bool, dir string) benchTask {
		figures := []benchFigure{
			{Name: "bulk, " + dir, Unit: "Gbit/s", Higher: true, format: "%.2f"},
			{Name: "CPU per GiB, " + dir, Unit: "s/GiB", format: "%.3f"},
		}
		if !pipe {
			// Over the TAP, the part of it that is the kernel's: its
			// TCP and the device's I/O, in the process's system calls
			// (the kernel floor, bench_kernel_floor.go). In memory
			// there is next to none.
			figures = append(figures, benchFigure{Name: "system CPU per GiB, " + dir, Unit: "s/GiB", format: "%.3f"})
		}
		figures = append(figures, benchFigure{Name: "allocations per data segment, " + dir, Unit: "allocs", format: "%.4f"})
		return benchTask{
			bulk:    true,
			figures: figures,
			run: func(ctx context.Context, e *benchEnv, warm bool) ([]float64, error) {
				size := b.size
				if warm {
					size = max(size/4, 1<<20)
				}
				r, err := bulk(ctx, e, size, b.write, up)
				if err != nil {
					return nil, err
				}
				gib := float64(size) / (1 << 30)
				v := []float64{r.gbps, r.cpu.Seconds() / gib}
				if !pipe {
					v = append(v, r.sys.Seconds()/gib)
				}
				// Allocations are counted in the steady state, as
				// throughput is: the connection open and the buffer
				// pools filled.
				return append(v, float64(r.mallocs)/(float64(r.steady)/b.mss())), nil
			},
		}
	}
	connTask := func(dialers int) benchTask {
		who := "1 dialer"
		if dialers > 1 {
			who = fmt.Sprintf("%d dialers", dialers)
		}
		return benchTask{
			figures: []benchFigure{
				{Name: "connections/s, " + who, Unit: "conn/s", Higher: true, format: "%.0f"},
				// The process's CPU, which a noisy machine moves less
				// than the rate: both ends over tap.Pipe, tapstack's
				// or gVisor's end and the kernel's sockets' system
				// time over the TAP.
				{Name: "CPU per connection, " + who, Unit: "µs", format: "%.1f"},
				// Both ends' and the bench's own (its goroutine
				// per connection, its dial's context), the last the
				// same for both stacks.
				{Name: "allocations per connection, " + who, Unit: "allocs", format: "%.1f"},
			},
			run: func(ctx context.Context, e *benchEnv, warm bool) ([]float64, error) {
				n := b.conns
				if warm {
					n = max(n/4, dialers)
				}
				r, err := connRate(ctx, e, n, dialers)
				return []float64{r.rate, float64(r.cpu.Nanoseconds()) / 1e3, r.mallocs}, err
			},
		}
	}
	var tasks []benchTask
	if b.wants("bulk") {
		tasks = append(tasks, bulkTask(true, "dialer → listener"), bulkTask(false, "listener → dialer"))
	}
	if b.wants("conns") {
		tasks = append(tasks, connTask(1), connTask(8))
	}
	if b.wants("echo") {
		tasks = append(tasks, benchTask{
			figures: []benchFigure{
				{Name: "echo p50, 64 B", Unit: "µs", format: "%.1f"},
				{Name: "echo p99, 64 B", Unit: "µs", format: "%.1f"},
			},
			run: func(ctx context.Context, e *benchEnv, warm bool) ([]float64, error) {
				n := b.echo
				if warm {
					n = max(n/4, 100)
				}
				p50, p99, err := echoLatency(ctx, e, n, 64)
				return []float64{float64(p50.Nanoseconds()) / 1e3, float64(p99.Nanoseconds()) / 1e3}, err
			},
		})
	}
	if pipe && b.wants("heap") {
		for _, n := range b.heaps {
			tasks = append(tasks, benchTask{
				figures: []benchFigure{{Name: "heap per idle connection, " + countName(n), Unit: "B", format: "%.0f"}},
				run: func(ctx context.Context, e *benchEnv, warm bool) ([]float64, error) {
					m := n // not n itself: the warm-up would shrink every round after it
					if warm {
						m = min(n, 100)
					}
					h, err := idleHeap(ctx, e, m)
					return []float64{h}, err
				},
			})
		}
	}
	return tasks
}

func countName(n int) string {
	if n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// benchRow holds one figure's values, per round.
type benchRow struct {
	benchFigure
	Tapstack      []float64  `json:"tapstack"`
	GVisor        []float64  `json:"gvisor"`
	Ratio         []float64  `json:"ratio"` // tapstack ÷ gVisor, per round
	TapstackMed   float64    `json:"tapstack_median"`
	GVisorMed     float64    `json:"gvisor_median"`
	RatioMed      float64    `json:"ratio_median"`
	RatioMin      float64    `json:"ratio_min"`
	RatioMax      float64    `json:"ratio_max"`
	TapstackRange [2]float64 `json:"tapstack_range"`
	GVisorRange   [2]float64 `json:"gvisor_range"`
}

// MarshalJSON writes a failed run's NaN as null: JSON has no NaN.
func (r benchRow) MarshalJSON() ([]byte, error) { return marshalNullNaN(r) }

// marshalNullNaN writes struct v as encoding/json would, field by field in
// order, the fields of embedded structs inlined and unexported ones left
// out, but with every NaN float (a failed run's value, alone or in a slice
// or array) as null; a slice of floats is an array even when nil. It is
// for the bench's rows, whose tags have no options.
func marshalNullNaN(v any) ([]byte, error) {
	b := []byte{'{'}
	var fields func(rv reflect.Value) error
	fields = func(rv reflect.Value) error {
		for i := range rv.NumField() {
			f := rv.Type().Field(i)
			switch {
			case f.Anonymous && f.Type.Kind() == reflect.Struct:
				if err := fields(rv.Field(i)); err != nil {
					return err
				}
				continue
			case !f.IsExported():
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			val, err := json.Marshal(nullNaN(rv.Field(i)))
			if err != nil {
				return err
			}
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, name)
			b = append(append(b, ':'), val...)
		}
		return nil
	}
	if err := fields(reflect.ValueOf(v)); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// nullNaN is v with its NaN floats as nil (null): a float, or a slice or
// array of them; any other value as it is.
func nullNaN(v reflect.Value) any {
	switch {
	case v.Kind() == reflect.Float64:
		if math.IsNaN(v.Float()) {
			return nil
		}
	case (v.Kind() == reflect.Slice || v.Kind() == reflect.Array) && v.Type().Elem().Kind() == reflect.Float64:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = nullNaN(v.Index(i))
		}
		return out
	}
	return v.Interface()
}

// benchLinkResult is one link's table.
type benchLinkResult struct {
	Link   string     `json:"link"`
	Detail string     `json:"detail"`
	Rows   []benchRow `json:"figures"`
	// Floor is the bulk figures' floor, without faults only: tap.Pipe's
	// (bench_floor.go) or the TAP's (bench_kernel_floor.go).
	Floor *benchFloor `json:"floor,omitempty"`
	// Failures are the runs that failed (a transfer that stalled past
	// its deadline, say): their values are NaN in the rows (null in
	// JSON), left out of the medians, and the other rounds stand.
	Failures []benchFailure `json:"failures,omitempty"`
	// CPU is, with -cpuprofile, each stack's CPU per figure by layer.
	CPU *cpuProfileSplit `json:"cpu_by_layer,omitempty"`
}

// benchFailure is one failed run of one stack: in the warm-up (round 0)
// or in a round.
type benchFailure struct {
	Round  int    `json:"round"`
	Stack  string `json:"stack"`
	Figure string `json:"figure"` // the task's first figure
	Error  string `json:"error"`
}

// benchReport is what -json prints.
type benchReport struct {
	Rounds     int               `json:"rounds"`
	Size       int64             `json:"bytes_per_transfer"`
	Write      int               `json:"bytes_per_write"`
	GOMAXPROCS int               `json:"gomaxprocs"`
	Links      []benchLinkResult `json:"links"`
	Skipped    []string          `json:"skipped,omitempty"`
	Traced     string            `json:"traced_to,omitempty"` // --otlp: tapstack's figures include the tracer's cost
	// With -cpuprofile: the profile's seconds in all, and those no
	// stack's run can be given (the garbage collector's workers, the
	// scheduler on its own stack, the warm-ups).
	ProfileCPU        float64 `json:"cpu_profile_seconds,omitempty"`
	ProfileUnlabelled float64 `json:"cpu_profile_unlabelled_seconds,omitempty"`
}

// measure runs the warm-up and the rounds on link l.
func (b *bencher) measure(ctx context.Context, l benchLink, tasks []benchTask) (benchLinkResult, error) {
	var res benchLinkResult
	once := func(t benchTask, kind stackKind, warm bool) (v []float64, err error) {
		if !warm && rtrace.IsEnabled() {
			// -trace: the rounds of each stack, link and figure, for a
			// reader of the trace to cut it by.
			lbl := kind.String() + "|" + l.name() + "|" + t.figures[0].Name
			rtrace.Log(ctx, "bench", "start "+lbl)
			defer rtrace.Log(ctx, "bench", "end "+lbl)
		}
		if b.profile && !warm {
			// Goroutines inherit the labels of the goroutine that starts
			// them, so the link's pumps or readers and gVisor's
			// processors, started by l.env below, carry them too.
			labels := pprof.Labels("stack", kind.String(), "link", l.name(), "figure", t.figures[0].Name)
			pprof.Do(ctx, labels, func(ctx context.Context) { v, err = b.once(ctx, l, t, kind, warm) })
			return v, err
		}
		return b.once(ctx, l, t, kind, warm)
	}
	withBulk := slices.ContainsFunc(tasks, func(t benchTask) bool { return t.bulk })
	var floor *benchFloor
	if fl, ok := l.(floorLink); ok && fl.floor() && withBulk {
		floor = new(benchFloor)
	}
	floorOnce := func(size int64) (r bulkResult, err error) {
		if b.profile {
			labels := pprof.Labels("stack", "floor", "link", l.name(), "figure", "bulk floor")
			pprof.Do(ctx, labels, func(ctx context.Context) { r, err = floorBulk(ctx, size) })
			return r, err
		}
		return floorBulk(ctx, size)
	}
	// A stack's failed run is a result, not the end of the bench: under
	// faults a stack may stall (gVisor's TCP once went silent for 34 s
	// in a fault test, its last retransmission lost), and the other
	// stack's figures, and the other rounds, still stand.
	failed := func(round int, kind stackKind, t benchTask, err error) []float64 {
		res.Failures = append(res.Failures, benchFailure{Round: round, Stack: kind.String(), Figure: t.figures[0].Name, Error: err.Error()})
		v := make([]float64, len(t.figures))
		for i := range v {
			v[i] = math.NaN()
		}
		return v
	}
	// Warm-up: every workload once for both stacks, untimed.
	for _, t := range tasks {
		for _, kind := range []stackKind{kindGVisor, kindTapstack} {
			if _, err := once(t, kind, true); err != nil {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				failed(0, kind, t, err)
			}
		}
	}
	// Faults make a transfer slower than any floor, as over tap.Pipe:
	// with them the TAP has none to compare with either.
	kl, ok := l.(kernelLink)
	kernelFloor := ok && kl.wrap == nil && withBulk
	var copyCheck []float64 // s/GiB per round, for the kernel floor
	if floor != nil {
		if _, err := floorOnce(max(b.size/4, 1<<20)); err != nil {
			return res, err
		}
	}
	rows := make([][]benchRow, len(tasks))
	for i, t := range tasks {
		for _, f := range t.figures {
			rows[i] = append(rows[i], benchRow{benchFigure: f})
		}
	}
	for r := range b.rounds {
		if floor != nil {
			// First in the round, beside the bulk figures that follow.
			fr, err := floorOnce(b.size)
			if err != nil {
				return res, err
			}
			floor.add(fr, b.size)
		}
		if kernelFloor {
			copyCheck = append(copyCheck, copyCheckCPU())
		}
		for i, t := range tasks {
			order := []stackKind{kindTapstack, kindGVisor}
			if (r+i)%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			var vals [2][]float64
			for _, kind := range order {
				v, err := once(t, kind, false)
				if err != nil {
					if ctx.Err() != nil {
						return res, ctx.Err()
					}
					v = failed(r+1, kind, t, err)
				}
				vals[kind] = v
			}
			for j := range rows[i] {
				row := &rows[i][j]
				row.Tapstack = append(row.Tapstack, vals[kindTapstack][j])
				row.GVisor = append(row.GVisor, vals[kindGVisor][j])
				row.Ratio = append(row.Ratio, ratio(vals[kindTapstack][j], vals[kindGVisor][j]))
			}
		}
		if b.log != nil && b.rounds > 1 {
			fmt.Fprintf(b.log, "tapstack bench: %s: round %d of %d done\n", l.name(), r+1, b.rounds)
		}
	}
	for _, rs := range rows {
		for _, row := range rs {
			row.TapstackMed, row.TapstackRange = medianRange(row.Tapstack)
			row.GVisorMed, row.GVisorRange = medianRange(row.GVisor)
			var rr [2]float64
			row.RatioMed, rr = medianRange(row.Ratio)
			row.RatioMin, row.RatioMax = rr[0], rr[1]
			res.Rows = append(res.Rows, row)
		}
	}
	if floor != nil {
		floor.compare(res.Rows)
		res.Floor = floor
	}
	if kernelFloor {
		res.Floor = kernelFloorOf(res.Rows, copyCheck)
	}
	return res, nil
}

// once runs task t once for stack kind on a fresh environment of link l.
func (b *bencher) once(ctx context.Context, l benchLink, t benchTask, kind stackKind, warm bool) ([]float64, error) {
	e, err := l.env(kind)
	if err != nil {
		return nil, fmt.Errorf("%s over %s: %w", kind, l.name(), err)
	}
	defer e.close()
	// On a terminal, one line shows the bytes the workload moves.
	var prog *progress
	if len(t.figures) > 0 && strings.HasPrefix(t.figures[0].Name, "bulk") {
		prog = newProgress(b.log, fmt.Sprintf("%s over %s, %s", kind, l.name(), t.figures[0].Name), 0)
	}
	defer prog.end()
	v, err := t.run(withProgress(ctx, prog), e, warm)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s over %s, %s: %w", kind, l.name(), t.figures[0].Name, err)
	}
	return v, nil
}

// ratio is a ÷ b, and 1 when both are 0 (no allocations on either side,
// say), which a ratio of figures that are equal is.
func ratio(a, b float64) float64 {
	if a == 0 && b == 0 {
		return 1
	}
	return a / b
}

// medianRange returns the median (the mean of the middle two of an even
// count) and the least and greatest of v, leaving out failed runs (NaN);
// NaN if every run failed.
func medianRange(v []float64) (float64, [2]float64) {
	if len(v) == 0 {
		return 0, [2]float64{}
	}
	s := slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(s) == 0 {
		return math.NaN(), [2]float64{math.NaN(), math.NaN()}
	}
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return m, [2]float64{s[0], s[len(s)-1]}
}

// print writes the link's table.
func (res benchLinkResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n%s (%s)\n", res.Link, res.Detail)
	cells := [][]string{{"figure", "unit", "tapstack median [min–max]", "gVisor median [min–max]", "tapstack ÷ gVisor median [min–max]", "better", "per round"}}
	for _, r := range res.Rows {
		f := func(v float64) string { return num(r.format, v) }
		better := "lower"
		if r.Higher {
			better = "higher"
		}
		var per []string
		for _, x := range r.Ratio {
			per = append(per, num("%.2f", x))
		}
		cells = append(cells, []string{
			r.Name, r.Unit,
			fmt.Sprintf("%s [%s–%s]", f(r.TapstackMed), f(r.TapstackRange[0]), f(r.TapstackRange[1])),
			fmt.Sprintf("%s [%s–%s]", f(r.GVisorMed), f(r.GVisorRange[0]), f(r.GVisorRange[1])),
			ratioCell(r.RatioMed, [2]float64{r.RatioMin, r.RatioMax}),
			better,
			strings.Join(per, " "),
		})
	}
	printCells(w, cells)
	if res.Floor != nil {
		res.Floor.print(w, res.Link)
	}
	if len(res.Failures) > 0 {
		fmt.Fprintf(w, "\nfailed runs over %s (their values are left out of the medians; round 0 is the warm-up):\n", res.Link)
		for _, f := range res.Failures {
			fmt.Fprintf(w, "  round %d: %s\n", f.Round, f.Error) // the error names the stack and the figure
		}
	}
}

// num formats v, or says "failed" for a failed run's NaN.
func num(format string, v float64) string {
	if math.IsNaN(v) {
		return "failed"
	}
	return fmt.Sprintf(format, v)
}

// ratioCell is a ratio's median and range.
func ratioCell(m float64, rr [2]float64) string {
	if math.IsNaN(m) {
		return "failed"
	}
	return fmt.Sprintf("%.2f× [%.2f–%.2f]", m, rr[0], rr[1])
}

// printCells writes a table, its columns aligned.
func printCells(w io.Writer, cells [][]string) {
	widths := make([]int, len(cells[0]))
	for _, row := range cells {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, row := range cells {
		var b strings.Builder
		for i, c := range row {
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
