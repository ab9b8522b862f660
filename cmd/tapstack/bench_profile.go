package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// Where the CPU goes: with -cpuprofile, the bench reads its own profile
// back and splits each stack's samples, per link and figure, by the layer
// whose code was running (leafLayer says how the Go runtime's share is
// given). That is the question the bulk and connection figures leave
// open: how much of a stack's CPU is its TCP at all, and how much is work
// any stack on gVisor's network layer and buffers, on this link, under
// this bench, must do.

// cpuLayer is a layer of the code a sample was running in.
type cpuLayer int

const (
	layerCopy     cpuLayer = iota // copying and clearing memory, whoever asked
	layerChecksum                 // Internet checksums (gVisor's and tap's)
	layerTCP                      // the stack's TCP: stack/tcp, or gVisor's transport/tcp
	layerNetwork                  // gVisor's network layer (stack, IP, links, headers, its locks) and tapstack's wiring of it
	layerBuffers                  // gVisor's buffers and their reference counts
	layerLink                     // tap's links (the pipe, the TAP) and their system calls
	layerAPI                      // the socket API: conn, gVisor's gonet, waiters
	layerPeer                     // over a TAP, the kernel peer's sockets (Go's net) and their system calls
	layerWorkload                 // the bench's own work: the CRC-32C check, its loops
	layerRuntime                  // the Go runtime and library on their own: work no layer's code asked for
	layerOther
	numLayers
)

var layerNames = [numLayers]string{
	layerCopy:     "copy, clear",
	layerChecksum: "checksums",
	layerTCP:      "TCP",
	layerNetwork:  "network layer",
	layerBuffers:  "buffers",
	layerLink:     "link",
	layerAPI:      "socket API",
	layerPeer:     "kernel peer",
	layerWorkload: "bench",
	layerRuntime:  "Go runtime",
	layerOther:    "other",
}

// layerOf names the layer of a function by its name (package path first).
// The order matters: a package path is matched before its parents. Go's
// runtime and standard library (but net, the kernel peer's) and
// golang.org/x/sys are layerRuntime: leafLayer looks past them to the
// layer that called them.
func layerOf(fn string) cpuLayer {
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
		return false
	}
	const gv = "gvisor.dev/gvisor/pkg/"
	const ts = "github.com/tapstack/tapstack/"
	switch {
	case has("runtime.memmove", "runtime.memclr"):
		return layerCopy
	case has(gv+"tcpip/checksum.", ts+"tap.checksum", ts+"tap.ipLayout.pseudo"):
		return layerChecksum
	case has(ts+"stack/tcp.", gv+"tcpip/transport/tcp."):
		return layerTCP
	case has(gv+"tcpip/adapters/gonet.", gv+"waiter.", ts+"conn."):
		return layerAPI
	case has(gv+"buffer.", gv+"atomicbitops.", gv+"tcpip/stack.(*PacketBuffer)", gv+"tcpip/stack.PacketData", gv+"tcpip/stack.PacketHeader", gv+"tcpip/stack.NewPacketBuffer", gv+"refs."):
		return layerBuffers
	case has(gv, ts+"stack."):
		return layerNetwork
	case has(ts + "tap."):
		return layerLink
	case has("net."):
		// Not internal/poll, which the TAP's reads and writes go
		// through too (os.File's RawConn): the frame above it says
		// whose they are.
		return layerPeer
	case has("main."):
		return layerWorkload
	case has("golang.org/x/sys/") || !strings.Contains(pkgPath(fn), "."):
		return layerRuntime // the standard library's
	}
	return layerOther
}

// pkgPath is the package path of a function's name: up to the first dot
// after the last slash, type parameters (which may have slashes) left out.
func pkgPath(fn string) string {
	if i := strings.IndexAny(fn, "[("); i >= 0 {
		fn = fn[:i]
	}
	dir, name := "", fn
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		dir, name = fn[:i+1], fn[i+1:]
	}
	if i := strings.Index(name, "."); i >= 0 {
		name = name[:i]
	}
	return dir + name
}

