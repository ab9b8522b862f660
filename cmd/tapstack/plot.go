package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tapstack/tapstack/plot"
)

// runPlot is "tapstack plot": one self-contained HTML page per capture,
// with the time-sequence graph, cwnd and RTT, state timelines and a
// ladder diagram of each connection (package plot).
func runPlot(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "plot", "CAPTURE.pcapng")
	out := fs.String("o", "", "write the page to `file` (default: the capture's name with .html)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	in := fs.Arg(0)
	dst := *out
	if dst == "" {
		dst = htmlName(in)
	}
	d, err := plot.File(in, dst)
	if d != nil {
		// Drawn, perhaps up to a cut (plot.ErrCutShort).
		fmt.Fprintf(e.stdout, "%s: %d connections, %d frames, %s → %s\n", in, len(d.Conns), d.Frames, eventsWord(d), dst)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return nil
}

// htmlName is the capture's path with .html in place of its extension.
func htmlName(capture string) string {
	return strings.TrimSuffix(capture, filepath.Ext(capture)) + ".html"
}

func eventsWord(d *plot.Data) string {
	if !d.Annotated {
		return "no engine events (states and marks from the wire)"
	}
	return fmt.Sprintf("%d engine events", d.Events)
}

// plotFlag registers --plot on a command that runs a stack: its capture
// is drawn into a page when the command ends (plotCapture).
func plotFlag(fs *flag.FlagSet) *string {
	return fs.String("plot", "", "when done, draw the capture as an HTML page to `file` (the capture is --pcap's, or else kept beside the page with .pcapng)")
}

// plotCapture returns the capture path to use for a command given --pcap
// and --plot: --pcap's if set, else, when --plot asks for a page, the
// page's name with .pcapng, so that the capture the page was drawn from
// stays for Wireshark. done draws the page once the capture is closed.
//
// Both files are checked first, so that a path that cannot be written
// fails the command before it does any work (checkOutput).
func plotCapture(e env, pcapPath, plotPath string) (path string, done func() error, err error) {
	if plotPath == "" {
		return pcapPath, func() error { return nil }, checkOutput("pcap", pcapPath)
	}
	path = pcapPath
	if path == "" {
		if path = strings.TrimSuffix(plotPath, filepath.Ext(plotPath)) + ".pcapng"; path == plotPath {
			return "", nil, fmt.Errorf("--plot %s: the page would overwrite its capture; name it .html", plotPath)
		}
	}
	if err := checkOutput("pcap", path); err != nil {
		return "", nil, err
	}
	if err := checkOutput("plot", plotPath); err != nil {
		return "", nil, err
	}
	return path, func() error {
		d, err := plot.File(path, plotPath)
		if err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		fmt.Fprintf(e.stderr, "tapstack: plot of %d connections written to %s (capture %s)\n", len(d.Conns), plotPath, path)
		return nil
	}, nil
}

// reportErr tells err, if any, on stderr in the CLI's message style.
func reportErr(e env, err error) {
	if err != nil {
		fmt.Fprintf(e.stderr, "tapstack: %v\n", err)
	}
}

// checkOutput reports, naming the flag, why the file at path (if any)
// cannot be written: a command checks the files it is to write before it
// does any work, so that a typo in a directory fails at once, not after
// a run, with nothing made (no device, no traffic) and nothing left. The
// check opens the file for writing without truncating it, and removes it
// again if it made it: the command creates it for real later.
func checkOutput(flag, path string) error {
	if path == "" {
		return nil
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	f.Close()
	if errors.Is(statErr, fs.ErrNotExist) {
		os.Remove(path)
	}
	return nil
}
