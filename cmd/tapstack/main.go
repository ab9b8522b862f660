// Command tapstack runs and inspects tapstack, a userspace TCP/IP stack for
// Linux TAP devices.
//
//	go run ./cmd/tapstack demo                                  # no privileges needed
//	go run ./cmd/tapstack serve -tap tap0 -addr 192.0.2.2/24    # echo on port 7
//	echo hi | go run ./cmd/tapstack dial -tap tap0 -addr 192.0.2.2/24 192.0.2.1:7
//
// Each subcommand lives in its own file (demo.go, serve.go, ...) and holds
// only flags and wiring; adding one is one file and one line in commands.
//
// Every command follows one convention, as the tools a network engineer
// knows do: exit status 0 for a clean end, Ctrl-C (SIGINT) or SIGTERM
// included; 1 for a runtime error; 2 for a usage error (a wrong flag or
// argument). Messages go to standard error as "tapstack <command>:
// <message>".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/tapstack/tapstack/stack"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// env is what a subcommand may touch of the process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// stop ends the running command with an error that is not the
	// user's doing (the link went down); run sets it.
	stop func(error)
}

// linkDownError ends a command whose TAP device failed under it.
type linkDownError struct {
	d   stack.LinkDown
	dev string // the device's name
}

// Error says what the link reported and what it means for the device:
// Linux's tun driver refuses a write with EIO while the interface is down
// (tun_get_user) and fails a read with EBADFD once the device is deleted
// (tun_chr_read_iter finds no device).
func (e linkDownError) Error() string {
	switch {
	case errors.Is(e.d.Err, syscall.EIO):
		return fmt.Sprintf("%v: TAP device %s is down (bring it up: ip link set dev %s up)", e.d, e.dev, e.dev)
	case errors.Is(e.d.Err, syscall.EBADFD):
		return fmt.Sprintf("%v: TAP device %s was deleted", e.d, e.dev)
	}
	return e.d.String()
}

// command is one subcommand. run parses args (the arguments after the
// subcommand's name) with a flag.FlagSet that writes to e.stderr.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

// commands is the dispatch table, in the order usage lists them.
func commands() []command {
	return []command{
		{"demo", "two stacks on an in-memory cable: echo with a live lifecycle trace", runDemo},
		{"serve", "serve echo or discard on a TAP device", runServe},
		{"dial", "connect over a TAP device, send stdin, print the reply", runDial},
		{"ping", "ICMP echo from a tapstack stack, printed as ping prints it", runPing},
		{"ss", "the demo's connections and listeners with their TCP info, like ss -tin", runSS},
		{"trace", "one tcpdump-like line per engine event: the demo, or echo on a TAP device", runTrace},
		{"bench", "tapstack vs gVisor's TCP on the same link, in memory and over a TAP: bulk, connections/s, echo, CPU, memory", runBench},
		{"script", "run packetdrill scripts against tapstack in-process, on a fake clock", runScript},
		{"plot", "draw a capture's connections as one self-contained HTML page", runPlot},
		{"agent", "serve the socket API over JSON lines on a TAP, for packet-level test harnesses (docs/agent.md)", runAgent},
		{"version", "print tapstack's version, commit and Go version", runVersion},
	}
}

// errUsage marks a usage error already explained on stderr; it exits with
// status 2, like flag.ExitOnError.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches on args[0] and returns the exit status.
func run(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(e.stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		e.stop = cancel
		err := c.run(ctx, e, args[1:])
		var down linkDownError
		switch {
		case errors.As(context.Cause(ctx), &down):
			fmt.Fprintf(e.stderr, "tapstack %s: %v\n", c.name, down)
			return 1
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case ctx.Err() != nil:
			// Interrupted (SIGINT, SIGTERM): what failed afterwards
			// failed because we were stopping. A clean exit.
			return 0
		}
		fmt.Fprintf(e.stderr, "tapstack %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(e.stderr, "tapstack: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `tapstack is a userspace TCP/IP stack for Linux TAP devices.

Usage:

	tapstack <command> [flags] [arguments]

Commands:

`)
	for _, c := range commands() {
		fmt.Fprintf(w, "\t%-7s  %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "tapstack <command> -h" for a command's flags.
`)
}

// newFlagSet returns a flag set for subcommand name that reports errors on
// e.stderr instead of exiting.
func newFlagSet(e env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: tapstack %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs and checks the number of positional
// arguments, reporting a usage error on stderr in the CLI's one message
// style. Flags may be written -flag or --flag.
func parse(fs *flag.FlagSet, args []string, nargs int) error {
	out := fs.Output()
	fs.SetOutput(io.Discard) // the flag package's own messages have another style
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return usageErr(fs, "%v", explainParseError(fs, err))
	}
	if err := flagAfterArgs(fs, nargs); err != nil {
		return err
	}
	if fs.NArg() != nargs {
		return usageErr(fs, "want %d argument(s), got %d: %q", nargs, fs.NArg(), fs.Args())
	}
	return nil
}

// flagAfterArgs reports, as a usage error, a flag of fs written after the
// command's arguments ("ping 192.0.2.1 -c 1", as iputils allows): the
// flag package stops at the first argument and would count the flag and
// its value as arguments. nargs is how many arguments the command takes,
// -1 for one or more; with more than that before the flag, the count is
// the error to report.
func flagAfterArgs(fs *flag.FlagSet, nargs int) error {
	args := fs.Args()
	for i, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if i == 0 || !strings.HasPrefix(a, "-") || name == "" || fs.Lookup(name) == nil {
			continue
		}
		if nargs >= 0 && i != nargs {
			return nil
		}
		return usageErr(fs, "flag %s after the argument %q: flags go before the arguments", strings.SplitN(a, "=", 2)[0], args[i-1])
	}
	return nil
}

// flagParseError is how the flag package reports a value its own flags
// (Int, Uint64, Duration, Bool, ...) cannot read: "invalid value "5" for
// flag -timewait: parse error", "invalid boolean value ...".
var flagParseError = regexp.MustCompile(`^(invalid (?:boolean )?value ".*" for (?:flag )?-([^:]+)): parse error$`)

// explainParseError replaces the flag package's "parse error" by what the
// flag wants: "5" is no duration without its unit, "64MiB" no number of
// bytes. Other errors, the flag package's or a flag.Value's own, are
// returned as they are.
func explainParseError(fs *flag.FlagSet, err error) error {
	m := flagParseError.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	f := fs.Lookup(m[2])
	if f == nil {
		return err
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return err
	}
	want := ""
	switch g.Get().(type) {
	case time.Duration:
		want = "want a duration with its unit, such as 5s or 20ms"
	case int, int64:
		want = "want a whole number, such as 1000"
	case uint, uint64:
		want = "want a whole number, 0 or more"
	case float64:
		want = "want a number, such as 0.5"
	case bool:
		want = "want true or false"
	default:
		return err
	}
	return fmt.Errorf("%s: %s", m[1], want)
}
