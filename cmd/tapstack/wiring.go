package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// Helpers shared by the subcommands.

// shutdownGrace bounds how long shutdown may take at exit: how long the
// peers have to acknowledge our FINs before the connections still open
// are reset. The agent gives what remains of its own budget instead
// (agentExit).
const shutdownGrace = time.Second

// shutdown ends a stack at the end of a command, whatever ended it (the
// work done, an error, Ctrl-C). Every command's stack goes through here,
// so the way tapstack leaves its peers is decided in one place:
// Stack.Shutdown, a FIN to every connection (RST where unread data is
// discarded), and a RST for those still open when ctx ends, so that no
// peer is left believing a connection is still ESTABLISHED.
func shutdown(ctx context.Context, s *stack.Stack) {
	_ = s.Shutdown(ctx)
	s.Close()
}

// stopStack is shutdown with a fresh grace period: the command's own
// context may already be cancelled.
func stopStack(s *stack.Stack) { stopStackWithin(s, shutdownGrace) }

// stopStackWithin is stopStack with a grace period of grace; at zero or
// less the connections still open are reset at once.
func stopStackWithin(s *stack.Stack, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shutdown(ctx, s)
}

// linkFlags are the flags of a command that runs a stack on a TAP device.
type linkFlags struct {
	tap, addr, pcap *string
	plot            *string // plot.go
	otlp            *string // otlp.go
	create          *bool
	txQueue         *int  // the device's outbound queue, in frames
	queues          *int  // the device's queues (tap.WithQueues)
	offloads        *bool // the kernel's TAP offloads (tap.WithOffloads)
	gro             *bool // super-frames whole to the stack (tap.WithGRO)
	rfc1337         *bool
	faults          *faultFlags
	ecn             *modeFlag[tcp.ECNMode]
	mtuProbing      *modeFlag[tcp.MTUProbing]
	wmemMax         *bufSize    // how far each send buffer grows (tcp.Options.SendBufferMax)
	rmemMax         *bufSize    // and each receive buffer (ReceiveBufferMax)
	rmemLimit       *bufSize    // the received data all connections hold (tcp.Options.ReceiveMemoryLimit)
	pacing          *bool       // pace every connection (tcp.Options.Pacing)
	maxPacing       *pacingRate // at most this rate (tcp.Options.MaxPacingRate)
	cc              *string     // the congestion control (tcp.Options.CongestionControl)
	route           *routeFlag  // the device's route's metrics (stack.SetRouteMetrics)

	prefix netip.Prefix // --addr, parsed by check
}

