package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// The in-memory demo workload shared by demo, trace and ss: two tapstack
// stacks on a tap.Pipe, an echo server on 192.0.2.1:7, one client
// connection that sends text, half-closes, reads the echo and closes.

// demoConfig configures runDemoWorkload.
type demoConfig struct {
	timeWait             time.Duration
	rfc1337              bool // both stacks keep TIME-WAIT through a RST
	text                 string
	pcapPath             string         // capture of the server's end, if set
	faults               *faultFlags    // on the server's end, if set
	ecn                  tcp.ECNMode    // both stacks' (Options.ECN)
	mtuProbing           tcp.MTUProbing // both stacks' (Options.MTUProbing)
	stderr               io.Writer      // where the chosen fault seed is told
	serverObs, clientObs event.Observer // may be nil
	// at, if set, is called at each phase of the connection's life:
	// "established", "transfer" (the text written, the echo not yet
	// read), "closing" (the client closed) and "closed".
	at func(phase string, server, client *stack.Stack)
}

// runDemoWorkload runs the demo's connection to its end and reports on out.
func runDemoWorkload(ctx context.Context, out io.Writer, cfg demoConfig) error {
	at := cfg.at
	if at == nil {
		at = func(string, *stack.Stack, *stack.Stack) {}
	}
	a, b := tap.Pipe()
	// Cut the cable before the stacks close (deferred calls run last
	// first): gVisor's Stack.Wait holds the stack's lock while it waits
	// for the pipe's pumps, and a pump delivering into it needs the lock.
	serverLink, serverObs, finish, err := capture(captureConfig{
		path: cfg.pcapPath, link: a, obs: cfg.serverObs,
		description: "tapstack demo: server end of the in-memory cable",
		faults:      cfg.faults, stderr: cfg.stderr,
		linkDrops: func() uint64 { return a.Stats().DroppedQueueFull },
	})
	if err != nil {
		return err
	}
	server := stack.New(stack.Options{TCP: tcp.Options{TimeWait: cfg.timeWait, RFC1337: cfg.rfc1337, ECN: cfg.ecn, MTUProbing: cfg.mtuProbing, Observer: serverObs}})
	defer stopStack(server)
	client := stack.New(stack.Options{TCP: tcp.Options{TimeWait: cfg.timeWait, RFC1337: cfg.rfc1337, ECN: cfg.ecn, MTUProbing: cfg.mtuProbing, Observer: cfg.clientObs}})
	defer stopStack(client)
	defer a.Close()
	defer b.Close()
	if _, err := server.AddNIC(serverLink, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		return err
	}
	if _, err := client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		return err
	}

	ln, err := conn.Listen(server, "tcp", "192.0.2.1:7")
	if err != nil {
		return err
	}
	defer ln.Close()
	accepted := make(chan *conn.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()

	c, err := (&conn.Dialer{Stack: client}).DialTCP(ctx, "tcp", "192.0.2.1:7")
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { c.Close() })()
	var sc *conn.Conn
	select {
	case sc = <-accepted:
	case <-ctx.Done():
		return ctx.Err()
	}
	if sc == nil {
		return errors.New("the server accepted no connection")
	}
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		io.Copy(sc, sc) // echo until the client's FIN
		sc.Close()
	}()
	at("established", server, client)

	if _, err := io.WriteString(c, cfg.text); err != nil {
		return err
	}
	at("transfer", server, client)
	if err := c.CloseWrite(); err != nil {
		return err
	}
	reply, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		return err
	}
	if string(reply) != cfg.text {
		return fmt.Errorf("echo mismatch: sent %q, read %q", cfg.text, reply)
	}
	fmt.Fprintf(out, "echo matched: %q\n", reply)
	select {
	case <-echoed:
	case <-ctx.Done():
		return ctx.Err()
	}
	at("closing", server, client)
	for _, c := range []*conn.Conn{c, sc} {
		if err := waitState(ctx, c, event.Closed); err != nil {
			return err
		}
	}
	for _, c := range []*conn.Conn{c, sc} {
		c.Endpoint().SyncEvents() // the last events (into CLOSED) reach the observers
	}
	at("closed", server, client)
	fmt.Fprintln(out, "both connections CLOSED")
	if err := finish(); err != nil {
		return err
	}
	if cfg.pcapPath != "" {
		fmt.Fprintf(out, "capture of the server's end written to %s\n", cfg.pcapPath)
	}
	printStats(out, "server", server.TCP().Stats())
	printStats(out, "client", client.TCP().Stats())
	return nil
}

// captureConfig says how to wrap a stack's link: with the fault
// middleware the fault flags ask for (nearest the wire) and a pcapng
// capture to path (nearest the stack, so it sees every frame the stack
// sent, the faults' notes, and the inbound frames a fault dropped).
type captureConfig struct {
	path        string
	link        gstack.LinkEndpoint
	obs         event.Observer
	description string
	faults      *faultFlags   // may be nil
	stderr      io.Writer     // where the chosen fault seed is told
	linkDrops   func() uint64 // the link's queue-full drops, if it counts them
}

// capture returns the link to give the stack, the observer to give its
// engine (annotating the capture, then calling obs) and a function that
// flushes and closes the capture file. Without a path or faults it returns
// link and obs unchanged.
func capture(c captureConfig) (gstack.LinkEndpoint, event.Observer, func() error, error) {
	link := c.link
	var fault *tap.Fault
	var faultObs func(tap.FaultEvent) // set before the stack moves a frame
	if c.faults != nil {
		if cfg, ok := c.faults.config(c.stderr); ok {
			cfg.Observer = func(ev tap.FaultEvent) {
				if faultObs != nil {
					faultObs(ev)
				}
			}
			fault = tap.NewFault(link, cfg)
			link = fault
		}
	}
	if c.path == "" {
		return link, c.obs, func() error { return nil }, nil
	}
	drops := c.linkDrops
	if fault != nil && drops != nil {
		drops = fault.LinkDrops(drops)
	}
	w, err := pcap.Create(c.path, link, pcap.Options{Description: c.description, LinkDrops: drops})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--pcap: %w", err)
	}
	if fault != nil {
		faultObs = w.FaultObserver(nil)
	}
	return w, w.Observer(c.obs), w.CloseCapture, nil
}
