package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// TestLayerOf: functions by the layer their package is.
func TestLayerOf(t *testing.T) {
	for _, c := range []struct {
		fn   string
		want cpuLayer
	}{
		{"runtime.memmove", layerCopy},
		{"runtime.memclrNoHeapPointers", layerCopy},
		{"gvisor.dev/gvisor/pkg/tcpip/checksum.calculateChecksum", layerChecksum},
		{"github.com/tapstack/tapstack/tap.checksumCombine", layerChecksum},
		{"github.com/tapstack/tapstack/stack/tcp.(*Endpoint).sendNewDataN", layerTCP},
		{"gvisor.dev/gvisor/pkg/tcpip/transport/tcp.(*sender).sendData", layerTCP},
		{"gvisor.dev/gvisor/pkg/tcpip/network/ipv4.(*endpoint).HandlePacket", layerNetwork},
		{"gvisor.dev/gvisor/pkg/sync.(*CrossGoroutineRWMutex).RLock", layerNetwork},
		{"github.com/tapstack/tapstack/stack.(*Stack).Dispatch", layerNetwork},
		{"gvisor.dev/gvisor/pkg/buffer.(*View).Clone", layerBuffers},
		{"gvisor.dev/gvisor/pkg/atomicbitops.(*Int64).Add", layerBuffers},
		{"gvisor.dev/gvisor/pkg/tcpip/stack.(*PacketBuffer).headerView", layerBuffers},
		{"gvisor.dev/gvisor/pkg/tcpip/stack.PacketHeader.Slice", layerBuffers},
		{"github.com/tapstack/tapstack/tap.(*pipe).carry", layerLink},
		{"golang.org/x/sys/unix.Syscall", layerRuntime},
		{"syscall.RawSyscall6", layerRuntime},
		{"net.(*conn).Read", layerPeer},
		{"internal/poll.(*FD).Read", layerRuntime},
		{"os.(*rawConn).Read", layerRuntime},
		{"crypto/sha256.Sum256", layerRuntime},
		{"sync/atomic.(*Pointer[gvisor.dev/gvisor/pkg/tcpip/stack.NFTablesInterface]).Load", layerRuntime},
		{"github.com/google/btree.(*BTreeG[go.shape.*uint8]).Get", layerOther},
		{"github.com/tapstack/tapstack/conn.(*Conn).Read", layerAPI},
		{"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet.(*TCPConn).Read", layerAPI},
		{"gvisor.dev/gvisor/pkg/waiter.(*Queue).Notify", layerAPI},
		{"runtime.mallocgc", layerRuntime},
		{"sync.(*Pool).Get", layerRuntime},
		{"internal/sync.(*Mutex).Lock", layerRuntime},
		{"time.Now", layerRuntime},
		{"hash/crc32.castagnoliSSE42Triple", layerRuntime},
		{"main.(*bulkCheck).add", layerWorkload},
		{"github.com/tapstack/tapstack/event.(*Log).Add", layerOther},
	} {
		if got := layerOf(c.fn); got != c.want {
			t.Errorf("layerOf(%s) = %s, want %s", c.fn, layerNames[got], layerNames[c.want])
		}
	}
}

// profileOf builds a CPU profile from samples given as their labels
// ("stack|link|figure", or "" for none), their CPU in milliseconds and
// their stack, innermost first; a "+"-joined entry is one location whose
// functions were inlined into the last.
func profileOf(t *testing.T, samples ...struct {
	labels string
	ms     int64
	stack  []string
}) *bytes.Buffer {
	t.Helper()
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10e6,
	}
	funcs := map[string]*profile.Function{}
	fn := func(name string) *profile.Function {
		if f, ok := funcs[name]; ok {
			return f
		}
		f := &profile.Function{ID: uint64(len(funcs) + 1), Name: name, SystemName: name}
		funcs[name] = f
		p.Function = append(p.Function, f)
		return f
	}
	for _, s := range samples {
		ps := &profile.Sample{Value: []int64{s.ms / 10, s.ms * 1e6}}
		if s.labels != "" {
			l := strings.Split(s.labels, "|")
			ps.Label = map[string][]string{"stack": {l[0]}, "link": {l[1]}, "figure": {l[2]}}
		}
		for _, frame := range s.stack {
			loc := &profile.Location{ID: uint64(len(p.Location) + 1), Address: uint64(0x1000 + len(p.Location))}
			for _, name := range strings.Split(frame, "+") {
				loc.Line = append(loc.Line, profile.Line{Function: fn(name)})
			}
			p.Location = append(p.Location, loc)
			ps.Location = append(ps.Location, loc)
		}
		p.Sample = append(p.Sample, ps)
	}
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return &b
}