// addLinkFlags registers --tap, --addr, --create, --pcap and the fault
// flags; verb says what the command does through the device.
func addLinkFlags(fs *flag.FlagSet, verb string) *linkFlags {
	return &linkFlags{
		tap:      fs.String("tap", "", "Linux TAP device to "+verb+", e.g. tap0; it must exist unless --create"),
		addr:     fs.String("addr", "", "the stack's address/prefix on the device, e.g. 192.0.2.2/24"),
		create:   fs.Bool("create", false, "create the TAP device if it does not exist (it is removed on exit)"),
		txQueue:  fs.Int("tx-queue", tap.DefaultTxQueue, "frames the device's outbound queue holds, as Linux's txqueuelen; a frame that finds it full is refused, and tapstack's TCP takes it back and reduces its window, as Linux does on a qdisc drop (make it small, under 256, to see local congestion: from 256 frames waiting tapstack's TCP holds new data back, as Linux's TCP small queues)"),
		queues:   fs.Int("queues", 1, "queues of the device, each read and written by goroutines of its own (2 or more: a device made multi_queue, as by \"ip tuntap add dev tap0 mode tap multi_queue\", or by --create); the kernel steers each flow to one"),
		offloads: fs.Bool("offloads", true, "use the kernel's TAP offloads where it allows, as ethtool -K tso/tx on a NIC: TCP super-frames of up to 64 KiB both ways, partial checksums; false: one wire segment per frame each way (a capture shows wire segments either way)"),
		gro:      fs.Bool("gro", true, "hand the stack super-frames whole, as Linux's GRO (ethtool -K gro): the kernel's TSO super-frames, or without offloads the segments of one flow the device reads in a burst, joined; false: every wire segment to the engine alone, to watch its per-segment rules (an ACK every second segment)"),
		pcap:     fs.String("pcap", "", "write an annotated pcapng capture of the device's frames to `file`"),
		plot:     plotFlag(fs),
		otlp:     otlpFlag(fs),
		faults:   addFaultFlags(fs),
		ecn:      ecnFlagVar(fs),

		mtuProbing: mtuProbingFlagVar(fs),
		wmemMax:    bufSizeFlag(fs, "wmem-max", "send", tcp.DefaultSendBufferMax, "tcp_wmem[2]"),
		rmemMax:    bufSizeFlag(fs, "rmem-max", "receive", tcp.DefaultReceiveBufferMax, "tcp_rmem[2]"),
		rmemLimit:  rmemLimitFlag(fs),
		pacing:     fs.Bool("pacing", false, "pace every connection's packets at its pacing rate (the window per round trip, doubled in slow start, 1.2 times after), as Linux with the fq qdisc; off, as Linux without it, a connection sends what its windows allow back to back"),
		maxPacing:  maxPacingFlag(fs),
		route:      routeMetricsFlag(fs),
		rfc1337:    rfc1337Flag(fs),
		cc: fs.String("cc", "cubic", "congestion control of the stack's connections, as Linux's tcp_congestion_control: "+
			strings.Join(tcp.CongestionControls(), ", ")+" (bbr models the path's bandwidth and round trip, paces at the bandwidth and keeps the queue near one bandwidth-delay product; tapstack ss shows its model)"),
	}
}

// routeFlag is --route: the metrics of the route to the device's subnet,
// as Linux's `ip route change ... mtu lock 1400 advmss 1360 initcwnd 20`.
type routeFlag struct {
	m   stack.RouteMetrics
	set bool
}

func (f *routeFlag) String() string { return f.m.String() }

func (f *routeFlag) Set(s string) error {
	m, err := stack.ParseRouteMetrics(s)
	if err != nil {
		return err
	}
	f.m, f.set = m, true
	return nil
}

// routeMetricsFlag registers --route.
func routeMetricsFlag(fs *flag.FlagSet) *routeFlag {
	f := new(routeFlag)
	fs.Var(f, "route", "metrics of the route to the device's subnet, as Linux's ip route writes them: `\"mtu [lock] N advmss N initcwnd N initrwnd N rto_min T quickack 1\"`, any of them (a path MTU, locked against ICMP; the MSS the stack's SYNs announce; the initial congestion window in segments; the initial receive window in segments, which then grows; the minimum retransmission timeout, as 5ms; every ACK at once, no delayed ACKs)")
	return f
}

// pacingRate is --max-pacing-rate: a rate of at least a byte a second.
type pacingRate struct{ rate }

func (r *pacingRate) Set(s string) error {
	if err := r.rate.Set(s); err != nil {
		return err
	}
	if r.bps < 8 {
		return fmt.Errorf("%q: want at least 8bit, a byte a second", s)
	}
	return nil
}

// maxPacingFlag registers --max-pacing-rate.
func maxPacingFlag(fs *flag.FlagSet) *pacingRate {
	r := new(pacingRate)
	fs.Var(r, "max-pacing-rate", "pace every connection at most at `RATE` (10mbit, 1gbit), as fq's maxrate or Linux's SO_MAX_PACING_RATE on each socket; implies --pacing")
	return r
}

// bufSizeFlag registers a flag for how far each connection's send or
// receive buffer grows by itself.
func bufSizeFlag(fs *flag.FlagSet, name, which string, def int, linux string) *bufSize {
	b := new(bufSize)
	fs.Var(b, name, fmt.Sprintf("how far each connection's %s buffer grows by itself, in `bytes` or with K, M or G (default %d MiB, Linux's %s; below 1 MiB, also where the buffer starts): a connection has no more in flight than the sender's send buffer and the receiver's receive buffer hold, and 4 MiB over a 20 ms round trip is 1.7 Gbit/s", which, def>>20, linux))
	return b
}

