package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tapstack/tapstack/stack/tcp/tcptest/pktscript"
)

// runScript is "tapstack script [--pcap FILE] [--otlp ENDPOINT] [-v] FILE.pkt...": each
// packetdrill script runs against a fresh tapstack stack in this process,
// on a fake clock, and gets one line: "FILE: PASS", "FILE: FAIL line N:
// what differed" or "FILE: SKIP: needs what tapstack lacks". The last line
// is the tally, "N passed, N failed, N skipped"; the exit status is 0 only
// when no script failed. With -v each result is followed by the exchange
// (packets, calls and engine events on the script's clock) and, for a
// failure, the expected and actual packets. --pcap writes every exchange
// to one pcapng file, a section per script, each frame with the engine's
// comment; --otlp exports each connection as an OpenTelemetry trace.
func runScript(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "script", "FILE.pkt...")
	pcapPath := fs.String("pcap", "", "write the exchanges to this pcapng `file`, with tapstack's comments")
	verbose := fs.Bool("v", false, "print each exchange, and the packets that differed")
	otlp := otlpFlag(fs)
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	case err != nil:
		return usageErr(fs, "%v", explainParseError(fs, err))
	case fs.NArg() == 0:
		return usageErr(fs, "want at least one script")
	}
	if err := flagAfterArgs(fs, -1); err != nil {
		return err
	}
	// The capture is written as the scripts run; a write error ends the
	// command (the file would lie by omission).
	var capture *os.File
	if *pcapPath != "" {
		f, err := os.Create(*pcapPath)
		if err != nil {
			return fmt.Errorf("--pcap: %w", err)
		}
		defer f.Close() // after an error; the normal end closes it below
		capture = f
	}
	// Each script's connections are traces whose tapstack.stack is the
	// script's path, timed on its fake clock (from the Unix epoch).
	traces, err := newOTLP(*otlp)
	if err != nil {
		return err
	}
	defer func() { reportErr(e, traces.close()) }()
	var passed, failed, skipped int
	for _, path := range fs.Args() {
		if ctx.Err() != nil {
			break
		}
		opts := pktscript.Options{Observer: traces.observer(path, nil)}
		if capture != nil {
			opts.Capture = capture
		}
		r := pktscript.Exec(path, opts)
		if r.CaptureErr != nil {
			return fmt.Errorf("--pcap %s: %w", *pcapPath, r.CaptureErr)
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", path, r)
		switch r.Status {
		case pktscript.Pass:
			passed++
		case pktscript.Fail:
			failed++
		default:
			skipped++
		}
		if *verbose {
			if r.Status == pktscript.Fail && r.Detail != "" {
				fmt.Fprint(e.stdout, indent(r.Detail))
			}
			if r.Trace != "" {
				fmt.Fprintf(e.stdout, "  exchange:\n%s", indent(indent(r.Trace+"\n")))
			}
		}
	}
	if capture != nil {
		if err := capture.Close(); err != nil {
			return fmt.Errorf("--pcap %s: %w", *pcapPath, err)
		}
	}
	fmt.Fprintf(e.stdout, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return fmt.Errorf("%d of %d scripts failed", failed, passed+failed+skipped)
	}
	return nil
}

// indent puts two spaces before every line of s.
func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}
