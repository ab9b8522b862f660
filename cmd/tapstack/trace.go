package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runTrace is "tapstack trace": one tcpdump-like line per engine event,
// either of the in-memory demo workload (the default) or of an echo server
// on a TAP device (-tap, -addr), until Ctrl-C.
func runTrace(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "trace", "")
	lf := addLinkFlags(fs, "trace an echo server on, instead of the in-memory demo")
	port := fs.Int("port", 7, "with --tap: the echo server's port")
	timeWait := timeWaitFlag(fs, "timewait", 100*time.Millisecond, "in-memory demo: TIME-WAIT (2*MSL) of both stacks")
	text := fs.String("text", "hello, tapstack\n", "in-memory demo: what the client sends")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := checkTimeWait(fs, "timewait", *timeWait); err != nil {
		return err
	}
	if *lf.tap != "" || *lf.addr != "" {
		if err := lf.check(fs); err != nil {
			return err
		}
		if *port < 1 || *port > 65535 {
			return usageErr(fs, "--port %d: want 1 to 65535", *port)
		}
	}
	out := &syncWriter{w: e.stdout}
	if *lf.tap == "" && *lf.addr == "" {
		// What the in-memory demo takes of the link flags: the
		// capture, the page, the traces, the faults and the engine's
		// modes; the rest is the device's, or the echo server's.
		inMemory := append(flagNames(func(fs *flag.FlagSet) { addFaultFlags(fs) }), "pcap", "plot", "otlp", "rfc1337", "ecn", "mtu-probing")
		var unused []string
		for _, n := range append(linkFlagNames(), "port") {
			if !slices.Contains(inMemory, n) {
				unused = append(unused, n)
			}
		}
		if err := needsTAP(fs, "trace runs the in-memory demo", unused); err != nil {
			return err
		}
		capPath, plotDone, err := plotCapture(e, *lf.pcap, *lf.plot)
		if err != nil {
			return err
		}
		defer func() { reportErr(e, plotDone()) }()
		traces, err := newOTLP(*lf.otlp)
		if err != nil {
			return err
		}
		defer func() { reportErr(e, traces.close()) }()
		return runDemoWorkload(ctx, io.Discard, demoConfig{
			timeWait:   *timeWait,
			rfc1337:    *lf.rfc1337,
			text:       *text,
			pcapPath:   capPath,
			faults:     lf.faults,
			ecn:        lf.ecn.mode,
			mtuProbing: lf.mtuProbing.mode,
			stderr:     e.stderr,
			serverObs:  traces.observer("server", traceLine(out, "server")),
			clientObs:  traces.observer("client", traceLine(out, "client")),
		})
	}
	s, closeStack, err := lf.open(e, tcp.Options{Observer: traceLine(out, *lf.tap)})
	if err != nil {
		return err
	}
	defer closeStack(shutdownGrace)
	ln, err := conn.Listen(s, "tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { ln.Close() })()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func(c net.Conn) {
			io.Copy(c, c)
			c.Close()
		}(c)
	}
}

// traceLine returns an observer printing each event on one line in the
// CLI's one trace format, tcpdump's: wall-clock time, the stack, the
// segment's direction between the two ends ("192.0.2.1.7 >
// 192.0.2.2.40000", inbound segments from the peer), and what the engine
// did, in the words of the capture's comments (pcap.Describe), followed
// by the segment as tcpdump would print it. With kinds, only those events.
func traceLine(w io.Writer, side string, kinds ...event.Kind) event.Observer {
	return func(ev event.Event) {
		if len(kinds) > 0 && !hasKind(kinds, ev.Kind) {
			return
		}
		fmt.Fprintf(w, "%s %-6s %s\n", ev.Time.Format("15:04:05.000000"), side, formatEvent(ev))
	}
}

// formatEvent is the tcpdump-like body of a trace line: "src > dst: what".
func formatEvent(ev event.Event) string {
	local, remote := tcpdumpAddr(ev.Conn.Local), tcpdumpAddr(ev.Conn.Remote)
	what := pcap.Describe(ev)
	seg := ""
	switch ev.Kind {
	case event.KindSend, event.KindDrop, event.KindReceive, event.KindAck:
		if s := ev.Segment.String(); s != "" {
			// The ends are already said: keep what follows the ports.
			if _, rest, ok := strings.Cut(s, ": "); ok {
				s = rest
			}
			seg = ": " + s
		}
	}
	switch ev.Kind {
	case event.KindDrop, event.KindReceive, event.KindAck, event.KindUDPDeliver, event.KindUDPNoPort, event.KindUDPDrop:
		// About a segment that came from the peer.
		return fmt.Sprintf("%s > %s: %s%s", remote, local, what, seg)
	}
	return fmt.Sprintf("%s > %s: %s%s", local, remote, what, seg)
}

// tcpdumpAddr prints an address and port as tcpdump does: 192.0.2.1.7;
// "*" for none (a listener's peer).
func tcpdumpAddr(a netip.AddrPort) string {
	if !a.IsValid() {
		return "*"
	}
	return a.Addr().String() + "." + strconv.Itoa(int(a.Port()))
}