// cpuSplit is one stack's CPU in one figure's runs, by layer.
type cpuSplit struct {
	Figure string             `json:"figure"`
	Stack  string             `json:"stack"`
	CPU    float64            `json:"cpu_seconds"`
	Share  map[string]float64 `json:"share"` // layer → fraction of CPU
	// FreeTCP is, for tapstack's throughput figures (bulk, connections/s),
	// tapstack ÷ gVisor as the table has it (the median of the rounds'
	// ratios) divided by 1 − the TCP's share: what the ratio would be were
	// tapstack's TCP to take no CPU and the cores to stay as busy. It is
	// the most any engine could gain on that figure over this network
	// layer and link without keeping the cores busier. None when the TCP
	// had every sample of the figure (a short run's few): no bound then.
	FreeTCP float64            `json:"ratio_were_tcp_free,omitempty"`
	layers  [numLayers]float64 // seconds
}

// cpuProfileSplit is a link's splits: one per figure and stack (the
// floor's too). What no stack's rounds can be given is the report's
// (benchReport.ProfileUnlabelled).
type cpuProfileSplit struct {
	Splits []cpuSplit `json:"splits"`
}

// splitProfile reads a CPU profile written by the bench and splits its
// labelled samples by link, figure, stack and layer. Samples without a
// stack label (the garbage collector's workers, the scheduler on its own
// stack, the warm-up) are counted apart, in seconds, and so is the whole.
func splitProfile(r io.Reader) (byLink map[string]*cpuProfileSplit, unlabelled, total float64, err error) {
	p, err := profile.Parse(r)
	if err != nil {
		return nil, 0, 0, err
	}
	cpu := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			cpu = i
		}
	}
	if cpu < 0 {
		return nil, 0, 0, fmt.Errorf("not a CPU profile (no cpu/nanoseconds samples)")
	}
	byLink = map[string]*cpuProfileSplit{}
	index := map[[3]string]int{} // link, figure, stack → index in Splits
	for _, s := range p.Sample {
		sec := float64(s.Value[cpu]) / 1e9
		total += sec
		stack, link, figure := label(s, "stack"), label(s, "link"), label(s, "figure")
		if stack == "" || link == "" || figure == "" {
			unlabelled += sec
			continue
		}
		ls := byLink[link]
		if ls == nil {
			ls = new(cpuProfileSplit)
			byLink[link] = ls
		}
		k := [3]string{link, figure, stack}
		i, ok := index[k]
		if !ok {
			i = len(ls.Splits)
			index[k] = i
			ls.Splits = append(ls.Splits, cpuSplit{Figure: figure, Stack: stack})
		}
		sp := &ls.Splits[i]
		sp.CPU += sec
		sp.layers[leafLayer(s)] += sec
	}
	for _, ls := range byLink {
		for i := range ls.Splits {
			sp := &ls.Splits[i]
			sp.Share = map[string]float64{}
			for l, v := range sp.layers {
				if v > 0 {
					sp.Share[layerNames[l]] = v / sp.CPU
				}
			}
		}
	}
	return byLink, unlabelled, total, nil
}