// TestSplitProfile: each sample's CPU goes to its stack's figure, to the
// layer whose code ran or asked the runtime for the work; unlabelled
// samples are counted apart.
func TestSplitProfile(t *testing.T) {
	const bulk = "tapstack|tap.Pipe|bulk, dialer → listener"
	type sample = struct {
		labels string
		ms     int64
		stack  []string
	}
	buf := profileOf(t,
		// A copy is a copy whoever asked for it.
		sample{bulk, 50, []string{"runtime.memmove", "gvisor.dev/gvisor/pkg/buffer.(*View).Write", "github.com/tapstack/tapstack/stack/tcp.(*Endpoint).write"}},
		// An allocation is the engine's when the engine asked.
		sample{bulk, 30, []string{"runtime.nextFreeFast+runtime.mallocgc", "runtime.newobject", "github.com/tapstack/tapstack/stack/tcp.(*Protocol).newEndpoint"}},
		// Inlined into a function of the engine: the innermost line
		// counts, gVisor's buffers.
		sample{bulk, 10, []string{"gvisor.dev/gvisor/pkg/buffer.(*View).Size+github.com/tapstack/tapstack/stack/tcp.(*Endpoint).output"}},
		// Parking a reader is the socket API's cost.
		sample{bulk, 30, []string{"runtime.gopark", "runtime.chanrecv", "github.com/tapstack/tapstack/conn.(*Conn).Read", "main.bulk"}},
		sample{bulk, 40, []string{"gvisor.dev/gvisor/pkg/sync.(*CrossGoroutineRWMutex).RLock", "gvisor.dev/gvisor/pkg/tcpip/stack.(*nic).DeliverNetworkPacket"}},
		// Nothing but the runtime: the runtime's.
		sample{bulk, 10, []string{"runtime.mcall", "runtime.goexit"}},
		sample{"gVisor|tap.Pipe|bulk, dialer → listener", 70, []string{"gvisor.dev/gvisor/pkg/tcpip/transport/tcp.(*sender).sendData"}},
		sample{"floor|tap.Pipe|bulk floor", 30, []string{"hash/crc32.castagnoliSSE42Triple", "hash/crc32.Update", "main.(*bulkCheck).add"}},
		// A system call is the link's when tap made it, the kernel
		// peer's when its socket did.
		sample{"tapstack|TAP|connections/s, 1 dialer", 10, []string{"internal/runtime/syscall/linux.Syscall6", "syscall.Syscall", "github.com/tapstack/tapstack/tap.(*Device).write"}},
		sample{"tapstack|TAP|connections/s, 1 dialer", 30, []string{"internal/runtime/syscall/linux.Syscall6", "syscall.Syscall", "internal/poll.(*FD).Read", "net.(*conn).Read", "io.ReadFull", "main.connRate.func1"}},
		// The TAP's reads go through the runtime's poller too, from a
		// callback of tap's or to wait: the link's either way.
		sample{"tapstack|TAP|connections/s, 1 dialer", 10, []string{"internal/runtime/syscall/linux.Syscall6", "golang.org/x/sys/unix.read", "github.com/tapstack/tapstack/tap.(*rxReader).read.func1", "internal/poll.(*FD).RawRead", "os.(*rawConn).Read", "github.com/tapstack/tapstack/tap.(*rxReader).read"}},
		sample{"tapstack|TAP|connections/s, 1 dialer", 10, []string{"runtime.gopark", "runtime.netpollblock", "internal/poll.runtime_pollWait", "internal/poll.(*pollDesc).wait", "internal/poll.(*FD).RawRead", "os.(*rawConn).Read", "github.com/tapstack/tapstack/tap.(*rxReader).read"}},
		sample{"", 60, []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}},
	)
	byLink, unlabelled, total, err := splitProfile(buf)
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(unlabelled, 0.060) || !near(total, 0.390) {
		t.Errorf("unlabelled %v s, total %v s; want 0.06 and 0.39", unlabelled, total)
	}
	if len(byLink) != 2 || byLink["tap.Pipe"] == nil || byLink["TAP"] == nil {
		t.Fatalf("links %v, want tap.Pipe and TAP", byLink)
	}
	pipe := byLink["tap.Pipe"].Splits
	if len(pipe) != 3 {
		t.Fatalf("%d splits over tap.Pipe, want 3 (tapstack, gVisor, the floor): %+v", len(pipe), pipe)
	}
	want := []struct {
		stack string
		cpu   float64
		share map[string]float64
	}{
		{"tapstack", 0.170, map[string]float64{"copy, clear": 50.0 / 170, "TCP": 30.0 / 170, "buffers": 10.0 / 170, "socket API": 30.0 / 170, "network layer": 40.0 / 170, "Go runtime": 10.0 / 170}},
		{"gVisor", 0.070, map[string]float64{"TCP": 1}},
		{"floor", 0.030, map[string]float64{"bench": 1}},
	}
	for i, w := range want {
		s := pipe[i]
		if s.Stack != w.stack || !near(s.CPU, w.cpu) || len(s.Share) != len(w.share) {
			t.Errorf("split %d: %s %v s, shares %v; want %s %v s, %v", i, s.Stack, s.CPU, s.Share, w.stack, w.cpu, w.share)
			continue
		}
		for k, v := range w.share {
			if !near(s.Share[k], v) {
				t.Errorf("%s: %s %v, want %v", s.Stack, k, s.Share[k], v)
			}
		}
	}
	if tp := byLink["TAP"].Splits; len(tp) != 1 || tp[0].Figure != "connections/s, 1 dialer" || !near(tp[0].Share["link"], 0.5) || !near(tp[0].Share["kernel peer"], 0.5) {
		t.Errorf("TAP splits %+v, want one, half the link's, half the kernel peer's", tp)
	}
	// Were tapstack's TCP free: the table's ratio ÷ (1 − its share), on
	// throughput figures only, tapstack's only.
	rows := []benchRow{
		{benchFigure: benchFigure{Name: "bulk, dialer → listener", Unit: "Gbit/s", Higher: true}, RatioMed: 1.2},
		{benchFigure: benchFigure{Name: "CPU per GiB, dialer → listener", Unit: "s/GiB"}, RatioMed: 1.03},
	}
	byLink["tap.Pipe"].freeTCP(rows)
	if got, want := pipe[0].FreeTCP, 1.2/(1-30.0/170); !near(got, want) || pipe[1].FreeTCP != 0 || pipe[2].FreeTCP != 0 {
		t.Errorf("were the TCP free: %v, %v, %v; want %v, 0, 0", pipe[0].FreeTCP, pipe[1].FreeTCP, pipe[2].FreeTCP, want)
	}
	var out bytes.Buffer
	byLink["tap.Pipe"].print(&out, "tap.Pipe")
	for _, re := range []string{
		`(?m)^where the CPU goes over tap\.Pipe \(`,
		`(?m)^figure\s+stack\s+CPU s\s+copy, clear\s+checksums\s+TCP\s+network layer\s+buffers\s+link\s+socket API\s+kernel peer\s+bench\s+Go runtime\s+other\s+÷ gVisor, TCP free$`,
		`(?m)^bulk, dialer → listener\s+tapstack\s+0\.17\s+29%\s+·\s+18%\s+24%\s+6%\s+·\s+18%\s+·\s+·\s+6%\s+·\s+1\.46×$`,
		`(?m)^bulk, dialer → listener\s+gVisor\s+0\.07\s+·\s+·\s+100%.*·$`,
		`(?m)^bulk floor\s+floor\s+0\.03\s+`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("the table does not match %s:\n%s", re, out.String())
		}
	}
	if _, _, _, err := splitProfile(strings.NewReader("not a profile")); err == nil {
		t.Error("splitProfile took a file that is not a profile")
	}
}