// rmemLimitFlag registers --rmem-limit, up to 1 TiB.
func rmemLimitFlag(fs *flag.FlagSet) *bufSize {
	b := &bufSize{max: 1 << 40}
	fs.Var(b, "rmem-limit", fmt.Sprintf("the received data all the stack's connections may hold together, in `bytes` or with K, M or G (default %d GiB, as Linux's tcp_mem[2]): text not yet read and text held out of order; near it no window opens further, at it text is dropped (drop reason \"receive memory limit\"), but for a connection that holds nothing unread. Make it small to watch memory pressure", tcp.DefaultReceiveMemoryLimit>>30))
	return b
}

// applyRmemLimit sets the stack's receive memory limit in opts (0: the
// default).
func applyRmemLimit(opts *tcp.Options, n int) {
	if n > 0 {
		opts.ReceiveMemoryLimit = n
	}
}

// applyBufMax sets the buffers' maximum in opts (0: the default). A
// maximum below the default start is where the engine starts the buffer
// too (Options), so that it never exceeds what was asked for.
func applyBufMax(opts *tcp.Options, wmem, rmem int) {
	if wmem > 0 {
		opts.SendBufferMax = wmem
	}
	if rmem > 0 {
		opts.ReceiveBufferMax = rmem
	}
}

// check refuses, as usage errors (exit status 2), the link flags' values
// that cannot work, before anything is looked up, opened or created: a
// command that runs on a TAP device calls it after parsing its flags and
// before open. It keeps the parsed --addr for open.
func (lf *linkFlags) check(fs *flag.FlagSet) error {
	switch name := *lf.tap; {
	case name == "":
		return usageErr(fs, "--tap is required (the name of a Linux TAP device, e.g. tap0)")
	case tap.CheckName(name) != nil:
		// Before the device's existence: "does not exist, create it
		// with ip tuntap add" would send the user to a name ip refuses.
		return usageErr(fs, "--tap %q: %v", name, tap.CheckName(name))
	}
	prefix, err := netip.ParsePrefix(*lf.addr)
	if err != nil {
		return usageErr(fs, "--addr %q: want the stack's address/prefix such as 192.0.2.2/24", *lf.addr)
	}
	if why := notHostAddr(prefix); why != "" {
		return usageErr(fs, "--addr %q: %s", *lf.addr, why)
	}
	lf.prefix = prefix
	if *lf.queues < 1 || *lf.queues > 256 {
		return usageErr(fs, "--queues %d: want 1 to 256 (the kernel's most for a TAP)", *lf.queues)
	}
	if *lf.txQueue < 1 {
		return usageErr(fs, "--tx-queue %d: want at least 1 frame", *lf.txQueue)
	}
	if !slices.Contains(tcp.CongestionControls(), *lf.cc) {
		return usageErr(fs, "--cc %q: want one of %s", *lf.cc, strings.Join(tcp.CongestionControls(), ", "))
	}
	return nil
}

