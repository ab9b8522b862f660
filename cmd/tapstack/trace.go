package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runTrace is "tapstack trace": one tcpdump-like line per engine event,
// either of the in-memory demo workload (the default) or of an echo server
// on a TAP device (-tap, -addr), until Ctrl-C.
func runTrace(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "trace", "")
	tapName := fs.String("tap", "", "trace an echo server on this Linux TAP device instead of the in-memory demo")
	addr := fs.String("addr", "", "with -tap: the stack's address/prefix on the device, e.g. 192.0.2.2/24")
	port := fs.Int("port", 7, "with -tap: the echo server's port")
	timeWait := fs.Duration("timewait", 100*time.Millisecond, "in-memory demo: TIME-WAIT (2*MSL) of both stacks")
	text := fs.String("text", "hello, tapstack\n", "in-memory demo: what the client sends")
	pcapPath := fs.String("pcap", "", "write an annotated pcapng capture (the server's end) to `file`")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	out := &syncWriter{w: e.stdout}
	if *tapName == "" && *addr == "" {
		return runDemoWorkload(ctx, io.Discard, demoConfig{
			timeWait:  *timeWait,
			text:      *text,
			pcapPath:  *pcapPath,
			serverObs: traceLine(out, "server"),
			clientObs: traceLine(out, "client"),
		})
	}
	s, closeStack, err := tapStackCapture(*tapName, *addr, tcp.Options{Observer: traceLine(out, *tapName)}, *pcapPath)
	if err != nil {
		return err
	}
	defer closeStack()
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

// traceLine returns an observer printing each event as tcpdump would print
// a packet: wall-clock time, the stack, the segment's direction between
// the two ends, and what the engine did.
func traceLine(w io.Writer, side string) tcp.Observer {
	return func(ev tcp.Event) {
		fmt.Fprintf(w, "%s %-6s %s\n", ev.Time.Format("15:04:05.000000"), side, formatEvent(ev))
	}
}

// formatEvent is the tcpdump-like body of a trace line: "src > dst: what".
func formatEvent(ev tcp.Event) string {
	local, remote := ev.Conn.Local.String(), "*"
	if ev.Conn.Remote.IsValid() {
		remote = ev.Conn.Remote.String()
	}
	switch ev.Kind {
	case tcp.EventSend:
		return fmt.Sprintf("%s > %s: send %s: %s", local, remote, ev.Send, ev.Segment)
	case tcp.EventDrop:
		if !ev.Conn.Local.IsValid() {
			return fmt.Sprintf("drop (%s): %s", ev.Drop, ev.Segment)
		}
		return fmt.Sprintf("%s > %s: drop (%s): %s", remote, local, ev.Drop, ev.Segment)
	case tcp.EventState:
		return fmt.Sprintf("%s %s: %s -> %s (%s)", local, remote, ev.From, ev.To, ev.Cause)
	case tcp.EventQueue:
		q := ev.Queue
		return fmt.Sprintf("%s listen: %s: syn queue %d/%d, accept queue %d/%d", local, ev.Note,
			q.SynQueueLen, q.SynQueueLimit, q.AcceptQueueLen, q.AcceptQueueLimit)
	case tcp.EventRetransmitTimeout:
		return fmt.Sprintf("%s %s: retransmission timeout, rto %v", local, remote, ev.RTO)
	case tcp.EventReceive:
		return fmt.Sprintf("%s > %s: receive (%s): %s", remote, local, ev.Note, ev.Segment)
	}
	return ev.String()
}