// TestBenchCPUProfile: with -cpuprofile, the bench reads its profile
// back and splits each stack's CPU by layer, in the table and in -json.
func TestBenchCPUProfile(t *testing.T) {
	// The process has one CPU profile: under go test -cpuprofile the
	// bench's own cannot start.
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Skipf("a CPU profile is already running (go test -cpuprofile?): %v", err)
	}
	pprof.StopCPUProfile()
	dir := t.TempDir()
	code, out, errOut := runCLI(t, append(quickBench, "-link", "pipe", "-cpuprofile", filepath.Join(dir, "cpu.prof"))...)
	if code != 0 {
		t.Fatalf("bench exited %d\n%s\n%s", code, out, errOut)
	}
	for _, re := range []string{
		`(?m)^where the CPU goes over tap\.Pipe \(`,
		`(?m)^figure\s+stack\s+CPU s\s+copy, clear`,
		`(?m)^the profile: [\d.]+ s of CPU, of which [\d.]+ s \(`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("bench output does not match %s:\n%s", re, out)
		}
	}
	code, out, errOut = runCLI(t, append(quickBench, "-link", "pipe", "-json", "-cpuprofile", filepath.Join(dir, "cpu2.prof"))...)
	if code != 0 {
		t.Fatalf("bench exited %d\n%s\n%s", code, out, errOut)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench -json: %v\n%s", err, out)
	}
	if !(r.ProfileCPU > 0) || r.ProfileUnlabelled < 0 || r.ProfileUnlabelled > r.ProfileCPU || len(r.Links) != 1 || r.Links[0].CPU == nil || len(r.Links[0].CPU.Splits) == 0 {
		t.Fatalf("profile %v s (%v unlabelled), links %+v", r.ProfileCPU, r.ProfileUnlabelled, r.Links)
	}
	figures := map[string]bool{"bulk floor": true}
	ratio := map[string]float64{} // throughput figures' ratios
	for _, row := range r.Links[0].Rows {
		figures[row.Name] = true
		if row.Unit == "Gbit/s" || row.Unit == "conn/s" {
			ratio[row.Name] = row.RatioMed
		}
	}
	for _, s := range r.Links[0].CPU.Splits {
		sum := 0.0
		for _, v := range s.Share {
			sum += v
		}
		if !figures[s.Figure] || (s.Stack != "tapstack" && s.Stack != "gVisor" && s.Stack != "floor") || !(s.CPU > 0) || math.Abs(sum-1) > 1e-9 {
			t.Errorf("split %s/%s: %v s, shares %v (sum %v)", s.Stack, s.Figure, s.CPU, s.Share, sum)
		}
		// A throughput figure of tapstack's says what a free TCP
		// would make of its ratio: no less than the ratio; nothing if
		// the TCP had all of the figure's samples (no bound then).
		q, ok := ratio[s.Figure]
		bounded := ok && s.Stack == "tapstack" && s.Share["TCP"] < 1
		if bounded && !(s.FreeTCP >= q) {
			t.Errorf("split %s/%s: ratio were the TCP free %v, the table's %v", s.Stack, s.Figure, s.FreeTCP, q)
		} else if !bounded && s.FreeTCP != 0 {
			t.Errorf("split %s/%s: ratio were the TCP free %v, want none", s.Stack, s.Figure, s.FreeTCP)
		}
	}
}
