package main

import (
	"context"
	"fmt"
	"time"
)

// runDemo is "tapstack demo": two tapstack stacks on an in-memory Ethernet
// cable, an echo server on one and a client on the other, and the
// lifecycle trace of both connections, one line per engine event, until
// both are CLOSED.
func runDemo(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "demo", "")
	timeWait := timeWaitFlag(fs, "timewait", time.Second, "TIME-WAIT (2*MSL) of both stacks; Linux uses 60s")
	text := fs.String("text", "hello, tapstack\n", "what the client sends")
	rfc1337 := rfc1337Flag(fs)
	pcapPath := fs.String("pcap", "", "write an annotated pcapng capture of the server's end to `file`")
	faults := addFaultFlags(fs)
	ecn := ecnFlagVar(fs)
	mtuProbing := mtuProbingFlagVar(fs)
	plotPath := plotFlag(fs)
	otlp := otlpFlag(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	traces, err := newOTLP(*otlp)
	if err != nil {
		return err
	}
	capPath, plotDone, err := plotCapture(e, *pcapPath, *plotPath)
	if err != nil {
		return err
	}
	if err := checkTimeWait(fs, "timewait", *timeWait); err != nil {
		return err
	}
	out := &syncWriter{w: e.stdout}
	fmt.Fprintf(out, "server 192.0.2.1:7 and client 192.0.2.2 on an in-memory cable (tap.Pipe); TIME-WAIT %v (Linux: 60s)\n", *timeWait)
	err = runDemoWorkload(ctx, out, demoConfig{
		timeWait:   *timeWait,
		rfc1337:    *rfc1337,
		text:       *text,
		pcapPath:   capPath,
		faults:     faults,
		ecn:        ecn.mode,
		mtuProbing: mtuProbing.mode,
		stderr:     e.stderr,
		serverObs:  traces.observer("server", traceLine(out, "server")),
		clientObs:  traces.observer("client", traceLine(out, "client")),
	})
	reportErr(e, traces.close())
	if err != nil {
		return err
	}
	return plotDone()
}