// notHostAddr says why the address of p is not one a host can have on a
// link, or "". Multicast and the unspecified address are no interface's
// (RFC 1122 3.2.1.3, RFC 4291 2.5.2); a loopback address on a wire is a
// martian Linux drops (ip_route_input_slow), so no peer would answer; an
// IPv4-mapped address is the IPv4 address written for IPv6 sockets,
// never on a wire (RFC 4291 2.5.5.2); and in an IPv4 subnet of two hosts
// or more the host parts of all zeros and all ones are its network and
// broadcast addresses (RFC 1122 3.2.1.3, RFC 919; RFC 3021 gives a /31
// neither).
func notHostAddr(p netip.Prefix) string {
	a := p.Addr()
	switch {
	case a.IsUnspecified():
		return a.String() + " is the unspecified address, which no host can have: want the stack's address/prefix such as 192.0.2.2/24"
	case a.IsMulticast():
		return a.String() + " is a multicast address: want the stack's unicast address/prefix such as 192.0.2.2/24"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return a.String() + " is the limited broadcast address: want the stack's unicast address/prefix such as 192.0.2.2/24"
	case a.IsLoopback():
		return a.String() + " is a loopback address, which Linux drops as a martian when it comes from a device: want an address on the device's subnet such as 192.0.2.2/24"
	case a.Is4In6():
		bits := max(p.Bits()-96, 0)
		return fmt.Sprintf("%s is an IPv4-mapped IPv6 address: write it as IPv4, %s", a, netip.PrefixFrom(a.Unmap(), bits))
	case a.Is4() && p.Bits() < 31:
		switch a {
		case p.Masked().Addr():
			return fmt.Sprintf("%s is the network address of %s (its host part is all zeros): want a host's address such as %s", a, p.Masked(), p.Masked().Addr().Next())
		case lastAddr(p):
			return fmt.Sprintf("%s is the broadcast address of %s (its host part is all ones): want a host's address such as %s", a, p.Masked(), p.Masked().Addr().Next())
		}
	}
	return ""
}