// label is a sample's string label k, or "".
func label(s *profile.Sample, k string) string {
	if v := s.Label[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// leafLayer is the layer a sample's CPU goes to: copying and clearing
// wherever they were asked for, and otherwise the innermost function
// that is not the Go runtime's or its library's (inlined calls come
// first in a location). Their work, allocating, growing a stack, parking
// or waking a goroutine, taking a lock, a system call, a hash, goes to
// the layer that asked for it: a wake-up the socket API does is the
// socket API's cost, a write to the TAP the link's (over a TAP the
// kernel's TCP receives in it). Only samples with no caller of any layer
// stay the runtime's.
func leafLayer(s *profile.Sample) cpuLayer {
	first := true
	for _, loc := range s.Location {
		for _, ln := range loc.Line {
			if ln.Function == nil {
				continue
			}
			l := layerOf(ln.Function.Name)
			if first && l == layerCopy {
				return layerCopy
			}
			first = false
			if l != layerRuntime && l != layerCopy {
				return l
			}
		}
	}
	return layerRuntime
}

// readProfileSplit opens the profile at path and splits it.
func readProfileSplit(path string) (map[string]*cpuProfileSplit, float64, float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	return splitProfile(f)
}

// freeTCP fills FreeTCP for tapstack's splits of the throughput figures
// in rows.
func (ls *cpuProfileSplit) freeTCP(rows []benchRow) {
	if ls == nil {
		return
	}
	for i := range ls.Splits {
		sp := &ls.Splits[i]
		if sp.Stack != kindTapstack.String() {
			continue
		}
		for _, row := range rows {
			if row.Name == sp.Figure && row.Higher && (row.Unit == "Gbit/s" || row.Unit == "conn/s") && !math.IsNaN(row.RatioMed) {
				if tcp := sp.layers[layerTCP] / sp.CPU; tcp < 1 {
					sp.FreeTCP = row.RatioMed / (1 - tcp)
				}
			}
		}
	}
}

// print writes a link's splits, figure by figure in the order figures
// were first measured, tapstack's line before gVisor's and the floor's.
func (ls *cpuProfileSplit) print(w io.Writer, link string) {
	fmt.Fprintf(w, "\nwhere the CPU goes over %s (-cpuprofile; share of the stack's CPU in the figure's rounds; each sample goes to the layer whose code was running or asked the Go runtime for it, to allocate, lock, park or wake; copy and clear wherever they were asked for)\n", link)
	head := []string{"figure", "stack", "CPU s"}
	for l := range numLayers {
		head = append(head, layerNames[l])
	}
	head = append(head, "÷ gVisor, TCP free")
	cells := [][]string{head}
	order := slices.Clone(ls.Splits)
	rank := map[string]int{kindTapstack.String(): 0, kindGVisor.String(): 1, "floor": 2}
	first := map[string]int{}
	for i, s := range ls.Splits {
		if _, ok := first[s.Figure]; !ok {
			first[s.Figure] = i
		}
	}
	slices.SortStableFunc(order, func(a, b cpuSplit) int {
		if d := first[a.Figure] - first[b.Figure]; d != 0 {
			return d
		}
		return rank[a.Stack] - rank[b.Stack]
	})
	for _, s := range order {
		row := []string{s.Figure, s.Stack, fmt.Sprintf("%.2f", s.CPU)}
		for l := range numLayers {
			row = append(row, pct(s.layers[l]/s.CPU))
		}
		free := "·"
		if s.FreeTCP > 0 {
			free = fmt.Sprintf("%.2f×", s.FreeTCP)
		}
		cells = append(cells, append(row, free))
	}
	printCells(w, cells)
	fmt.Fprintln(w, "÷ gVisor, TCP free: tapstack ÷ gVisor (the table's median) ÷ (1 − the TCP's share), the ratio were tapstack's TCP to take no CPU at all and the cores to stay as busy: the most any engine could gain on that figure over this network layer and link without keeping the cores busier")
}

// pct is a share as a whole percentage, "·" for none.
func pct(f float64) string {
	if f == 0 {
		return "·"
	}
	if f < 0.005 {
		return "<1%"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

// splitCPU reads the bench's profile back, once it is written, and gives
// each link of the report its splits; with text, it prints them. A
// profile that cannot be read costs the splits, not the bench's figures.
func (r *benchReport) splitCPU(path string, out, log io.Writer, text bool) {
	byLink, unlabelled, total, err := readProfileSplit(path)
	if err != nil {
		fmt.Fprintf(log, "tapstack bench: -cpuprofile: reading it back: %v\n", err)
		return
	}
	r.ProfileCPU, r.ProfileUnlabelled = total, unlabelled
	for i := range r.Links {
		r.Links[i].CPU = byLink[r.Links[i].Link]
		r.Links[i].CPU.freeTCP(r.Links[i].Rows)
		if text && r.Links[i].CPU != nil {
			r.Links[i].CPU.print(out, r.Links[i].Link)
		}
	}
	if text && total > 0 {
		fmt.Fprintf(out, "\nthe profile: %.2f s of CPU, of which %.2f s (%s) no stack's rounds (the garbage collector's workers, the scheduler on its own stack, the warm-ups); the stacks' shares above leave it out\n", total, unlabelled, pct(unlabelled/total))
	}
}