// lastAddr is the last address of IPv4 prefix p: its subnet's broadcast
// address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= host
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// flagNames returns the names of the flags register registers.
func flagNames(register func(*flag.FlagSet)) []string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	register(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// linkFlagNames are the names of addLinkFlags's flags.
func linkFlagNames() []string {
	return flagNames(func(fs *flag.FlagSet) { addLinkFlags(fs, "") })
}

// needsTAP reports, as a usage error, the first flag of names given on
// fs's command line, for a command that runs in memory, as mode says,
// where those flags have nothing to act on: silently ignored, a --pcap
// would write nothing and a --loss lose nothing.
func needsTAP(fs *flag.FlagSet, mode string, names []string) error {
	var given string
	fs.Visit(func(f *flag.Flag) {
		if given == "" && slices.Contains(names, f.Name) {
			given = f.Name
		}
	})
	if given == "" {
		return nil
	}
	return usageErr(fs, "--%s needs --tap (without it, %s)", given, mode)
}

// open attaches a stack to the TAP device with the address, capture and
// faults the flags ask for, once check has accepted them. close shuts the
// stack down, giving the peers up to grace to acknowledge its FINs
// (stopStackWithin), and releases the device and capture.
func (lf *linkFlags) open(e env, opts tcp.Options) (s *stack.Stack, close func(grace time.Duration), err error) {
	opts.ECN = lf.ecn.mode
	opts.MTUProbing = lf.mtuProbing.mode
	applyBufMax(&opts, lf.wmemMax.n, lf.rmemMax.n)
	applyRmemLimit(&opts, lf.rmemLimit.n)
	opts.Pacing = *lf.pacing
	opts.RFC1337 = *lf.rfc1337
	opts.CongestionControl = *lf.cc
	if lf.maxPacing.set {
		opts.MaxPacingRate = uint64(lf.maxPacing.bps / 8)
	}
	name := *lf.tap
	prefix := lf.prefix
	capPath, plotDone, err := plotCapture(e, *lf.pcap, *lf.plot)
	if err != nil {
		return nil, nil, err
	}
	if _, err := net.InterfaceByName(name); err != nil && !*lf.create {
		// Opening a TAP device that does not exist creates it: a typo
		// would silently make a new, down device nobody routes to.
		return nil, nil, fmt.Errorf("TAP device %s does not exist (create it with \"ip tuntap add dev %s mode tap\", or pass --create)", name, name)
	}
	dev, err := tap.Open(name, tap.WithTxQueue(*lf.txQueue), tap.WithQueues(*lf.queues), tap.WithOffloads(*lf.offloads), tap.WithGRO(*lf.gro))
	if errors.Is(err, os.ErrPermission) {
		return nil, nil, fmt.Errorf("%w\n(run as root, or create the device for your user first: ip tuntap add dev %s mode tap user $USER)", err, name)
	}
	if err != nil {
		return nil, nil, err
	}
	traces, err := newOTLP(*lf.otlp)
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	opts.Observer = traces.observer(name, opts.Observer)
	link, obs, finish, err := capture(captureConfig{
		path: capPath, link: dev.LinkEndpoint(), obs: opts.Observer,
		description: "tapstack on TAP device " + name,
		faults:      lf.faults, stderr: e.stderr,
		linkDrops: func() uint64 { return dev.Stats().TxDropped },
	})
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	opts.Observer = obs
	s = stack.New(stack.Options{TCP: opts, OnLinkDown: func(d stack.LinkDown) {
		// The device went away (ip link del) or down: the command
		// ends with the cause, exit status 1.
		if e.stop != nil {
			e.stop(linkDownError{d, name})
		}
	}})
	nic, err := s.AddNIC(link, prefix)
	if err == nil && lf.route.set {
		if err = s.SetRouteMetrics(prefix.Masked(), nic, lf.route.m); err != nil {
			err = fmt.Errorf("--route %q: %w", lf.route.m, err)
		}
	}
	if err != nil {
		stopStack(s)
		dev.Close()
		finish()
		return nil, nil, err
	}
	return s, func(grace time.Duration) {
		stopStackWithin(s, grace)
		// OnLinkDown runs on a goroutine of the stack's after it has
		// failed the connections over the link: the command may have
		// ended on a connection's ENETDOWN before it ran. The cause of
		// the end is the link's all the same (first cause wins).
		if err := s.LinkErr(nic); err != nil && e.stop != nil {
			e.stop(linkDownError{stack.LinkDown{NIC: nic, Err: err}, name})
		}
		dev.Close()
		finish()
		reportErr(e, traces.close())
		reportErr(e, plotDone())
	}, nil
}

func hasKind(kinds []event.Kind, k event.Kind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// waitState waits until c is in one of the states; CLOSED means the
// engine has deleted the TCB.
func waitState(ctx context.Context, c *conn.Conn, states ...event.State) error {
	for {
		changed := c.Endpoint().Changed()
		st := c.State()
		for _, s := range states {
			if st == s {
				return nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%v-%v still in %v: %w", c.LocalAddr(), c.RemoteAddr(), st, ctx.Err())
		}
	}
}

// printStats prints a stack's engine counters; drop reasons only when
// non-zero.
func printStats(w io.Writer, name string, st *tcp.Stats) {
	fmt.Fprintf(w, "%s: segments in %d, out %d; retransmits %d; resets in %d, out %d; timeouts %d\n",
		name, st.SegmentsIn.Load(), st.SegmentsOut.Load(), st.Retransmits.Load(),
		st.ResetsReceived.Load(), st.ResetsSent.Load(), st.Timeouts.Load())
	for r := range st.Drops {
		if n := st.Drops[r].Load(); n > 0 {
			fmt.Fprintf(w, "%s: dropped %d (%v)\n", name, n, event.DropReason(r))
		}
	}
	if n := st.LinkRefused.Load(); n > 0 {
		// Not the wire's doing: the link's own queue was full.
		fmt.Fprintf(w, "%s: %d segments refused by the link, its queue full: never sent, data sent again", name, n)
		if p := st.ResourceProbes.Load(); p > 0 {
			fmt.Fprintf(w, " (%d tries with nothing in flight, 500 ms apart)", p)
		}
		fmt.Fprintln(w)
	}
	if n := st.ECNConnections.Load(); n > 0 {
		fmt.Fprintf(w, "%s: ECN on %d connections; %d CE marks received, %d windows reduced for the peer's echo (CWR)\n",
			name, n, st.CEReceived.Load(), st.ECNReductions.Load())
	}
	if n, p := st.MTUBlackHoles.Load(), st.MTUProbes.Load(); n > 0 || p > 0 {
		fmt.Fprintf(w, "%s: path MTU black hole suspected %d times; %d MTU probes, %d acknowledged, %d lost (RFC 4821)\n",
			name, n, p, st.MTUProbeSuccesses.Load(), st.MTUProbeFailures.Load())
	}
}

// syncWriter serializes writes from concurrent goroutines and observers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
